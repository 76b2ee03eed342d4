//! App Attest attestation: steps I1–I10 of docs/PROTOCOL.md §13.4, in order.

use super::{
    object::{self, AttestedAuthData},
    AppAttestEnvironment, AppAttestError, AppleTrust, FORMAT, MAX_ATTESTATION_LEN, NONCE_OID,
};
use crate::{
    crypto::{self, ct_eq, sha256, sha256_parts},
    error::{reject, AtStep, Reason, Rejection, Step},
    messages::{self, Digest},
    x509::{self, ExtensionLookupError},
};

/// A verified attestation: the attested App Attest key and what Apple
/// certified about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAttestation {
    /// SHA-256 of the attested public key's uncompressed point (Apple's key id).
    pub key_id: [u8; 32],
    /// The attested public key, an uncompressed P-256 point (65 bytes).
    pub public_key: Vec<u8>,
    /// The allowed app id whose SHA-256 is the rpIdHash.
    pub app_id: String,
    /// The environment the aaguid names (the configured one).
    pub environment: AppAttestEnvironment,
    /// The authenticator data's counter (always 0).
    pub counter: u32,
    /// `attStmt.receipt`, Apple's PKCS#7 receipt, unverified: exchanging it
    /// for the fraud metric needs Apple's server (§13.2).
    pub receipt: Vec<u8>,
}

/// The 32-byte nonce of the leaf's extension 1.2.840.113635.100.8.2: DER
/// `SEQUENCE { [1] EXPLICIT OCTET STRING }` whose only encoding with a
/// 32-byte string is `30 24 A1 22 04 20` followed by the string.
fn nonce_of(leaf: &[u8]) -> Result<[u8; 32], AppAttestError> {
    const PREFIX: [u8; 6] = [0x30, 0x24, 0xa1, 0x22, 0x04, 0x20];
    let value = x509::extension_value(leaf, NONCE_OID)
        .map_err(|e| match e {
            ExtensionLookupError::Malformed => AppAttestError::NonceExtension("malformed leaf"),
            ExtensionLookupError::Duplicate => AppAttestError::NonceExtension("duplicated"),
        })?
        .ok_or(AppAttestError::NonceExtension("missing"))?;
    value
        .strip_prefix(&PREFIX[..])
        .and_then(|n| <[u8; 32]>::try_from(n).ok())
        .ok_or(AppAttestError::NonceExtension(
            "not SEQUENCE { [1] EXPLICIT OCTET STRING (32 bytes) }",
        ))
}

/// Verifies an App Attest attestation object (docs/PROTOCOL.md §13.4) at
/// Unix time `now`. `client_data_hash` is the value the app passed to
/// `attestKey` (for biopay, [`super::binding_client_data_hash`]);
/// `expected_key_id` is the key id the app sent with it, if any. Returns
/// the first failed step.
pub fn verify_attestation(
    object: &[u8],
    client_data_hash: &Digest,
    expected_key_id: Option<&[u8]>,
    trust: &AppleTrust,
    now: u64,
) -> Result<VerifiedAttestation, Rejection> {
    // I1: the CBOR object, fmt "apple-appattest".
    let obj =
        object::parse_attestation(object, MAX_ATTESTATION_LEN).at(Step::I1AttestationObject)?;
    if obj.fmt != FORMAT {
        // The sender chose this text: keep at most 32 characters of it for
        // the rejection, which servers log and audit.
        let shown = obj.fmt.chars().take(32).collect();
        return reject(
            Step::I1AttestationObject,
            AppAttestError::WrongFormat(shown),
        );
    }
    // I2: x5c (leaf first) verifies to an Apple root key at `now`.
    let chain = x509::verify_chain(&obj.x5c, &trust.anchors, now).at(Step::I2AttestationChain)?;
    let leaf = obj.x5c.first().map(Vec::as_slice).unwrap_or_default();
    // I3: nonce = SHA-256(authData ‖ clientDataHash) is the leaf's.
    let nonce = sha256_parts(&[&obj.auth_data, client_data_hash]);
    let certified = nonce_of(leaf).at(Step::I3Nonce)?;
    if !ct_eq(&nonce, &certified) {
        return reject(Step::I3Nonce, AppAttestError::NonceMismatch);
    }
    // I4: key id = SHA-256 of the leaf's uncompressed P-256 point.
    let Some(point) = crypto::p256_point_from_spki(&chain.leaf_spki_der) else {
        return reject(Step::I4KeyId, Reason::AttestationKeyType);
    };
    let key_id = sha256(point);
    if let Some(expected) = expected_key_id {
        if !ct_eq(expected, &key_id) {
            return reject(Step::I4KeyId, AppAttestError::KeyIdMismatch);
        }
    }
    // I5: the authenticator data is well formed.
    let AttestedAuthData {
        header,
        aaguid,
        credential_id,
        credential_public_key,
    } = object::parse_attested_auth_data(&obj.auth_data).at(Step::I5AuthenticatorData)?;
    // I6: rpIdHash = SHA-256(an allowed app id).
    let Some(app_id) = trust
        .app_ids
        .iter()
        .find(|id| ct_eq(&sha256(id.as_bytes()), &header.rp_id_hash))
    else {
        return reject(Step::I6AppId, AppAttestError::AppIdNotAllowed);
    };
    // I7: counter 0.
    if header.counter != 0 {
        return reject(
            Step::I7Counter,
            AppAttestError::CounterNotZero(header.counter),
        );
    }
    // I8: the aaguid names the configured environment.
    match AppAttestEnvironment::from_aaguid(&aaguid) {
        Some(found) if found == trust.environment => {}
        Some(found) => {
            return reject(
                Step::I8Aaguid,
                AppAttestError::WrongEnvironment {
                    expected: trust.environment,
                    found,
                },
            )
        }
        None => {
            return reject(
                Step::I8Aaguid,
                AppAttestError::UnknownAaguid(hex::encode(aaguid)),
            )
        }
    }
    // I9: credentialId = key id.
    if !ct_eq(&credential_id, &key_id) {
        return reject(Step::I9CredentialId, AppAttestError::CredentialIdMismatch);
    }
    // I10: the credential public key is the leaf's key.
    match messages::sec1_from_cose_key(credential_public_key) {
        Ok(k) if k == point => {}
        _ => {
            return reject(
                Step::I10CredentialKey,
                AppAttestError::CredentialKeyMismatch,
            )
        }
    }
    Ok(VerifiedAttestation {
        key_id,
        public_key: point.to_vec(),
        app_id: app_id.clone(),
        environment: trust.environment,
        counter: header.counter,
        receipt: obj.receipt,
    })
}

/// The leaf public key (uncompressed P-256 point) of an attestation object,
/// **without verifying anything else**: for tools that check an assertion
/// against a key whose attestation was verified before. Fails at I1 (object)
/// or I4 (key type).
pub fn attested_public_key(object: &[u8]) -> Result<Vec<u8>, Rejection> {
    let obj =
        object::parse_attestation(object, MAX_ATTESTATION_LEN).at(Step::I1AttestationObject)?;
    let spki = obj
        .x5c
        .first()
        .and_then(|leaf| x509::spki_of(leaf))
        .ok_or(Rejection::new(
            Step::I4KeyId,
            Reason::Chain(x509::ChainError::Malformed { index: 0 }),
        ))?;
    crypto::p256_point_from_spki(&spki)
        .map(<[u8]>::to_vec)
        .ok_or(Rejection::new(Step::I4KeyId, Reason::AttestationKeyType))
}
