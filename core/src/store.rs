//! What the verifier keeps between calls, behind the [`Store`] trait, and an
//! in-memory implementation. The server crate implements the same trait on
//! SQLite and PostgreSQL; every implementation must make each `commit_*`
//! operation atomic (docs/PROTOCOL.md §7).

use crate::serde_hex::ser_hex;
use crate::{
    messages::{
        Challenge, CredentialId, Modality, PaymentChallenge, RegistrationChallenge, SecurityLevel,
    },
    policy::{AppAttestEnvironment, ModelStatus},
    steps::Step,
};
use serde::Serialize;
use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard, PoisonError},
};

/// A store backend failure. The verifier fails closed on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// Lifecycle status of a credential (docs/PROTOCOL.md §7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CredentialStatus {
    /// May approve payments.
    Active,
    /// Suspended by an operator.
    Suspended,
    /// A counter went backwards: the key may have been cloned.
    SuspectedClone,
    /// The enrolled biometrics changed; re-registration is needed.
    EnrollmentChanged,
    /// Removed by the user or the relying party.
    Deregistered,
}

impl CredentialStatus {
    /// Stable string form for storage and APIs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::SuspectedClone => "suspected_clone",
            Self::EnrollmentChanged => "enrollment_changed",
            Self::Deregistered => "deregistered",
        }
    }

    /// Parses [`Self::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "active" => Self::Active,
            "suspended" => Self::Suspended,
            "suspected_clone" => Self::SuspectedClone,
            "enrollment_changed" => Self::EnrollmentChanged,
            "deregistered" => Self::Deregistered,
            _ => return None,
        })
    }
}

/// What vouches for a credential's statements (docs/PROTOCOL.md §7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CredentialKind {
    /// Registered with a biopay [`crate::KeyAttestation`]: the TEE itself
    /// assembles modality, counter, enrollment epoch and the displayed text.
    TeeAttested,
    /// Registered with a platform keystore attestation (Android Keystore):
    /// the hardware holds the key and enforces biometric use, but the app
    /// assembles modality, counter and display, so those claims are weaker.
    PlatformKeystore,
    /// Registered with an Apple App Attest attestation bound to a Secure
    /// Enclave key (docs/PROTOCOL.md §13): Apple certifies that a genuine
    /// instance of an allowed app on a genuine Apple device made the binding;
    /// that each signature needs a fresh biometric is enforced by the app's
    /// own code (`.biometryCurrentSet`), **not attested by hardware**. The app
    /// assembles modality, counter and display, as for a platform keystore.
    AppleAppAttest,
}

impl CredentialKind {
    /// Stable string form for storage and APIs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TeeAttested => "tee_attested",
            Self::PlatformKeystore => "platform_keystore",
            Self::AppleAppAttest => "apple_app_attest",
        }
    }

    /// Parses [`Self::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "tee_attested" => Some(Self::TeeAttested),
            "platform_keystore" => Some(Self::PlatformKeystore),
            "apple_app_attest" => Some(Self::AppleAppAttest),
            _ => None,
        }
    }
}

/// A registered credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CredentialRecord {
    /// The credential id.
    pub credential_id: CredentialId,
    /// The relying party.
    pub rp_id: String,
    /// The account.
    #[serde(serialize_with = "ser_hex")]
    pub account_handle: Vec<u8>,
    /// SEC1 uncompressed P-256 public key.
    #[serde(serialize_with = "ser_hex")]
    pub public_key: Vec<u8>,
    /// Modalities the key is bound to.
    pub modalities: Vec<Modality>,
    /// Enrollment epoch at registration.
    #[serde(serialize_with = "ser_hex")]
    pub enrollment_epoch: [u8; 32],
    /// Where the key lives.
    pub security_level: SecurityLevel,
    /// What vouches for the credential's statements.
    pub kind: CredentialKind,
    /// The attested device model.
    pub device_model: String,
    /// Last accepted signature counter.
    pub counter: u64,
    /// Lifecycle status.
    pub status: CredentialStatus,
    /// Registration time, Unix seconds.
    pub registered_at: u64,
    /// The App Attest key of a [`CredentialKind::AppleAppAttest`]
    /// credential; `None` for every other kind.
    pub app_attest: Option<AppAttestKey>,
}

