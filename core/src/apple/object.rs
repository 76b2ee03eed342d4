//! The CBOR objects App Attest returns and their authenticator data
//! (docs/PROTOCOL.md §13.4, §13.5).
//!
//! Apple does not promise deterministic CBOR, so these objects are read with
//! ciborium (any valid encoding) and then held to Apple's shape: a map with
//! exactly the documented text keys, each once, of the documented types, and
//! nothing after the item.

use super::AppAttestError;
use ciborium::value::Value;

/// Flags bit AT: attested credential data follows the counter.
const FLAG_AT: u8 = 0x40;
/// Flags bit ED: extension data follows.
const FLAG_ED: u8 = 0x80;
/// rpIdHash (32) | flags (1) | counter (4).
pub(crate) const AUTH_DATA_HEADER_LEN: usize = 37;

/// An attestation object: `{fmt, attStmt: {x5c, receipt}, authData}`.
pub(crate) struct AttestationObject {
    pub fmt: String,
    pub x5c: Vec<Vec<u8>>,
    pub receipt: Vec<u8>,
    pub auth_data: Vec<u8>,
}

/// An assertion object: `{signature, authenticatorData}`.
pub(crate) struct AssertionObject {
    pub signature: Vec<u8>,
    pub authenticator_data: Vec<u8>,
}

/// rpIdHash | flags | counter.
pub(crate) struct AuthDataHeader {
    pub rp_id_hash: [u8; 32],
    pub flags: u8,
    pub counter: u32,
}

/// The attestation's authenticator data, with its attested credential data.
pub(crate) struct AttestedAuthData {
    pub header: AuthDataHeader,
    pub aaguid: [u8; 16],
    pub credential_id: Vec<u8>,
    /// The COSE_Key after the credential id.
    pub credential_public_key: Value,
}

fn malformed(field: &'static str, reason: &'static str) -> AppAttestError {
    AppAttestError::Malformed { field, reason }
}

/// Exactly one CBOR item, nothing after it.
fn decode(bytes: &[u8], max: usize, field: &'static str) -> Result<Value, AppAttestError> {
    if bytes.len() > max {
        return Err(AppAttestError::TooLarge(bytes.len()));
    }
    let mut rest = bytes;
    let value: Value =
        ciborium::de::from_reader(&mut rest).map_err(|_| malformed(field, "not CBOR"))?;
    if !rest.is_empty() {
        return Err(malformed(field, "bytes after the CBOR item"));
    }
    Ok(value)
}

