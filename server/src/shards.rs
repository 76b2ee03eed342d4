//! The shard router: the server's state split over N stores (N a power of
//! two), each with its own verifier, audit chain and checkpoints.
//!
//! An account's credentials live on shard `account_slot(rp_id, account) &
//! (N - 1)` and a credential id starts with its account's slot
//! ([`biopay_core::routing`]), so every request is routed to one shard
//! without a lookup: registration challenges, registrations and credential
//! listings by account; payment challenges, payments, deregistrations,
//! suspensions by credential id. A shard's verifier only ever sees its own
//! store, so no operation can touch a second shard: there is no cross-shard
//! transaction anywhere (docs/ARCHITECTURE.md, "Shards"). One database
//! (SQLite, or `--database-url`) is the N = 1 case of the same code. With
//! `--stateless-payment-challenges` every shard's verifier holds the same
//! challenge keys (one key file): a payment's spent entry is written by its
//! commit on the credential's shard, like everything else it changes.
//!
//! A PostgreSQL shard that cannot be reached at startup is left down and
//! retried in the background ([`Shards::connect_down`]); requests routed to
//! it get 503 with `Retry-After` ([`ShardDown`]) while the others serve.

use crate::{
    audit::{AuditEntry, AuditRecord, Checkpoint},
    config::{Config, StoreLayout},
    store::{postgres::PgStore, sqlite::SqliteStore, AnyStore, ServerStore},
};
use biopay_core::{
    apple::AppleTrust,
    routing::{account_slot, credential_slot, shard_of},
    store::{
        ChallengeEntry, ChallengeLimit, CommitError, CredentialRecord, CredentialStatus, Decision,
        Flag, IssuedChallenge, SpentChallenge, StoreError,
    },
    verifier::ChallengeKeys,
    AndroidTrust, Challenge, CredentialId, Policy, Store, SystemClock, SystemRandom, TrustConfig,
    Verifier,
};
use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, PoisonError, RwLock,
    },
};

/// A shard's verifier.
pub type ShardVerifier = Verifier<ShardStore, SystemClock, SystemRandom>;

/// One shard's store. Counts every operation it serves: the metrics show
/// them per shard, and the tests check that each request moves exactly one
/// shard's count.
pub struct ShardStore {
    index: u32,
    inner: AnyStore,
    operations: Arc<AtomicU64>,
}

impl ShardStore {
    /// The shard's position in the shard map.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The backend.
    pub fn inner(&self) -> &AnyStore {
        &self.inner
    }

    fn counted(&self) -> &AnyStore {
        self.operations.fetch_add(1, Ordering::Relaxed);
        &self.inner
    }
}

impl Store for ShardStore {
    fn insert_challenge(
        &self,
        issued: IssuedChallenge,
        limit: Option<ChallengeLimit>,
    ) -> Result<bool, StoreError> {
        self.counted().insert_challenge(issued, limit)
    }
    fn challenge(&self, challenge: &Challenge) -> Result<Option<ChallengeEntry>, StoreError> {
        self.counted().challenge(challenge)
    }
    fn credential(&self, id: &CredentialId) -> Result<Option<CredentialRecord>, StoreError> {
        self.counted().credential(id)
    }
    fn credentials_for_account(
        &self,
        rp_id: &str,
        account_handle: &[u8],
    ) -> Result<Vec<CredentialRecord>, StoreError> {
        self.counted()
            .credentials_for_account(rp_id, account_handle)
    }
    fn commit_registration(
        &self,
        challenge: &Challenge,
        record: &CredentialRecord,
        decision: &Decision,
    ) -> Result<(), CommitError> {
        self.counted()
            .commit_registration(challenge, record, decision)
    }
    fn commit_payment(
        &self,
        challenge: &Challenge,
        id: &CredentialId,
        new_counter: u64,
        app_attest_counter: Option<u32>,
        decision: &Decision,
    ) -> Result<(), CommitError> {
        self.counted()
            .commit_payment(challenge, id, new_counter, app_attest_counter, decision)
    }
    fn commit_status(
        &self,
        id: &CredentialId,
        expected_counter: u64,
        new_counter: u64,
        expected_status: CredentialStatus,
        status: CredentialStatus,
        decision: &Decision,
    ) -> Result<(), CommitError> {
        self.counted().commit_status(
            id,
            expected_counter,
            new_counter,
            expected_status,
            status,
            decision,
        )
    }
    fn flag_credential(&self, flag: &Flag) -> Result<(), CommitError> {
        self.counted().flag_credential(flag)
    }
    fn set_credential_status(
        &self,
        id: &CredentialId,
        status: CredentialStatus,
    ) -> Result<(), CommitError> {
        self.counted().set_credential_status(id, status)
    }
    fn purge_expired_challenges(&self, now: u64) -> Result<usize, StoreError> {
        self.counted().purge_expired_challenges(now)
    }
    fn commit_payment_spending(
        &self,
        spent: &SpentChallenge,
        id: &CredentialId,
        new_counter: u64,
        app_attest_counter: Option<u32>,
        decision: &Decision,
    ) -> Result<(), CommitError> {
        self.counted()
            .commit_payment_spending(spent, id, new_counter, app_attest_counter, decision)
    }
    fn challenge_spent(&self, challenge: &Challenge) -> Result<bool, StoreError> {
        self.counted().challenge_spent(challenge)
    }
    fn purge_spent_challenges(&self, before: u64) -> Result<usize, StoreError> {
        self.counted().purge_spent_challenges(before)
    }
}