/// The App Attest key stored with an Apple credential (docs/PROTOCOL.md
/// §13.8): what verifies its assertions (§13.5) and the receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppAttestKey {
    /// Apple's key id: SHA-256 of `public_key`.
    #[serde(serialize_with = "ser_hex")]
    pub key_id: [u8; 32],
    /// The attested App Attest public key, an uncompressed P-256 point.
    #[serde(serialize_with = "ser_hex")]
    pub public_key: Vec<u8>,
    /// The allowed app id (`TEAMID.bundle.id`) the attestation named.
    pub app_id: String,
    /// The environment of the attestation.
    pub environment: AppAttestEnvironment,
    /// The last accepted assertion counter (0 after the attestation).
    pub counter: u32,
    /// Apple's receipt from the attestation, unverified; exchanging it for
    /// the fraud metric needs Apple's server (§13.2).
    #[serde(serialize_with = "ser_hex")]
    pub receipt: Vec<u8>,
}

/// A challenge the verifier issued, as stored until it is used or collected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssuedChallenge {
    /// For a registration.
    Registration(RegistrationChallenge),
    /// For a payment; holds the transaction the assertion must match and the
    /// credential's counter when the challenge was issued (docs/PROTOCOL.md §6.4, P19).
    Payment {
        /// The challenge as sent.
        challenge: PaymentChallenge,
        /// The credential's stored counter at issue time.
        counter_at_issue: u64,
    },
}

impl IssuedChallenge {
    /// The challenge bytes.
    pub fn challenge(&self) -> &Challenge {
        match self {
            Self::Registration(c) => &c.challenge,
            Self::Payment { challenge, .. } => &challenge.challenge,
        }
    }
    /// Expiry, Unix seconds.
    pub fn expires_at(&self) -> u64 {
        match self {
            Self::Registration(c) => c.expires_at,
            Self::Payment { challenge, .. } => challenge.expires_at,
        }
    }
    /// The account the challenge was issued for.
    pub fn account_handle(&self) -> &[u8] {
        match self {
            Self::Registration(c) => &c.account_handle,
            Self::Payment { challenge, .. } => &challenge.account_handle,
        }
    }
}

/// The per-account challenge issuance limit (docs/PROTOCOL.md §6.1.3): a
/// new challenge is stored only while fewer than `max` challenges of the same
/// account are outstanding at `now` (unconsumed and unexpired). A shopper
/// who pays, however often, holds one at a time; a flood of unanswered
/// challenges stops at `max` until they expire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChallengeLimit {
    /// At most this many outstanding challenges per account.
    pub max: u32,
    /// The issuing time, Unix seconds.
    pub now: u64,
}

/// A stored challenge and whether it has been used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeEntry {
    /// The challenge as issued.
    pub issued: IssuedChallenge,
    /// Whether a statement has consumed it.
    pub consumed: bool,
}

/// A self-authenticating payment challenge spent by an accepted payment
/// (docs/PROTOCOL.md §7.1): the commit inserts it, a second insert of the
/// same bytes is [`CommitError::ChallengeUsed`]; it may be deleted once
/// `expires_at` plus the clock skew has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpentChallenge {
    /// The challenge bytes.
    pub challenge: Challenge,
    /// The challenge's expiry, Unix seconds.
    pub expires_at: u64,
}

/// The accepted decision recorded in the same atomic operation as the state
/// change (servers append it to their audit log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// What was accepted.
    pub kind: DecisionKind,
    /// The credential concerned.
    pub credential_id: CredentialId,
    /// SHA-256 of the whole signed statement.
    #[serde(serialize_with = "ser_hex")]
    pub statement_hash: [u8; 32],
    /// Verification time, Unix seconds.
    pub at: u64,
}

/// The kind of an accepted statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    /// A key attestation registered a credential (§6.3).
    Registration,
    /// A platform-keystore registration registered a credential (§12.5).
    PlatformRegistration,
    /// An Apple App Attest registration registered a credential (§13.8).
    AppleRegistration,
    /// A payment assertion approved a payment.
    Payment,
    /// A deregistration removed a credential.
    Deregistration,
    /// An enrollment change blocked a credential.
    EnrollmentChange,
}

