//! `BiopayClient::with_keystore` from Rust: the full link on the software
//! TEE's KeyMint mode, the durable state (reload, counters across restarts,
//! corrupt files), invalidated keys, and keystores that misbehave.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use biopay_bindings::{
    AndroidTrustConfig, BiopayClient, BiopayError, GeneratedKey, KeyState, Modality,
    PaymentVerifier, PlatformKeystore, SecurityLevel, SimulatedTee, SimulatedVendor, Transaction,
    VerificationError,
};
use std::{
    future::Future,
    path::Path,
    pin::pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, Wake, Waker},
};

/// Wakes the test thread.
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs a future to completion on this thread (what the foreign executor
/// does for an async call).
fn block_on<F: Future>(f: F) -> F::Output {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

const RP: &str = "pay.example.com";
const MODEL: &str = "acme-phone-x1";
const PACKAGE: &str = "com.example.pay";
const DIGEST: [u8; 32] = [0xAB; 32];

struct World {
    vendor: Arc<SimulatedVendor>,
    verifier: Arc<PaymentVerifier>,
    tee: Arc<SimulatedTee>,
    keystore: Arc<dyn PlatformKeystore>,
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let vendor =
            SimulatedVendor::new("Acme Devices".into(), b"rust keystore".to_vec()).unwrap();
        let verifier = PaymentVerifier::new(RP.into(), vec![]).unwrap();
        verifier.trust_android(trust(&vendor)).unwrap();
        let tee = SimulatedTee::provision(
            vendor.clone(),
            MODEL.into(),
            dir.path().join("tee").to_str().unwrap().into(),
        )
        .unwrap();
        tee.enroll_fingerprint("right-thumb".into()).unwrap();
        tee.enroll_face().unwrap();
        let keystore = tee
            .clone()
            .as_keystore(PACKAGE.into(), DIGEST.to_vec())
            .unwrap();
        Self {
            vendor,
            verifier,
            tee,
            keystore,
            dir,
        }
    }

    fn app_dir(&self) -> String {
        self.dir.path().join("app").to_str().unwrap().into()
    }

    fn client(&self) -> Arc<BiopayClient> {
        BiopayClient::with_keystore(RP.into(), self.keystore.clone(), self.app_dir()).unwrap()
    }

    fn register(&self, client: &BiopayClient, modalities: Vec<Modality>) -> Vec<u8> {
        let c = self
            .verifier
            .registration_challenge(
                b"account-7".to_vec(),
                modalities.clone(),
                SecurityLevel::Tee,
            )
            .unwrap();
        self.tee.present_finger("right-thumb".into());
        let statement = block_on(client.register(c, modalities)).unwrap();
        self.verifier
            .verify_platform_registration(statement)
            .unwrap()
            .credential_id
    }

    /// A PlatformKeyRegistration of a fingerprint credential (not verified).
    fn fingerprint_registration(&self, client: &BiopayClient) -> Vec<u8> {
        let c = self
            .verifier
            .registration_challenge(
                b"account-7".to_vec(),
                vec![Modality::Fingerprint],
                SecurityLevel::Tee,
            )
            .unwrap();
        self.tee.present_finger("right-thumb".into());
        block_on(client.register(c, vec![Modality::Fingerprint])).unwrap()
    }

    fn pay_challenge(&self, id: &[u8], order: &str) -> Vec<u8> {
        self.verifier
            .payment_challenge(id.to_vec(), tx(order))
            .unwrap()
    }

    fn state_file(&self) -> std::path::PathBuf {
        Path::new(&self.app_dir()).join(format!("biopay-keystore-{RP}.json"))
    }
}

fn trust(vendor: &SimulatedVendor) -> AndroidTrustConfig {
    AndroidTrustConfig {
        root_spkis: vec![vendor.android_trust_root()],
        include_google_roots: false,
        package_name: PACKAGE.into(),
        signing_cert_digests: vec![DIGEST.to_vec()],
        min_os_patch_level: 202_401,
        require_strong_box: false,
    }
}

fn tx(order: &str) -> Transaction {
    Transaction {
        amount_minor: 8800,
        currency: "CNY".into(),
        payee_id: "merchant-0042".into(),
        payee_name: "Coffee Corner".into(),
        order_id: order.into(),
        memo: None,
    }
}

#[test]
fn full_link_on_the_simulated_keymint() {
    let w = World::new();
    let client = w.client();
    let id = w.register(&client, vec![Modality::Fingerprint, Modality::Face]);
    assert_eq!(
        w.tee.last_display().as_deref(),
        Some("Register this device for payments at pay.example.com")
    );
    let creds = client.credentials().unwrap();
    assert_eq!(creds.len(), 1);
    assert_eq!(creds[0].credential_id, id);
    assert_eq!(creds[0].account_handle, b"account-7");
    assert_eq!(creds[0].security_level, SecurityLevel::Tee);
    assert!(creds[0].valid);

    w.tee.present_finger("right-thumb".into());
    let approved = w
        .verifier
        .verify_payment(block_on(client.authorize(w.pay_challenge(&id, "o1"))).unwrap())
        .unwrap();
    assert_eq!(approved.counter, 1);
    // Android does not say which biometric matched: the first accepted one.
    assert_eq!(approved.modality, Modality::Fingerprint);
    assert!(!approved.liveness_passed);
    let shown = w.tee.last_display().unwrap();
    assert!(
        shown.starts_with("pay.example.com\nPay 88.00 CNY\n"),
        "{shown}"
    );

    w.tee.present_face();
    let d = block_on(client.deregister(id.clone())).unwrap();
    assert_eq!(
        w.tee.last_display().as_deref(),
        Some("Remove this device's payment credential for pay.example.com")
    );
    assert_eq!(w.verifier.verify_deregistration(d).unwrap(), id);
    assert!(client.credentials().unwrap().is_empty());
    assert!(w.tee.last_display().is_some());
}

#[test]
fn registration_is_refused_without_android_trust_or_for_another_app() {
    let w = World::new();
    let statement = w.fingerprint_registration(&w.client());
    let other_app = AndroidTrustConfig {
        package_name: "com.evil.app".into(),
        ..trust(&w.vendor)
    };
    w.verifier.trust_android(other_app).unwrap();
    match w.verifier.verify_platform_registration(statement) {
        Err(VerificationError::Rejected {
            step_code, reason, ..
        }) => {
            assert_eq!(step_code, "A15");
            assert!(reason.contains("com.evil.app"), "{reason}");
        }
        other => panic!("expected A15, got {other:?}"),
    }
}

#[test]
fn state_is_reloaded_and_counters_never_go_back() {
    let w = World::new();
    let client = w.client();
    let id = w.register(&client, vec![Modality::Fingerprint]);
    w.tee.present_finger("right-thumb".into());
    let first = block_on(client.authorize(w.pay_challenge(&id, "o1"))).unwrap();
    assert_eq!(w.verifier.verify_payment(first).unwrap().counter, 1);
    // A failed prompt uses up a counter value, and it is on disk.
    w.tee.present_cancel();
    assert_eq!(
        block_on(client.authorize(w.pay_challenge(&id, "o2"))),
        Err(BiopayError::UserCanceled)
    );
    let on_disk: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.state_file()).unwrap()).unwrap();
    assert_eq!(on_disk["credentials"][0]["counter"], 2);
    // Written through a temporary file that is renamed away; owner-only.
    assert!(!w.state_file().with_extension("json.tmp").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(w.state_file())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    drop(client);

    // A restart: the credential and its counter come back from the file.
    let client = w.client();
    assert_eq!(client.credentials().unwrap()[0].credential_id, id);
    w.tee.present_finger("right-thumb".into());
    let third = block_on(client.authorize(w.pay_challenge(&id, "o3"))).unwrap();
    assert_eq!(w.verifier.verify_payment(third).unwrap().counter, 3);
}

