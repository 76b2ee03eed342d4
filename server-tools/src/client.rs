//! A small blocking HTTP client for the API, used by the tests, the load
//! generator and the `demo-device` helper.

use biopay_core::{
    cose, messages::Message, Challenge, PaymentAssertion, PaymentChallenge, Transaction,
};
use serde_json::{json, Value};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

pub use biopay_server::b64::{b64, unb64};

/// Remembered transactions per generation: a client keeps the last one or
/// two generations' (a long load run obtains millions of challenges, each
/// answered right after it is issued).
const ORDERS_KEPT: usize = 1 << 16;

/// The remembered transactions by challenge: the current generation and the
/// one before it.
#[derive(Debug, Default)]
struct Orders {
    current: HashMap<Challenge, Transaction>,
    previous: HashMap<Challenge, Transaction>,
}

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
    cbor: bool,
    /// The transaction of each payment challenge obtained (an RP back end's
    /// order table), shared by the clones of this client.
    orders: Arc<Mutex<Orders>>,
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
            cbor: false,
            orders: Arc::default(),
        }
    }

    /// The same client, sending the payment endpoints' bodies (challenges
    /// and assertions) as `application/cbor` ([`cbor_verify_body`]) when `on`.
    pub fn with_cbor(mut self, on: bool) -> Self {
        self.cbor = on;
        self
    }

    /// The same server with another key.
    pub fn with_key(&self, key: Option<&str>) -> Self {
        Self {
            agent: self.agent.clone(),
            base: self.base.clone(),
            key: key.map(str::to_owned),
            cbor: self.cbor,
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
            cbor: self.cbor,
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
        let mut orders = self.orders.lock().unwrap_or_else(PoisonError::into_inner);
        if orders.current.len() >= ORDERS_KEPT {
            orders.previous = std::mem::take(&mut orders.current);
        }
        orders.current.insert(c.challenge, c.transaction);
    }

    /// The remembered transaction of the challenge `assertion` answers.
    fn order_of(&self, assertion: &[u8]) -> Option<Transaction> {
        let sign1 = cose::parse_sign1_any_form(assertion, false).ok()?;
        let a = PaymentAssertion::from_cbor(&sign1.payload).ok()?;
        let orders = self.orders.lock().unwrap_or_else(PoisonError::into_inner);
        orders
            .current
            .get(&a.challenge)
            .or_else(|| orders.previous.get(&a.challenge))
            .cloned()
    }

    /// The body of a verification request for `assertion`: with the
    /// remembered transaction, when there is one.
    pub fn verify_body(&self, assertion: &[u8]) -> Value {
        match self.order_of(assertion) {
            Some(t) => json!({"assertion": b64(assertion), "transaction": transaction_json(&t)}),
            None => json!({"assertion": b64(assertion)}),
        }
    }

    /// [`Self::verify_body`] as a deterministic CBOR map, appended to `out`.
    fn write_verify_item(&self, out: &mut Vec<u8>, assertion: &[u8]) {
        write_item(out, assertion, self.order_of(assertion).as_ref());
    }

    /// The `application/cbor` body of `/v1/payments/verify` for
    /// `assertion`: with the remembered transaction, when there is one.
    pub fn cbor_verify_body(&self, assertion: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(assertion.len() + 128);
        self.write_verify_item(&mut out, assertion);
        out
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
        reply(res)
    }

    /// POST with an `application/cbor` body.
    pub fn post_cbor(&self, path: &str, body: &[u8]) -> Result<Reply, String> {
        let mut req = self
            .agent
            .post(&format!("{}{}", self.base, path))
            .set("Content-Type", "application/cbor");
        if let Some(k) = &self.key {
            req = req.set("Authorization", &format!("Bearer {k}"));
        }
        reply(req.send_bytes(body))
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
        let r = if self.cbor {
            let mut body = Vec::new();
            write_challenge(&mut body, credential, order, amount_minor);
            self.post_cbor("/v1/payments/challenge", &body)?
        } else {
            self.post(
                "/v1/payments/challenge",
                payment_challenge_body(credential, order, amount_minor),
            )?
        };
        self.remember(&r.body["challenge"]);
        Ok(r)
    }

    /// Submits a payment assertion (JSON, or CBOR [`Self::with_cbor`]).
    pub fn verify_payment(&self, assertion: &[u8]) -> Result<Reply, String> {
        if self.cbor {
            return self.post_cbor("/v1/payments/verify", &self.cbor_verify_body(assertion));
        }
        self.post("/v1/payments/verify", self.verify_body(assertion))
    }

    /// Payment challenges for `(credential, order, amount_minor)` items in
    /// one request (`/v1/payments/challenge/batch`).
    pub fn payment_challenge_batch(&self, items: &[(&[u8], &str, u64)]) -> Result<Reply, String> {
        let r = if self.cbor {
            use biopay_core::cbor::{write_head, write_text};
            let mut body = Vec::new();
            write_head(&mut body, 5, 1);
            write_text(&mut body, "items");
            write_head(&mut body, 4, u64::try_from(items.len()).unwrap_or(u64::MAX));
            for (c, o, a) in items {
                write_challenge(&mut body, c, o, *a);
            }
            self.post_cbor("/v1/payments/challenge/batch", &body)?
        } else {
            let items: Vec<Value> = items
                .iter()
                .map(|(c, o, a)| payment_challenge_body(c, o, *a))
                .collect();
            self.post("/v1/payments/challenge/batch", json!({ "items": items }))?
        };
        if let Some(items) = r.body["items"].as_array() {
            for item in items {
                self.remember(&item["challenge"]["challenge"]);
            }
        }
        Ok(r)
    }

    /// Submits payment assertions in one request (`/v1/payments/verify/batch`).
    pub fn verify_payment_batch(&self, assertions: &[Vec<u8>]) -> Result<Reply, String> {
        if self.cbor {
            use biopay_core::cbor::{write_head, write_text};
            let mut body =
                Vec::with_capacity(assertions.iter().map(|a| a.len() + 128).sum::<usize>() + 16);
            write_head(&mut body, 5, 1);
            write_text(&mut body, "items");
            write_head(
                &mut body,
                4,
                u64::try_from(assertions.len()).unwrap_or(u64::MAX),
            );
            for a in assertions {
                self.write_verify_item(&mut body, a);
            }
            return self.post_cbor("/v1/payments/verify/batch", &body);
        }
        let items: Vec<Value> = assertions.iter().map(|a| self.verify_body(a)).collect();
        self.post("/v1/payments/verify/batch", json!({ "items": items }))
    }
}

