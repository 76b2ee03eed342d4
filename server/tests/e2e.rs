//! The HTTP-level end-to-end suite, written once and run against both stores
//! (SQLite and a real PostgreSQL): the software TEE drives the full link
//! through a real server process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

#[macro_use]
mod common;

use biopay_core::{messages::Message, PaymentChallenge};
use biopay_server_tools::client::{b64, batch_items, field_bytes, unb64};
use common::*;
use serde_json::json;

fn pay_replay_and_tamper(b: &TestBackend) {
    pay_replay_and_tamper_on(b, &[]);
}

/// The same promises with verification on the async worker
/// (`--inline-verify`, the measurement switch of issue #12): accepted once,
/// the replay refused P9, the tampered amount P12, the clone P19.
fn inline_verify_pays_and_refuses_replay_and_tamper(b: &TestBackend) {
    pay_replay_and_tamper_on(b, &["--inline-verify"]);
}

fn pay_replay_and_tamper_on(b: &TestBackend, extra: &[&str]) {
    let s = b.server(extra);
    let api = s.api();
    let mut p = enroll(&api, b"account-7");
    let a = assertion(&api, &mut p, "o-1", 8800);
    let ok = api.verify_payment(&a).unwrap();
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body["status"], "accepted");
    assert_eq!(ok.body["counter"], 1);
    assert_eq!(ok.body["transaction"]["amount_minor"], 8800);
    assert_eq!(ok.body["transaction"]["order_id"], "o-1");
    // The matched template (salted per rp): the same finger pays below.
    let template = ok.body["template_id"].as_str().unwrap().to_owned();
    assert_eq!(template.len(), 32, "{}", ok.body);
    assert_ne!(template, "0".repeat(32));

    // Replay: the challenge is single-use.
    let replay = api.verify_payment(&a).unwrap();
    assert_error(&replay, 409, "P9");
    assert_eq!(replay.body["error"]["step"], "challenge");

    // A malicious app raises the amount before the TEE sees the challenge:
    // the TEE shows and signs the other transaction, the server refuses at P12.
    let r = api.payment_challenge(&p.id, "o-2", 8800).unwrap();
    let mut c = PaymentChallenge::from_cbor(&field_bytes(&r, "challenge").unwrap()).unwrap();
    c.transaction.amount_minor = 880_000 - 1;
    let tampered = p.device.authorize(&c.to_cbor()).unwrap();
    let rej = api.verify_payment(&tampered).unwrap();
    assert_error(&rej, 422, "P12");
    assert_eq!(rej.body["error"]["step"], "transaction-hash");

    // A statement re-signed with another counter is refused at the counter step
    // (P19) and flags the credential as a suspected clone.
    let a3 = assertion(&api, &mut p, "o-3", 100);
    let forged = p.device.danger_resign(&a3, |x| x.counter = 1).unwrap();
    assert_error(&api.verify_payment(&forged).unwrap(), 422, "P19");
    let list = api
        .get(&format!("/v1/credentials?account={}", b64(&p.account)))
        .unwrap();
    assert_eq!(list.body[0]["status"], "suspected_clone", "{}", list.body);
    assert_eq!(list.body[0]["counter"], 1);
    s.stop();
}

