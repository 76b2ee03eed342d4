//! The OpenAPI document, generated from the handlers.

use super::*;
use axum::{http::header, response::IntoResponse};
use utoipa::OpenApi;

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
        PaymentAccepted, StatusResponse, Health, ShardHealth, ChallengeBatchItem, ChallengeBatchResponse,
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
