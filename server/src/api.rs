//! The HTTP/JSON API (axum). Binary fields are base64url without padding.
//! Every error is `{"error": {"code", "step", "reason"}}`: for a rejected
//! statement `code` is the verification step of docs/PROTOCOL.md §6 (e.g.
//! `"P12"`) and `step` its name (`"transaction-hash"`); other errors carry an
//! upper-case code (`BAD_REQUEST`, `UNAUTHORIZED`, `RATE_LIMITED`, `TIMEOUT`,
//! ...) and a null step.

use crate::{
    audit::AuditRecord,
    client::{b64, unb64},
    config::{
        modality_name, model_status_name, parse_modality, parse_model_status, parse_security_level,
        Scope,
    },
    store::ServerStore,
    AppState,
};
use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, MatchedPath, Path, Query, Request, State},
    http::{header, HeaderMap, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
    Json,
};
use biopay_core::{
    cbor, cose, crypto,
    messages::{peek_kind, validate_account_handle, Message, MessageKind},
    render_transaction,
    store::{CredentialKind, CredentialRecord, DecisionKind},
    AppleKeyRegistration, CredentialId, CredentialStatus, Deregistration, IssueError,
    KeyAttestation, PaymentAssertion, PlatformKeyRegistration, Reason, Rejection, SecurityLevel,
    Store, Transaction,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::{sync::Arc, time::Instant};
use utoipa::{OpenApi, ToSchema};

// ---------------------------------------------------------------------------
// Errors

/// The error envelope.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// An error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A verification step code (`"P12"`) or an upper-case error code (`"BAD_REQUEST"`).
    pub code: String,
    /// The step's stable name (`"transaction-hash"`), null for non-verification errors.
    pub step: Option<String>,
    /// Human-readable explanation.
    pub reason: String,
}

/// An API error: status and body.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: String,
    step: Option<&'static str>,
    reason: String,
}

impl ApiError {
    /// A non-verification error.
    pub fn new(status: StatusCode, code: &str, reason: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_owned(),
            step: None,
            reason: reason.into(),
        }
    }

    fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", reason)
    }

    fn unavailable(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", reason)
    }
}

impl From<&Rejection> for ApiError {
    fn from(r: &Rejection) -> Self {
        let status = match &r.reason {
            Reason::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            Reason::ChallengeAlreadyUsed
            | Reason::ConcurrentUpdate
            | Reason::CounterSuperseded { .. }
            | Reason::DuplicateCredential => StatusCode::CONFLICT,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        Self {
            status,
            code: r.step.code().to_owned(),
            step: Some(r.step.name()),
            reason: r.reason.to_string(),
        }
    }
}

impl ApiError {
    /// The HTTP status and the error, as a batch item carries them.
    fn into_parts(self) -> (StatusCode, ErrorDetail) {
        (
            self.status,
            ErrorDetail {
                code: self.code,
                step: self.step.map(str::to_owned),
                reason: self.reason,
            },
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, error) = self.into_parts();
        (status, Json(ErrorBody { error })).into_response()
    }
}

fn parse_json<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let bytes = body.map_err(|e| {
        let status = e.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "BODY_TOO_LARGE"
        } else {
            "BAD_REQUEST"
        };
        ApiError::new(status, code, e.body_text())
    })?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
}

fn bytes_field(name: &str, s: &str) -> Result<Vec<u8>, ApiError> {
    unb64(s).map_err(|e| ApiError::bad_request(format!("{name}: {e}")))
}

fn credential_id(s: &str) -> Result<CredentialId, ApiError> {
    CredentialId::new(bytes_field("credential id", s)?)
        .map_err(|e| ApiError::bad_request(format!("credential id: {e}")))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ApiError::unavailable("worker failed"))
}

// ---------------------------------------------------------------------------
// Authentication and request metrics