fn lifecycle_and_admin(b: &TestBackend) {
    let s = b.server(&[]);
    let api = s.api();
    let admin = s.admin();
    let mut p = enroll(&api, b"account-8");
    let mut q = enroll(&api, b"account-8");
    let list = api
        .get(&format!("/v1/credentials?account={}", b64(b"account-8")))
        .unwrap();
    assert_eq!(list.status, 200);
    assert_eq!(list.body.as_array().unwrap().len(), 2);

    // Scopes: an rp key cannot call admin endpoints, an admin key cannot pay, no key nothing.
    let suspend = format!("/v1/admin/credentials/{}/suspend", b64(&p.id));
    assert_error(&api.post(&suspend, json!({})).unwrap(), 403, "FORBIDDEN");
    assert_error(
        &admin.payment_challenge(&p.id, "x", 1).unwrap(),
        403,
        "FORBIDDEN",
    );
    assert_error(
        &api.with_key(None)
            .get("/v1/credentials?account=YQ")
            .unwrap(),
        401,
        "UNAUTHORIZED",
    );
    assert_error(
        &api.with_key(Some("wrong"))
            .get("/v1/credentials?account=YQ")
            .unwrap(),
        401,
        "UNAUTHORIZED",
    );

    // Suspension after the challenge was issued: refused at P6.
    let a = assertion(&api, &mut p, "o-1", 500);
    let r = admin.post(&suspend, json!({})).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_error(&api.verify_payment(&a).unwrap(), 422, "P6");
    assert_error(
        &api.payment_challenge(&p.id, "o-2", 500).unwrap(),
        409,
        "CREDENTIAL_NOT_USABLE",
    );

    // Revoking the device model: refused at P7; reactivating it restores payments.
    let a = assertion(&api, &mut q, "o-3", 500);
    let model = "/v1/admin/models/biopay-demo-phone/status";
    assert_eq!(
        admin
            .post(model, json!({"status": "revoked"}))
            .unwrap()
            .status,
        200
    );
    assert_error(&api.verify_payment(&a).unwrap(), 422, "P7");
    assert_eq!(
        admin
            .post(model, json!({"status": "active"}))
            .unwrap()
            .status,
        200
    );
    let a = assertion(&api, &mut q, "o-4", 500);
    assert_eq!(api.verify_payment(&a).unwrap().status, 200);
    assert_error(
        &admin
            .post("/v1/admin/models/nope/status", json!({"status": "revoked"}))
            .unwrap(),
        404,
        "NOT_FOUND",
    );

    // Deregistration signed by the device.
    let id = biopay_core::CredentialId::new(q.id.clone()).unwrap();
    let d = q.device.deregister(&id).unwrap();
    // Not for another credential's URL.
    assert_error(
        &api.post(
            &format!("/v1/credentials/{}/deregister", b64(&p.id)),
            json!({"statement": b64(&d)}),
        )
        .unwrap(),
        400,
        "BAD_REQUEST",
    );
    let r = api
        .post(
            &format!("/v1/credentials/{}/deregister", b64(&q.id)),
            json!({"statement": b64(&d)}),
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "deregistered");
    assert_error(
        &api.payment_challenge(&q.id, "o-5", 500).unwrap(),
        409,
        "CREDENTIAL_NOT_USABLE",
    );
    // Deregistration is final: an operator cannot suspend (or revive) it.
    assert_error(
        &admin
            .post(
                &format!("/v1/admin/credentials/{}/suspend", b64(&q.id)),
                json!({}),
            )
            .unwrap(),
        409,
        "CREDENTIAL_NOT_USABLE",
    );
    assert_error(
        &admin
            .post(
                &format!("/v1/admin/credentials/{}/suspend", b64(&[9; 16])),
                json!({}),
            )
            .unwrap(),
        404,
        "NOT_FOUND",
    );
    s.stop();
}

