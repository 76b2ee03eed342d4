//! Handlers: deregistration, admin (suspension, model status, audit
//! checkpoints) and operations (health, metrics).

use crate::api::*;
use crate::{
    audit::AuditRecord,
    b64::b64,
    config::{model_status_name, parse_model_status},
    store::ServerStore,
    AppState,
};
use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, Path, Query, State},
    http::{header, StatusCode},
    response::IntoResponse,
    Json,
};
use biopay_core::{store::DecisionKind, CredentialStatus};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

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
    // Core opens the statement (D1–D3) and says which credential it names.
    let opened = biopay_core::verifier::open_deregistration(&statement);
    if let Ok(o) = &opened {
        if *o.credential_id() != id {
            return Err(ApiError::bad_request(
                "the statement names another credential",
            ));
        }
    }
    let st = state.clone();
    let shard = state.shard(state.shards.of_credential(&id))?;
    blocking(
        move || match opened.and_then(|o| shard.verify_opened_deregistration(o)) {
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
                st.record_rejection(&shard, "deregistration", Some(&id), &statement, &r);
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
    let shard = state.shard(state.shards.of_credential(&id))?;
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
        shard
            .store()
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

/// Admin: sets a device model's status (e.g. revokes it) on every shard,
/// each with its audit record on that shard's chain; each shard's commits
/// check their own copy. Answers 200 only when every shard has it; 503
/// (naming the shards that do not) otherwise: repeat the request until 200
/// (it is idempotent). Other server processes pick it up at their next refresh.
#[utoipa::path(post, path = "/v1/admin/models/{model}/status", tag = "admin",
    params(("model" = String, Path, description = "device model id")),
    request_body = ModelStatusRequest,
    responses((status = 200, body = StatusResponse), (status = 404, body = ErrorBody),
        (status = 503, description = "not every shard has the status yet: repeat the request", body = ErrorBody)),
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
        if st
            .shards
            .up()
            .first()
            .is_some_and(|(_, v)| v.trust().model(&model).is_none())
        {
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
        // On each shard the status and its audit record commit together
        // (both or neither); only then does that shard's verifier in this
        // process change. Every shard is tried, even after a failure, so
        // that the reachable ones refuse the model at once.
        let mut missing = Vec::new();
        let mut down = false;
        for k in 0..st.shards.count() {
            down |= st.shard(k).is_err();
            let done = st.shard(k).map_err(|e| e.to_string()).and_then(|v| {
                v.store()
                    .set_model_status(&model, model_status_name(status), &record)
                    .map_err(|e| e.to_string())?;
                v.set_model_status(&model, status);
                Ok(())
            });
            if let Err(e) = done {
                tracing::error!(shard = k, model, error = %e, "device model status not set on this shard");
                missing.push(k);
            }
        }
        if !missing.is_empty() {
            // SHARD_UNAVAILABLE when a shard is down, UNAVAILABLE when a
            // reachable store refused the write (as with one database).
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                if down { "SHARD_UNAVAILABLE" } else { "UNAVAILABLE" },
                format!(
                    "device model status not stored on shards {missing:?}: repeat the request until it succeeds"
                ),
            ));
        }
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
    /// The shard whose chain to export (0 to shards - 1; default 0): each
    /// shard has its own audit chain and checkpoints.
    #[serde(default)]
    pub shard: u32,
}

/// The signed audit checkpoints of one shard past `since`, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckpointList {
    /// The shard whose chain these checkpoints sign.
    pub shard: u32,
    /// How many shards the server has (each with its own chain).
    pub shards: u32,
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
    if q.shard >= state.shards.count() {
        return Err(ApiError::bad_request(format!(
            "shard must be 0 to {}",
            state.shards.count() - 1
        )));
    }
    let shard = state.shard(q.shard)?;
    let checkpoints = blocking(move || shard.store().checkpoints(q.since, limit))
        .await?
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(Json(CheckpointList {
        shard: q.shard,
        shards: state.shards.count(),
        checkpoints,
    }))
}

/// Liveness and each shard's reachability: 200 while at least one shard
/// answers (`status` is `degraded` when another does not; requests routed
/// to it get 503), 503 when none does.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = ErrorBody)))]
pub async fn healthz(State(state): State<Arc<AppState>>) -> Result<Json<Health>, ApiError> {
    let st = state.clone();
    let shards = blocking(move || {
        (0..st.shards.count())
            .map(|k| {
                let head = st.shard(k).ok().and_then(|v| v.store().audit_head().ok());
                ShardHealth {
                    shard: k,
                    up: head.is_some(),
                    audit_entries: head.map_or(0, |(seq, _)| seq),
                }
            })
            .collect::<Vec<_>>()
    })
    .await?;
    let up = shards.iter().filter(|s| s.up).count();
    if up == 0 {
        return Err(ApiError::unavailable("no shard is reachable"));
    }
    Ok(Json(Health {
        status: if up == shards.len() { "ok" } else { "degraded" }.into(),
        backend: state.backend_name().into(),
        audit_entries: shards.iter().map(|s| s.audit_entries).sum(),
        shards,
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
            .render(state.backend_name(), state.commit_stats())
            + &crate::metrics::render_shards(&state.shards.operations(), &state.shards.down()),
    )
}
