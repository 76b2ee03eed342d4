//! Deterministic CBOR (RFC 8949 §4.2.1) encoding and strict decoding.
//!
//! Every biopay message is encoded with core deterministic encoding: definite
//! lengths, shortest-form integers and map keys sorted by the bytewise order of
//! their encodings. Decoding is strict: an input is accepted only when it is a
//! single well-formed data item that re-encodes to exactly the same bytes, with
//! no duplicate map keys (docs/PROTOCOL.md §3.1).

use ciborium::value::Value;

/// Why bytes were not accepted as a deterministic CBOR item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CborError {
    /// The bytes are not well-formed CBOR (or are truncated).
    #[error("not well-formed CBOR")]
    NotWellFormed,
    /// Bytes follow the first data item.
    #[error("trailing bytes after the CBOR item")]
    TrailingBytes,
    /// A map holds the same key twice.
    #[error("duplicate map key")]
    DuplicateKey,
    /// The item is well-formed but not in deterministic encoding (key order,
    /// non-shortest integers, indefinite lengths, floats, ...).
    #[error("not deterministically encoded (RFC 8949 §4.2.1)")]
    NotDeterministic,
    /// The item nests deeper than the protocol allows.
    #[error("CBOR nesting too deep")]
    TooDeep,
}

/// Maximum nesting depth accepted anywhere in the protocol.
pub const MAX_DEPTH: usize = 16;

/// Sorts every map of `value` into deterministic order. Fails on duplicate keys.
pub fn canonicalize(value: Value) -> Result<Value, CborError> {
    canonicalize_at(value, 0)
}

fn canonicalize_at(value: Value, depth: usize) -> Result<Value, CborError> {
    if depth > MAX_DEPTH {
        return Err(CborError::TooDeep);
    }
    Ok(match value {
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|v| canonicalize_at(v, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Value::Map(entries) => {
            let mut keyed = Vec::with_capacity(entries.len());
            for (k, v) in entries {
                let k = canonicalize_at(k, depth + 1)?;
                let v = canonicalize_at(v, depth + 1)?;
                keyed.push((encode_value(&k), k, v));
            }
            keyed.sort_by(|a, b| a.0.cmp(&b.0));
            if keyed.windows(2).any(|w| w[0].0 == w[1].0) {
                return Err(CborError::DuplicateKey);
            }
            Value::Map(keyed.into_iter().map(|(_, k, v)| (k, v)).collect())
        }
        Value::Tag(tag, inner) => Value::Tag(tag, Box::new(canonicalize_at(*inner, depth + 1)?)),
        Value::Float(_) => return Err(CborError::NotDeterministic),
        other => other,
    })
}

/// Encodes a value that is already in canonical order.
fn encode_value(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail for the value types biopay builds.
    if ciborium::ser::into_writer(value, &mut out).is_err() {
        out.clear();
    }
    out
}

/// Encodes `value` deterministically (sorting map keys).
pub fn to_deterministic_vec(value: Value) -> Result<Vec<u8>, CborError> {
    Ok(encode_value(&canonicalize(value)?))
}

/// Decodes exactly one deterministic CBOR item from `bytes`.
pub fn from_deterministic_slice(bytes: &[u8]) -> Result<Value, CborError> {
    let mut reader = bytes;
    let value: Value = ciborium::de::from_reader_with_recursion_limit(&mut reader, MAX_DEPTH * 2)
        .map_err(|_| CborError::NotWellFormed)?;
    if !reader.is_empty() {
        return Err(CborError::TrailingBytes);
    }
    check_key_order(&value, 0)?;
    // With keys in order, the item is deterministic exactly when it re-encodes
    // to the same bytes (shortest integers and lengths, definite lengths).
    if encode_value(&value) != bytes {
        return Err(CborError::NotDeterministic);
    }
    Ok(value)
}

/// A map key's position in deterministic order without encoding it: an
/// integer key sorts by (major type, argument), which for shortest-form
/// encodings is exactly the bytewise order of the encodings; any other key
/// falls back to its encoding. Integer keys sort before other keys.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum SortKey {
    Int(u8, u64),
    Encoded(Vec<u8>),
}

