//! COSE_Sign1 statements (RFC 9052 §4.2) with ES256 (RFC 9053 §2.1), built and
//! parsed with `coset`. docs/PROTOCOL.md §3.2.
//!
//! The protected header holds `alg` (1) = ES256 (-7) and, for key
//! attestations only, `x5chain` (33, RFC 9360), leaf first. No other header
//! parameter is allowed and the unprotected header is empty. External AAD is
//! empty. The whole statement must be deterministically encoded.

use crate::cbor::{self, CborError, Item};
use ciborium::value::Value;
use coset::{iana, CoseSign1, CoseSign1Builder, HeaderBuilder, Label, TaggedCborSerializable};

/// Length of an ES256 signature in COSE's fixed form (r || s).
pub const ES256_SIG_LEN: usize = 64;

/// Longest P-256 ECDSA signature in ASN.1 DER form.
pub const ES256_DER_MAX_LEN: usize = 72;

/// Why bytes are not an acceptable COSE_Sign1 statement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CoseError {
    /// Not deterministic CBOR.
    #[error("statement: {0}")]
    Cbor(#[from] CborError),
    /// Not a tagged (18) COSE_Sign1 structure.
    #[error("not a tagged COSE_Sign1")]
    NotCoseSign1,
    /// The payload is detached or empty.
    #[error("COSE_Sign1 payload missing")]
    MissingPayload,
    /// `alg` is absent or not ES256.
    #[error("alg must be ES256 (-7)")]
    UnsupportedAlgorithm,
    /// A header parameter other than `alg` and `x5chain`, or a non-empty unprotected header.
    #[error("unexpected COSE header parameter")]
    UnexpectedHeader,
    /// `x5chain` is present where not allowed, absent where required, or malformed.
    #[error("x5chain missing, malformed or not allowed")]
    X5Chain,
    /// The signature is not 64 bytes (or, where DER is admitted, not 8 to 72 bytes).
    #[error("ES256 signature must be 64 bytes")]
    SignatureLength,
}

/// A parsed statement whose signature has not been checked yet.
#[derive(Debug, Clone)]
pub struct Sign1 {
    /// The payload bytes (a protocol message).
    pub payload: Vec<u8>,
    /// The `x5chain` certificates, leaf first (empty when absent).
    pub x5chain: Vec<Vec<u8>>,
    /// r || s (or DER, from [`parse_sign1_any_form`]).
    pub signature: Vec<u8>,
    /// The Sig_structure bytes the signature covers (RFC 9052 §4.4).
    pub to_be_signed: Vec<u8>,
}

/// Builds a tagged COSE_Sign1 over `payload`. `sign` receives the
/// Sig_structure and returns the 64-byte ES256 signature.
pub fn sign1<E>(
    payload: Vec<u8>,
    x5chain: &[Vec<u8>],
    sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, E>,
) -> Result<Vec<u8>, E> {
    let unsigned = UnsignedSign1::new(payload, x5chain);
    let signature = sign(&unsigned.to_be_signed())?;
    Ok(unsigned.finish(signature))
}

/// A COSE_Sign1 waiting for its signature, for a signer that answers later
/// (a biometric prompt awaited asynchronously): [`Self::to_be_signed`] is
/// what the key signs, [`Self::finish`] attaches the signature. Same
/// encoding as [`sign1`], which is built on it.
#[derive(Debug, Clone)]
pub struct UnsignedSign1 {
    sign1: CoseSign1,
}

impl UnsignedSign1 {
    /// The statement over `payload`, with `x5chain` (leaf first) in the
    /// protected header when not empty.
    pub fn new(payload: Vec<u8>, x5chain: &[Vec<u8>]) -> Self {
        let mut header = HeaderBuilder::new().algorithm(iana::Algorithm::ES256);
        match x5chain {
            [] => {}
            [one] => {
                header = header.value(
                    iana::HeaderParameter::X5Chain as i64,
                    Value::Bytes(one.clone()),
                )
            }
            many => {
                header = header.value(
                    iana::HeaderParameter::X5Chain as i64,
                    Value::Array(many.iter().map(|c| Value::Bytes(c.clone())).collect()),
                )
            }
        }
        let sign1 = CoseSign1Builder::new()
            .protected(header.build())
            .payload(payload)
            .build();
        Self { sign1 }
    }

    /// The Sig_structure (RFC 9052 §4.4, empty external AAD) the key signs.
    pub fn to_be_signed(&self) -> Vec<u8> {
        self.sign1.tbs_data(b"")
    }

    /// The tagged statement with `signature` (64-byte ES256, r || s).
    pub fn finish(mut self, signature: Vec<u8>) -> Vec<u8> {
        self.sign1.signature = signature;
        // Serialising a structure built above cannot fail.
        self.sign1.to_tagged_vec().unwrap_or_default()
    }
}

