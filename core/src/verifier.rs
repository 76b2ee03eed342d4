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
        CredentialRecord, CredentialStatus, Decision, DecisionKind, Flag, IssuedChallenge, Store,
        StoreError,
    },
    x509::{self, TrustAnchor},
};
use serde::Serialize;
use std::{
    collections::BTreeMap,
    sync::{PoisonError, RwLock},
};

/// The `device_model` recorded for Android Keystore credentials.
pub const ANDROID_KEYSTORE_MODEL: &str = "android-keystore";

/// The `device_model` recorded for Apple App Attest credentials (§13.8).
pub const APPLE_APP_ATTEST_MODEL: &str = "apple-app-attest";

/// Status of a device model in the trust configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelStatus {
    /// Registrations and payments accepted.
    Active,
    /// Withdrawn by the vendor or the relying party: nothing accepted.
    Revoked,
    /// Known to be broken (e.g. an extracted attestation key): nothing accepted.
    Compromised,
}

/// What the relying party trusts about one device model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceModel {
    /// The model id (the attestation leaf's subject OU).
    pub id: String,
    /// Root keys the model's attestation chains must end at.
    pub trust_anchors: Vec<TrustAnchor>,
    /// Modalities the model's TEE can attest.
    pub modalities: Vec<Modality>,
    /// The strongest key storage the model has.
    pub security_level: SecurityLevel,
    /// Status.
    pub status: ModelStatus,
}

/// Device-model metadata, keyed by model id.
#[derive(Debug, Clone, Default)]
pub struct TrustConfig {
    models: BTreeMap<String, DeviceModel>,
}

impl TrustConfig {
    /// An empty configuration (trusts nothing).
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds or replaces a model.
    pub fn with_model(mut self, model: DeviceModel) -> Self {
        self.models.insert(model.id.clone(), model);
        self
    }
    /// Looks a model up.
    pub fn model(&self, id: &str) -> Option<&DeviceModel> {
        self.models.get(id)
    }
    /// All models.
    pub fn models(&self) -> impl Iterator<Item = &DeviceModel> {
        self.models.values()
    }
}

/// What the policy requires of a high-value payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HighValueRequirement {
    /// A face match with a passed liveness check.
    FaceWithLiveness,
    /// A credential key in StrongBox.
    StrongBox,
    /// Either of the above.
    FaceWithLivenessOrStrongBox,
}

