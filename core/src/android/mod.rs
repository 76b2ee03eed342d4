//! Android Keystore key attestation (docs/PROTOCOL.md §12): the KeyDescription
//! extension, attestation chains to Google's roots with the revocation status
//! list, and the registration policy for platform-keystore credentials.
//!
//! Trust is anchored in root *public keys*: Google's hardware attestation
//! root (RSA 4096) and "Key Attestation CA1" (P-384) by default
//! ([`google_roots`]). Certificates are checked by [`crate::x509::verify_chain`],
//! signatures by [`crate::crypto`]. Nothing here does I/O: the caller passes
//! the status list JSON it fetched and the verification time.

mod der;
pub mod key_description;
pub mod policy;
pub mod status;

pub use key_description::{
    parse_key_description, AndroidBootState, AndroidSecurityLevel, AttestationApplicationId,
    AuthorizationList, KeyDescription, PackageInfo, RootOfTrust,
};
pub use policy::{check_policy, AndroidPolicy, AndroidPolicyFailure};
pub use status::{RevocationStatus, StatusEntry, StatusList, StatusListError};

use crate::x509::{self, ChainError, TrustAnchor, VerifiedChain};

/// OID of the KeyDescription extension.
pub const KEY_DESCRIPTION_OID: &str = "1.3.6.1.4.1.11129.2.1.17";

/// Google's hardware attestation root key (RSA 4096), PEM SubjectPublicKeyInfo.
pub const GOOGLE_HARDWARE_ATTESTATION_ROOT_PEM: &str =
    include_str!("roots/google-hardware-attestation-root.pub.pem");
/// Google's "Key Attestation CA1" root key (ECDSA P-384), PEM SubjectPublicKeyInfo.
pub const GOOGLE_KEY_ATTESTATION_CA1_PEM: &str =
    include_str!("roots/google-key-attestation-ca1-p384.pub.pem");

/// Why the KeyDescription could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyDescriptionError {
    /// The leaf certificate is not valid DER X.509.
    #[error("attestation leaf is not a certificate")]
    LeafMalformed,
    /// The leaf has no KeyDescription extension.
    #[error("attestation leaf has no KeyDescription extension")]
    Missing,
    /// The leaf has more than one KeyDescription extension.
    #[error("attestation leaf has more than one KeyDescription extension")]
    Duplicate,
    /// The extension is not DER of the KeyDescription schema.
    #[error("malformed KeyDescription at {field}: {reason}")]
    Malformed {
        /// The schema field being read.
        field: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// A tag appears twice in one AuthorizationList.
    #[error("tag {tag} repeated in {list}")]
    DuplicateTag {
        /// `softwareEnforced` or `hardwareEnforced`.
        list: &'static str,
        /// The context tag number.
        tag: u32,
    },
}

/// Why a PEM trust root could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RootError {
    /// No PEM block, or it is not a PUBLIC KEY or CERTIFICATE.
    #[error("expected a PEM PUBLIC KEY or CERTIFICATE")]
    NotPem,
    /// The key or certificate does not parse.
    #[error("malformed public key or certificate")]
    Malformed,
}

/// Reads a trust root from PEM: a `PUBLIC KEY` (SubjectPublicKeyInfo) or a
/// `CERTIFICATE`, whose public key becomes the anchor.
pub fn anchor_from_pem(name: &str, pem: &[u8]) -> Result<TrustAnchor, RootError> {
    use x509_parser::prelude::FromDer;
    let (_, block) = x509_parser::pem::parse_x509_pem(pem).map_err(|_| RootError::NotPem)?;
    let spki_der = match block.label.as_str() {
        "PUBLIC KEY" => match x509_parser::x509::SubjectPublicKeyInfo::from_der(&block.contents) {
            Ok(([], _)) => block.contents.clone(),
            _ => return Err(RootError::Malformed),
        },
        "CERTIFICATE" => match x509_parser::certificate::X509Certificate::from_der(&block.contents)
        {
            Ok(([], cert)) => cert.public_key().raw.to_vec(),
            _ => return Err(RootError::Malformed),
        },
        _ => return Err(RootError::NotPem),
    };
    Ok(TrustAnchor {
        name: name.to_owned(),
        spki_der,
    })
}