/// Checks the bearer key against the configured keys of `scope`: SHA-256 of
/// the presented key compared in constant time with every stored hash.
fn authorize(state: &AppState, headers: &HeaderMap, scope: Scope) -> Result<(), ApiError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "missing bearer API key",
            )
        })?;
    let hash = crypto::sha256(presented.as_bytes());
    let mut in_scope = false;
    let mut other_scope = false;
    for (key_hash, key_scope) in &state.api_keys {
        let eq = crypto::ct_eq(key_hash, &hash);
        in_scope |= eq && *key_scope == scope;
        other_scope |= eq && *key_scope != scope;
    }
    if in_scope {
        Ok(())
    } else if other_scope {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "API key lacks this scope",
        ))
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "unknown API key",
        ))
    }
}

/// The token of an `Authorization: Bearer TOKEN` value. The scheme is
/// case-insensitive (RFC 9110 §11.1); one or more spaces separate it from
/// the token (RFC 9110 §11.4).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim_start_matches(' ');
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Middleware: a request with a body must say it is JSON
/// (`Content-Type: application/json`, parameters such as `charset` allowed,
/// case-insensitive); anything else is 415 `UNSUPPORTED_MEDIA_TYPE` before
/// the body is read. Runs after authentication.
pub async fn require_json(req: Request, next: Next) -> Response {
    // RFC 9112 §6.3: without Transfer-Encoding or Content-Length, a
    // request has no body.
    let has_body = req.headers().contains_key(header::TRANSFER_ENCODING)
        || req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.to_str().map_or(true, |v| v.trim() != "0"));
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if req.method() == axum::http::Method::GET || !has_body || json {
        next.run(req).await
    } else {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "the request body must be JSON (Content-Type: application/json)",
        )
        .into_response()
    }
}

/// Middleware: the relying-party scope.
pub async fn require_rp(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    match authorize(&state, req.headers(), Scope::Rp) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// Middleware: the admin scope.
pub async fn require_admin(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    match authorize(&state, req.headers(), Scope::Admin) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// Middleware: counts requests by matched route and status.
pub async fn count_requests(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let resp = next.run(req).await;
    state.metrics.request(&route, resp.status().as_u16());
    resp
}

/// Middleware: answers `408 {"error": {"code": "TIMEOUT", ...}}` when a
/// request (reading its body included) takes longer than `limit`
/// (`request_timeout_ms`). The answer does not say whether a statement was
/// decided: verification runs on to its end on a worker thread, so a payment
/// may have been committed after the timeout. Resubmitting the same assertion
/// tells: P9 (challenge already used) if it was.
pub async fn time_limit(
    State(limit): State<std::time::Duration>,
    req: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "TIMEOUT",
            format!(
                "the request took longer than {} ms; a statement may still have been decided: \
                 resubmit it to learn the outcome",
                limit.as_millis()
            ),
        )
        .into_response(),
    }
}

/// Fallback for unknown routes.
pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such endpoint")
}

// ---------------------------------------------------------------------------
// Bodies

/// Request: a registration challenge.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistrationChallengeRequest {
    /// The account handle (base64url, 1..=64 bytes, opaque, never PII).
    pub account: String,
    /// Accepted modalities: `fingerprint`, `face`.
    pub modalities: Vec<String>,
    /// Weakest accepted key storage: `software`, `tee` (default), `strong_box`.
    #[serde(default)]
    pub required_assurance: Option<String>,
}

/// A challenge to send to the device.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChallengeResponse {
    /// The encoded challenge message (deterministic CBOR, base64url).
    pub challenge: String,
    /// Expiry, Unix seconds.
    pub expires_at: u64,
    /// For a payment: the text the device's trusted UI will show.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_text: Option<String>,
}

/// Request: a key attestation to verify.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistrationRequest {
    /// The KeyAttestation COSE_Sign1 (base64url), or a PlatformKeyRegistration
    /// (an Android Keystore key; accepted when the trust file has `[android]`),
    /// or an AppleKeyRegistration (an iOS Secure Enclave key with App Attest;
    /// accepted when the trust file has `[apple]`).
    pub attestation: String,
}