fn sort_key(k: &Value) -> SortKey {
    if let Value::Integer(i) = k {
        let i = i128::from(*i);
        if let Ok(u) = u64::try_from(i) {
            return SortKey::Int(0, u);
        }
        if let Ok(n) = u64::try_from(-1 - i) {
            return SortKey::Int(1, n);
        }
    }
    SortKey::Encoded(encode_value(k))
}

/// Checks that every map's keys are strictly increasing in the bytewise order
/// of their encodings (so sorted and without duplicates), and that no floats occur.
fn check_key_order(value: &Value, depth: usize) -> Result<(), CborError> {
    if depth > MAX_DEPTH {
        return Err(CborError::TooDeep);
    }
    match value {
        Value::Array(items) => items.iter().try_for_each(|v| check_key_order(v, depth + 1)),
        Value::Map(entries) => {
            let mut previous: Option<SortKey> = None;
            for (k, v) in entries {
                check_key_order(k, depth + 1)?;
                check_key_order(v, depth + 1)?;
                let encoded = sort_key(k);
                if let Some(p) = &previous {
                    match p.cmp(&encoded) {
                        std::cmp::Ordering::Less => {}
                        std::cmp::Ordering::Equal => return Err(CborError::DuplicateKey),
                        std::cmp::Ordering::Greater => {
                            // Report a duplicate anywhere in the map before the order error.
                            if entries.iter().filter(|(other, _)| other == k).count() > 1 {
                                return Err(CborError::DuplicateKey);
                            }
                            return Err(CborError::NotDeterministic);
                        }
                    }
                }
                previous = Some(encoded);
            }
            Ok(())
        }
        Value::Tag(_, inner) => check_key_order(inner, depth + 1),
        Value::Float(_) => Err(CborError::NotDeterministic),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_keys_in_bytewise_order() {
        let v = Value::Map(vec![
            (Value::Text("a".into()), Value::Integer(1.into())),
            (Value::Integer((-1).into()), Value::Integer(2.into())),
            (Value::Integer(10.into()), Value::Integer(3.into())),
            (Value::Integer(1.into()), Value::Integer(4.into())),
        ]);
        let bytes = to_deterministic_vec(v).unwrap();
        // {1: 4, 10: 3, -1: 2, "a": 1}
        assert_eq!(hex::encode(&bytes), "a401040a032002616101");
        assert!(from_deterministic_slice(&bytes).is_ok());
    }

    #[test]
    fn integer_sort_keys_follow_the_encoding_order() {
        let ints: Vec<i128> = vec![
            0,
            1,
            23,
            24,
            255,
            256,
            65_535,
            65_536,
            4_294_967_296,
            -1,
            -24,
            -25,
            -256,
            -257,
            -65_537,
            i128::from(u64::MAX),
            -1 - i128::from(u64::MAX),
        ];
        let keys: Vec<Value> = ints
            .iter()
            .map(|i| Value::Integer(ciborium::value::Integer::try_from(*i).unwrap()))
            .chain([Value::Text("a".into()), Value::Bytes(vec![0])])
            .collect();
        for a in &keys {
            for b in &keys {
                let by_encoding = encode_value(a).cmp(&encode_value(b));
                assert_eq!(sort_key(a).cmp(&sort_key(b)), by_encoding, "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn rejects_unsorted_duplicate_trailing_and_indefinite() {
        // {2: 0, 1: 0}: unsorted
        assert_eq!(
            from_deterministic_slice(&[0xa2, 0x02, 0x00, 0x01, 0x00]),
            Err(CborError::NotDeterministic)
        );
        // {1: 0, 1: 0}: duplicate
        assert_eq!(
            from_deterministic_slice(&[0xa2, 0x01, 0x00, 0x01, 0x00]),
            Err(CborError::DuplicateKey)
        );
        // 0, 0: trailing
        assert_eq!(
            from_deterministic_slice(&[0x00, 0x00]),
            Err(CborError::TrailingBytes)
        );
        // non-shortest integer 0x18 0x01
        assert_eq!(
            from_deterministic_slice(&[0x18, 0x01]),
            Err(CborError::NotDeterministic)
        );
        // indefinite-length byte string
        assert_eq!(
            from_deterministic_slice(&[0x5f, 0x41, 0x00, 0xff]),
            Err(CborError::NotDeterministic)
        );
        // truncated
        assert_eq!(
            from_deterministic_slice(&[0x58, 0x20, 0x00]),
            Err(CborError::NotWellFormed)
        );
    }
}
