//! Durable implementations of [`biopay_core::Store`]: SQLite (embedded, the
//! default) and PostgreSQL (several server processes on one database).
//!
//! Both keep the same tables (see [`sql::MIGRATIONS`]): `challenges`,
//! `credentials`, `audit_log` + `audit_head` + `audit_checkpoints`,
//! `model_status` (operator revocations) and `failures` (rate limiting,
//! shared by every process). Every `commit_*` runs in ONE transaction that
//! consumes the challenge with a conditional update (`... WHERE NOT
//! consumed`, row count checked), moves the counter with a conditional update
//! (payments: `... WHERE counter < new AND status = 'active'` and no
//! `model_status` row revoking the credential's device model; deregistration
//! and enrollment change: `... WHERE counter = expected AND status =
//! expected`) and appends the decision
//! to the audit chain (the chain head row is locked, so appends are
//! serialized across processes). Writes go through a [group
//! committer](committer): concurrent operations share a transaction and its
//! flush, each in its own savepoint, and each is answered only after the
//! commit.
//!
//! The operations are written once ([`ops`], against the [`sql::Db`] and
//! [`sql::Backend`] traits); [`sqlite`] and [`postgres`] hold only their
//! dialect: connections, parameter and row conversion, migration locking
//! and PostgreSQL's one-round-trip payment.

pub mod committer;
pub mod ops;
pub mod postgres;
pub mod sql;
pub mod sqlite;

use crate::audit::{AuditEntry, AuditRecord, Checkpoint};
use biopay_core::{
    apple::AppAttestEnvironment,
    messages::Message,
    store::{
        AppAttestKey, ChallengeEntry, ChallengeLimit, CommitError, CredentialKind,
        CredentialRecord, CredentialStatus, Decision, DecisionKind, Flag, IssuedChallenge,
        SpentChallenge, Store, StoreError,
    },
    Challenge, CredentialId, Modality, ModelStatus, PaymentChallenge, RegistrationChallenge,
    SecurityLevel,
};

/// What the server needs from a backend beyond [`Store`]: the audit log,
/// persisted model statuses and read-outs for operators and tests.
pub trait ServerStore: Store {
    /// Appends a record that changed no other state (an operator action) to the audit log.
    fn append_audit(&self, record: &AuditRecord) -> Result<(), StoreError>;
    /// In one transaction: appends the rejection `record` (if any) to the audit
    /// log and, when `counted` names a credential, counts a failure at `at`
    /// (Unix seconds) against it and its account (rate limiting).
    fn append_rejection(
        &self,
        record: Option<&AuditRecord>,
        counted: Option<&CredentialId>,
        at: u64,
    ) -> Result<(), StoreError>;
    /// Failures counted at or after `since` (Unix seconds): the larger of the
    /// credential's count and its account's count. A success
    /// (`commit_payment`) clears the credential's count.
    fn recent_failures(&self, id: &CredentialId, since: u64) -> Result<u64, StoreError>;
    /// [`Self::recent_failures`] and the credential record, read together
    /// for a payment (one query where the backend can: the accepted path's
    /// one read, issue #12). The default reads them one after the other.
    fn failures_and_credential(
        &self,
        id: &CredentialId,
        since: u64,
    ) -> Result<(u64, Option<CredentialRecord>), StoreError> {
        Ok((self.recent_failures(id, since)?, self.credential(id)?))
    }
    /// Forgets failures older than `before` (Unix seconds). Returns how many.
    fn purge_failures(&self, before: u64) -> Result<usize, StoreError>;
    /// The audit log entries with `seq > after`, in order, at most `limit`.
    fn audit_entries(&self, after: u64, limit: u64) -> Result<Vec<AuditEntry>, StoreError>;
    /// The head of the log: (last seq, its hash hex).
    fn audit_head(&self) -> Result<(u64, String), StoreError>;
    /// The checkpoints with `seq > after`, by seq, at most `limit`.
    fn checkpoints(&self, after: u64, limit: u64) -> Result<Vec<Checkpoint>, StoreError>;
    /// The checkpoint with the highest seq, if any.
    fn last_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError>;
    /// Stores a checkpoint if it extends the chain (see
    /// [`checkpoint_follows`]), in the write transaction so that two
    /// processes cannot both extend it from the same predecessor. Returns
    /// whether it was stored.
    fn insert_checkpoint(&self, checkpoint: &Checkpoint) -> Result<bool, StoreError>;
    /// Persists a device model's status and appends `audit` (the operator's
    /// action) in the same transaction: both or neither.
    fn set_model_status(
        &self,
        model: &str,
        status: &str,
        audit: &AuditRecord,
    ) -> Result<(), StoreError>;
    /// An operator's change of a credential's status (§7.2; deregistration
    /// stays final) with its audit record, in one transaction: both or
    /// neither.
    fn set_credential_status_audited(
        &self,
        id: &CredentialId,
        status: CredentialStatus,
        audit: &AuditRecord,
    ) -> Result<(), CommitError>;
    /// The persisted model statuses.
    fn model_statuses(&self) -> Result<Vec<(String, String)>, StoreError>;
}

