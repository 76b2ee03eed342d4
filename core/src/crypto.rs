//! The narrow crypto seam of the verifier: every signature check and digest in
//! biopay-core goes through this module (ring), so it can be audited in one place.

use crate::messages::{DecodeError, Digest};
use ciborium::value::Value;
use coset::{iana, AsCborValue, CoseKeyBuilder};
use ring::signature::{self, UnparsedPublicKey};

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

/// Encodes a SEC1 uncompressed P-256 point as a COSE_Key (RFC 9053 §7.1.1):
/// `{1: 2, 3: -7, -1: 1, -2: x, -3: y}`.
pub fn cose_key_from_sec1(sec1: &[u8]) -> Value {
    let (x, y) = match sec1 {
        [0x04, rest @ ..] if rest.len() == 64 => (rest[..32].to_vec(), rest[32..].to_vec()),
        _ => (Vec::new(), Vec::new()),
    };
    let key = CoseKeyBuilder::new_ec2_pub_key(iana::EllipticCurve::P_256, x, y)
        .algorithm(iana::Algorithm::ES256)
        .build();
    key.to_cbor_value().unwrap_or(Value::Null)
}

/// Decodes a COSE_Key that must be exactly an EC2 P-256 ES256 public key, and
/// returns its SEC1 uncompressed form. The point is validated. The checks and
/// their reasons, in order, are those of docs/PROTOCOL.md §4.1.5; each is an
/// `InvalidField("credential_public_key")`.
pub fn sec1_from_cose_key(value: Value) -> Result<Vec<u8>, DecodeError> {
    const F: &str = "credential_public_key";
    let bad = |reason| DecodeError::InvalidField { field: F, reason };
    let Value::Map(entries) = value else {
        return Err(bad("not a map"));
    };
    let (mut kty, mut alg, mut crv, mut x, mut y) = (None, None, None, None, None);
    for (label, v) in entries {
        let slot = match label.as_integer().map(i128::from) {
            Some(1) => &mut kty,
            Some(3) => &mut alg,
            Some(-1) => &mut crv,
            Some(-2) => &mut x,
            Some(-3) => &mut y,
            _ => return Err(bad("unexpected parameter")),
        };
        if slot.replace(v).is_some() {
            return Err(bad("duplicate parameter"));
        }
    }
    let (Some(kty), Some(alg), Some(crv), Some(x), Some(y)) = (kty, alg, crv, x, y) else {
        return Err(bad("missing parameter"));
    };
    let int = |v: &Value| v.as_integer().map(i128::from);
    if int(&kty) != Some(i128::from(iana::KeyType::EC2 as i64)) {
        return Err(bad("kty must be the integer 2 (EC2)"));
    }
    if int(&alg) != Some(i128::from(iana::Algorithm::ES256 as i64)) {
        return Err(bad("alg must be the integer -7 (ES256)"));
    }
    if int(&crv) != Some(i128::from(iana::EllipticCurve::P_256 as i64)) {
        return Err(bad("crv must be the integer 1 (P-256)"));
    }
    let (Value::Bytes(x), Value::Bytes(y)) = (x, y) else {
        return Err(bad("x and y must be byte strings of 32 bytes"));
    };
    if x.len() != 32 || y.len() != 32 {
        return Err(bad("x and y must be byte strings of 32 bytes"));
    }
    let mut sec1 = Vec::with_capacity(P256_SEC1_LEN);
    sec1.push(0x04);
    sec1.extend_from_slice(&x);
    sec1.extend_from_slice(&y);
    if !is_valid_p256_point(&sec1) {
        return Err(bad("not a point on P-256"));
    }
    Ok(sec1)
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
    fn cose_key_round_trip_and_rejects_off_curve() {
        // Generator point of P-256.
        let g = hex::decode(concat!(
            "04",
            "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296",
            "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5"
        ))
        .unwrap();
        let v = cose_key_from_sec1(&g);
        assert_eq!(sec1_from_cose_key(v).unwrap(), g);
        let mut off = g.clone();
        off[64] ^= 1;
        assert!(sec1_from_cose_key(cose_key_from_sec1(&off)).is_err());
    }

    /// docs/PROTOCOL.md §4.1.5: every way a credential COSE_Key can be wrong
    /// has its named reason, in the spec's order. An empty `kid`, `key_ops`
    /// or `Base IV` is an extra parameter (the coset-based decoder let them
    /// through, since coset reads them as "absent").
    #[test]
    fn each_cose_key_defect_has_its_named_reason() {
        let g = hex::decode(concat!(
            "04",
            "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296",
            "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5"
        ))
        .unwrap();
        let Value::Map(good) = cose_key_from_sec1(&g) else {
            panic!("not a map")
        };
        let reason = |entries: Vec<(Value, Value)>| match sec1_from_cose_key(Value::Map(entries)) {
            Err(DecodeError::InvalidField { field, reason }) => {
                assert_eq!(field, "credential_public_key");
                reason
            }
            other => panic!("{other:?}"),
        };
        let int = |i: i64| Value::Integer(i.into());
        let with = |label: Value, v: Value| {
            let mut e = good.clone();
            e.push((label, v));
            e
        };
        let set = |label: i64, v: Value| {
            let mut e = good.clone();
            for (l, old) in &mut e {
                if *l == int(label) {
                    *old = v.clone();
                }
            }
            e
        };
        let without = |label: i64| {
            let mut e = good.clone();
            e.retain(|(l, _)| *l != int(label));
            e
        };
        assert_eq!(
            sec1_from_cose_key(Value::Array(vec![])).unwrap_err(),
            DecodeError::InvalidField {
                field: "credential_public_key",
                reason: "not a map"
            }
        );
        for extra in [
            with(int(2), Value::Bytes(vec![])),
            with(int(4), Value::Array(vec![])),
            with(int(5), Value::Bytes(vec![])),
            with(int(-4), Value::Bytes(vec![1; 32])),
            with(Value::Text("kty".into()), int(2)),
        ] {
            assert_eq!(reason(extra), "unexpected parameter");
        }
        for label in [1, 3, -1, -2, -3] {
            assert_eq!(reason(without(label)), "missing parameter", "{label}");
        }
        assert_eq!(
            reason(set(1, Value::Text("EC2".into()))),
            "kty must be the integer 2 (EC2)"
        );
        assert_eq!(reason(set(1, int(1))), "kty must be the integer 2 (EC2)");
        assert_eq!(
            reason(set(3, Value::Text("ES256".into()))),
            "alg must be the integer -7 (ES256)"
        );
        assert_eq!(reason(set(-1, int(2))), "crv must be the integer 1 (P-256)");
        assert_eq!(
            reason(set(-2, Value::Bytes(vec![1; 31]))),
            "x and y must be byte strings of 32 bytes"
        );
        assert_eq!(
            reason(set(-3, Value::Bool(true))),
            "x and y must be byte strings of 32 bytes"
        );
        assert_eq!(
            reason(set(-3, Value::Bytes(vec![0; 32]))),
            "not a point on P-256"
        );
        assert_eq!(sec1_from_cose_key(Value::Map(good)).unwrap(), g);
    }

    #[test]
    fn ct_eq_compares_content_and_length() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
