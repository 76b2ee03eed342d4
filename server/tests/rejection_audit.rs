//! The audit record of a rejected statement names the credential the
//! statement claims, as core read it (issue #13 §2: the server parses no
//! statement itself), and nothing when core could not decode one. Someone
//! holding only captured statements or sending garbage gets exactly these
//! records: a replayed registration names its credential at R8, a forged
//! payment names the victim at P5 (without counting toward lockout), a
//! replayed deregistration names the credential of the URL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

#[macro_use]
mod common;

use biopay_core::{crypto::sha256, CredentialId};
use biopay_server::store::{postgres::PgStore, sqlite::SqliteStore, AnyStore, ServerStore};
use biopay_server_tools::demo::DemoDevice;
use common::*;
use serde_json::json;

fn rejections_are_audited_with_the_credential_core_read(b: &TestBackend) {
    let s = b.server(&[]);
    let api = s.api();
    let mut p = enroll(&api, b"account-5");

    // A registration, then its replay (R8).
    let dir = tempfile::tempdir().unwrap();
    let mut phone = DemoDevice::provision(&dir.path().join("phone"), RP).unwrap();
    let c = api.registration_challenge(b"account-6").unwrap();
    let att = phone.register(&c).unwrap();
    let first = api.register(&att).unwrap();
    assert_eq!(first.status, 200, "{}", first.body);
    let q =
        biopay_server_tools::client::unb64(first.body["credential_id"].as_str().unwrap()).unwrap();
    assert_error(&api.register(&att).unwrap(), 409, "R8");
    // Garbage as a registration (R1).
    let garbage = b"\x00not a statement".to_vec();
    assert_error(&api.register(&garbage).unwrap(), 422, "R1");
    // A payment whose signature was altered (P5), and garbage (P1).
    let a = assertion(&api, &mut p, "o-1", 100);
    let mut forged = a.clone();
    *forged.last_mut().unwrap() ^= 0x01;
    assert_error(&api.verify_payment(&forged).unwrap(), 422, "P5");
    assert_error(&api.verify_payment(&garbage).unwrap(), 422, "P1");
    // The genuine payment still goes through: P5 counted nothing.
    assert_eq!(api.verify_payment(&a).unwrap().status, 200);
    // A deregistration, then its replay (D7).
    let id = CredentialId::new(p.id.clone()).unwrap();
    let d = p.device.deregister(&id).unwrap();
    let path = format!(
        "/v1/credentials/{}/deregister",
        biopay_server_tools::client::b64(&p.id)
    );
    let body = json!({ "statement": biopay_server_tools::client::b64(&d) });
    assert_eq!(api.post(&path, body.clone()).unwrap().status, 200);
    assert_error(&api.post(&path, body).unwrap(), 422, "D7");
    s.stop();

    let data = b.dir.path().join("server");
    let store = match &b.backend {
        Backend::Sqlite => AnyStore::Sqlite(SqliteStore::open(&data.join("biopay.db")).unwrap()),
        Backend::Postgres(url) => AnyStore::Postgres(PgStore::connect(url, 2).unwrap()),
    };
    let rejected: Vec<_> = store
        .audit_entries(0, 1_000)
        .unwrap()
        .into_iter()
        .filter(|e| e.record.outcome == "rejected")
        .map(|e| {
            (
                e.record.kind,
                e.record.step,
                e.record.credential,
                e.record.statement_hash,
            )
        })
        .collect();
    let h = |bytes: &[u8]| hex::encode(sha256(bytes));
    let row = |kind: &str, step: &str, cred: &[u8], statement: &[u8]| {
        (
            kind.to_owned(),
            step.to_owned(),
            hex::encode(cred),
            h(statement),
        )
    };
    assert_eq!(
        rejected,
        [
            row("registration", "R8", &q, &att),
            row("registration", "R1", b"", &garbage),
            row("payment", "P5", &p.id, &forged),
            row("payment", "P1", b"", &garbage),
            row("deregistration", "D7", &p.id, &d),
        ]
    );
}

suite!(rejections_are_audited_with_the_credential_core_read);
