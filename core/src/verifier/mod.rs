//! The relying party's verifier (docs/PROTOCOL.md §6): issues challenges and
//! verifies key attestations, payment assertions, deregistrations and
//! enrollment changes against a [`Store`], a [`TrustConfig`] and a [`Policy`].
//!
//! Nothing in a statement is trusted before its signature verifies, and the
//! state change that accepts a statement (consuming the challenge, advancing
//! the counter) happens in one atomic store operation. Rejected statements
//! change no stored state, with two deliberate exceptions that are security
//! events on a correctly signed statement: a counter that did not increase
//! marks the credential [`CredentialStatus::SuspectedClone`] (P19) and a changed
//! enrollment epoch marks it [`CredentialStatus::EnrollmentChanged`] (P15).
//!
//! One file per procedure: `registration` (R1–R16), `platform` (A1–A17),
//! `app_attest` (K1–K13), `payment` (P1–P20, J1–J4), `deregistration`
//! (D1–D9), `enrollment` (E1–E10), `issuance` (challenges), `stateless`
//! (self-authenticating payment challenges); the checks they share are
//! written once in `checks`; `opened` gives a caller what core read from a
//! statement before deciding (the credential it names), so the caller
//! parses nothing itself.

mod app_attest;
mod checks;
mod deregistration;
mod enrollment;
mod issuance;
mod opened;
mod payment;
mod payment_checks;
mod platform;
mod registration;
mod stateless;

pub use stateless::{ChallengeKeys, DuplicateKeyId, CHALLENGE_MAC_LEN, CHALLENGE_NONCE_LEN};

pub use crate::policy::{DeviceModel, HighValueRequirement, ModelStatus, Policy, TrustConfig};
use crate::serde_hex::ser_hex;
use crate::{
    android::{self, AndroidTrust, StatusList},
    apple::{self, AppleTrust},
    cose,
    crypto::{self, SignatureFormat},
    display::render_transaction,
    env::{Clock, Random},
    error::{reject, AtStep, Reason, Rejection, Step},
    messages::{
        AppleKeyRegistration, Challenge, CredentialId, Deregistration, EnrollmentChange,
        KeyAttestation, Liveness, Message, Modality, PaymentAssertion, PaymentChallenge, Platform,
        PlatformKeyRegistration, RegistrationChallenge, SecurityLevel, Transaction,
        VerifiedBootState, CHALLENGE_LEN,
    },
    store::{
        AppAttestKey, ChallengeEntry, ChallengeLimit, CommitError, CredentialKind,
        CredentialRecord, CredentialStatus, Decision, DecisionKind, Flag, IssuedChallenge,
        SpentChallenge, Store, StoreError,
    },
    x509,
};
pub use opened::{
    open_deregistration, open_payment, registration_credential_id, Opened, RegistrationOutcome,
};
use serde::Serialize;
use std::sync::{PoisonError, RwLock};

/// The `device_model` recorded for Android Keystore credentials.
pub const ANDROID_KEYSTORE_MODEL: &str = "android-keystore";

/// The `device_model` recorded for Apple App Attest credentials (§13.8).
pub const APPLE_APP_ATTEST_MODEL: &str = "apple-app-attest";

/// A credential accepted at registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegisteredCredential {
    /// The stored record.
    pub record: CredentialRecord,
}

/// A payment accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovedPayment {
    /// The credential that signed.
    pub credential_id: CredentialId,
    /// The account.
    #[serde(serialize_with = "ser_hex")]
    pub account_handle: Vec<u8>,
    /// The approved transaction (as issued with the challenge).
    pub transaction: Transaction,
    /// The modality that matched.
    pub modality: Modality,
    /// The liveness result.
    pub liveness: Liveness,
    /// The new counter.
    pub counter: u64,
    /// The matched template's id as the device reported it (salted per rp,
    /// so it identifies a finger or face only within this rp; zeros from a
    /// platform keystore, which does not say). For fraud analysis: a new
    /// finger paying on an account shows here.
    #[serde(serialize_with = "ser_hex")]
    pub template_id: [u8; 16],
    /// SHA-256 of the statement.
    #[serde(serialize_with = "ser_hex")]
    pub statement_hash: [u8; 32],
}

