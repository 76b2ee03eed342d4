//! A small blocking HTTP client for the API, used by the tests, the load
//! generator and the `demo-device` helper.

use biopay_core::{cose, messages::Message, Challenge, PaymentAssertion, PaymentChallenge};
use serde_json::{json, Value};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

pub use crate::b64::{b64, unb64};

/// A response: HTTP status and JSON body (`Value::Null` when the body is not JSON).
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// The body.
    pub body: Value,
}

impl Reply {
    /// The error code (`body.error.code`), if any.
    pub fn code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }
}

/// A client bound to one server and one API key. Like a relying party's
/// back end, it remembers the transaction of each payment challenge it
/// obtained and sends it with the assertion that answers it (a server with
/// self-authenticating challenges needs it, PROTOCOL.md §6.1.3); clones and
/// [`Self::with_key`] share that memory.
#[derive(Clone)]
pub struct ApiClient {
    agent: ureq::Agent,
    base: String,
    key: Option<String>,
    orders: Arc<Mutex<HashMap<Challenge, Value>>>,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl ApiClient {
    /// A client for `base` (e.g. `http://127.0.0.1:8080`) sending `key` as a bearer token.
    pub fn new(base: &str, key: Option<&str>) -> Self {
        Self {
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(30))
                .max_idle_connections_per_host(64)
                .build(),
            base: base.trim_end_matches('/').to_owned(),
            key: key.map(str::to_owned),
            orders: Arc::default(),
        }
    }

    /// The same server with another key.
    pub fn with_key(&self, key: Option<&str>) -> Self {
        Self {
            agent: self.agent.clone(),
            base: self.base.clone(),
            key: key.map(str::to_owned),
            orders: self.orders.clone(),
        }
    }

    /// The same key and remembered transactions at another server (another
    /// process of the same deployment).
    pub fn at(&self, base: &str) -> Self {
        Self {
            agent: self.agent.clone(),
            base: base.trim_end_matches('/').to_owned(),
            key: self.key.clone(),
            orders: self.orders.clone(),
        }
    }

    /// Remembers the transaction of an issued payment challenge (the
    /// answer's base64url `challenge`), if it decodes.
    fn remember(&self, challenge: &Value) {
        let Some(c) = challenge
            .as_str()
            .and_then(|c| unb64(c).ok())
            .and_then(|b| PaymentChallenge::from_cbor(&b).ok())
        else {
            return;
        };
        if let Ok(t) = serde_json::to_value(&c.transaction) {
            self.orders
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(c.challenge, t);
        }
    }

    /// The remembered transaction of the challenge `assertion` answers.
    fn order_of(&self, assertion: &[u8]) -> Option<Value> {
        let sign1 = cose::parse_sign1_any_form(assertion, false).ok()?;
        let a = PaymentAssertion::from_cbor(&sign1.payload).ok()?;
        self.orders
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&a.challenge)
            .cloned()
    }

    /// The body of a verification request for `assertion`: with the
    /// remembered transaction, when there is one.
    pub fn verify_body(&self, assertion: &[u8]) -> Value {
        match self.order_of(assertion) {
            Some(t) => json!({"assertion": b64(assertion), "transaction": t}),
            None => json!({"assertion": b64(assertion)}),
        }
    }

    /// Sends a request; transport failures are `Err`, any HTTP status is `Ok`.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Reply, String> {
        let mut req = self
            .agent
            .request(method, &format!("{}{}", self.base, path));
        if let Some(k) = &self.key {
            req = req.set("Authorization", &format!("Bearer {k}"));
        }
        let res = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        let resp = match res {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => return Err(e.to_string()),
        };
        let status = resp.status();
        let text = resp.into_string().map_err(|e| e.to_string())?;
        Ok(Reply {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        })
    }

    /// POST with a JSON body.
    pub fn post(&self, path: &str, body: Value) -> Result<Reply, String> {
        self.call("POST", path, Some(&body))
    }

    /// GET.
    pub fn get(&self, path: &str) -> Result<Reply, String> {
        self.call("GET", path, None)
    }

    /// A registration challenge (CBOR bytes) for `account`.
    pub fn registration_challenge(&self, account: &[u8]) -> Result<Vec<u8>, String> {
        let r = self.post(
            "/v1/registrations/challenge",
            json!({"account": b64(account), "modalities": ["fingerprint", "face"]}),
        )?;
        field_bytes(&r, "challenge")
    }

    /// Submits a key attestation.
    pub fn register(&self, attestation: &[u8]) -> Result<Reply, String> {
        self.post(
            "/v1/registrations",
            json!({"attestation": b64(attestation)}),
        )
    }

    /// A payment challenge (CBOR bytes) for `credential` and a transaction.
    pub fn payment_challenge(
        &self,
        credential: &[u8],
        order: &str,
        amount_minor: u64,
    ) -> Result<Reply, String> {
        let r = self.post(
            "/v1/payments/challenge",
            payment_challenge_body(credential, order, amount_minor),
        )?;
        self.remember(&r.body["challenge"]);
        Ok(r)
    }

    /// Submits a payment assertion.
    pub fn verify_payment(&self, assertion: &[u8]) -> Result<Reply, String> {
        self.post("/v1/payments/verify", self.verify_body(assertion))
    }

    /// Payment challenges for `(credential, order, amount_minor)` items in
    /// one request (`/v1/payments/challenge/batch`).
    pub fn payment_challenge_batch(&self, items: &[(&[u8], &str, u64)]) -> Result<Reply, String> {
        let items: Vec<Value> = items
            .iter()
            .map(|(c, o, a)| payment_challenge_body(c, o, *a))
            .collect();
        let r = self.post("/v1/payments/challenge/batch", json!({ "items": items }))?;
        if let Some(items) = r.body["items"].as_array() {
            for item in items {
                self.remember(&item["challenge"]["challenge"]);
            }
        }
        Ok(r)
    }

    /// Submits payment assertions in one request (`/v1/payments/verify/batch`).
    pub fn verify_payment_batch(&self, assertions: &[Vec<u8>]) -> Result<Reply, String> {
        let items: Vec<Value> = assertions.iter().map(|a| self.verify_body(a)).collect();
        self.post("/v1/payments/verify/batch", json!({ "items": items }))
    }
}

fn payment_challenge_body(credential: &[u8], order: &str, amount_minor: u64) -> Value {
    json!({
        "credential_id": b64(credential),
        "transaction": {
            "amount_minor": amount_minor,
            "currency": "CNY",
            "payee_id": "merchant-0042",
            "payee_name": "Coffee Corner",
            "order_id": order,
        }
    })
}

/// The items of a successful batch reply (`body.items`), each checked to be
/// an object with a numeric `status`.
pub fn batch_items(r: &Reply, expected: usize) -> Result<&[Value], String> {
    if r.status != 200 {
        return Err(format!("HTTP {}: {}", r.status, r.body));
    }
    let items = r.body["items"]
        .as_array()
        .ok_or_else(|| format!("no items in {}", r.body))?;
    if items.len() != expected || items.iter().any(|i| i["status"].as_u64().is_none()) {
        return Err(format!(
            "expected {expected} items with a status: {}",
            r.body
        ));
    }
    Ok(items)
}

/// The bytes of a base64url field of a successful reply.
pub fn field_bytes(r: &Reply, field: &str) -> Result<Vec<u8>, String> {
    if r.status != 200 {
        return Err(format!("HTTP {}: {}", r.status, r.body));
    }
    let s = r.body[field]
        .as_str()
        .ok_or_else(|| format!("no {field} in {}", r.body))?;
    unb64(s)
}
