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
//!
//! Every signature needs a biometric authentication, so every statement comes
//! with the text the platform's prompt shows
//! ([`PlatformKeystoreSigner::sign_with_prompt`]): [`registration_prompt`],
//! the §5 rendering of the transaction ([`render_transaction`]) for a payment,
//! and [`deregistration_prompt`]. To keep a counter from ever going back, an
//! app persists the state *before* the statement is signed: the
//! `*_durably` methods call back with the new state before they sign.

use crate::{
    cose,
    crypto::{self, sha256},
    device::DeviceError,
    display::render_transaction,
    env::Clock,
    messages::{
        AppleKeyRegistration, CredentialId, Deregistration, Digest, Liveness, Message, Modality,
        PaymentAssertion, PaymentChallenge, Platform, PlatformKeyRegistration,
        RegistrationChallenge,
    },
};

/// A key in a platform keystore.
pub trait PlatformKeystoreSigner {
    /// The key's attestation certificate chain, DER, leaf first.
    fn attestation_chain(&self) -> Result<Vec<Vec<u8>>, DeviceError>;
    /// Signs `data` with ECDSA P-256 / SHA-256 after the platform
    /// authenticated the user. Returns r || s (64 bytes) or ASN.1 DER.
    fn sign(&self, data: &[u8]) -> Result<Vec<u8>, DeviceError>;

    /// Signs like [`Self::sign`], with `prompt` as the text of the biometric
    /// prompt. The default ignores the prompt text.
    fn sign_with_prompt(&self, data: &[u8], prompt: &str) -> Result<Vec<u8>, DeviceError> {
        let _ = prompt;
        self.sign(data)
    }
}

/// The biometric prompt text of a registration: one fixed sentence naming the rp.
pub fn registration_prompt(rp_id: &str) -> String {
    format!("Register this device for payments at {rp_id}")
}

/// The biometric prompt text of a deregistration: one fixed sentence naming the rp.
pub fn deregistration_prompt(rp_id: &str) -> String {
    format!("Remove this device's payment credential for {rp_id}")
}

/// A statement built and checked, waiting for the platform's signature: for
/// a platform whose prompt answers asynchronously (the `begin_*` methods of
/// [`PlatformKeystoreClient`]). Show [`Self::prompt`], have the key sign
/// [`Self::to_be_signed`], then [`Self::finish`]. Dropping it signs nothing.
#[derive(Debug, Clone)]
pub struct PendingStatement {
    unsigned: cose::UnsignedSign1,
    prompt: String,
}

impl PendingStatement {
    fn new(payload: Vec<u8>, x5chain: &[Vec<u8>], prompt: String) -> Self {
        Self {
            unsigned: cose::UnsignedSign1::new(payload, x5chain),
            prompt,
        }
    }

    /// What the key signs (the COSE Sig_structure).
    pub fn to_be_signed(&self) -> Vec<u8> {
        self.unsigned.to_be_signed()
    }

    /// The text of the biometric prompt.
    pub fn prompt(&self) -> &str {
        &self.prompt
    }

    /// The signed statement, with the platform's signature (r || s or ASN.1
    /// DER, converted to COSE's fixed form).
    pub fn finish(self, signature: Vec<u8>) -> Vec<u8> {
        // A DER signature that happens to be 64 bytes would be read as the
        // fixed form: send it converted.
        let sig = match crypto::es256_signature_format(&signature) {
            crypto::SignatureFormat::Fixed => {
                crypto::es256_der_to_fixed(&signature).unwrap_or(signature)
            }
            crypto::SignatureFormat::Der => signature,
        };
        self.unsigned.finish(sig)
    }
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

    fn sign_statement(&self, pending: PendingStatement) -> Result<Vec<u8>, DeviceError> {
        let sig = self
            .signer
            .sign_with_prompt(&pending.to_be_signed(), pending.prompt())?;
        Ok(pending.finish(sig))
    }

    /// Builds the signed [`PlatformKeyRegistration`] for the server's encoded
    /// [`RegistrationChallenge`]. The key must have been generated with this
    /// challenge as its attestation challenge.
    pub fn register(&mut self, challenge: &[u8]) -> Result<Vec<u8>, DeviceError> {
        let pending = self.begin_register(challenge)?;
        self.sign_statement(pending)
    }

