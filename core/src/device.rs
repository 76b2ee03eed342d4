//! Device-side API (docs/PROTOCOL.md §8): the [`Authenticator`] trait that a
//! TEE implements (the software TEE in `biopay-tee-stub`; platform keystores
//! through the bindings) and the [`Client`] an app uses to turn server
//! challenges into signed statements.

use crate::serde_hex::ser_hex;
use crate::{
    env::Clock,
    messages::{
        CredentialId, DecodeError, Message, Modality, PaymentChallenge, RegistrationChallenge,
        SecurityLevel,
    },
};
use serde::Serialize;

/// Why the device did not produce a statement. Mirrors what a real TEE or
/// platform keystore reports; the bindings map these one-to-one to Kotlin and
/// Swift exceptions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// The biometric did not match an enrolled template.
    #[error("biometric did not match")]
    NoMatch,
    /// Too many failed attempts. `until` is TEE time in Unix seconds; `None`
    /// means locked until the device passcode is entered.
    #[error("biometric locked out")]
    LockedOut {
        /// End of the lockout, Unix seconds; `None` for a permanent lockout.
        until: Option<u64>,
    },
    /// The liveness check failed (a presentation attack).
    #[error("liveness check failed")]
    SpoofDetected,
    /// The user dismissed the biometric prompt.
    #[error("user canceled")]
    UserCanceled,
    /// The user declined the transaction shown on the trusted UI.
    #[error("user declined the transaction")]
    TransactionDeclined,
    /// No biometric of an accepted modality is enrolled.
    #[error("no accepted biometric is enrolled")]
    NotEnrolled,
    /// The key is no longer usable (enrollment changed, or removed).
    #[error("credential key invalidated")]
    KeyInvalidated,
    /// No such credential on this device.
    #[error("unknown credential")]
    UnknownCredential,
    /// The challenge is malformed, expired, or for another relying party.
    #[error("invalid challenge: {0}")]
    InvalidChallenge(String),
    /// Sealed key material failed to authenticate (tampered or from another device).
    #[error("sealed key blob failed to authenticate")]
    SealedBlobCorrupt,
    /// The keystore or its storage failed.
    #[error("keystore: {0}")]
    Keystore(String),
}

impl From<DecodeError> for DeviceError {
    fn from(e: DecodeError) -> Self {
        Self::InvalidChallenge(e.to_string())
    }
}

/// A credential on the device, as listed to the app (no key material).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocalCredential {
    /// The credential id.
    pub credential_id: CredentialId,
    /// The relying party.
    pub rp_id: String,
    /// The account handle it was registered for.
    #[serde(serialize_with = "ser_hex")]
    pub account_handle: Vec<u8>,
    /// Bound modalities.
    pub modalities: Vec<Modality>,
    /// Where the key lives.
    pub security_level: SecurityLevel,
    /// False once the enrolled biometrics changed since registration.
    pub valid: bool,
}

/// A trusted authenticator: creates credential keys inside trusted hardware,
/// matches biometrics, shows transactions on a trusted UI and signs protocol
/// statements (tagged COSE_Sign1 bytes, docs/PROTOCOL.md §4).
pub trait Authenticator {
    /// Creates a credential bound to `modalities` and returns the signed
    /// [`crate::KeyAttestation`].
    fn make_credential(
        &mut self,
        challenge: &RegistrationChallenge,
        modalities: &[Modality],
    ) -> Result<Vec<u8>, DeviceError>;

    /// Shows the transaction, matches a biometric and returns the signed
    /// [`crate::PaymentAssertion`].
    fn get_assertion(&mut self, challenge: &PaymentChallenge) -> Result<Vec<u8>, DeviceError>;

    /// Deletes the credential and returns the signed [`crate::Deregistration`].
    fn deregister(
        &mut self,
        rp_id: &str,
        credential_id: &CredentialId,
    ) -> Result<Vec<u8>, DeviceError>;