impl DecisionKind {
    /// The step that commits this kind of decision: the one step code that
    /// audit records, metrics and answers name for an acceptance.
    pub fn commit_step(self) -> Step {
        match self {
            Self::Registration => Step::R16Commit,
            Self::PlatformRegistration => Step::A17Commit,
            Self::AppleRegistration => Step::K13Commit,
            Self::Payment => Step::P20Commit,
            Self::Deregistration => Step::D9Commit,
            Self::EnrollmentChange => Step::E10Commit,
        }
    }
}

/// A rejection of a correctly signed statement that flags its credential
/// (docs/PROTOCOL.md §6.4: P15 enrollment changed, P19 suspected clone). The
/// status change and the record of the rejection are one atomic operation:
/// servers append it to their audit log in the same transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    /// The credential concerned.
    pub credential_id: CredentialId,
    /// The status it gets if it is still [`CredentialStatus::Active`].
    pub status: CredentialStatus,
    /// The verification step that rejected the statement (P15 or P19).
    pub step: Step,
    /// Why, as the rejection states it.
    pub reason: String,
    /// SHA-256 of the whole signed statement.
    pub statement_hash: [u8; 32],
    /// Verification time, Unix seconds.
    pub at: u64,
}

/// Why an atomic commit did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommitError {
    /// The challenge is unknown or was consumed (by a concurrent request).
    #[error("challenge already used")]
    ChallengeUsed,
    /// The credential id exists already.
    #[error("credential already exists")]
    CredentialExists,
    /// The credential is unknown.
    #[error("unknown credential")]
    UnknownCredential,
    /// `commit_status` only: the stored counter or status changed since it
    /// was read (a concurrent statement).
    #[error("credential changed concurrently")]
    CounterConflict,
    /// `commit_payment` only: the stored counter is already at or above the
    /// statement's counter; a later statement of the same credential was
    /// accepted first (docs/PROTOCOL.md §7.3).
    #[error("counter superseded by stored {stored}")]
    CounterSuperseded {
        /// The stored counter found by the commit.
        stored: u64,
    },
    /// `commit_payment` only: the stored App Attest counter is already at or
    /// above the assertion's (docs/PROTOCOL.md §13.9, J4).
    #[error("App Attest counter superseded by stored {stored}")]
    AppAttestCounterSuperseded {
        /// The stored App Attest counter found by the commit.
        stored: u32,
    },
    /// The credential is no longer active (changed concurrently).
    #[error("credential no longer active")]
    CredentialNotActive(CredentialStatus),
    /// The device model's status, as persisted in the store, is not active:
    /// an operator revoked it, possibly through another process whose
    /// change this process has not loaded yet (docs/PROTOCOL.md §6.1.1).
    #[error("device model is {0:?}")]
    DeviceModelNotActive(ModelStatus),
    /// The backend failed.
    #[error("{0}")]
    Backend(#[from] StoreError),
}

/// Durable verifier state. Implementations must be safe to share between threads
/// and must make each `commit_*` method atomic: either every effect happens or none.
pub trait Store: Send + Sync {
    /// Stores a newly issued challenge. With a `limit`, the count of the
    /// account's outstanding challenges and the insert are one atomic
    /// operation: returns `Ok(false)`, storing nothing, when `limit.max` of
    /// them exist already.
    fn insert_challenge(
        &self,
        issued: IssuedChallenge,
        limit: Option<ChallengeLimit>,
    ) -> Result<bool, StoreError>;

    /// Reads a challenge.
    fn challenge(&self, challenge: &Challenge) -> Result<Option<ChallengeEntry>, StoreError>;

    /// Reads a credential.
    fn credential(&self, id: &CredentialId) -> Result<Option<CredentialRecord>, StoreError>;

    /// Lists the credentials of an account.
    fn credentials_for_account(
        &self,
        rp_id: &str,
        account_handle: &[u8],
    ) -> Result<Vec<CredentialRecord>, StoreError>;

