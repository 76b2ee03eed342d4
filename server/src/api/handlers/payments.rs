//! Handlers: payment challenges and payment verification, single and batch.

use crate::api::*;
use crate::{b64::b64, config::modality_name, AppState};
use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, State},
    http::StatusCode,
    Json,
};
use biopay_core::{
    messages::Message, render_transaction, store::DecisionKind, PaymentAssertion, Transaction,
};
use std::{sync::Arc, time::Instant};

/// Issues a payment challenge for a transaction.
#[utoipa::path(post, path = "/v1/payments/challenge", tag = "payments",
    request_body = PaymentChallengeRequest,
    responses((status = 200, body = ChallengeResponse), (status = 400, body = ErrorBody),
        (status = 409, description = "credential unknown or not active", body = ErrorBody),
        (status = 422, description = "policy unsatisfiable", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn payment_challenge(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ChallengeResponse>, ApiError> {
    let req: PaymentChallengeRequest = parse_json(body)?;
    blocking(move || issue_payment_challenge(&state, req))
        .await?
        .map(Json)
}

/// One payment challenge (blocking: reads the credential, stores the
/// challenge durably).
pub(crate) fn issue_payment_challenge(
    state: &AppState,
    req: PaymentChallengeRequest,
) -> Result<ChallengeResponse, ApiError> {
    let id = credential_id(&req.credential_id)?;
    let tx: Transaction = req.transaction.into();
    let c = state
        .verifier
        .payment_challenge(&id, tx)
        .map_err(issue_error)?;
    Ok(ChallengeResponse {
        challenge: b64(&c.to_cbor()),
        expires_at: c.expires_at,
        display_text: Some(render_transaction(state.verifier.rp_id(), &c.transaction)),
    })
}

/// Verifies a payment assertion (P1–P20); on acceptance the challenge is
/// consumed, the counter advanced and the decision audited in one transaction.
#[utoipa::path(post, path = "/v1/payments/verify", tag = "payments",
    request_body = VerifyPaymentRequest,
    responses((status = 200, body = PaymentAccepted),
        (status = 409, description = "replayed or concurrently used challenge", body = ErrorBody),
        (status = 408, description = "TIMEOUT: not answered within the server's limit; the payment may still have been decided (resubmit: P9 if it was)", body = ErrorBody),
        (status = 422, description = "rejected at a verification step", body = ErrorBody),
        (status = 429, description = "too many failures for the credential or account", body = ErrorBody),
        (status = 503, description = "store unavailable; nothing was accepted", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn verify_payment(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<PaymentAccepted>, ApiError> {
    let req: VerifyPaymentRequest = parse_json(body)?;
    let started = Instant::now();
    let st = state.clone();
    let out = blocking(move || verify_one_payment(&st, &req)).await?;
    state.metrics.verify_latency(started.elapsed());
    out.map(Json)
}

/// One payment assertion (blocking): rate limits, P1–P20, and on acceptance
/// the commit; on rejection the audit record and failure count.
pub(crate) fn verify_one_payment(
    st: &AppState,
    req: &VerifyPaymentRequest,
) -> Result<PaymentAccepted, ApiError> {
    let statement = bytes_field("assertion", &req.assertion)?;
    let peeked = peek(&statement, false, |a: &PaymentAssertion| &a.credential_id);
    // The rate-limit count and the credential record in one read (P4 uses it).
    let record = match &peeked {
        Some(id) => st.check_limits(id)?,
        None => None,
    };
    let app_attest = req
        .app_attest_assertion
        .as_deref()
        .map(|a| bytes_field("app_attest_assertion", a))
        .transpose()?;
    let transaction = req.transaction.clone().map(Transaction::from);
    let verified = match record {
        Some(r) => st.verifier.verify_payment_with_record(
            &statement,
            transaction.as_ref(),
            app_attest.as_deref(),
            r,
        ),
        None => match &transaction {
            Some(t) => st
                .verifier
                .verify_payment_for(&statement, t, app_attest.as_deref()),
            None => st
                .verifier
                .verify_payment_with_app_attest(&statement, app_attest.as_deref()),
        },
    };
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
            st.record_rejection("payment", peeked.as_ref(), &statement, &r);
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

/// The credential id a payment assertion names, unverified: the key that
/// keeps one credential's batch items in order.
pub(crate) fn payment_batch_key(req: &VerifyPaymentRequest) -> Option<Vec<u8>> {
    let statement = bytes_field("assertion", &req.assertion).ok()?;
    peek(&statement, false, |a: &PaymentAssertion| &a.credential_id)
        .map(|id| id.as_bytes().to_vec())
}

/// Issues several payment challenges in one request (for a payment gateway
/// that gathers its traffic); each item is issued, or refused, exactly as
/// `/v1/payments/challenge` would.
#[utoipa::path(post, path = "/v1/payments/challenge/batch", tag = "payments",
    request_body = PaymentChallengeBatchRequest,
    responses((status = 200, description = "one outcome per item, in order", body = ChallengeBatchResponse),
        (status = 400, description = "malformed, empty or more than max_batch_items", body = ErrorBody),
        (status = 413, description = "body larger than max_body_bytes", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn payment_challenge_batch(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ChallengeBatchResponse>, ApiError> {
    let req: PaymentChallengeBatchRequest = parse_json(body)?;
    let items = run_batch(&state, req.items, |_| None, issue_payment_challenge)
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
#[utoipa::path(post, path = "/v1/payments/verify/batch", tag = "payments",
    request_body = VerifyPaymentBatchRequest,
    responses((status = 200, description = "one outcome per item, in order", body = VerifyBatchResponse),
        (status = 400, description = "malformed, empty or more than max_batch_items", body = ErrorBody),
        (status = 408, description = "TIMEOUT: the batch was not answered within the server's limit; items may still have been decided (resubmit each: P9 if it was)", body = ErrorBody),
        (status = 413, description = "body larger than max_body_bytes", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn verify_payment_batch(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<VerifyBatchResponse>, ApiError> {
    let req: VerifyPaymentBatchRequest = parse_json(body)?;
    let started = Instant::now();
    let outcomes = run_batch(&state, req.items, payment_batch_key, |st, item| {
        verify_one_payment(st, &item)
    })
    .await?;
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
