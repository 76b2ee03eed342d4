//! Self-authenticating payment challenges through the real server
//! (`--stateless-payment-challenges`, PROTOCOL.md §6.1.3, §7.1): nothing is
//! stored at issue; a challenge survives a restart and crosses to another
//! process on the same store; a forged, foreign-transaction or replayed one
//! is refused at the step the spec names. On SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

#[macro_use]
mod common;

use biopay_core::{messages::Message, CredentialId, Store};
use biopay_server::store::{postgres::PgStore, sqlite::SqliteStore, AnyStore, ServerStore};
use biopay_server_tools::client::{b64, cbor_verify_body_for, field_bytes};
use common::*;
use serde_json::json;

const STATELESS: &str = "--stateless-payment-challenges";

/// How many challenge rows of kind `payment` the store holds.
fn stored_payment_challenges(b: &TestBackend) -> i64 {
    const Q: &str = "SELECT COUNT(*) FROM challenges WHERE kind = 'payment'";
    match &b.backend {
        Backend::Sqlite => rusqlite::Connection::open(b.dir.path().join("server/biopay.db"))
            .unwrap()
            .query_row(Q, [], |r| r.get(0))
            .unwrap(),
        Backend::Postgres(url) => Postgres::client(url).query_one(Q, &[]).unwrap().get(0),
    }
}

fn assert_rejected(r: &biopay_server_tools::client::Reply, status: u16, step: &str, reason: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.code(), Some(step), "{}", r.body);
    assert!(
        r.body["error"]["reason"]
            .as_str()
            .is_some_and(|s| s.contains(reason)),
        "{}",
        r.body
    );
}

fn issuing_stores_nothing_and_a_replay_is_refused(b: &TestBackend) {
    let s = b.server(&[STATELESS]);
    let api = s.api();
    let mut p = enroll(&api, b"stateless-1");
    let a = assertion(&api, &mut p, "o-1", 8800);
    assert_eq!(stored_payment_challenges(b), 0, "issuing wrote a challenge");
    let ok = api.verify_payment(&a).unwrap();
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body["transaction"]["order_id"], "o-1");
    assert_eq!(stored_payment_challenges(b), 0);
    assert_rejected(
        &api.verify_payment(&a).unwrap(),
        409,
        "P9",
        "challenge already used",
    );
    s.stop();
}

fn forged_or_misdirected_challenges_are_refused_at_p9(b: &TestBackend) {
    let s = b.server(&[STATELESS, "--lock-after-failures", "0"]);
    let api = s.api();
    let mut p = enroll(&api, b"stateless-2");
    let c = field_bytes(
        &api.payment_challenge(&p.id, "o-2", 8800).unwrap(),
        "challenge",
    )
    .unwrap();
    let a = p.device.authorize(&c).unwrap();
    // Without the transaction there is nothing to check the MAC against:
    // no stored challenge exists.
    let bare = api
        .post("/v1/payments/verify", json!({"assertion": b64(&a)}))
        .unwrap();
    assert_rejected(&bare, 422, "P9", "unknown challenge");
    // Another transaction than the one the challenge was issued for.
    let mut other = api.verify_body(&a);
    other["transaction"]["amount_minor"] = json!(8801);
    let r = api.post("/v1/payments/verify", other).unwrap();
    assert_rejected(&r, 422, "P9", "challenge not issued");
    // The genuine one still pays.
    assert_eq!(api.verify_payment(&a).unwrap().status, 200);
    s.stop();
}

