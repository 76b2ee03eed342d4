//! iOS: a Secure Enclave key bound to an Apple App Attest attestation
//! (docs/PROTOCOL.md §13).
//!
//! - [`SecureEnclaveCredential`]: the device side. Each statement is made in
//!   two steps so that the Swift app keeps the Secure Enclave and App Attest
//!   calls (and their async LocalAuthentication prompts) in Swift:
//!   `prepare_*` returns the bytes to sign and the prompt text, the app signs
//!   them with its `.biometryCurrentSet` key, `finish` builds the statement.
//!   For a registration the app first asks
//!   [`SecureEnclaveCredential::registration_client_data_hash`] for the
//!   clientDataHash to pass to `DCAppAttestService.attestKey`.
//! - [`SimulatedAppAttestService`] and [`SimulatedSecureEnclaveKey`]: test
//!   doubles of App Attest (Apple's format under a simulated root) and of the
//!   Secure Enclave key (a software P-256 key that can be invalidated, as a
//!   Face ID change invalidates a `.biometryCurrentSet` key).
//! - `PaymentVerifier.trust_apple`, `verify_apple_registration` and
//!   `verify_payment_with_app_attest`: the verifier side.
//!
//! The assurance is not a TEE's: a genuine instance of an allowed app on a
//! genuine Apple device made the key; that every signature needs a fresh
//! biometric is enforced by the app's own code, not attested by hardware.

use crate::{
    errors::{BiopayError, VerificationError},
    types::{ApprovedPayment, Modality, RegisteredCredential},
    verifier::PaymentVerifier,
};
use biopay_core::{
    apple::{AppAttestEnvironment, AppleTrust},
    cose, crypto,
    routing::prefixed_credential_id,
    CredentialId, DeviceError, Message, PlatformCredentialState, PlatformKeystoreClient,
    PlatformKeystoreSigner, RegistrationChallenge, SystemClock,
};
use std::sync::{Arc, Mutex, PoisonError};

/// What the app must sign: show `prompt_text` in the LocalAuthentication
/// prompt and sign `data` with the Secure Enclave key (ECDSA P-256/SHA-256,
/// `.ecdsaSignatureMessageX962SHA256`), then pass the signature to
/// [`SecureEnclaveCredential::finish`].
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SigningRequest {
    /// The bytes to sign (the COSE Sig_structure of the statement).
    pub data: Vec<u8>,
    /// The prompt text (§5 rendering for a payment).
    pub prompt_text: String,
}

/// A signer that records what it was asked to sign and returns a
/// placeholder: the statement is rebuilt with the real signature in `finish`.
struct Capture {
    asked: Mutex<Option<SigningRequest>>,
}

impl PlatformKeystoreSigner for Capture {
    fn attestation_chain(&self) -> Result<Vec<Vec<u8>>, DeviceError> {
        Ok(Vec::new())
    }
    fn sign(&self, data: &[u8]) -> Result<Vec<u8>, DeviceError> {
        self.sign_with_prompt(data, "")
    }
    fn sign_with_prompt(&self, data: &[u8], prompt: &str) -> Result<Vec<u8>, DeviceError> {
        *self.asked.lock().unwrap_or_else(PoisonError::into_inner) = Some(SigningRequest {
            data: data.to_vec(),
            prompt_text: prompt.to_owned(),
        });
        Ok(vec![0; cose::ES256_SIG_LEN])
    }
}

struct Inner {
    client: PlatformKeystoreClient<Capture, SystemClock>,
    /// The payload of the statement waiting for its signature.
    pending: Option<Vec<u8>>,
    /// The relying party of the credential.
    rp_id: String,
    /// For a credential made by `new`: the app's random bytes, which each
    /// registration challenge's `credential_id_prefix` goes in front of
    /// (docs/PROTOCOL.md §4.1.9).
    random_id: Option<Vec<u8>>,
}

impl Inner {
    /// A credential made by `new` takes the id `challenge`'s
    /// `credential_id_prefix` followed by the app's random bytes. A resumed
    /// credential keeps its id (core refuses a challenge with another prefix).
    fn bind(&mut self, challenge: &[u8]) -> Result<(), BiopayError> {
        let Some(random) = &self.random_id else {
            return Ok(());
        };
        let c = RegistrationChallenge::from_cbor(challenge).map_err(DeviceError::from)?;
        if c.rp_id != self.rp_id {
            return Err(invalid(format!(
                "challenge is for rp `{}`, this credential is for `{}`",
                c.rp_id, self.rp_id
            )));
        }
        let mut state = self.client.state().clone();
        state.credential_id = prefixed_credential_id(c.credential_id_prefix, random)
            .map_err(|e| invalid(e.to_string()))?;
        self.client = PlatformKeystoreClient::resume(
            &self.rp_id,
            Capture {
                asked: Mutex::new(None),
            },
            SystemClock,
            state,
        );
        Ok(())
    }
}

