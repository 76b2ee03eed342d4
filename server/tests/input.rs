//! Input the API promises to refuse (docs/openapi.json), sent as a client
//! generated from that document, or a careless one, would send it. Each case
//! runs on SQLite and on a real PostgreSQL through a real server process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

#[macro_use]
mod common;

use biopay_server_tools::client::{b64, batch_items, Reply};
use common::*;
use serde_json::{json, Value};

/// A request with exactly these headers and body (no client defaults).
fn raw(url: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut req = ureq::AgentBuilder::new()
        .build()
        .request(method, &format!("{url}{path}"));
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let res = if method == "GET" {
        req.call()
    } else {
        req.send_string(body)
    };
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

fn challenge_body(credential: &[u8], amount: Value) -> Value {
    json!({"credential_id": b64(credential), "transaction": {"amount_minor": amount,
        "currency": "CNY", "payee_id": "m-1", "payee_name": "Coffee Corner", "order_id": "o-1"}})
}

/// `amount_minor` is int64 in the OpenAPI document: 2^63 .. 2^64 − 1 were
/// accepted, shown, signed and approved before, overflowing any generated
/// client. Now refused at issuance; i64::MAX is still a valid amount.
fn amounts_beyond_int64_are_refused(b: &TestBackend) {
    let s = b.server(&[]);
    let api = s.api();
    let p = enroll(&api, b"amounts");
    for amount in [json!(9_223_372_036_854_775_808_u64), json!(u64::MAX)] {
        let r = api
            .post(
                "/v1/payments/challenge",
                challenge_body(&p.id, amount.clone()),
            )
            .unwrap();
        assert_error(&r, 400, "BAD_REQUEST");
        assert!(
            r.body["error"]["reason"]
                .as_str()
                .unwrap()
                .contains("amount_minor"),
            "{}",
            r.body
        );
        let r = api
            .post(
                "/v1/payments/challenge/batch",
                json!({"items": [challenge_body(&p.id, amount)]}),
            )
            .unwrap();
        let item = &batch_items(&r, 1).unwrap()[0];
        assert_eq!(item["status"], 400, "{item}");
    }
    for amount in [json!(0), json!(-1), json!(1.5)] {
        let r = api
            .post("/v1/payments/challenge", challenge_body(&p.id, amount))
            .unwrap();
        assert_error(&r, 400, "BAD_REQUEST");
    }
    let r = api
        .post(
            "/v1/payments/challenge",
            challenge_body(&p.id, json!(i64::MAX)),
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    s.stop();
}

/// Every JSON endpoint answers 415 unless the body is declared JSON; the
/// media type is case-insensitive and may carry parameters. Authentication
/// still comes first (401 without a key, whatever the body).
fn bodies_must_be_declared_json(b: &TestBackend) {
    let s = b.server(&[]);
    let url = s.url();
    let auth = format!("Bearer {RP_KEY}");
    let body = json!({"account": b64(b"ct-1"), "modalities": ["fingerprint"]}).to_string();
    let path = "/v1/registrations/challenge";
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/jsonx"),
        None,
    ] {
        let mut headers = vec![("Authorization", auth.as_str())];
        if let Some(ct) = ct {
            headers.push(("Content-Type", ct));
        }
        let r = raw(&url, "POST", path, &headers, &body);
        assert_error(&r, 415, "UNSUPPORTED_MEDIA_TYPE");
    }
    for ct in [
        "application/json",
        "Application/JSON",
        "application/json; charset=utf-8",
    ] {
        let r = raw(
            &url,
            "POST",
            path,
            &[("Authorization", &auth), ("Content-Type", ct)],
            &body,
        );
        assert_eq!(r.status, 200, "{ct}: {}", r.body);
    }
    // The other JSON endpoints, including batch and admin ones.
    let admin = format!("Bearer {ADMIN_KEY}");
    for (path, key) in [
        ("/v1/registrations", &auth),
        ("/v1/payments/challenge", &auth),
        ("/v1/payments/verify", &auth),
        ("/v1/payments/challenge/batch", &auth),
        ("/v1/payments/verify/batch", &auth),
        ("/v1/credentials/AAAAAAAAAAAAAAAAAAAAAA/deregister", &auth),
        ("/v1/admin/models/demo-model/status", &admin),
    ] {
        let r = raw(
            &url,
            "POST",
            path,
            &[("Authorization", key), ("Content-Type", "text/plain")],
            "{}",
        );
        assert_error(&r, 415, "UNSUPPORTED_MEDIA_TYPE");
    }
    let r = raw(&url, "POST", path, &[("Content-Type", "text/plain")], &body);
    assert_error(&r, 401, "UNAUTHORIZED");
    s.stop();
}

/// The authentication scheme is case-insensitive (RFC 9110 §11.1).
fn bearer_scheme_is_case_insensitive(b: &TestBackend) {
    let s = b.server(&[]);
    let url = s.url();
    let path = format!("/v1/credentials?account={}", b64(b"nobody"));
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        for gap in [" ", "  "] {
            let value = format!("{scheme}{gap}{RP_KEY}");
            let r = raw(&url, "GET", &path, &[("Authorization", &value)], "");
            assert_eq!(r.status, 200, "{value:?}: {}", r.body);
        }
    }
    for value in [
        format!("Basic {RP_KEY}"),
        format!("Bearer{RP_KEY}"),
        "Bearer ".to_owned(),
        RP_KEY.to_owned(),
        format!("Bearer {RP_KEY}x"),
    ] {
        let r = raw(&url, "GET", &path, &[("Authorization", &value)], "");
        assert_error(&r, 401, "UNAUTHORIZED");
    }
    s.stop();
}