/// A credential as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialView {
    /// Credential id (base64url).
    pub credential_id: String,
    /// Account handle (base64url).
    pub account: String,
    /// Device model.
    pub device_model: String,
    /// Bound modalities.
    pub modalities: Vec<String>,
    /// `software`, `tee`, `strong_box`.
    pub security_level: String,
    /// `tee_attested`, `platform_keystore` or `apple_app_attest`.
    pub kind: String,
    /// What the credential's registration proves and does not prove
    /// (PROTOCOL.md §7.2, §12.1, §13.1).
    pub assurance: String,
    /// Last accepted signature counter.
    pub counter: u64,
    /// `active`, `suspended`, `suspected_clone`, `enrollment_changed`, `deregistered`.
    pub status: String,
    /// Registration time, Unix seconds.
    pub registered_at: u64,
}

/// The honest assurance of each credential kind, as the spec states it.
fn assurance_text(kind: CredentialKind) -> &'static str {
    match kind {
        CredentialKind::TeeAttested => {
            "TEE-attested: the TEE matched the biometric, showed the transaction \
             and signed; model, counter and display are attested"
        }
        CredentialKind::PlatformKeystore => {
            "Android Keystore: the hardware attests the key and a fresh strong \
             biometric per signature; modality, display and counter are the app's claims"
        }
        CredentialKind::AppleAppAttest => {
            "Apple App Attest: a genuine instance of an allowed app on a genuine \
             Apple device made this key; that it needs a fresh biometric is \
             enforced by the app's own code, not attested by hardware"
        }
        _ => "unknown credential kind",
    }
}

fn level_name(l: SecurityLevel) -> &'static str {
    match l {
        SecurityLevel::Software => "software",
        SecurityLevel::Tee => "tee",
        SecurityLevel::StrongBox => "strong_box",
    }
}

impl From<&CredentialRecord> for CredentialView {
    fn from(c: &CredentialRecord) -> Self {
        Self {
            credential_id: b64(c.credential_id.as_bytes()),
            account: b64(&c.account_handle),
            device_model: c.device_model.clone(),
            modalities: c
                .modalities
                .iter()
                .map(|m| modality_name(*m).to_owned())
                .collect(),
            security_level: level_name(c.security_level).to_owned(),
            kind: c.kind.as_str().to_owned(),
            assurance: assurance_text(c.kind).to_owned(),
            counter: c.counter,
            status: c.status.as_str().to_owned(),
            registered_at: c.registered_at,
        }
    }
}

/// The transaction to approve.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransactionBody {
    /// Amount in minor units (8800 = 88.00 CNY), 1 ..= 2^63 − 1.
    #[schema(minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    pub amount_minor: u64,
    /// ISO 4217 code.
    pub currency: String,
    /// Payee id.
    pub payee_id: String,
    /// Payee display name.
    pub payee_name: String,
    /// Order id.
    pub order_id: String,
    /// Optional memo shown on the trusted UI.
    #[serde(default)]
    pub memo: Option<String>,
}

impl From<TransactionBody> for Transaction {
    fn from(t: TransactionBody) -> Self {
        Transaction {
            amount_minor: t.amount_minor,
            currency: t.currency,
            payee_id: t.payee_id,
            payee_name: t.payee_name,
            order_id: t.order_id,
            memo: t.memo,
        }
    }
}

impl From<&Transaction> for TransactionBody {
    fn from(t: &Transaction) -> Self {
        Self {
            amount_minor: t.amount_minor,
            currency: t.currency.clone(),
            payee_id: t.payee_id.clone(),
            payee_name: t.payee_name.clone(),
            order_id: t.order_id.clone(),
            memo: t.memo.clone(),
        }
    }
}

/// Request: a payment challenge.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentChallengeRequest {
    /// The credential that must sign (base64url).
    pub credential_id: String,
    /// The transaction.
    pub transaction: TransactionBody,
}

/// Request: a payment assertion to verify.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyPaymentRequest {
    /// The PaymentAssertion COSE_Sign1 (base64url).
    pub assertion: String,
    /// An Apple App Attest assertion object (base64url) whose clientDataHash
    /// is SHA-256 of the `assertion` bytes: required for an
    /// `apple_app_attest` credential above the configured amount
    /// (PROTOCOL.md §13.9, P17 and J1–J4).
    #[serde(default)]
    pub app_attest_assertion: Option<String>,
}