/// The values of a map whose keys must be exactly `keys` (text), each once.
fn exact_map<const N: usize>(
    value: Value,
    field: &'static str,
    keys: [&'static str; N],
) -> Result<[Value; N], AppAttestError> {
    let Value::Map(entries) = value else {
        return Err(malformed(field, "not a map"));
    };
    let mut found: [Option<Value>; N] = [const { None }; N];
    for (k, v) in entries {
        let Value::Text(k) = k else {
            return Err(malformed(field, "a key is not text"));
        };
        let i = keys
            .iter()
            .position(|known| *known == k)
            .ok_or(malformed(field, "unknown key"))?;
        if found[i].replace(v).is_some() {
            return Err(malformed(field, "duplicate key"));
        }
    }
    let mut out: [Value; N] = [const { Value::Null }; N];
    for (slot, (value, key)) in out.iter_mut().zip(found.into_iter().zip(keys)) {
        *slot = value.ok_or(malformed(key, "missing"))?;
    }
    Ok(out)
}

fn bytes(value: Value, field: &'static str) -> Result<Vec<u8>, AppAttestError> {
    match value {
        Value::Bytes(b) => Ok(b),
        _ => Err(malformed(field, "not a byte string")),
    }
}

/// Parses an attestation object (step I1, apart from the `fmt` value).
pub(crate) fn parse_attestation(
    object: &[u8],
    max: usize,
) -> Result<AttestationObject, AppAttestError> {
    let [fmt, att_stmt, auth_data] = exact_map(
        decode(object, max, "attestation")?,
        "attestation",
        ["fmt", "attStmt", "authData"],
    )?;
    let Value::Text(fmt) = fmt else {
        return Err(malformed("fmt", "not text"));
    };
    let [x5c, receipt] = exact_map(att_stmt, "attStmt", ["x5c", "receipt"])?;
    let Value::Array(x5c) = x5c else {
        return Err(malformed("x5c", "not an array"));
    };
    let x5c = x5c
        .into_iter()
        .map(|c| bytes(c, "x5c"))
        .collect::<Result<Vec<_>, _>>()?;
    if x5c.is_empty() {
        return Err(malformed("x5c", "empty"));
    }
    Ok(AttestationObject {
        fmt,
        x5c,
        receipt: bytes(receipt, "receipt")?,
        auth_data: bytes(auth_data, "authData")?,
    })
}

/// Parses an assertion object (step J1).
pub(crate) fn parse_assertion(
    object: &[u8],
    max: usize,
) -> Result<AssertionObject, AppAttestError> {
    let [signature, authenticator_data] = exact_map(
        decode(object, max, "assertion")?,
        "assertion",
        ["signature", "authenticatorData"],
    )?;
    Ok(AssertionObject {
        signature: bytes(signature, "signature")?,
        authenticator_data: bytes(authenticator_data, "authenticatorData")?,
    })
}

fn header(data: &[u8]) -> Result<AuthDataHeader, AppAttestError> {
    let too_short = AppAttestError::AuthenticatorData("shorter than 37 bytes");
    let rp_id_hash: [u8; 32] = data
        .get(..32)
        .and_then(|b| b.try_into().ok())
        .ok_or(too_short.clone())?;
    let flags = *data.get(32).ok_or(too_short.clone())?;
    let counter: [u8; 4] = data
        .get(33..37)
        .and_then(|b| b.try_into().ok())
        .ok_or(too_short)?;
    Ok(AuthDataHeader {
        rp_id_hash,
        flags,
        counter: u32::from_be_bytes(counter),
    })
}

/// An assertion's authenticator data: exactly rpIdHash | flags | counter.
/// Real assertions set the AT flag with no attested credential data after
/// it, so the flags are not interpreted (docs/PROTOCOL.md §13.5).
pub(crate) fn parse_assertion_auth_data(data: &[u8]) -> Result<AuthDataHeader, AppAttestError> {
    let h = header(data)?;
    if data.len() != AUTH_DATA_HEADER_LEN {
        return Err(AppAttestError::AuthenticatorData(
            "assertion authenticator data is not exactly 37 bytes",
        ));
    }
    Ok(h)
}

/// An attestation's authenticator data: header, AT set and ED clear,
/// aaguid (16), credentialId length (2, big-endian), credentialId, one
/// COSE_Key, nothing after it.
pub(crate) fn parse_attested_auth_data(data: &[u8]) -> Result<AttestedAuthData, AppAttestError> {
    let bad = AppAttestError::AuthenticatorData;
    let header = header(data)?;
    if header.flags & FLAG_AT == 0 {
        return Err(bad("AT flag clear: no attested credential data"));
    }
    if header.flags & FLAG_ED != 0 {
        return Err(bad("ED flag set: extensions are not expected"));
    }
    let rest = &data[AUTH_DATA_HEADER_LEN..];
    let aaguid: [u8; 16] = rest
        .get(..16)
        .and_then(|b| b.try_into().ok())
        .ok_or(bad("truncated aaguid"))?;
    let len_bytes: [u8; 2] = rest
        .get(16..18)
        .and_then(|b| b.try_into().ok())
        .ok_or(bad("truncated credentialId length"))?;
    let len = usize::from(u16::from_be_bytes(len_bytes));
    let credential_id = rest
        .get(18..18 + len)
        .ok_or(bad("truncated credentialId"))?
        .to_vec();
    let mut key_bytes = &rest[18 + len..];
    let credential_public_key: Value = ciborium::de::from_reader(&mut key_bytes)
        .map_err(|_| bad("credential public key is not CBOR"))?;
    if !key_bytes.is_empty() {
        return Err(bad("bytes after the credential public key"));
    }
    Ok(AttestedAuthData {
        header,
        aaguid,
        credential_id,
        credential_public_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::ser::into_writer(v, &mut out).unwrap();
        out
    }

    fn t(s: &str) -> Value {
        Value::Text(s.into())
    }

    fn stmt() -> Value {
        Value::Map(vec![
            (t("x5c"), Value::Array(vec![Value::Bytes(vec![1])])),
            (t("receipt"), Value::Bytes(vec![2])),
        ])
    }

    fn object(entries: Vec<(Value, Value)>) -> Vec<u8> {
        enc(&Value::Map(entries))
    }

    fn reason(r: Result<AttestationObject, AppAttestError>) -> &'static str {
        match r {
            Err(AppAttestError::Malformed { reason, .. }) => reason,
            Err(e) => panic!("{e}"),
            Ok(_) => "accepted",
        }
    }

    #[test]
    fn attestation_map_must_have_exactly_apples_keys() {
        let good = vec![
            (t("fmt"), t("apple-appattest")),
            (t("attStmt"), stmt()),
            (t("authData"), Value::Bytes(vec![3])),
        ];
        assert_eq!(
            reason(parse_attestation(&object(good.clone()), 1024)),
            "accepted"
        );
        // Any key order is read (Apple does not promise deterministic CBOR).
        let mut reordered = good.clone();
        reordered.reverse();
        assert_eq!(
            reason(parse_attestation(&object(reordered), 1024)),
            "accepted"
        );
        let mut dup = good.clone();
        dup.push((t("fmt"), t("apple-appattest")));
        assert_eq!(
            reason(parse_attestation(&object(dup), 1024)),
            "duplicate key"
        );
        let mut unknown = good.clone();
        unknown.push((t("extra"), Value::Null));
        assert_eq!(
            reason(parse_attestation(&object(unknown), 1024)),
            "unknown key"
        );
        let mut int_key = good.clone();
        int_key.push((Value::from(1), Value::Null));
        assert_eq!(
            reason(parse_attestation(&object(int_key), 1024)),
            "a key is not text"
        );
        assert_eq!(
            reason(parse_attestation(&object(good[..2].to_vec()), 1024)),
            "missing"
        );
        let mut empty_x5c = good.clone();
        empty_x5c[1].1 = Value::Map(vec![
            (t("x5c"), Value::Array(vec![])),
            (t("receipt"), Value::Bytes(vec![2])),
        ]);
        assert_eq!(reason(parse_attestation(&object(empty_x5c), 1024)), "empty");
        let mut text_auth = good.clone();
        text_auth[2].1 = t("x");
        assert_eq!(
            reason(parse_attestation(&object(text_auth), 1024)),
            "not a byte string"
        );
        assert!(matches!(
            parse_attestation(&object(good), 8),
            Err(AppAttestError::TooLarge(_))
        ));
    }

    #[test]
    fn a_non_shortest_but_valid_encoding_is_read() {
        // {"signature": h'01', "authenticatorData": h'00…'} with the
        // signature's length in a one-byte argument (0x58 0x01).
        let mut bytes = vec![0xa2, 0x69];
        bytes.extend_from_slice(b"signature");
        bytes.extend_from_slice(&[0x58, 0x01, 0x01, 0x71]);
        bytes.extend_from_slice(b"authenticatorData");
        bytes.extend_from_slice(&[0x58, 37]);
        bytes.extend_from_slice(&[0u8; 37]);
        let a = parse_assertion(&bytes, 1024).unwrap();
        assert_eq!(a.signature, vec![1]);
        assert!(parse_assertion_auth_data(&a.authenticator_data).is_ok());
    }

    #[test]
    fn assertion_authenticator_data_is_exactly_37_bytes_whatever_the_flags() {
        let mut data = vec![0u8; 37];
        data[32] = 0x40; // AT set, as real devices do, with nothing after it.
        assert_eq!(parse_assertion_auth_data(&data).unwrap().flags, 0x40);
        data[36] = 5;
        assert_eq!(parse_assertion_auth_data(&data).unwrap().counter, 5);
        assert!(parse_assertion_auth_data(&data[..36]).is_err());
        data.push(0);
        assert!(parse_assertion_auth_data(&data).is_err());
    }

    fn attested(flags: u8, cred_len: u16, cred: &[u8], tail: &[u8]) -> Vec<u8> {
        let mut d = vec![0u8; 32];
        d.push(flags);
        d.extend_from_slice(&[0, 0, 0, 0]);
        d.extend_from_slice(b"appattestdevelop");
        d.extend_from_slice(&cred_len.to_be_bytes());
        d.extend_from_slice(cred);
        d.extend_from_slice(tail);
        d
    }

    #[test]
    fn attestation_authenticator_data_is_read_strictly() {
        let key = enc(&Value::Map(vec![(Value::from(1), Value::from(2))]));
        let good = attested(0x40, 32, &[7; 32], &key);
        let a = parse_attested_auth_data(&good).unwrap();
        assert_eq!(a.aaguid, *b"appattestdevelop");
        assert_eq!(a.credential_id, vec![7; 32]);
        let bad = |d: &[u8]| match parse_attested_auth_data(d) {
            Err(AppAttestError::AuthenticatorData(r)) => r,
            Err(e) => panic!("{e}"),
            Ok(_) => "accepted",
        };
        assert_eq!(
            bad(&attested(0x00, 32, &[7; 32], &key)),
            "AT flag clear: no attested credential data"
        );
        assert_eq!(
            bad(&attested(0xc0, 32, &[7; 32], &key)),
            "ED flag set: extensions are not expected"
        );
        assert_eq!(
            bad(&[good.as_slice(), &[0]].concat()),
            "bytes after the credential public key"
        );
        assert_eq!(
            bad(&attested(0x40, 33, &[7; 32], &[])),
            "truncated credentialId"
        );
        assert_eq!(
            bad(&attested(0x40, 32, &[7; 32], &[])),
            "credential public key is not CBOR"
        );
        for n in [0, 20, 36, 40, 53, 54] {
            assert_ne!(bad(&good[..n]), "accepted", "{n} bytes");
        }
    }
}