impl ServerStore for ShardStore {
    fn append_audit(&self, record: &AuditRecord) -> Result<(), StoreError> {
        self.counted().append_audit(record)
    }
    fn append_rejection(
        &self,
        record: Option<&AuditRecord>,
        counted: Option<&CredentialId>,
        at: u64,
    ) -> Result<(), StoreError> {
        self.counted().append_rejection(record, counted, at)
    }
    fn recent_failures(&self, id: &CredentialId, since: u64) -> Result<u64, StoreError> {
        self.counted().recent_failures(id, since)
    }
    fn failures_and_credential(
        &self,
        id: &CredentialId,
        since: u64,
    ) -> Result<(u64, Option<CredentialRecord>), StoreError> {
        self.counted().failures_and_credential(id, since)
    }
    fn purge_failures(&self, before: u64) -> Result<usize, StoreError> {
        self.counted().purge_failures(before)
    }
    fn audit_entries(&self, after: u64, limit: u64) -> Result<Vec<AuditEntry>, StoreError> {
        self.counted().audit_entries(after, limit)
    }
    fn audit_head(&self) -> Result<(u64, String), StoreError> {
        self.counted().audit_head()
    }
    fn checkpoints(&self, after: u64, limit: u64) -> Result<Vec<Checkpoint>, StoreError> {
        self.counted().checkpoints(after, limit)
    }
    fn last_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        self.counted().last_checkpoint()
    }
    fn insert_checkpoint(&self, checkpoint: &Checkpoint) -> Result<bool, StoreError> {
        self.counted().insert_checkpoint(checkpoint)
    }
    fn set_model_status(
        &self,
        model: &str,
        status: &str,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        self.counted().set_model_status(model, status, audit)
    }
    fn set_credential_status_audited(
        &self,
        id: &CredentialId,
        status: CredentialStatus,
        audit: &AuditRecord,
    ) -> Result<(), CommitError> {
        self.counted()
            .set_credential_status_audited(id, status, audit)
    }
    fn model_statuses(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.counted().model_statuses()
    }
}

/// A request was routed to a shard this process cannot reach now: answered
/// 503 with `Retry-After`; nothing was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("shard {shard} is unreachable; retry later")]
pub struct ShardDown {
    /// The shard.
    pub shard: u32,
}

/// What every shard's verifier is built from (the same for all shards).
#[derive(Clone)]
struct Template {
    rp_id: String,
    trust: TrustConfig,
    policy: Policy,
    android: Option<AndroidTrust>,
    apple: Option<AppleTrust>,
    /// The payment challenge MAC keys (`--stateless-payment-challenges`):
    /// one key set for every shard, so any shard's verifier accepts what
    /// any issued; a challenge is spent on its credential's shard.
    challenge_keys: Option<ChallengeKeys>,
}

