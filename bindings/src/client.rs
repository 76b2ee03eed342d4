//! The app-facing client and the software TEE.

use crate::{
    errors::BiopayError,
    keystore::{PlatformKeystore, SimulatedKeystore},
    keystore_client::KeystoreBackend,
    types::{DeviceModelConfig, LocalCredential, Modality, SecurityLevel},
};
use biopay_core::{
    Authenticator, Client, CredentialId, DeviceError, PaymentChallenge, RegistrationChallenge,
    SystemClock,
};
use biopay_tee_stub::{DeviceConfig, KeymintApplication, Presentation, SoftwareTee, VendorPki};
use futures_util::future::{select, Either};
use std::{
    collections::BTreeMap,
    future::Future,
    path::Path,
    pin::{pin, Pin},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    task::{Context, Poll, Waker},
};

/// A simulated device vendor: a root CA and per-model intermediates that
/// certify [`SimulatedTee`] attestation keys.
#[derive(uniffi::Object)]
pub struct SimulatedVendor {
    pki: VendorPki,
}

#[uniffi::export]
impl SimulatedVendor {
    /// A vendor whose keys derive from `seed` (the same seed gives the same PKI).
    #[uniffi::constructor]
    pub fn new(name: String, seed: Vec<u8>) -> Result<Arc<Self>, BiopayError> {
        Ok(Arc::new(Self {
            pki: VendorPki::new(&name, &seed)?,
        }))
    }

    /// The trust configuration a verifier needs for one of this vendor's models.
    pub fn device_model(
        &self,
        model_id: String,
        modalities: Vec<Modality>,
        security_level: SecurityLevel,
    ) -> DeviceModelConfig {
        DeviceModelConfig {
            model_id,
            trust_anchor_spkis: vec![self.pki.trust_anchor().spki_der],
            modalities,
            security_level,
        }
    }

    /// The vendor root key (DER SubjectPublicKeyInfo), to trust the simulated
    /// KeyMint attestations as an Android root
    /// ([`crate::PaymentVerifier::trust_android`]).
    pub fn android_trust_root(&self) -> Vec<u8> {
        self.pki.trust_anchor().spki_der
    }

    /// **A test double, not an attestation.** A simulated KeyMint
    /// attestation CA of this vendor certifies `public_key` (SEC1
    /// uncompressed P-256, generated anywhere, e.g. by a JVM test with
    /// `KeyPairGenerator`) as a biometric-bound signing key generated in a TEE
    /// (StrongBox if `strong_box`) with `attestation_challenge`, for
    /// `package_name` signed by `signing_cert_digest` (32 bytes). Nothing of
    /// that is true of the key: this lets a test keystore written in Kotlin,
    /// Swift or Python run the full link. Returns the chain, DER, leaf first.
    pub fn certify_keystore_key(
        &self,
        public_key: Vec<u8>,
        attestation_challenge: Vec<u8>,
        package_name: String,
        signing_cert_digest: Vec<u8>,
        strong_box: bool,
    ) -> Result<Vec<Vec<u8>>, BiopayError> {
        Ok(self.pki.certify_keystore_key(
            &public_key,
            &attestation_challenge,
            &package_name,
            digest32(signing_cert_digest)?,
            strong_box,
        )?)
    }
}

fn digest32(d: Vec<u8>) -> Result<[u8; 32], BiopayError> {
    <[u8; 32]>::try_from(d).map_err(|_| BiopayError::Keystore {
        reason: "signing certificate digest must be 32 bytes (SHA-256)".into(),
    })
}

/// The software TEE: keys sealed inside, simulated biometrics and trusted
/// UI, persisted in a directory. Tests script the user with the `present_*`
/// and `will_confirm` methods before each operation.
#[derive(uniffi::Object)]
pub struct SimulatedTee {
    tee: Mutex<SoftwareTee>,
}

impl SimulatedTee {
    pub(crate) fn lock(&self) -> MutexGuard<'_, SoftwareTee> {
        self.tee.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[uniffi::export]
impl SimulatedTee {
    /// Provisions a new device of `model_id` certified by `vendor`, keeping its state in `state_dir`.
    #[uniffi::constructor]
    pub fn provision(
        vendor: Arc<SimulatedVendor>,
        model_id: String,
        state_dir: String,
    ) -> Result<Arc<Self>, BiopayError> {
        let tee = SoftwareTee::provision(
            &vendor.pki,
            DeviceConfig::new(&model_id),
            Path::new(&state_dir),
            None,
            Arc::new(SystemClock),
        )?;
        Ok(Arc::new(Self {
            tee: Mutex::new(tee),
        }))
    }

