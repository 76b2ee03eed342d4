//! # biopay-server
//!
//! The payment verification service: an HTTP/JSON API (axum) around
//! [`biopay_core::Verifier`], with durable [`biopay_core::Store`]s on SQLite
//! (embedded default) and PostgreSQL (several processes, one database), a
//! hash-chained audit log with signed checkpoints, API keys, failure rate
//! limiting, Prometheus metrics and an OpenAPI document generated from the
//! handlers.
//!
//! ```no_run
//! # async fn run() -> Result<(), String> {
//! let mut config = biopay_server::config::Config::default();
//! config.danger_demo_trust = true; // trusts the published demo vendor PKI: tests only
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
//! biopay_server::run(config, listener, std::future::pending()).await
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod api;
pub mod audit;
pub mod b64;
pub mod challenge_keys;
pub mod config;
pub mod demo_trust;
pub mod metrics;
pub mod shards;
pub mod store;

use crate::{
    audit::SigningKey,
    config::{Config, Scope},
    metrics::Metrics,
    shards::{ShardDown, ShardStore, ShardVerifier, Shards},
    store::ServerStore,
};
use axum::{
    extract::DefaultBodyLimit,
    middleware,
    routing::{get, post},
    Router,
};
use std::{future::Future, sync::Arc, time::Duration};

/// Unix seconds now.
pub fn now() -> u64 {
    biopay_core::Clock::now(&biopay_core::SystemClock)
}

/// The demo API keys accepted under `danger_demo_keys`.
pub const DANGER_DEMO_RP_KEY: &str = "demo-rp-key";
/// The demo admin key accepted under `danger_demo_keys`.
pub const DANGER_DEMO_ADMIN_KEY: &str = "demo-admin-key";

/// Shared server state.
pub struct AppState {
    /// The shards, each with its verifier over its own store; every request
    /// is routed to one of them ([`shards`]).
    pub shards: Shards,
    /// SHA-256 hashes of accepted API keys with their scopes (from the
    /// configuration, the same in every process: no shard holds them).
    pub api_keys: Vec<([u8; 32], Scope)>,
    /// Most items per batch request.
    pub max_batch_items: usize,
    /// Rate limiting: failed verifications per credential and per account
    /// allowed in the window (0 disables); counted in the credential's
    /// shard, so shared by every process on it.
    pub lock_after_failures: u32,
    /// The failure-counting window, seconds.
    pub failure_window_secs: u64,
    /// Metrics.
    pub metrics: Metrics,
    /// The audit checkpoint key (one key signs every shard's checkpoints).
    pub signing_key: SigningKey,
    /// Single-payment work runs on the async worker, not behind
    /// `spawn_blocking` ([`Config::inline_verify`]).
    pub inline_verify: bool,
}

impl AppState {
    /// Shard `k`'s verifier (503 with `Retry-After` while it is down).
    pub fn shard(&self, k: u32) -> Result<Arc<ShardVerifier>, ShardDown> {
        self.shards.get(k)
    }

    /// Builds the state: opens every shard (applying migrations), loads the
    /// trust configuration, each shard's persisted model statuses and the
    /// signing key. Blocking.
    pub fn build(config: &Config) -> Result<Self, String> {
        config.check()?;
        let mut api_keys = Vec::new();
        for k in &config.api_keys {
            let hash = audit::parse_hash(&k.sha256.to_ascii_lowercase())
                .ok_or_else(|| format!("API key {}: sha256 must be 64 hex digits", k.name))?;
            api_keys.push((hash, k.scope));
        }
        if config.danger_demo_keys {
            let sha = |k: &str| biopay_core::crypto::sha256(k.as_bytes());
            api_keys.push((sha(DANGER_DEMO_RP_KEY), Scope::Rp));
            api_keys.push((sha(DANGER_DEMO_ADMIN_KEY), Scope::Admin));
        }
        let signing_key = SigningKey::load_or_create(&config.audit_key_path())?;
        Ok(Self {
            shards: Shards::open(config)?,
            api_keys,
            max_batch_items: config.max_batch_items,
            lock_after_failures: config.lock_after_failures,
            failure_window_secs: config.failure_window_secs,
            metrics: Metrics::default(),
            signing_key,
            inline_verify: config.inline_verify,
        })
    }

    /// Applies each shard's persisted device-model statuses (set by any
    /// process) to that shard's verifier ([`shards::refresh_model_statuses`]).
    pub fn refresh_model_statuses(&self) {
        for (_, v) in self.shards.up() {
            shards::refresh_model_statuses(&v);
        }
    }

    /// Signs a checkpoint of every reachable shard's audit head that moved
    /// since its last one, chained to that one (each shard's chain is its
    /// own). Another process extending a chain first is not an error.
    pub fn checkpoint(&self) -> Result<(), String> {
        let mut failed = Vec::new();
        for (k, v) in self.shards.up() {
            if let Err(e) = self.checkpoint_shard(v.store()) {
                failed.push(format!("shard {k}: {e}"));
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed.join("; "))
        }
    }