/// Request: several payment challenges, one per item, issued independently.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentChallengeBatchRequest {
    /// 1..=`max_batch_items` (default 64) challenge requests.
    pub items: Vec<PaymentChallengeRequest>,
}

/// One item of a challenge batch: `status` is what
/// `/v1/payments/challenge` would have answered for it; `challenge` is
/// present when it is 200, `error` otherwise.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChallengeBatchItem {
    /// The item's HTTP status.
    pub status: u16,
    /// The challenge (status 200).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub challenge: Option<ChallengeResponse>,
    /// The error (any other status).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

/// The outcomes of a challenge batch, in the order of the request's items.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChallengeBatchResponse {
    /// One outcome per requested item.
    pub items: Vec<ChallengeBatchItem>,
}

/// Request: several payment assertions, each verified and committed on its
/// own (not all-or-nothing).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyPaymentBatchRequest {
    /// 1..=`max_batch_items` (default 64) assertions.
    pub items: Vec<VerifyPaymentRequest>,
}

/// One item of a verification batch: `status` is what
/// `/v1/payments/verify` would have answered for it; `payment` is present
/// when it is 200 (accepted and committed), `error` otherwise.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyBatchItem {
    /// The item's HTTP status.
    pub status: u16,
    /// The accepted payment (status 200).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment: Option<PaymentAccepted>,
    /// The rejection or error (any other status).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

/// The outcomes of a verification batch, in the order of the request's items.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyBatchResponse {
    /// One outcome per submitted item.
    pub items: Vec<VerifyBatchItem>,
}

/// An accepted payment.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentAccepted {
    /// Always `accepted`.
    pub status: String,
    /// The credential (base64url).
    pub credential_id: String,
    /// The account (base64url).
    pub account: String,
    /// The approved transaction, as issued with the challenge.
    pub transaction: TransactionBody,
    /// `fingerprint` or `face`.
    pub modality: String,
    /// The new signature counter.
    pub counter: u64,
    /// The matched template's id (hex, 16 bytes), salted per rp by the
    /// device: which finger or face paid, within this rp only.
    pub template_id: String,
    /// SHA-256 of the statement (hex), as in the audit log.
    pub statement_hash: String,
}

/// Request: a deregistration statement.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeregisterRequest {
    /// The Deregistration COSE_Sign1 (base64url).
    pub statement: String,
}

/// A credential's new status.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusResponse {
    /// The credential (base64url) or model id.
    pub id: String,
    /// Its status now.
    pub status: String,
}

/// Request: set a device model's status.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelStatusRequest {
    /// `active`, `revoked`, `compromised`.
    pub status: String,
}

/// Query: list an account's credentials.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AccountQuery {
    /// The account handle (base64url of 1 to 64 bytes).
    pub account: String,
}

/// The health check.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
    /// `sqlite` or `postgres`.
    pub backend: String,
    /// Audit log entries so far.
    pub audit_entries: u64,
}

// ---------------------------------------------------------------------------
// Decisions: audit, metrics, rate limiting

/// The credential a signed statement names, read without verifying it (for
/// rate limiting and the audit record of a rejection only).
fn peek<M: Message>(
    statement: &[u8],
    x5chain: bool,
    id: impl Fn(&M) -> &CredentialId,
) -> Option<CredentialId> {
    // Any signature form: a platform-keystore credential may sign in DER.
    let s = cose::parse_sign1_any_form(statement, x5chain).ok()?;
    M::from_cbor(&s.payload).ok().map(|m| id(&m).clone())
}

/// The message kind a registration statement carries, if readable.
fn registration_kind(statement: &[u8]) -> Option<MessageKind> {
    cose::peek_payload(statement)
        .and_then(|(payload, _)| cbor::from_deterministic_slice(&payload).ok())
        .and_then(|value| peek_kind(&value))
}

