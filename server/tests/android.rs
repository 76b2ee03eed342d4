//! Android Keystore credentials through a real server process (PROTOCOL.md
//! §12): the trust file's `[android]` section, a PlatformKeyRegistration
//! from the software TEE's KeyMint mode (a KeyDescription attestation in a
//! chain to a vendor root the trust file names), a payment with it, and the
//! refusals: another app's key (A15), a revoked attestation certificate in
//! the status list file (A6), and no `[android]` section at all (A4).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use biopay_core::{
    messages::Message, x509, DeviceError, ManualClock, Modality, PlatformKeystoreClient,
    PlatformKeystoreSigner, RegistrationChallenge, SystemClock,
};
use biopay_server_tools::client::{b64, field_bytes, ApiClient};
use biopay_tee_stub::{DeviceConfig, KeymintApplication, Presentation, SoftwareTee, VendorPki};
use common::*;
use std::{
    path::Path,
    sync::{Arc, Mutex},
};

const PACKAGE: &str = "com.example.pay";
const DIGEST: [u8; 32] = [0xAB; 32];

fn pki() -> VendorPki {
    VendorPki::new("Acme Android", b"server android test vendor").unwrap()
}

/// A trust file with `[android]` naming the vendor root; optionally a status list.
fn trust_file(dir: &Path, status_list: Option<&str>) -> std::path::PathBuf {
    let anchor = pki().trust_anchor();
    let mut toml = format!(
        "[android]\npackage_name = \"{PACKAGE}\"\nsigning_cert_digests = [\"{}\"]\n\
         min_os_patch_level = 202401\n",
        hex::encode(DIGEST)
    );
    if let Some(json) = status_list {
        let path = dir.join("status.json");
        std::fs::write(&path, json).unwrap();
        toml.push_str(&format!(
            "status_list_file = {:?}\n",
            path.display().to_string()
        ));
    }
    toml.push_str(&format!(
        "[[android.roots]]\nname = \"Acme Android Root\"\nspki_der_base64url = \"{}\"\n",
        b64(&anchor.spki_der)
    ));
    let path = dir.join("trust.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

/// The app: a KeyMint key in the software TEE, used through
/// PlatformKeystoreClient as an Android app would use Android Keystore.
struct App {
    tee: Arc<Mutex<SoftwareTee>>,
    _dir: tempfile::TempDir,
}

type AppClient = PlatformKeystoreClient<Signer, Arc<ManualClock>>;

struct Signer {
    tee: Arc<Mutex<SoftwareTee>>,
    chain: Vec<Vec<u8>>,
}

impl PlatformKeystoreSigner for Signer {
    fn attestation_chain(&self) -> Result<Vec<Vec<u8>>, DeviceError> {
        Ok(self.chain.clone())
    }
    fn sign(&self, data: &[u8]) -> Result<Vec<u8>, DeviceError> {
        self.sign_with_prompt(data, "")
    }
    fn sign_with_prompt(&self, data: &[u8], prompt: &str) -> Result<Vec<u8>, DeviceError> {
        let mut tee = self.tee.lock().unwrap();
        tee.user()
            .present(Presentation::Finger("right-thumb".into()));
        tee.keymint_sign("pay-key", data, prompt)
    }
}

impl App {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut tee = SoftwareTee::provision(
            &pki(),
            DeviceConfig::new("acme-phone-a1"),
            &dir.path().join("tee"),
            None,
            Arc::new(SystemClock),
        )
        .unwrap();
        tee.enroll_fingerprint("right-thumb").unwrap();
        Self {
            tee: Arc::new(Mutex::new(tee)),
            _dir: dir,
        }
    }

    /// Generates the key for the server's registration challenge and builds
    /// the signed PlatformKeyRegistration.
    fn register(&self, challenge: &[u8], package: &str) -> (AppClient, Vec<u8>, Vec<Vec<u8>>) {
        let c = RegistrationChallenge::from_cbor(challenge).unwrap();
        let key = self
            .tee
            .lock()
            .unwrap()
            .keymint_generate_key(
                "pay-key",
                &c.challenge,
                false,
                &KeymintApplication {
                    package_name: package.into(),
                    signing_cert_digest: DIGEST,
                },
            )
            .unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut client = PlatformKeystoreClient::new(
            RP,
            Signer {
                tee: self.tee.clone(),
                chain: key.attestation_chain.clone(),
            },
            Arc::new(ManualClock::new(now)),
            biopay_core::routing::prefixed_credential_id(c.credential_id_prefix, &[0x5C; 32])
                .unwrap(),
            &[Modality::Fingerprint],
            [0xE1; 32],
        );
        let statement = client.register(challenge).unwrap();
        (client, statement, key.attestation_chain)
    }
}

fn register(
    api: &ApiClient,
    app: &App,
    package: &str,
) -> (biopay_server_tools::client::Reply, Vec<Vec<u8>>) {
    let c = api.registration_challenge(b"account-android").unwrap();
    let (_, statement, chain) = app.register(&c, package);
    (api.register(&statement).unwrap(), chain)
}

#[test]
fn an_android_keystore_credential_registers_and_pays_through_the_server() {
    let b = TestBackend::sqlite();
    let trust = trust_file(b.dir.path(), None);
    let s = b.server(&["--trust-file", trust.to_str().unwrap()]);
    let api = s.api();
    let app = App::new();
    let c = api.registration_challenge(b"account-android").unwrap();
    let (mut client, statement, _) = app.register(&c, PACKAGE);
    let r = api.register(&statement).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "active");
    assert_eq!(r.body["kind"], "platform_keystore", "{}", r.body);
    let id = field_bytes(&r, "credential_id").unwrap();
    // The account's slot (docs/PROTOCOL.md §4.1.9), then the app's bytes.
    let mut expected = biopay_core::routing::credential_id_prefix(RP, b"account-android").to_vec();
    expected.extend_from_slice(&[0x5C; 32]);
    assert_eq!(id, expected);
    // One source of step codes: the metrics and the audit log both name A17
    // (the audit log said R16 before).
    assert_eq!(
        metric(
            &api,
            "biopay_decisions_total{kind=\"registration\",outcome=\"accepted\",step=\"A17\"}"
        ),
        1
    );

    // A payment within the platform-keystore cap (CNY 500.00).
    let pc = field_bytes(
        &api.payment_challenge(&id, "a-1", 8800).unwrap(),
        "challenge",
    )
    .unwrap();
    let assertion = client.authorize(&pc, Modality::Fingerprint).unwrap();
    let ok = api.verify_payment(&assertion).unwrap();
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body["status"], "accepted");
    assert_eq!(ok.body["counter"], 1);
    assert!(app
        .tee
        .lock()
        .unwrap()
        .last_display()
        .unwrap()
        .contains("\nPay 88.00 CNY\n"));

    // Above the cap the server refuses at P17 with the statement signed.
    let pc = field_bytes(
        &api.payment_challenge(&id, "a-2", 60_000).unwrap(),
        "challenge",
    )
    .unwrap();
    let over = api
        .verify_payment(&client.authorize(&pc, Modality::Fingerprint).unwrap())
        .unwrap();
    assert_eq!(over.status, 422, "{}", over.body);
    assert_eq!(over.code(), Some("P17"), "{}", over.body);

    // The same registration twice: the challenge is used up.
    let again = api.register(&statement).unwrap();
    assert_eq!(again.status, 409, "{}", again.body);

    // Another app's key (package name in the attestation) is refused at A15.
    let other = App::new();
    let (r, _) = register(&api, &other, "com.attacker.app");
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.code(), Some("A15"), "{}", r.body);
    assert!(
        r.body.to_string().contains("not the attested application"),
        "{}",
        r.body
    );
    s.stop();
    let db = rusqlite::Connection::open(b.dir.path().join("server/biopay.db")).unwrap();
    let steps: Vec<String> = db
        .prepare("SELECT step FROM audit_log WHERE kind = 'registration' AND outcome = 'accepted'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(steps, ["A17"]);
}