    /// Atomically: marks `challenge` consumed (it must be unconsumed), checks
    /// that the status the store holds for `record.device_model`, if any, is
    /// active ([`CommitError::DeviceModelNotActive`]), inserts `record` (its
    /// id must be new) and records `decision`.
    fn commit_registration(
        &self,
        challenge: &Challenge,
        record: &CredentialRecord,
        decision: &Decision,
    ) -> Result<(), CommitError>;

    /// Atomically: marks `challenge` consumed (it must be unconsumed), checks
    /// that the credential is still [`CredentialStatus::Active`], that the
    /// status the store holds for its device model, if any, is active
    /// ([`CommitError::DeviceModelNotActive`]) and that its stored counter is
    /// below `new_counter` ([`CommitError::CounterSuperseded`] otherwise);
    /// with `app_attest_counter`, that the credential has an App Attest key
    /// whose stored counter is below it
    /// ([`CommitError::AppAttestCounterSuperseded`] otherwise); sets the
    /// counter to `new_counter` (and the App Attest counter) and records
    /// `decision`.
    fn commit_payment(
        &self,
        challenge: &Challenge,
        id: &CredentialId,
        new_counter: u64,
        app_attest_counter: Option<u32>,
        decision: &Decision,
    ) -> Result<(), CommitError>;

    /// As [`Self::commit_payment`], for a self-authenticating challenge
    /// (docs/PROTOCOL.md §6.1.3, §7.3): instead of marking a stored challenge
    /// consumed, inserts `spent`, which must not be present
    /// ([`CommitError::ChallengeUsed`] otherwise), in the same atomic
    /// operation. The default fails closed: a store that does not implement
    /// it cannot accept such payments.
    fn commit_payment_spending(
        &self,
        spent: &SpentChallenge,
        id: &CredentialId,
        new_counter: u64,
        app_attest_counter: Option<u32>,
        decision: &Decision,
    ) -> Result<(), CommitError> {
        let _ = (spent, id, new_counter, app_attest_counter, decision);
        Err(CommitError::Backend(StoreError(
            "this store does not record spent payment challenges".into(),
        )))
    }

    /// Whether a self-authenticating challenge is recorded as spent. Read
    /// only to name a rejection (`P9 ChallengeAlreadyUsed`), never to accept.
    fn challenge_spent(&self, challenge: &Challenge) -> Result<bool, StoreError> {
        let _ = challenge;
        Ok(false)
    }

    /// Deletes the spent-challenge entries whose `expires_at` is before
    /// `before`. Returns how many.
    fn purge_spent_challenges(&self, before: u64) -> Result<usize, StoreError> {
        let _ = before;
        Ok(0)
    }

    /// Atomically: if the credential's counter is still `expected_counter` and
    /// its status still `expected_status`, moves the counter to `new_counter`,
    /// sets `status` and records `decision`.
    fn commit_status(
        &self,
        id: &CredentialId,
        expected_counter: u64,
        new_counter: u64,
        expected_status: CredentialStatus,
        status: CredentialStatus,
        decision: &Decision,
    ) -> Result<(), CommitError>;

    /// Atomically: if the credential is [`CredentialStatus::Active`], sets
    /// `flag.status`: a security event on a correctly signed statement (P15,
    /// P19); and, whatever the status, records the rejection `flag`. A
    /// credential in any other status is left unchanged. If the record cannot
    /// be written, the status is not changed either.
    fn flag_credential(&self, flag: &Flag) -> Result<(), CommitError>;

    /// Sets a credential's status (an operator action). No effect on the
    /// counter. A deregistered credential stays deregistered
    /// ([`CommitError::CredentialNotActive`]).
    fn set_credential_status(
        &self,
        id: &CredentialId,
        status: CredentialStatus,
    ) -> Result<(), CommitError>;

    /// Deletes challenges that expired before `now`. Returns how many.
    fn purge_expired_challenges(&self, now: u64) -> Result<usize, StoreError>;
}

