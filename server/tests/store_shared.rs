//! State that must be shared and atomic across processes, on SQLite (one
//! file, two processes) and on a real PostgreSQL: the rate-limiting failure
//! counts, and the status change of a flagged credential (P15/P19) together
//! with the audit record of that rejection.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

#[macro_use]
mod common;

use biopay_core::{store::Flag, CredentialId, CredentialStatus, Step, Store};
use biopay_server::{
    audit::AuditEntry,
    store::{postgres::PgStore, sqlite::SqliteStore, AnyStore, ServerStore},
};
use biopay_server_tools::{
    client::{b64, field_bytes, unb64, ApiClient, Reply},
    demo::DemoDevice,
};
use common::*;
use serde_json::json;

struct Phone {
    device: DemoDevice,
    id: Vec<u8>,
    _dir: tempfile::TempDir,
}

fn enroll(api: &ApiClient, account: &[u8]) -> Phone {
    let dir = tempfile::tempdir().unwrap();
    let mut device = DemoDevice::provision(&dir.path().join("phone"), RP).unwrap();
    let c = api.registration_challenge(account).unwrap();
    let r = api.register(&device.register(&c).unwrap()).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let id = unb64(r.body["credential_id"].as_str().unwrap()).unwrap();
    Phone {
        device,
        id,
        _dir: dir,
    }
}

fn assertion(api: &ApiClient, p: &mut Phone, order: &str) -> Vec<u8> {
    let c = field_bytes(
        &api.payment_challenge(&p.id, order, 100).unwrap(),
        "challenge",
    )
    .unwrap();
    p.device.authorize(&c).unwrap()
}

#[track_caller]
fn assert_error(r: &Reply, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.code(), Some(code), "{}", r.body);
}

fn open_store(data: &std::path::Path, backend: &Backend) -> AnyStore {
    match backend {
        Backend::Sqlite => AnyStore::Sqlite(SqliteStore::open(&data.join("biopay.db")).unwrap()),
        Backend::Postgres(url) => AnyStore::Postgres(PgStore::connect(url, 2).unwrap()),
    }
}

fn entries(store: &AnyStore) -> Vec<AuditEntry> {
    store.audit_entries(0, 1 << 40).unwrap()
}

/// Three correctly signed but unconfirmed statements (P14), two sent to one
/// process and one to the other, lock the credential and its account in both.
fn rate_limit_is_shared_by_two_processes(b: &TestBackend) {
    let data = b.dir.path().join("server");
    let args = ["--lock-after-failures", "3"];
    let s1 = ServerProcess::start(&data, &b.backend, &args);
    let s2 = ServerProcess::start(&data, &b.backend, &args);
    let (a1, a2) = (s1.api(), s2.api());
    let mut p = enroll(&a1, b"shared-account");
    let mut q = enroll(&a2, b"shared-account");
    let mut other = enroll(&a1, b"other-account");
    for (i, api) in [&a1, &a1, &a2].into_iter().enumerate() {
        // Not yet locked: each failure is still verified and refused at P14.
        let a = assertion(api, &mut p, &format!("bad-{i}"));
        let unconfirmed = p
            .device
            .danger_resign(&a, |x| x.user_confirmed = false)
            .unwrap();
        assert_error(&api.verify_payment(&unconfirmed).unwrap(), 422, "P14");
    }
    // Locked in both processes, for the credential and for the account's
    // other credential; a per-process count would allow 3 more per process.
    for api in [&a1, &a2] {
        let good = assertion(api, &mut p, "good");
        assert_error(&api.verify_payment(&good).unwrap(), 429, "RATE_LIMITED");
        let other_cred = assertion(api, &mut q, "other-credential");
        assert_error(
            &api.verify_payment(&other_cred).unwrap(),
            429,
            "RATE_LIMITED",
        );
    }
    // Another account is unaffected.
    let a = assertion(&a2, &mut other, "fine");
    assert_eq!(a2.verify_payment(&a).unwrap().status, 200);
    s1.stop();
    s2.stop();
    // Each counted failure was audited (in the same transaction).
    let store = open_store(&data, &b.backend);
    let p14 = entries(&store)
        .iter()
        .filter(|e| e.record.step == "P14" && e.record.outcome == "rejected")
        .count();
    assert_eq!(p14, 3);
    let id = CredentialId::new(p.id.clone()).unwrap();
    assert_eq!(store.recent_failures(&id, 0).unwrap(), 3);
    assert_eq!(store.purge_failures(u64::MAX >> 2).unwrap(), 6); // 3 credential + 3 account
    assert_eq!(store.recent_failures(&id, 0).unwrap(), 0);
}

fn inject_audit_failure(data: &std::path::Path, backend: &Backend, on: bool) {
    match backend {
        Backend::Sqlite => {
            let c = rusqlite::Connection::open(data.join("biopay.db")).unwrap();
            c.execute_batch(if on {
                "CREATE TRIGGER injected_audit_failure BEFORE INSERT ON audit_log
                 BEGIN SELECT RAISE(ABORT, 'injected audit failure'); END;"
            } else {
                "DROP TRIGGER injected_audit_failure;"
            })
            .unwrap();
        }
        Backend::Postgres(url) => {
            Postgres::client(url)
                .batch_execute(if on {
                    "CREATE FUNCTION injected_audit_failure() RETURNS trigger LANGUAGE plpgsql
                        AS $$ BEGIN RAISE EXCEPTION 'injected audit failure'; END $$;
                     CREATE TRIGGER injected_audit_failure BEFORE INSERT ON audit_log
                        FOR EACH ROW EXECUTE FUNCTION injected_audit_failure();"
                } else {
                    "DROP TRIGGER injected_audit_failure ON audit_log;
                     DROP FUNCTION injected_audit_failure();"
                })
                .unwrap();
        }
    }
}