/// Whether `c` may follow `last` (the stored checkpoint with the highest
/// seq): a chained checkpoint past it that names its hash (64 zeros when
/// `last` is absent or unchained).
pub fn checkpoint_follows(c: &Checkpoint, last: Option<&Checkpoint>) -> bool {
    let expected = match last {
        Some(l) if l.version == crate::audit::CHECKPOINT_CHAINED => l.checkpoint_hash(),
        _ => crate::audit::genesis_hex(),
    };
    c.version == crate::audit::CHECKPOINT_CHAINED
        && last.is_none_or(|l| c.seq > l.seq)
        && c.prev_checkpoint_hash == expected
}

pub(crate) fn kind_str(k: DecisionKind) -> &'static str {
    match k {
        DecisionKind::Registration
        | DecisionKind::PlatformRegistration
        | DecisionKind::AppleRegistration => "registration",
        DecisionKind::Payment => "payment",
        DecisionKind::Deregistration => "deregistration",
        DecisionKind::EnrollmentChange => "enrollment_change",
    }
}

/// The audit record of an accepted decision.
pub(crate) fn accepted_record(d: &Decision) -> AuditRecord {
    let step = d.kind.commit_step();
    AuditRecord {
        at: d.at,
        kind: kind_str(d.kind).to_owned(),
        outcome: "accepted".to_owned(),
        step: step.code().to_owned(),
        credential: d.credential_id.to_hex(),
        statement_hash: hex::encode(d.statement_hash),
        reason: String::new(),
    }
}

/// The audit record of a rejection that flagged a credential (P15, P19),
/// written in the same transaction as the status change.
pub(crate) fn flag_record(f: &Flag) -> AuditRecord {
    AuditRecord {
        at: f.at,
        kind: kind_str(DecisionKind::Payment).to_owned(),
        outcome: "rejected".to_owned(),
        step: f.step.code().to_owned(),
        credential: f.credential_id.to_hex(),
        statement_hash: hex::encode(f.statement_hash),
        reason: f.reason.clone(),
    }
}

pub(crate) fn modalities_str(m: &[Modality]) -> String {
    m.iter()
        .map(|m| m.to_u64().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

pub(crate) fn parse_modalities(s: &str) -> Result<Vec<Modality>, StoreError> {
    if s.is_empty() {
        return Ok(Vec::new());
    }
    s.split(',')
        .map(|p| {
            p.parse::<u64>()
                .ok()
                .and_then(Modality::from_u64)
                .ok_or_else(|| StoreError(format!("bad modality {p:?} in store")))
        })
        .collect()
}

pub(crate) fn i64_of(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError(format!("value {v} too large for the store")))
}

pub(crate) fn u64_of(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError(format!("negative value {v} in store")))
}

/// A credential row as read from either backend.
pub(crate) struct CredentialRow {
    pub credential_id: Vec<u8>,
    pub rp_id: String,
    pub account_handle: Vec<u8>,
    pub public_key: Vec<u8>,
    pub modalities: String,
    pub enrollment_epoch: Vec<u8>,
    pub security_level: i64,
    pub kind: String,
    pub device_model: String,
    pub counter: i64,
    pub status: String,
    pub registered_at: i64,
}

