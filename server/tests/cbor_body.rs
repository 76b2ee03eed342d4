//! The binary body of the payment verification endpoints
//! (`Content-Type: application/cbor`, issue #12): the statement bytes as they
//! are, decided, committed and audited exactly as the JSON body; every
//! malformed body refused 400 with nothing stored or consumed; other media
//! types still 415. Each case runs on SQLite and on a real PostgreSQL
//! through a real server process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

#[macro_use]
mod common;

use biopay_core::{
    cbor::{write_bytes, write_head, write_text},
    crypto::sha256,
    messages::Message,
    PaymentChallenge,
};
use biopay_server::{
    audit::AuditEntry,
    store::{postgres::PgStore, sqlite::SqliteStore, ServerStore},
};
use biopay_server_tools::client::{
    b64, batch_items, cbor_verify_body, field_bytes, unb64, ApiClient, Reply,
};
use common::*;
use serde_json::Value;

fn audit_count(api: &ApiClient) -> u64 {
    api.get("/healthz").unwrap().body["audit_entries"]
        .as_u64()
        .unwrap()
}

/// Every audit entry, read from the stopped server's store.
fn audit_entries(data_dir: &std::path::Path, backend: &Backend) -> Vec<AuditEntry> {
    let store: Box<dyn ServerStore> = match backend {
        Backend::Sqlite => Box::new(SqliteStore::open(&data_dir.join("biopay.db")).unwrap()),
        Backend::Postgres(url) => Box::new(PgStore::connect(url, 2).unwrap()),
    };
    store.audit_entries(0, 10_000).unwrap()
}