/// Why a challenge could not be issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// An argument is invalid (bad transaction, empty modality list, ...).
    #[error("invalid request: {0}")]
    Invalid(#[from] crate::messages::DecodeError),
    /// The credential is unknown or not active.
    #[error("credential unknown or not active")]
    CredentialNotUsable,
    /// The policy for this amount needs a modality or key storage the credential lacks.
    #[error("the credential cannot satisfy the policy for this amount")]
    PolicyUnsatisfiable,
    /// The account has [`Policy::max_challenges_per_account`] outstanding
    /// challenges already (§6.1.3).
    #[error("the account has {max} outstanding challenges already")]
    TooManyChallenges {
        /// The limit.
        max: u32,
    },
    /// Randomness failed.
    #[error("{0}")]
    Random(#[from] crate::env::RandomError),
    /// The store failed.
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// The verifier. Generic over its store, clock and randomness.
pub struct Verifier<S, C, R> {
    rp_id: String,
    rp_id_hash: [u8; 32],
    trust: RwLock<TrustConfig>,
    android: RwLock<Option<AndroidTrust>>,
    apple: RwLock<Option<AppleTrust>>,
    policy: Policy,
    store: S,
    clock: C,
    random: R,
    /// With keys, payment challenges are self-authenticating and not stored
    /// (docs/PROTOCOL.md §6.1.3); without, they are stored (§7.1).
    challenge_keys: Option<ChallengeKeys>,
    /// This process's outstanding self-authenticating payment challenges,
    /// per account (the per-account limit, §6.1.3).
    outstanding: stateless::Outstanding,
}

impl<S: Store, C: Clock, R: Random> Verifier<S, C, R> {
    /// A verifier for relying party `rp_id`.
    pub fn new(
        rp_id: &str,
        trust: TrustConfig,
        policy: Policy,
        store: S,
        clock: C,
        random: R,
    ) -> Result<Self, IssueError> {
        crate::messages::validate_rp_id(rp_id)?;
        Ok(Self {
            rp_id: rp_id.to_owned(),
            rp_id_hash: crypto::sha256(rp_id.as_bytes()),
            trust: RwLock::new(trust),
            android: RwLock::new(None),
            apple: RwLock::new(None),
            policy,
            store,
            clock,
            random,
            challenge_keys: None,
            outstanding: stateless::Outstanding::default(),
        })
    }

    /// Issues self-authenticating payment challenges MACed with `keys`
    /// (docs/PROTOCOL.md §6.1.3): issuing one writes nothing, and a payment
    /// is verified with [`Self::verify_payment_for`], which is given the
    /// transaction. Registration challenges are still stored.
    pub fn with_challenge_keys(mut self, keys: ChallengeKeys) -> Self {
        self.challenge_keys = Some(keys);
        self
    }

    /// The payment challenge keys, if payment challenges are
    /// self-authenticating.
    pub fn challenge_keys(&self) -> Option<&ChallengeKeys> {
        self.challenge_keys.as_ref()
    }

    /// Accepts Android Keystore credentials (docs/PROTOCOL.md §12) under
    /// `android`: its roots, revocation status list and registration policy.
    pub fn with_android(self, android: AndroidTrust) -> Self {
        *self.android.write().unwrap_or_else(PoisonError::into_inner) = Some(android);
        self
    }

    /// Sets (or, with `None`, removes) the Android trust configuration of a
    /// verifier already in use; [`Self::with_android`] at construction.
    pub fn set_android(&self, android: Option<AndroidTrust>) {
        *self.android.write().unwrap_or_else(PoisonError::into_inner) = android;
    }

    /// Replaces the Android attestation status list (fetched by the caller,
    /// e.g. daily). Returns false when Android trust is not configured.
    pub fn set_android_status_list(&self, status_list: StatusList) -> bool {
        match self
            .android
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        {
            Some(a) => {
                a.status_list = status_list;
                true
            }
            None => false,
        }
    }

    /// A copy of the Android trust configuration, if any.
    pub fn android(&self) -> Option<AndroidTrust> {
        self.android
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Accepts Apple App Attest credentials (docs/PROTOCOL.md §13) under
    /// `apple`: allowed app ids, environment and roots.
    pub fn with_apple(self, apple: AppleTrust) -> Self {
        *self.apple.write().unwrap_or_else(PoisonError::into_inner) = Some(apple);
        self
    }

    /// Sets (or, with `None`, removes) the Apple trust configuration of a
    /// verifier already in use; [`Self::with_apple`] at construction.
    pub fn set_apple(&self, apple: Option<AppleTrust>) {
        *self.apple.write().unwrap_or_else(PoisonError::into_inner) = apple;
    }

    /// A copy of the Apple trust configuration, if any.
    pub fn apple(&self) -> Option<AppleTrust> {
        self.apple
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The relying party id.
    pub fn rp_id(&self) -> &str {
        &self.rp_id
    }
    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }
    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }
    /// A copy of the trust configuration.
    pub fn trust(&self) -> TrustConfig {
        self.trust
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sets a device model's status (e.g. revokes it) in this verifier's
    /// trust configuration, read at `R4` / `P7`. Returns false when the model
    /// is unknown. Verifiers in several processes on one store must also
    /// persist the status in the store, whose commits check it (§6.1.1).
    pub fn set_model_status(&self, model: &str, status: ModelStatus) -> bool {
        let mut trust = self.trust.write().unwrap_or_else(PoisonError::into_inner);
        match trust.model_mut(model) {
            Some(m) => {
                m.status = status;
                true
            }
            None => false,
        }
    }
}
