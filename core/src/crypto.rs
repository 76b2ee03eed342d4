//! The narrow crypto seam of the verifier: every signature check and digest in
//! biopay-core goes through this module (ring), so it can be audited in one place.

use ring::signature::{self, UnparsedPublicKey};

/// A SHA-256 digest.
pub type Digest = [u8; 32];

/// Length of a SEC1 uncompressed P-256 point (0x04 || x || y).
pub const P256_SEC1_LEN: usize = 65;

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> Digest {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// SHA-256 over the concatenation of `parts`.
pub fn sha256_parts(parts: &[&[u8]]) -> Digest {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// An HMAC-SHA-256 key (ring's `hmac::Key`; the raw bytes are not kept).
/// Debug output never shows key material.
#[derive(Clone)]
pub struct HmacKey(ring::hmac::Key);

impl std::fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HmacKey(..)")
    }
}

impl HmacKey {
    /// A key from its secret bytes. The caller keeps (and zeroizes) `secret`.
    pub fn new(secret: &[u8]) -> Self {
        Self(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret))
    }

    /// HMAC-SHA-256 over the concatenation of `parts`.
    pub fn tag(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut ctx = ring::hmac::Context::with_key(&self.0);
        for p in parts {
            ctx.update(p);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }
}

/// Constant-time equality for secrets and digests.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// How an ECDSA signature is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureFormat {
    /// r || s, 32 bytes each (IEEE P1363; COSE's form, RFC 9053 §2.1).
    Fixed,
    /// ASN.1 DER `Ecdsa-Sig-Value` (what Android's and Java's `Signature` return).
    Der,
}

/// Verifies an ECDSA P-256 / SHA-256 signature with a SEC1 public key.
pub fn verify_es256(
    public_key_sec1: &[u8],
    message: &[u8],
    sig: &[u8],
    format: SignatureFormat,
) -> bool {
    let alg = match format {
        SignatureFormat::Fixed => &signature::ECDSA_P256_SHA256_FIXED,
        SignatureFormat::Der => &signature::ECDSA_P256_SHA256_ASN1,
    };
    UnparsedPublicKey::new(alg, public_key_sec1)
        .verify(message, sig)
        .is_ok()
}

/// The form of a P-256 signature from a platform keystore: 64 bytes is
/// COSE's fixed form, anything else is taken as DER (docs/PROTOCOL.md §12.3).
pub fn es256_signature_format(sig: &[u8]) -> SignatureFormat {
    if sig.len() == 64 {
        SignatureFormat::Fixed
    } else {
        SignatureFormat::Der
    }
}

/// Converts a DER ECDSA P-256 signature to the fixed r || s form; `None` when
/// it is not valid DER.
pub fn es256_der_to_fixed(der: &[u8]) -> Option<Vec<u8>> {
    p256::ecdsa::Signature::from_der(der)
        .ok()
        .map(|s| s.to_bytes().to_vec())
}

/// DER prefix of a SubjectPublicKeyInfo holding an uncompressed P-256 point
/// (id-ecPublicKey, prime256v1); the 65-byte point follows.
pub const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// The SEC1 point of a DER SubjectPublicKeyInfo that is exactly an
/// uncompressed, valid P-256 key; `None` for any other key.
pub fn p256_point_from_spki(spki: &[u8]) -> Option<&[u8]> {
    let point = spki.strip_prefix(&P256_SPKI_PREFIX[..])?;
    is_valid_p256_point(point).then_some(point)
}

/// Checks that `sec1` is an uncompressed point on P-256 (not the identity).
pub fn is_valid_p256_point(sec1: &[u8]) -> bool {
    sec1.len() == P256_SEC1_LEN && p256::PublicKey::from_sec1_bytes(sec1).is_ok()
}

/// The signature algorithms accepted in X.509 attestation chains.
pub(crate) fn verify_x509_signature(
    sig_alg_oid: &str,
    spki_alg_oid: &str,
    spki_curve_oid: Option<&str>,
    spki_key: &[u8],
    message: &[u8],
    sig: &[u8],
) -> Result<(), &'static str> {
    const P256: &str = "1.2.840.10045.3.1.7";
    const P384: &str = "1.3.132.0.34";
    const EC_KEY: &str = "1.2.840.10045.2.1";
    const RSA_KEY: &str = "1.2.840.113549.1.1.1";
    let alg: &dyn signature::VerificationAlgorithm =
        match (sig_alg_oid, spki_alg_oid, spki_curve_oid) {
            ("1.2.840.10045.4.3.2", EC_KEY, Some(P256)) => &signature::ECDSA_P256_SHA256_ASN1,
            ("1.2.840.10045.4.3.3", EC_KEY, Some(P256)) => &signature::ECDSA_P256_SHA384_ASN1,
            ("1.2.840.10045.4.3.2", EC_KEY, Some(P384)) => &signature::ECDSA_P384_SHA256_ASN1,
            ("1.2.840.10045.4.3.3", EC_KEY, Some(P384)) => &signature::ECDSA_P384_SHA384_ASN1,
            ("1.2.840.113549.1.1.11", RSA_KEY, _) => &signature::RSA_PKCS1_2048_8192_SHA256,
            ("1.2.840.113549.1.1.12", RSA_KEY, _) => &signature::RSA_PKCS1_2048_8192_SHA384,
            ("1.2.840.113549.1.1.13", RSA_KEY, _) => &signature::RSA_PKCS1_2048_8192_SHA512,
            _ => return Err("unsupported signature algorithm or key type"),
        };
    UnparsedPublicKey::new(alg, spki_key)
        .verify(message, sig)
        .map_err(|_| "bad signature")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ct_eq_compares_content_and_length() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