impl Template {
    fn verifier(&self, store: ShardStore) -> Result<ShardVerifier, String> {
        let v = Verifier::new(
            &self.rp_id,
            self.trust.clone(),
            self.policy.clone(),
            store,
            SystemClock,
            SystemRandom::new(),
        )
        .map_err(|e| e.to_string())?;
        let v = match &self.android {
            Some(a) => v.with_android(a.clone()),
            None => v,
        };
        let v = match &self.apple {
            Some(a) => v.with_apple(a.clone()),
            None => v,
        };
        Ok(match &self.challenge_keys {
            Some(k) => v.with_challenge_keys(k.clone()),
            None => v,
        })
    }
}

/// Where a shard's store is opened from.
#[derive(Debug, Clone)]
enum Source {
    Sqlite(PathBuf),
    Postgres(String),
}

/// One shard: its source, its verifier while reachable, its operation count.
struct Shard {
    source: Source,
    verifier: RwLock<Option<Arc<ShardVerifier>>>,
    operations: Arc<AtomicU64>,
}

/// The N shards of this server, in shard order.
pub struct Shards {
    shards: Vec<Shard>,
    template: RwLock<Template>,
    pg_max_connections: u32,
    /// Serializes reconnection attempts (one at a time, in the background).
    connecting: Mutex<()>,
}

impl Shards {
    /// Opens every shard of `config`'s layout (applying migrations to each),
    /// with a verifier built from `config`'s trust and policy. Blocking. A
    /// PostgreSQL shard that cannot be reached is left down (logged) and
    /// retried by [`Self::connect_down`]; a SQLite database that cannot be
    /// opened, or a URL that does not parse, fails.
    pub fn open(config: &Config) -> Result<Self, String> {
        let template = Template {
            rp_id: config.rp_id.clone(),
            trust: config.trust()?,
            policy: config.policy()?,
            android: config.android_trust()?,
            apple: config.apple_trust()?,
            challenge_keys: if config.stateless_payment_challenges {
                Some(crate::challenge_keys::load_or_create(
                    &config.challenge_key_path(),
                )?)
            } else {
                None
            },
        };
        // The relying party id is checked once, before any shard opens.
        biopay_core::messages::validate_rp_id(&template.rp_id).map_err(|e| e.to_string())?;
        let sources = match config.store_layout()? {
            StoreLayout::Sqlite(path) => vec![Source::Sqlite(path)],
            StoreLayout::Postgres(urls) => urls
                .into_iter()
                .enumerate()
                .map(|(i, url)| {
                    url.parse::<postgres::Config>()
                        .map_err(|e| format!("shard {i}: bad PostgreSQL URL: {e}"))?;
                    Ok(Source::Postgres(url))
                })
                .collect::<Result<Vec<_>, String>>()?,
        };
        let shards = Self {
            shards: sources
                .into_iter()
                .map(|source| Shard {
                    source,
                    verifier: RwLock::new(None),
                    operations: Arc::new(AtomicU64::new(0)),
                })
                .collect(),
            template: RwLock::new(template),
            pg_max_connections: config.pg_max_connections,
            connecting: Mutex::new(()),
        };
        for k in 0..shards.count() {
            if let Err(e) = shards.connect(k) {
                match shards.source(k) {
                    Some(Source::Postgres(_)) => tracing::error!(
                        shard = k,
                        error = %e,
                        "shard unreachable at startup: requests routed to it get 503 until it is back (retried in the background)"
                    ),
                    _ => return Err(format!("shard {k}: {e}")),
                }
            }
        }
        Ok(shards)
    }