impl CredentialRow {
    pub(crate) fn into_record(self) -> Result<CredentialRecord, StoreError> {
        let bad = |what: &str| StoreError(format!("bad {what} in stored credential"));
        Ok(CredentialRecord {
            credential_id: CredentialId::new(self.credential_id).map_err(|_| bad("id"))?,
            rp_id: self.rp_id,
            account_handle: self.account_handle,
            public_key: self.public_key,
            modalities: parse_modalities(&self.modalities)?,
            enrollment_epoch: self
                .enrollment_epoch
                .try_into()
                .map_err(|_| bad("enrollment epoch"))?,
            security_level: u64::try_from(self.security_level)
                .ok()
                .and_then(SecurityLevel::from_u64)
                .ok_or_else(|| bad("security level"))?,
            kind: CredentialKind::parse(&self.kind).ok_or_else(|| bad("kind"))?,
            device_model: self.device_model,
            counter: u64_of(self.counter)?,
            status: CredentialStatus::parse(&self.status).ok_or_else(|| bad("status"))?,
            registered_at: u64_of(self.registered_at)?,
            app_attest: None,
        })
    }
}

/// The columns of `app_attest_keys` (migration 5), as read from either
/// backend: key id, public key, app id, environment, counter, receipt.
pub(crate) type AppAttestRow = (Vec<u8>, Vec<u8>, String, String, i64, Vec<u8>);

/// The App Attest key stored beside an `apple_app_attest` credential.
pub(crate) fn app_attest_key(row: AppAttestRow) -> Result<AppAttestKey, StoreError> {
    let bad = |what: &str| StoreError(format!("bad {what} in stored App Attest key"));
    let (key_id, public_key, app_id, environment, counter, receipt) = row;
    Ok(AppAttestKey {
        key_id: key_id.try_into().map_err(|_| bad("key id"))?,
        public_key,
        app_id,
        environment: environment
            .parse::<AppAttestEnvironment>()
            .map_err(|_| bad("environment"))?,
        counter: u32::try_from(counter).map_err(|_| bad("counter"))?,
        receipt,
    })
}

/// Attaches the App Attest key to an `apple_app_attest` record, read by
/// `read`; such a record without its key fails closed.
pub(crate) fn with_app_attest(
    mut record: CredentialRecord,
    read: impl FnOnce(&CredentialId) -> Result<Option<AppAttestRow>, StoreError>,
) -> Result<CredentialRecord, StoreError> {
    if record.kind == CredentialKind::AppleAppAttest {
        let row = read(&record.credential_id)?.ok_or_else(|| {
            StoreError("stored apple_app_attest credential has no App Attest key".into())
        })?;
        record.app_attest = Some(app_attest_key(row)?);
    }
    Ok(record)
}

/// A challenge as stored: kind, CBOR body, counter at issue, expiry.
pub(crate) fn challenge_columns(
    issued: &IssuedChallenge,
) -> Result<(&'static str, Vec<u8>, i64, i64), StoreError> {
    Ok(match issued {
        IssuedChallenge::Registration(c) => ("registration", c.to_cbor(), 0, i64_of(c.expires_at)?),
        IssuedChallenge::Payment {
            challenge,
            counter_at_issue,
        } => (
            "payment",
            challenge.to_cbor(),
            i64_of(*counter_at_issue)?,
            i64_of(challenge.expires_at)?,
        ),
    })
}

pub(crate) fn challenge_entry(
    kind: &str,
    body: &[u8],
    counter_at_issue: i64,
    consumed: bool,
) -> Result<ChallengeEntry, StoreError> {
    let bad = |e: biopay_core::DecodeError| StoreError(format!("stored challenge: {e}"));
    let issued = match kind {
        "registration" => {
            IssuedChallenge::Registration(RegistrationChallenge::from_cbor(body).map_err(bad)?)
        }
        "payment" => IssuedChallenge::Payment {
            challenge: PaymentChallenge::from_cbor(body).map_err(bad)?,
            counter_at_issue: u64_of(counter_at_issue)?,
        },
        other => return Err(StoreError(format!("stored challenge of kind {other:?}"))),
    };
    Ok(ChallengeEntry { issued, consumed })
}

/// A credential as `commit_payment` finds it when its conditional update
/// touched no row: counter, status, and the persisted status of its device
/// model (if an operator set one).
pub(crate) type PaymentRow = (i64, String, Option<String>);

/// Why `commit_payment`'s conditional update (status active, model not
/// revoked, stored counter below the new one) touched no row, given the row
/// as it is now, checked in the order of docs/PROTOCOL.md §7.3.
pub(crate) fn payment_conflict(now: Option<PaymentRow>) -> CommitError {
    let Some((counter, status, model)) = now else {
        return CommitError::UnknownCredential;
    };
    match CredentialStatus::parse(&status) {
        Some(CredentialStatus::Active) => {}
        Some(s) => return CommitError::CredentialNotActive(s),
        None => return CommitError::Backend(StoreError(format!("bad status {status:?} in store"))),
    }
    if let Err(e) = check_model(model.as_deref()) {
        return e;
    }
    match u64_of(counter) {
        Ok(stored) => CommitError::CounterSuperseded { stored },
        Err(e) => CommitError::Backend(e),
    }
}

