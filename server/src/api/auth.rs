//! Authentication (API keys by scope) and the request middlewares:
//! content type, request metrics, time limit, unknown routes.

use super::*;
use crate::{config::Scope, AppState};
use axum::{
    extract::{MatchedPath, Request, State},
    http::{header, HeaderMap, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use biopay_core::crypto;
use std::sync::Arc;

/// Checks the bearer key against the configured keys of `scope`: SHA-256 of
/// the presented key compared in constant time with every stored hash.
pub(crate) fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    scope: Scope,
) -> Result<(), ApiError> {
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
pub(crate) fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim_start_matches(' ');
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Middleware: a request with a body must say it is JSON
/// (`Content-Type: application/json`, parameters such as `charset` allowed,
/// case-insensitive); anything else is 415 `UNSUPPORTED_MEDIA_TYPE` before
/// the body is read. Runs after authentication.
pub async fn require_json(req: Request, next: Next) -> Response {
    check_body_type(req, next, false).await
}

/// Middleware of the payment endpoints (challenges and verification): as
/// [`require_json`], but `Content-Type: application/cbor` is admitted too.
pub async fn require_json_or_cbor(req: Request, next: Next) -> Response {
    check_body_type(req, next, true).await
}

async fn check_body_type(req: Request, next: Next, cbor: bool) -> Response {
    // RFC 9112 §6.3: without Transfer-Encoding or Content-Length, a
    // request has no body.
    let has_body = req.headers().contains_key(header::TRANSFER_ENCODING)
        || req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.to_str().map_or(true, |v| v.trim() != "0"));
    let admitted = match body_type(req.headers()) {
        Some(BodyType::Json) => true,
        Some(BodyType::Cbor) => cbor,
        None => false,
    };
    if req.method() == axum::http::Method::GET || !has_body || admitted {
        next.run(req).await
    } else {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            if cbor {
                "the request body must be JSON (Content-Type: application/json) or CBOR \
                 (Content-Type: application/cbor)"
            } else {
                "the request body must be JSON (Content-Type: application/json)"
            },
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
