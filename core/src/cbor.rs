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
                keyed.push((sort_key(&k), k, v));
            }
            keyed.sort_by(|a, b| a.0.cmp(&b.0));
            if keyed.windows(2).any(|w| w[0].0 == w[1].0) {
                return Err(CborError::DuplicateKey);
            }
            Value::Map(keyed.into_iter().map(|(_, k, v)| (k, v)).collect())
        }
        // Bignums are outside the profile (see `decode`).
        Value::Tag(2 | 3, _) | Value::Float(_) => return Err(CborError::NotDeterministic),
        Value::Tag(tag, inner) => Value::Tag(tag, Box::new(canonicalize_at(*inner, depth + 1)?)),
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

/// Appends the shortest-form head of a data item of major type `major`
/// (0..=6) with argument `arg` (RFC 8949 §3, as §4.2.1 requires).
pub fn write_head(out: &mut Vec<u8>, major: u8, arg: u64) {
    let m = major << 5;
    match arg {
        0..=23 => out.push(m | arg as u8),
        24..=0xff => out.extend_from_slice(&[m | 24, arg as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend_from_slice(&(arg as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 26);
            out.extend_from_slice(&(arg as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend_from_slice(&arg.to_be_bytes());
        }
    }
}

/// Appends a byte string item.
pub fn write_bytes(out: &mut Vec<u8>, b: &[u8]) {
    write_head(out, 2, b.len() as u64);
    out.extend_from_slice(b);
}

/// Appends a text string item.
pub fn write_text(out: &mut Vec<u8>, t: &str) {
    write_head(out, 3, t.len() as u64);
    out.extend_from_slice(t.as_bytes());
}

/// Encodes `value` deterministically (RFC 8949 §4.2.1: shortest-form
/// heads, definite lengths, map keys sorted by their encodings), in one pass
/// straight from the value tree. Refuses what [`decode`] would: floats,
/// bignums, duplicate keys, more than [`MAX_DEPTH`] levels.
pub fn to_deterministic_vec(value: Value) -> Result<Vec<u8>, CborError> {
    let mut out = Vec::with_capacity(256);
    write_value(&mut out, &value, 0)?;
    Ok(out)
}

fn write_value(out: &mut Vec<u8>, value: &Value, depth: usize) -> Result<(), CborError> {
    if depth > MAX_DEPTH {
        return Err(CborError::TooDeep);
    }
    match value {
        Value::Integer(i) => {
            let i = i128::from(*i);
            match (u64::try_from(i), u64::try_from(-1 - i)) {
                (Ok(u), _) => write_head(out, 0, u),
                (_, Ok(n)) => write_head(out, 1, n),
                _ => return Err(CborError::NotDeterministic),
            }
        }
        Value::Bytes(b) => write_bytes(out, b),
        Value::Text(t) => write_text(out, t),
        Value::Array(items) => {
            write_head(out, 4, items.len() as u64);
            for v in items {
                write_value(out, v, depth + 1)?;
            }
        }
        Value::Map(entries) => write_map(out, entries, depth)?,
        // Bignums are outside the profile (see `decode`).
        Value::Tag(2 | 3, _) => return Err(CborError::NotDeterministic),
        Value::Tag(tag, inner) => {
            write_head(out, 6, *tag);
            write_value(out, inner, depth + 1)?;
        }
        Value::Bool(b) => out.push(if *b { 0xf5 } else { 0xf4 }),
        Value::Null => out.push(0xf6),
        _ => return Err(CborError::NotDeterministic),
    }
    Ok(())
}

fn write_map(out: &mut Vec<u8>, entries: &[(Value, Value)], depth: usize) -> Result<(), CborError> {
    write_head(out, 5, entries.len() as u64);
    // Every map biopay builds is keyed by unsigned integers, whose encodings
    // sort as the integers do: no key needs encoding apart.
    let uint_keys: Option<Vec<(u64, &Value)>> = entries
        .iter()
        .map(|(k, v)| match k {
            Value::Integer(i) => u64::try_from(i128::from(*i)).ok().map(|u| (u, v)),
            _ => None,
        })
        .collect();
    if let Some(mut keyed) = uint_keys {
        keyed.sort_unstable_by_key(|(k, _)| *k);
        if keyed.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(CborError::DuplicateKey);
        }
        for (k, v) in keyed {
            write_head(out, 0, k);
            write_value(out, v, depth + 1)?;
        }
        return Ok(());
    }
    let mut keyed = Vec::with_capacity(entries.len());
    for (k, v) in entries {
        let mut key = Vec::new();
        write_value(&mut key, k, depth + 1)?;
        keyed.push((key, v));
    }
    keyed.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    if keyed.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(CborError::DuplicateKey);
    }
    for (key, v) in keyed {
        out.extend_from_slice(&key);
        write_value(out, v, depth + 1)?;
    }
    Ok(())
}

/// Decodes exactly one deterministic CBOR item from `bytes` into a `ciborium`
/// value (for diagnostics and tools; the verifier reads [`decode`]'s borrowed
/// [`Item`] instead).
pub fn from_deterministic_slice(bytes: &[u8]) -> Result<Value, CborError> {
    Ok(decode(bytes)?.to_value())
}

/// One data item of a deterministic CBOR encoding, borrowing its byte and
/// text strings from the input. Only the types the protocol's profile admits
/// exist: no floats, no simple values but `false`, `true` and `null`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item<'a> {
    /// Major type 0.
    Uint(u64),
    /// Major type 1: the value is `-1 - n`.
    Nint(u64),
    /// Major type 2.
    Bytes(&'a [u8]),
    /// Major type 3 (valid UTF-8).
    Text(&'a str),
    /// Major type 4.
    Array(Vec<Item<'a>>),
    /// Major type 5, keys in deterministic order.
    Map(Vec<(Item<'a>, Item<'a>)>),
    /// Major type 6.
    Tag(u64, Box<Item<'a>>),
    /// `false` or `true`.
    Bool(bool),
    /// `null`.
    Null,
}

impl Item<'_> {
    /// The same item as a `ciborium` value.
    pub fn to_value(&self) -> Value {
        match self {
            Item::Uint(u) => Value::Integer((*u).into()),
            Item::Nint(n) => {
                let i = -1 - i128::from(*n);
                // Every major-type-1 argument is a valid ciborium integer.
                Value::Integer(ciborium::value::Integer::try_from(i).unwrap_or(0.into()))
            }
            Item::Bytes(b) => Value::Bytes(b.to_vec()),
            Item::Text(t) => Value::Text((*t).to_owned()),
            Item::Array(items) => Value::Array(items.iter().map(Item::to_value).collect()),
            Item::Map(entries) => Value::Map(
                entries
                    .iter()
                    .map(|(k, v)| (k.to_value(), v.to_value()))
                    .collect(),
            ),
            Item::Tag(t, inner) => Value::Tag(*t, Box::new(inner.to_value())),
            Item::Bool(b) => Value::Bool(*b),
            Item::Null => Value::Null,
        }
    }
}

/// Decodes exactly one deterministic CBOR item from `bytes` in one pass,
/// without copying its strings (docs/PROTOCOL.md §3.1). Accepts exactly the
/// inputs that decode to a value re-encoding to the same bytes with map keys
/// strictly increasing in bytewise order: shortest-form arguments, definite
/// lengths, no floats, no simple values but `false`/`true`/`null`, valid
/// UTF-8 text, at most [`MAX_DEPTH`] levels of nesting, nothing after the item.
pub fn decode(bytes: &[u8]) -> Result<Item<'_>, CborError> {
    let mut r = Reader { bytes, pos: 0 };
    let item = r.item(0)?;
    if r.pos != bytes.len() {
        return Err(CborError::TrailingBytes);
    }
    Ok(item)
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, CborError> {
        let b = *self.bytes.get(self.pos).ok_or(CborError::NotWellFormed)?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CborError> {
        let end = self.pos.checked_add(n).ok_or(CborError::NotWellFormed)?;
        let out = self
            .bytes
            .get(self.pos..end)
            .ok_or(CborError::NotWellFormed)?;
        self.pos = end;
        Ok(out)
    }

    /// The argument of a head whose additional information is `ai`; `None`
    /// for an indefinite length (31). Rejects non-shortest forms.
    fn argument(&mut self, ai: u8) -> Result<Option<u64>, CborError> {
        let (value, min) = match ai {
            0..=23 => return Ok(Some(u64::from(ai))),
            24 => (u64::from(self.byte()?), 24),
            25 => (u64::from(u16::from_be_bytes(self.array()?)), 0x100),
            26 => (u64::from(u32::from_be_bytes(self.array()?)), 0x1_0000),
            27 => (u64::from_be_bytes(self.array()?), 0x1_0000_0000),
            31 => return Ok(None),
            _ => return Err(CborError::NotWellFormed),
        };
        if value < min {
            return Err(CborError::NotDeterministic);
        }
        Ok(Some(value))
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CborError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// A definite length that can fit in the remaining input (every element
    /// takes at least one byte), so no allocation is driven by a forged length.
    fn length(&mut self, arg: Option<u64>, per_element: usize) -> Result<usize, CborError> {
        let n = arg.ok_or(CborError::NotDeterministic)?;
        let n = usize::try_from(n).map_err(|_| CborError::NotWellFormed)?;
        let remaining = self.bytes.len() - self.pos;
        if n.checked_mul(per_element)
            .is_none_or(|need| need > remaining)
        {
            return Err(CborError::NotWellFormed);
        }
        Ok(n)
    }

    fn item(&mut self, depth: usize) -> Result<Item<'a>, CborError> {
        if depth > MAX_DEPTH {
            return Err(CborError::TooDeep);
        }
        let initial = self.byte()?;
        let (major, ai) = (initial >> 5, initial & 0x1f);
        if major == 7 {
            return match ai {
                20 => Ok(Item::Bool(false)),
                21 => Ok(Item::Bool(true)),
                22 => Ok(Item::Null),
                // Floats and `undefined` are not in the profile; other
                // simple values, reserved values and a break (31) outside an
                // indefinite item are malformed.
                23 | 25..=27 => Err(CborError::NotDeterministic),
                _ => Err(CborError::NotWellFormed),
            };
        }
        let arg = self.argument(ai)?;
        match major {
            0 => Ok(Item::Uint(arg.ok_or(CborError::NotWellFormed)?)),
            1 => Ok(Item::Nint(arg.ok_or(CborError::NotWellFormed)?)),
            2 => {
                let n = self.length(arg, 1)?;
                Ok(Item::Bytes(self.take(n)?))
            }
            3 => {
                let n = self.length(arg, 1)?;
                let text =
                    std::str::from_utf8(self.take(n)?).map_err(|_| CborError::NotWellFormed)?;
                Ok(Item::Text(text))
            }
            4 => {
                let n = self.length(arg, 1)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.item(depth + 1)?);
                }
                Ok(Item::Array(items))
            }
            5 => {
                let n = self.length(arg, 2)?;
                let mut entries = Vec::with_capacity(n);
                // Each key's encoding, to check the order bytewise.
                let mut keys: Vec<&'a [u8]> = Vec::with_capacity(n);
                for _ in 0..n {
                    let start = self.pos;
                    let k = self.item(depth + 1)?;
                    keys.push(self.bytes.get(start..self.pos).unwrap_or_default());
                    let v = self.item(depth + 1)?;
                    entries.push((k, v));
                }
                check_order(&keys)?;
                Ok(Item::Map(entries))
            }
            6 => {
                let tag = arg.ok_or(CborError::NotWellFormed)?;
                // Bignums: no protocol field holds one, and a bignum that
                // fits a plain integer has another encoding.
                if tag == 2 || tag == 3 {
                    return Err(CborError::NotDeterministic);
                }
                Ok(Item::Tag(tag, Box::new(self.item(depth + 1)?)))
            }
            _ => Err(CborError::NotWellFormed),
        }
    }
}

/// Map keys (their encodings) must be strictly increasing bytewise. A map
/// that holds a key twice is reported as such, wherever the duplicate is.
fn check_order(keys: &[&[u8]]) -> Result<(), CborError> {
    let mut ordered = true;
    for w in keys.windows(2) {
        match w[0].cmp(w[1]) {
            std::cmp::Ordering::Less => {}
            std::cmp::Ordering::Equal => return Err(CborError::DuplicateKey),
            std::cmp::Ordering::Greater => ordered = false,
        }
    }
    if ordered {
        return Ok(());
    }
    let mut sorted = keys.to_vec();
    sorted.sort_unstable();
    if sorted.windows(2).any(|w| w[0] == w[1]) {
        return Err(CborError::DuplicateKey);
    }
    Err(CborError::NotDeterministic)
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Applies byte edits `(position, byte, operation)`: replace, flip a bit,
    /// insert or delete (positions wrap around the current length).
    pub(crate) fn apply_edits(bytes: &mut Vec<u8>, edits: &[(usize, u8, u8)]) {
        for &(at, byte, op) in edits {
            let i = at % (bytes.len() + 1);
            match op {
                0 if i < bytes.len() => bytes[i] = byte,
                1 if i < bytes.len() => bytes[i] ^= 1 << (byte % 8),
                2 => bytes.insert(i, byte),
                _ if i < bytes.len() => {
                    bytes.remove(i);
                }
                _ => {}
            }
        }
    }

    /// The decoder before [`decode`] existed: ciborium to a `Value` tree, a
    /// key-order walk, and a re-encoding compared with the input. Kept as the
    /// oracle [`decode`] must agree with.
    fn reference_decode(bytes: &[u8]) -> Result<Value, CborError> {
        let mut reader = bytes;
        let value: Value =
            ciborium::de::from_reader_with_recursion_limit(&mut reader, MAX_DEPTH * 2)
                .map_err(|_| CborError::NotWellFormed)?;
        if !reader.is_empty() {
            return Err(CborError::TrailingBytes);
        }
        check_key_order(&value, 0)?;
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

    /// The former encoder (canonicalize the tree, then ciborium), kept as the
    /// oracle of the one-pass [`to_deterministic_vec`].
    fn reference_encoding(v: Value) -> Result<Vec<u8>, CborError> {
        Ok(encode_value(&canonicalize(v)?))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn one_pass_encoder_agrees_with_the_reference(v in arb_value()) {
            let new = to_deterministic_vec(v.clone());
            let old = reference_encoding(v);
            prop_assert_eq!(new.is_ok(), old.is_ok(), "{:?} vs {:?}", new, old);
            if let (Ok(new), Ok(old)) = (new, old) {
                prop_assert_eq!(new, old);
            }
        }
    }

    #[test]
    fn one_pass_encoder_refuses_depth_as_the_reference_does() {
        for depth in [MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, MAX_DEPTH + 2] {
            for leaf in [Value::Null, Value::Map(vec![]), Value::Array(vec![])] {
                let mut v = leaf;
                for i in 0..depth {
                    v = if i % 2 == 0 {
                        Value::Array(vec![v])
                    } else {
                        Value::Map(vec![(Value::Integer(1.into()), v)])
                    };
                }
                let (new, old) = (to_deterministic_vec(v.clone()), reference_encoding(v));
                assert_eq!(new, old, "depth {depth}");
            }
        }
        assert!(to_deterministic_vec(Value::Float(1.0)).is_err());
        assert!(to_deterministic_vec(Value::Tag(2, Box::new(Value::Bytes(vec![1])))).is_err());
    }

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

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<u64>().prop_map(|u| Value::Integer(u.into())),
            any::<i64>().prop_map(|i| Value::Integer(i.into())),
            (0u64..30).prop_map(|u| Value::Integer(u.into())),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::Bytes),
            "[a-z\u{e9}\u{4e2d}]{0,12}".prop_map(Value::Text),
            any::<bool>().prop_map(Value::Bool),
            Just(Value::Null),
        ];
        leaf.prop_recursive(5, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::vec((inner.clone(), inner.clone()), 0..6)
                    .prop_map(Value::Map),
                (0u64..300, inner).prop_map(|(t, v)| Value::Tag(t, Box::new(v))),
            ]
        })
    }

    fn has_bignum_tag(v: &Value) -> bool {
        match v {
            Value::Tag(2 | 3, _) => true,
            Value::Array(items) => items.iter().any(has_bignum_tag),
            Value::Map(entries) => entries
                .iter()
                .any(|(k, v)| has_bignum_tag(k) || has_bignum_tag(v)),
            Value::Tag(_, inner) => has_bignum_tag(inner),
            _ => false,
        }
    }

    /// `decode` accepts exactly what the reference accepts, gives the same
    /// value, and rejects with the same class of error.
    fn agree(bytes: &[u8]) -> Result<(), TestCaseError> {
        let new = decode(bytes).map(|i| i.to_value());
        let old = reference_decode(bytes);
        match (&new, &old) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(_), Err(_)) => {}
            // The one intended difference: bignum tags are refused outright.
            (Err(CborError::NotDeterministic), Ok(v)) if has_bignum_tag(v) => {}
            _ => prop_assert!(
                false,
                "{}: decode {:?}, reference {:?}",
                hex::encode(bytes),
                new,
                old
            ),
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn agrees_with_the_reference_on_canonical_items(v in arb_value()) {
            // Unsorted or duplicate maps come out of canonicalize as an error;
            // what is encoded is the raw (possibly non-deterministic) item.
            let raw = encode_value(&v);
            agree(&raw)?;
            let bignum = has_bignum_tag(&v);
            if let Ok(canonical) = to_deterministic_vec(v) {
                prop_assert_eq!(decode(&canonical).is_ok(), !bignum);
                agree(&canonical)?;
            }
        }

        #[test]
        fn agrees_with_the_reference_on_mutations(
            v in arb_value(),
            edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..4), 1..4),
        ) {
            let Ok(mut bytes) = to_deterministic_vec(v) else { return Ok(()); };
            apply_edits(&mut bytes, &edits);
            agree(&bytes)?;
        }

        #[test]
        fn agrees_with_the_reference_on_random_bytes(
            bytes in proptest::collection::vec(any::<u8>(), 0..24)
        ) {
            agree(&bytes)?;
        }
    }

    #[test]
    fn decode_reports_each_error_class() {
        assert_eq!(
            decode(&[0xa2, 0x02, 0x00, 0x01, 0x00]),
            Err(CborError::NotDeterministic)
        );
        assert_eq!(
            decode(&[0xa2, 0x01, 0x00, 0x01, 0x00]),
            Err(CborError::DuplicateKey)
        );
        // {2: 0, 1: 0, 2: 0}: out of order and a duplicate that is not adjacent
        assert_eq!(
            decode(&[0xa3, 0x02, 0x00, 0x01, 0x00, 0x02, 0x00]),
            Err(CborError::DuplicateKey)
        );
        assert_eq!(decode(&[0x00, 0x00]), Err(CborError::TrailingBytes));
        assert_eq!(decode(&[0x18, 0x01]), Err(CborError::NotDeterministic));
        assert_eq!(
            decode(&[0x19, 0x00, 0xff]),
            Err(CborError::NotDeterministic)
        );
        assert_eq!(
            decode(&[0x5f, 0x41, 0x00, 0xff]),
            Err(CborError::NotDeterministic)
        );
        assert_eq!(
            decode(&[0xfb, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(CborError::NotDeterministic)
        );
        assert_eq!(decode(&[0x58, 0x20, 0x00]), Err(CborError::NotWellFormed));
        assert_eq!(decode(&[0x62, 0xff, 0xfe]), Err(CborError::NotWellFormed));
        assert_eq!(decode(&[0x1c]), Err(CborError::NotWellFormed));
        assert_eq!(decode(&[0xff]), Err(CborError::NotWellFormed));
        // An array claiming 2^32 elements in a 5-byte input: no allocation, an error.
        assert_eq!(
            decode(&[0x9a, 0xff, 0xff, 0xff, 0xff]),
            Err(CborError::NotWellFormed)
        );
        let mut deep = vec![0x81; MAX_DEPTH + 1];
        deep.push(0x00);
        assert_eq!(decode(&deep), Err(CborError::TooDeep));
        assert!(decode(&deep[1..]).is_ok());
    }

    #[test]
    fn bignums_are_refused() {
        // 2^64 as a bignum: the reference accepted it; no field can hold it.
        let big = [0xc2, 0x49, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(reference_decode(&big).is_ok());
        assert_eq!(decode(&big), Err(CborError::NotDeterministic));
    }

    #[test]
    fn decode_borrows_strings() {
        let bytes = [0x82, 0x42, 0xAA, 0xBB, 0x61, b'x'];
        let Ok(Item::Array(items)) = decode(&bytes) else {
            panic!("not an array");
        };
        assert_eq!(items, vec![Item::Bytes(&bytes[2..4]), Item::Text("x")]);
        assert_eq!(items[0], Item::Bytes(&[0xAA, 0xBB]));
    }
}