/// Parses a statement. `x5chain_required` says whether the statement kind
/// carries an attestation chain (key attestations) or must not (all others).
/// The signature must be 64 bytes (COSE's fixed r || s form).
pub fn parse_sign1(bytes: &[u8], x5chain_required: bool) -> Result<Sign1, CoseError> {
    let sign1 = parse_sign1_any_form(bytes, x5chain_required)?;
    if sign1.signature.len() != ES256_SIG_LEN {
        return Err(CoseError::SignatureLength);
    }
    Ok(sign1)
}

/// Like [`parse_sign1`], but also admits a signature in ASN.1 DER form (8 to
/// [`ES256_DER_MAX_LEN`] bytes). Only for statements whose signer may be a
/// platform keystore (docs/PROTOCOL.md §12.3): the verifier decides which
/// form it accepts once it knows the credential kind.
pub fn parse_sign1_any_form(bytes: &[u8], x5chain_required: bool) -> Result<Sign1, CoseError> {
    // One strict pass over the statement; every string is borrowed from it.
    let Item::Tag(18, inner) = cbor::decode(bytes)? else {
        return Err(CoseError::NotCoseSign1);
    };
    let Item::Array(parts) = *inner else {
        return Err(CoseError::NotCoseSign1);
    };
    let [Item::Bytes(protected), Item::Map(unprotected), payload, Item::Bytes(signature)] =
        parts.as_slice()
    else {
        return Err(CoseError::NotCoseSign1);
    };
    let payload = match payload {
        Item::Bytes(p) => Some(*p),
        Item::Null => None,
        _ => return Err(CoseError::NotCoseSign1),
    };
    if !unprotected.iter().all(|(label, _)| is_label(label)) {
        return Err(CoseError::NotCoseSign1);
    }
    // docs/PROTOCOL.md §3.2: rows 1 and 2 (step 1) fail at once; a row 3
    // defect of the protected header (step 2) waits until the payload check
    // (row 4, step 1) has run, so that the first failing step is the one
    // reported (§6 rule 1).
    let header = match cbor::decode(protected) {
        Ok(Item::Map(entries)) if entries.iter().all(|(label, _)| is_label(label)) => Ok(entries),
        // Well-formed but not deterministic (row 3).
        Err(CborError::NotDeterministic | CborError::DuplicateKey) => {
            Err(CoseError::UnexpectedHeader)
        }
        // The empty protected header (h'', RFC 9052 §3's "no protected
        // parameters") lacks alg: a header error (row 3).
        _ if protected.is_empty() => Err(CoseError::UnexpectedHeader),
        // Not well-formed, deeper than §3.1 rule 5 allows, or not a map of
        // labels (row 2).
        _ => return Err(CoseError::NotCoseSign1),
    };
    let payload = match payload {
        Some(p) if !p.is_empty() => p,
        _ => return Err(CoseError::MissingPayload),
    };
    let header = header?;
    let alg = header.iter().find(|(label, _)| *label == Item::Uint(1));
    if !matches!(alg, Some((_, Item::Nint(6)))) {
        return Err(CoseError::UnsupportedAlgorithm);
    }
    if !unprotected.is_empty() {
        return Err(CoseError::UnexpectedHeader);
    }
    let mut x5chain = Vec::new();
    for (label, value) in &header {
        match (label, value) {
            (Item::Uint(1), _) => {}
            (Item::Uint(33), Item::Bytes(one)) => x5chain.push(one.to_vec()),
            (Item::Uint(33), Item::Array(items)) if items.len() >= 2 => {
                for item in items {
                    let Item::Bytes(cert) = item else {
                        return Err(CoseError::X5Chain);
                    };
                    x5chain.push(cert.to_vec());
                }
            }
            (Item::Uint(33), _) => return Err(CoseError::X5Chain),
            _ => return Err(CoseError::UnexpectedHeader),
        }
    }
    if x5chain.is_empty() == x5chain_required {
        return Err(CoseError::X5Chain);
    }
    if !(8..=ES256_DER_MAX_LEN).contains(&signature.len()) {
        return Err(CoseError::SignatureLength);
    }
    Ok(Sign1 {
        payload: payload.to_vec(),
        x5chain,
        signature: signature.to_vec(),
        to_be_signed: sig_structure(protected, payload),
    })
}

/// A COSE header label: an integer or a text string (RFC 9052 §3).
fn is_label(item: &Item<'_>) -> bool {
    matches!(item, Item::Uint(_) | Item::Nint(_) | Item::Text(_))
}