fn bad_requests_are_clear_errors(b: &TestBackend) {
    let s = b.server(&[]);
    let api = s.api();
    let raw = |body: &str| {
        let agent = ureq::AgentBuilder::new().build();
        match agent
            .post(&format!("{}/v1/payments/verify", s.url()))
            .set("Authorization", &format!("Bearer {RP_KEY}"))
            .set("Content-Type", "application/json")
            .send_string(body)
        {
            Ok(r) | Err(ureq::Error::Status(_, r)) => {
                let status = r.status();
                (
                    status,
                    serde_json::from_str::<serde_json::Value>(&r.into_string().unwrap()).unwrap(),
                )
            }
            Err(e) => panic!("{e}"),
        }
    };
    let (st, body) = raw("{not json");
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (400, Some("BAD_REQUEST"))
    );
    let (st, body) = raw(r#"{"assertion": "***"}"#);
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (400, Some("BAD_REQUEST"))
    );
    let (st, body) = raw(r#"{"assertion": "AAAA", "extra": 1}"#);
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (400, Some("BAD_REQUEST"))
    );
    // An oversized body (the limit is 64 KiB): the client announces 200 KB
    // and sends one byte more than the limit, all of which the server reads
    // before it refuses. (Streaming all 200 KB races the server's early answer
    // and close: the client may then see a broken pipe instead of the 413.)
    {
        use std::io::{Read as _, Write as _};
        let mut c = std::net::TcpStream::connect(s.addr.as_str()).unwrap();
        write!(
            c,
            "POST /v1/payments/verify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {RP_KEY}\r\n\
             Content-Type: application/json\r\nContent-Length: 200000\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        c.write_all(&vec![b'A'; 64 * 1024 + 1]).unwrap();
        let mut answer = String::new();
        c.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("\"BODY_TOO_LARGE\""), "{answer}");
    }
    // Random bytes: rejected at the first step, by code and name.
    let r = api.verify_payment(&[0x42; 40]).unwrap();
    assert_error(&r, 422, "P1");
    assert_eq!(r.body["error"]["step"], "statement");
    let r = api.register(&[0xd2, 0x84]).unwrap();
    assert_error(&r, 422, "R1");
    assert_error(&api.get("/v1/nothing-here").unwrap(), 404, "NOT_FOUND");
    assert_error(
        &api.get("/v1/credentials?account=%%%").unwrap(),
        400,
        "BAD_REQUEST",
    );
    assert_error(
        &api.payment_challenge(&[1; 8], "o", 1).unwrap(),
        400,
        "BAD_REQUEST",
    );
    assert_error(
        &api.payment_challenge(&[1; 16], "o", 1).unwrap(),
        409,
        "CREDENTIAL_NOT_USABLE",
    );
    let r = api
        .post(
            "/v1/registrations/challenge",
            json!({"account": "YQ", "modalities": ["iris"]}),
        )
        .unwrap();
    assert_error(&r, 400, "BAD_REQUEST");
    // The server is still fine, and serves the generated OpenAPI document.
    assert_eq!(api.get("/healthz").unwrap().status, 200);
    let doc = api.with_key(None).get("/openapi.json").unwrap();
    assert_eq!(doc.status, 200);
    let expected: serde_json::Value =
        serde_json::from_str(&biopay_server::api::openapi_document()).unwrap();
    assert_eq!(doc.body, expected);
    let m = api.get("/metrics").unwrap();
    let text = m.body.as_str().unwrap();
    assert!(
        text.contains(
            "biopay_decisions_total{kind=\"payment\",outcome=\"rejected\",step=\"P1\"} 1"
        ),
        "{text}"
    );
    s.stop();
}

/// The challenges stored so far, read from the database itself (the
/// store's commit counters also move with the server's background
/// checkpoints and purges, so they cannot tell that a request wrote nothing).
fn stored_challenges(s: &ServerProcess) -> i64 {
    let sql = "SELECT COUNT(*) FROM challenges";
    match &s.backend {
        Backend::Sqlite => rusqlite::Connection::open(s.data_dir.join("biopay.db"))
            .unwrap()
            .query_row(sql, [], |r| r.get(0))
            .unwrap(),
        Backend::Postgres(url) => Postgres::client(url).query_one(sql, &[]).unwrap().get(0),
    }
}