/// The device side of one iOS credential of one relying party. Persist
/// [`Self::counter`] after every `prepare_*` (before the key signs) and
/// restore it with [`Self::resume`].
#[derive(uniffi::Object)]
pub struct SecureEnclaveCredential {
    inner: Mutex<Inner>,
}

fn invalid(reason: impl Into<String>) -> BiopayError {
    BiopayError::InvalidChallenge {
        reason: reason.into(),
    }
}

impl SecureEnclaveCredential {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs a statement builder with the capturing signer; keeps its payload.
    fn prepare(
        &self,
        build: impl FnOnce(
            &mut PlatformKeystoreClient<Capture, SystemClock>,
        ) -> Result<Vec<u8>, DeviceError>,
    ) -> Result<SigningRequest, BiopayError> {
        let mut g = self.lock();
        let unsigned = build(&mut g.client)?;
        let payload = cose::parse_sign1_any_form(&unsigned, false)
            .map_err(|e| BiopayError::Internal {
                reason: e.to_string(),
            })?
            .payload;
        let asked = g
            .client
            .signer()
            .asked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or_else(|| BiopayError::Internal {
                reason: "nothing to sign".into(),
            })?;
        g.pending = Some(payload);
        Ok(asked)
    }

    fn make(
        rp_id: String,
        credential_id: Vec<u8>,
        modalities: Vec<Modality>,
        enrollment_epoch: Vec<u8>,
        counter: u64,
        fresh: bool,
    ) -> Result<Arc<Self>, BiopayError> {
        let random_id = fresh.then(|| credential_id.clone());
        let credential_id = CredentialId::new(credential_id).map_err(|e| invalid(e.to_string()))?;
        let enrollment_epoch = <[u8; 32]>::try_from(enrollment_epoch)
            .map_err(|_| invalid("enrollment_epoch must be 32 bytes"))?;
        let mut modalities: Vec<biopay_core::Modality> =
            modalities.into_iter().map(Into::into).collect();
        modalities.sort();
        modalities.dedup();
        let signer = Capture {
            asked: Mutex::new(None),
        };
        let client = PlatformKeystoreClient::resume(
            &rp_id,
            signer,
            SystemClock,
            PlatformCredentialState {
                credential_id,
                modalities,
                enrollment_epoch,
                counter,
            },
        );
        Ok(Arc::new(Self {
            inner: Mutex::new(Inner {
                client,
                pending: None,
                rp_id,
                random_id,
            }),
        }))
    }
}

#[uniffi::export]
impl SecureEnclaveCredential {
    /// A new credential (counter 0) of `rp_id`: `credential_id` (16..=62
    /// random bytes, chosen by the app), the modalities the key is bound to
    /// and the app's enrollment epoch (32 bytes, its own convention).
    ///
    /// The registered id is the registration challenge's
    /// `credential_id_prefix` (its account's slot, docs/PROTOCOL.md §4.1.9)
    /// followed by `credential_id`, set by
    /// [`Self::registration_client_data_hash`] and
    /// [`Self::prepare_registration`]; persist [`Self::credential_id`]
    /// after the registration, and pass it to [`Self::resume`].
    #[uniffi::constructor]
    pub fn new(
        rp_id: String,
        credential_id: Vec<u8>,
        modalities: Vec<Modality>,
        enrollment_epoch: Vec<u8>,
    ) -> Result<Arc<Self>, BiopayError> {
        if credential_id.len() > CredentialId::MAX_LEN - 2 {
            return Err(invalid(
                "credential_id must be 16..=62 bytes: the 2-byte prefix goes in front",
            ));
        }
        Self::make(rp_id, credential_id, modalities, enrollment_epoch, 0, true)
    }

