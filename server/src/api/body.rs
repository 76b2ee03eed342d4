//! The two body types of the payment endpoints: JSON (the default, binary
//! fields base64url) and `application/cbor` (the statement bytes as they
//! are), both parsed into one [`PaymentItem`] (verification) or
//! [`ChallengeItem`] (challenges) of raw bytes.
//!
//! The CBOR body is one deterministic CBOR item (RFC 8949 §4.2.1, read by
//! biopay-core's strict decoder: shortest forms, definite lengths, map keys
//! in order, no duplicates, nothing after the item), a map with the JSON
//! body's text keys and byte strings for the binary fields:
//!
//! ```cddl
//! VerifyPaymentRequest = { "assertion": bstr, ? "app_attest_assertion": bstr,
//!                         ? "transaction": Transaction }
//! VerifyPaymentBatchRequest = { "items": [+ VerifyPaymentRequest] }
//! PaymentChallengeRequest = { "credential_id": bstr, "transaction": Transaction }
//! Transaction = { "amount_minor": uint, "currency": tstr, "payee_id": tstr,
//!                 "payee_name": tstr, "order_id": tstr, ? "memo": tstr }
//! PaymentChallengeBatchRequest = { "items": [+ PaymentChallengeRequest] }
//! ```
//!
//! Any other key, type or encoding is 400 `BAD_REQUEST`. Responses are JSON
//! whatever the request's type.

use super::*;
use axum::{
    body::Bytes,
    extract::rejection::BytesRejection,
    http::{header, HeaderMap},
};
use biopay_core::{
    cbor::{self, Item},
    Transaction,
};

/// The media type of the binary body.
pub const CBOR_MEDIA_TYPE: &str = "application/cbor";

/// A request body's declared type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyType {
    /// `application/json` (parameters allowed).
    Json,
    /// `application/cbor` (parameters allowed).
    Cbor,
}

/// The body type `Content-Type` declares (media type case-insensitive,
/// parameters ignored); `None` for any other or none.
pub(crate) fn body_type(headers: &HeaderMap) -> Option<BodyType> {
    let media = headers
        .get(header::CONTENT_TYPE)?
        .to_str()
        .ok()?
        .split(';')
        .next()?
        .trim();
    if media.eq_ignore_ascii_case("application/json") {
        Some(BodyType::Json)
    } else if media.eq_ignore_ascii_case(CBOR_MEDIA_TYPE) {
        Some(BodyType::Cbor)
    } else {
        None
    }
}

/// One payment to verify, as either body carries it.
#[derive(Debug)]
pub(crate) struct PaymentItem {
    /// The PaymentAssertion COSE_Sign1.
    pub assertion: Vec<u8>,
    /// The Apple App Attest assertion object, if sent.
    pub app_attest_assertion: Option<Vec<u8>>,
    /// The transaction the challenge was requested for, if sent (required
    /// with self-authenticating payment challenges, PROTOCOL.md §6.1.3).
    pub transaction: Option<Transaction>,
}

impl TryFrom<VerifyPaymentRequest> for PaymentItem {
    type Error = ApiError;

    fn try_from(req: VerifyPaymentRequest) -> Result<Self, ApiError> {
        Ok(Self {
            assertion: bytes_field("assertion", &req.assertion)?,
            app_attest_assertion: req
                .app_attest_assertion
                .as_deref()
                .map(|a| bytes_field("app_attest_assertion", a))
                .transpose()?,
            transaction: req.transaction.map(Transaction::from),
        })
    }
}