    /// `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        match self.shards.first().map(|s| &s.source) {
            Some(Source::Sqlite(_)) => "sqlite",
            _ => "postgres",
        }
    }

    /// How many shards (a power of two).
    pub fn count(&self) -> u32 {
        u32::try_from(self.shards.len()).unwrap_or(u32::MAX)
    }

    /// The relying party id.
    pub fn rp_id(&self) -> String {
        self.template().rp_id
    }

    /// The shard of an account (of this relying party).
    pub fn of_account(&self, account_handle: &[u8]) -> u32 {
        let rp = self.rp_id();
        shard_of(account_slot(&rp, account_handle), self.count())
    }

    /// The shard of a credential: the slot its id starts with.
    pub fn of_credential(&self, id: &CredentialId) -> u32 {
        shard_of(credential_slot(id), self.count())
    }

    /// Shard `k`'s verifier, or [`ShardDown`] while it is unreachable.
    pub fn get(&self, k: u32) -> Result<Arc<ShardVerifier>, ShardDown> {
        self.slot(k)
            .and_then(|s| {
                s.verifier
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone()
            })
            .ok_or(ShardDown { shard: k })
    }

    /// The shards that are up now, with their index.
    pub fn up(&self) -> Vec<(u32, Arc<ShardVerifier>)> {
        (0..self.count())
            .filter_map(|k| self.get(k).ok().map(|v| (k, v)))
            .collect()
    }

    /// Store operations served so far, per shard.
    pub fn operations(&self) -> Vec<u64> {
        self.shards
            .iter()
            .map(|s| s.operations.load(Ordering::Relaxed))
            .collect()
    }

    /// Tries to open every shard that is down (applying its migrations).
    /// Returns the shards still down. One attempt at a time: a caller
    /// finding another attempt under way returns at once.
    pub fn connect_down(&self) -> Vec<u32> {
        let Ok(_guard) = self.connecting.try_lock() else {
            return self.down();
        };
        for k in self.down() {
            match self.connect(k) {
                Ok(()) => tracing::info!(shard = k, "shard reachable again: serving it"),
                Err(e) => tracing::debug!(shard = k, error = %e, "shard still unreachable"),
            }
        }
        self.down()
    }

    /// The shards that are down now.
    pub fn down(&self) -> Vec<u32> {
        (0..self.count())
            .filter(|k| self.get(*k).is_err())
            .collect()
    }

    /// Replaces the Android status list of every shard's verifier (and of
    /// those opened later).
    pub fn set_android_status_list(&self, list: biopay_core::android::StatusList) {
        if let Some(a) = self
            .template
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .android
            .as_mut()
        {
            a.status_list = list.clone();
        }
        for (_, v) in self.up() {
            v.set_android_status_list(list.clone());
        }
    }

    fn template(&self) -> Template {
        self.template
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn slot(&self, k: u32) -> Option<&Shard> {
        self.shards.get(usize::try_from(k).ok()?)
    }

    fn source(&self, k: u32) -> Option<&Source> {
        self.slot(k).map(|s| &s.source)
    }

    /// Opens shard `k` (migrations included) and builds its verifier, with
    /// the device-model statuses persisted on it.
    fn connect(&self, k: u32) -> Result<(), String> {
        let shard = self.slot(k).ok_or_else(|| format!("no shard {k}"))?;
        let inner = match &shard.source {
            Source::Sqlite(path) => {
                AnyStore::Sqlite(SqliteStore::open(path).map_err(|e| e.to_string())?)
            }
            Source::Postgres(url) => AnyStore::Postgres(
                PgStore::connect(url, self.pg_max_connections).map_err(|e| e.to_string())?,
            ),
        };
        let store = ShardStore {
            index: k,
            inner,
            operations: shard.operations.clone(),
        };
        let verifier = Arc::new(self.template().verifier(store)?);
        refresh_model_statuses(&verifier);
        *shard
            .verifier
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(verifier);
        Ok(())
    }
}

/// Applies the device-model statuses persisted on a shard (set by any
/// process) to that shard's verifier, which refuses early at R4 / P7.
/// Safety does not rest on it: every registration and payment commit reads
/// the persisted status inside its transaction (PROTOCOL.md §6.1.1).
pub fn refresh_model_statuses(verifier: &ShardVerifier) {
    let shard = verifier.store().index();
    match verifier.store().model_statuses() {
        Ok(list) => {
            for (model, status) in list {
                match crate::config::parse_model_status(&status) {
                    Some(s) => {
                        verifier.set_model_status(&model, s);
                    }
                    None => tracing::error!(
                        shard,
                        model,
                        status,
                        "unknown persisted model status: every commit for this model on this shard fails until an operator sets it"
                    ),
                }
            }
        }
        Err(e) => tracing::warn!(shard, error = %e, "reading model statuses failed"),
    }
}