    /// A credential restored from its persisted state (`credential_id` as
    /// [`Self::credential_id`] returned it after the registration).
    #[uniffi::constructor]
    pub fn resume(
        rp_id: String,
        credential_id: Vec<u8>,
        modalities: Vec<Modality>,
        enrollment_epoch: Vec<u8>,
        counter: u64,
    ) -> Result<Arc<Self>, BiopayError> {
        Self::make(
            rp_id,
            credential_id,
            modalities,
            enrollment_epoch,
            counter,
            false,
        )
    }

    /// The clientDataHash to pass to `DCAppAttestService.attestKey` for the
    /// server's registration challenge and the Secure Enclave key
    /// `public_key` (65-byte uncompressed point): SHA-256 of the binding of
    /// docs/PROTOCOL.md §13.3.
    pub fn registration_client_data_hash(
        &self,
        challenge: Vec<u8>,
        public_key: Vec<u8>,
    ) -> Result<Vec<u8>, BiopayError> {
        let mut g = self.lock();
        g.bind(&challenge)?;
        Ok(g.client
            .apple_client_data_hash(&challenge, &public_key)?
            .to_vec())
    }

    /// Step 1 of the AppleKeyRegistration (§13.8): the key id and the
    /// attestation object `attestKey` returned for
    /// [`Self::registration_client_data_hash`].
    pub fn prepare_registration(
        &self,
        challenge: Vec<u8>,
        public_key: Vec<u8>,
        app_attest_key_id: Vec<u8>,
        attestation_object: Vec<u8>,
    ) -> Result<SigningRequest, BiopayError> {
        let key_id = <[u8; 32]>::try_from(app_attest_key_id)
            .map_err(|_| invalid("the App Attest key id is 32 bytes"))?;
        self.lock().bind(&challenge)?;
        self.prepare(|c| c.register_apple(&challenge, &public_key, key_id, attestation_object))
    }

    /// Step 1 of a PaymentAssertion for the server's payment challenge; the
    /// prompt text is the transaction's §5 rendering. The counter is used up.
    pub fn prepare_payment(
        &self,
        challenge: Vec<u8>,
        modality: Modality,
    ) -> Result<SigningRequest, BiopayError> {
        self.prepare(|c| c.authorize(&challenge, modality.into()))
    }

    /// Step 1 of a Deregistration of this credential. The counter is used up.
    pub fn prepare_deregistration(&self) -> Result<SigningRequest, BiopayError> {
        self.prepare(|c| c.deregister_durably(|_| Ok(())))
    }

    /// Step 2: the statement, signed with `signature` (DER or r‖s) over the
    /// last prepared request's `data`. For a payment above the server's
    /// assertion amount, the app then calls `generateAssertion` with
    /// clientDataHash = SHA-256 of the returned bytes (§13.9).
    pub fn finish(&self, signature: Vec<u8>) -> Result<Vec<u8>, BiopayError> {
        let payload = self
            .lock()
            .pending
            .take()
            .ok_or_else(|| invalid("no statement is waiting for a signature"))?;
        let signature = match crypto::es256_signature_format(&signature) {
            crypto::SignatureFormat::Fixed => {
                crypto::es256_der_to_fixed(&signature).unwrap_or(signature)
            }
            crypto::SignatureFormat::Der => signature,
        };
        cose::sign1::<BiopayError>(payload, &[], |_| Ok(signature))
    }

    /// The last counter used (persist it after every `prepare_*`).
    pub fn counter(&self) -> u64 {
        self.lock().client.state().counter
    }

    /// The credential id: for a credential made by [`Self::new`], the
    /// app's random bytes until a registration challenge put its prefix in
    /// front.
    pub fn credential_id(&self) -> Vec<u8> {
        self.lock().client.state().credential_id.as_bytes().to_vec()
    }
}

/// SHA-256 of `data`: the clientDataHash of a payment's App Attest assertion
/// is `sha256(statement)`.
#[uniffi::export]
pub fn sha256(data: Vec<u8>) -> Vec<u8> {
    crypto::sha256(&data).to_vec()
}

/// A test double of the Secure Enclave key: a software P-256 key. After
/// [`Self::invalidate`] (a Face ID / Touch ID enrollment change under
/// `.biometryCurrentSet`) it throws `KeyInvalidated`.
#[derive(uniffi::Object)]
pub struct SimulatedSecureEnclaveKey {
    key: p256::ecdsa::SigningKey,
    invalidated: std::sync::atomic::AtomicBool,
}

