//! X.509 attestation-chain verification (docs/PROTOCOL.md §6.2).
//!
//! Parsing is done by `x509-parser`; every signature is checked through
//! [`crate::crypto`] (ring). Trust is anchored in root *public keys*
//! (SubjectPublicKeyInfo), not in particular root certificates, so a vendor can
//! re-issue its root certificate with the same key.

use x509_parser::{
    certificate::X509Certificate, extensions::ParsedExtension, prelude::FromDer, time::ASN1Time,
    x509::SubjectPublicKeyInfo,
};

/// Longest chain accepted (leaf included).
pub const MAX_CHAIN_LEN: usize = 6;

/// A trusted root public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustAnchor {
    /// A name for diagnostics.
    pub name: String,
    /// DER SubjectPublicKeyInfo of the root key.
    pub spki_der: Vec<u8>,
}

/// Why an attestation chain was rejected. Indices are positions in the chain
/// as submitted (0 = leaf).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// No certificate was given.
    #[error("empty certificate chain")]
    Empty,
    /// More certificates than [`MAX_CHAIN_LEN`].
    #[error("certificate chain longer than {MAX_CHAIN_LEN}")]
    TooLong,
    /// A certificate is not valid DER X.509.
    #[error("certificate {index} is malformed")]
    Malformed {
        /// Position in the chain.
        index: usize,
    },
    /// A certificate on the path is expired or not yet valid at the verification time.
    #[error("certificate {index} is not valid at the verification time")]
    NotValidAtTime {
        /// Position in the chain.
        index: usize,
    },
    /// An issuing certificate is not a CA (basicConstraints cA, keyCertSign).
    #[error("certificate {index} issues certificates but is not a CA")]
    IssuerNotCa {
        /// Position in the chain.
        index: usize,
    },
    /// An issuing certificate's pathLenConstraint is exceeded.
    #[error("certificate {index}: path length constraint exceeded")]
    PathLenExceeded {
        /// Position in the chain.
        index: usize,
    },
    /// A certificate carries a critical extension this verifier does not understand.
    #[error("certificate {index} has an unsupported critical extension")]
    UnsupportedCriticalExtension {
        /// Position in the chain.
        index: usize,
    },
    /// The path from the leaf ends at certificate `index` (a self-signed root
    /// or a certificate whose issuer is not in the chain) without reaching a
    /// trusted root key.
    #[error("the chain does not lead to a trusted root (path ends at certificate {index})")]
    UntrustedRoot {
        /// Position in the chain of the last certificate on the path.
        index: usize,
    },
    /// The leaf itself carries a trust-anchor key: a root is not an attestation.
    #[error("the leaf is a trust anchor")]
    LeafIsTrustAnchor,
}

/// A chain that verified, with the facts the protocol needs from the leaf.
#[derive(Debug, Clone)]
pub struct VerifiedChain {
    /// The leaf's SubjectPublicKeyInfo, DER.
    pub leaf_spki_der: Vec<u8>,
    /// The leaf's public key bits (for EC keys, the SEC1 point).
    pub leaf_public_key: Vec<u8>,
    /// The leaf subject's organizationalUnit values.
    pub leaf_subject_ou: Vec<String>,
    /// Positions (in the submitted chain) of the certificates on the path, leaf first.
    pub path: Vec<usize>,
    /// Index of the trust anchor the path ends at.
    pub anchor: usize,
}