#[test]
fn several_credentials_per_rp() {
    let w = World::new();
    let client = w.client();
    let a = w.register(&client, vec![Modality::Fingerprint]);
    let b = w.register(&client, vec![Modality::Face]);
    assert_ne!(a, b);
    assert_eq!(client.credentials().unwrap().len(), 2);
    w.tee.present_face();
    let approved = w
        .verifier
        .verify_payment(block_on(client.authorize(w.pay_challenge(&b, "o1"))).unwrap())
        .unwrap();
    assert_eq!(
        (approved.credential_id, approved.modality),
        (b.clone(), Modality::Face)
    );
    w.tee.present_finger("right-thumb".into());
    w.verifier
        .verify_payment(block_on(client.authorize(w.pay_challenge(&a, "o2"))).unwrap())
        .unwrap();
    drop(client);
    let ids: Vec<_> = w
        .client()
        .credentials()
        .unwrap()
        .into_iter()
        .map(|c| c.credential_id)
        .collect();
    assert_eq!(ids, vec![a, b]);
}

#[test]
fn a_corrupt_state_file_is_a_clear_keystore_error() {
    let w = World::new();
    let client = w.client();
    w.register(&client, vec![Modality::Fingerprint]);
    drop(client);
    let path = w.state_file();
    let good = std::fs::read(&path).unwrap();
    for bad in [
        good[..good.len() / 2].to_vec(),
        b"{}".to_vec(),
        String::from_utf8(good.clone())
            .unwrap()
            .replace("\"counter\": 0", "\"counter\": -1")
            .into_bytes(),
        String::from_utf8(good.clone())
            .unwrap()
            .replace(RP, "shop.example.org")
            .into_bytes(),
    ] {
        assert_ne!(bad, good);
        std::fs::write(&path, &bad).unwrap();
        match BiopayClient::with_keystore(RP.into(), w.keystore.clone(), w.app_dir()) {
            Err(BiopayError::Keystore { reason }) => {
                assert!(reason.contains("corrupt keystore state file"), "{reason}")
            }
            Err(other) => panic!("expected Keystore, got {other:?}"),
            Ok(_) => panic!("a corrupt state file was accepted"),
        }
    }
    std::fs::write(&path, &good).unwrap();
    assert_eq!(w.client().credentials().unwrap().len(), 1);
}