#[test]
fn a_revoked_attestation_certificate_in_the_status_list_file_is_refused() {
    // Learn the device's KeyMint CA serial from a first key's chain, then
    // start the server with that serial revoked.
    let app = App::new();
    let chain = {
        let b = TestBackend::sqlite();
        let trust = trust_file(b.dir.path(), None);
        let s = b.server(&["--trust-file", trust.to_str().unwrap()]);
        let (r, chain) = register(&s.api(), &app, PACKAGE);
        assert_eq!(r.status, 200, "{}", r.body);
        s.stop();
        chain
    };
    let serial = x509::serial_hex(&chain[1]).unwrap();
    let list = format!(
        r#"{{"entries": {{"{serial}": {{"status": "REVOKED", "reason": "KEY_COMPROMISE"}}}}}}"#
    );
    let b = TestBackend::sqlite();
    let trust = trust_file(b.dir.path(), Some(&list));
    let s = b.server(&["--trust-file", trust.to_str().unwrap()]);
    let (r, _) = register(&s.api(), &app, PACKAGE);
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.code(), Some("A6"), "{}", r.body);
    assert!(r.body.to_string().contains(&serial), "{}", r.body);
    s.stop();
}

#[test]
fn without_an_android_section_platform_registrations_are_refused() {
    let b = TestBackend::sqlite();
    let s = b.server(&[]);
    let app = App::new();
    let (r, _) = register(&s.api(), &app, PACKAGE);
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.code(), Some("A4"), "{}", r.body);
    s.stop();
}