/// The relying party's acceptance policy. docs/PROTOCOL.md §6.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Lifetime of issued challenges, seconds.
    pub challenge_ttl_secs: u64,
    /// Weakest key storage accepted at registration.
    pub min_security_level: SecurityLevel,
    /// Accept only devices whose verified-boot state is `Verified`.
    pub require_verified_boot: bool,
    /// Largest accepted difference between TEE time and verifier time, seconds.
    pub max_clock_skew_secs: u64,
    /// Largest accepted number of failed match attempts before a successful one.
    pub max_failed_attempts: u32,
    /// Per currency, the amount (minor units) from which [`Self::high_value_requirement`] applies.
    pub high_value_thresholds: BTreeMap<String, u64>,
    /// What a high-value payment requires.
    pub high_value_requirement: HighValueRequirement,
    /// Per currency, the largest amount (minor units) a
    /// [`CredentialKind::PlatformKeystore`] credential may approve (P17); a
    /// currency without an entry cannot be approved by such credentials.
    /// docs/PROTOCOL.md §12.6.
    pub platform_keystore_max_amount: BTreeMap<String, u64>,
    /// Per currency, the largest amount (minor units) a
    /// [`CredentialKind::AppleAppAttest`] credential may approve (P17); a
    /// currency without an entry cannot be approved by such credentials.
    /// docs/PROTOCOL.md §13.9.
    pub apple_max_amount: BTreeMap<String, u64>,
    /// Per currency, the amount (minor units) above which a payment of a
    /// [`CredentialKind::AppleAppAttest`] credential must also carry an App
    /// Attest assertion over the statement (P17, J1–J4); in a currency
    /// without an entry every payment must. docs/PROTOCOL.md §13.9.
    pub apple_assertion_above: BTreeMap<String, u64>,
    /// At most this many outstanding (unconsumed, unexpired) challenges,
    /// registration and payment, per account; `0` means no limit.
    /// docs/PROTOCOL.md §6.1.3: the account is refused further challenges
    /// until one is used or expires.
    pub max_challenges_per_account: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            challenge_ttl_secs: 120,
            max_challenges_per_account: 32,
            min_security_level: SecurityLevel::Tee,
            require_verified_boot: true,
            max_clock_skew_secs: 300,
            max_failed_attempts: 4,
            high_value_thresholds: BTreeMap::from([
                ("CNY".to_owned(), 200_000),
                ("USD".to_owned(), 30_000),
                ("EUR".to_owned(), 30_000),
            ]),
            high_value_requirement: HighValueRequirement::FaceWithLivenessOrStrongBox,
            platform_keystore_max_amount: BTreeMap::from([
                ("CNY".to_owned(), 50_000),
                ("USD".to_owned(), 10_000),
                ("EUR".to_owned(), 10_000),
            ]),
            apple_max_amount: BTreeMap::from([
                ("CNY".to_owned(), 50_000),
                ("USD".to_owned(), 10_000),
                ("EUR".to_owned(), 10_000),
            ]),
            apple_assertion_above: BTreeMap::from([
                ("CNY".to_owned(), 10_000),
                ("USD".to_owned(), 2_000),
                ("EUR".to_owned(), 2_000),
            ]),
        }
    }
}

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
        })
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
        match trust.models.get_mut(model) {
            Some(m) => {
                m.status = status;
                true
            }
            None => false,
        }
    }

    fn fresh_challenge(&self) -> Result<Challenge, IssueError> {
        let mut c = [0u8; CHALLENGE_LEN];
        self.random.fill(&mut c)?;
        Ok(c)
    }

    /// Stores an issued challenge under the per-account limit (§6.1.3).
    fn store_challenge(&self, issued: IssuedChallenge, now: u64) -> Result<(), IssueError> {
        let max = self.policy.max_challenges_per_account;
        let limit = (max > 0).then_some(ChallengeLimit { max, now });
        if self.store.insert_challenge(issued, limit)? {
            Ok(())
        } else {
            Err(IssueError::TooManyChallenges { max })
        }
    }

    /// Issues and stores a registration challenge.
    pub fn registration_challenge(
        &self,
        account_handle: &[u8],
        accepted_modalities: &[Modality],
        required_assurance: SecurityLevel,
    ) -> Result<RegistrationChallenge, IssueError> {
        let now = self.clock.now();
        let mut modalities = accepted_modalities.to_vec();
        modalities.sort();
        modalities.dedup();
        let challenge = RegistrationChallenge {
            rp_id: self.rp_id.clone(),
            account_handle: account_handle.to_vec(),
            challenge: self.fresh_challenge()?,
            issued_at: now,
            expires_at: now.saturating_add(self.policy.challenge_ttl_secs.max(1)),
            accepted_modalities: modalities,
            required_assurance: required_assurance.max(self.policy.min_security_level),
        };
        // Round-trip through the strict decoder: whatever we issue must be valid.
        RegistrationChallenge::from_cbor(&challenge.to_cbor())?;
        self.store_challenge(IssuedChallenge::Registration(challenge.clone()), now)?;
        Ok(challenge)
    }

    /// Issues and stores a payment challenge for `transaction`, to be signed by `credential_id`.
    /// The accepted modalities and the liveness requirement follow the policy for the amount.
    pub fn payment_challenge(
        &self,
        credential_id: &CredentialId,
        transaction: Transaction,
    ) -> Result<PaymentChallenge, IssueError> {
        transaction.validate()?;
        let cred = self
            .store
            .credential(credential_id)?
            .ok_or(IssueError::CredentialNotUsable)?;
        if cred.status != CredentialStatus::Active || cred.rp_id != self.rp_id {
            return Err(IssueError::CredentialNotUsable);
        }
        let high_value = self.is_high_value(&transaction);
        let face_required = high_value
            && match self.policy.high_value_requirement {
                HighValueRequirement::FaceWithLiveness => true,
                HighValueRequirement::StrongBox => false,
                HighValueRequirement::FaceWithLivenessOrStrongBox => {
                    cred.security_level < SecurityLevel::StrongBox
                }
            };
        // Never issue a challenge the credential cannot satisfy. A
        // platform-keystore credential's liveness claim is made by the app,
        // so it never satisfies a face-with-liveness requirement (§12.6).
        let face_trusted = cred.kind == CredentialKind::TeeAttested;
        let satisfiable = !high_value
            || match self.policy.high_value_requirement {
                HighValueRequirement::StrongBox => cred.security_level >= SecurityLevel::StrongBox,
                _ => !face_required || (face_trusted && cred.modalities.contains(&Modality::Face)),
            };
        if !satisfiable {
            return Err(IssueError::PolicyUnsatisfiable);
        }
        let accepted_modalities = if face_required {
            vec![Modality::Face]
        } else {
            cred.modalities.clone()
        };
        let now = self.clock.now();
        let challenge = PaymentChallenge {
            rp_id: self.rp_id.clone(),
            account_handle: cred.account_handle.clone(),
            credential_id: credential_id.clone(),
            challenge: self.fresh_challenge()?,
            transaction,
            issued_at: now,
            expires_at: now.saturating_add(self.policy.challenge_ttl_secs.max(1)),
            accepted_modalities,
            require_liveness: face_required,
        };
        PaymentChallenge::from_cbor(&challenge.to_cbor())?;
        self.store_challenge(
            IssuedChallenge::Payment {
                challenge: challenge.clone(),
                counter_at_issue: cred.counter,
            },
            now,
        )?;
        Ok(challenge)
    }

    fn is_high_value(&self, tx: &Transaction) -> bool {
        self.policy
            .high_value_thresholds
            .get(&tx.currency)
            .is_some_and(|t| tx.amount_minor >= *t)
    }

    fn check_tee_clock(&self, step: Step, tee_time: u64, now: u64) -> Result<(), Rejection> {
        if tee_time.abs_diff(now) > self.policy.max_clock_skew_secs {
            return reject(step, Reason::ClockSkew { tee_time, now });
        }
        Ok(())
    }

    fn model_status(&self, model: &str) -> Option<ModelStatus> {
        self.trust
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .model(model)
            .map(|m| m.status)
    }

    /// Verifies a key attestation (docs/PROTOCOL.md §6.3, steps R1–R16) and
    /// registers the credential.
    pub fn verify_registration(&self, statement: &[u8]) -> Result<RegisteredCredential, Rejection> {
        let now = self.clock.now();
        // R1, R2
        let sign1 = cose::parse_sign1(statement, true).map_err(|e| {
            let step = if matches!(
                e,
                cose::CoseError::Cbor(_)
                    | cose::CoseError::NotCoseSign1
                    | cose::CoseError::MissingPayload
            ) {
                Step::R1Statement
            } else {
                Step::R2Header
            };
            Rejection::new(step, e)
        })?;
        // R3
        let att = KeyAttestation::from_cbor(&sign1.payload).at(Step::R3Payload)?;
        // R4
        let model = {
            let trust = self.trust.read().unwrap_or_else(PoisonError::into_inner);
            trust.model(&att.device_model).cloned()
        };
        let Some(model) = model else {
            return reject(Step::R4DeviceModel, Reason::UnknownDeviceModel);
        };
        if model.status != ModelStatus::Active {
            return reject(
                Step::R4DeviceModel,
                Reason::DeviceModelNotActive(model.status),
            );
        }
        // R5
        let chain = x509::verify_chain(&sign1.x5chain, &model.trust_anchors, now)
            .at(Step::R5AttestationChain)?;
        if !chain.leaf_subject_ou.contains(&model.id) {
            return reject(Step::R5AttestationChain, Reason::LeafModelMismatch);
        }
        // R6
        let Some(attestation_key) = crypto::p256_point_from_spki(&chain.leaf_spki_der) else {
            return reject(Step::R6Signature, Reason::AttestationKeyType);
        };
        if !crypto::verify_es256(
            attestation_key,
            &sign1.to_be_signed,
            &sign1.signature,
            SignatureFormat::Fixed,
        ) {
            return reject(Step::R6Signature, Reason::BadSignature);
        }
        // R7
        if !crypto::ct_eq(&att.rp_id_hash, &self.rp_id_hash) {
            return reject(Step::R7RpId, Reason::WrongRp);
        }
        // R8
        let issued = match self.challenge_entry(Step::R8Challenge, &att.challenge)? {
            ChallengeEntry {
                issued: IssuedChallenge::Registration(c),
                ..
            } => c,
            _ => return reject(Step::R8Challenge, Reason::WrongChallengeKind),
        };
        if issued.rp_id != self.rp_id {
            return reject(Step::R8Challenge, Reason::WrongRp);
        }
        // R9
        if now > issued.expires_at {
            return reject(
                Step::R9ChallengeExpiry,
                Reason::ChallengeExpired {
                    expires_at: issued.expires_at,
                    now,
                },
            );
        }
        // R10
        if !crypto::ct_eq(&att.account_handle, &issued.account_handle) {
            return reject(Step::R10Account, Reason::AccountMismatch);
        }
        // R11
        if !att
            .modalities
            .iter()
            .all(|m| issued.accepted_modalities.contains(m) && model.modalities.contains(m))
        {
            return reject(Step::R11Modality, Reason::ModalityNotAccepted);
        }
        // R12
        if att.security_level > model.security_level {
            return reject(Step::R12SecurityLevel, Reason::SecurityLevelOverclaimed);
        }
        if att.security_level < issued.required_assurance
            || att.security_level < self.policy.min_security_level
        {
            return reject(Step::R12SecurityLevel, Reason::InsufficientSecurityLevel);
        }
        // R13
        // A failed verification is never accepted; the policy may admit
        // self-signed or unlocked boot (e.g. for test fleets).
        if att.verified_boot == VerifiedBootState::Failed
            || (self.policy.require_verified_boot
                && att.verified_boot != VerifiedBootState::Verified)
        {
            return reject(Step::R13BootState, Reason::BootState(att.verified_boot));
        }
        // R14
        self.check_tee_clock(Step::R14TeeClock, att.tee_time, now)?;
        // R15
        if self
            .store
            .credential(&att.credential_id)
            .at(Step::R15CredentialId)?
            .is_some()
        {
            return reject(Step::R15CredentialId, Reason::DuplicateCredential);
        }
        // R16
        let record = CredentialRecord {
            credential_id: att.credential_id.clone(),
            rp_id: self.rp_id.clone(),
            account_handle: att.account_handle.clone(),
            public_key: att.credential_public_key.clone(),
            modalities: att.modalities.clone(),
            enrollment_epoch: att.enrollment_epoch,
            security_level: att.security_level,
            kind: CredentialKind::TeeAttested,
            device_model: att.device_model.clone(),
            counter: att.initial_counter,
            status: CredentialStatus::Active,
            registered_at: now,
            app_attest: None,
        };
        let decision = self.decision(
            DecisionKind::Registration,
            &att.credential_id,
            statement,
            now,
        );
        self.store
            .commit_registration(&att.challenge, &record, &decision)
            .map_err(|e| commit_rejection(Step::R16Commit, e))?;
        Ok(RegisteredCredential { record })
    }

    /// Verifies a platform-keystore registration (docs/PROTOCOL.md §12.5,
    /// steps A1–A17): an Android Keystore attestation chain in `x5chain`, a
    /// [`PlatformKeyRegistration`] payload signed by the attested key (COSE
    /// fixed or DER signature), the Android registration policy; then
    /// registers the credential as [`CredentialKind::PlatformKeystore`].
    pub fn verify_platform_registration(
        &self,
        statement: &[u8],
    ) -> Result<RegisteredCredential, Rejection> {
        let now = self.clock.now();
        // A1, A2
        let sign1 = cose::parse_sign1_any_form(statement, true).map_err(|e| {
            let step = if matches!(
                e,
                cose::CoseError::Cbor(_)
                    | cose::CoseError::NotCoseSign1
                    | cose::CoseError::MissingPayload
            ) {
                Step::A1Statement
            } else {
                Step::A2Header
            };
            Rejection::new(step, e)
        })?;
        // A3
        let reg = PlatformKeyRegistration::from_cbor(&sign1.payload).at(Step::A3Payload)?;
        // A4
        let android = match (reg.platform, self.android()) {
            (Platform::Android, Some(a)) => a,
            (Platform::Android, None) => {
                return reject(Step::A4Platform, Reason::PlatformNotTrusted)
            }
        };
        // A5, A6
        let chain = android::verify_attestation_chain(
            &sign1.x5chain,
            &android.anchors,
            &android.status_list,
            now,
        )
        .map_err(|e| {
            let step = match e {
                android::AndroidChainError::Revoked { .. } => Step::A6Revocation,
                _ => Step::A5AttestationChain,
            };
            Rejection::new(step, e)
        })?;
        // A7
        let leaf = sign1.x5chain.first().map(Vec::as_slice).unwrap_or_default();
        let description = android::key_description_of(leaf).at(Step::A7KeyDescription)?;
        // A8
        let Some(key) = crypto::p256_point_from_spki(&chain.leaf_spki_der) else {
            return reject(Step::A8AttestedKey, Reason::AttestationKeyType);
        };
        // A9
        if !crypto::verify_es256(
            key,
            &sign1.to_be_signed,
            &sign1.signature,
            crypto::es256_signature_format(&sign1.signature),
        ) {
            return reject(Step::A9Signature, Reason::BadSignature);
        }
        // A10
        if !crypto::ct_eq(&reg.rp_id_hash, &self.rp_id_hash) {
            return reject(Step::A10RpId, Reason::WrongRp);
        }
        // A11
        let issued = match self.challenge_entry(Step::A11Challenge, &reg.challenge)? {
            ChallengeEntry {
                issued: IssuedChallenge::Registration(c),
                ..
            } => c,
            _ => return reject(Step::A11Challenge, Reason::WrongChallengeKind),
        };
        if issued.rp_id != self.rp_id {
            return reject(Step::A11Challenge, Reason::WrongRp);
        }
        // A12
        if now > issued.expires_at {
            return reject(
                Step::A12ChallengeExpiry,
                Reason::ChallengeExpired {
                    expires_at: issued.expires_at,
                    now,
                },
            );
        }
        // A13
        if !crypto::ct_eq(&reg.account_handle, &issued.account_handle) {
            return reject(Step::A13Account, Reason::AccountMismatch);
        }
        // A14
        if !reg
            .modalities
            .iter()
            .all(|m| issued.accepted_modalities.contains(m))
        {
            return reject(Step::A14Modality, Reason::ModalityNotAccepted);
        }
        // A15: every check, every failure.
        let mut policy = android.policy.clone();
        policy.require_strongbox |= issued.required_assurance >= SecurityLevel::StrongBox
            || self.policy.min_security_level >= SecurityLevel::StrongBox;
        let mut failures = android::check_policy(&description, &policy, Some(&reg.challenge));
        if policy.package_name.is_none() || policy.signing_cert_digests.is_empty() {
            failures.push(android::AndroidPolicyFailure::ApplicationNotConfigured);
        }
        if !failures.is_empty() {
            return reject(Step::A15AndroidPolicy, Reason::AndroidPolicy(failures));
        }
        // A16
        if self
            .store
            .credential(&reg.credential_id)
            .at(Step::A16CredentialId)?
            .is_some()
        {
            return reject(Step::A16CredentialId, Reason::DuplicateCredential);
        }
        // A17
        let level = description
            .attestation_security_level
            .min(description.key_mint_security_level);
        let record = CredentialRecord {
            credential_id: reg.credential_id.clone(),
            rp_id: self.rp_id.clone(),
            account_handle: reg.account_handle.clone(),
            public_key: key.to_vec(),
            modalities: reg.modalities.clone(),
            enrollment_epoch: reg.enrollment_epoch,
            security_level: if level >= android::AndroidSecurityLevel::StrongBox {
                SecurityLevel::StrongBox
            } else {
                SecurityLevel::Tee
            },
            kind: CredentialKind::PlatformKeystore,
            device_model: ANDROID_KEYSTORE_MODEL.to_owned(),
            counter: reg.initial_counter,
            status: CredentialStatus::Active,
            registered_at: now,
            app_attest: None,
        };
        let decision = self.decision(
            DecisionKind::PlatformRegistration,
            &reg.credential_id,
            statement,
            now,
        );
        self.store
            .commit_registration(&reg.challenge, &record, &decision)
            .map_err(|e| commit_rejection(Step::A17Commit, e))?;
        Ok(RegisteredCredential { record })
    }

    /// Verifies an Apple App Attest registration (docs/PROTOCOL.md §13.8,
    /// steps K1–K13 with I1–I10): an [`AppleKeyRegistration`] signed by the
    /// Secure Enclave key it carries (COSE fixed or DER signature), whose
    /// App Attest attestation binds (§13.3) that key, the issued challenge,
    /// the rp id and the credential id; then registers the credential as
    /// [`CredentialKind::AppleAppAttest`] with its App Attest key.
    pub fn verify_apple_registration(
        &self,
        statement: &[u8],
    ) -> Result<RegisteredCredential, Rejection> {
        let now = self.clock.now();
        // K1, K2
        let sign1 = cose::parse_sign1_any_form(statement, false).map_err(|e| {
            let step = if matches!(
                e,
                cose::CoseError::Cbor(_)
                    | cose::CoseError::NotCoseSign1
                    | cose::CoseError::MissingPayload
            ) {
                Step::K1Statement
            } else {
                Step::K2Header
            };
            Rejection::new(step, e)
        })?;
        // K3
        let reg = AppleKeyRegistration::from_cbor(&sign1.payload).at(Step::K3Payload)?;
        // K4
        let Some(trust) = self.apple() else {
            return reject(Step::K4Platform, Reason::PlatformNotTrusted);
        };
        // K5: proof of possession of the Secure Enclave key.
        if !crypto::is_valid_p256_point(&reg.public_key) {
            return reject(Step::K5Signature, Reason::AttestationKeyType);
        }
        if !crypto::verify_es256(
            &reg.public_key,
            &sign1.to_be_signed,
            &sign1.signature,
            crypto::es256_signature_format(&sign1.signature),
        ) {
            return reject(Step::K5Signature, Reason::BadSignature);
        }
        // K6
        if !crypto::ct_eq(&reg.rp_id_hash, &self.rp_id_hash) {
            return reject(Step::K6RpId, Reason::WrongRp);
        }
        // K7
        let issued = match self.challenge_entry(Step::K7Challenge, &reg.challenge)? {
            ChallengeEntry {
                issued: IssuedChallenge::Registration(c),
                ..
            } => c,
            _ => return reject(Step::K7Challenge, Reason::WrongChallengeKind),
        };
        if issued.rp_id != self.rp_id {
            return reject(Step::K7Challenge, Reason::WrongRp);
        }
        // K8
        if now > issued.expires_at {
            return reject(
                Step::K8ChallengeExpiry,
                Reason::ChallengeExpired {
                    expires_at: issued.expires_at,
                    now,
                },
            );
        }
        // K9
        if !crypto::ct_eq(&reg.account_handle, &issued.account_handle) {
            return reject(Step::K9Account, Reason::AccountMismatch);
        }
        // K10
        if !reg
            .modalities
            .iter()
            .all(|m| issued.accepted_modalities.contains(m))
        {
            return reject(Step::K10Modality, Reason::ModalityNotAccepted);
        }
        // K11: nothing attests where the Secure Enclave key lives, so it is
        // recorded at TEE level and cannot meet a StrongBox requirement.
        if issued.required_assurance > SecurityLevel::Tee
            || self.policy.min_security_level > SecurityLevel::Tee
        {
            return reject(Step::K11SecurityLevel, Reason::InsufficientSecurityLevel);
        }
        // I1–I10 over the binding of the issued challenge, this rp, the key
        // and the credential id (§13.3).
        let client_data_hash = apple::binding_client_data_hash(
            &issued.challenge,
            &self.rp_id,
            &reg.public_key,
            &reg.credential_id,
        )
        .at(Step::K3Payload)?;
        let attested = apple::verify_attestation(
            &reg.attestation_object,
            &client_data_hash,
            Some(&reg.app_attest_key_id),
            &trust,
            now,
        )?;
        // K12
        if self
            .store
            .credential(&reg.credential_id)
            .at(Step::K12CredentialId)?
            .is_some()
        {
            return reject(Step::K12CredentialId, Reason::DuplicateCredential);
        }
        // K13
        let record = CredentialRecord {
            credential_id: reg.credential_id.clone(),
            rp_id: self.rp_id.clone(),
            account_handle: reg.account_handle.clone(),
            public_key: reg.public_key.clone(),
            modalities: reg.modalities.clone(),
            enrollment_epoch: reg.enrollment_epoch,
            security_level: SecurityLevel::Tee,
            kind: CredentialKind::AppleAppAttest,
            device_model: APPLE_APP_ATTEST_MODEL.to_owned(),
            counter: reg.initial_counter,
            status: CredentialStatus::Active,
            registered_at: now,
            app_attest: Some(AppAttestKey {
                key_id: attested.key_id,
                public_key: attested.public_key,
                app_id: attested.app_id,
                environment: attested.environment,
                counter: attested.counter,
                receipt: attested.receipt,
            }),
        };
        let decision = self.decision(
            DecisionKind::AppleRegistration,
            &reg.credential_id,
            statement,
            now,
        );
        self.store
            .commit_registration(&reg.challenge, &record, &decision)
            .map_err(|e| commit_rejection(Step::K13Commit, e))?;
        Ok(RegisteredCredential { record })
    }

    /// Whether an Apple credential's App Attest key is still trusted: Apple
    /// trust is configured, its app id still allowed, its environment the
    /// configured one (P7).
    fn apple_key_trusted(&self, key: Option<&AppAttestKey>) -> bool {
        let apple = self.apple.read().unwrap_or_else(PoisonError::into_inner);
        match (apple.as_ref(), key) {
            (Some(t), Some(k)) => t.environment == k.environment && t.app_ids.contains(&k.app_id),
            _ => false,
        }
    }

    fn challenge_entry(
        &self,
        step: Step,
        challenge: &Challenge,
    ) -> Result<ChallengeEntry, Rejection> {
        match self.store.challenge(challenge).at(step)? {
            None => reject(step, Reason::UnknownChallenge),
            Some(e) if e.consumed => reject(step, Reason::ChallengeAlreadyUsed),
            Some(e) => Ok(e),
        }
    }

    fn decision(
        &self,
        kind: DecisionKind,
        id: &CredentialId,
        statement: &[u8],
        now: u64,
    ) -> Decision {
        Decision {
            kind,
            credential_id: id.clone(),
            statement_hash: crypto::sha256(statement),
            at: now,
        }
    }

    /// Parses a credential-signed statement (steps 1–5 of §6.4–6.6): COSE,
    /// header, payload, credential lookup and signature.
    fn open_signed<M: Message>(
        &self,
        statement: &[u8],
        steps: [Step; 5],
        credential_of: impl Fn(&M) -> &CredentialId,
    ) -> Result<(M, CredentialRecord), Rejection> {
        let [s_statement, s_header, s_payload, s_credential, s_signature] = steps;
        let sign1 = cose::parse_sign1_any_form(statement, false).map_err(|e| {
            let step = if matches!(
                e,
                cose::CoseError::Cbor(_)
                    | cose::CoseError::NotCoseSign1
                    | cose::CoseError::MissingPayload
            ) {
                s_statement
            } else {
                s_header
            };
            Rejection::new(step, e)
        })?;
        let msg = M::from_cbor(&sign1.payload).at(s_payload)?;
        let Some(cred) = self
            .store
            .credential(credential_of(&msg))
            .at(s_credential)?
        else {
            return reject(s_credential, Reason::UnknownCredential);
        };
        if cred.rp_id != self.rp_id {
            return reject(s_credential, Reason::UnknownCredential);
        }
        // A TEE signs in COSE's fixed form only; a platform keystore may
        // return DER (Android's `Signature`), admitted for its credentials only.
        let format = match cred.kind {
            CredentialKind::TeeAttested if sign1.signature.len() != cose::ES256_SIG_LEN => {
                return reject(s_header, cose::CoseError::SignatureLength);
            }
            CredentialKind::TeeAttested => SignatureFormat::Fixed,
            CredentialKind::PlatformKeystore | CredentialKind::AppleAppAttest => {
                crypto::es256_signature_format(&sign1.signature)
            }
        };
        if !crypto::verify_es256(
            &cred.public_key,
            &sign1.to_be_signed,
            &sign1.signature,
            format,
        ) {
            return reject(s_signature, Reason::BadSignature);
        }
        Ok((msg, cred))
    }

    /// Verifies a payment assertion (docs/PROTOCOL.md §6.4, steps P1–P20) and
    /// records the approval.
    pub fn verify_payment(&self, statement: &[u8]) -> Result<ApprovedPayment, Rejection> {
        self.verify_payment_with_app_attest(statement, None)
    }

    /// Verifies a payment assertion (§6.4) together with an optional Apple
    /// App Attest assertion over it (docs/PROTOCOL.md §13.9: clientDataHash
    /// = SHA-256 of `statement`, J1–J4 between P19 and P20, its counter
    /// committed with P20). An Apple credential's payment above
    /// [`Policy::apple_assertion_above`] without one is refused at P17.
    pub fn verify_payment_with_app_attest(
        &self,
        statement: &[u8],
        app_attest_assertion: Option<&[u8]>,
    ) -> Result<ApprovedPayment, Rejection> {
        let now = self.clock.now();
        // P1–P5
        let (a, cred): (PaymentAssertion, _) = self.open_signed(
            statement,
            [
                Step::P1Statement,
                Step::P2Header,
                Step::P3Payload,
                Step::P4Credential,
                Step::P5Signature,
            ],
            |a: &PaymentAssertion| &a.credential_id,
        )?;
        // P6
        if cred.status != CredentialStatus::Active {
            return reject(
                Step::P6CredentialStatus,
                Reason::CredentialNotActive(cred.status),
            );
        }
        // P7: a TEE credential's device model, or for a platform-keystore
        // credential its platform, is still trusted.
        if cred.kind == CredentialKind::AppleAppAttest {
            if !self.apple_key_trusted(cred.app_attest.as_ref()) {
                return reject(Step::P7DeviceModel, Reason::PlatformNotTrusted);
            }
        } else if cred.kind == CredentialKind::PlatformKeystore {
            let trusted = self
                .android
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .is_some();
            if !trusted {
                return reject(Step::P7DeviceModel, Reason::PlatformNotTrusted);
            }
        } else {
            match self.model_status(&cred.device_model) {
                Some(ModelStatus::Active) => {}
                Some(s) => return reject(Step::P7DeviceModel, Reason::DeviceModelNotActive(s)),
                None => return reject(Step::P7DeviceModel, Reason::UnknownDeviceModel),
            }
        }
        // P8
        if !crypto::ct_eq(&a.rp_id_hash, &self.rp_id_hash) {
            return reject(Step::P8RpId, Reason::WrongRp);
        }
        // P9
        let (issued, counter_at_issue) =
            match self.challenge_entry(Step::P9Challenge, &a.challenge)? {
                ChallengeEntry {
                    issued:
                        IssuedChallenge::Payment {
                            challenge,
                            counter_at_issue,
                        },
                    ..
                } => (challenge, counter_at_issue),
                _ => return reject(Step::P9Challenge, Reason::WrongChallengeKind),
            };
        if issued.rp_id != self.rp_id {
            return reject(Step::P9Challenge, Reason::WrongRp);
        }
        // P10
        if now > issued.expires_at {
            return reject(
                Step::P10ChallengeExpiry,
                Reason::ChallengeExpired {
                    expires_at: issued.expires_at,
                    now,
                },
            );
        }
        // P11
        if issued.credential_id != a.credential_id {
            return reject(Step::P11ChallengeBinding, Reason::CredentialMismatch);
        }
        if !crypto::ct_eq(&issued.account_handle, &cred.account_handle) {
            return reject(Step::P11ChallengeBinding, Reason::AccountMismatch);
        }
        // P12
        let tx_hash = issued.transaction.transaction_hash();
        if !crypto::ct_eq(&tx_hash, &a.transaction_hash) {
            return reject(Step::P12TransactionHash, Reason::TransactionMismatch);
        }
        // P13
        let display_hash =
            crypto::sha256(render_transaction(&self.rp_id, &issued.transaction).as_bytes());
        if !crypto::ct_eq(&display_hash, &a.display_hash) {
            return reject(Step::P13DisplayHash, Reason::DisplayMismatch);
        }
        // P14
        if !a.user_confirmed {
            return reject(Step::P14UserConfirmed, Reason::NotConfirmed);
        }
        // P15: a correctly signed statement from a changed enrollment blocks the credential.
        if !crypto::ct_eq(&a.enrollment_epoch, &cred.enrollment_epoch) {
            let reason = Reason::EnrollmentChanged;
            self.store
                .flag_credential(&Flag {
                    credential_id: cred.credential_id.clone(),
                    status: CredentialStatus::EnrollmentChanged,
                    step: Step::P15EnrollmentEpoch,
                    reason: reason.to_string(),
                    statement_hash: crypto::sha256(statement),
                    at: now,
                })
                .map_err(|e| commit_rejection(Step::P15EnrollmentEpoch, e))?;
            return reject(Step::P15EnrollmentEpoch, reason);
        }
        // P16
        if !cred.modalities.contains(&a.modality)
            || !issued.accepted_modalities.contains(&a.modality)
        {
            return reject(Step::P16Modality, Reason::ModalityNotAccepted);
        }
        if issued.require_liveness && a.liveness != Liveness::Passed {
            return reject(Step::P16Modality, Reason::LivenessRequired);
        }
        // P17
        let tx = &issued.transaction;
        let cap = match cred.kind {
            CredentialKind::PlatformKeystore => Some(&self.policy.platform_keystore_max_amount),
            CredentialKind::AppleAppAttest => Some(&self.policy.apple_max_amount),
            _ => None,
        };
        if let Some(cap) = cap {
            let max = cap.get(&tx.currency).copied();
            if max.is_none_or(|m| tx.amount_minor > m) {
                return reject(
                    Step::P17Policy,
                    Reason::PlatformKeystoreLimit {
                        currency: tx.currency.clone(),
                        max,
                        amount: tx.amount_minor,
                    },
                );
            }
        }
        if cred.kind == CredentialKind::AppleAppAttest && app_attest_assertion.is_none() {
            let above = self.policy.apple_assertion_above.get(&tx.currency).copied();
            if above.is_none_or(|a| tx.amount_minor > a) {
                return reject(
                    Step::P17Policy,
                    Reason::AppAttestAssertionRequired {
                        currency: tx.currency.clone(),
                        above,
                        amount: tx.amount_minor,
                    },
                );
            }
        }
        if self.is_high_value(&issued.transaction) {
            // The app asserts modality and liveness for platform-keystore
            // credentials: only a TEE's liveness claim counts.
            let face = a.modality == Modality::Face
                && a.liveness == Liveness::Passed
                && cred.kind == CredentialKind::TeeAttested;
            let strongbox = cred.security_level >= SecurityLevel::StrongBox;
            let req = self.policy.high_value_requirement;
            let ok = match req {
                HighValueRequirement::FaceWithLiveness => face,
                HighValueRequirement::StrongBox => strongbox,
                HighValueRequirement::FaceWithLivenessOrStrongBox => face || strongbox,
            };
            if !ok {
                return reject(Step::P17Policy, Reason::PolicyRequires(req));
            }
        }
        if a.failed_attempts > self.policy.max_failed_attempts {
            return reject(
                Step::P17Policy,
                Reason::TooManyFailedAttempts(a.failed_attempts),
            );
        }
        // P18
        self.check_tee_clock(Step::P18TeeClock, a.tee_time, now)?;
        // P19: the counter must exceed the stored one. A genuine device signs
        // this challenge after it was issued, so its counter exceeds the stored
        // counter at issue time; a correctly signed statement at or below that
        // comes from a clone or a rolled-back device. Above it, a later
        // statement from the same device was simply accepted first.
        if a.counter <= cred.counter {
            if a.counter > counter_at_issue {
                return reject(
                    Step::P19Counter,
                    Reason::CounterSuperseded {
                        stored: cred.counter,
                        received: a.counter,
                    },
                );
            }
            let reason = Reason::CounterNotIncreased {
                stored: cred.counter,
                received: a.counter,
            };
            self.store
                .flag_credential(&Flag {
                    credential_id: cred.credential_id.clone(),
                    status: CredentialStatus::SuspectedClone,
                    step: Step::P19Counter,
                    reason: reason.to_string(),
                    statement_hash: crypto::sha256(statement),
                    at: now,
                })
                .map_err(|e| commit_rejection(Step::P19Counter, e))?;
            return reject(Step::P19Counter, reason);
        }
        // J1–J4: the App Attest assertion, when sent, over SHA-256 of the
        // statement bytes, with the credential's App Attest key (§13.9).
        let app_attest_counter = match app_attest_assertion {
            None => None,
            Some(object) => {
                let Some(key) = cred.app_attest.as_ref() else {
                    return reject(
                        Step::J1AssertionObject,
                        apple::AppAttestError::Malformed {
                            field: "assertion",
                            reason: "the credential has no App Attest key",
                        },
                    );
                };
                let verified = apple::verify_assertion(
                    object,
                    &crypto::sha256(statement),
                    &key.public_key,
                    &key.app_id,
                    key.counter,
                )?;
                Some(verified.counter)
            }
        };
        // P20: the commit checks again, where no other process can change
        // them meanwhile, what P6, P7, P19 and J4 read before (§7.3).
        let decision = self.decision(DecisionKind::Payment, &cred.credential_id, statement, now);
        self.store
            .commit_payment(
                &a.challenge,
                &cred.credential_id,
                a.counter,
                app_attest_counter,
                &decision,
            )
            .map_err(|e| match e {
                CommitError::AppAttestCounterSuperseded { stored } => Rejection::new(
                    Step::J4Counter,
                    Reason::CounterSuperseded {
                        stored: u64::from(stored),
                        received: app_attest_counter.map_or(0, u64::from),
                    },
                ),
                // P19 passed, so the counter exceeds `counter_at_issue`: a
                // later statement was accepted since P4, as P19 would say.
                CommitError::CounterSuperseded { stored } => Rejection::new(
                    Step::P19Counter,
                    Reason::CounterSuperseded {
                        stored,
                        received: a.counter,
                    },
                ),
                e => commit_rejection(Step::P20Commit, e),
            })?;
        Ok(ApprovedPayment {
            credential_id: cred.credential_id,
            account_handle: cred.account_handle,
            transaction: issued.transaction,
            modality: a.modality,
            liveness: a.liveness,
            counter: a.counter,
            template_id: a.template_id,
            statement_hash: decision.statement_hash,
        })
    }

    /// Verifies a deregistration (docs/PROTOCOL.md §6.5, steps D1–D9) and
    /// marks the credential deregistered.
    pub fn verify_deregistration(&self, statement: &[u8]) -> Result<CredentialId, Rejection> {
        let now = self.clock.now();
        let (d, cred): (Deregistration, _) = self.open_signed(
            statement,
            [
                Step::D1Statement,
                Step::D2Header,
                Step::D3Payload,
                Step::D4Credential,
                Step::D5Signature,
            ],
            |d: &Deregistration| &d.credential_id,
        )?;
        if !crypto::ct_eq(&d.rp_id_hash, &self.rp_id_hash) {
            return reject(Step::D6RpId, Reason::WrongRp);
        }
        if cred.status == CredentialStatus::Deregistered {
            return reject(
                Step::D7CredentialStatus,
                Reason::CredentialNotActive(cred.status),
            );
        }
        if d.counter <= cred.counter {
            return reject(
                Step::D8Counter,
                Reason::CounterNotIncreased {
                    stored: cred.counter,
                    received: d.counter,
                },
            );
        }
        let decision = self.decision(
            DecisionKind::Deregistration,
            &cred.credential_id,
            statement,
            now,
        );
        self.store
            .commit_status(
                &cred.credential_id,
                cred.counter,
                d.counter,
                cred.status,
                CredentialStatus::Deregistered,
                &decision,
            )
            .map_err(|e| commit_rejection(Step::D9Commit, e))?;
        Ok(cred.credential_id)
    }

    /// Verifies an enrollment change (docs/PROTOCOL.md §6.6, steps E1–E10)
    /// and blocks the credential until re-registration.
    pub fn verify_enrollment_change(&self, statement: &[u8]) -> Result<CredentialId, Rejection> {
        let now = self.clock.now();
        let (e, cred): (EnrollmentChange, _) = self.open_signed(
            statement,
            [
                Step::E1Statement,
                Step::E2Header,
                Step::E3Payload,
                Step::E4Credential,
                Step::E5Signature,
            ],
            |e: &EnrollmentChange| &e.credential_id,
        )?;
        if !crypto::ct_eq(&e.rp_id_hash, &self.rp_id_hash) {
            return reject(Step::E6RpId, Reason::WrongRp);
        }
        // Only an active (or already blocked by P15) credential can be moved
        // to enrollment_changed: a clone must not be able to overwrite
        // `suspected_clone` or `suspended`.
        if !matches!(
            cred.status,
            CredentialStatus::Active | CredentialStatus::EnrollmentChanged
        ) {
            return reject(
                Step::E7CredentialStatus,
                Reason::CredentialNotActive(cred.status),
            );
        }
        if !crypto::ct_eq(&e.previous_epoch, &cred.enrollment_epoch)
            || crypto::ct_eq(&e.current_epoch, &e.previous_epoch)
        {
            return reject(Step::E8Epoch, Reason::EpochMismatch);
        }
        if e.counter <= cred.counter {
            return reject(
                Step::E9Counter,
                Reason::CounterNotIncreased {
                    stored: cred.counter,
                    received: e.counter,
                },
            );
        }
        let decision = self.decision(
            DecisionKind::EnrollmentChange,
            &cred.credential_id,
            statement,
            now,
        );
        self.store
            .commit_status(
                &cred.credential_id,
                cred.counter,
                e.counter,
                cred.status,
                CredentialStatus::EnrollmentChanged,
                &decision,
            )
            .map_err(|err| commit_rejection(Step::E10Commit, err))?;
        Ok(cred.credential_id)
    }

    /// Deletes expired challenges from the store.
    pub fn purge_expired_challenges(&self) -> Result<usize, StoreError> {
        self.store.purge_expired_challenges(self.clock.now())
    }
}

