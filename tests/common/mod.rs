//! A world for end-to-end tests: a vendor PKI, a payment server (verifier on
//! an in-memory store) and a phone (software TEE behind the app client) with a
//! registered credential.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use biopay::{simulator::*, *};
use std::sync::Arc;

pub const RP: &str = "pay.example.com";
pub const MODEL: &str = "acme-phone-x1";
pub const NOW: u64 = 1_795_000_000;

pub type Server = Verifier<MemoryStore, Arc<ManualClock>, SystemRandom>;
pub type Phone = Client<SoftwareTee, Arc<ManualClock>>;

pub struct World {
    pub clock: Arc<ManualClock>,
    pub pki: VendorPki,
    pub server: Server,
    pub phone: Phone,
    pub cred: CredentialRecord,
    pub dir: tempfile::TempDir,
}

pub fn thumb() -> Presentation {
    Presentation::Finger("right-thumb".into())
}

pub fn tx(order: &str, amount_minor: u64) -> Transaction {
    Transaction {
        amount_minor,
        currency: "CNY".into(),
        payee_id: "merchant-0042".into(),
        payee_name: "Coffee Corner".into(),
        order_id: order.into(),
        memo: None,
    }
}

impl World {
    pub fn new() -> Self {
        Self::with(Policy::default(), DeviceConfig::new(MODEL))
    }

    /// A world whose server uses `policy` and whose phone is configured by `config`
    /// (the trust configuration lists MODEL as a TEE model with both modalities).
    pub fn with(policy: Policy, config: DeviceConfig) -> Self {
        let clock = Arc::new(ManualClock::new(NOW));
        let pki = VendorPki::new("Acme Devices", b"test vendor").unwrap();
        let trust = TrustConfig::new().with_model(pki.device_model(
            MODEL,
            &[Modality::Fingerprint, Modality::Face],
            SecurityLevel::Tee,
        ));
        let server = Verifier::new(
            RP,
            trust,
            policy,
            MemoryStore::new(),
            clock.clone(),
            SystemRandom::new(),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut tee =
            SoftwareTee::provision(&pki, config, &dir.path().join("phone"), None, clock.clone())
                .unwrap();
        tee.enroll_fingerprint("right-thumb").unwrap();
        tee.enroll_face().unwrap();
        let phone = Client::new(RP, tee, clock.clone());
        let mut w = Self {
            clock,
            pki,
            server,
            phone,
            cred: placeholder(),
            dir,
        };
        w.cred = w
            .register(b"account-7", &[Modality::Fingerprint, Modality::Face])
            .unwrap();
        w
    }

    /// Registers a new credential for `account`; the user presents the thumb
    /// (or the face when only face is requested).
    pub fn register(
        &mut self,
        account: &[u8],
        modalities: &[Modality],
    ) -> Result<CredentialRecord, Rejection> {
        let bytes = self.attestation(account, modalities);
        self.server.verify_registration(&bytes).map(|r| r.record)
    }

    /// A genuine key attestation for a fresh challenge (not yet verified).
    pub fn attestation(&mut self, account: &[u8], modalities: &[Modality]) -> Vec<u8> {
        let c = self
            .server
            .registration_challenge(account, modalities, SecurityLevel::Tee)
            .unwrap();
        let p = if modalities.contains(&Modality::Fingerprint) {
            thumb()
        } else {
            Presentation::Face
        };
        self.phone.authenticator_mut().user().present(p);
        self.phone.register(&c.to_cbor(), modalities).unwrap()
    }

    /// A payment challenge for the world's credential.
    pub fn challenge(&self, order: &str, amount_minor: u64) -> PaymentChallenge {
        self.server
            .payment_challenge(&self.cred.credential_id, tx(order, amount_minor))
            .unwrap()
    }

    /// A genuine assertion (thumb) for a fresh 88.00 CNY challenge, not yet verified.
    pub fn assertion(&mut self, order: &str) -> (PaymentChallenge, Vec<u8>) {
        let c = self.challenge(order, 8800);
        self.phone.authenticator_mut().user().present(thumb());
        let bytes = self.phone.authorize(&c.to_cbor()).unwrap();
        (c, bytes)
    }

    /// Re-signs a payment statement's payload, changed by `f`, with the genuine
    /// credential key (a compromised app that can drive the key; see `danger_sign_with_credential`).
    pub fn resign(&mut self, statement: &[u8], f: impl FnOnce(&mut PaymentAssertion)) -> Vec<u8> {
        let mut a = PaymentAssertion::from_cbor(&payload(statement)).unwrap();
        f(&mut a);
        let id = self.cred.credential_id.clone();
        self.phone
            .authenticator_mut()
            .danger_sign_with_credential(RP, &id, a.to_cbor())
            .unwrap()
    }

    /// The stored credential record now.
    pub fn stored(&self) -> CredentialRecord {
        self.server
            .store()
            .credential(&self.cred.credential_id)
            .unwrap()
            .unwrap()
    }

    /// Whether a challenge is still unused.
    pub fn unused(&self, c: &Challenge) -> bool {
        self.server
            .store()
            .challenge(c)
            .unwrap()
            .is_some_and(|e| !e.consumed)
    }
}

/// The payload of a tagged COSE_Sign1.
pub fn payload(statement: &[u8]) -> Vec<u8> {
    use coset::TaggedCborSerializable;
    coset::CoseSign1::from_tagged_slice(statement)
        .unwrap()
        .payload
        .unwrap()
}

fn placeholder() -> CredentialRecord {
    CredentialRecord {
        credential_id: CredentialId::new(vec![0; 16]).unwrap(),
        rp_id: String::new(),
        account_handle: Vec::new(),
        public_key: Vec::new(),
        modalities: Vec::new(),
        enrollment_epoch: [0; 32],
        security_level: SecurityLevel::Tee,
        kind: CredentialKind::TeeAttested,
        device_model: String::new(),
        counter: 0,
        status: CredentialStatus::Active,
        registered_at: 0,
        app_attest: None,
    }
}

/// Asserts a rejection at `step`.
#[track_caller]
pub fn assert_step<T: std::fmt::Debug>(result: Result<T, Rejection>, step: Step) -> Reason {
    match result {
        Err(r) => {
            assert_eq!(
                r.step, step,
                "rejected at {} ({}), expected {step}",
                r.step, r.reason
            );
            r.reason
        }
        Ok(v) => panic!("accepted, expected rejection at {step}: {v:?}"),
    }
}
