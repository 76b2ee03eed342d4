//! The error envelope, [`ApiError`], and the helpers that turn bad input
//! into it (JSON bodies, base64url fields, worker failures).

use crate::b64::unb64;
use axum::{
    body::Bytes,
    extract::rejection::BytesRejection,
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use biopay_core::{CredentialId, Reason, Rejection};
use serde::{de::DeserializeOwned, Serialize};
use utoipa::ToSchema;

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

    pub(crate) fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", reason)
    }

    pub(crate) fn unavailable(reason: impl Into<String>) -> Self {
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
    pub(crate) fn into_parts(self) -> (StatusCode, ErrorDetail) {
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

/// Seconds a client is asked to wait (`Retry-After`) before retrying a
/// request answered 503 (a store or shard unreachable, nothing stored).
pub const RETRY_AFTER_SECS: u64 = 1;

impl From<crate::shards::ShardDown> for ApiError {
    fn from(e: crate::shards::ShardDown) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "SHARD_UNAVAILABLE",
            e.to_string(),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, error) = self.into_parts();
        let mut response = (status, Json(ErrorBody { error })).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(RETRY_AFTER_SECS),
            );
        }
        response
    }
}

/// The body, or why it could not be read (413 `BODY_TOO_LARGE`, 400).
pub(crate) fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        let status = e.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "BODY_TOO_LARGE"
        } else {
            "BAD_REQUEST"
        };
        ApiError::new(status, code, e.body_text())
    })
}

pub(crate) fn parse_json<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let bytes = body_bytes(body)?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
}

pub(crate) fn bytes_field(name: &str, s: &str) -> Result<Vec<u8>, ApiError> {
    unb64(s).map_err(|e| ApiError::bad_request(format!("{name}: {e}")))
}

pub(crate) fn credential_id(s: &str) -> Result<CredentialId, ApiError> {
    CredentialId::new(bytes_field("credential id", s)?)
        .map_err(|e| ApiError::bad_request(format!("credential id: {e}")))
}

/// Runs `f` on the calling async worker when `inline` (the
/// `inline_verify` switch), else on a blocking thread. The synchronous
/// PostgreSQL client blocks on a runtime of its own, which tokio refuses
/// inside an async worker: for it (`in_place`) the worker steps out of the
/// runtime with `block_in_place` (its other tasks move to another thread).
/// Outside a multi-threaded runtime, where neither is possible, `f` runs on
/// a blocking thread as by default.
pub(crate) async fn maybe_blocking<T: Send + 'static>(
    inline: bool,
    in_place: bool,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    match (inline, in_place) {
        (true, false) => Ok(f()),
        (true, true) if multi_thread => Ok(tokio::task::block_in_place(f)),
        _ => blocking(f).await,
    }
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ApiError::unavailable("worker failed"))
}