/// A request with exactly this content type and body.
fn raw_post(url: &str, path: &str, content_type: &str, body: &[u8]) -> Reply {
    let res = ureq::AgentBuilder::new()
        .build()
        .post(&format!("{url}{path}"))
        .set("Authorization", &format!("Bearer {RP_KEY}"))
        .set("Content-Type", content_type)
        .send_bytes(body);
    let r = match res {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{e}"),
    };
    let status = r.status();
    let text = r.into_string().unwrap();
    Reply {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

/// A CBOR map of the given (text key, byte string value) entries, in the
/// order given (not necessarily deterministic).
fn map_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    write_head(&mut out, 5, u64::try_from(entries.len()).unwrap());
    for (k, v) in entries {
        write_text(&mut out, k);
        write_bytes(&mut out, v);
    }
    out
}

/// Someone who captured an accepted CBOR payment replays it, as CBOR and as
/// JSON: P9 both times. The CBOR payment's answer and audit entry are those
/// of a JSON payment (same fields, statement hash of the bytes sent).
fn cbor_payment_is_audited_as_json_and_its_replay_refused_p9(b: &TestBackend) {
    let s = b.server(&[]);
    let api = s.api();
    let cbor_api = s.api().with_cbor(true);
    let mut p = enroll(&api, b"cbor-1");
    let by_json = assertion(&api, &mut p, "o-json", 8800);
    let by_cbor = assertion(&api, &mut p, "o-cbor", 8800);
    let before = audit_count(&api);
    let j = api.verify_payment(&by_json).unwrap();
    assert_eq!(j.status, 200, "{}", j.body);
    let c = cbor_api.verify_payment(&by_cbor).unwrap();
    assert_eq!(c.status, 200, "{}", c.body);
    assert_eq!(audit_count(&api), before + 2);
    // The same answer, field for field, but for what differs by payment.
    let mut jb = j.body.clone();
    let mut cb = c.body.clone();
    for field in ["counter", "statement_hash"] {
        jb[field] = Value::Null;
        cb[field] = Value::Null;
    }
    jb["transaction"]["order_id"] = Value::Null;
    cb["transaction"]["order_id"] = Value::Null;
    assert_eq!(jb, cb);
    assert_eq!(c.body["counter"], 2);
    assert_eq!(c.body["transaction"]["order_id"], "o-cbor");
    assert_eq!(c.body["statement_hash"], hex::encode(sha256(&by_cbor)));

    // Replays: the captured statement in either body type.
    assert_error(&cbor_api.verify_payment(&by_cbor).unwrap(), 409, "P9");
    assert_error(&api.verify_payment(&by_cbor).unwrap(), 409, "P9");
    assert_error(&cbor_api.verify_payment(&by_json).unwrap(), 409, "P9");
    assert_eq!(audit_count(&api), before + 5);

    let (data, backend) = (s.data_dir.clone(), s.backend.clone());
    s.stop();
    let entries = audit_entries(&data, &backend);
    let of = |statement: &[u8]| -> Vec<&AuditEntry> {
        let h = hex::encode(sha256(statement));
        entries
            .iter()
            .filter(|e| e.record.statement_hash == h)
            .collect()
    };
    let (je, ce) = (of(&by_json), of(&by_cbor));
    assert_eq!(je.len(), 2, "{je:?}"); // accepted, replayed once
    assert_eq!(ce.len(), 3, "{ce:?}"); // accepted, replayed twice
    for (a, b) in je.iter().zip(&ce) {
        assert_eq!(
            (&a.record.kind, &a.record.outcome, &a.record.step),
            (&b.record.kind, &b.record.outcome, &b.record.step)
        );
        assert_eq!(a.record.credential, b.record.credential);
    }
    assert_eq!(
        (ce[0].record.outcome.as_str(), ce[1].record.step.as_str()),
        ("accepted", "P9")
    );
    let (ok, out) = audit_verify(&data, &backend);
    assert!(ok, "{out}");
}

/// A careless or hostile client sends broken CBOR: not CBOR, trailing
/// bytes, a non-deterministic encoding, the wrong types, an unknown or a
/// missing key, JSON declared as CBOR. Each is 400 `BAD_REQUEST`, audits
/// nothing, consumes nothing: the genuine assertion inside most of them is
/// accepted afterwards.
fn malformed_cbor_bodies_are_400_and_store_nothing(b: &TestBackend) {
    let s = b.server(&[]);
    let api = s.api();
    let url = s.url();
    let mut p = enroll(&api, b"cbor-2");
    let a = assertion(&api, &mut p, "o-1", 100);
    let good = cbor_verify_body(&a);
    let mut trailing = good.clone();
    trailing.push(0);
    // Keys out of deterministic order ("assertion" sorts first).
    let unordered = map_of(&[("app_attest_assertion", b"x"), ("assertion", &a)]);
    // A non-shortest map head (0xb8 0x01 for a map of one).
    let mut long_head = vec![0xb8, 0x01];
    long_head.extend_from_slice(good.get(1..).unwrap());
    let mut as_text = Vec::new();
    write_head(&mut as_text, 5, 1);
    write_text(&mut as_text, "assertion");
    write_text(&mut as_text, &b64(&a));
    let mut as_array = Vec::new();
    write_head(&mut as_array, 4, 1);
    write_bytes(&mut as_array, &a);
    let mut int_key = Vec::new();
    write_head(&mut int_key, 5, 1);
    write_head(&mut int_key, 0, 1);
    write_bytes(&mut int_key, &a);
    let mut batch_not_array = Vec::new();
    write_head(&mut batch_not_array, 5, 1);
    write_text(&mut batch_not_array, "items");
    write_bytes(&mut batch_not_array, &good);
    let json = serde_json::json!({"assertion": b64(&a)}).to_string();
    let mut attest_as_text = Vec::new();
    write_head(&mut attest_as_text, 5, 2);
    write_text(&mut attest_as_text, "assertion");
    write_bytes(&mut attest_as_text, &a);
    write_text(&mut attest_as_text, "app_attest_assertion");
    write_text(&mut attest_as_text, "x");
    let verify = "/v1/payments/verify";
    let batch = "/v1/payments/verify/batch";
    // (what, endpoint, body, what the reason must say). Maps are in
    // deterministic key order unless the case is about the order.
    let cases: Vec<(&str, &str, Vec<u8>, &str)> = vec![
        ("not CBOR", verify, vec![0xff, 0x00], "not well-formed"),
        ("empty", verify, vec![], "not well-formed"),
        (
            "truncated",
            verify,
            good.get(..good.len() - 1).unwrap().to_vec(),
            "not well-formed",
        ),
        ("trailing byte", verify, trailing, "trailing bytes"),
        (
            "keys out of order",
            verify,
            unordered,
            "not deterministically",
        ),
        (
            "non-shortest head",
            verify,
            long_head,
            "not deterministically",
        ),
        (
            "assertion as text",
            verify,
            as_text,
            "must be a byte string",
        ),
        ("array body", verify, as_array, "must be a map"),
        ("integer key", verify, int_key, "not a text string"),
        (
            "unknown key",
            verify,
            map_of(&[("memo", b"x"), ("assertion", &a)]),
            "unknown key `memo`",
        ),
        (
            "missing assertion",
            verify,
            map_of(&[("app_attest_assertion", b"x")]),
            "missing `assertion`",
        ),
        (
            "app_attest_assertion as text",
            verify,
            attest_as_text,
            "must be a byte string",
        ),
        ("JSON declared CBOR", verify, json.into_bytes(), "CBOR"),
        (
            "batch items not an array",
            batch,
            batch_not_array,
            "must be an array",
        ),
        (
            "batch with an unknown key",
            batch,
            map_of(&[("x", b""), ("items", b"")]),
            "unknown key `x`",
        ),
        (
            "single body to batch",
            batch,
            good.clone(),
            "unknown key `assertion`",
        ),
    ];
    let audited = audit_count(&api);
    for (what, path, body, says) in &cases {
        let r = raw_post(&url, path, "application/cbor", body);
        assert_eq!(r.status, 400, "{what}: {}", r.body);
        assert_eq!(r.code(), Some("BAD_REQUEST"), "{what}: {}", r.body);
        let reason = r.body["error"]["reason"].as_str().unwrap();
        assert!(
            reason.contains("CBOR") && reason.contains(says),
            "{what}: expected {says:?}: {}",
            r.body
        );
    }
    assert_eq!(audit_count(&api), audited, "a malformed body was audited");
    // Nothing consumed, nothing counted toward lockout: the genuine
    // statement is still accepted, with its parameters on the content type.
    let r = raw_post(&url, "/v1/payments/verify", "Application/CBOR; x=1", &good);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["counter"], 1);
    s.stop();
}