/// The default Android trust roots: Google's hardware attestation root key
/// and Key Attestation CA1.
pub fn google_roots() -> Vec<TrustAnchor> {
    [
        (
            "Google hardware attestation root (RSA 4096)",
            GOOGLE_HARDWARE_ATTESTATION_ROOT_PEM,
        ),
        (
            "Google Key Attestation CA1 (P-384)",
            GOOGLE_KEY_ATTESTATION_CA1_PEM,
        ),
    ]
    .into_iter()
    .filter_map(|(name, pem)| anchor_from_pem(name, pem.as_bytes()).ok())
    .collect()
}

/// Why an Android attestation chain was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AndroidChainError {
    /// The X.509 path did not verify.
    #[error("{0}")]
    Chain(#[from] ChainError),
    /// A certificate on the path is listed in the revocation status list.
    #[error("certificate {index} (serial {serial}) is {status}")]
    Revoked {
        /// Position in the submitted chain.
        index: usize,
        /// Lower-case hex serial, as keyed in the status list.
        serial: String,
        /// The listed status (`REVOKED`, `SUSPENDED`, ...).
        status: RevocationStatus,
    },
}

/// What the relying party trusts for Android Keystore attestations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AndroidTrust {
    /// Root keys attestation chains must end at.
    pub anchors: Vec<TrustAnchor>,
    /// The attestation revocation status list.
    pub status_list: StatusList,
    /// The registration policy.
    pub policy: AndroidPolicy,
}

impl AndroidTrust {
    /// Google's two roots ([`google_roots`]), an empty status list and `policy`.
    pub fn new(policy: AndroidPolicy) -> Self {
        Self {
            anchors: google_roots(),
            status_list: StatusList::default(),
            policy,
        }
    }
    /// Adds a trust root.
    pub fn with_anchor(mut self, anchor: TrustAnchor) -> Self {
        self.anchors.push(anchor);
        self
    }
    /// Replaces the trust roots.
    pub fn with_anchors(mut self, anchors: Vec<TrustAnchor>) -> Self {
        self.anchors = anchors;
        self
    }
    /// Sets the revocation status list.
    pub fn with_status_list(mut self, status_list: StatusList) -> Self {
        self.status_list = status_list;
        self
    }
}

/// Verifies an attestation chain (DER, leaf first) at Unix time `now`: the
/// X.509 path to one of `anchors`, then the status of every certificate on
/// the path (the root included when it was submitted).
pub fn verify_attestation_chain(
    chain: &[Vec<u8>],
    anchors: &[TrustAnchor],
    status_list: &StatusList,
    now: u64,
) -> Result<VerifiedChain, AndroidChainError> {
    let verified = x509::verify_chain(chain, anchors, now)?;
    for &index in &verified.path {
        let Some(serial) = chain.get(index).and_then(|c| x509::serial_hex(c)) else {
            return Err(ChainError::Malformed { index }.into());
        };
        if let Some(entry) = status_list.lookup(&serial) {
            return Err(AndroidChainError::Revoked {
                index,
                serial,
                status: entry.status.clone(),
            });
        }
    }
    Ok(verified)
}

/// Reads and parses the KeyDescription extension of an attestation leaf (DER).
pub fn key_description_of(leaf_der: &[u8]) -> Result<KeyDescription, KeyDescriptionError> {
    let value = x509::extension_value(leaf_der, KEY_DESCRIPTION_OID).map_err(|e| match e {
        x509::ExtensionLookupError::Malformed => KeyDescriptionError::LeafMalformed,
        x509::ExtensionLookupError::Duplicate => KeyDescriptionError::Duplicate,
    })?;
    parse_key_description(&value.ok_or(KeyDescriptionError::Missing)?)
}
