//! DANGER: simulated devices of the demo vendor. Everything here drives the
//! fixed simulated vendor PKI (`biopay_tee_stub::VendorPki` with a published
//! seed), which anyone can sign with: for tests, demos and load generation
//! only, never for real payments. The server trusts that PKI's root only
//! under `--danger-demo-trust` ([`biopay_server::demo_trust`]).

use biopay_core::{
    cose, crypto, device::Client, messages::Message, render_transaction, CredentialId, DeviceModel,
    KeyAttestation, Liveness, Modality, PaymentAssertion, PaymentChallenge, RegistrationChallenge,
    SecurityLevel, SystemClock, VerifiedBootState,
};
pub use biopay_server::demo_trust::{DEMO_MODEL, DEMO_VENDOR};
use biopay_tee_stub::{DeviceConfig, Presentation, SoftwareTee, VendorPki};
use ring::{
    rand::SystemRandom,
    signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING},
};
use std::{path::Path, sync::Arc};

/// The demo vendor's PKI seed. Public: anyone can mint demo attestations.
pub const DANGER_DEMO_SEED: &[u8] = b"biopay danger demo vendor seed v1";

/// The demo vendor PKI (root, intermediates and device certificates, with
/// their private keys).
pub fn danger_demo_pki() -> Result<VendorPki, String> {
    VendorPki::new(DEMO_VENDOR, DANGER_DEMO_SEED).map_err(|e| e.to_string())
}

/// The demo model's trust entry as the simulator derives it; the server's
/// constant ([`biopay_server::demo_trust::danger_demo_model`]) must equal it
/// (server-tools/tests/demo_trust.rs).
pub fn simulated_demo_model() -> Result<DeviceModel, String> {
    Ok(danger_demo_pki()?.device_model(
        DEMO_MODEL,
        &[Modality::Fingerprint, Modality::Face],
        SecurityLevel::Tee,
    ))
}

/// A phone of the demo model: the software TEE behind the app client, with
/// a fingerprint ("right-thumb") and a face enrolled. The simulated user
/// presents the thumb for every prompt.
pub struct DemoDevice {
    client: Client<SoftwareTee, SystemClock>,
    rp_id: String,
}

impl DemoDevice {
    /// Provisions a new device whose state lives in `dir`.
    pub fn provision(dir: &Path, rp_id: &str) -> Result<Self, String> {
        let pki = danger_demo_pki()?;
        let mut tee = SoftwareTee::provision(
            &pki,
            DeviceConfig::new(DEMO_MODEL),
            dir,
            None,
            Arc::new(SystemClock),
        )
        .map_err(|e| e.to_string())?;
        tee.enroll_fingerprint("right-thumb")
            .map_err(|e| e.to_string())?;
        tee.enroll_face().map_err(|e| e.to_string())?;
        Ok(Self {
            client: Client::new(rp_id, tee, SystemClock),
            rp_id: rp_id.to_owned(),
        })
    }

    /// Reopens a device from `dir`.
    pub fn open(dir: &Path, rp_id: &str) -> Result<Self, String> {
        let tee = SoftwareTee::open(dir, Arc::new(SystemClock)).map_err(|e| e.to_string())?;
        Ok(Self {
            client: Client::new(rp_id, tee, SystemClock),
            rp_id: rp_id.to_owned(),
        })
    }

    /// The TEE, for fault injection in tests.
    pub fn tee_mut(&mut self) -> &mut SoftwareTee {
        self.client.authenticator_mut()
    }

    /// Answers a registration challenge (CBOR) with a key attestation for
    /// fingerprint and face.
    pub fn register(&mut self, challenge: &[u8]) -> Result<Vec<u8>, String> {
        self.tee_mut()
            .user()
            .present(Presentation::Finger("right-thumb".into()));
        self.client
            .register(challenge, &[Modality::Fingerprint, Modality::Face])
            .map_err(|e| e.to_string())
    }

    /// Answers a payment challenge (CBOR): the TEE shows the transaction, the
    /// user confirms and presents the thumb.
    pub fn authorize(&mut self, challenge: &[u8]) -> Result<Vec<u8>, String> {
        self.tee_mut()
            .user()
            .present(Presentation::Finger("right-thumb".into()));
        self.client.authorize(challenge).map_err(|e| e.to_string())
    }

    /// Signs a deregistration of `id`.
    pub fn deregister(&mut self, id: &CredentialId) -> Result<Vec<u8>, String> {
        self.client.deregister(id).map_err(|e| e.to_string())
    }

    /// Re-signs a payment statement's payload, changed by `f`, with the
    /// genuine credential key (a compromised app driving the key).
    pub fn danger_resign(
        &mut self,
        statement: &[u8],
        f: impl FnOnce(&mut PaymentAssertion),
    ) -> Result<Vec<u8>, String> {
        let sign1 = cose::parse_sign1(statement, false).map_err(|e| e.to_string())?;
        let mut a = PaymentAssertion::from_cbor(&sign1.payload).map_err(|e| e.to_string())?;
        f(&mut a);
        let id = a.credential_id.clone();
        let rp = self.rp_id.clone();
        self.tee_mut()
            .danger_sign_with_credential(&rp, &id, a.to_cbor())
            .map_err(|e| e.to_string())
    }
}

