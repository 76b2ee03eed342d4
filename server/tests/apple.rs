//! Apple App Attest credentials through a real server process (PROTOCOL.md
//! §13.8–§13.10), on SQLite and on PostgreSQL: the trust file's `[apple]`
//! section (app ids, environment, a simulated root as PEM, caps), an
//! AppleKeyRegistration from `SimulatedAppAttest` with a software P-256 key
//! standing in for the Secure Enclave, payments below and above the
//! assertion amount, over the Apple cap (P17), a missing assertion (P17), a
//! replayed assertion counter (J4), an assertion over another statement
//! (J2), another app's attestation (I6), no `[apple]` section (K4), and
//! deregistration.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use biopay_core::{
    apple::AppAttestEnvironment,
    crypto::sha256,
    store::{CommitError, Decision, DecisionKind},
    DeviceError, ManualClock, Message, Modality, PaymentChallenge, PlatformKeystoreClient,
    PlatformKeystoreSigner, Store,
};
use biopay_server::store::{postgres::PgStore, sqlite::SqliteStore, AnyStore};
use biopay_server_tools::client::{b64, field_bytes, ApiClient, Reply};
use biopay_tee_stub::{AppAttestKey, AttestationFaults, SimulatedAppAttest};
use common::*;
use ring::{
    rand::SystemRandom,
    signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING},
};
use serde_json::json;
use std::{path::Path, sync::Arc};

const APP_ID: &str = "TEAM123456.com.example.pay";

/// The Secure Enclave stand-in: a software P-256 key signing in DER, as
/// `SecKeyCreateSignature` does.
struct SoftEnclave(EcdsaKeyPair);

impl SoftEnclave {
    fn new() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        Self(
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
                .unwrap(),
        )
    }
    fn public_key(&self) -> Vec<u8> {
        self.0.public_key().as_ref().to_vec()
    }
}

impl PlatformKeystoreSigner for SoftEnclave {
    fn attestation_chain(&self) -> Result<Vec<Vec<u8>>, DeviceError> {
        Ok(Vec::new())
    }
    fn sign(&self, data: &[u8]) -> Result<Vec<u8>, DeviceError> {
        Ok(self
            .0
            .sign(&SystemRandom::new(), data)
            .unwrap()
            .as_ref()
            .to_vec())
    }
}