/// The deterministic encoding of `["Signature1", protected, h'', payload]`
/// (RFC 9052 §4.4), written directly.
fn sig_structure(protected: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 9 + protected.len() + 9 + payload.len());
    out.push(0x84);
    out.push(0x6a);
    out.extend_from_slice(b"Signature1");
    cbor::write_bytes(&mut out, protected);
    out.push(0x40);
    cbor::write_bytes(&mut out, payload);
    out
}

/// Reads the payload of a tagged COSE_Sign1 without checking headers or
/// signature (for `biopay decode` and diagnostics only).
pub fn peek_payload(bytes: &[u8]) -> Option<(Vec<u8>, Vec<Vec<u8>>)> {
    let sign1 = CoseSign1::from_tagged_slice(bytes).ok()?;
    let chain = sign1
        .protected
        .header
        .rest
        .iter()
        .find(|(l, _)| *l == Label::Int(33))
        .map(|(_, v)| match v {
            Value::Bytes(b) => vec![b.clone()],
            Value::Array(items) => items.iter().filter_map(|i| i.as_bytes().cloned()).collect(),
            _ => Vec::new(),
        })
        .unwrap_or_default();
    Some((sign1.payload?, chain))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;

    /// The parser before the single-pass one: a strictness check, then
    /// `coset`. Kept as the oracle the new parser must agree with.
    fn reference_parse(bytes: &[u8], x5chain_required: bool) -> Result<Sign1, CoseError> {
        let value = cbor::from_deterministic_slice(bytes)?;
        if !matches!(value, Value::Tag(18, _)) {
            return Err(CoseError::NotCoseSign1);
        }
        let sign1 = CoseSign1::from_tagged_slice(bytes).map_err(|_| CoseError::NotCoseSign1)?;
        let header_ok = cbor::from_deterministic_slice(
            &sign1.protected.original_data.clone().unwrap_or_default(),
        )
        .map_err(|_| CoseError::UnexpectedHeader);
        // The payload (a step-1 check) before any header (step-2) check.
        let to_be_signed = sign1.tbs_data(b"");
        let payload = match sign1.payload.clone() {
            Some(p) if !p.is_empty() => p,
            _ => return Err(CoseError::MissingPayload),
        };
        header_ok?;
        let h = &sign1.protected.header;
        if h.alg != Some(coset::Algorithm::Assigned(iana::Algorithm::ES256)) {
            return Err(CoseError::UnsupportedAlgorithm);
        }
        if !sign1.unprotected.is_empty()
            || !h.crit.is_empty()
            || h.content_type.is_some()
            || !h.key_id.is_empty()
            || !h.iv.is_empty()
            || !h.partial_iv.is_empty()
            || !h.counter_signatures.is_empty()
        {
            return Err(CoseError::UnexpectedHeader);
        }
        let mut x5chain = Vec::new();
        for (label, v) in &h.rest {
            match (label, v) {
                (Label::Int(33), Value::Bytes(one)) => x5chain.push(one.clone()),
                (Label::Int(33), Value::Array(items)) if items.len() >= 2 => {
                    for item in items {
                        let Value::Bytes(cert) = item else {
                            return Err(CoseError::X5Chain);
                        };
                        x5chain.push(cert.clone());
                    }
                }
                (Label::Int(33), _) => return Err(CoseError::X5Chain),
                _ => return Err(CoseError::UnexpectedHeader),
            }
        }
        if x5chain.is_empty() == x5chain_required {
            return Err(CoseError::X5Chain);
        }
        if !(8..=ES256_DER_MAX_LEN).contains(&sign1.signature.len()) {
            return Err(CoseError::SignatureLength);
        }
        Ok(Sign1 {
            payload,
            x5chain,
            signature: sign1.signature,
            to_be_signed,
        })
    }

    fn sign(payload: Vec<u8>, chain: &[Vec<u8>]) -> Vec<u8> {
        sign1(payload, chain, |tbs| {
            Ok::<_, std::convert::Infallible>(crate::crypto::sha256(tbs).repeat(2))
        })
        .unwrap()
    }

    fn agree(bytes: &[u8], x5chain_required: bool) -> Result<(), TestCaseError> {
        let new = parse_sign1_any_form(bytes, x5chain_required);
        let old = reference_parse(bytes, x5chain_required);
        match (&new, &old) {
            (Ok(a), Ok(b)) => {
                prop_assert_eq!(&a.payload, &b.payload);
                prop_assert_eq!(&a.x5chain, &b.x5chain);
                prop_assert_eq!(&a.signature, &b.signature);
                prop_assert_eq!(&a.to_be_signed, &b.to_be_signed);
            }
            (Err(_), Err(_)) => {}
            _ => prop_assert!(
                false,
                "{}: new {:?}, old {:?}",
                hex::encode(bytes),
                new.map(|_| ()),
                old.map(|_| ())
            ),
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn agrees_with_coset_on_statements_and_their_mutations(
            payload in proptest::collection::vec(any::<u8>(), 1..300),
            chain in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..40), 0..3),
            edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..4), 0..3),
        ) {
            // The COSE layer does not decode the payload: any bytes will do.
            let mut bytes = sign(payload, &chain);
            crate::cbor::tests::apply_edits(&mut bytes, &edits);
            agree(&bytes, false)?;
            agree(&bytes, true)?;
        }
    }

    fn statement(protected: Vec<u8>, payload: Value) -> Vec<u8> {
        cbor::to_deterministic_vec(Value::Tag(
            18,
            Box::new(Value::Array(vec![
                Value::Bytes(protected),
                Value::Map(vec![]),
                payload,
                Value::Bytes(vec![0x11; 64]),
            ])),
        ))
        .unwrap()
    }

    /// docs/PROTOCOL.md §3.2 / §6 rule 1: a statement with no payload and a
    /// wrong algorithm (or a non-deterministic header) fails at step 1
    /// (`MissingPayload`), the first failing step, not at step 2.
    #[test]
    fn a_missing_payload_is_reported_before_any_header_defect() {
        // {1: -35} (ES384), nil payload.
        let es384 = statement(vec![0xa1, 0x01, 0x38, 0x22], Value::Null);
        assert_eq!(
            parse_sign1_any_form(&es384, false).err(),
            Some(CoseError::MissingPayload)
        );
        // {1: -7} with alg written in a non-shortest form, empty payload.
        let long_alg = statement(vec![0xa1, 0x01, 0x38, 0x06], Value::Bytes(vec![]));
        assert_eq!(
            parse_sign1_any_form(&long_alg, false).err(),
            Some(CoseError::MissingPayload)
        );
        for bytes in [es384, long_alg] {
            assert_eq!(
                reference_parse(&bytes, false).err(),
                Some(CoseError::MissingPayload)
            );
        }
    }

    /// docs/PROTOCOL.md §3.2 row 3: the empty protected header (h'') is a
    /// header error (step 2), not a structural one.
    #[test]
    fn an_empty_protected_header_is_a_header_error() {
        let bytes = statement(vec![], Value::Bytes(vec![1, 2, 3]));
        assert_eq!(
            parse_sign1_any_form(&bytes, false).err(),
            Some(CoseError::UnexpectedHeader)
        );
    }

    /// docs/PROTOCOL.md §3.2 row 2: protected header bytes nested deeper
    /// than §3.1 rule 5 allows are structurally unreadable (step 1), even
    /// though the statement around them is within the limit.
    #[test]
    fn a_protected_header_beyond_the_depth_limit_is_not_a_cose_sign1() {
        // {1: -7, 4: [[...[]...]]}: the map at depth 0, 17 nested arrays,
        // the innermost at depth 17.
        let header = |arrays: usize| {
            let mut h = vec![0xa2, 0x01, 0x26, 0x04];
            h.extend(std::iter::repeat_n(0x81, arrays - 1));
            h.push(0x80);
            h
        };
        let bytes = statement(header(17), Value::Bytes(vec![1, 2, 3]));
        assert_eq!(
            parse_sign1_any_form(&bytes, false).err(),
            Some(CoseError::NotCoseSign1)
        );
        // One level less is readable, and rejected for the kid label (step 2).
        let shallow = header(16);
        let bytes = statement(shallow, Value::Bytes(vec![1, 2, 3]));
        assert_eq!(
            parse_sign1_any_form(&bytes, false).err(),
            Some(CoseError::UnexpectedHeader)
        );
    }

    #[test]
    fn sig_structure_matches_the_rfc_example_shape() {
        // docs/PROTOCOL.md §3.2: payload 010203 under h'a10126'.
        assert_eq!(
            hex::encode(sig_structure(&[0xa1, 0x01, 0x26], &[1, 2, 3])),
            "846a5369676e61747572653143a101264043010203"
        );
        for len in [0usize, 23, 24, 255, 256, 65_535, 65_536] {
            let payload = vec![7u8; len];
            let statement = sign(payload.clone(), &[]);
            let ours = parse_sign1_any_form(&statement, false);
            let coset = CoseSign1::from_tagged_slice(&statement).unwrap();
            if len == 0 {
                assert_eq!(ours.err(), Some(CoseError::MissingPayload));
            } else {
                assert_eq!(ours.unwrap().to_be_signed, coset.tbs_data(b""), "{len}");
            }
        }
    }
}
