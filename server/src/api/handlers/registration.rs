//! Handlers: registration challenges, registrations, credential listing.

use crate::api::*;
use crate::{
    b64::b64,
    config::{parse_modality, parse_security_level},
    AppState,
};
use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, Query, State},
    http::StatusCode,
    Json,
};
use biopay_core::{
    messages::{validate_account_handle, Message},
    IssueError, SecurityLevel, Store,
};
use std::{sync::Arc, time::Instant};

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
    // The account's shard stores the challenge (and will hold the credential).
    let shard = state.shard(state.shards.of_account(&account))?;
    let c = blocking(move || shard.registration_challenge(&account, &modalities, level))
        .await?
        .map_err(issue_error)?;
    Ok(Json(ChallengeResponse {
        challenge: b64(&c.to_cbor()),
        expires_at: c.expires_at,
        display_text: None,
    }))
}

pub(crate) fn issue_error(e: IssueError) -> ApiError {
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
        // The statement goes to the shard its credential id's slot names
        // (the id starts with the account's slot, R15 / A16 / K12, so that
        // is where its registration challenge is); one that names no
        // readable credential to shard 0, which audits its rejection.
        let shard = st.shard(
            biopay_core::verifier::registration_credential_id(&statement)
                .map_or(0, |id| st.shards.of_credential(&id)),
        )?;
        // Core chooses the procedure from the message kind (R1–R16, A1–A17
        // for an Android Keystore key, K1–K13 for Apple App Attest), decodes
        // the statement once and says which credential it names.
        let outcome = shard.verify_any_registration(&statement);
        let kind = outcome.kind;
        match outcome.decision {
            Ok(r) => {
                st.metrics
                    .decision("registration", "accepted", kind.commit_step().code());
                tracing::info!(credential = r.record.credential_id.to_hex(), "registered");
                Ok(CredentialView::from(&r.record))
            }
            Err(r) => {
                st.record_rejection(
                    &shard,
                    "registration",
                    outcome.credential_id.as_ref(),
                    &statement,
                    &r,
                );
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
    let shard = state.shard(state.shards.of_account(&account))?;
    let list = blocking(move || {
        let rp = shard.rp_id().to_owned();
        shard.store().credentials_for_account(&rp, &account)
    })
    .await?
    .map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(Json(list.iter().map(CredentialView::from).collect()))
}