/// A shared store: several verifiers (as several processes on one database
/// would) use one store through `Arc`s. Every method forwards.
impl<T: Store + ?Sized> Store for std::sync::Arc<T> {
    fn insert_challenge(
        &self,
        issued: IssuedChallenge,
        limit: Option<ChallengeLimit>,
    ) -> Result<bool, StoreError> {
        (**self).insert_challenge(issued, limit)
    }
    fn challenge(&self, challenge: &Challenge) -> Result<Option<ChallengeEntry>, StoreError> {
        (**self).challenge(challenge)
    }
    fn credential(&self, id: &CredentialId) -> Result<Option<CredentialRecord>, StoreError> {
        (**self).credential(id)
    }
    fn credentials_for_account(
        &self,
        rp_id: &str,
        account_handle: &[u8],
    ) -> Result<Vec<CredentialRecord>, StoreError> {
        (**self).credentials_for_account(rp_id, account_handle)
    }
    fn commit_registration(
        &self,
        challenge: &Challenge,
        record: &CredentialRecord,
        decision: &Decision,
    ) -> Result<(), CommitError> {
        (**self).commit_registration(challenge, record, decision)
    }
    fn commit_payment(
        &self,
        challenge: &Challenge,
        id: &CredentialId,
        new_counter: u64,
        app_attest_counter: Option<u32>,
        decision: &Decision,
    ) -> Result<(), CommitError> {
        (**self).commit_payment(challenge, id, new_counter, app_attest_counter, decision)
    }
    fn commit_payment_spending(
        &self,
        spent: &SpentChallenge,
        id: &CredentialId,
        new_counter: u64,
        app_attest_counter: Option<u32>,
        decision: &Decision,
    ) -> Result<(), CommitError> {
        (**self).commit_payment_spending(spent, id, new_counter, app_attest_counter, decision)
    }
    fn challenge_spent(&self, challenge: &Challenge) -> Result<bool, StoreError> {
        (**self).challenge_spent(challenge)
    }
    fn purge_spent_challenges(&self, before: u64) -> Result<usize, StoreError> {
        (**self).purge_spent_challenges(before)
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
        (**self).commit_status(
            id,
            expected_counter,
            new_counter,
            expected_status,
            status,
            decision,
        )
    }
    fn flag_credential(&self, flag: &Flag) -> Result<(), CommitError> {
        (**self).flag_credential(flag)
    }
    fn set_credential_status(
        &self,
        id: &CredentialId,
        status: CredentialStatus,
    ) -> Result<(), CommitError> {
        (**self).set_credential_status(id, status)
    }
    fn purge_expired_challenges(&self, now: u64) -> Result<usize, StoreError> {
        (**self).purge_expired_challenges(now)
    }
}

/// A [`Store`] in memory, behind one mutex. For tests, examples and
/// single-process embedders that do not need durability.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    challenges: HashMap<Challenge, ChallengeEntry>,
    /// Per account, the challenges that may still be outstanding (the
    /// per-account limit's index). Entries found consumed, expired or purged
    /// are dropped when the account's list is next counted, so a count costs
    /// the account's outstanding challenges, not every challenge stored.
    outstanding: HashMap<Vec<u8>, Vec<Challenge>>,
    credentials: HashMap<CredentialId, CredentialRecord>,
    /// Spent self-authenticating challenges and their expiry.
    spent: HashMap<Challenge, u64>,
    decisions: Vec<Decision>,
    flags: Vec<Flag>,
    models: HashMap<String, ModelStatus>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, MemoryInner> {
        // A panic while holding the lock cannot leave a half-applied commit:
        // every commit checks before it mutates.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The decisions recorded so far, oldest first.
    pub fn decisions(&self) -> Vec<Decision> {
        self.lock().decisions.clone()
    }

    /// The flagging rejections recorded so far (P15, P19), oldest first.
    pub fn flags(&self) -> Vec<Flag> {
        self.lock().flags.clone()
    }

    /// Records a device model's status, as a durable store shared by several
    /// verifiers persists an operator's change: every later
    /// `commit_registration` / `commit_payment` for the model checks it,
    /// whatever the verifier's own trust configuration says.
    pub fn set_model_status(&self, model: &str, status: ModelStatus) {
        self.lock().models.insert(model.to_owned(), status);
    }
}