impl AppState {
    /// Audits a rejection (unless the store already did, P15/P19) and, when
    /// core says it counts toward lockout ([`Rejection::counts_toward_lockout`]:
    /// it needed the credential key and a live challenge, PROTOCOL.md §9.2),
    /// counts a failure against `credential` and its account: one store
    /// transaction for both.
    fn record_rejection(
        &self,
        kind: &str,
        credential: Option<&CredentialId>,
        statement: &[u8],
        r: &Rejection,
    ) {
        self.metrics.decision(kind, "rejected", r.step.code());
        let record = AuditRecord {
            at: crate::now(),
            kind: kind.to_owned(),
            outcome: "rejected".to_owned(),
            step: r.step.code().to_owned(),
            credential: credential.map(CredentialId::to_hex).unwrap_or_default(),
            statement_hash: hex::encode(crypto::sha256(statement)),
            reason: r.reason.to_string(),
        };
        let counted =
            credential.filter(|_| self.lock_after_failures > 0 && r.counts_toward_lockout());
        let audit = (!r.recorded_by_flag()).then_some(&record);
        if audit.is_some() || counted.is_some() {
            if let Err(e) = self.store().append_rejection(audit, counted, record.at) {
                tracing::error!(error = %e, "recording a rejection failed");
            }
        }
        tracing::info!(
            kind,
            step = r.step.code(),
            credential = record.credential,
            reason = record.reason,
            "rejected"
        );
    }