    /// Returns the signed [`crate::EnrollmentChange`] for a credential whose
    /// enrollment epoch changed since registration.
    fn enrollment_change(
        &mut self,
        rp_id: &str,
        credential_id: &CredentialId,
    ) -> Result<Vec<u8>, DeviceError>;

    /// Lists credentials for `rp_id`.
    fn credentials(&self, rp_id: &str) -> Result<Vec<LocalCredential>, DeviceError>;
}

/// The app-side client for one relying party. It checks each server
/// challenge before handing it to the authenticator: strict decoding, the
/// app's own rp id (an app cannot be used to sign for another RP), and expiry
/// against the device clock with a tolerance.
pub struct Client<A, C> {
    rp_id: String,
    authenticator: A,
    clock: C,
    skew_tolerance_secs: u64,
}

impl<A: Authenticator, C: Clock> Client<A, C> {
    /// A client for `rp_id`.
    pub fn new(rp_id: &str, authenticator: A, clock: C) -> Self {
        Self {
            rp_id: rp_id.to_owned(),
            authenticator,
            clock,
            skew_tolerance_secs: 300,
        }
    }

    /// The authenticator.
    pub fn authenticator(&self) -> &A {
        &self.authenticator
    }

    /// The authenticator, mutably (e.g. to simulate the user).
    pub fn authenticator_mut(&mut self) -> &mut A {
        &mut self.authenticator
    }

    fn check(&self, rp_id: &str, expires_at: u64) -> Result<(), DeviceError> {
        if rp_id != self.rp_id {
            return Err(DeviceError::InvalidChallenge(format!(
                "challenge is for rp `{rp_id}`, this app is `{}`",
                self.rp_id
            )));
        }
        if self.clock.now() > expires_at.saturating_add(self.skew_tolerance_secs) {
            return Err(DeviceError::InvalidChallenge("challenge expired".into()));
        }
        Ok(())
    }

    /// Registers a credential: `challenge` is the server's encoded
    /// [`RegistrationChallenge`]; returns the encoded key attestation to send back.
    pub fn register(
        &mut self,
        challenge: &[u8],
        modalities: &[Modality],
    ) -> Result<Vec<u8>, DeviceError> {
        let c = RegistrationChallenge::from_cbor(challenge)?;
        self.check(&c.rp_id, c.expires_at)?;
        let mut wanted: Vec<Modality> = modalities
            .iter()
            .copied()
            .filter(|m| c.accepted_modalities.contains(m))
            .collect();
        wanted.sort();
        wanted.dedup();
        if wanted.is_empty() {
            return Err(DeviceError::InvalidChallenge(
                "none of the requested modalities is accepted".into(),
            ));
        }
        self.authenticator.make_credential(&c, &wanted)
    }

    /// Authorizes a payment: `challenge` is the server's encoded
    /// [`PaymentChallenge`]; returns the encoded payment assertion.
    pub fn authorize(&mut self, challenge: &[u8]) -> Result<Vec<u8>, DeviceError> {
        let c = PaymentChallenge::from_cbor(challenge)?;
        self.check(&c.rp_id, c.expires_at)?;
        self.authenticator.get_assertion(&c)
    }

    /// Deregisters a credential; returns the encoded deregistration statement.
    pub fn deregister(&mut self, credential_id: &CredentialId) -> Result<Vec<u8>, DeviceError> {
        let rp = self.rp_id.clone();
        self.authenticator.deregister(&rp, credential_id)
    }

    /// Reports a changed enrollment for a credential.
    pub fn report_enrollment_change(
        &mut self,
        credential_id: &CredentialId,
    ) -> Result<Vec<u8>, DeviceError> {
        let rp = self.rp_id.clone();
        self.authenticator.enrollment_change(&rp, credential_id)
    }

    /// Lists this relying party's credentials on the device.
    pub fn credentials(&self) -> Result<Vec<LocalCredential>, DeviceError> {
        self.authenticator.credentials(&self.rp_id)
    }
}