#[test]
fn a_status_list_file_that_does_not_parse_stops_the_server_from_starting() {
    let b = TestBackend::sqlite();
    let trust = trust_file(b.dir.path(), Some("{not json"));
    // Bounded by `timeout`: a server that started anyway would serve forever;
    // it then exits 124 and the assertions below fail instead of hanging.
    let out = std::process::Command::new("timeout")
        .arg("30")
        .arg(bin())
        .args(["serve", "--danger-demo-keys", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(b.dir.path().join("server"))
        .args(["--trust-file", trust.to_str().unwrap()])
        .env_remove("BIOPAY_DATABASE_URL")
        .env_remove("BIOPAY_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(124), "the server started: {stderr}");
    assert!(!out.status.success());
    assert!(stderr.contains("status.json"), "{stderr}");
}

#[test]
fn a_status_list_file_that_changes_is_reloaded_while_the_server_runs() {
    let b = TestBackend::sqlite();
    let trust = trust_file(b.dir.path(), Some(r#"{"entries": {}}"#));
    // Reload checks run with the purge task: every second here.
    let config = b.dir.path().join("server.toml");
    std::fs::write(&config, "purge_interval_secs = 1\n").unwrap();
    let s = b.server(&[
        "--trust-file",
        trust.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    let api = s.api();
    let app = App::new();
    let (r, chain) = register(&api, &app, PACKAGE);
    assert_eq!(r.status, 200, "{}", r.body);

    // Google revokes the device's KeyMint CA; the operator's job rewrites the file.
    let serial = x509::serial_hex(&chain[1]).unwrap();
    std::fs::write(
        b.dir.path().join("status.json"),
        format!(
            r#"{{"entries": {{"{serial}": {{"status": "REVOKED", "reason": "KEY_COMPROMISE"}}}}}}"#
        ),
    )
    .unwrap();
    // Until the reload, the same key gets past A6 and stops at A16 (already
    // registered); after it, A6 refuses it. Bounded wait for the reload.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (r, _) = register(&api, &app, PACKAGE);
        match r.code() {
            Some("A6") => {
                assert!(r.body.to_string().contains(&serial), "{}", r.body);
                break;
            }
            Some("A16") => {}
            _ => panic!("unexpected answer {}: {}", r.status, r.body),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the status list was not reloaded within 30 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    s.stop();
}
