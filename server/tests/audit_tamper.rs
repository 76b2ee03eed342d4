//! `biopay-server audit verify` names the first entry that was altered,
//! removed or reordered in a real server's SQLite log, and a log truncated
//! below a signed checkpoint.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use biopay_server::{client::field_bytes, demo::DemoDevice};
use common::*;
use std::path::Path;

/// A server's data directory with 1 registration + 6 payments + 6 replays = 13 entries.
fn populated() -> tempfile::TempDir {
    let b = TestBackend::sqlite();
    // Replays count as failures; no lockout here.
    let s = b.server(&["--lock-after-failures", "0"]);
    let api = s.api();
    let phone_dir = tempfile::tempdir().unwrap();
    let mut d = DemoDevice::provision(&phone_dir.path().join("p"), RP).unwrap();
    let c = api.registration_challenge(b"acct").unwrap();
    let r = api.register(&d.register(&c).unwrap()).unwrap();
    let id = biopay_server::client::unb64(r.body["credential_id"].as_str().unwrap()).unwrap();
    for i in 0..6 {
        let c = field_bytes(
            &api.payment_challenge(&id, &format!("o{i}"), 100).unwrap(),
            "challenge",
        )
        .unwrap();
        let a = d.authorize(&c).unwrap();
        assert_eq!(api.verify_payment(&a).unwrap().status, 200);
        assert_eq!(api.verify_payment(&a).unwrap().code(), Some("P9"));
    }
    s.stop();
    let TestBackend { dir, .. } = b;
    dir
}

fn db(dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join("server/biopay.db")).unwrap()
}

fn verify(dir: &Path) -> (bool, String) {
    audit_verify(&dir.join("server"), &Backend::Sqlite)
}

#[test]
fn intact_log_verifies() {
    let dir = populated();
    let (ok, out) = verify(dir.path());
    assert!(ok, "{out}");
    assert!(out.contains("13 entries"), "{out}");
}

#[test]
fn altered_entry_is_named() {
    let dir = populated();
    db(dir.path())
        .execute(
            "UPDATE audit_log SET outcome = 'accepted', reason = '' WHERE seq = 5",
            [],
        )
        .unwrap();
    let (ok, out) = verify(dir.path());
    assert!(!ok, "{out}");
    assert!(out.contains("entry 5 was altered"), "{out}");
}

#[test]
fn removed_entry_is_named() {
    let dir = populated();
    db(dir.path())
        .execute("DELETE FROM audit_log WHERE seq = 7", [])
        .unwrap();
    let (ok, out) = verify(dir.path());
    assert!(!ok, "{out}");
    assert!(out.contains("entry 7 was removed"), "{out}");
}

#[test]
fn removed_and_renumbered_entry_is_named() {
    let dir = populated();
    let c = db(dir.path());
    c.execute("DELETE FROM audit_log WHERE seq = 4", [])
        .unwrap();
    c.execute("UPDATE audit_log SET seq = seq - 1 WHERE seq > 4", [])
        .unwrap();
    let (ok, out) = verify(dir.path());
    assert!(!ok, "{out}");
    assert!(out.contains("entry 4 is out of order"), "{out}");
}

#[test]
fn reordered_entries_are_named() {
    let dir = populated();
    let c = db(dir.path());
    c.execute("UPDATE audit_log SET seq = 1000 WHERE seq = 8", [])
        .unwrap();
    c.execute("UPDATE audit_log SET seq = 8 WHERE seq = 9", [])
        .unwrap();
    c.execute("UPDATE audit_log SET seq = 9 WHERE seq = 1000", [])
        .unwrap();
    let (ok, out) = verify(dir.path());
    assert!(!ok, "{out}");
    assert!(out.contains("entry 8 is out of order"), "{out}");
}

#[test]
fn truncated_tail_is_caught_by_the_signed_checkpoint() {
    let dir = populated();
    let c = db(dir.path());
    c.execute("DELETE FROM audit_log WHERE seq > 10", [])
        .unwrap();
    c.execute(
        "UPDATE audit_head SET seq = 10, hash = (SELECT hash FROM audit_log WHERE seq = 10)",
        [],
    )
    .unwrap();
    let (ok, out) = verify(dir.path());
    assert!(!ok, "{out}");
    assert!(out.contains("entries after 10 were removed"), "{out}");
}

#[test]
fn forged_checkpoint_is_refused() {
    let dir = populated();
    db(dir.path())
        .execute(
            "UPDATE audit_checkpoints SET hash = (SELECT hash FROM audit_log WHERE seq = 3)",
            [],
        )
        .unwrap();
    let (ok, out) = verify(dir.path());
    assert!(!ok, "{out}");
    assert!(out.contains("invalid or untrusted signature"), "{out}");
}