/// A load-generator device: a genuine demo-model attestation key (in a
/// software TEE) certifies a credential key that the generator holds in
/// memory, so each payment costs one ECDSA signature and no disk write on the
/// client side. It plays a correct device: counters increase, the transaction
/// and display hashes are computed from the challenge.
pub struct FastDevice {
    tee: SoftwareTee,
    rp_id: String,
    key: EcdsaKeyPair,
    rng: SystemRandom,
    /// The credential id's random part; the registration challenge's prefix goes first.
    random_id: [u8; 32],
    credential_id: CredentialId,
    epoch: [u8; 32],
    counter: u64,
}

impl FastDevice {
    /// A device provisioned in `dir` with a fresh credential key.
    pub fn new(dir: &Path, rp_id: &str) -> Result<Self, String> {
        let pki = danger_demo_pki()?;
        let tee = SoftwareTee::provision(
            &pki,
            DeviceConfig::new(DEMO_MODEL),
            dir,
            None,
            Arc::new(SystemClock),
        )
        .map_err(|e| e.to_string())?;
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| "key generation failed".to_owned())?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|_| "key parse failed".to_owned())?;
        let mut id = [0u8; 32];
        ring::rand::SecureRandom::fill(&rng, &mut id).map_err(|_| "rng failed".to_owned())?;
        let mut epoch = [0u8; 32];
        ring::rand::SecureRandom::fill(&rng, &mut epoch).map_err(|_| "rng failed".to_owned())?;
        Ok(Self {
            tee,
            rp_id: rp_id.to_owned(),
            key,
            rng,
            random_id: id,
            credential_id: CredentialId::new(id.to_vec()).map_err(|e| e.to_string())?,
            epoch,
            counter: 0,
        })
    }

    /// The credential id (its first two bytes are set by [`Self::register`]).
    pub fn credential_id(&self) -> &CredentialId {
        &self.credential_id
    }

    fn sign(&self, payload: Vec<u8>) -> Result<Vec<u8>, String> {
        cose::sign1(payload, &[], |tbs| {
            self.key
                .sign(&self.rng, tbs)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| "signing failed".to_owned())
        })
    }

    /// A key attestation answering `challenge` (CBOR), signed by the TEE's
    /// attestation key. The credential id's first two bytes become the
    /// account's slot ([`biopay_core::routing`]), so that a sharded server
    /// finds the account's shard from the id.
    pub fn register(&mut self, challenge: &[u8]) -> Result<Vec<u8>, String> {
        let c = RegistrationChallenge::from_cbor(challenge).map_err(|e| e.to_string())?;
        self.credential_id =
            biopay_core::routing::prefixed_credential_id(c.credential_id_prefix, &self.random_id)
                .map_err(|e| e.to_string())?;
        let att = KeyAttestation {
            rp_id_hash: crypto::sha256(self.rp_id.as_bytes()),
            account_handle: c.account_handle,
            challenge: c.challenge,
            credential_public_key: self.key.public_key().as_ref().to_vec(),
            credential_id: self.credential_id.clone(),
            modalities: vec![Modality::Fingerprint],
            enrollment_epoch: self.epoch,
            security_level: SecurityLevel::Tee,
            device_model: DEMO_MODEL.to_owned(),
            verified_boot: VerifiedBootState::Verified,
            tee_time: biopay_core::Clock::now(&SystemClock),
            initial_counter: 0,
        };
        self.tee
            .danger_sign_with_attestation_key(att.to_cbor())
            .map_err(|e| e.to_string())
    }

    /// A payment assertion answering `challenge` (CBOR).
    pub fn authorize(&mut self, challenge: &[u8]) -> Result<Vec<u8>, String> {
        let c = PaymentChallenge::from_cbor(challenge).map_err(|e| e.to_string())?;
        self.counter += 1;
        let a = PaymentAssertion {
            rp_id_hash: crypto::sha256(self.rp_id.as_bytes()),
            credential_id: self.credential_id.clone(),
            challenge: c.challenge,
            transaction_hash: c.transaction.transaction_hash(),
            display_hash: crypto::sha256(
                render_transaction(&self.rp_id, &c.transaction).as_bytes(),
            ),
            modality: Modality::Fingerprint,
            template_id: [7; 16],
            liveness: Liveness::NotChecked,
            failed_attempts: 0,
            counter: self.counter,
            tee_time: biopay_core::Clock::now(&SystemClock),
            user_confirmed: true,
            enrollment_epoch: self.epoch,
        };
        self.sign(a.to_cbor())
    }
}
