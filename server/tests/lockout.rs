//! Lockout attacked by someone who holds only what they could capture
//! (PROTOCOL.md §9.2, "Lockout"): a statement from a log, a request a
//! client retried, a copy racing the original. None of it may lock the
//! owner's credential or account; only a correctly signed statement for a
//! live, unconsumed challenge that fails a later check counts. Each case runs
//! on SQLite and on a real PostgreSQL through a real server process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

#[macro_use]
mod common;

use biopay_server_tools::client::{b64, batch_items, field_bytes};
use common::*;
use serde_json::json;

/// A genuine payment of `p` is accepted (not locked).
#[track_caller]
fn pays(api: &biopay_server_tools::client::ApiClient, p: &mut Phone, order: &str) {
    let a = assertion(api, p, order, 100);
    let r = api.verify_payment(&a).unwrap();
    assert_eq!(r.status, 200, "{order}: {}", r.body);
}

/// A correctly signed statement for a live challenge that the user did not
/// confirm (a compromised app driving the key): this does count.
fn counted_failure(api: &biopay_server_tools::client::ApiClient, p: &mut Phone, order: &str) {
    let a = assertion(api, p, order, 100);
    let unconfirmed = p
        .device
        .danger_resign(&a, |x| x.user_confirmed = false)
        .unwrap();
    assert_error(&api.verify_payment(&unconfirmed).unwrap(), 422, "P14");
}

/// An accepted assertion, captured from a log and replayed: one by one, in a
/// batch, and as an RP's retry would. Before the fix each replay (P9, after
/// the signature verified) counted, and the owner's next payment and every
/// other credential of the account got 429.
fn replayed_payment_does_not_lock_the_owner(b: &TestBackend) {
    let s = b.server(&["--lock-after-failures", "3"]);
    let api = s.api();
    let mut p = enroll(&api, b"victim-1");
    let mut q = enroll(&api, b"victim-1");
    let a = assertion(&api, &mut p, "captured", 100);
    assert_eq!(api.verify_payment(&a).unwrap().status, 200);
    for _ in 0..6 {
        assert_error(&api.verify_payment(&a).unwrap(), 409, "P9");
    }
    let r = api
        .verify_payment_batch(&[a.clone(), a.clone(), a.clone()])
        .unwrap();
    for item in batch_items(&r, 3).unwrap() {
        assert_eq!(item["status"], 409, "{item}");
        assert_eq!(item["error"]["code"], "P9", "{item}");
    }
    pays(&api, &mut p, "owner-after-replays");
    pays(&api, &mut q, "sibling-after-replays");
    s.stop();
}

/// Copies of one fresh assertion racing each other inside batches (the
/// losers answer P9 or P20): whoever submits copies cannot lock the owner.
fn racing_copies_do_not_lock_the_owner(b: &TestBackend) {
    let s = b.server(&["--lock-after-failures", "2"]);
    let api = s.api();
    let mut p = enroll(&api, b"victim-2");
    for round in 0..3 {
        let a = assertion(&api, &mut p, &format!("race-{round}"), 100);
        let r = api
            .verify_payment_batch(&[a.clone(), a.clone(), a.clone(), a.clone()])
            .unwrap();
        let items = batch_items(&r, 4).unwrap();
        let accepted = items.iter().filter(|i| i["status"] == 200).count();
        assert_eq!(accepted, 1, "{}", r.body);
        for i in items.iter().filter(|i| i["status"] != 200) {
            assert_eq!(i["status"], 409, "{i}");
            let code = i["error"]["code"].as_str().unwrap();
            assert!(code == "P9" || code == "P20", "{i}");
        }
    }
    pays(&api, &mut p, "owner-after-races");
    s.stop();
}

/// A statement delivered after a later one of the same device (a captured
/// statement held back, then submitted): P19 `CounterSuperseded`, which must
/// neither flag the credential nor count.
fn late_statement_does_not_lock_the_owner(b: &TestBackend) {
    let s = b.server(&["--lock-after-failures", "2"]);
    let api = s.api();
    let mut p = enroll(&api, b"victim-3");
    for round in 0..3 {
        let held_back = assertion(&api, &mut p, &format!("held-{round}"), 100);
        let later = assertion(&api, &mut p, &format!("later-{round}"), 100);
        assert_eq!(api.verify_payment(&later).unwrap().status, 200);
        let r = api.verify_payment(&held_back).unwrap();
        assert_error(&r, 409, "P19");
        assert!(
            r.body["error"]["reason"]
                .as_str()
                .unwrap()
                .contains("superseded"),
            "{}",
            r.body
        );
    }
    pays(&api, &mut p, "owner-after-late-statements");
    s.stop();
}