    fn checkpoint_shard(&self, store: &ShardStore) -> Result<(), String> {
        // The head first: the last checkpoint read after it never covers
        // more than the head.
        let (seq, hash) = store.audit_head().map_err(|e| e.to_string())?;
        let last = store.last_checkpoint().map_err(|e| e.to_string())?;
        if last.as_ref().is_some_and(|l| l.seq >= seq) || seq == 0 {
            return Ok(());
        }
        let prev = match &last {
            Some(l) if l.version == audit::CHECKPOINT_CHAINED => l.checkpoint_hash(),
            _ => audit::genesis_hex(),
        };
        if let Some(l) = last
            .as_ref()
            .filter(|l| l.public_key != self.signing_key.public_key_hex())
        {
            tracing::warn!(
                shard = store.index(),
                previous_key = l.public_key,
                checkpoint_key = self.signing_key.public_key_hex(),
                "the last audit checkpoint was signed by another key: the key was rotated or replaced; \
                 `audit verify` must trust both (--audit-public-key)"
            );
        }
        let c = self.signing_key.checkpoint(seq, &hash, now(), &prev);
        if !store.insert_checkpoint(&c).map_err(|e| e.to_string())? {
            tracing::debug!(
                shard = store.index(),
                seq,
                "checkpoint not stored: another process extended the chain"
            );
        }
        Ok(())
    }

    /// The backend name for logs and metrics: `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        self.shards.backend_name()
    }

    /// Group commit counters summed over the reachable shards.
    pub fn commit_stats(&self) -> (u64, u64, u64) {
        self.shards.up().iter().fold((0, 0, 0), |acc, (_, v)| {
            let (a, b, c) = v.store().inner().commit_stats();
            (acc.0 + a, acc.1 + b, acc.2 + c)
        })
    }
}

/// The router with every endpoint, authentication, limits and timeouts.
pub fn router(state: Arc<AppState>, config: &Config) -> Router {
    let rp = Router::new()
        .route(
            "/v1/registrations/challenge",
            post(api::registration_challenge),
        )
        .route("/v1/registrations", post(api::register))
        .route("/v1/credentials/{id}/deregister", post(api::deregister))
        .route("/v1/credentials", get(api::list_credentials))
        .route_layer(middleware::from_fn(api::require_json))
        // The payment endpoints: JSON or the bytes as they are (application/cbor).
        .merge(
            Router::new()
                .route("/v1/payments/challenge", post(api::payment_challenge))
                .route(
                    "/v1/payments/challenge/batch",
                    post(api::payment_challenge_batch),
                )
                .route("/v1/payments/verify", post(api::verify_payment))
                .route("/v1/payments/verify/batch", post(api::verify_payment_batch))
                .route_layer(middleware::from_fn(api::require_json_or_cbor)),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            api::require_rp,
        ));
    let admin = Router::new()
        .route(
            "/v1/admin/credentials/{id}/suspend",
            post(api::suspend_credential),
        )
        .route(
            "/v1/admin/models/{model}/status",
            post(api::set_model_status),
        )
        .route("/v1/admin/audit/checkpoints", get(api::audit_checkpoints))
        .route_layer(middleware::from_fn(api::require_json))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            api::require_admin,
        ));
    Router::new()
        .merge(rp)
        .merge(admin)
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(api::metrics))
        .route("/openapi.json", get(api::openapi_json))
        .fallback(api::not_found)
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(middleware::from_fn_with_state(
            Duration::from_millis(config.request_timeout_ms),
            api::time_limit,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            api::count_requests,
        ))
        .with_state(state)
}

/// Runs the server on `listener` until `shutdown` completes, then finishes
/// in-flight requests, stops the background tasks and signs a final checkpoint.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let cfg = config.clone();
    let state = Arc::new(
        tokio::task::spawn_blocking(move || AppState::build(&cfg))
            .await
            .map_err(|e| e.to_string())??,
    );
    if state.api_keys.is_empty() {
        tracing::warn!("no API keys configured: every /v1 request will be refused (401)");
    }
    let app = router(state.clone(), &config);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Sign the head left by the previous run (e.g. one killed before its
    // final checkpoint) before taking requests.
    let st = state.clone();
    match tokio::task::spawn_blocking(move || st.checkpoint()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "startup checkpoint failed"),
        Err(e) => tracing::warn!(error = %e, "startup checkpoint failed"),
    }
    let bg = tokio::spawn(background(state.clone(), config.clone(), stop_rx));
    tracing::info!(
        addr = %listener.local_addr().map_err(|e| e.to_string())?,
        backend = state.backend_name(),
        shards = state.shards.count(),
        shards_down = ?state.shards.down(),
        rp_id = state.shards.rp_id(),
        checkpoint_key = state.signing_key.public_key_hex(),
        "biopay-server listening"
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| e.to_string())?;
    let _ = stop_tx.send(true);
    let _ = bg.await;
    // The last reference is dropped on a blocking thread: the synchronous
    // PostgreSQL client owns a runtime that must not be dropped in async context.
    match tokio::task::spawn_blocking(move || {
        let r = state.checkpoint();
        drop(state);
        r
    })
    .await
    {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "final checkpoint failed"),
        Err(e) => tracing::warn!(error = %e, "final checkpoint failed"),
    }
    tracing::info!("biopay-server stopped");
    Ok(())
}