/// A device model the store records as not active refuses the commit.
fn check_model_in(models: &HashMap<String, ModelStatus>, model: &str) -> Result<(), CommitError> {
    match models.get(model) {
        Some(s) if *s != ModelStatus::Active => Err(CommitError::DeviceModelNotActive(*s)),
        _ => Ok(()),
    }
}

/// `commit_payment`'s credential conditions (§7.3), checked before any
/// change; returns the change to apply once every other condition holds.
fn check_payment_in<'a>(
    credentials: &'a mut HashMap<CredentialId, CredentialRecord>,
    models: &HashMap<String, ModelStatus>,
    id: &CredentialId,
    new_counter: u64,
    app_attest_counter: Option<u32>,
) -> Result<impl FnOnce() + 'a, CommitError> {
    let cred = credentials
        .get_mut(id)
        .ok_or(CommitError::UnknownCredential)?;
    if cred.status != CredentialStatus::Active {
        return Err(CommitError::CredentialNotActive(cred.status));
    }
    check_model_in(models, &cred.device_model)?;
    if cred.counter >= new_counter {
        return Err(CommitError::CounterSuperseded {
            stored: cred.counter,
        });
    }
    if let Some(n) = app_attest_counter {
        let stored = cred.app_attest.as_ref().map_or(u32::MAX, |k| k.counter);
        if stored >= n {
            return Err(CommitError::AppAttestCounterSuperseded { stored });
        }
    }
    Ok(move || {
        cred.counter = new_counter;
        if let (Some(n), Some(k)) = (app_attest_counter, cred.app_attest.as_mut()) {
            k.counter = n;
        }
    })
}

impl MemoryInner {
    fn check_unconsumed(&self, challenge: &Challenge) -> Result<(), CommitError> {
        match self.challenges.get(challenge) {
            Some(e) if !e.consumed => Ok(()),
            _ => Err(CommitError::ChallengeUsed),
        }
    }
    fn check_model(&self, model: &str) -> Result<(), CommitError> {
        check_model_in(&self.models, model)
    }
    fn consume(&mut self, challenge: &Challenge) {
        if let Some(e) = self.challenges.get_mut(challenge) {
            e.consumed = true;
        }
    }
}

impl Store for MemoryStore {
    fn insert_challenge(
        &self,
        issued: IssuedChallenge,
        limit: Option<ChallengeLimit>,
    ) -> Result<bool, StoreError> {
        let mut g = self.lock();
        if g.challenges.contains_key(issued.challenge()) {
            return Err(StoreError("challenge collision".into()));
        }
        let g = &mut *g;
        let listed = g
            .outstanding
            .entry(issued.account_handle().to_vec())
            .or_default();
        if let Some(l) = limit {
            let challenges = &g.challenges;
            listed.retain(|c| {
                challenges
                    .get(c)
                    .is_some_and(|e| !e.consumed && e.issued.expires_at() > l.now)
            });
            if listed.len() >= usize::try_from(l.max).unwrap_or(usize::MAX) {
                return Ok(false);
            }
        }
        listed.push(*issued.challenge());
        g.challenges.insert(
            *issued.challenge(),
            ChallengeEntry {
                issued,
                consumed: false,
            },
        );
        Ok(true)
    }

    fn challenge(&self, challenge: &Challenge) -> Result<Option<ChallengeEntry>, StoreError> {
        Ok(self.lock().challenges.get(challenge).cloned())
    }

    fn credential(&self, id: &CredentialId) -> Result<Option<CredentialRecord>, StoreError> {
        Ok(self.lock().credentials.get(id).cloned())
    }

    fn credentials_for_account(
        &self,
        rp_id: &str,
        account_handle: &[u8],
    ) -> Result<Vec<CredentialRecord>, StoreError> {
        let mut out: Vec<_> = self
            .lock()
            .credentials
            .values()
            .filter(|c| c.rp_id == rp_id && c.account_handle == account_handle)
            .cloned()
            .collect();
        out.sort_by(|a, b| {
            (a.registered_at, &a.credential_id).cmp(&(b.registered_at, &b.credential_id))
        });
        Ok(out)
    }