#[test]
fn an_invalidated_or_deleted_key_is_key_invalidated() {
    let w = World::new();
    let client = w.client();
    let id = w.register(&client, vec![Modality::Fingerprint]);
    w.tee.enroll_fingerprint("left-thumb".into()).unwrap();
    assert!(!client.credentials().unwrap()[0].valid);
    w.tee.present_finger("right-thumb".into());
    assert_eq!(
        block_on(client.authorize(w.pay_challenge(&id, "o1"))),
        Err(BiopayError::KeyInvalidated)
    );
    assert_eq!(
        block_on(client.deregister(id.clone())),
        Err(BiopayError::KeyInvalidated)
    );
    // An unknown credential too.
    assert_eq!(
        block_on(client.deregister(vec![7; 32])),
        Err(BiopayError::KeyInvalidated)
    );
    // The counter did not move for a refused key.
    let on_disk: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.state_file()).unwrap()).unwrap();
    assert_eq!(on_disk["credentials"][0]["counter"], 0);
}

#[test]
fn lockouts_arrive_typed() {
    let w = World::new();
    let client = w.client();
    let id = w.register(&client, vec![Modality::Fingerprint]);
    let c = w.pay_challenge(&id, "o1");
    for _ in 0..5 {
        w.tee.present_finger("stranger".into());
        assert_eq!(
            block_on(client.authorize(c.clone())),
            Err(BiopayError::NoMatch)
        );
    }
    w.tee.present_finger("right-thumb".into());
    assert!(matches!(
        block_on(client.authorize(c.clone())),
        Err(BiopayError::LockedOut {
            until_epoch_seconds: Some(_)
        })
    ));
    w.tee.passcode_reset().unwrap();
    w.tee.present_finger("right-thumb".into());
    let approved = w
        .verifier
        .verify_payment(block_on(client.authorize(c)).unwrap())
        .unwrap();
    assert_eq!(approved.counter, 7);
}