/// How often a shard that is down is retried, milliseconds.
pub const RECONNECT_INTERVAL_MS: u64 = 1000;

async fn background(
    state: Arc<AppState>,
    config: Config,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut purge = tokio::time::interval(Duration::from_secs(config.purge_interval_secs.max(1)));
    // The first periodic checkpoint one period after startup (`run` signs
    // one before listening).
    let every = Duration::from_secs(config.checkpoint_interval_secs.max(1));
    let mut checkpoint = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    // Shards that are down are retried this often.
    let mut reconnect = tokio::time::interval(Duration::from_millis(RECONNECT_INTERVAL_MS));
    reconnect.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let status_list = config.android_status_list_file();
    let mut status_list_seen = status_list.as_deref().and_then(modified);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = purge.tick() => {
                let st = state.clone();
                if let Some(path) = &status_list {
                    let seen = modified(path);
                    if seen != status_list_seen {
                        status_list_seen = seen;
                        reload_status_list(&state, path);
                    }
                }
                let r = tokio::task::spawn_blocking(move || {
                    st.refresh_model_statuses();
                    let old = now().saturating_sub(st.failure_window_secs);
                    // Each shard purges its own state.
                    for (k, v) in st.shards.up() {
                        if let Err(e) = v.store().purge_failures(old) {
                            tracing::warn!(shard = k, error = %e, "purging counted failures failed");
                        }
                        match v.purge_expired_challenges() {
                            Ok(n) if n > 0 => tracing::debug!(shard = k, purged = n, "expired challenges collected"),
                            Ok(_) => {}
                            Err(e) => tracing::warn!(shard = k, error = %e, "purging challenges failed"),
                        }
                    }
                }).await;
                if let Err(e) = r {
                    tracing::warn!(error = %e, "purge task failed");
                }
            }
            _ = reconnect.tick(), if !state.shards.down().is_empty() => {
                let st = state.clone();
                // A shard back up gets its missed checkpoint at once.
                let r = tokio::task::spawn_blocking(move || {
                    let before = st.shards.down();
                    let after = st.shards.connect_down();
                    if after.len() < before.len() {
                        if let Err(e) = st.checkpoint() {
                            tracing::warn!(error = %e, "audit checkpoint failed");
                        }
                    }
                }).await;
                if let Err(e) = r {
                    tracing::warn!(error = %e, "reconnect task failed");
                }
            }
            _ = checkpoint.tick() => {
                let st = state.clone();
                match tokio::task::spawn_blocking(move || st.checkpoint()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "audit checkpoint failed"),
                    Err(e) => tracing::warn!(error = %e, "checkpoint task failed"),
                }
            }
        }
    }
}

fn modified(path: &std::path::Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Replaces the Android status list from its file. A file that cannot be
/// read or parsed leaves the previous list in force (logged).
fn reload_status_list(state: &AppState, path: &std::path::Path) {
    match config::read_status_list(path) {
        Ok(list) => {
            let entries = list.len();
            state.shards.set_android_status_list(list);
            tracing::info!(entries, "Android attestation status list reloaded");
        }
        Err(e) => {
            tracing::error!(error = %e, "Android status list not reloaded; the previous one stays")
        }
    }
}

/// Reads the whole audit log of `store` (entries, head row, checkpoints)
/// and verifies it, with the `witness` checkpoints (from a file kept
/// outside the database), against `trusted_keys` ([`audit::verify_chain`]).
pub fn verify_audit(
    store: &dyn ServerStore,
    witness: &[audit::Checkpoint],
    trusted_keys: &[String],
) -> Result<Result<audit::ChainReport, audit::ChainProblem>, String> {
    // Checkpoints first: on a live server, any checkpoint read now covers
    // only entries that the reads below will see. The head row is read
    // after the entries (a transaction moves both together): when it is
    // ahead, entries were appended meanwhile, and they are read too.
    let checkpoints = all_checkpoints(store)?;
    let mut entries = Vec::new();
    let mut after = 0;
    let mut rounds = 0;
    let (head_seq, head_hash) = loop {
        loop {
            let page = store
                .audit_entries(after, 10_000)
                .map_err(|e| e.to_string())?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            entries.extend(page);
        }
        let head = store.audit_head().map_err(|e| e.to_string())?;
        rounds += 1;
        if head.0 <= after || rounds >= 5 {
            break head;
        }
    };
    Ok(audit::verify_chain(
        &entries,
        (head_seq, &head_hash),
        &checkpoints,
        witness,
        trusted_keys,
    ))
}

/// Every checkpoint with `seq > after`, by seq.
pub fn all_checkpoints(store: &dyn ServerStore) -> Result<Vec<audit::Checkpoint>, String> {
    let mut out: Vec<audit::Checkpoint> = Vec::new();
    let mut after = 0;
    loop {
        let page = store
            .checkpoints(after, 10_000)
            .map_err(|e| e.to_string())?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        out.extend(page);
    }
    Ok(out)
}