/// A deregistration captured and replayed (D7, after the signature
/// verified): before the fix each replay counted against the account, and
/// the account's remaining credential was locked.
fn replayed_deregistration_does_not_lock_the_account(b: &TestBackend) {
    let s = b.server(&["--lock-after-failures", "2"]);
    let api = s.api();
    let mut p = enroll(&api, b"victim-4");
    let mut q = enroll(&api, b"victim-4");
    let id = biopay_core::CredentialId::new(q.id.clone()).unwrap();
    let d = q.device.deregister(&id).unwrap();
    let path = format!("/v1/credentials/{}/deregister", b64(&q.id));
    let body = json!({"statement": b64(&d)});
    assert_eq!(api.post(&path, body.clone()).unwrap().status, 200);
    for _ in 0..4 {
        assert_error(&api.post(&path, body.clone()).unwrap(), 422, "D7");
    }
    pays(&api, &mut p, "owner-after-deregistration-replays");
    s.stop();
}

/// A success clears the account's count, not only the credential's: two
/// failures on one credential, a success on the other, one more failure:
/// the account has one failure since its last success, not three.
fn a_success_clears_the_account_count(b: &TestBackend) {
    let s = b.server(&["--lock-after-failures", "3"]);
    let api = s.api();
    let mut p = enroll(&api, b"victim-5");
    let mut q = enroll(&api, b"victim-5");
    counted_failure(&api, &mut p, "p-bad-1");
    counted_failure(&api, &mut p, "p-bad-2");
    pays(&api, &mut q, "q-good");
    counted_failure(&api, &mut q, "q-bad-1");
    pays(&api, &mut p, "p-good");
    pays(&api, &mut q, "q-good-2");
    // The failures that need the key still lock: three on p since its last
    // success lock the account, q included.
    for i in 0..3 {
        counted_failure(&api, &mut p, &format!("p-bad-again-{i}"));
    }
    let a = assertion(&api, &mut q, "q-locked", 100);
    assert_error(&api.verify_payment(&a).unwrap(), 429, "RATE_LIMITED");
    s.stop();
}

/// Challenge issuance is limited per account (§6.1.3): a flood of
/// challenges that are never answered stops at the limit, for registration
/// and payment challenges, single and batch; other accounts are unaffected;
/// the challenges already issued still work, and answering one makes room.
fn challenge_issuance_is_limited_per_account(b: &TestBackend) {
    let s = b.server(&["--max-challenges-per-account", "4"]);
    let api = s.api();
    let mut p = enroll(&api, b"flooded");
    let mut issued = Vec::new();
    for i in 0..4 {
        let r = api
            .payment_challenge(&p.id, &format!("flood-{i}"), 100)
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        issued.push(field_bytes(&r, "challenge").unwrap());
    }
    assert_error(
        &api.payment_challenge(&p.id, "flood-5", 100).unwrap(),
        429,
        "CHALLENGE_LIMIT",
    );
    let r = api
        .post(
            "/v1/registrations/challenge",
            json!({"account": b64(b"flooded"), "modalities": ["fingerprint"]}),
        )
        .unwrap();
    assert_error(&r, 429, "CHALLENGE_LIMIT");
    let r = api
        .payment_challenge_batch(&[(&p.id, "flood-6", 100), (&p.id, "flood-7", 100)])
        .unwrap();
    for item in batch_items(&r, 2).unwrap() {
        assert_eq!(item["status"], 429, "{item}");
        assert_eq!(item["error"]["code"], "CHALLENGE_LIMIT", "{item}");
    }
    // Another account is unaffected.
    let mut other = enroll(&api, b"not-flooded");
    pays(&api, &mut other, "other-account");
    // An outstanding challenge still verifies, and using it makes room.
    let a = p.device.authorize(&issued[0]).unwrap();
    assert_eq!(api.verify_payment(&a).unwrap().status, 200);
    let r = api.payment_challenge(&p.id, "after-room", 100).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    s.stop();
}

suite!(
    replayed_payment_does_not_lock_the_owner,
    racing_copies_do_not_lock_the_owner,
    late_statement_does_not_lock_the_owner,
    replayed_deregistration_does_not_lock_the_account,
    a_success_clears_the_account_count,
    challenge_issuance_is_limited_per_account,
);