/// Why `commit_payment`'s conditional update of the App Attest counter
/// touched no row, given the stored counter (`None`: no App Attest key).
pub(crate) fn app_attest_conflict(stored: Option<i64>) -> CommitError {
    match stored.map(u32::try_from) {
        Some(Ok(stored)) => CommitError::AppAttestCounterSuperseded { stored },
        Some(Err(_)) => CommitError::Backend(StoreError("bad App Attest counter in store".into())),
        None => CommitError::Backend(StoreError(
            "an App Attest counter for a credential without an App Attest key".into(),
        )),
    }
}

/// Whether a device model's persisted status (`None`: never set by an
/// operator, the trust configuration decides) admits a commit. A status the
/// server cannot read fails closed.
pub(crate) fn check_model(status: Option<&str>) -> Result<(), CommitError> {
    match status.map(|s| (s, crate::config::parse_model_status(s))) {
        None | Some((_, Some(ModelStatus::Active))) => Ok(()),
        Some((_, Some(s))) => Err(CommitError::DeviceModelNotActive(s)),
        Some((s, None)) => Err(CommitError::Backend(StoreError(format!(
            "bad device model status {s:?} in store"
        )))),
    }
}

/// The challenge bytes as stored.
/// The id (and account handle) of filler credential `i` copied from
/// `template`: 16 bytes of SHA-256 over a label, the template's id and `i`.
pub fn filler_id(template: &CredentialId, i: u64) -> Vec<u8> {
    let mut input = b"biopay load filler credential".to_vec();
    input.extend_from_slice(template.as_bytes());
    input.extend_from_slice(&i.to_be_bytes());
    biopay_core::crypto::sha256(&input)
        .get(..16)
        .map(<[u8]>::to_vec)
        .unwrap_or_default()
}

pub(crate) fn challenge_key(c: &Challenge) -> Vec<u8> {
    c.to_vec()
}

/// Either backend, chosen at startup.
pub enum AnyStore {
    /// Embedded SQLite.
    Sqlite(sqlite::SqliteStore),
    /// PostgreSQL.
    Postgres(postgres::PgStore),
}

impl AnyStore {
    /// A short name for logs and metrics.
    pub fn backend_name(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    /// DANGER (load tests only): inserts `count` filler credentials, numbered
    /// from `first`, copied from `template` (its public key, model, epoch,
    /// rp; each with its own id and account handle, [`filler_id`], active,
    /// counter 0), in one transaction, without attestation, challenge or
    /// audit entry. For measuring a store that holds a million credentials
    /// (`biopay-server load --prepopulate`); never on a production database.
    pub fn danger_insert_filler_credentials(
        &self,
        template: &CredentialRecord,
        first: u64,
        count: u64,
    ) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.danger_insert_filler_credentials(template, first, count),
            Self::Postgres(s) => s.danger_insert_filler_credentials(template, first, count),
        }
    }

    /// Whether its calls block on a tokio runtime of their own (the
    /// synchronous PostgreSQL client), which cannot run on an async worker.
    pub fn blocks_on_own_runtime(&self) -> bool {
        matches!(self, Self::Postgres(_))
    }

    /// Group commit counters: (transactions, operations, batches re-run with
    /// savepoints after a failed operation) so far.
    pub fn commit_stats(&self) -> (u64, u64, u64) {
        match self {
            Self::Sqlite(s) => s.commit_stats(),
            Self::Postgres(s) => s.commit_stats(),
        }
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AnyStore::Sqlite($s) => $e,
            AnyStore::Postgres($s) => $e,
        }
    };
}

