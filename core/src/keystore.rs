//! The device side of platform-keystore credentials (docs/PROTOCOL.md §12):
//! an app whose key lives in Android Keystore (or another platform keystore)
//! builds the [`PlatformKeyRegistration`] and its [`PaymentAssertion`]s here.
//!
//! The platform is a trait, [`PlatformKeystoreSigner`]: it returns the key's
//! attestation chain and signs with the key (the platform shows the biometric
//! prompt). Signatures may be in COSE's fixed form or in the DER form
//! Android's `Signature` API returns. [`PlatformKeystoreClient`] keeps the
//! credential's counter; the app must persist [`PlatformKeystoreClient::state`]
//! after every statement and restore it with [`PlatformKeystoreClient::resume`].
//!
//! Flow: the app receives a [`RegistrationChallenge`], generates a P-256
//! signing key with that challenge as the attestation challenge
//! (`setAttestationChallenge`), user authentication required per use with a
//! strong biometric, then calls [`PlatformKeystoreClient::register`].

use crate::{
    cose,
    crypto::{self, sha256},
    device::DeviceError,
    display::render_transaction,
    env::Clock,
    messages::{
        CredentialId, Digest, Liveness, Message, Modality, PaymentAssertion, PaymentChallenge,
        Platform, PlatformKeyRegistration, RegistrationChallenge,
    },
};

/// A key in a platform keystore.
pub trait PlatformKeystoreSigner {
    /// The key's attestation certificate chain, DER, leaf first.
    fn attestation_chain(&self) -> Result<Vec<Vec<u8>>, DeviceError>;
    /// Signs `data` with ECDSA P-256 / SHA-256 after the platform
    /// authenticated the user. Returns r || s (64 bytes) or ASN.1 DER.
    fn sign(&self, data: &[u8]) -> Result<Vec<u8>, DeviceError>;
}

/// What the app persists about its credential between statements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformCredentialState {
    /// The credential id.
    pub credential_id: CredentialId,
    /// The modalities the key was bound to.
    pub modalities: Vec<Modality>,
    /// The app's enrollment epoch (its convention; sent at registration and
    /// in every assertion).
    pub enrollment_epoch: Digest,
    /// The last counter used.
    pub counter: u64,
}

/// The app-side client for a platform-keystore credential of one relying party.
pub struct PlatformKeystoreClient<S, C> {
    rp_id: String,
    signer: S,
    clock: C,
    state: PlatformCredentialState,
    skew_tolerance_secs: u64,
}

impl<S: PlatformKeystoreSigner, C: Clock> PlatformKeystoreClient<S, C> {
    /// A client for a new credential (counter 0) of `rp_id`.
    pub fn new(
        rp_id: &str,
        signer: S,
        clock: C,
        credential_id: CredentialId,
        modalities: &[Modality],
        enrollment_epoch: Digest,
    ) -> Self {
        let mut modalities = modalities.to_vec();
        modalities.sort();
        modalities.dedup();
        Self::resume(
            rp_id,
            signer,
            clock,
            PlatformCredentialState {
                credential_id,
                modalities,
                enrollment_epoch,
                counter: 0,
            },
        )
    }

    /// A client for an existing credential, from its persisted state.
    pub fn resume(rp_id: &str, signer: S, clock: C, state: PlatformCredentialState) -> Self {
        Self {
            rp_id: rp_id.to_owned(),
            signer,
            clock,
            state,
            skew_tolerance_secs: 300,
        }
    }

    /// The platform signer.
    pub fn signer(&self) -> &S {
        &self.signer
    }

    /// The state to persist.
    pub fn state(&self) -> &PlatformCredentialState {
        &self.state
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

    fn sign_statement(
        &self,
        payload: Vec<u8>,
        x5chain: &[Vec<u8>],
    ) -> Result<Vec<u8>, DeviceError> {
        cose::sign1(payload, x5chain, |tbs| {
            let sig = self.signer.sign(tbs)?;
            // A DER signature that happens to be 64 bytes would be read as
            // the fixed form: send it converted.
            Ok(match crypto::es256_signature_format(&sig) {
                crypto::SignatureFormat::Fixed => crypto::es256_der_to_fixed(&sig).unwrap_or(sig),
                crypto::SignatureFormat::Der => sig,
            })
        })
    }

    /// Builds the signed [`PlatformKeyRegistration`] for the server's encoded
    /// [`RegistrationChallenge`]. The key must have been generated with this
    /// challenge as its attestation challenge.
    pub fn register(&mut self, challenge: &[u8]) -> Result<Vec<u8>, DeviceError> {
        let c = RegistrationChallenge::from_cbor(challenge)?;
        self.check(&c.rp_id, c.expires_at)?;
        if !self
            .state
            .modalities
            .iter()
            .all(|m| c.accepted_modalities.contains(m))
        {
            return Err(DeviceError::InvalidChallenge(
                "a bound modality is not accepted".into(),
            ));
        }
        let reg = PlatformKeyRegistration {
            rp_id_hash: sha256(c.rp_id.as_bytes()),
            account_handle: c.account_handle,
            challenge: c.challenge,
            credential_id: self.state.credential_id.clone(),
            modalities: self.state.modalities.clone(),
            platform: Platform::Android,
            initial_counter: self.state.counter,
            enrollment_epoch: self.state.enrollment_epoch,
        };
        let chain = self.signer.attestation_chain()?;
        self.sign_statement(reg.to_cbor(), &chain)
    }

    /// Builds the signed [`PaymentAssertion`] for the server's encoded
    /// [`PaymentChallenge`], after the app showed the transaction (its
    /// [`render_transaction`] text) in the biometric prompt. `modality` is
    /// what the platform reported; liveness is reported as not checked.
    pub fn authorize(
        &mut self,
        challenge: &[u8],
        modality: Modality,
    ) -> Result<Vec<u8>, DeviceError> {
        let c = PaymentChallenge::from_cbor(challenge)?;
        self.check(&c.rp_id, c.expires_at)?;
        if c.credential_id != self.state.credential_id {
            return Err(DeviceError::UnknownCredential);
        }
        if !c.accepted_modalities.contains(&modality) || !self.state.modalities.contains(&modality)
        {
            return Err(DeviceError::NotEnrolled);
        }
        let counter = self
            .state
            .counter
            .checked_add(1)
            .ok_or_else(|| DeviceError::Keystore("counter exhausted".into()))?;
        // The counter is used up even if signing fails.
        self.state.counter = counter;
        let assertion = PaymentAssertion {
            rp_id_hash: sha256(c.rp_id.as_bytes()),
            credential_id: c.credential_id.clone(),
            challenge: c.challenge,
            transaction_hash: sha256(&c.transaction.canonical_encoding()),
            display_hash: sha256(render_transaction(&c.rp_id, &c.transaction).as_bytes()),
            modality,
            template_id: [0; 16],
            liveness: Liveness::NotChecked,
            failed_attempts: 0,
            counter,
            tee_time: self.clock.now(),
            user_confirmed: true,
            enrollment_epoch: self.state.enrollment_epoch,
        };
        self.sign_statement(assertion.to_cbor(), &[])
    }
}
