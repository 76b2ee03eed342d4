//! Serde helpers that write byte fields as lowercase hex strings (the JSON
//! form of every byte field in decisions, records and diagnostics).

/// Serializes bytes as a lowercase hex string.
pub(crate) fn ser_hex<S: serde::Serializer, T: AsRef<[u8]> + ?Sized>(
    v: &T,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(v.as_ref()))
}

/// Serializes optional bytes as a hex string or `null`.
pub(crate) fn ser_opt_hex<S: serde::Serializer>(
    v: &Option<Vec<u8>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_some(&hex::encode(v)),
        None => s.serialize_none(),
    }
}

/// Serializes a list of byte strings as a list of hex strings.
pub(crate) fn ser_hex_list<S: serde::Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(hex::encode))
}