/// Only the payment endpoints admit CBOR; every other body type is still 415
/// before the body is read, and CBOR elsewhere is 415 too.
fn other_body_types_are_still_415(b: &TestBackend) {
    let s = b.server(&[]);
    let url = s.url();
    let body = cbor_verify_body(&[1, 2, 3]);
    for path in [
        "/v1/payments/verify",
        "/v1/payments/verify/batch",
        "/v1/payments/challenge",
        "/v1/payments/challenge/batch",
    ] {
        for ct in [
            "text/plain",
            "application/octet-stream",
            "application/cbor-seq",
            "application/cborx",
        ] {
            let r = raw_post(&url, path, ct, &body);
            assert_error(&r, 415, "UNSUPPORTED_MEDIA_TYPE");
        }
    }
    for path in [
        "/v1/registrations/challenge",
        "/v1/registrations",
        "/v1/credentials/AAAAAAAAAAAAAAAAAAAAAA/deregister",
    ] {
        let r = raw_post(&url, path, "application/cbor", &body);
        assert_error(&r, 415, "UNSUPPORTED_MEDIA_TYPE");
    }
    s.stop();
}

/// A CBOR batch is decided as the JSON batch: each item on its own, one
/// credential's items in order, a copy in the same batch P9.
fn cbor_batch_is_decided_item_by_item(b: &TestBackend) {
    let s = b.server(&[]);
    let api = s.api();
    let cbor_api = s.api().with_cbor(true);
    let mut p1 = enroll(&api, b"cbor-b1");
    let mut p2 = enroll(&api, b"cbor-b2");
    let a1 = assertion(&api, &mut p1, "b-1", 100);
    let a2 = assertion(&api, &mut p2, "b-2", 200);
    let audited = audit_count(&api);
    let r = cbor_api
        .verify_payment_batch(&[a1.clone(), vec![0x42; 40], a2, a1])
        .unwrap();
    let items = batch_items(&r, 4).unwrap();
    let outcome: Vec<(u64, Value)> = items
        .iter()
        .map(|i| (i["status"].as_u64().unwrap(), i["error"]["code"].clone()))
        .collect();
    assert_eq!(
        outcome,
        [
            (200, Value::Null),
            (422, "P1".into()),
            (200, Value::Null),
            (409, "P9".into())
        ],
        "{}",
        r.body
    );
    assert_eq!(items[0]["payment"]["transaction"]["order_id"], "b-1");
    assert_eq!(items[2]["payment"]["transaction"]["order_id"], "b-2");
    assert_eq!(audit_count(&api), audited + 4);
    assert_error(
        &cbor_api.verify_payment_batch(&[]).unwrap(),
        400,
        "BAD_REQUEST",
    );
    s.stop();
}