impl Store for AnyStore {
    fn insert_challenge(
        &self,
        issued: IssuedChallenge,
        limit: Option<ChallengeLimit>,
    ) -> Result<bool, StoreError> {
        delegate!(self, s => s.insert_challenge(issued, limit))
    }
    fn challenge(&self, challenge: &Challenge) -> Result<Option<ChallengeEntry>, StoreError> {
        delegate!(self, s => s.challenge(challenge))
    }
    fn credential(&self, id: &CredentialId) -> Result<Option<CredentialRecord>, StoreError> {
        delegate!(self, s => s.credential(id))
    }
    fn credentials_for_account(
        &self,
        rp_id: &str,
        account_handle: &[u8],
    ) -> Result<Vec<CredentialRecord>, StoreError> {
        delegate!(self, s => s.credentials_for_account(rp_id, account_handle))
    }
    fn commit_registration(
        &self,
        challenge: &Challenge,
        record: &CredentialRecord,
        decision: &Decision,
    ) -> Result<(), CommitError> {
        delegate!(self, s => s.commit_registration(challenge, record, decision))
    }
    fn commit_payment(
        &self,
        challenge: &Challenge,
        id: &CredentialId,
        new_counter: u64,
        app_attest_counter: Option<u32>,
        decision: &Decision,
    ) -> Result<(), CommitError> {
        delegate!(self, s => s.commit_payment(challenge, id, new_counter, app_attest_counter, decision))
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
        delegate!(self, s => s.commit_status(id, expected_counter, new_counter, expected_status, status, decision))
    }
    fn flag_credential(&self, flag: &Flag) -> Result<(), CommitError> {
        delegate!(self, s => s.flag_credential(flag))
    }
    fn set_credential_status(
        &self,
        id: &CredentialId,
        status: CredentialStatus,
    ) -> Result<(), CommitError> {
        delegate!(self, s => s.set_credential_status(id, status))
    }
    fn purge_expired_challenges(&self, now: u64) -> Result<usize, StoreError> {
        delegate!(self, s => s.purge_expired_challenges(now))
    }
    fn commit_payment_spending(
        &self,
        spent: &SpentChallenge,
        id: &CredentialId,
        new_counter: u64,
        app_attest_counter: Option<u32>,
        decision: &Decision,
    ) -> Result<(), CommitError> {
        delegate!(self, s => s.commit_payment_spending(spent, id, new_counter, app_attest_counter, decision))
    }
    fn challenge_spent(&self, challenge: &Challenge) -> Result<bool, StoreError> {
        delegate!(self, s => s.challenge_spent(challenge))
    }
    fn purge_spent_challenges(&self, before: u64) -> Result<usize, StoreError> {
        delegate!(self, s => s.purge_spent_challenges(before))
    }
}

impl ServerStore for AnyStore {
    fn append_audit(&self, record: &AuditRecord) -> Result<(), StoreError> {
        delegate!(self, s => s.append_audit(record))
    }
    fn append_rejection(
        &self,
        record: Option<&AuditRecord>,
        counted: Option<&CredentialId>,
        at: u64,
    ) -> Result<(), StoreError> {
        delegate!(self, s => s.append_rejection(record, counted, at))
    }
    fn recent_failures(&self, id: &CredentialId, since: u64) -> Result<u64, StoreError> {
        delegate!(self, s => s.recent_failures(id, since))
    }
    fn failures_and_credential(
        &self,
        id: &CredentialId,
        since: u64,
    ) -> Result<(u64, Option<CredentialRecord>), StoreError> {
        delegate!(self, s => s.failures_and_credential(id, since))
    }
    fn purge_failures(&self, before: u64) -> Result<usize, StoreError> {
        delegate!(self, s => s.purge_failures(before))
    }
    fn audit_entries(&self, after: u64, limit: u64) -> Result<Vec<AuditEntry>, StoreError> {
        delegate!(self, s => s.audit_entries(after, limit))
    }
    fn audit_head(&self) -> Result<(u64, String), StoreError> {
        delegate!(self, s => s.audit_head())
    }
    fn checkpoints(&self, after: u64, limit: u64) -> Result<Vec<Checkpoint>, StoreError> {
        delegate!(self, s => s.checkpoints(after, limit))
    }
    fn last_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        delegate!(self, s => s.last_checkpoint())
    }
    fn insert_checkpoint(&self, checkpoint: &Checkpoint) -> Result<bool, StoreError> {
        delegate!(self, s => s.insert_checkpoint(checkpoint))
    }
    fn set_model_status(
        &self,
        model: &str,
        status: &str,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        delegate!(self, s => s.set_model_status(model, status, audit))
    }
    fn set_credential_status_audited(
        &self,
        id: &CredentialId,
        status: CredentialStatus,
        audit: &AuditRecord,
    ) -> Result<(), CommitError> {
        delegate!(self, s => s.set_credential_status_audited(id, status, audit))
    }
    fn model_statuses(&self) -> Result<Vec<(String, String)>, StoreError> {
        delegate!(self, s => s.model_statuses())
    }
}
