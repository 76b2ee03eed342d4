//! The load generator's measurement tools (issue #12): `--prepopulate`
//! fills the store of a running server with valid credentials straight
//! through the store, and `--cbor` pays through the binary body. Each case
//! runs on SQLite and on a real PostgreSQL through real server processes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

#[macro_use]
mod common;

use biopay_core::CredentialId;
use biopay_server::store::filler_id;
use biopay_server_tools::client::b64;
use biopay_server_tools::load::{run, LoadConfig, StoreLocation};
use common::*;
use std::time::Duration;

/// Runs the load generator (`biopay-server-tools load`, through its
/// library: the flags map one to one onto `LoadConfig`) against `s`, with
/// `set` changing the defaults; its report as JSON.
fn load(s: &ServerProcess, set: impl FnOnce(&mut LoadConfig)) -> serde_json::Value {
    let mut c = LoadConfig {
        url: s.url(),
        key: RP_KEY.into(),
        clients: 2,
        batch: 1,
        duration: Duration::from_secs(1),
        max_payments: 1_000_000,
        ecdsa_secs: 0.0,
        server_pids: Vec::new(),
        database_pids: Vec::new(),
        cbor: false,
        prepopulate: 0,
        store: None,
    };
    set(&mut c);
    serde_json::to_value(run(&c).unwrap()).unwrap()
}

/// The number of credential rows and of distinct public keys among them.
fn credential_counts(s: &ServerProcess) -> (i64, i64) {
    let sql = "SELECT COUNT(*), COUNT(DISTINCT public_key) FROM credentials";
    match &s.backend {
        Backend::Sqlite => {
            let c = rusqlite::Connection::open(s.data_dir.join("biopay.db")).unwrap();
            c.query_row(sql, [], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
        }
        Backend::Postgres(url) => {
            let row = Postgres::client(url).query_one(sql, &[]).unwrap();
            (row.get(0), row.get(1))
        }
    }
}

/// `--prepopulate 5000` leaves exactly 5,000 credentials in the server's
/// store: the 2 clients' own and 4,998 filler sharing one client's real key,
/// each readable through the API as an active credential of its own
/// account; the payments after it are accepted and the audit log is intact
/// (filler adds no entries).
fn prepopulate_fills_the_store_with_valid_credentials(b: &TestBackend) {
    let s = b.server(&[]);
    let store = match &s.backend {
        Backend::Sqlite => StoreLocation::DataDir(s.data_dir.clone()),
        Backend::Postgres(url) => StoreLocation::DatabaseUrl(url.clone()),
    };
    let prepopulate = |c: &mut LoadConfig| {
        c.prepopulate = 5000;
        c.store = Some(store.clone());
    };
    let report = load(&s, prepopulate);
    assert_eq!(report["prepopulated"], 4998, "{report}");
    assert!(report["accepted"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    assert_eq!(credential_counts(&s), (5000, 2));

    // A filler credential, through the API: its own account, active, the
    // template's model.
    let api = s.api();
    let template = api
        .get(&format!(
            "/v1/credentials?account={}",
            b64(b"load-account-0-0")
        ))
        .unwrap();
    let template = &template.body[0];
    let id =
        biopay_server_tools::client::unb64(template["credential_id"].as_str().unwrap()).unwrap();
    let filler = filler_id(&CredentialId::new(id).unwrap(), 4997);
    let listed = api
        .get(&format!("/v1/credentials?account={}", b64(&filler)))
        .unwrap();
    assert_eq!(listed.status, 200, "{}", listed.body);
    let c = &listed.body[0];
    assert_eq!(c["credential_id"], b64(&filler), "{}", listed.body);
    assert_eq!(c["status"], "active");
    assert_eq!(c["device_model"], template["device_model"]);
    assert_eq!(c["counter"], 0);

    // The count is per run (a bench starts each run on a fresh store): a
    // second run registers 2 more clients and copies 4,998 filler from one
    // of them, under other ids.
    let report = load(&s, prepopulate);
    assert_eq!(report["prepopulated"], 4998, "{report}");
    assert_eq!(credential_counts(&s), (10_000, 4));
    let (data, backend) = (s.data_dir.clone(), s.backend.clone());
    s.stop();
    let (ok, out) = audit_verify(&data, &backend);
    assert!(ok, "{out}");
}

/// `--cbor` pays through `application/cbor`: every payment accepted, single
/// and batched.
fn load_pays_through_the_cbor_body(b: &TestBackend) {
    let s = b.server(&[]);
    for batch in [1, 3] {
        let report = load(&s, |c| {
            c.cbor = true;
            c.batch = batch;
        });
        assert_eq!(report["cbor"], true, "{report}");
        assert!(report["accepted"].as_u64().unwrap() > 0, "{report}");
        assert_eq!(report["failed"], 0, "{report}");
    }
    s.stop();
}

/// Against a server with `--stateless-payment-challenges`, the load
/// generator's payments carry the transaction each challenge was asked for
/// (JSON and CBOR bodies, single and batched): every payment is accepted,
/// none fails. A client that does not send it gets P9 for every payment.
fn load_pays_with_stateless_payment_challenges(b: &TestBackend) {
    let s = b.server(&["--stateless-payment-challenges"]);
    for (cbor, batch) in [(false, 1), (false, 3), (true, 1), (true, 3)] {
        let report = load(&s, |c| {
            c.cbor = cbor;
            c.batch = batch;
        });
        assert!(
            report["accepted"].as_u64().unwrap() > 0,
            "cbor {cbor}, batch {batch}: {report}"
        );
        assert_eq!(report["failed"], 0, "cbor {cbor}, batch {batch}: {report}");
    }
    let (data, backend) = (s.data_dir.clone(), s.backend.clone());
    s.stop();
    let (ok, out) = audit_verify(&data, &backend);
    assert!(ok, "{out}");
}

suite!(
    prepopulate_fills_the_store_with_valid_credentials,
    load_pays_through_the_cbor_body,
    load_pays_with_stateless_payment_challenges,
);
