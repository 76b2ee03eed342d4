//! App Attest assertion: steps J1–J4 of docs/PROTOCOL.md §13.5, in order.

use super::{object, AppAttestError, MAX_ASSERTION_LEN};
use crate::{
    crypto::{self, ct_eq, sha256, sha256_parts, SignatureFormat},
    error::{reject, AtStep, Reason, Rejection, Step},
    messages::Digest,
};

/// A verified assertion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedAssertion {
    /// The assertion's counter; the caller stores it as the new previous counter.
    pub counter: u32,
}

/// Verifies an App Attest assertion object (docs/PROTOCOL.md §13.5) made
/// with the attested key `public_key` (uncompressed P-256 point) of the app
/// `app_id`, over `client_data_hash` (the value the app passed to
/// `generateAssertion`). `previous_counter` is the counter stored for the key
/// (0 after the attestation). Returns the first failed step.
pub fn verify_assertion(
    object: &[u8],
    client_data_hash: &Digest,
    public_key: &[u8],
    app_id: &str,
    previous_counter: u32,
) -> Result<VerifiedAssertion, Rejection> {
    // J1: the CBOR object; authenticatorData is rpIdHash | flags | counter.
    let obj = object::parse_assertion(object, MAX_ASSERTION_LEN).at(Step::J1AssertionObject)?;
    let header =
        object::parse_assertion_auth_data(&obj.authenticator_data).at(Step::J1AssertionObject)?;
    // J2: ECDSA P-256 / SHA-256 (DER) over nonce = SHA-256(authenticatorData ‖ clientDataHash).
    if !crypto::is_valid_p256_point(public_key) {
        return reject(Step::J2Signature, Reason::AttestationKeyType);
    }
    let nonce = sha256_parts(&[&obj.authenticator_data, client_data_hash]);
    if !crypto::verify_es256(public_key, &nonce, &obj.signature, SignatureFormat::Der) {
        return reject(Step::J2Signature, Reason::BadSignature);
    }
    // J3: rpIdHash = SHA-256(app id).
    if !ct_eq(&header.rp_id_hash, &sha256(app_id.as_bytes())) {
        return reject(Step::J3AppId, AppAttestError::AppIdNotAllowed);
    }
    // J4: the counter increased.
    if header.counter <= previous_counter {
        return reject(
            Step::J4Counter,
            Reason::CounterNotIncreased {
                stored: u64::from(previous_counter),
                received: u64::from(header.counter),
            },
        );
    }
    Ok(VerifiedAssertion {
        counter: header.counter,
    })
}