/// P19 over HTTP: the flag and exactly one audit record of the rejection.
/// Directly on the store: when the audit record cannot be written, the
/// status does not change either.
fn flag_and_its_audit_record_commit_together(b: &TestBackend) {
    let s = b.server(&[]);
    let api = s.api();
    let mut p = enroll(&api, b"acct-flag");
    let victim = enroll(&api, b"acct-flag-2");
    let a = assertion(&api, &mut p, "o-1");
    assert_eq!(api.verify_payment(&a).unwrap().status, 200);
    let a2 = assertion(&api, &mut p, "o-2");
    let forged = p.device.danger_resign(&a2, |x| x.counter = 1).unwrap();
    assert_error(&api.verify_payment(&forged).unwrap(), 422, "P19");
    let (data, backend, _, _) = s.restart_args();
    s.stop();

    let store = open_store(&data, &backend);
    let hash = hex::encode(biopay_core::crypto::sha256(&forged));
    let records: Vec<_> = entries(&store)
        .into_iter()
        .filter(|e| e.record.statement_hash == hash)
        .collect();
    assert_eq!(records.len(), 1, "one record of the rejection: {records:?}");
    assert_eq!(
        (
            records[0].record.outcome.as_str(),
            records[0].record.step.as_str()
        ),
        ("rejected", "P19")
    );
    let id = CredentialId::new(p.id.clone()).unwrap();
    assert_eq!(
        store.credential(&id).unwrap().unwrap().status,
        CredentialStatus::SuspectedClone
    );

    // The audit write fails: the flag is not applied either.
    let victim_id = CredentialId::new(victim.id.clone()).unwrap();
    let flag = Flag {
        credential_id: victim_id.clone(),
        status: CredentialStatus::EnrollmentChanged,
        step: Step::P15EnrollmentEpoch,
        reason: "enrollment changed".into(),
        statement_hash: [7; 32],
        at: biopay_server::now(),
    };
    let before = entries(&store).len();
    inject_audit_failure(&data, &backend, true);
    let err = store.flag_credential(&flag).unwrap_err();
    assert!(err.to_string().contains("injected audit failure"), "{err}");
    assert_eq!(
        store.credential(&victim_id).unwrap().unwrap().status,
        CredentialStatus::Active,
        "a flag without its audit record must not be applied"
    );
    assert_eq!(entries(&store).len(), before);
    inject_audit_failure(&data, &backend, false);
    store.flag_credential(&flag).unwrap();
    assert_eq!(
        store.credential(&victim_id).unwrap().unwrap().status,
        CredentialStatus::EnrollmentChanged
    );
    let all = entries(&store);
    assert_eq!(all.len(), before + 1);
    let last = all.last().unwrap();
    assert_eq!(
        (last.record.step.as_str(), last.record.credential.as_str()),
        ("P15", victim_id.to_hex().as_str())
    );
    drop(store);
    let (ok, out) = audit_verify(&data, &backend);
    assert!(ok, "{out}");
}

/// An operator's suspension or model revocation and its audit record commit
/// together: with the audit write failing, the request answers 503 and
/// changes nothing (before, the status changed and went unaudited); once it
/// succeeds, the log holds exactly one record of it.
fn admin_actions_and_their_audit_records_commit_together(b: &TestBackend) {
    let s = b.server(&[]);
    let api = s.api();
    let admin = s.admin();
    let mut p = enroll(&api, b"acct-admin");
    let (data, backend, _, _) = s.restart_args();
    let model = biopay_server::demo_trust::danger_demo_model().unwrap().id;
    let suspend = format!("/v1/admin/credentials/{}/suspend", b64(&p.id));
    let revoke = format!("/v1/admin/models/{model}/status");

    inject_audit_failure(&data, &backend, true);
    assert_error(
        &admin.post(&suspend, json!({})).unwrap(),
        503,
        "UNAVAILABLE",
    );
    let r = admin
        .post(&revoke, json!({"status": "compromised"}))
        .unwrap();
    assert_error(&r, 503, "UNAVAILABLE");
    inject_audit_failure(&data, &backend, false);
    // Neither was applied: the credential pays, in this process and after
    // the periodic reload alike (the model row was never written).
    let a = assertion(&api, &mut p, "after-failed-admin");
    assert_eq!(api.verify_payment(&a).unwrap().status, 200);

    assert_eq!(admin.post(&suspend, json!({})).unwrap().status, 200);
    let r = admin.post(&revoke, json!({"status": "revoked"})).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    s.stop();
    let store = open_store(&data, &backend);
    let outcomes: Vec<String> = entries(&store)
        .into_iter()
        .filter(|e| e.record.kind == "admin")
        .map(|e| e.record.outcome)
        .collect();
    assert_eq!(outcomes, ["suspended", "model_revoked"]);
    let id = CredentialId::new(p.id.clone()).unwrap();
    assert_eq!(
        store.credential(&id).unwrap().unwrap().status,
        CredentialStatus::Suspended
    );
    let (ok, out) = audit_verify(&data, &backend);
    assert!(ok, "{out}");
}

suite!(
    rate_limit_is_shared_by_two_processes,
    flag_and_its_audit_record_commit_together,
    admin_actions_and_their_audit_records_commit_together,
);