fn batch_endpoints(b: &TestBackend) {
    let s = b.server(&[]);
    let api = s.api();
    let mut p1 = enroll(&api, b"batch-1");
    let mut p2 = enroll(&api, b"batch-2");
    let p3 = enroll(&api, b"batch-3");

    // Challenges: each item is issued or refused on its own, in order.
    let r = api
        .payment_challenge_batch(&[
            (&p1.id, "b-1", 100),
            (&[1; 16], "b-x", 100),
            (&p2.id, "b-2", 200),
            (&[1; 8], "b-y", 100),
            (&p3.id, "b-3", 300),
        ])
        .unwrap();
    let items = batch_items(&r, 5).unwrap();
    let statuses: Vec<u64> = items
        .iter()
        .map(|i| i["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [200, 409, 200, 400, 200], "{}", r.body);
    assert_eq!(items[1]["error"]["code"], "CREDENTIAL_NOT_USABLE");
    assert!(items[1].get("challenge").is_none(), "{}", r.body);
    assert_eq!(items[3]["error"]["code"], "BAD_REQUEST");
    let challenge = |i: usize| unb64(items[i]["challenge"]["challenge"].as_str().unwrap()).unwrap();
    let c1 = PaymentChallenge::from_cbor(&challenge(0)).unwrap();
    assert_eq!(c1.transaction.order_id, "b-1");
    assert_eq!(c1.transaction.amount_minor, 100);
    assert!(items[2]["challenge"]["display_text"]
        .as_str()
        .unwrap()
        .contains("2.00"));
    let a1 = p1.device.authorize(&challenge(0)).unwrap();
    let a2 = p2.device.authorize(&challenge(2)).unwrap();

    // Verification: each item decided, committed and audited on its own. The
    // same assertion twice in one batch is accepted once.
    let audited = api.get("/healthz").unwrap().body["audit_entries"]
        .as_u64()
        .unwrap();
    let timed = metric(&api, "biopay_verify_seconds_count");
    let r = api
        .verify_payment_batch(&[a1.clone(), vec![0x42; 40], a2.clone(), a1.clone()])
        .unwrap();
    let items = batch_items(&r, 4).unwrap();
    // The latency histogram counts statements, not requests.
    assert_eq!(metric(&api, "biopay_verify_seconds_count"), timed + 4);
    assert_eq!(items[1]["status"], 422, "{}", r.body);
    assert_eq!(items[1]["error"]["code"], "P1");
    assert_eq!(items[1]["error"]["step"], "statement");
    assert_eq!(items[2]["status"], 200, "{}", r.body);
    assert_eq!(items[2]["payment"]["transaction"]["order_id"], "b-2");
    assert_eq!(items[2]["payment"]["counter"], 1);
    // Items of one credential run in order: the first copy is accepted, the
    // second reads its challenge consumed (P9), as it would sent after it.
    assert_eq!(items[0]["status"], 200, "{}", r.body);
    assert_eq!(items[0]["payment"]["transaction"]["order_id"], "b-1");
    assert_eq!(items[3]["status"], 409, "{}", r.body);
    assert_eq!(items[3]["error"]["code"], "P9", "{}", r.body);
    // Two acceptances, the garbage and the replay: four audit entries.
    let now = api.get("/healthz").unwrap().body["audit_entries"]
        .as_u64()
        .unwrap();
    assert_eq!(now, audited + 4);
    // Replays through the single endpoint and through a batch.
    assert_error(&api.verify_payment(&a2).unwrap(), 409, "P9");
    let r = api.verify_payment_batch(&[a1]).unwrap();
    assert_eq!(batch_items(&r, 1).unwrap()[0]["error"]["code"], "P9");

    // Whole-batch errors issue nothing.
    let before = stored_challenges(&s);
    let many: Vec<(&[u8], &str, u64)> = (0..65).map(|_| (p3.id.as_slice(), "b-z", 1)).collect();
    assert_error(
        &api.payment_challenge_batch(&many).unwrap(),
        400,
        "BAD_REQUEST",
    );
    assert_error(
        &api.payment_challenge_batch(&[]).unwrap(),
        400,
        "BAD_REQUEST",
    );
    assert_error(&api.verify_payment_batch(&[]).unwrap(), 400, "BAD_REQUEST");
    let r = api
        .post(
            "/v1/payments/verify/batch",
            json!({"items": [{"assertion": "AAAA"}], "x": 1}),
        )
        .unwrap();
    assert_error(&r, 400, "BAD_REQUEST");
    let r = api
        .with_key(None)
        .payment_challenge_batch(&[(&p3.id, "b-4", 1)])
        .unwrap();
    assert_error(&r, 401, "UNAUTHORIZED");
    let r = api
        .with_key(Some(ADMIN_KEY))
        .payment_challenge_batch(&[(&p3.id, "b-4", 1)])
        .unwrap();
    assert_error(&r, 403, "FORBIDDEN");
    assert_eq!(stored_challenges(&s), before);
    s.stop();
}

fn failures_lock_the_credential_and_account(b: &TestBackend) {
    let s = b.server(&["--lock-after-failures", "3"]);
    let api = s.api();
    let mut p = enroll(&api, b"account-9");
    let mut q = enroll(&api, b"account-9");
    // Statements that do not verify (P5) count against nobody: anyone can
    // send garbage naming a victim's credential id.
    for i in 0..5 {
        let a = assertion(&api, &mut p, &format!("garbage-{i}"), 100);
        let mut broken = a.clone();
        let n = broken.len();
        broken[n - 1] ^= 1; // the signature's last byte
        assert_error(&api.verify_payment(&broken).unwrap(), 422, "P5");
    }
    // Correctly signed statements that fail a later step do count.
    for i in 0..3 {
        let a = assertion(&api, &mut p, &format!("bad-{i}"), 100);
        let unconfirmed = p
            .device
            .danger_resign(&a, |x| x.user_confirmed = false)
            .unwrap();
        assert_error(&api.verify_payment(&unconfirmed).unwrap(), 422, "P14");
    }
    // Locked: even a genuine assertion is refused without verification,
    // for this credential and for the other credential of the same account.
    let good = assertion(&api, &mut p, "good", 100);
    assert_error(&api.verify_payment(&good).unwrap(), 429, "RATE_LIMITED");
    let other = assertion(&api, &mut q, "other", 100);
    assert_error(&api.verify_payment(&other).unwrap(), 429, "RATE_LIMITED");
    // Another account is unaffected.
    let mut r = enroll(&api, b"account-10");
    let a = assertion(&api, &mut r, "fine", 100);
    assert_eq!(api.verify_payment(&a).unwrap().status, 200);
    s.stop();
}

fn durable_across_restart_and_audited(b: &TestBackend) {
    let s = b.server(&[]);
    let api = s.api();
    let mut p = enroll(&api, b"account-11");
    let mut accepted = Vec::new();
    for i in 0..3 {
        let a = assertion(&api, &mut p, &format!("o-{i}"), 1000);
        let r = api.verify_payment(&a).unwrap();
        assert_eq!(r.status, 200);
        accepted.push((a, r.body["statement_hash"].as_str().unwrap().to_owned()));
    }
    let rejected = api.verify_payment(&accepted[0].0).unwrap();
    assert_error(&rejected, 409, "P9");
    let (data, backend, extra, _) = s.restart_args();
    s.stop(); // graceful: signs a final checkpoint
    let (ok, out) = audit_verify(&data, &backend);
    assert!(ok, "{out}");
    // 1 registration + 3 payments + 1 rejection.
    assert!(out.contains("audit log intact: 5 entries"), "{out}");

    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let s = ServerProcess::start(&data, &backend, &extra);
    let api = api.at(&s.url());
    // The counter and the consumed challenges survived.
    let list = api
        .get(&format!("/v1/credentials?account={}", b64(b"account-11")))
        .unwrap();
    assert_eq!(list.body[0]["counter"], 3);
    for (a, _) in &accepted {
        assert_error(&api.verify_payment(a).unwrap(), 409, "P9");
    }
    let a = assertion(&api, &mut p, "after-restart", 1000);
    let r = api.verify_payment(&a).unwrap();
    assert_eq!(r.body["counter"], 4);
    s.stop();
    let (ok, out) = audit_verify(&data, &backend);
    assert!(ok, "{out}");
    assert!(out.contains("audit log intact: 9 entries"), "{out}");
}

suite!(
    pay_replay_and_tamper,
    inline_verify_pays_and_refuses_replay_and_tamper,
    lifecycle_and_admin,
    bad_requests_are_clear_errors,
    batch_endpoints,
    failures_lock_the_credential_and_account,
    durable_across_restart_and_audited,
);