/// The CBOR body carries the transaction too (`"transaction"`, a map as in
/// a challenge request): an assertion sent with another transaction than
/// its challenge's is P9 `ChallengeNotAuthentic`; a transaction map with a
/// wrongly typed field is 400 and spends nothing; the genuine one, sent as
/// CBOR by the client, pays once.
fn cbor_verify_carries_the_transaction(b: &TestBackend) {
    let s = b.server(&[STATELESS, "--lock-after-failures", "0"]);
    let api = s.api().with_cbor(true);
    let mut p = enroll(&api, b"stateless-cbor");
    let c = field_bytes(
        &api.payment_challenge(&p.id, "o-cbor", 8800).unwrap(),
        "challenge",
    )
    .unwrap();
    let a = p.device.authorize(&c).unwrap();
    let issued = biopay_core::PaymentChallenge::from_cbor(&c).unwrap();
    let mut other = issued.transaction.clone();
    other.amount_minor += 1;
    let r = api
        .post_cbor("/v1/payments/verify", &cbor_verify_body_for(&a, &other))
        .unwrap();
    assert_rejected(&r, 422, "P9", "challenge not issued");
    // `amount_minor` as a text string: the body is refused before core.
    let mut bad = cbor_verify_body_for(&a, &issued.transaction);
    let amount = b"lamount_minor\x19\x22\x60";
    let at = bad
        .windows(amount.len())
        .position(|w| w == amount)
        .expect("amount_minor 8800 in the body");
    bad.splice(at + 13..at + 16, [0x64, b'8', b'8', b'0', b'0']);
    let r = api.post_cbor("/v1/payments/verify", &bad).unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body["error"]["reason"]
            .as_str()
            .is_some_and(|m| m.contains("amount_minor")),
        "{}",
        r.body
    );
    let ok = api.verify_payment(&a).unwrap();
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body["transaction"]["order_id"], "o-cbor");
    assert_rejected(
        &api.verify_payment(&a).unwrap(),
        409,
        "P9",
        "challenge already used",
    );
    s.stop();
}

fn challenge_issued_before_a_restart_pays_after_it_and_its_replay_after_another_is_refused(
    b: &TestBackend,
) {
    let s = b.server(&[STATELESS]);
    let api = s.api();
    let mut p = enroll(&api, b"stateless-3");
    let a = assertion(&api, &mut p, "o-3", 8800);
    let (data, backend, extra, _) = s.restart_args();
    s.stop();
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let s = ServerProcess::start(&data, &backend, &extra);
    let api = api.at(&s.url());
    let ok = api.verify_payment(&a).unwrap();
    assert_eq!(ok.status, 200, "{}", ok.body);
    s.kill9();
    let s = ServerProcess::start(&data, &backend, &extra);
    let api = api.at(&s.url());
    assert_rejected(
        &api.verify_payment(&a).unwrap(),
        409,
        "P9",
        "challenge already used",
    );
    s.stop();
}

fn challenge_issued_by_process_a_is_accepted_once_by_process_b(b: &TestBackend) {
    let data = b.dir.path().join("server");
    let s1 = ServerProcess::start(&data, &b.backend, &[STATELESS]);
    let s2 = ServerProcess::start(&data, &b.backend, &[STATELESS]);
    let a1 = s1.api();
    let a2 = a1.at(&s2.url());
    let mut p = enroll(&a1, b"stateless-4");
    let c = field_bytes(
        &a1.payment_challenge(&p.id, "o-4", 8800).unwrap(),
        "challenge",
    )
    .unwrap();
    let first = p.device.authorize(&c).unwrap();
    let second = p.device.authorize(&c).unwrap();
    let ok = a2.verify_payment(&first).unwrap();
    assert_eq!(ok.status, 200, "{}", ok.body);
    // A second statement for the same challenge, higher counter, at A: only
    // the spent entry B's commit inserted stops it.
    assert_rejected(
        &a1.verify_payment(&second).unwrap(),
        409,
        "P20",
        "challenge already used",
    );
    let id = b64(&p.id);
    let creds = a1
        .get(&format!("/v1/credentials?account={}", b64(b"stateless-4")))
        .unwrap();
    let counter = creds
        .body
        .as_array()
        .and_then(|l| l.iter().find(|c| c["credential_id"] == id.as_str()))
        .map(|c| c["counter"].clone());
    assert_eq!(counter, Some(ok.body["counter"].clone()), "{}", creds.body);
    s1.stop();
    s2.stop();
}

fn unanswered_payment_challenges_are_limited_per_account(b: &TestBackend) {
    let s = b.server(&[STATELESS, "--max-challenges-per-account", "2"]);
    let api = s.api();
    let mut p = enroll(&api, b"stateless-5");
    let first = api.payment_challenge(&p.id, "f-0", 100).unwrap();
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(
        api.payment_challenge(&p.id, "f-1", 100).unwrap().status,
        200
    );
    assert_error(
        &api.payment_challenge(&p.id, "f-2", 100).unwrap(),
        429,
        "CHALLENGE_LIMIT",
    );
    // Paying one makes room.
    let a = p
        .device
        .authorize(&field_bytes(&first, "challenge").unwrap())
        .unwrap();
    assert_eq!(api.verify_payment(&a).unwrap().status, 200);
    assert_eq!(
        api.payment_challenge(&p.id, "f-3", 100).unwrap().status,
        200
    );
    s.stop();
}