/// `GET /v1/credentials` validates its query parameter like the other
/// endpoints validate an account (1 to 64 bytes): an empty or oversized
/// account was answered 200 `[]` before.
fn credential_listing_validates_the_account(b: &TestBackend) {
    let s = b.server(&[]);
    let api = s.api();
    enroll(&api, &[7; 64]);
    for bad in [
        String::new(),
        b64(&[1; 65]),
        b64(&vec![1; 7_500]),
        "***".to_owned(),
    ] {
        let r = api.get(&format!("/v1/credentials?account={bad}")).unwrap();
        assert_error(&r, 400, "BAD_REQUEST");
    }
    assert_error(&api.get("/v1/credentials").unwrap(), 400, "BAD_REQUEST");
    let r = api
        .get(&format!(
            "/v1/credentials?account={}&extra=1",
            b64(&[7; 64])
        ))
        .unwrap();
    assert_error(&r, 400, "BAD_REQUEST");
    let r = api
        .get(&format!("/v1/credentials?account={}", b64(&[7; 64])))
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body.as_array().unwrap().len(), 1, "{}", r.body);
    s.stop();
}

suite!(
    amounts_beyond_int64_are_refused,
    bodies_must_be_declared_json,
    bearer_scheme_is_case_insensitive,
    credential_listing_validates_the_account,
);

/// The OpenAPI document declares the listing's account as a query
/// parameter (it said `path`), and the amount's range.
#[test]
fn openapi_declares_the_account_query_and_the_amount_range() {
    let doc: Value = serde_json::from_str(&biopay_server::api::openapi_document()).unwrap();
    let params = doc["paths"]["/v1/credentials"]["get"]["parameters"]
        .as_array()
        .unwrap();
    assert_eq!(params.len(), 1, "{params:?}");
    assert_eq!(params[0]["name"], "account");
    assert_eq!(params[0]["in"], "query");
    let amount = &doc["components"]["schemas"]["TransactionBody"]["properties"]["amount_minor"];
    assert_eq!(amount["minimum"], 1, "{amount}");
    assert_eq!(amount["maximum"], i64::MAX, "{amount}");
}
