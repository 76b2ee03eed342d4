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

/// Checks that every map's keys are strictly increasing in the bytewise order
/// of their encodings (so sorted and without duplicates), and that no floats occur.
fn check_key_order(value: &Value, depth: usize) -> Result<(), CborError> {
    if depth > MAX_DEPTH {
        return Err(CborError::TooDeep);
    }
    match value {
        Value::Array(items) => items.iter().try_for_each(|v| check_key_order(v, depth + 1)),
        Value::Map(entries) => {
            let mut previous: Option<Vec<u8>> = None;
            for (k, v) in entries {
                check_key_order(k, depth + 1)?;
                check_key_order(v, depth + 1)?;
                let encoded = encode_value(k);
                if let Some(p) = &previous {
                    match p.as_slice().cmp(encoded.as_slice()) {
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