    /// Reopens a device from its state directory.
    #[uniffi::constructor]
    pub fn open(state_dir: String) -> Result<Arc<Self>, BiopayError> {
        let tee = SoftwareTee::open(Path::new(&state_dir), Arc::new(SystemClock))?;
        Ok(Arc::new(Self {
            tee: Mutex::new(tee),
        }))
    }

    /// Enrolls a fingerprint under `label`.
    pub fn enroll_fingerprint(&self, label: String) -> Result<(), BiopayError> {
        Ok(self.lock().enroll_fingerprint(&label)?)
    }
    /// Enrolls the face.
    pub fn enroll_face(&self) -> Result<(), BiopayError> {
        Ok(self.lock().enroll_face()?)
    }
    /// Removes a fingerprint.
    pub fn remove_fingerprint(&self, label: String) -> Result<(), BiopayError> {
        Ok(self.lock().remove_fingerprint(&label)?)
    }
    /// The simulated user will next present the finger `label` (enrolled or not).
    pub fn present_finger(&self, label: String) {
        self.lock().user().present(Presentation::Finger(label));
    }
    /// The simulated user will next present a live face.
    pub fn present_face(&self) {
        self.lock().user().present(Presentation::Face);
    }
    /// The simulated user will next present a spoof (a photo, a silicone finger).
    pub fn present_spoof(&self, modality: Modality) {
        self.lock()
            .user()
            .present(Presentation::Spoof(modality.into()));
    }
    /// The simulated user will next dismiss the biometric prompt.
    pub fn present_cancel(&self) {
        self.lock().user().present(Presentation::Cancel);
    }
    /// The simulated user will confirm (or decline) the next transaction shown.
    pub fn will_confirm(&self, confirm: bool) {
        self.lock().user().will_confirm(confirm);
    }
    /// The text the trusted UI showed last.
    pub fn last_display(&self) -> Option<String> {
        self.lock().last_display().map(str::to_owned)
    }
    /// Clears lockouts (the user entered the device passcode).
    pub fn passcode_reset(&self) -> Result<(), BiopayError> {
        Ok(self.lock().passcode_reset()?)
    }
    /// This device as a [`PlatformKeystore`] in the manner of Android
    /// KeyMint, for the app `package_name` whose signing certificate has
    /// SHA-256 `signing_cert_digest`: keys by alias, one biometric attempt
    /// per signature (script it with `present_*`; the prompt text becomes
    /// `last_display`), invalidated when a template is added or removed, and
    /// attested in a chain to the vendor root
    /// ([`SimulatedVendor::android_trust_root`]).
    pub fn as_keystore(
        self: Arc<Self>,
        package_name: String,
        signing_cert_digest: Vec<u8>,
    ) -> Result<Arc<dyn PlatformKeystore>, BiopayError> {
        Ok(Arc::new(SimulatedKeystore {
            tee: self,
            app: KeymintApplication {
                package_name,
                signing_cert_digest: digest32(signing_cert_digest)?,
            },
        }))
    }
}

/// An [`Authenticator`] over a shared [`SimulatedTee`].
struct SharedTee(Arc<SimulatedTee>);

impl Authenticator for SharedTee {
    fn make_credential(
        &mut self,
        c: &RegistrationChallenge,
        m: &[biopay_core::Modality],
    ) -> Result<Vec<u8>, DeviceError> {
        self.0.lock().make_credential(c, m)
    }
    fn get_assertion(&mut self, c: &PaymentChallenge) -> Result<Vec<u8>, DeviceError> {
        self.0.lock().get_assertion(c)
    }
    fn deregister(&mut self, rp_id: &str, id: &CredentialId) -> Result<Vec<u8>, DeviceError> {
        self.0.lock().deregister(rp_id, id)
    }
    fn enrollment_change(
        &mut self,
        rp_id: &str,
        id: &CredentialId,
    ) -> Result<Vec<u8>, DeviceError> {
        self.0.lock().enrollment_change(rp_id, id)
    }
    fn credentials(&self, rp_id: &str) -> Result<Vec<biopay_core::LocalCredential>, DeviceError> {
        self.0.lock().credentials(rp_id)
    }
}

/// What an app calls. One client serves one relying party (its rp id); it
/// checks every server challenge (strict decoding, rp id, expiry) before the
/// device sees it. All byte arrays are the protocol's CBOR/COSE encodings,
/// to be sent to and received from the payment server as they are.
///
/// Two backends: the software TEE ([`Self::with_simulated_tee`], KeyAttestation
/// credentials) and a platform keystore ([`Self::with_keystore`],
/// PlatformKeyRegistration credentials, docs/PROTOCOL.md §12).
///
/// `register`, `authorize` and `deregister` are async (Kotlin `suspend`,
/// Swift and Python `async`): they suspend while the keystore's prompt is
/// up, and calls on one client run one after the other (a second call waits
/// without blocking a thread). Cancelling the coroutine / task during the
/// prompt cancels the keystore's `sign` and uses up no counter; Swift tasks
/// do not propagate cancellation across the FFI, so call [`Self::cancel`]
/// from a cancellation handler. `credentials` is synchronous and never waits
/// for a call in progress.
#[derive(uniffi::Object)]
pub struct BiopayClient {
    backend: Backend,
    cancel: Cancel,
}

enum Backend {
    Tee(Mutex<Client<SharedTee, SystemClock>>),
    Keystore(KeystoreBackend),
}

fn lock_tee(
    m: &Mutex<Client<SharedTee, SystemClock>>,
) -> MutexGuard<'_, Client<SharedTee, SystemClock>> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn check_rp_id(rp_id: &str) -> Result<(), BiopayError> {
    biopay_core::messages::validate_rp_id(rp_id).map_err(|e| BiopayError::InvalidChallenge {
        reason: e.to_string(),
    })
}