#[uniffi::export]
impl SimulatedSecureEnclaveKey {
    /// A fresh random key.
    #[uniffi::constructor]
    pub fn new() -> Result<Arc<Self>, BiopayError> {
        use biopay_core::Random;
        let rng = biopay_core::SystemRandom::new();
        // A random scalar is valid except with negligible probability; retry.
        for _ in 0..8 {
            let mut seed = zeroize::Zeroizing::new([0u8; 32]);
            rng.fill(seed.as_mut()).map_err(|e| BiopayError::Internal {
                reason: e.to_string(),
            })?;
            if let Ok(key) = p256::ecdsa::SigningKey::from_slice(seed.as_ref()) {
                return Ok(Arc::new(Self {
                    key,
                    invalidated: std::sync::atomic::AtomicBool::new(false),
                }));
            }
        }
        Err(BiopayError::Internal {
            reason: "no valid P-256 key generated".into(),
        })
    }
    /// The public key, 65-byte uncompressed point.
    pub fn public_key(&self) -> Vec<u8> {
        self.key
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec()
    }
    /// Signs `data` (ECDSA P-256/SHA-256, DER), as `SecKeyCreateSignature`.
    pub fn sign(&self, data: Vec<u8>) -> Result<Vec<u8>, BiopayError> {
        use p256::ecdsa::signature::Signer;
        if self.invalidated.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(BiopayError::KeyInvalidated);
        }
        let sig: p256::ecdsa::Signature = self.key.sign(&data);
        Ok(sig.to_der().as_bytes().to_vec())
    }
    /// Simulates an enrollment change: the key is unusable from now on.
    pub fn invalidate(&self) {
        self.invalidated
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// An App Attest key of [`SimulatedAppAttestService`] (its counter moves
/// with each assertion).
#[derive(uniffi::Object)]
pub struct SimulatedAppAttestKey {
    key: Mutex<biopay_tee_stub::AppAttestKey>,
}

#[uniffi::export]
impl SimulatedAppAttestKey {
    /// Apple's key id (SHA-256 of the public key).
    pub fn key_id(&self) -> Vec<u8> {
        self.key
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .key_id()
            .to_vec()
    }
}

/// A test double of Apple's App Attest service for one app: attestations and
/// assertions in Apple's format under a simulated root.
#[derive(uniffi::Object)]
pub struct SimulatedAppAttestService {
    service: biopay_tee_stub::SimulatedAppAttest,
}

fn tee(e: biopay_tee_stub::TeeError) -> BiopayError {
    BiopayError::Internal {
        reason: e.to_string(),
    }
}

#[uniffi::export]
impl SimulatedAppAttestService {
    /// The service of `app_id` (`TEAMID.bundle.id`), production or development.
    #[uniffi::constructor]
    pub fn new(app_id: String, production: bool) -> Result<Arc<Self>, BiopayError> {
        let env = if production {
            AppAttestEnvironment::Production
        } else {
            AppAttestEnvironment::Development
        };
        Ok(Arc::new(Self {
            service: biopay_tee_stub::SimulatedAppAttest::new(&app_id, env).map_err(tee)?,
        }))
    }
    /// The simulated root certificate, PEM (for `AppleTrustConfig.root_certs_pem`).
    pub fn root_cert_pem(&self) -> String {
        self.service.root_cert_pem()
    }
    /// `generateKey`.
    pub fn generate_key(&self) -> Result<Arc<SimulatedAppAttestKey>, BiopayError> {
        Ok(Arc::new(SimulatedAppAttestKey {
            key: Mutex::new(self.service.generate_key().map_err(tee)?),
        }))
    }
    /// `attestKey(keyId, clientDataHash)`.
    pub fn attest_key(
        &self,
        key: Arc<SimulatedAppAttestKey>,
        client_data_hash: Vec<u8>,
    ) -> Result<Vec<u8>, BiopayError> {
        let hash = <[u8; 32]>::try_from(client_data_hash)
            .map_err(|_| invalid("clientDataHash is 32 bytes"))?;
        let k = key.key.lock().unwrap_or_else(PoisonError::into_inner);
        self.service.attest_key(&k, &hash).map_err(tee)
    }
    /// An attestation whose rpIdHash names `app_id` instead (an attack).
    pub fn danger_attest_key_for_app(
        &self,
        key: Arc<SimulatedAppAttestKey>,
        client_data_hash: Vec<u8>,
        app_id: String,
    ) -> Result<Vec<u8>, BiopayError> {
        let hash = <[u8; 32]>::try_from(client_data_hash)
            .map_err(|_| invalid("clientDataHash is 32 bytes"))?;
        let k = key.key.lock().unwrap_or_else(PoisonError::into_inner);
        let faults = biopay_tee_stub::AttestationFaults {
            app_id: Some(app_id),
            ..Default::default()
        };
        self.service
            .danger_attest_key_with(&k, &hash, &faults)
            .map_err(tee)
    }
    /// `generateAssertion(keyId, clientDataHash)` with the key's next counter.
    pub fn generate_assertion(
        &self,
        key: Arc<SimulatedAppAttestKey>,
        client_data_hash: Vec<u8>,
    ) -> Result<Vec<u8>, BiopayError> {
        let hash = <[u8; 32]>::try_from(client_data_hash)
            .map_err(|_| invalid("clientDataHash is 32 bytes"))?;
        let mut k = key.key.lock().unwrap_or_else(PoisonError::into_inner);
        self.service.generate_assertion(&mut k, &hash).map_err(tee)
    }
    /// An assertion with an arbitrary `counter` (a replay), key counter unchanged.
    pub fn danger_assertion_with_counter(
        &self,
        key: Arc<SimulatedAppAttestKey>,
        client_data_hash: Vec<u8>,
        counter: u32,
    ) -> Result<Vec<u8>, BiopayError> {
        let hash = <[u8; 32]>::try_from(client_data_hash)
            .map_err(|_| invalid("clientDataHash is 32 bytes"))?;
        let k = key.key.lock().unwrap_or_else(PoisonError::into_inner);
        self.service
            .danger_assertion_with(&k, &hash, counter, self.service.app_id())
            .map_err(tee)
    }
}

/// What the verifier trusts for App Attest (docs/PROTOCOL.md §13.2).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct AppleTrustConfig {
    /// Allowed app ids, `TEAMID.bundle.id`.
    pub app_ids: Vec<String>,
    /// The production environment (App Store / TestFlight) or development.
    pub production: bool,
    /// PEM roots replacing Apple's App Attestation Root CA (tests); empty:
    /// Apple's root.
    pub root_certs_pem: Vec<String>,
}