/// A CBOR value for hand-built bodies (written in the order given).
enum V<'a> {
    B(&'a [u8]),
    T(&'a str),
    U(u64),
    N(u64),
    M(Vec<(&'a str, V<'a>)>),
}

fn enc(out: &mut Vec<u8>, v: &V<'_>) {
    match v {
        V::B(b) => write_bytes(out, b),
        V::T(t) => write_text(out, t),
        V::U(u) => write_head(out, 0, *u),
        V::N(n) => write_head(out, 1, *n),
        V::M(entries) => {
            write_head(out, 5, u64::try_from(entries.len()).unwrap());
            for (k, v) in entries {
                write_text(out, k);
                enc(out, v);
            }
        }
    }
}

/// A challenge request in deterministic key order with `amount` and an
/// optional extra transaction entry (sorting first: a 1-letter key).
fn challenge_map<'a>(id: &'a [u8], amount: V<'a>, extra: Option<(&'a str, V<'a>)>) -> Vec<u8> {
    let mut tx = Vec::new();
    if let Some(e) = extra {
        tx.push(e);
    }
    tx.extend([
        ("currency", V::T("CNY")),
        ("order_id", V::T("o-c")),
        ("payee_id", V::T("merchant-0042")),
        ("payee_name", V::T("Coffee Corner")),
        ("amount_minor", amount),
    ]);
    let mut out = Vec::new();
    enc(
        &mut out,
        &V::M(vec![("transaction", V::M(tx)), ("credential_id", V::B(id))]),
    );
    out
}