/// The rejection for a failed commit at `step` (docs/PROTOCOL.md §7.3). A
/// device model found not active by the commit is reported at the step that
/// checks the model (`R4`, `A4`, `P7`): the check failed there, only later.
fn commit_rejection(step: Step, e: CommitError) -> Rejection {
    let reason = match e {
        CommitError::ChallengeUsed => Reason::ChallengeAlreadyUsed,
        CommitError::CredentialExists => Reason::DuplicateCredential,
        CommitError::UnknownCredential => Reason::UnknownCredential,
        CommitError::CounterConflict => Reason::ConcurrentUpdate,
        // Only `commit_payment` reports it, and `verify_payment` maps it to
        // `P19 CounterSuperseded` itself.
        CommitError::CounterSuperseded { .. } => Reason::ConcurrentUpdate,
        // Only `commit_payment` reports it, and `verify_payment` maps it to
        // `J4 CounterSuperseded` itself.
        CommitError::AppAttestCounterSuperseded { .. } => Reason::ConcurrentUpdate,
        CommitError::CredentialNotActive(s) => Reason::CredentialNotActive(s),
        CommitError::DeviceModelNotActive(s) => {
            let model_step = match step {
                Step::R16Commit => Step::R4DeviceModel,
                Step::A17Commit => Step::A4Platform,
                Step::K13Commit => Step::K4Platform,
                Step::P20Commit => Step::P7DeviceModel,
                other => other,
            };
            return Rejection::new(model_step, Reason::DeviceModelNotActive(s));
        }
        CommitError::Backend(e) => Reason::Store(e),
    };
    Rejection::new(step, reason)
}