    /// [`Self::register`] up to the signature: the statement for a signer
    /// that answers later (see [`PendingStatement`]).
    pub fn begin_register(&self, challenge: &[u8]) -> Result<PendingStatement, DeviceError> {
        let c = self.check_registration(challenge)?;
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
        Ok(PendingStatement::new(
            reg.to_cbor(),
            &chain,
            registration_prompt(&c.rp_id),
        ))
    }

    fn check_registration(&self, challenge: &[u8]) -> Result<RegistrationChallenge, DeviceError> {
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
        // The verifier refuses it at A16 / K12 (docs/PROTOCOL.md §4.1.9).
        if !self
            .state
            .credential_id
            .as_bytes()
            .starts_with(&c.credential_id_prefix)
        {
            return Err(DeviceError::InvalidChallenge(
                "the credential id does not start with the challenge's credential_id_prefix".into(),
            ));
        }
        Ok(c)
    }

    /// iOS, first half of an Apple App Attest registration (docs/PROTOCOL.md
    /// §13.3, §13.8): the clientDataHash the app passes to
    /// `DCAppAttestService.attestKey`, binding the server's encoded
    /// [`RegistrationChallenge`], its rp id, the Secure Enclave key's public
    /// key `public_key` (uncompressed P-256 point) and this credential id.
    pub fn apple_client_data_hash(
        &self,
        challenge: &[u8],
        public_key: &[u8],
    ) -> Result<Digest, DeviceError> {
        let c = self.check_registration(challenge)?;
        Ok(crate::apple::binding_client_data_hash(
            &c.challenge,
            &c.rp_id,
            public_key,
            &self.state.credential_id,
        )?)
    }

    /// iOS, second half: the signed [`AppleKeyRegistration`] carrying the
    /// Secure Enclave key `public_key`, the App Attest key id and the
    /// attestation object `attestKey` returned for
    /// [`Self::apple_client_data_hash`]. The Secure Enclave key signs it
    /// (proof of possession) behind the [`registration_prompt`].
    pub fn register_apple(
        &mut self,
        challenge: &[u8],
        public_key: &[u8],
        app_attest_key_id: Digest,
        attestation_object: Vec<u8>,
    ) -> Result<Vec<u8>, DeviceError> {
        let c = self.check_registration(challenge)?;
        // Refuses a bad point before asking the user for a biometric.
        crate::apple::binding_client_data_hash(
            &c.challenge,
            &c.rp_id,
            public_key,
            &self.state.credential_id,
        )?;
        let reg = AppleKeyRegistration {
            rp_id_hash: sha256(c.rp_id.as_bytes()),
            account_handle: c.account_handle,
            challenge: c.challenge,
            credential_id: self.state.credential_id.clone(),
            modalities: self.state.modalities.clone(),
            public_key: public_key.to_vec(),
            initial_counter: self.state.counter,
            enrollment_epoch: self.state.enrollment_epoch,
            app_attest_key_id,
            attestation_object,
        };
        self.sign_statement(PendingStatement::new(
            reg.to_cbor(),
            &[],
            registration_prompt(&c.rp_id),
        ))
    }

    /// Builds the signed [`PaymentAssertion`] for the server's encoded
    /// [`PaymentChallenge`]; the biometric prompt shows the transaction (its
    /// [`render_transaction`] text). `modality` is what the platform
    /// reported; liveness is reported as not checked. Same as
    /// [`Self::authorize_durably`] with nothing to persist.
    pub fn authorize(
        &mut self,
        challenge: &[u8],
        modality: Modality,
    ) -> Result<Vec<u8>, DeviceError> {
        self.authorize_durably(challenge, modality, |_| Ok(()))
    }

    /// [`Self::authorize`], calling `persist` with the state holding the
    /// new counter after the challenge was checked and before the key signs:
    /// when `persist` fails nothing is signed, and once something is signed
    /// its counter is on disk. The counter is used up even if signing fails.
    pub fn authorize_durably(
        &mut self,
        challenge: &[u8],
        modality: Modality,
        persist: impl FnOnce(&PlatformCredentialState) -> Result<(), DeviceError>,
    ) -> Result<Vec<u8>, DeviceError> {
        let pending = self.begin_authorize(challenge, modality, persist)?;
        self.sign_statement(pending)
    }