/// The payment path's one read (the failure counts and the credential
/// record in one query) answers what the two reads it replaces answer: for
/// a credential with its own and its account's failures, for another
/// credential of that account, and for an unknown credential.
fn the_combined_read_is_the_two_reads(b: &TestBackend) {
    let s = b.server(&[]);
    let api = s.api();
    let a = enroll(&api, b"combined-read");
    let other = enroll(&api, b"combined-read");
    s.stop();
    let data = b.dir.path().join("server");
    let store = match &b.backend {
        Backend::Sqlite => AnyStore::Sqlite(SqliteStore::open(&data.join("biopay.db")).unwrap()),
        Backend::Postgres(url) => AnyStore::Postgres(PgStore::connect(url, 2).unwrap()),
    };
    let (a_id, other_id) = (
        CredentialId::new(a.id.clone()).unwrap(),
        CredentialId::new(other.id.clone()).unwrap(),
    );
    let unknown = CredentialId::new(vec![7; 32]).unwrap();
    let now = biopay_server::now();
    for at in [now - 100, now - 10, now - 5] {
        store.append_rejection(None, Some(&a_id), at).unwrap();
    }
    store.append_rejection(None, Some(&unknown), now).unwrap();
    for id in [&a_id, &other_id, &unknown] {
        for since in [0, now - 50, now + 1] {
            let two = (
                store.recent_failures(id, since).unwrap(),
                store.credential(id).unwrap(),
            );
            assert_eq!(store.failures_and_credential(id, since).unwrap(), two);
        }
    }
    assert_eq!(store.failures_and_credential(&a_id, 0).unwrap().0, 3);
    assert_eq!(
        store.failures_and_credential(&other_id, 0).unwrap().0,
        3,
        "account count"
    );
    assert_eq!(
        store.failures_and_credential(&unknown, 0).unwrap(),
        (1, None)
    );
}

/// A spent entry stays until its challenge's expiry has passed, then the
/// purge deletes it (the purge task passes now minus the clock skew).
fn spent_entries_are_kept_until_expiry_then_purged(b: &TestBackend) {
    let s = b.server(&[STATELESS]);
    let api = s.api();
    let mut p = enroll(&api, b"stateless-6");
    let a = assertion(&api, &mut p, "o-6", 8800);
    let ok = api.verify_payment(&a).unwrap();
    assert_eq!(ok.status, 200, "{}", ok.body);
    s.stop();
    let data = b.dir.path().join("server");
    let store = match &b.backend {
        Backend::Sqlite => AnyStore::Sqlite(SqliteStore::open(&data.join("biopay.db")).unwrap()),
        Backend::Postgres(url) => AnyStore::Postgres(PgStore::connect(url, 2).unwrap()),
    };
    let sign1 = biopay_core::cose::parse_sign1_any_form(&a, false).unwrap();
    let challenge = <biopay_core::PaymentAssertion as biopay_core::messages::Message>::from_cbor(
        &sign1.payload,
    )
    .unwrap()
    .challenge;
    assert!(store.challenge_spent(&challenge).unwrap());
    let now = biopay_server::now();
    assert_eq!(store.purge_spent_challenges(now).unwrap(), 0);
    assert!(store.challenge_spent(&challenge).unwrap());
    assert_eq!(store.purge_spent_challenges(now + 1_000).unwrap(), 1);
    assert!(!store.challenge_spent(&challenge).unwrap());
}

suite!(
    cbor_verify_carries_the_transaction,
    spent_entries_are_kept_until_expiry_then_purged,
    the_combined_read_is_the_two_reads,
    issuing_stores_nothing_and_a_replay_is_refused,
    forged_or_misdirected_challenges_are_refused_at_p9,
    challenge_issued_before_a_restart_pays_after_it_and_its_replay_after_another_is_refused,
    challenge_issued_by_process_a_is_accepted_once_by_process_b,
    unanswered_payment_challenges_are_limited_per_account,
);