    fn commit_registration(
        &self,
        challenge: &Challenge,
        record: &CredentialRecord,
        decision: &Decision,
    ) -> Result<(), CommitError> {
        let mut g = self.lock();
        g.check_unconsumed(challenge)?;
        g.check_model(&record.device_model)?;
        if g.credentials.contains_key(&record.credential_id) {
            return Err(CommitError::CredentialExists);
        }
        g.consume(challenge);
        g.credentials
            .insert(record.credential_id.clone(), record.clone());
        g.decisions.push(decision.clone());
        Ok(())
    }

    fn commit_payment(
        &self,
        challenge: &Challenge,
        id: &CredentialId,
        new_counter: u64,
        app_attest_counter: Option<u32>,
        decision: &Decision,
    ) -> Result<(), CommitError> {
        let mut guard = self.lock();
        // One lookup per map (every check before any change, as elsewhere).
        let g = &mut *guard;
        let entry = match g.challenges.get_mut(challenge) {
            Some(e) if !e.consumed => e,
            _ => return Err(CommitError::ChallengeUsed),
        };
        let advance = check_payment_in(
            &mut g.credentials,
            &g.models,
            id,
            new_counter,
            app_attest_counter,
        )?;
        entry.consumed = true;
        advance();
        g.decisions.push(decision.clone());
        Ok(())
    }

    fn commit_payment_spending(
        &self,
        spent: &SpentChallenge,
        id: &CredentialId,
        new_counter: u64,
        app_attest_counter: Option<u32>,
        decision: &Decision,
    ) -> Result<(), CommitError> {
        let mut guard = self.lock();
        let g = &mut *guard;
        if g.spent.contains_key(&spent.challenge) {
            return Err(CommitError::ChallengeUsed);
        }
        let advance = check_payment_in(
            &mut g.credentials,
            &g.models,
            id,
            new_counter,
            app_attest_counter,
        )?;
        advance();
        g.spent.insert(spent.challenge, spent.expires_at);
        g.decisions.push(decision.clone());
        Ok(())
    }

    fn challenge_spent(&self, challenge: &Challenge) -> Result<bool, StoreError> {
        Ok(self.lock().spent.contains_key(challenge))
    }

    fn purge_spent_challenges(&self, before: u64) -> Result<usize, StoreError> {
        let mut g = self.lock();
        let n = g.spent.len();
        g.spent.retain(|_, exp| *exp >= before);
        Ok(n - g.spent.len())
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
        let mut g = self.lock();
        let cred = g
            .credentials
            .get_mut(id)
            .ok_or(CommitError::UnknownCredential)?;
        if cred.counter != expected_counter || cred.status != expected_status {
            return Err(CommitError::CounterConflict);
        }
        cred.counter = new_counter;
        cred.status = status;
        g.decisions.push(decision.clone());
        Ok(())
    }

    fn set_credential_status(
        &self,
        id: &CredentialId,
        status: CredentialStatus,
    ) -> Result<(), CommitError> {
        let mut g = self.lock();
        let cred = g
            .credentials
            .get_mut(id)
            .ok_or(CommitError::UnknownCredential)?;
        // Deregistration is final.
        if cred.status == CredentialStatus::Deregistered {
            return Err(CommitError::CredentialNotActive(cred.status));
        }
        cred.status = status;
        Ok(())
    }

    fn flag_credential(&self, flag: &Flag) -> Result<(), CommitError> {
        let mut g = self.lock();
        let cred = g
            .credentials
            .get_mut(&flag.credential_id)
            .ok_or(CommitError::UnknownCredential)?;
        if cred.status == CredentialStatus::Active {
            cred.status = flag.status;
        }
        g.flags.push(flag.clone());
        Ok(())
    }

    fn purge_expired_challenges(&self, now: u64) -> Result<usize, StoreError> {
        let mut g = self.lock();
        let before = g.challenges.len();
        g.challenges.retain(|_, e| e.issued.expires_at() >= now);
        let g = &mut *g;
        let challenges = &g.challenges;
        g.outstanding.retain(|_, listed| {
            listed.retain(|c| challenges.contains_key(c));
            !listed.is_empty()
        });
        Ok(before - g.challenges.len())
    }
}
