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
use common::*;
use std::process::Command;

/// Runs `biopay-server load` against `s` with `extra` arguments; its report.
fn load(s: &ServerProcess, extra: &[&str]) -> serde_json::Value {
    let mut cmd = Command::new(bin());
    cmd.args(["load", "--url", &s.url(), "--key", RP_KEY])
        .args(["--clients", "2", "--seconds", "1", "--ecdsa-seconds", "0"])
        .args(extra)
        .env_remove("BIOPAY_DATABASE_URL");
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "load failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
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
    let store_arg = match &s.backend {
        Backend::Sqlite => vec!["--data-dir".to_owned(), s.data_dir.display().to_string()],
        Backend::Postgres(url) => vec!["--database-url".to_owned(), url.clone()],
    };
    let mut args = vec!["--prepopulate", "5000"];
    args.extend(store_arg.iter().map(String::as_str));
    let report = load(&s, &args);
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
    let mut args = vec!["--prepopulate", "5000"];
    args.extend(store_arg.iter().map(String::as_str));
    let report = load(&s, &args);
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
    for batch in ["1", "3"] {
        let report = load(&s, &["--cbor", "--batch", batch]);
        assert_eq!(report["cbor"], true, "{report}");
        assert!(report["accepted"].as_u64().unwrap() > 0, "{report}");
        assert_eq!(report["failed"], 0, "{report}");
    }
    s.stop();
}

suite!(
    prepopulate_fills_the_store_with_valid_credentials,
    load_pays_through_the_cbor_body,
);