/// Verifies `chain` (DER certificates, leaf first) at Unix time `now` against
/// `anchors`. Certificates in the chain that are not on the path are ignored.
pub fn verify_chain(
    chain: &[Vec<u8>],
    anchors: &[TrustAnchor],
    now: u64,
) -> Result<VerifiedChain, ChainError> {
    if chain.is_empty() {
        return Err(ChainError::Empty);
    }
    if chain.len() > MAX_CHAIN_LEN {
        return Err(ChainError::TooLong);
    }
    let certs = chain
        .iter()
        .enumerate()
        .map(|(index, der)| match X509Certificate::from_der(der) {
            Ok(([], cert)) if der_tlv(der, 0) == Some(&[]) => Ok(cert),
            _ => Err(ChainError::Malformed { index }),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let anchor_keys: Vec<Option<SubjectPublicKeyInfo<'_>>> = anchors
        .iter()
        .map(|a| {
            SubjectPublicKeyInfo::from_der(&a.spki_der)
                .ok()
                .map(|(_, k)| k)
        })
        .collect();
    let time = ASN1Time::from_timestamp(i64::try_from(now).unwrap_or(i64::MAX))
        .map_err(|_| ChainError::NotValidAtTime { index: 0 })?;

    let mut path = vec![0usize];
    let mut current = 0usize;
    loop {
        let cert = &certs[current];
        // A certificate whose key is itself a trust anchor ends the path; its
        // own validity window is not checked (trust is in the key).
        if let Some(anchor) = anchors
            .iter()
            .position(|a| a.spki_der == cert.public_key().raw)
        {
            if current == 0 {
                return Err(ChainError::LeafIsTrustAnchor);
            }
            return finish(&certs[0], path, anchor);
        }
        if !cert.validity().is_valid_at(time) {
            return Err(ChainError::NotValidAtTime { index: current });
        }
        check_critical_extensions(cert, current)?;
        // RFC 5280 §4.1.1.2: the outer signatureAlgorithm must equal the
        // signature field inside the signed TBSCertificate.
        if cert.signature_algorithm != cert.tbs_certificate.signature {
            return Err(ChainError::Malformed { index: current });
        }
        // Signed directly by a trust anchor key?
        for (i, key) in anchor_keys.iter().enumerate() {
            if let Some(key) = key {
                if signed_by(cert, key) {
                    return finish(&certs[0], path, i);
                }
            }
        }
        // Otherwise find the issuer among the other submitted certificates.
        let issuer = (0..certs.len()).find(|&j| {
            !path.contains(&j)
                && certs[j].subject().as_raw() == cert.issuer().as_raw()
                && signed_by(cert, certs[j].public_key())
        });
        let Some(next) = issuer else {
            return Err(ChainError::UntrustedRoot { index: current });
        };
        check_is_ca(&certs[next], next, path.len() - 1)?;
        path.push(next);
        current = next;
    }
}

/// Reads one TLV of `input` whose encoding, down through every constructed
/// encoding inside it, is DER's (X.690 §10.1): definite lengths in their
/// shortest form, tag numbers in their shortest form, constructed contents
/// made of whole TLVs. Returns the bytes after it. docs/PROTOCOL.md §6.2
/// step 2: the X.509 parser alone also reads some BER (a long-form length
/// where the short form fits), which the protocol calls `Malformed`.
fn der_tlv(input: &[u8], depth: u32) -> Option<&[u8]> {
    if depth > 64 {
        return None;
    }
    let (&tag, mut rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        // High tag number form: base 128, no leading 0x80, number >= 31.
        let mut number: u32 = 0;
        let mut first = true;
        loop {
            let (&b, r) = rest.split_first()?;
            rest = r;
            if first && b == 0x80 {
                return None;
            }
            first = false;
            number = number.checked_mul(128)? | u32::from(b & 0x7f);
            if b & 0x80 == 0 {
                break;
            }
        }
        if number < 31 {
            return None;
        }
    }
    let (&l0, rest) = rest.split_first()?;
    let (len, rest) = match l0 {
        0..=0x7f => (usize::from(l0), rest),
        0x81..=0x84 => {
            let n = usize::from(l0 & 0x7f);
            let (bytes, rest) = (rest.get(..n)?, rest.get(n..)?);
            if bytes.first() == Some(&0) {
                return None;
            }
            let len = bytes
                .iter()
                .try_fold(0usize, |a, &b| Some(a.checked_mul(256)? | usize::from(b)))?;
            if len < 0x80 {
                return None;
            }
            (len, rest)
        }
        // 0x80: indefinite length (BER only); longer forms: not shortest.
        _ => return None,
    };
    let (content, after) = (rest.get(..len)?, rest.get(len..)?);
    if tag & 0x20 != 0 {
        let mut inner = content;
        while !inner.is_empty() {
            inner = der_tlv(inner, depth + 1)?;
        }
    }
    Some(after)
}

fn finish(
    leaf: &X509Certificate<'_>,
    path: Vec<usize>,
    anchor: usize,
) -> Result<VerifiedChain, ChainError> {
    let leaf_subject_ou = leaf
        .subject()
        .iter_organizational_unit()
        .filter_map(|a| a.as_str().ok().map(str::to_owned))
        .collect();
    Ok(VerifiedChain {
        leaf_spki_der: leaf.public_key().raw.to_vec(),
        leaf_public_key: leaf.public_key().subject_public_key.data.to_vec(),
        leaf_subject_ou,
        path,
        anchor,
    })
}

fn signed_by(cert: &X509Certificate<'_>, issuer_key: &SubjectPublicKeyInfo<'_>) -> bool {
    let curve = issuer_key
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|o| o.to_id_string());
    crate::crypto::verify_x509_signature(
        &cert.signature_algorithm.algorithm.to_id_string(),
        &issuer_key.algorithm.algorithm.to_id_string(),
        curve.as_deref(),
        &issuer_key.subject_public_key.data,
        cert.tbs_certificate.as_ref(),
        &cert.signature_value.data,
    )
    .is_ok()
}

fn check_is_ca(
    cert: &X509Certificate<'_>,
    index: usize,
    certs_below: usize,
) -> Result<(), ChainError> {
    let bc = match cert.basic_constraints() {
        Ok(Some(bc)) => bc.value.clone(),
        _ => return Err(ChainError::IssuerNotCa { index }),
    };
    if !bc.ca {
        return Err(ChainError::IssuerNotCa { index });
    }
    if let Ok(Some(ku)) = cert.key_usage() {
        if !ku.value.key_cert_sign() {
            return Err(ChainError::IssuerNotCa { index });
        }
    } else if cert.key_usage().is_err() {
        return Err(ChainError::Malformed { index });
    }
    if let Some(max) = bc.path_len_constraint {
        if u32::try_from(certs_below).unwrap_or(u32::MAX) > max {
            return Err(ChainError::PathLenExceeded { index });
        }
    }
    Ok(())
}

/// Only basicConstraints and keyUsage, which this verifier enforces, may be
/// critical; an extension x509-parser could not parse makes the certificate malformed.
fn check_critical_extensions(cert: &X509Certificate<'_>, index: usize) -> Result<(), ChainError> {
    for ext in cert.extensions() {
        if matches!(ext.parsed_extension(), ParsedExtension::ParseError { .. }) {
            return Err(ChainError::Malformed { index });
        }
        let enforced = matches!(
            ext.parsed_extension(),
            ParsedExtension::BasicConstraints(_) | ParsedExtension::KeyUsage(_)
        );
        if ext.critical && !enforced {
            return Err(ChainError::UnsupportedCriticalExtension { index });
        }
    }
    Ok(())
}

/// The serial number of a DER certificate in lower-case hex without leading
/// zeros (the form Google's attestation status list uses); `None` when the
/// certificate does not parse.
pub fn serial_hex(cert_der: &[u8]) -> Option<String> {
    match X509Certificate::from_der(cert_der) {
        Ok(([], cert)) => Some(format!("{:x}", cert.tbs_certificate.serial)),
        _ => None,
    }
}

/// The DER SubjectPublicKeyInfo of a DER certificate; `None` when the
/// certificate does not parse.
pub fn spki_of(cert_der: &[u8]) -> Option<Vec<u8>> {
    match X509Certificate::from_der(cert_der) {
        Ok(([], cert)) => Some(cert.public_key().raw.to_vec()),
        _ => None,
    }
}

/// Why [`extension_value`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ExtensionLookupError {
    /// The certificate does not parse.
    #[error("malformed certificate")]
    Malformed,
    /// The extension appears more than once.
    #[error("duplicate extension")]
    Duplicate,
}

/// The raw value (the OCTET STRING's content) of the extension `oid`
/// (dotted form) of a DER certificate; `None` when absent.
pub fn extension_value(
    cert_der: &[u8],
    oid: &str,
) -> Result<Option<Vec<u8>>, ExtensionLookupError> {
    let cert = match X509Certificate::from_der(cert_der) {
        Ok(([], cert)) => cert,
        _ => return Err(ExtensionLookupError::Malformed),
    };
    let mut found = cert
        .extensions()
        .iter()
        .filter(|e| e.oid.to_id_string() == oid);
    let first = found.next().map(|e| e.value.to_vec());
    if found.next().is_some() {
        return Err(ExtensionLookupError::Duplicate);
    }
    Ok(first)
}