type App = PlatformKeystoreClient<SoftEnclave, Arc<ManualClock>>;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A trust file with `[apple]`: the simulated root as a PEM file, CNY caps
/// that differ from the defaults (so the test proves they are read).
fn trust_file(dir: &Path, service: &SimulatedAppAttest) -> std::path::PathBuf {
    let root = dir.join("apple-root.pem");
    std::fs::write(&root, service.root_cert_pem()).unwrap();
    let toml = format!(
        "[apple]\napp_ids = [\"{APP_ID}\"]\nenvironment = \"production\"\nroots = [{:?}]\n\
         [apple.max_amount]\nCNY = 30000\n[apple.assertion_above]\nCNY = 5000\n",
        root.display().to_string()
    );
    let path = dir.join("trust.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

/// An app whose credential id is for `account-ios` (the account of every
/// registration here, §4.1.9).
fn app(byte: u8) -> App {
    let prefix = biopay_core::routing::credential_id_prefix(RP, b"account-ios");
    PlatformKeystoreClient::new(
        RP,
        SoftEnclave::new(),
        Arc::new(ManualClock::new(now())),
        biopay_core::routing::prefixed_credential_id(prefix, &[byte; 32]).unwrap(),
        &[Modality::Face],
        [0xE2; 32],
    )
}

/// The iOS registration: binding hash from the SDK, `attestKey` with it
/// (`faults` for an attack), the registration signed by the Secure Enclave key.
fn register(
    api: &ApiClient,
    service: &SimulatedAppAttest,
    app: &mut App,
    faults: &AttestationFaults,
) -> (Reply, AppAttestKey) {
    let challenge = api.registration_challenge(b"account-ios").unwrap();
    let key = service.generate_key().unwrap();
    let pk = app.signer().public_key();
    let hash = app.apple_client_data_hash(&challenge, &pk).unwrap();
    let object = service.danger_attest_key_with(&key, &hash, faults).unwrap();
    let statement = app
        .register_apple(&challenge, &pk, key.key_id(), object)
        .unwrap();
    (api.register(&statement).unwrap(), key)
}

fn pay_statement(api: &ApiClient, app: &mut App, order: &str, amount: u64) -> Vec<u8> {
    let id = app.state().credential_id.as_bytes().to_vec();
    let r = api.payment_challenge(&id, order, amount).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let pc = field_bytes(&r, "challenge").unwrap();
    app.authorize(&pc, Modality::Face).unwrap()
}

fn verify(api: &ApiClient, statement: &[u8], assertion: Option<&[u8]>) -> Reply {
    let mut body = api.verify_body(statement);
    if let Some(a) = assertion {
        body["app_attest_assertion"] = json!(b64(a));
    }
    api.post("/v1/payments/verify", body).unwrap()
}

fn the_ios_flow(b: &TestBackend) {
    let service = SimulatedAppAttest::new(APP_ID, AppAttestEnvironment::Production).unwrap();
    let trust = trust_file(b.dir.path(), &service);
    let s = b.server(&["--trust-file", trust.to_str().unwrap()]);
    let api = s.api();

    // Register: an apple_app_attest credential whose answer says honestly
    // what it proves.
    let mut a = app(0x1A);
    let (r, mut key) = register(&api, &service, &mut a, &AttestationFaults::default());
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["kind"], "apple_app_attest", "{}", r.body);
    assert_eq!(r.body["device_model"], "apple-app-attest");
    assert_eq!(r.body["security_level"], "tee");
    assert!(
        r.body["assurance"]
            .as_str()
            .unwrap()
            .contains("enforced by the app's own code, not attested by hardware"),
        "{}",
        r.body
    );
    assert_eq!(
        metric(
            &api,
            "biopay_decisions_total{kind=\"registration\",outcome=\"accepted\",step=\"K13\"}"
        ),
        1
    );

    // CNY 50.00, at the configured assertion amount: no assertion needed.
    let st = pay_statement(&api, &mut a, "i-1", 5_000);
    let ok = verify(&api, &st, None);
    assert_eq!(ok.status, 200, "{}", ok.body);

    // CNY 50.01 without an assertion: P17.
    let st = pay_statement(&api, &mut a, "i-2", 5_001);
    let missing = verify(&api, &st, None);
    assert_eq!(missing.status, 422, "{}", missing.body);
    assert_eq!(missing.code(), Some("P17"), "{}", missing.body);
    assert!(
        missing.body.to_string().contains("App Attest assertion"),
        "{}",
        missing.body
    );
    // ... with an assertion over another statement: J2.
    let other = pay_statement(&api, &mut a, "i-3", 5_001);
    let wrong = service
        .generate_assertion(&mut key, &sha256(&other))
        .unwrap();
    let r = verify(&api, &st, Some(&wrong));
    assert_eq!(r.code(), Some("J2"), "{}", r.body);
    // ... with its own assertion: approved.
    let good = service.generate_assertion(&mut key, &sha256(&st)).unwrap();
    let ok = verify(&api, &st, Some(&good));
    assert_eq!(ok.status, 200, "{}", ok.body);

    // A replayed assertion counter (2, used by the approval above) on a
    // genuine signature over a new statement: J4.
    let st = pay_statement(&api, &mut a, "i-4", 6_000);
    let stale = service
        .danger_assertion_with(&key, &sha256(&st), 2, APP_ID)
        .unwrap();
    let r = verify(&api, &st, Some(&stale));
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.code(), Some("J4"), "{}", r.body);
    // The same statement with a fresh assertion still passes: nothing was
    // consumed by the refusals.
    let fresh = service.generate_assertion(&mut key, &sha256(&st)).unwrap();
    assert_eq!(verify(&api, &st, Some(&fresh)).status, 200);

    // Over the configured Apple cap (CNY 300.00), even with an assertion: P17.
    let st = pay_statement(&api, &mut a, "i-5", 30_001);
    let asr = service.generate_assertion(&mut key, &sha256(&st)).unwrap();
    let over = verify(&api, &st, Some(&asr));
    assert_eq!(over.code(), Some("P17"), "{}", over.body);
    assert!(over.body.to_string().contains("30000"), "{}", over.body);

    // Another app's attestation: I6.
    let mut b_app = app(0x2B);
    let (r, _) = register(
        &api,
        &service,
        &mut b_app,
        &AttestationFaults {
            app_id: Some("OTHERTEAM1.com.example.other".into()),
            ..Default::default()
        },
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.code(), Some("I6"), "{}", r.body);

    // Deregistration, signed by the Secure Enclave key: payments stop.
    let d = a.deregister_durably(|_| Ok(())).unwrap();
    let id = a.state().credential_id.as_bytes().to_vec();
    let r = api
        .post(
            &format!("/v1/credentials/{}/deregister", b64(&id)),
            json!({"statement": b64(&d)}),
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let r = api.payment_challenge(&id, "i-6", 100).unwrap();
    assert_eq!(r.status, 409, "{}", r.body);
    s.stop();
}

#[test]
fn an_ios_credential_registers_pays_and_deregisters_through_the_server_on_sqlite() {
    the_ios_flow(&TestBackend::sqlite());
}

#[test]
fn an_ios_credential_registers_pays_and_deregisters_through_the_server_on_postgres() {
    the_ios_flow(&TestBackend::postgres());
}

#[test]
fn without_an_apple_section_ios_registrations_are_refused_at_k4() {
    let b = TestBackend::sqlite();
    let s = b.server(&[]);
    let service = SimulatedAppAttest::new(APP_ID, AppAttestEnvironment::Production).unwrap();
    let (r, _) = register(
        &s.api(),
        &service,
        &mut app(0x3C),
        &AttestationFaults::default(),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.code(), Some("K4"), "{}", r.body);
    s.stop();
}

/// A second server process that read the App Attest counter before another
/// process's commit passes J4 on its stale read; the commit itself must then
/// refuse (`AppAttestCounterSuperseded`, reported as J4 `CounterSuperseded`)
/// and change nothing: the challenge stays unconsumed, neither counter moves.
fn the_commit_refuses_a_superseded_app_attest_counter(b: &TestBackend) {
    let service = SimulatedAppAttest::new(APP_ID, AppAttestEnvironment::Production).unwrap();
    let trust = trust_file(b.dir.path(), &service);
    let s = b.server(&["--trust-file", trust.to_str().unwrap()]);
    let api = s.api();
    let mut a = app(0x4D);
    let (r, mut key) = register(&api, &service, &mut a, &AttestationFaults::default());
    assert_eq!(r.status, 200, "{}", r.body);
    // One approval with an assertion: the stored App Attest counter is 1.
    let st = pay_statement(&api, &mut a, "c-1", 6_000);
    let asr = service.generate_assertion(&mut key, &sha256(&st)).unwrap();
    assert_eq!(verify(&api, &st, Some(&asr)).status, 200);
    // A live challenge for the commit below.
    let id = a.state().credential_id.clone();
    let pc = field_bytes(
        &api.payment_challenge(id.as_bytes(), "c-2", 100).unwrap(),
        "challenge",
    )
    .unwrap();
    let pc = PaymentChallenge::from_cbor(&pc).unwrap();
    s.stop();

    let data = b.dir.path().join("server");
    let store = match &b.backend {
        Backend::Sqlite => AnyStore::Sqlite(SqliteStore::open(&data.join("biopay.db")).unwrap()),
        Backend::Postgres(url) => AnyStore::Postgres(PgStore::connect(url, 2).unwrap()),
    };
    let before = store.credential(&id).unwrap().unwrap();
    assert_eq!(before.app_attest.as_ref().unwrap().counter, 1);
    let decision = Decision {
        kind: DecisionKind::Payment,
        credential_id: id.clone(),
        statement_hash: [7; 32],
        at: now(),
    };
    let next = before.counter + 1;
    assert_eq!(
        store.commit_payment(&pc.challenge, &id, next, Some(1), &decision),
        Err(CommitError::AppAttestCounterSuperseded { stored: 1 })
    );
    let after = store.credential(&id).unwrap().unwrap();
    assert_eq!(
        after.counter, before.counter,
        "the credential counter did not move"
    );
    assert_eq!(after.app_attest.as_ref().unwrap().counter, 1);
    assert!(!store.challenge(&pc.challenge).unwrap().unwrap().consumed);
    // The honest next counter commits, both counters together.
    store
        .commit_payment(&pc.challenge, &id, next, Some(2), &decision)
        .unwrap();
    let done = store.credential(&id).unwrap().unwrap();
    assert_eq!((done.counter, done.app_attest.unwrap().counter), (next, 2));
    assert!(store.challenge(&pc.challenge).unwrap().unwrap().consumed);
}

#[test]
fn a_superseded_app_attest_counter_is_refused_by_the_commit_on_sqlite() {
    the_commit_refuses_a_superseded_app_attest_counter(&TestBackend::sqlite());
}

#[test]
fn a_superseded_app_attest_counter_is_refused_by_the_commit_on_postgres() {
    the_commit_refuses_a_superseded_app_attest_counter(&TestBackend::postgres());
}

/// PROTOCOL.md §9.2: a missing App Attest assertion and a failing one do not
/// count toward lockout (whoever relays a live statement could strip or
/// swap the assertion), even with `lock_after_failures = 2`: after three
/// such refusals of one genuine statement, it is approved with its own
/// assertion instead of answered 429.
#[test]
fn stripped_or_swapped_app_attest_assertions_do_not_lock_the_user_out() {
    let b = TestBackend::sqlite();
    let service = SimulatedAppAttest::new(APP_ID, AppAttestEnvironment::Production).unwrap();
    let trust = trust_file(b.dir.path(), &service);
    let config = b.dir.path().join("server.toml");
    std::fs::write(&config, "lock_after_failures = 2\n").unwrap();
    let s = b.server(&[
        "--trust-file",
        trust.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    let api = s.api();
    let mut a = app(0x5E);
    let (r, mut key) = register(&api, &service, &mut a, &AttestationFaults::default());
    assert_eq!(r.status, 200, "{}", r.body);
    let st = pay_statement(&api, &mut a, "l-1", 6_000);
    let other = pay_statement(&api, &mut a, "l-2", 6_000);
    let swapped = service
        .generate_assertion(&mut key, &sha256(&other))
        .unwrap();
    assert_eq!(verify(&api, &st, None).code(), Some("P17"));
    assert_eq!(verify(&api, &st, Some(&swapped)).code(), Some("J2"));
    assert_eq!(verify(&api, &st, Some(b"garbage")).code(), Some("J1"));
    let own = service.generate_assertion(&mut key, &sha256(&st)).unwrap();
    let ok = verify(&api, &st, Some(&own));
    assert_eq!(ok.status, 200, "{}", ok.body);
    s.stop();
}