/// A keystore that records calls and can be told to misbehave.
#[derive(Default)]
struct Scripted {
    /// Returned by `generate_key` (None: a Keystore error).
    generated: Mutex<Option<GeneratedKey>>,
    /// Returned by `sign`.
    sign_error: Mutex<Option<BiopayError>>,
    deleted: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl PlatformKeystore for Scripted {
    async fn generate_key(
        &self,
        _alias: String,
        _challenge: Vec<u8>,
        _strong_box: bool,
    ) -> Result<GeneratedKey, BiopayError> {
        self.generated
            .lock()
            .unwrap()
            .clone()
            .ok_or(BiopayError::Keystore {
                reason: "no key".into(),
            })
    }
    async fn sign(&self, _: String, _: Vec<u8>, _: String) -> Result<Vec<u8>, BiopayError> {
        Err(self
            .sign_error
            .lock()
            .unwrap()
            .clone()
            .unwrap_or(BiopayError::UserCanceled))
    }
    fn delete_key(&self, alias: String) -> Result<(), BiopayError> {
        self.deleted.lock().unwrap().push(alias);
        Ok(())
    }
    fn key_state(&self, _: String) -> Result<KeyState, BiopayError> {
        Ok(KeyState::Valid)
    }
}

#[test]
fn what_the_platform_returns_is_checked() {
    let w = World::new();
    let scripted = Arc::new(Scripted::default());
    let client = BiopayClient::with_keystore(RP.into(), scripted.clone(), w.app_dir()).unwrap();
    let challenge = || {
        w.verifier
            .registration_challenge(
                b"a".to_vec(),
                vec![Modality::Fingerprint],
                SecurityLevel::Tee,
            )
            .unwrap()
    };
    // A real key and its simulated attestation, to mix and match.
    let real = block_on(w.keystore.generate_key("real".into(), b"c".to_vec(), false)).unwrap();
    let other = block_on(
        w.keystore
            .generate_key("other".into(), b"c".to_vec(), false),
    )
    .unwrap();
    let cases = [
        (
            GeneratedKey {
                public_key: vec![4; 65],
                attestation_chain: vec![],
                strong_box: false,
            },
            "not an uncompressed P-256 point",
        ),
        (
            GeneratedKey {
                public_key: real.public_key.clone(),
                attestation_chain: other.attestation_chain.clone(),
                strong_box: false,
            },
            "certifies another key",
        ),
        (
            // No attestation (what the iOS Secure Enclave gives): refused on
            // the device instead of being sent to fail at A2.
            GeneratedKey {
                public_key: real.public_key.clone(),
                attestation_chain: vec![],
                strong_box: false,
            },
            "no attestation chain",
        ),
        (
            GeneratedKey {
                public_key: real.public_key.clone(),
                attestation_chain: vec![b"not a certificate".to_vec()],
                strong_box: false,
            },
            "not a certificate",
        ),
    ];
    for (n, (key, why)) in cases.into_iter().enumerate() {
        *scripted.generated.lock().unwrap() = Some(key);
        match block_on(client.register(challenge(), vec![Modality::Fingerprint])) {
            Err(BiopayError::Keystore { reason }) => assert!(reason.contains(why), "{reason}"),
            other => panic!("expected Keystore({why}), got {other:?}"),
        }
        // The useless key was deleted.
        assert_eq!(scripted.deleted.lock().unwrap().len(), n + 1);
    }
    // The keystore's own errors keep their variant.
    *scripted.generated.lock().unwrap() = Some(real.clone());
    *scripted.sign_error.lock().unwrap() = Some(BiopayError::LockedOut {
        until_epoch_seconds: None,
    });
    assert_eq!(
        block_on(client.register(challenge(), vec![Modality::Fingerprint])),
        Err(BiopayError::LockedOut {
            until_epoch_seconds: None
        })
    );
    *scripted.generated.lock().unwrap() = None;
    assert!(matches!(
        block_on(client.register(challenge(), vec![Modality::Fingerprint])),
        Err(BiopayError::Keystore { .. })
    ));
    assert!(client.credentials().unwrap().is_empty());
    assert!(!w.state_file().exists());
}

#[test]
fn strong_box_is_required_when_the_challenge_asks() {
    let w = World::new();
    let client = w.client();
    let c = w
        .verifier
        .registration_challenge(
            b"a".to_vec(),
            vec![Modality::Fingerprint],
            SecurityLevel::StrongBox,
        )
        .unwrap();
    match block_on(client.register(c, vec![Modality::Fingerprint])) {
        Err(BiopayError::Keystore { reason }) => assert!(reason.contains("StrongBox"), "{reason}"),
        other => panic!("expected Keystore, got {other:?}"),
    }
}

/// What the Kotlin/Python test keystores do: keys generated outside any
/// TEE (here p256 in memory), attested by `SimulatedVendor::certify_keystore_key`.
struct SoftKeystore {
    vendor: Arc<SimulatedVendor>,
    keys: Mutex<Vec<(String, p256::ecdsa::SigningKey)>>,
    prompts: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl PlatformKeystore for SoftKeystore {
    async fn generate_key(
        &self,
        alias: String,
        challenge: Vec<u8>,
        strong_box: bool,
    ) -> Result<GeneratedKey, BiopayError> {
        let mut keys = self.keys.lock().unwrap();
        let seed = [u8::try_from(keys.len() + 1).unwrap(); 32];
        let key = p256::ecdsa::SigningKey::from_slice(&seed).unwrap();
        let public_key = key
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec();
        let attestation_chain = self.vendor.certify_keystore_key(
            public_key.clone(),
            challenge,
            PACKAGE.into(),
            DIGEST.to_vec(),
            strong_box,
        )?;
        keys.push((alias, key));
        Ok(GeneratedKey {
            public_key,
            attestation_chain,
            strong_box,
        })
    }
    async fn sign(
        &self,
        alias: String,
        data: Vec<u8>,
        prompt: String,
    ) -> Result<Vec<u8>, BiopayError> {
        use p256::ecdsa::{signature::Signer, Signature};
        self.prompts.lock().unwrap().push(prompt);
        let keys = self.keys.lock().unwrap();
        let (_, key) = keys
            .iter()
            .find(|(a, _)| *a == alias)
            .ok_or(BiopayError::KeyInvalidated)?;
        let sig: Signature = key.sign(&data);
        Ok(sig.to_der().as_bytes().to_vec())
    }
    fn delete_key(&self, alias: String) -> Result<(), BiopayError> {
        self.keys.lock().unwrap().retain(|(a, _)| *a != alias);
        Ok(())
    }
    fn key_state(&self, alias: String) -> Result<KeyState, BiopayError> {
        let known = self.keys.lock().unwrap().iter().any(|(a, _)| *a == alias);
        Ok(if known {
            KeyState::Valid
        } else {
            KeyState::Missing
        })
    }
}

#[test]
fn the_test_double_attestation_carries_a_foreign_key_through_the_link() {
    let w = World::new();
    let soft = Arc::new(SoftKeystore {
        vendor: w.vendor.clone(),
        keys: Mutex::new(Vec::new()),
        prompts: Mutex::new(Vec::new()),
    });
    let client = BiopayClient::with_keystore(RP.into(), soft.clone(), w.app_dir()).unwrap();
    let c = w
        .verifier
        .registration_challenge(
            b"a".to_vec(),
            vec![Modality::Fingerprint],
            SecurityLevel::Tee,
        )
        .unwrap();
    let reg = w
        .verifier
        .verify_platform_registration(
            block_on(client.register(c, vec![Modality::Fingerprint])).unwrap(),
        )
        .unwrap();
    assert_eq!(reg.kind, "platform_keystore");
    assert_eq!(reg.device_model, "android-keystore");
    let id = reg.credential_id;
    let approved = w
        .verifier
        .verify_payment(block_on(client.authorize(w.pay_challenge(&id, "o1"))).unwrap())
        .unwrap();
    assert_eq!(approved.counter, 1);
    assert!(soft.prompts.lock().unwrap()[1].contains("Coffee Corner"));
    // A deleted key: KeyInvalidated before any prompt.
    let alias = soft.keys.lock().unwrap()[0].0.clone();
    soft.delete_key(alias).unwrap();
    assert_eq!(
        block_on(client.authorize(w.pay_challenge(&id, "o2"))),
        Err(BiopayError::KeyInvalidated)
    );
    assert_eq!(soft.prompts.lock().unwrap().len(), 2);
    // The digest must be a SHA-256.
    assert!(w
        .vendor
        .certify_keystore_key(
            vec![4; 65],
            b"x".to_vec(),
            PACKAGE.into(),
            DIGEST.to_vec(),
            false
        )
        .is_err());
    assert!(matches!(
        w.vendor.certify_keystore_key(
            some_public_key(),
            b"x".to_vec(),
            PACKAGE.into(),
            vec![1; 31],
            false
        ),
        Err(BiopayError::Keystore { .. })
    ));
}

fn some_public_key() -> Vec<u8> {
    p256::ecdsa::SigningKey::from_slice(&[9; 32])
        .unwrap()
        .verifying_key()
        .to_encoded_point(false)
        .as_bytes()
        .to_vec()
}

#[test]
fn a_status_list_that_revokes_the_attestation_ca_refuses_registration() {
    let w = World::new();
    // The device's KeyMint CA certificate (second on every key's chain).
    let probe = block_on(w.keystore.generate_key("probe".into(), vec![7; 32], false)).unwrap();
    let serial = biopay_core::x509::serial_hex(&probe.attestation_chain[1]).unwrap();
    w.keystore.delete_key("probe".into()).unwrap();
    assert!(matches!(
        w.verifier.set_android_status_list(b"{not json".to_vec()),
        Err(VerificationError::InvalidRequest { .. })
    ));
    let json = format!(
        r#"{{"entries": {{"{serial}": {{"status": "REVOKED", "reason": "KEY_COMPROMISE"}}}}}}"#
    );
    w.verifier
        .set_android_status_list(json.into_bytes())
        .unwrap();
    let statement = w.fingerprint_registration(&w.client());
    match w.verifier.verify_platform_registration(statement) {
        Err(VerificationError::Rejected {
            step_code, reason, ..
        }) => {
            assert_eq!(step_code, "A6");
            assert!(reason.contains(&serial), "{reason}");
        }
        other => panic!("expected A6, got {other:?}"),
    }
}

#[test]
fn a_status_list_needs_android_trust_first() {
    let verifier = PaymentVerifier::new(RP.into(), vec![]).unwrap();
    assert!(matches!(
        verifier.set_android_status_list(br#"{"entries": {}}"#.to_vec()),
        Err(VerificationError::InvalidRequest { .. })
    ));
}

/// The simulated KeyMint keystore whose prompt stays up (its `sign` never
/// answers) while `hold` is set: a user looking at the prompt.
struct PromptHeld {
    inner: Arc<dyn PlatformKeystore>,
    hold: std::sync::atomic::AtomicBool,
    /// While set, `generate_key` never answers either (a slow StrongBox).
    hold_generate: std::sync::atomic::AtomicBool,
    prompts_shown: std::sync::atomic::AtomicUsize,
    deleted: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl PlatformKeystore for PromptHeld {
    async fn generate_key(
        &self,
        alias: String,
        challenge: Vec<u8>,
        strong_box: bool,
    ) -> Result<GeneratedKey, BiopayError> {
        if self.hold_generate.load(std::sync::atomic::Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        self.inner.generate_key(alias, challenge, strong_box).await
    }
    async fn sign(
        &self,
        alias: String,
        data: Vec<u8>,
        prompt: String,
    ) -> Result<Vec<u8>, BiopayError> {
        use std::sync::atomic::Ordering;
        self.prompts_shown.fetch_add(1, Ordering::SeqCst);
        if self.hold.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        self.inner.sign(alias, data, prompt).await
    }
    fn delete_key(&self, alias: String) -> Result<(), BiopayError> {
        self.deleted.lock().unwrap().push(alias.clone());
        self.inner.delete_key(alias)
    }
    fn key_state(&self, alias: String) -> Result<KeyState, BiopayError> {
        self.inner.key_state(alias)
    }
}

/// Polls `f` once (the prompt is then up) and hands it back.
fn start<F: Future>(f: F) -> std::pin::Pin<Box<F>> {
    let mut f = Box::pin(f);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    assert!(f
        .as_mut()
        .poll(&mut Context::from_waker(&waker))
        .is_pending());
    f
}

fn stored_counter(w: &World) -> u64 {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.state_file()).unwrap()).unwrap();
    v["credentials"][0]["counter"].as_u64().unwrap()
}

fn held_world() -> (World, Arc<PromptHeld>, Arc<BiopayClient>, Vec<u8>) {
    let w = World::new();
    let held = Arc::new(PromptHeld {
        inner: w.keystore.clone(),
        hold: false.into(),
        hold_generate: false.into(),
        prompts_shown: 0.into(),
        deleted: Mutex::new(Vec::new()),
    });
    let client = BiopayClient::with_keystore(RP.into(), held.clone(), w.app_dir()).unwrap();
    let id = w.register(&client, vec![Modality::Fingerprint]);
    held.hold.store(true, std::sync::atomic::Ordering::SeqCst);
    (w, held, client, id)
}

#[test]
fn a_payment_dropped_during_the_prompt_uses_no_counter_and_the_next_one_works() {
    let (w, held, client, id) = held_world();
    let pending = start(client.authorize(w.pay_challenge(&id, "o1")));
    assert_eq!(
        held.prompts_shown.load(std::sync::atomic::Ordering::SeqCst),
        2
    );
    // The counter is on disk before the prompt ...
    assert_eq!(stored_counter(&w), 1);
    // ... and the app cancels (the coroutine / task is cancelled: its future dropped).
    drop(pending);
    assert_eq!(stored_counter(&w), 0, "the counter was given back");
    // A restart sees the same state, and the next payment is counter 1.
    drop(client);
    let client = BiopayClient::with_keystore(RP.into(), held.clone(), w.app_dir()).unwrap();
    held.hold.store(false, std::sync::atomic::Ordering::SeqCst);
    w.tee.present_finger("right-thumb".into());
    let ok = w
        .verifier
        .verify_payment(block_on(client.authorize(w.pay_challenge(&id, "o2"))).unwrap())
        .unwrap();
    assert_eq!(ok.counter, 1);
}

#[test]
fn cancel_ends_the_calls_in_progress_with_cancelled_and_stores_nothing() {
    let (w, held, client, id) = held_world();
    let mut paying = start(client.authorize(w.pay_challenge(&id, "o1")));
    // A second call waits for the first (calls are serialised).
    let mut waiting = start(client.deregister(id.clone()));
    assert_eq!(
        held.prompts_shown.load(std::sync::atomic::Ordering::SeqCst),
        2
    );
    client.cancel();
    assert_eq!(block_on(paying.as_mut()), Err(BiopayError::Cancelled));
    assert_eq!(block_on(waiting.as_mut()), Err(BiopayError::Cancelled));
    assert_eq!(stored_counter(&w), 0);
    assert_eq!(client.credentials().unwrap().len(), 1, "not deregistered");
    // Calls started after the cancel are not affected by it.
    held.hold.store(false, std::sync::atomic::Ordering::SeqCst);
    w.tee.present_finger("right-thumb".into());
    let a = block_on(client.authorize(w.pay_challenge(&id, "o2"))).unwrap();
    assert_eq!(w.verifier.verify_payment(a).unwrap().counter, 1);
}

#[test]
fn a_registration_cancelled_during_the_prompt_leaves_no_key_and_no_credential() {
    let w = World::new();
    let held = Arc::new(PromptHeld {
        inner: w.keystore.clone(),
        hold: true.into(),
        hold_generate: false.into(),
        prompts_shown: 0.into(),
        deleted: Mutex::new(Vec::new()),
    });
    let client = BiopayClient::with_keystore(RP.into(), held.clone(), w.app_dir()).unwrap();
    let c = w
        .verifier
        .registration_challenge(
            b"a".to_vec(),
            vec![Modality::Fingerprint],
            SecurityLevel::Tee,
        )
        .unwrap();
    let pending = start(client.register(c, vec![Modality::Fingerprint]));
    drop(pending);
    assert!(client.credentials().unwrap().is_empty());
    assert!(!w.state_file().exists(), "nothing stored");
    // The generated key was deleted.
    let deleted = held.deleted.lock().unwrap().clone();
    assert_eq!(deleted.len(), 1);
    assert_eq!(
        w.keystore.key_state(deleted[0].clone()),
        Ok(KeyState::Missing)
    );
    held.hold.store(false, std::sync::atomic::Ordering::SeqCst);
    let id = w.register(&client, vec![Modality::Fingerprint]);
    // The account's slot (docs/PROTOCOL.md §4.1.9), then 32 random bytes.
    assert_eq!(id.len(), 34);
    assert_eq!(
        id[..2],
        biopay_core::routing::credential_id_prefix(RP, b"account-7")
    );
}

#[test]
fn credentials_answer_on_the_calling_thread_while_a_prompt_is_up() {
    // The Android deadlock: the main thread asks for the credentials while
    // a payment's prompt (whose result the main thread must deliver) is up.
    // With a lock held across the prompt this would never return.
    let (w, _held, client, id) = held_world();
    let pending = start(client.authorize(w.pay_challenge(&id, "o1")));
    let creds = client.credentials().unwrap();
    assert_eq!(creds.len(), 1);
    assert!(creds[0].valid);
    drop(pending);
}

#[test]
fn a_registration_cancelled_while_the_key_is_generated_deletes_its_alias() {
    // The platform may finish generating after the call is gone: the alias is
    // deleted anyway, so no orphan key is left behind.
    let w = World::new();
    let held = Arc::new(PromptHeld {
        inner: w.keystore.clone(),
        hold: false.into(),
        hold_generate: true.into(),
        prompts_shown: 0.into(),
        deleted: Mutex::new(Vec::new()),
    });
    let client = BiopayClient::with_keystore(RP.into(), held.clone(), w.app_dir()).unwrap();
    let c = w
        .verifier
        .registration_challenge(
            b"a".to_vec(),
            vec![Modality::Fingerprint],
            SecurityLevel::Tee,
        )
        .unwrap();
    drop(start(client.register(c, vec![Modality::Fingerprint])));
    let deleted = held.deleted.lock().unwrap().clone();
    assert_eq!(deleted.len(), 1);
    assert!(deleted[0].starts_with("biopay."), "{deleted:?}");
    assert_eq!(
        held.prompts_shown.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    assert!(client.credentials().unwrap().is_empty());
}
