//! The credential public key's COSE_Key form (docs/PROTOCOL.md §4.1.5): an
//! EC2 P-256 ES256 public key, exactly `{1: 2, 3: -7, -1: 1, -2: x, -3: y}`.
//! The codec lives with the messages because its errors are the message
//! decoder's ([`DecodeError::InvalidField`]).

use super::DecodeError;
use crate::crypto::{is_valid_p256_point, P256_SEC1_LEN};
use ciborium::value::Value;
use coset::{iana, AsCborValue, CoseKeyBuilder};

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
}