#[uniffi::export]
impl PaymentVerifier {
    /// Accepts Apple App Attest credentials (docs/PROTOCOL.md §13) under
    /// `config`, replacing any previous Apple trust configuration. The
    /// default policy caps them at USD/EUR 100.00 and CNY 500.00 and
    /// requires an App Attest assertion above USD/EUR 20.00 and CNY 100.00.
    pub fn trust_apple(&self, config: AppleTrustConfig) -> Result<(), VerificationError> {
        let bad = |reason: String| VerificationError::InvalidRequest { reason };
        if config.app_ids.is_empty() {
            return Err(bad("at least one app id is required".into()));
        }
        let env = if config.production {
            AppAttestEnvironment::Production
        } else {
            AppAttestEnvironment::Development
        };
        let mut trust = AppleTrust::new(config.app_ids, env);
        if !config.root_certs_pem.is_empty() {
            let anchors = config
                .root_certs_pem
                .iter()
                .enumerate()
                .map(|(i, pem)| {
                    biopay_core::apple::anchor_from_pem(
                        &format!("configured Apple root {i}"),
                        pem.as_bytes(),
                    )
                    .map_err(|e| bad(format!("Apple root {i}: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            trust = trust.with_anchors(anchors);
        }
        self.verifier.set_apple(Some(trust));
        Ok(())
    }

    /// Verifies an AppleKeyRegistration (docs/PROTOCOL.md §13.8, K1–K13 with
    /// I1–I10) and registers the credential (`kind` `apple_app_attest`).
    pub fn verify_apple_registration(
        &self,
        statement: Vec<u8>,
    ) -> Result<RegisteredCredential, VerificationError> {
        Ok(self
            .verifier
            .verify_apple_registration(&statement)?
            .record
            .into())
    }

    /// Verifies a PaymentAssertion with an optional App Attest assertion
    /// over SHA-256 of `statement` (docs/PROTOCOL.md §13.9: P17, J1–J4).
    pub fn verify_payment_with_app_attest(
        &self,
        statement: Vec<u8>,
        app_attest_assertion: Option<Vec<u8>>,
    ) -> Result<ApprovedPayment, VerificationError> {
        Ok(self
            .verifier
            .verify_payment_with_app_attest(&statement, app_attest_assertion.as_deref())?
            .into())
    }
}
