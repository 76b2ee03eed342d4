//! Handlers: payment challenges and payment verification, single and batch.

use crate::api::*;
use crate::{b64::b64, config::modality_name, AppState};
use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, State},
    http::{HeaderMap, StatusCode},
    Json,
};
use biopay_core::{
    messages::Message, render_transaction, store::DecisionKind, CredentialId, Opened,
    PaymentAssertion, Rejection,
};
use std::{sync::Arc, time::Instant};

/// Issues a payment challenge for a transaction. The body is JSON or
/// `application/cbor`; the answer is JSON either way.
#[utoipa::path(post, path = "/v1/payments/challenge", tag = "payments",
    request_body(content(
        (PaymentChallengeRequest = "application/json"),
        (PaymentChallengeCbor = "application/cbor")
    )),
    responses((status = 200, body = ChallengeResponse), (status = 400, body = ErrorBody),
        (status = 415, description = "the body is neither application/json nor application/cbor", body = ErrorBody),
        (status = 409, description = "credential unknown or not active", body = ErrorBody),
        (status = 422, description = "policy unsatisfiable", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn payment_challenge(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ChallengeResponse>, ApiError> {
    let req = parse_challenge(&headers, body)?;
    let (inline, in_place) = (
        state.inline_verify,
        state.shards.backend_name() == "postgres",
    );
    maybe_blocking(inline, in_place, move || {
        issue_payment_challenge(&state, req)
    })
    .await?
    .map(Json)
}

/// One payment challenge (blocking: reads the credential, stores the
/// challenge durably).
pub(crate) fn issue_payment_challenge(
    state: &AppState,
    req: ChallengeItem,
) -> Result<ChallengeResponse, ApiError> {
    let id = CredentialId::new(req.credential_id)
        .map_err(|e| ApiError::bad_request(format!("credential id: {e}")))?;
    let shard = state.shard(state.shards.of_credential(&id))?;
    let c = shard
        .payment_challenge(&id, req.transaction)
        .map_err(issue_error)?;
    Ok(ChallengeResponse {
        challenge: b64(&c.to_cbor()),
        expires_at: c.expires_at,
        display_text: Some(render_transaction(shard.rp_id(), &c.transaction)),
    })
}

/// Verifies a payment assertion (P1–P20); on acceptance the challenge is
/// consumed, the counter advanced and the decision audited in one transaction.
/// The body is JSON (base64url fields) or `application/cbor` (deterministic
/// CBOR, the same keys with byte strings); the answer is JSON either way.
#[utoipa::path(post, path = "/v1/payments/verify", tag = "payments",
    request_body(content(
        (VerifyPaymentRequest = "application/json"),
        (VerifyPaymentCbor = "application/cbor")
    )),
    responses((status = 200, body = PaymentAccepted),
        (status = 409, description = "replayed or concurrently used challenge", body = ErrorBody),
        (status = 408, description = "TIMEOUT: not answered within the server's limit; the payment may still have been decided (resubmit: P9 if it was)", body = ErrorBody),
        (status = 400, description = "malformed JSON or CBOR body", body = ErrorBody),
        (status = 415, description = "the body is neither application/json nor application/cbor", body = ErrorBody),
        (status = 422, description = "rejected at a verification step", body = ErrorBody),
        (status = 429, description = "too many failures for the credential or account", body = ErrorBody),
        (status = 503, description = "store unavailable; nothing was accepted", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn verify_payment(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<PaymentAccepted>, ApiError> {
    let req = parse_verify(&headers, body)?;
    let started = Instant::now();
    let st = state.clone();
    // The synchronous PostgreSQL client blocks on a runtime of its own.
    let in_place = state.shards.backend_name() == "postgres";
    let out = maybe_blocking(state.inline_verify, in_place, move || {
        verify_one_payment(&st, PaymentInput::new(Ok(req)))
    })
    .await?;
    state.metrics.verify_latency(started.elapsed());
    out.map(Json)
}

/// A payment request as far as core has read it: the item's bytes and the
/// statement core opened from them (P1–P3), which names the credential that
/// orders a batch, is rate limited and picks the shard.
pub(crate) struct PaymentInput {
    read: Result<(PaymentItem, Result<Opened<PaymentAssertion>, Rejection>), ApiError>,
}

impl PaymentInput {
    /// Opens `item`'s assertion (decoding only, no state).
    pub(crate) fn new(item: Result<PaymentItem, ApiError>) -> Self {
        Self {
            read: item.map(|i| {
                let opened = biopay_core::verifier::open_payment(&i.assertion);
                (i, opened)
            }),
        }
    }

    /// The credential the assertion names (unverified), as core read it.
    fn credential_id(&self) -> Option<&CredentialId> {
        match &self.read {
            Ok((_, Ok(opened))) => Some(opened.credential_id()),
            _ => None,
        }
    }
}

/// One payment assertion (blocking): rate limits, P1–P20, and on acceptance
/// the commit; on rejection the audit record and failure count.
pub(crate) fn verify_one_payment(
    st: &AppState,
    input: PaymentInput,
) -> Result<PaymentAccepted, ApiError> {
    let named = input.credential_id().cloned();
    let (item, opened) = input.read?;
    // The credential's shard; an assertion naming no readable credential
    // goes to shard 0, which audits its rejection.
    let shard = st.shard(named.as_ref().map_or(0, |id| st.shards.of_credential(id)))?;
    // The rate-limit count and the credential record in one read (P4 uses it).
    let record = match &named {
        Some(id) => st.check_limits(&shard, id)?,
        None => None,
    };
    let verified = opened.and_then(|o| {
        shard.verify_opened_payment_with(
            o,
            item.transaction.as_ref(),
            item.app_attest_assertion.as_deref(),
            record,
        )
    });
    match verified {
        Ok(p) => {
            // The commit cleared the credential's failure count.
            st.metrics.decision(
                "payment",
                "accepted",
                DecisionKind::Payment.commit_step().code(),
            );
            tracing::info!(
                credential = p.credential_id.to_hex(),
                counter = p.counter,
                "payment accepted"
            );
            Ok(PaymentAccepted {
                status: "accepted".into(),
                credential_id: b64(p.credential_id.as_bytes()),
                account: b64(&p.account_handle),
                transaction: TransactionBody::from(&p.transaction),
                modality: modality_name(p.modality).into(),
                counter: p.counter,
                template_id: hex::encode(p.template_id),
                statement_hash: hex::encode(p.statement_hash),
            })
        }
        Err(r) => {
            st.record_rejection(&shard, "payment", named.as_ref(), &item.assertion, &r);
            Err(ApiError::from(&r))
        }
    }
}

/// Runs `one` on every item and answers in item order. Items with the same
/// `key` (a payment's credential id) run one after another, in item order,
/// on one worker thread, so that a batch has the outcomes of its items sent
/// one by one in order (each statement is verified against the state its
/// predecessors left); items without a key, and groups of different keys,
/// run each on their own worker thread, so that their store writes meet in
/// the same group commit.
pub(crate) async fn run_batch<I: Send + 'static, T: Send + 'static>(
    state: &Arc<AppState>,
    items: Vec<I>,
    key: fn(&I) -> Option<Vec<u8>>,
    one: fn(&AppState, I) -> Result<T, ApiError>,
) -> Result<Vec<(StatusCode, Result<T, ErrorDetail>)>, ApiError> {
    if items.is_empty() || items.len() > state.max_batch_items {
        return Err(ApiError::bad_request(format!(
            "a batch has 1 to {} items, not {}",
            state.max_batch_items,
            items.len()
        )));
    }
    let n = items.len();
    // Groups of (position, item), each in item order.
    let mut groups: Vec<Vec<(usize, I)>> = Vec::new();
    let mut by_key: std::collections::HashMap<Vec<u8>, usize> = std::collections::HashMap::new();
    for (i, item) in items.into_iter().enumerate() {
        let group = match key(&item) {
            Some(k) => *by_key.entry(k).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            }),
            None => {
                groups.push(Vec::new());
                groups.len() - 1
            }
        };
        if let Some(g) = groups.get_mut(group) {
            g.push((i, item));
        }
    }
    let tasks: Vec<_> = groups
        .into_iter()
        .map(|group| {
            let positions: Vec<usize> = group.iter().map(|(i, _)| *i).collect();
            let st = state.clone();
            let task = tokio::task::spawn_blocking(move || {
                group
                    .into_iter()
                    .map(|(i, item)| (i, one(&st, item)))
                    .collect::<Vec<_>>()
            });
            (positions, task)
        })
        .collect();
    let mut out: Vec<Option<(StatusCode, Result<T, ErrorDetail>)>> = (0..n).map(|_| None).collect();
    for (positions, task) in tasks {
        let outcomes = task.await.unwrap_or_else(|_| {
            positions
                .into_iter()
                .map(|i| (i, Err(ApiError::unavailable("worker failed"))))
                .collect()
        });
        for (i, outcome) in outcomes {
            if let Some(slot) = out.get_mut(i) {
                *slot = Some(match outcome {
                    Ok(v) => (StatusCode::OK, Ok(v)),
                    Err(e) => {
                        let (status, detail) = e.into_parts();
                        (status, Err(detail))
                    }
                });
            }
        }
    }
    Ok(out
        .into_iter()
        .map(|o| {
            o.unwrap_or_else(|| {
                let (status, detail) = ApiError::unavailable("worker failed").into_parts();
                (status, Err(detail))
            })
        })
        .collect())
}

/// The credential id a payment assertion names (unverified, as core read
/// it): the key that keeps one credential's batch items in order.
pub(crate) fn payment_batch_key(input: &PaymentInput) -> Option<Vec<u8>> {
    input.credential_id().map(|id| id.as_bytes().to_vec())
}

/// Issues several payment challenges in one request (for a payment gateway
/// that gathers its traffic); each item is issued, or refused, exactly as
/// `/v1/payments/challenge` would.
/// The body is JSON or `application/cbor` as for `/v1/payments/challenge`.
#[utoipa::path(post, path = "/v1/payments/challenge/batch", tag = "payments",
    request_body(content(
        (PaymentChallengeBatchRequest = "application/json"),
        (PaymentChallengeBatchCbor = "application/cbor")
    )),
    responses((status = 200, description = "one outcome per item, in order", body = ChallengeBatchResponse),
        (status = 400, description = "malformed (JSON or CBOR), empty or more than max_batch_items", body = ErrorBody),
        (status = 413, description = "body larger than max_body_bytes", body = ErrorBody),
        (status = 415, description = "the body is neither application/json nor application/cbor", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn payment_challenge_batch(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ChallengeBatchResponse>, ApiError> {
    let items = parse_challenge_batch(&headers, body)?;
    let items = run_batch(
        &state,
        items,
        |_| None,
        |st, item| issue_payment_challenge(st, item?),
    )
    .await?
    .into_iter()
    .map(|(status, r)| {
        let (challenge, error) = split(r);
        ChallengeBatchItem {
            status: status.as_u16(),
            challenge,
            error,
        }
    })
    .collect();
    Ok(Json(ChallengeBatchResponse { items }))
}

/// Verifies several payment assertions in one request. Each item is
/// verified, rate limited, committed and audited on its own, exactly as
/// `/v1/payments/verify` would; the outcomes are those of the items sent one
/// by one in order: items of one credential are verified in item order,
/// items of different credentials in parallel, their commits sharing the
/// store's group commit.
/// The body is JSON or `application/cbor` as for `/v1/payments/verify`.
#[utoipa::path(post, path = "/v1/payments/verify/batch", tag = "payments",
    request_body(content(
        (VerifyPaymentBatchRequest = "application/json"),
        (VerifyPaymentBatchCbor = "application/cbor")
    )),
    responses((status = 200, description = "one outcome per item, in order", body = VerifyBatchResponse),
        (status = 400, description = "malformed (JSON or CBOR), empty or more than max_batch_items", body = ErrorBody),
        (status = 408, description = "TIMEOUT: the batch was not answered within the server's limit; items may still have been decided (resubmit each: P9 if it was)", body = ErrorBody),
        (status = 413, description = "body larger than max_body_bytes", body = ErrorBody),
        (status = 415, description = "the body is neither application/json nor application/cbor", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn verify_payment_batch(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<VerifyBatchResponse>, ApiError> {
    let items = parse_verify_batch(&headers, body)?;
    let started = Instant::now();
    // Core opens each assertion once (P1–P3): the credential it names
    // orders the batch, and the opened statement is what is decided.
    let inputs = items.into_iter().map(PaymentInput::new).collect();
    let outcomes = run_batch(&state, inputs, payment_batch_key, verify_one_payment).await?;
    // Each statement waited for the whole batch: one observation per item.
    let elapsed = started.elapsed();
    for _ in &outcomes {
        state.metrics.verify_latency(elapsed);
    }
    let items = outcomes
        .into_iter()
        .map(|(status, r)| {
            let (payment, error) = split(r);
            VerifyBatchItem {
                status: status.as_u16(),
                payment,
                error,
            }
        })
        .collect();
    Ok(Json(VerifyBatchResponse { items }))
}

pub(crate) fn split<T, E>(r: Result<T, E>) -> (Option<T>, Option<E>) {
    match r {
        Ok(v) => (Some(v), None),
        Err(e) => (None, Some(e)),
    }
}