/// A challenge requested in CBOR is the one JSON would get (same
/// transaction, same display text) and pays; malformed challenge bodies are
/// 400 for their own reason and write nothing; a CBOR challenge batch is
/// decided item by item.
fn cbor_challenge_is_issued_as_json(b: &TestBackend) {
    let s = b.server(&[]);
    let api = s.api();
    let cbor_api = s.api().with_cbor(true);
    let url = s.url();
    let mut p = enroll(&api, b"cbor-c");
    let by_json = api.payment_challenge(&p.id, "o-c", 8800).unwrap();
    let by_cbor = raw_post(
        &url,
        "/v1/payments/challenge",
        "application/cbor",
        &challenge_map(&p.id, V::U(8800), None),
    );
    assert_eq!(by_cbor.status, 200, "{}", by_cbor.body);
    assert_eq!(by_cbor.body["display_text"], by_json.body["display_text"]);
    let tx = |r: &Reply| {
        PaymentChallenge::from_cbor(&field_bytes(r, "challenge").unwrap())
            .unwrap()
            .transaction
    };
    let (jt, ct) = (tx(&by_json), tx(&by_cbor));
    assert_eq!(
        (
            ct.amount_minor,
            &ct.currency,
            &ct.payee_id,
            &ct.payee_name,
            &ct.order_id,
            &ct.memo
        ),
        (
            8800,
            &"CNY".to_owned(),
            &"merchant-0042".to_owned(),
            &"Coffee Corner".to_owned(),
            &"o-c".to_owned(),
            &None
        )
    );
    assert_eq!(jt.amount_minor, ct.amount_minor);
    let a = p
        .device
        .authorize(&field_bytes(&by_cbor, "challenge").unwrap())
        .unwrap();
    let r = cbor_api.verify_payment(&a).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["transaction"]["order_id"], "o-c");

    // Malformed: nothing issued, nothing written.
    let ops = metric(&api, "biopay_store_commit_operations_total");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "unknown transaction key",
            challenge_map(&p.id, V::U(1), Some(("x", V::T("y")))),
            "unknown key `x`",
        ),
        (
            "amount as text",
            challenge_map(&p.id, V::T("8800"), None),
            "unsigned integer",
        ),
        (
            "negative amount",
            challenge_map(&p.id, V::N(0), None),
            "unsigned integer",
        ),
        (
            "amount beyond int64",
            challenge_map(&p.id, V::U(1 << 63), None),
            "amount_minor",
        ),
        (
            "memo as bytes",
            challenge_map(&p.id, V::U(1), Some(("memo", V::B(b"x")))),
            "must be a text string",
        ),
        (
            "credential id as text",
            {
                let mut out = Vec::new();
                enc(
                    &mut out,
                    &V::M(vec![
                        ("transaction", V::M(vec![])),
                        ("credential_id", V::T("AAAA")),
                    ]),
                );
                out
            },
            "must be a byte string",
        ),
        (
            "missing order_id",
            {
                let mut out = Vec::new();
                enc(
                    &mut out,
                    &V::M(vec![
                        (
                            "transaction",
                            V::M(vec![
                                ("currency", V::T("CNY")),
                                ("payee_id", V::T("merchant-0042")),
                                ("payee_name", V::T("c")),
                                ("amount_minor", V::U(1)),
                            ]),
                        ),
                        ("credential_id", V::B(&p.id)),
                    ]),
                );
                out
            },
            "missing `order_id`",
        ),
    ];
    for (what, body, says) in &cases {
        let r = raw_post(&url, "/v1/payments/challenge", "application/cbor", body);
        assert_eq!(r.status, 400, "{what}: {}", r.body);
        let reason = r.body["error"]["reason"].as_str().unwrap();
        assert!(
            reason.contains(says),
            "{what}: expected {says:?}: {}",
            r.body
        );
    }
    assert_eq!(
        metric(&api, "biopay_store_commit_operations_total"),
        ops,
        "a malformed challenge request wrote to the store"
    );

    // The batch: each item on its own.
    let r = cbor_api
        .payment_challenge_batch(&[(&p.id, "b-1", 100), (&[1; 8], "b-2", 100)])
        .unwrap();
    let items = batch_items(&r, 2).unwrap();
    assert_eq!(items[0]["status"], 200, "{}", r.body);
    assert_eq!(items[1]["status"], 400, "{}", r.body);
    let c = unb64(items[0]["challenge"]["challenge"].as_str().unwrap()).unwrap();
    assert_eq!(
        PaymentChallenge::from_cbor(&c)
            .unwrap()
            .transaction
            .order_id,
        "b-1"
    );
    s.stop();
}

suite!(
    cbor_challenge_is_issued_as_json,
    cbor_payment_is_audited_as_json_and_its_replay_refused_p9,
    malformed_cbor_bodies_are_400_and_store_nothing,
    other_body_types_are_still_415,
    cbor_batch_is_decided_item_by_item,
);