    /// [`Self::authorize_durably`] up to the signature: `persist` has seen
    /// the new counter when this returns the statement to sign (see
    /// [`PendingStatement`]).
    pub fn begin_authorize(
        &mut self,
        challenge: &[u8],
        modality: Modality,
        persist: impl FnOnce(&PlatformCredentialState) -> Result<(), DeviceError>,
    ) -> Result<PendingStatement, DeviceError> {
        let c = PaymentChallenge::from_cbor(challenge)?;
        self.check(&c.rp_id, c.expires_at)?;
        c.transaction.validate()?;
        if c.credential_id != self.state.credential_id {
            return Err(DeviceError::UnknownCredential);
        }
        if !c.accepted_modalities.contains(&modality) || !self.state.modalities.contains(&modality)
        {
            return Err(DeviceError::NotEnrolled);
        }
        let counter = self.next_counter(persist)?;
        let text = render_transaction(&c.rp_id, &c.transaction);
        let assertion = PaymentAssertion {
            rp_id_hash: sha256(c.rp_id.as_bytes()),
            credential_id: c.credential_id.clone(),
            challenge: c.challenge,
            transaction_hash: c.transaction.transaction_hash(),
            display_hash: sha256(text.as_bytes()),
            modality,
            template_id: [0; 16],
            liveness: Liveness::NotChecked,
            failed_attempts: 0,
            counter,
            tee_time: self.clock.now(),
            user_confirmed: true,
            enrollment_epoch: self.state.enrollment_epoch,
        };
        Ok(PendingStatement::new(assertion.to_cbor(), &[], text))
    }

    /// Builds the signed [`Deregistration`] of this credential (counter + 1;
    /// the prompt shows [`deregistration_prompt`]), calling `persist` with the
    /// new state before the key signs. Deleting the key is the caller's job,
    /// after this returns.
    pub fn deregister_durably(
        &mut self,
        persist: impl FnOnce(&PlatformCredentialState) -> Result<(), DeviceError>,
    ) -> Result<Vec<u8>, DeviceError> {
        let pending = self.begin_deregister(persist)?;
        self.sign_statement(pending)
    }

    /// [`Self::deregister_durably`] up to the signature (see [`PendingStatement`]).
    pub fn begin_deregister(
        &mut self,
        persist: impl FnOnce(&PlatformCredentialState) -> Result<(), DeviceError>,
    ) -> Result<PendingStatement, DeviceError> {
        let counter = self.next_counter(persist)?;
        let statement = Deregistration {
            rp_id_hash: sha256(self.rp_id.as_bytes()),
            credential_id: self.state.credential_id.clone(),
            counter,
            tee_time: self.clock.now(),
        };
        Ok(PendingStatement::new(
            statement.to_cbor(),
            &[],
            deregistration_prompt(&self.rp_id),
        ))
    }