/// The body of `/v1/payments/verify`, JSON or CBOR.
pub(crate) fn parse_verify(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<PaymentItem, ApiError> {
    parse_one::<VerifyPaymentRequest, _>(headers, body, cbor_item)
}

/// The body of `/v1/payments/verify/batch`, JSON or CBOR. A JSON item whose
/// base64url does not decode is that item's 400, as before; the rest of a
/// malformed body is the request's 400.
pub(crate) fn parse_verify_batch(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Vec<Result<PaymentItem, ApiError>>, ApiError> {
    parse_batch(headers, body, cbor_item, |b: VerifyPaymentBatchRequest| {
        b.items
    })
}

/// One item's body: the CBOR map read by `cbor`, or the JSON body `J`.
fn parse_one<J, T>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    cbor: fn(&Item<'_>, &str) -> Result<T, ApiError>,
) -> Result<T, ApiError>
where
    J: serde::de::DeserializeOwned + TryInto<T, Error = ApiError>,
{
    match body_type(headers) {
        Some(BodyType::Cbor) => {
            let bytes = body_bytes(body)?;
            cbor(&decode(&bytes)?, "the body")
        }
        _ => parse_json::<J>(body)?.try_into(),
    }
}

/// A batch body `{"items": [...]}`: each CBOR item read by `cbor`, or the
/// JSON batch `B` whose `items` convert one by one (a JSON item that does
/// not convert is that item's error).
fn parse_batch<B, J, T>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    cbor: fn(&Item<'_>, &str) -> Result<T, ApiError>,
    items: fn(B) -> Vec<J>,
) -> Result<Vec<Result<T, ApiError>>, ApiError>
where
    B: serde::de::DeserializeOwned,
    J: TryInto<T, Error = ApiError>,
{
    match body_type(headers) {
        Some(BodyType::Cbor) => {
            let bytes = body_bytes(body)?;
            let root = decode(&bytes)?;
            cbor_items(&root)?
                .iter()
                .enumerate()
                .map(|(i, item)| cbor(item, &format!("items[{i}]")).map(Ok))
                .collect()
        }
        _ => Ok(items(parse_json::<B>(body)?)
            .into_iter()
            .map(J::try_into)
            .collect()),
    }
}

fn decode(bytes: &[u8]) -> Result<Item<'_>, ApiError> {
    cbor::decode(bytes).map_err(|e| ApiError::bad_request(format!("invalid CBOR body: {e}")))
}

/// One `VerifyPaymentRequest` map.
fn cbor_item(item: &Item<'_>, what: &str) -> Result<PaymentItem, ApiError> {
    let fields = map_fields(
        item,
        what,
        &["assertion", "app_attest_assertion", "transaction"],
    )?;
    let bytes = |i: usize, name: &str| -> Result<Option<Vec<u8>>, ApiError> {
        match fields.get(i).copied().flatten() {
            None => Ok(None),
            Some(Item::Bytes(b)) => Ok(Some(b.to_vec())),
            Some(_) => Err(ApiError::bad_request(format!(
                "invalid CBOR body: {what}: `{name}` must be a byte string"
            ))),
        }
    };
    Ok(PaymentItem {
        assertion: bytes(0, "assertion")?.ok_or_else(|| {
            ApiError::bad_request(format!("invalid CBOR body: {what}: missing `assertion`"))
        })?,
        app_attest_assertion: bytes(1, "app_attest_assertion")?,
        transaction: fields
            .get(2)
            .copied()
            .flatten()
            .map(|tx| cbor_transaction(tx, what))
            .transpose()?,
    })
}

/// The values of a map with text keys among `known`, in the order of
/// `known` (`None` when absent); any other key or a non-map is refused.
fn map_fields<'i, 'a>(
    item: &'i Item<'a>,
    what: &str,
    known: &[&str],
) -> Result<Vec<Option<&'i Item<'a>>>, ApiError> {
    let Item::Map(entries) = item else {
        return Err(ApiError::bad_request(format!(
            "invalid CBOR body: {what} must be a map"
        )));
    };
    let mut out = vec![None; known.len()];
    for (k, v) in entries {
        let slot = match k {
            Item::Text(t) => known.iter().position(|n| n == t),
            _ => None,
        };
        match slot.and_then(|i| out.get_mut(i)) {
            Some(s) => *s = Some(v),
            None => {
                return Err(ApiError::bad_request(match k {
                    Item::Text(t) => format!(
                        "invalid CBOR body: {what}: unknown key `{}`",
                        t.chars().take(40).collect::<String>()
                    ),
                    _ => format!("invalid CBOR body: {what}: a key is not a text string"),
                }))
            }
        }
    }
    Ok(out)
}

/// One payment challenge to issue, as either body carries it.
#[derive(Debug)]
pub(crate) struct ChallengeItem {
    /// The credential id's bytes (checked at issuance).
    pub credential_id: Vec<u8>,
    /// The transaction.
    pub transaction: Transaction,
}

impl TryFrom<PaymentChallengeRequest> for ChallengeItem {
    type Error = ApiError;

    fn try_from(req: PaymentChallengeRequest) -> Result<Self, ApiError> {
        Ok(Self {
            credential_id: bytes_field("credential id", &req.credential_id)?,
            transaction: req.transaction.into(),
        })
    }
}

/// The body of `/v1/payments/challenge`, JSON or CBOR.
pub(crate) fn parse_challenge(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<ChallengeItem, ApiError> {
    parse_one::<PaymentChallengeRequest, _>(headers, body, cbor_challenge)
}

/// The body of `/v1/payments/challenge/batch`, JSON or CBOR; as
/// [`parse_verify_batch`].
pub(crate) fn parse_challenge_batch(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Vec<Result<ChallengeItem, ApiError>>, ApiError> {
    parse_batch(
        headers,
        body,
        cbor_challenge,
        |b: PaymentChallengeBatchRequest| b.items,
    )
}

/// The `items` array of a batch body `{"items": [...]}`.
fn cbor_items<'i, 'a>(root: &'i Item<'a>) -> Result<&'i [Item<'a>], ApiError> {
    let fields = map_fields(root, "the body", &["items"])?;
    match fields.first().copied().flatten() {
        Some(Item::Array(items)) => Ok(items),
        _ => Err(ApiError::bad_request(
            "invalid CBOR body: `items` must be an array",
        )),
    }
}

/// One `PaymentChallengeRequest` map:
/// `{"credential_id": bstr, "transaction": {"amount_minor": uint,
/// "currency": tstr, "payee_id": tstr, "payee_name": tstr, "order_id": tstr,
/// ? "memo": tstr}}`.
fn cbor_challenge(item: &Item<'_>, what: &str) -> Result<ChallengeItem, ApiError> {
    let fields = map_fields(item, what, &["credential_id", "transaction"])?;
    let bad = |m: String| ApiError::bad_request(format!("invalid CBOR body: {what}: {m}"));
    let credential_id = match fields.first().copied().flatten() {
        Some(Item::Bytes(b)) => b.to_vec(),
        Some(_) => return Err(bad("`credential_id` must be a byte string".into())),
        None => return Err(bad("missing `credential_id`".into())),
    };
    let Some(tx) = fields.get(1).copied().flatten() else {
        return Err(bad("missing `transaction`".into()));
    };
    Ok(ChallengeItem {
        credential_id,
        transaction: cbor_transaction(tx, what)?,
    })
}

/// The `transaction` map of request `what`: `{"amount_minor": uint,
/// "currency": tstr, "payee_id": tstr, "payee_name": tstr, "order_id": tstr,
/// ? "memo": tstr}`.
fn cbor_transaction(tx: &Item<'_>, what: &str) -> Result<Transaction, ApiError> {
    let bad = |m: String| ApiError::bad_request(format!("invalid CBOR body: {what}: {m}"));
    const TX: [&str; 6] = [
        "amount_minor",
        "currency",
        "payee_id",
        "payee_name",
        "order_id",
        "memo",
    ];
    let tx = map_fields(tx, &format!("{what}.transaction"), &TX)?;
    let text = |i: usize| -> Result<Option<String>, ApiError> {
        match tx.get(i).copied().flatten() {
            None => Ok(None),
            Some(Item::Text(t)) => Ok(Some((*t).to_owned())),
            Some(_) => Err(bad(format!(
                "transaction: `{}` must be a text string",
                TX.get(i).unwrap_or(&"")
            ))),
        }
    };
    let required = |i: usize| -> Result<String, ApiError> {
        text(i)?.ok_or_else(|| {
            bad(format!(
                "transaction: missing `{}`",
                TX.get(i).unwrap_or(&"")
            ))
        })
    };
    let amount_minor = match tx.first().copied().flatten() {
        Some(Item::Uint(n)) => *n,
        Some(_) => {
            return Err(bad(
                "transaction: `amount_minor` must be an unsigned integer".into(),
            ))
        }
        None => return Err(bad("transaction: missing `amount_minor`".into())),
    };
    Ok(Transaction {
        amount_minor,
        currency: required(1)?,
        payee_id: required(2)?,
        payee_name: required(3)?,
        order_id: required(4)?,
        memo: text(5)?,
    })
}
