//! The app-facing client and the software TEE.

use crate::{
    errors::BiopayError,
    types::{DeviceModelConfig, LocalCredential, Modality, SecurityLevel},
};
use biopay_core::{
    Authenticator, Client, CredentialId, DeviceError, PaymentChallenge, RegistrationChallenge,
    SystemClock,
};
use biopay_tee_stub::{DeviceConfig, Presentation, SoftwareTee, VendorPki};
use std::{
    path::Path,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
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
}

/// The software TEE: keys sealed inside, simulated biometrics and trusted
/// UI, persisted in a directory. Tests script the user with the `present_*`
/// and `will_confirm` methods before each operation.
#[derive(uniffi::Object)]
pub struct SimulatedTee {
    tee: Mutex<SoftwareTee>,
}

impl SimulatedTee {
    fn lock(&self) -> MutexGuard<'_, SoftwareTee> {
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
#[derive(uniffi::Object)]
pub struct BiopayClient {
    client: Mutex<Client<SharedTee, SystemClock>>,
}

impl BiopayClient {
    fn lock(&self) -> MutexGuard<'_, Client<SharedTee, SystemClock>> {
        self.client.lock().unwrap_or_else(PoisonError::into_inner)
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
        biopay_core::messages::validate_rp_id(&rp_id).map_err(|e| {
            BiopayError::InvalidChallenge {
                reason: e.to_string(),
            }
        })?;
        Ok(Arc::new(Self {
            client: Mutex::new(Client::new(&rp_id, SharedTee(tee), SystemClock)),
        }))
    }

    /// Registers a credential bound to `modalities`: `challenge` is the
    /// server's RegistrationChallenge; returns the KeyAttestation to send back.
    pub fn register(
        &self,
        challenge: Vec<u8>,
        modalities: Vec<Modality>,
    ) -> Result<Vec<u8>, BiopayError> {
        let m: Vec<biopay_core::Modality> = modalities.into_iter().map(Into::into).collect();
        Ok(self.lock().register(&challenge, &m)?)
    }

    /// Authorizes a payment: `challenge` is the server's PaymentChallenge; the
    /// device shows the transaction, matches a biometric and returns the PaymentAssertion.
    pub fn authorize(&self, challenge: Vec<u8>) -> Result<Vec<u8>, BiopayError> {
        Ok(self.lock().authorize(&challenge)?)
    }

    /// Deletes a credential on the device; returns the Deregistration statement for the server.
    pub fn deregister(&self, credential_id: Vec<u8>) -> Result<Vec<u8>, BiopayError> {
        let id = crate::types::credential_id(credential_id)?;
        Ok(self.lock().deregister(&id)?)
    }

    /// Lists this relying party's credentials on the device.
    pub fn credentials(&self) -> Result<Vec<LocalCredential>, BiopayError> {
        Ok(self
            .lock()
            .credentials()?
            .into_iter()
            .map(Into::into)
            .collect())
    }
}