    /// Uses up the next counter value: the state holds it before `persist`
    /// sees it.
    fn next_counter(
        &mut self,
        persist: impl FnOnce(&PlatformCredentialState) -> Result<(), DeviceError>,
    ) -> Result<u64, DeviceError> {
        let counter = self
            .state
            .counter
            .checked_add(1)
            .ok_or_else(|| DeviceError::Keystore("counter exhausted".into()))?;
        self.state.counter = counter;
        persist(&self.state)?;
        Ok(counter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{env::ManualClock, messages::Transaction};
    use p256::ecdsa::{signature::Signer, Signature, SigningKey};
    use std::cell::RefCell;

    const RP: &str = "pay.example.com";
    const NOW: u64 = 1_790_000_000;

    /// A software key that records each prompt and can be told to fail.
    struct Soft {
        key: SigningKey,
        prompts: RefCell<Vec<String>>,
        fail: bool,
    }

    impl PlatformKeystoreSigner for Soft {
        fn attestation_chain(&self) -> Result<Vec<Vec<u8>>, DeviceError> {
            Ok(Vec::new())
        }
        fn sign(&self, _: &[u8]) -> Result<Vec<u8>, DeviceError> {
            Err(DeviceError::Keystore("sign without a prompt".into()))
        }
        fn sign_with_prompt(&self, data: &[u8], prompt: &str) -> Result<Vec<u8>, DeviceError> {
            self.prompts.borrow_mut().push(prompt.to_owned());
            if self.fail {
                return Err(DeviceError::UserCanceled);
            }
            let sig: Signature = self.key.sign(data);
            Ok(sig.to_der().as_bytes().to_vec())
        }
    }

    fn client(fail: bool) -> PlatformKeystoreClient<Soft, ManualClock> {
        let key = SigningKey::from_slice(&[7; 32]).unwrap();
        PlatformKeystoreClient::new(
            RP,
            Soft {
                key,
                prompts: RefCell::new(Vec::new()),
                fail,
            },
            ManualClock::new(NOW),
            CredentialId::new(vec![9; 32]).unwrap(),
            &[Modality::Fingerprint],
            [3; 32],
        )
    }

    fn public(c: &PlatformKeystoreClient<Soft, ManualClock>) -> Vec<u8> {
        c.signer()
            .key
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec()
    }

    fn payment_challenge() -> Vec<u8> {
        PaymentChallenge {
            rp_id: RP.into(),
            account_handle: b"acct".to_vec(),
            credential_id: CredentialId::new(vec![9; 32]).unwrap(),
            challenge: [5; 32],
            transaction: Transaction {
                amount_minor: 8800,
                currency: "CNY".into(),
                payee_id: "m-1".into(),
                payee_name: "Coffee".into(),
                order_id: "o-1".into(),
                memo: None,
            },
            issued_at: NOW,
            expires_at: NOW + 60,
            accepted_modalities: vec![Modality::Fingerprint],
            require_liveness: false,
        }
        .to_cbor()
    }

    #[test]
    fn payment_prompt_is_the_rendering_and_state_is_persisted_before_signing() {
        let mut c = client(false);
        let mut persisted = None;
        let signed = c
            .authorize_durably(&payment_challenge(), Modality::Fingerprint, |s| {
                persisted = Some(s.counter);
                Ok(())
            })
            .unwrap();
        assert_eq!(persisted, Some(1));
        let prompts = c.signer().prompts.borrow().clone();
        assert_eq!(prompts.len(), 1);
        assert!(prompts[0].starts_with("pay.example.com\nPay 88.00 CNY\n"));
        let sign1 = cose::parse_sign1_any_form(&signed, false).unwrap();
        let a = PaymentAssertion::from_cbor(&sign1.payload).unwrap();
        assert_eq!(a.counter, 1);
        assert_eq!(a.display_hash, sha256(prompts[0].as_bytes()));
    }

    #[test]
    fn a_failed_persist_signs_nothing() {
        let mut c = client(false);
        let r = c.authorize_durably(&payment_challenge(), Modality::Fingerprint, |_| {
            Err(DeviceError::Keystore("disk full".into()))
        });
        assert_eq!(r, Err(DeviceError::Keystore("disk full".into())));
        assert!(c.signer().prompts.borrow().is_empty());
    }

    #[test]
    fn a_failed_signature_still_uses_the_counter() {
        let mut c = client(true);
        let r = c.authorize_durably(&payment_challenge(), Modality::Fingerprint, |_| Ok(()));
        assert_eq!(r, Err(DeviceError::UserCanceled));
        assert_eq!(c.state().counter, 1);
    }

    #[test]
    fn deregistration_is_signed_with_the_next_counter() {
        let mut c = client(false);
        c.authorize(&payment_challenge(), Modality::Fingerprint)
            .unwrap();
        let signed = c.deregister_durably(|s| {
            assert_eq!(s.counter, 2);
            Ok(())
        });
        let sign1 = cose::parse_sign1_any_form(&signed.unwrap(), false).unwrap();
        let d = Deregistration::from_cbor(&sign1.payload).unwrap();
        assert_eq!(d.counter, 2);
        assert_eq!(d.rp_id_hash, sha256(RP.as_bytes()));
        assert_eq!(d.credential_id.as_bytes(), &[9; 32]);
        assert_eq!(d.tee_time, NOW);
        assert!(crypto::verify_es256(
            &public(&c),
            &sign1.to_be_signed,
            &sign1.signature,
            crypto::es256_signature_format(&sign1.signature)
        ));
        assert_eq!(
            c.signer().prompts.borrow().last().map(String::as_str),
            Some("Remove this device's payment credential for pay.example.com")
        );
    }

    #[test]
    fn another_rps_payment_challenge_is_refused_before_the_counter_moves() {
        let mut c = client(false);
        let mut ch = PaymentChallenge::from_cbor(&payment_challenge()).unwrap();
        ch.rp_id = "evil.example.com".into();
        let r = c.authorize_durably(&ch.to_cbor(), Modality::Fingerprint, |_| Ok(()));
        assert!(matches!(r, Err(DeviceError::InvalidChallenge(_))));
        assert_eq!(c.state().counter, 0);
    }
}