fn reply(res: Result<ureq::Response, ureq::Error>) -> Result<Reply, String> {
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

/// The `application/cbor` body of `/v1/payments/verify`: the deterministic
/// CBOR map `{"assertion": bstr}`.
pub fn cbor_verify_body(assertion: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(assertion.len() + 16);
    write_item(&mut out, assertion, None);
    out
}

/// The `application/cbor` body of `/v1/payments/verify` with `transaction`:
/// the deterministic CBOR map `{"assertion": bstr, "transaction": {...}}`.
pub fn cbor_verify_body_for(assertion: &[u8], transaction: &Transaction) -> Vec<u8> {
    let mut out = Vec::with_capacity(assertion.len() + 128);
    write_item(&mut out, assertion, Some(transaction));
    out
}

/// The `application/cbor` body of `/v1/payments/verify/batch`:
/// `{"items": [{"assertion": bstr}, ...]}`.
pub fn cbor_verify_batch_body(assertions: &[Vec<u8>]) -> Vec<u8> {
    use biopay_core::cbor::{write_head, write_text};
    let mut out = Vec::with_capacity(assertions.iter().map(|a| a.len() + 16).sum::<usize>() + 16);
    write_head(&mut out, 5, 1);
    write_text(&mut out, "items");
    write_head(
        &mut out,
        4,
        u64::try_from(assertions.len()).unwrap_or(u64::MAX),
    );
    for a in assertions {
        write_item(&mut out, a, None);
    }
    out
}

/// `{"assertion": bstr, ? "transaction": {...}}` as deterministic CBOR
/// (keys in the bytewise order of their encodings: shorter first).
fn write_item(out: &mut Vec<u8>, assertion: &[u8], transaction: Option<&Transaction>) {
    use biopay_core::cbor::{write_bytes, write_head, write_text};
    write_head(out, 5, if transaction.is_some() { 2 } else { 1 });
    write_text(out, "assertion");
    write_bytes(out, assertion);
    if let Some(t) = transaction {
        write_text(out, "transaction");
        write_transaction(out, t);
    }
}

/// A transaction map as deterministic CBOR: `memo` (when present),
/// `currency`, `order_id`, `payee_id`, `payee_name`, `amount_minor`.
fn write_transaction(out: &mut Vec<u8>, t: &Transaction) {
    use biopay_core::cbor::{write_head, write_text};
    write_head(out, 5, if t.memo.is_some() { 6 } else { 5 });
    if let Some(m) = &t.memo {
        write_text(out, "memo");
        write_text(out, m);
    }
    for (k, v) in [
        ("currency", &t.currency),
        ("order_id", &t.order_id),
        ("payee_id", &t.payee_id),
        ("payee_name", &t.payee_name),
    ] {
        write_text(out, k);
        write_text(out, v);
    }
    write_text(out, "amount_minor");
    write_head(out, 0, t.amount_minor);
}

/// A transaction as the JSON body's `transaction` object.
fn transaction_json(t: &Transaction) -> Value {
    let mut v = json!({
        "amount_minor": t.amount_minor,
        "currency": t.currency,
        "payee_id": t.payee_id,
        "payee_name": t.payee_name,
        "order_id": t.order_id,
    });
    if let Some(m) = &t.memo {
        v["memo"] = json!(m);
    }
    v
}

/// A challenge request as deterministic CBOR (keys in the bytewise order of
/// their encodings: shorter first).
fn write_challenge(out: &mut Vec<u8>, credential: &[u8], order: &str, amount_minor: u64) {
    use biopay_core::cbor::{write_bytes, write_head, write_text};
    write_head(out, 5, 2);
    write_text(out, "transaction");
    write_head(out, 5, 5);
    for (k, v) in [
        ("currency", "CNY"),
        ("order_id", order),
        ("payee_id", "merchant-0042"),
        ("payee_name", "Coffee Corner"),
    ] {
        write_text(out, k);
        write_text(out, v);
    }
    write_text(out, "amount_minor");
    write_head(out, 0, amount_minor);
    write_text(out, "credential_id");
    write_bytes(out, credential);
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