/// [`BiopayClient::cancel`]: every call that started before it ends with
/// [`BiopayError::Cancelled`] at its next suspension point (waiting for the
/// client, or for the prompt).
#[derive(Default)]
struct Cancel {
    state: Mutex<CancelState>,
}

#[derive(Default)]
struct CancelState {
    /// How many times `cancel` was called.
    epoch: u64,
    next_id: u64,
    /// The calls waiting, by registration id.
    waiting: BTreeMap<u64, Waker>,
}

impl Cancel {
    fn lock(&self) -> MutexGuard<'_, CancelState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn cancel(&self) {
        let mut s = self.lock();
        s.epoch = s.epoch.saturating_add(1);
        for (_, w) in std::mem::take(&mut s.waiting) {
            w.wake();
        }
    }

    /// Runs `op` unless `cancel` is called first; dropping `op` (which
    /// undoes what it started, see `keystore_client`) when it is.
    async fn run<T>(
        &self,
        op: impl Future<Output = Result<T, BiopayError>>,
    ) -> Result<T, BiopayError> {
        let (since, id) = {
            let mut s = self.lock();
            let id = s.next_id;
            s.next_id = s.next_id.wrapping_add(1);
            (s.epoch, id)
        };
        let cancelled = CancelWait {
            cancel: self,
            since,
            id,
        };
        match select(pin!(op), pin!(cancelled)).await {
            Either::Left((result, _)) => result,
            Either::Right(((), _op)) => Err(BiopayError::Cancelled),
        }
    }
}

/// Ready once `cancel` was called after `since`.
struct CancelWait<'a> {
    cancel: &'a Cancel,
    since: u64,
    id: u64,
}

impl Future for CancelWait<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = self.cancel.lock();
        if s.epoch > self.since {
            return Poll::Ready(());
        }
        s.waiting.insert(self.id, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for CancelWait<'_> {
    fn drop(&mut self) {
        self.cancel.lock().waiting.remove(&self.id);
    }
}

#[uniffi::export]
impl BiopayClient {
    /// A client for `rp_id` on the software TEE.
    #[uniffi::constructor]
    pub fn with_simulated_tee(
        rp_id: String,
        tee: Arc<SimulatedTee>,
    ) -> Result<Arc<Self>, BiopayError> {
        check_rp_id(&rp_id)?;
        Ok(Arc::new(Self {
            backend: Backend::Tee(Mutex::new(Client::new(&rp_id, SharedTee(tee), SystemClock))),
            cancel: Cancel::default(),
        }))
    }

