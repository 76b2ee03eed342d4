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