    /// Refuses statements for a locked credential or account: one that had
    /// `lock_after_failures` counted failures within the window, in any
    /// process on this store. Fails closed when the store cannot tell.
    fn check_limits(&self, id: &CredentialId) -> Result<(), ApiError> {
        if self.lock_after_failures == 0 {
            return Ok(());
        }
        let since = crate::now().saturating_sub(self.failure_window_secs);
        let failures = self
            .store()
            .recent_failures(id, since)
            .map_err(|e| ApiError::unavailable(format!("rate limit state: {e}")))?;
        if failures >= u64::from(self.lock_after_failures) {
            self.metrics.decision("any", "refused", "RATE_LIMITED");
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "RATE_LIMITED",
                "too many failed verifications for this credential or account; try later",
            ));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Handlers

/// Issues a registration challenge.
#[utoipa::path(post, path = "/v1/registrations/challenge", tag = "registration",
    request_body = RegistrationChallengeRequest,
    responses((status = 200, body = ChallengeResponse), (status = 400, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn registration_challenge(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ChallengeResponse>, ApiError> {
    let req: RegistrationChallengeRequest = parse_json(body)?;
    let account = bytes_field("account", &req.account)?;
    let modalities = req
        .modalities
        .iter()
        .map(|m| {
            parse_modality(m)
                .ok_or_else(|| ApiError::bad_request(format!("unknown modality {m:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if modalities.is_empty() {
        return Err(ApiError::bad_request("modalities must not be empty"));
    }
    let level = match req.required_assurance.as_deref() {
        None => SecurityLevel::Tee,
        Some(s) => parse_security_level(s)
            .ok_or_else(|| ApiError::bad_request(format!("unknown security level {s:?}")))?,
    };
    let c = blocking(move || {
        state
            .verifier
            .registration_challenge(&account, &modalities, level)
    })
    .await?
    .map_err(issue_error)?;
    Ok(Json(ChallengeResponse {
        challenge: b64(&c.to_cbor()),
        expires_at: c.expires_at,
        display_text: None,
    }))
}

fn issue_error(e: IssueError) -> ApiError {
    match e {
        IssueError::Invalid(e) => ApiError::bad_request(e.to_string()),
        IssueError::CredentialNotUsable => ApiError::new(
            StatusCode::CONFLICT,
            "CREDENTIAL_NOT_USABLE",
            "credential unknown or not active",
        ),
        IssueError::PolicyUnsatisfiable => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "POLICY_UNSATISFIABLE",
            "the credential cannot satisfy the policy for this amount",
        ),
        e @ IssueError::TooManyChallenges { .. } => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "CHALLENGE_LIMIT",
            format!("{e}; try again when one expires"),
        ),
        other => ApiError::unavailable(other.to_string()),
    }
}

/// Verifies a key attestation (R1–R16) or an Android Keystore
/// PlatformKeyRegistration (A1–A17) and registers the credential.
#[utoipa::path(post, path = "/v1/registrations", tag = "registration",
    request_body = RegistrationRequest,
    responses((status = 200, body = CredentialView),
        (status = 409, description = "challenge used or credential exists", body = ErrorBody),
        (status = 422, description = "rejected at a verification step", body = ErrorBody),
        (status = 429, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn register(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<CredentialView>, ApiError> {
    let req: RegistrationRequest = parse_json(body)?;
    let statement = bytes_field("attestation", &req.attestation)?;
    let started = Instant::now();
    let st = state.clone();
    let out = blocking(move || {
        // A PlatformKeyRegistration (kind 7, an Android Keystore key,
        // PROTOCOL.md §12) is verified by A1–A17; anything else as a
        // KeyAttestation by R1–R16.
        // An AppleKeyRegistration (kind 8, §13.8) by K1–K13.
        let kind = registration_kind(&statement);
        let (peeked, verdict, kind) = if kind == Some(MessageKind::PlatformKeyRegistration) {
            (
                peek(&statement, true, |a: &PlatformKeyRegistration| {
                    &a.credential_id
                }),
                st.verifier.verify_platform_registration(&statement),
                DecisionKind::PlatformRegistration,
            )
        } else if kind == Some(MessageKind::AppleKeyRegistration) {
            (
                peek(&statement, false, |a: &AppleKeyRegistration| {
                    &a.credential_id
                }),
                st.verifier.verify_apple_registration(&statement),
                DecisionKind::AppleRegistration,
            )
        } else {
            (
                peek(&statement, true, |a: &KeyAttestation| &a.credential_id),
                st.verifier.verify_registration(&statement),
                DecisionKind::Registration,
            )
        };
        match verdict {
            Ok(r) => {
                st.metrics
                    .decision("registration", "accepted", kind.commit_step().code());
                tracing::info!(credential = r.record.credential_id.to_hex(), "registered");
                Ok(CredentialView::from(&r.record))
            }
            Err(r) => {
                st.record_rejection("registration", peeked.as_ref(), &statement, &r);
                Err(ApiError::from(&r))
            }
        }
    })
    .await?;
    state.metrics.verify_latency(started.elapsed());
    out.map(Json)
}

/// Lists an account's credentials.
#[utoipa::path(get, path = "/v1/credentials", tag = "credentials", params(AccountQuery),
    responses((status = 200, body = [CredentialView]), (status = 400, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_credentials(
    State(state): State<Arc<AppState>>,
    query: Result<Query<AccountQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<CredentialView>>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let account = bytes_field("account", &q.account)?;
    validate_account_handle(&account)
        .map_err(|e| ApiError::bad_request(format!("account: {e}")))?;
    let st = state.clone();
    let list = blocking(move || {
        let rp = st.verifier.rp_id().to_owned();
        st.store().credentials_for_account(&rp, &account)
    })
    .await?
    .map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(Json(list.iter().map(CredentialView::from).collect()))
}

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
fn issue_payment_challenge(
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
fn verify_one_payment(
    st: &AppState,
    req: &VerifyPaymentRequest,
) -> Result<PaymentAccepted, ApiError> {
    let statement = bytes_field("assertion", &req.assertion)?;
    let peeked = peek(&statement, false, |a: &PaymentAssertion| &a.credential_id);
    if let Some(id) = &peeked {
        st.check_limits(id)?;
    }
    let app_attest = req
        .app_attest_assertion
        .as_deref()
        .map(|a| bytes_field("app_attest_assertion", a))
        .transpose()?;
    match st
        .verifier
        .verify_payment_with_app_attest(&statement, app_attest.as_deref())
    {
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
async fn run_batch<I: Send + 'static, T: Send + 'static>(
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
fn payment_batch_key(req: &VerifyPaymentRequest) -> Option<Vec<u8>> {
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

fn split<T, E>(r: Result<T, E>) -> (Option<T>, Option<E>) {
    match r {
        Ok(v) => (Some(v), None),
        Err(e) => (None, Some(e)),
    }
}

/// Verifies a signed deregistration (D1–D9) of credential `id`.
#[utoipa::path(post, path = "/v1/credentials/{id}/deregister", tag = "credentials",
    params(("id" = String, Path, description = "credential id, base64url")),
    request_body = DeregisterRequest,
    responses((status = 200, body = StatusResponse), (status = 400, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn deregister(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<StatusResponse>, ApiError> {
    let id = credential_id(&id)?;
    let req: DeregisterRequest = parse_json(body)?;
    let statement = bytes_field("statement", &req.statement)?;
    if let Some(named) = peek(&statement, false, |d: &Deregistration| &d.credential_id) {
        if named != id {
            return Err(ApiError::bad_request(
                "the statement names another credential",
            ));
        }
    }
    let st = state.clone();
    blocking(
        move || match st.verifier.verify_deregistration(&statement) {
            Ok(done) => {
                st.metrics.decision(
                    "deregistration",
                    "accepted",
                    DecisionKind::Deregistration.commit_step().code(),
                );
                Ok(Json(StatusResponse {
                    id: b64(done.as_bytes()),
                    status: CredentialStatus::Deregistered.as_str().into(),
                }))
            }
            Err(r) => {
                st.record_rejection("deregistration", Some(&id), &statement, &r);
                Err(ApiError::from(&r))
            }
        },
    )
    .await?
}

/// Admin: suspends a credential.
#[utoipa::path(post, path = "/v1/admin/credentials/{id}/suspend", tag = "admin",
    params(("id" = String, Path, description = "credential id, base64url")),
    responses((status = 200, body = StatusResponse), (status = 404, body = ErrorBody)),
    security(("admin_key" = [])))]
pub async fn suspend_credential(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<StatusResponse>, ApiError> {
    let id = credential_id(&id)?;
    let st = state.clone();
    let shown = b64(id.as_bytes());
    blocking(move || {
        let record = AuditRecord {
            at: crate::now(),
            kind: "admin".into(),
            outcome: "suspended".into(),
            step: "ADMIN".into(),
            credential: id.to_hex(),
            statement_hash: String::new(),
            reason: "suspended by an operator".into(),
        };
        // The status and its audit record commit together: a refused or
        // failed request changes nothing, an applied one is always audited.
        st.store()
            .set_credential_status_audited(&id, CredentialStatus::Suspended, &record)
            .map_err(|e| match e {
                biopay_core::store::CommitError::UnknownCredential => {
                    ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "unknown credential")
                }
                biopay_core::store::CommitError::CredentialNotActive(s) => ApiError::new(
                    StatusCode::CONFLICT,
                    "CREDENTIAL_NOT_USABLE",
                    format!("credential is {}", s.as_str()),
                ),
                other => ApiError::unavailable(other.to_string()),
            })?;
        tracing::info!(
            credential = id.to_hex(),
            "credential suspended by an operator"
        );
        Ok(Json(StatusResponse {
            id: shown,
            status: CredentialStatus::Suspended.as_str().into(),
        }))
    })
    .await?
}

/// Admin: sets a device model's status (e.g. revokes it). Persisted; other
/// server processes pick it up at their next refresh.
#[utoipa::path(post, path = "/v1/admin/models/{model}/status", tag = "admin",
    params(("model" = String, Path, description = "device model id")),
    request_body = ModelStatusRequest,
    responses((status = 200, body = StatusResponse), (status = 404, body = ErrorBody)),
    security(("admin_key" = [])))]
pub async fn set_model_status(
    State(state): State<Arc<AppState>>,
    Path(model): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<StatusResponse>, ApiError> {
    let req: ModelStatusRequest = parse_json(body)?;
    let status = parse_model_status(&req.status)
        .ok_or_else(|| ApiError::bad_request(format!("unknown model status {:?}", req.status)))?;
    let st = state.clone();
    blocking(move || {
        if st.verifier.trust().model(&model).is_none() {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "unknown device model",
            ));
        }
        let record = AuditRecord {
            at: crate::now(),
            kind: "admin".into(),
            outcome: format!("model_{}", model_status_name(status)),
            step: "ADMIN".into(),
            credential: String::new(),
            statement_hash: String::new(),
            reason: format!("device model {model} set to {}", model_status_name(status)),
        };
        // The status and its audit record commit together (both or neither);
        // only then does this process's own copy change.
        st.store()
            .set_model_status(&model, model_status_name(status), &record)
            .map_err(|e| ApiError::unavailable(e.to_string()))?;
        st.verifier.set_model_status(&model, status);
        tracing::info!(
            model,
            status = model_status_name(status),
            "device model status set"
        );
        Ok(Json(StatusResponse {
            id: model,
            status: model_status_name(status).into(),
        }))
    })
    .await?
}

/// Query: which checkpoints to export.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CheckpointQuery {
    /// Only checkpoints past this entry (the last `seq` the witness holds); 0 for all.
    #[serde(default)]
    pub since: u64,
    /// At most this many (1 to 1000; default 1000): ask again with the last `seq`.
    pub limit: Option<u64>,
}

/// The signed audit checkpoints past `since`, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckpointList {
    /// Each one as a witness stores it (one JSON line per checkpoint):
    /// verifiable alone with the server's public key.
    pub checkpoints: Vec<crate::audit::Checkpoint>,
}

/// Admin: the signed audit checkpoints, for a witness that keeps them
/// outside the database (`biopay-server audit verify --witness`; docs/PROTOCOL.md §9.4).
#[utoipa::path(get, path = "/v1/admin/audit/checkpoints", tag = "admin", params(CheckpointQuery),
    responses((status = 200, body = CheckpointList), (status = 400, body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("admin_key" = [])))]
pub async fn audit_checkpoints(
    State(state): State<Arc<AppState>>,
    query: Result<Query<CheckpointQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<CheckpointList>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = q.limit.unwrap_or(1000);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit must be 1 to 1000"));
    }
    if i64::try_from(q.since).is_err() {
        return Err(ApiError::bad_request("since is past any entry"));
    }
    let st = state.clone();
    let checkpoints = blocking(move || st.store().checkpoints(q.since, limit))
        .await?
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(Json(CheckpointList { checkpoints }))
}

/// Liveness and store reachability.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = ErrorBody)))]
pub async fn healthz(State(state): State<Arc<AppState>>) -> Result<Json<Health>, ApiError> {
    let st = state.clone();
    let (seq, _) = blocking(move || st.store().audit_head())
        .await?
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(Json(Health {
        status: "ok".into(),
        backend: state.store().backend_name().into(),
        audit_entries: seq,
    }))
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state
            .metrics
            .render(state.store().backend_name(), state.store().commit_stats()),
    )
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "the OpenAPI document", content_type = "application/json")))]
pub async fn openapi_json() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        openapi_document(),
    )
}

struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = doc.components.get_or_insert_with(Default::default);
        for (name, what) in [("api_key", "relying-party"), ("admin_key", "admin")] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(format!("a {what} API key")))
                        .build(),
                ),
            );
        }
    }
}

/// The OpenAPI description of this API, generated from the handlers.
#[derive(OpenApi)]
#[openapi(
    info(title = "biopay-server", description = "Biometric payment verification service. Binary fields are base64url without padding; errors name the verification step of docs/PROTOCOL.md §6."),
    paths(registration_challenge, register, list_credentials, payment_challenge, verify_payment,
        payment_challenge_batch, verify_payment_batch, deregister, suspend_credential, set_model_status, audit_checkpoints, healthz, metrics, openapi_json),
    components(schemas(ErrorBody, ErrorDetail, ChallengeResponse, CredentialView, TransactionBody,
        PaymentAccepted, StatusResponse, Health, ChallengeBatchItem, ChallengeBatchResponse,
        VerifyBatchItem, VerifyBatchResponse, CheckpointList, crate::audit::Checkpoint)),
    modifiers(&SecuritySchemes)
)]
pub struct ApiDoc;

/// The OpenAPI document as pretty JSON (what docs/openapi.json holds).
pub fn openapi_document() -> String {
    let mut s = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}
