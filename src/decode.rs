//! `biopay decode`: any protocol message as JSON.

use biopay_core::{
    cbor, cose, messages::peek_kind, Deregistration, EnrollmentChange, KeyAttestation, Message,
    MessageKind, PaymentAssertion, PaymentChallenge, PlatformKeyRegistration,
    RegistrationChallenge,
};
use serde_json::{json, Value};

/// Why bytes could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeFailure {
    /// Not a biopay message.
    #[error("not a biopay message: {0}")]
    NotAMessage(String),
}

/// Accepts raw bytes, or the same bytes as hex text.
pub fn normalize_input(input: &[u8]) -> Vec<u8> {
    let trimmed: Vec<u8> = input
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if !trimmed.is_empty() && trimmed.len() % 2 == 0 && trimmed.iter().all(u8::is_ascii_hexdigit) {
        if let Ok(bytes) = hex::decode(&trimmed) {
            return bytes;
        }
    }
    input.to_vec()
}

fn message_json(payload: &[u8]) -> Result<(MessageKind, Value), DecodeFailure> {
    let value = cbor::from_deterministic_slice(payload)
        .map_err(|e| DecodeFailure::NotAMessage(e.to_string()))?;
    let kind = peek_kind(&value)
        .ok_or_else(|| DecodeFailure::NotAMessage("no message kind (key 1)".into()))?;
    let err = |e: biopay_core::DecodeError| DecodeFailure::NotAMessage(e.to_string());
    let json = match kind {
        MessageKind::RegistrationChallenge => {
            serde_json::to_value(RegistrationChallenge::from_cbor(payload).map_err(err)?)
        }
        MessageKind::KeyAttestation => {
            serde_json::to_value(KeyAttestation::from_cbor(payload).map_err(err)?)
        }
        MessageKind::PaymentChallenge => {
            serde_json::to_value(PaymentChallenge::from_cbor(payload).map_err(err)?)
        }
        MessageKind::PaymentAssertion => {
            serde_json::to_value(PaymentAssertion::from_cbor(payload).map_err(err)?)
        }
        MessageKind::Deregistration => {
            serde_json::to_value(Deregistration::from_cbor(payload).map_err(err)?)
        }
        MessageKind::EnrollmentChange => {
            serde_json::to_value(EnrollmentChange::from_cbor(payload).map_err(err)?)
        }
        MessageKind::PlatformKeyRegistration => {
            serde_json::to_value(PlatformKeyRegistration::from_cbor(payload).map_err(err)?)
        }
        MessageKind::AppleKeyRegistration => serde_json::to_value(
            biopay_core::AppleKeyRegistration::from_cbor(payload).map_err(err)?,
        ),
        _ => return Err(DecodeFailure::NotAMessage("unsupported kind".into())),
    }
    .map_err(|e| DecodeFailure::NotAMessage(e.to_string()))?;
    Ok((kind, json))
}

/// The `alg` of a statement's protected header as written (e.g. `"ES256"`,
/// `"ES384"`), `null` when absent: the viewer shows what is there, the
/// verifier decides what is acceptable.
fn header_alg(bytes: &[u8]) -> Value {
    use coset::{Algorithm, TaggedCborSerializable};
    match coset::CoseSign1::from_tagged_slice(bytes)
        .ok()
        .and_then(|s| s.protected.header.alg)
    {
        Some(Algorithm::Assigned(a)) => json!(format!("{a:?}")),
        Some(Algorithm::PrivateUse(i)) => json!(i),
        Some(Algorithm::Text(t)) => json!(t),
        None => Value::Null,
    }
}

fn kind_name(kind: MessageKind) -> Value {
    serde_json::to_value(kind).unwrap_or(Value::Null)
}

/// Decodes a message (a plain CBOR challenge or a COSE_Sign1 statement) to
/// JSON. Signatures are *not* verified: this is a viewer.
pub fn decode_to_json(input: &[u8]) -> Result<Value, DecodeFailure> {
    let bytes = normalize_input(input);
    if bytes.first() == Some(&0xd2) {
        let (payload, chain) = cose::peek_payload(&bytes)
            .ok_or_else(|| DecodeFailure::NotAMessage("malformed COSE_Sign1".into()))?;
        let (kind, body) = message_json(&payload)?;
        let strict = match kind {
            MessageKind::PlatformKeyRegistration => cose::parse_sign1_any_form(&bytes, true),
            MessageKind::AppleKeyRegistration => cose::parse_sign1_any_form(&bytes, false),
            _ => cose::parse_sign1(&bytes, kind == MessageKind::KeyAttestation),
        };
        let certs: Vec<Value> = chain.iter().map(|c| certificate_json(c)).collect();
        let signature = strict
            .as_ref()
            .map(|s| hex::encode(&s.signature))
            .unwrap_or_default();
        return Ok(json!({
            "kind": kind_name(kind),
            "cose": {
                "alg": header_alg(&bytes),
                "well_formed": strict.is_ok(),
                "error": strict.as_ref().err().map(ToString::to_string),
                "x5chain": certs,
                "signature": signature,
                "signature_verified": false,
            },
            "payload": body,
        }));
    }
    let (kind, body) = message_json(&bytes)?;
    Ok(json!({ "kind": kind_name(kind), "payload": body }))
}

fn certificate_json(der: &[u8]) -> Value {
    use x509_parser::prelude::{FromDer, X509Certificate};
    match X509Certificate::from_der(der) {
        Ok((_, c)) => json!({
            "subject": c.subject().to_string(),
            "issuer": c.issuer().to_string(),
            "serial": c.raw_serial_as_string(),
            "not_before": c.validity().not_before.to_rfc2822().unwrap_or_default(),
            "not_after": c.validity().not_after.to_rfc2822().unwrap_or_default(),
            "is_ca": c.is_ca(),
        }),
        Err(_) => json!({ "malformed": true, "der_len": der.len() }),
    }
}