    /// A client for `rp_id` on a platform keystore (Android Keystore, the
    /// Secure Enclave, or [`SimulatedTee::as_keystore`]). Credential states
    /// (ids, key aliases, counters) are kept in `state_dir`, one file per rp,
    /// written durably before each statement is returned and reloaded here
    /// (file I/O: call it off the main thread); a corrupt file is
    /// `Keystore`. Do not use two clients of the same rp and directory at
    /// once, and do not await the client from inside the keystore (calls
    /// are serialized).
    #[uniffi::constructor]
    pub fn with_keystore(
        rp_id: String,
        keystore: Arc<dyn PlatformKeystore>,
        state_dir: String,
    ) -> Result<Arc<Self>, BiopayError> {
        check_rp_id(&rp_id)?;
        let backend = KeystoreBackend::open(&rp_id, keystore, Path::new(&state_dir))?;
        Ok(Arc::new(Self {
            backend: Backend::Keystore(backend),
            cancel: Cancel::default(),
        }))
    }

    /// Registers a credential bound to `modalities`: `challenge` is the
    /// server's RegistrationChallenge; returns the KeyAttestation (software
    /// TEE) or PlatformKeyRegistration (keystore) to send back. On a keystore
    /// this generates a key (alias from the random credential id) with the
    /// challenge as its attestation challenge, StrongBox when the challenge
    /// requires it, and signs once (biometric prompt); cancelled or failed,
    /// the key is deleted and nothing is stored.
    pub async fn register(
        &self,
        challenge: Vec<u8>,
        modalities: Vec<Modality>,
    ) -> Result<Vec<u8>, BiopayError> {
        let m: Vec<biopay_core::Modality> = modalities.into_iter().map(Into::into).collect();
        self.cancel
            .run(async {
                match &self.backend {
                    Backend::Tee(c) => Ok(lock_tee(c).register(&challenge, &m)?),
                    Backend::Keystore(k) => k.register(&challenge, &m).await,
                }
            })
            .await
    }

    /// Authorizes a payment: `challenge` is the server's PaymentChallenge; the
    /// device shows the transaction, matches a biometric and returns the
    /// PaymentAssertion. On a keystore the biometric prompt shows the
    /// transaction's docs/PROTOCOL.md §5 text, and the reported modality is
    /// the first of the credential's modalities the challenge accepts (the
    /// platform does not say which biometric matched). The counter is
    /// stored before the prompt; a failed prompt uses it up, a cancelled
    /// call gives it back.
    pub async fn authorize(&self, challenge: Vec<u8>) -> Result<Vec<u8>, BiopayError> {
        self.cancel
            .run(async {
                match &self.backend {
                    Backend::Tee(c) => Ok(lock_tee(c).authorize(&challenge)?),
                    Backend::Keystore(k) => k.authorize(&challenge).await,
                }
            })
            .await
    }

    /// Deletes a credential on the device; returns the Deregistration
    /// statement for the server (on a keystore: signed after a biometric
    /// prompt, then the key is deleted).
    pub async fn deregister(&self, credential_id: Vec<u8>) -> Result<Vec<u8>, BiopayError> {
        let id = crate::types::credential_id(credential_id)?;
        self.cancel
            .run(async {
                match &self.backend {
                    Backend::Tee(c) => Ok(lock_tee(c).deregister(&id)?),
                    Backend::Keystore(k) => k.deregister(&id).await,
                }
            })
            .await
    }

    /// Cancels every `register` / `authorize` / `deregister` in progress on
    /// this client (the keystore's `sign` is cancelled, the prompt should
    /// close): each ends with `Cancelled`, uses up no counter and stores
    /// nothing. For Swift (`withTaskCancellationHandler`) and for callers
    /// without structured cancellation; a no-op when nothing is in progress.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Lists this relying party's credentials on the device. Synchronous and
    /// quick: it does not wait for a call in progress (asks the keystore
    /// each key's state).
    pub fn credentials(&self) -> Result<Vec<LocalCredential>, BiopayError> {
        match &self.backend {
            Backend::Tee(c) => Ok(lock_tee(c)
                .credentials()?
                .into_iter()
                .map(Into::into)
                .collect()),
            Backend::Keystore(k) => k.credentials(),
        }
    }
}
