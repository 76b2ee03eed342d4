//! Verification errors. Every rejection names the step of docs/PROTOCOL.md §6
//! that caught it ([`Step`]) and says why ([`Reason`]).

pub use crate::steps::Step;
use crate::{
    android::{AndroidChainError, AndroidPolicyFailure, KeyDescriptionError},
    cose::CoseError,
    messages::{DecodeError, VerifiedBootState},
    policy::{AppAttestEnvironment, HighValueRequirement, ModelStatus},
    store::{CredentialStatus, StoreError},
    x509::ChainError,
};

/// Why a step failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Reason {
    /// The COSE_Sign1 statement is malformed or has unacceptable headers.
    #[error("{0}")]
    Statement(#[from] CoseError),
    /// The payload is not a well-formed message of the expected kind.
    #[error("{0}")]
    Payload(#[from] DecodeError),
    /// The device model is not in the trust configuration.
    #[error("unknown device model")]
    UnknownDeviceModel,
    /// The device model is revoked or compromised.
    #[error("device model is {0:?}")]
    DeviceModelNotActive(ModelStatus),
    /// The attestation chain did not verify.
    #[error("{0}")]
    Chain(#[from] ChainError),
    /// The attestation leaf does not name the claimed device model (subject OU).
    #[error("attestation certificate is not for the claimed device model")]
    LeafModelMismatch,
    /// The attestation leaf key is not a P-256 key.
    #[error("attestation key is not an EC P-256 key")]
    AttestationKeyType,
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// rp_id_hash is not this relying party's.
    #[error("statement is for another relying party")]
    WrongRp,
    /// No such challenge was issued (or it was collected after expiry).
    #[error("unknown challenge")]
    UnknownChallenge,
    /// A self-authenticating payment challenge's MAC does not verify with
    /// any key of the set for this rp id, credential, account and
    /// transaction: forged, altered, issued for another credential, rp or
    /// transaction, or MACed with a key since dropped; or a stored payment
    /// challenge was issued for another transaction than the one the
    /// relying party supplies (docs/PROTOCOL.md §6.1.3, `P9`).
    #[error("challenge not issued by this verifier for this credential and transaction")]
    ChallengeNotAuthentic,
    /// The challenge was issued for another kind of ceremony.
    #[error("challenge was issued for another ceremony")]
    WrongChallengeKind,
    /// The challenge was already used (replay).
    #[error("challenge already used")]
    ChallengeAlreadyUsed,
    /// The challenge expired.
    #[error("challenge expired at {expires_at}, now {now}")]
    ChallengeExpired {
        /// Expiry time.
        expires_at: u64,
        /// Verification time.
        now: u64,
    },
    /// The account handle is not the challenge's.
    #[error("challenge was issued for another account")]
    AccountMismatch,
    /// The challenge was issued for another credential.
    #[error("challenge was issued for another credential")]
    CredentialMismatch,
    /// The modality is not accepted.
    #[error("modality not accepted")]
    ModalityNotAccepted,
    /// A passed liveness check was required.
    #[error("liveness check required")]
    LivenessRequired,
    /// The key's security level is below what is required.
    #[error("key security level too low")]
    InsufficientSecurityLevel,
    /// The device claims a security level its model does not have.
    #[error("security level exceeds the device model's")]
    SecurityLevelOverclaimed,
    /// The verified-boot state is not acceptable.
    #[error("verified boot state {0:?} not accepted")]
    BootState(VerifiedBootState),
    /// The TEE clock differs from the verifier's by more than the allowed skew.
    #[error("TEE time {tee_time} differs from {now} by more than the allowed skew")]
    ClockSkew {
        /// TEE time in the statement.
        tee_time: u64,
        /// Verification time.
        now: u64,
    },
    /// The credential id is registered already.
    #[error("credential already registered")]
    DuplicateCredential,
    /// The new credential's id does not start with the registration
    /// challenge's `credential_id_prefix`, its account's slot (§4.1.9).
    #[error("credential id does not start with the challenge's credential_id_prefix")]
    CredentialIdPrefixMismatch,
    /// No credential with this id.
    #[error("unknown credential")]
    UnknownCredential,
    /// The credential is not active.
    #[error("credential is {0:?}")]
    CredentialNotActive(CredentialStatus),
    /// The signed transaction is not the one issued with the challenge.
    #[error("signed transaction differs from the issued transaction")]
    TransactionMismatch,
    /// The displayed text is not the rendering of the issued transaction.
    #[error("displayed text differs from the issued transaction")]
    DisplayMismatch,
    /// The user did not confirm on the trusted UI.
    #[error("user did not confirm the transaction")]
    NotConfirmed,
    /// The enrolled biometrics changed since registration; re-registration needed.
    #[error("biometric enrollment changed since registration")]
    EnrollmentChanged,
    /// `previous_epoch` is not the registered epoch, or the epoch did not change.
    #[error("enrollment epochs do not match the registered epoch")]
    EpochMismatch,
    /// The policy requires stronger authentication for this amount.
    #[error("policy requires {0:?} for this amount")]
    PolicyRequires(HighValueRequirement),
    /// Too many failed biometric attempts preceded this match.
    #[error("{0} failed attempts before this match exceed the policy")]
    TooManyFailedAttempts(u32),
    /// The counter did not increase: a cloned or rolled-back device.
    #[error("counter {received} is not greater than stored {stored}")]
    CounterNotIncreased {
        /// Stored counter.
        stored: u64,
        /// Counter in the statement.
        received: u64,
    },
    /// The counter did not increase, but exceeds the counter known when the
    /// challenge was issued: a later statement from the same device was
    /// accepted first (out-of-order delivery, not a clone). Not flagged.
    #[error("counter {received} was superseded by stored {stored}")]
    CounterSuperseded {
        /// Stored counter.
        stored: u64,
        /// Counter in the statement.
        received: u64,
    },
    /// The credential changed concurrently; retry with a fresh statement.
    #[error("credential changed concurrently")]
    ConcurrentUpdate,
    /// The verifier has no trust configuration for this platform.
    #[error("platform keystore credentials are not configured")]
    PlatformNotTrusted,
    /// The platform attestation chain did not verify or is revoked.
    #[error("{0}")]
    AndroidChain(#[from] AndroidChainError),
    /// The attestation leaf's KeyDescription is missing or malformed.
    #[error("{0}")]
    KeyDescription(#[from] KeyDescriptionError),
    /// The Android registration policy failed; every failed check is listed.
    #[error("android policy: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    AndroidPolicy(Vec<AndroidPolicyFailure>),
    /// A platform-keystore credential may not approve this amount (P17).
    #[error("platform-keystore credentials may approve at most {max:?} {currency}, not {amount}")]
    PlatformKeystoreLimit {
        /// The transaction currency.
        currency: String,
        /// The configured limit (`None`: the currency is not allowed at all).
        max: Option<u64>,
        /// The transaction amount, minor units.
        amount: u64,
    },
    /// A payment of an Apple App Attest credential above the configured
    /// amount carries no App Attest assertion (P17, docs/PROTOCOL.md §13.9).
    #[error(
        "an App Attest assertion is required {}, amount {amount}",
        assertion_threshold(*.above, .currency)
    )]
    AppAttestAssertionRequired {
        /// The transaction currency.
        currency: String,
        /// The configured amount above which an assertion is required
        /// (`None`: always required in this currency).
        above: Option<u64>,
        /// The transaction amount, minor units.
        amount: u64,
    },
    /// An Apple App Attest object failed a check of §13.4 or §13.5.
    #[error("{0}")]
    AppAttest(#[from] AppAttestError),
    /// The store failed; the statement was not accepted (fail closed).
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// Why an App Attest attestation or assertion was rejected (beyond the
/// reasons shared with other steps: chain, key type, signature, counter).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AppAttestError {
    /// The object is larger than `apple::MAX_ATTESTATION_LEN` / `apple::MAX_ASSERTION_LEN`.
    #[error("object of {0} bytes is too large")]
    TooLarge(usize),
    /// The object is not the CBOR map Apple documents.
    #[error("malformed object at {field}: {reason}")]
    Malformed {
        /// The field being read.
        field: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// `fmt` is not `apple-appattest` (it carries at most the first 32
    /// characters of the sender's text: rejections are logged and audited).
    #[error("fmt is {0:?}, not \"apple-appattest\"")]
    WrongFormat(String),
    /// The leaf has no nonce extension (1.2.840.113635.100.8.2), or it is
    /// duplicated, or it is not `SEQUENCE { [1] EXPLICIT OCTET STRING (32) }`.
    #[error("nonce extension: {0}")]
    NonceExtension(&'static str),
    /// SHA-256(authData ‖ clientDataHash) differs from the leaf's nonce.
    #[error("nonce differs from the attestation certificate's")]
    NonceMismatch,
    /// SHA-256 of the leaf's public key is not the key id the app sent.
    #[error("key id differs from SHA-256 of the attested public key")]
    KeyIdMismatch,
    /// The authenticator data is not rpIdHash | flags | counter | attested credential data.
    #[error("malformed authenticator data: {0}")]
    AuthenticatorData(&'static str),
    /// rpIdHash is SHA-256 of none of the allowed app ids.
    #[error("rpIdHash matches no allowed app id")]
    AppIdNotAllowed,
    /// The attestation's counter is not 0.
    #[error("attestation counter is {0}, not 0")]
    CounterNotZero(u32),
    /// The aaguid names the other environment.
    #[error("aaguid is for {found}, the verifier expects {expected}")]
    WrongEnvironment {
        /// The configured environment.
        expected: AppAttestEnvironment,
        /// The environment the aaguid names.
        found: AppAttestEnvironment,
    },
    /// The aaguid names no App Attest environment.
    #[error("aaguid {0} is not an App Attest aaguid")]
    UnknownAaguid(String),
    /// credentialId in the authenticator data is not the key id.
    #[error("credentialId differs from the key id")]
    CredentialIdMismatch,
    /// The COSE key in the authenticator data is not the leaf's key.
    #[error("credential public key differs from the attestation certificate's key")]
    CredentialKeyMismatch,
}

/// A rejected statement: the step that caught it and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rejected at {step}: {reason}")]
pub struct Rejection {
    /// The verification step (docs/PROTOCOL.md §6).
    pub step: Step,
    /// Why it failed.
    pub reason: Reason,
}

impl Rejection {
    /// Builds a rejection.
    pub fn new(step: Step, reason: impl Into<Reason>) -> Self {
        Self {
            step,
            reason: reason.into(),
        }
    }
    /// Whether the verifier already recorded this rejection through
    /// [`crate::Store::flag_credential`], in the same transaction as the
    /// credential's status change (docs/PROTOCOL.md §7.3): a correctly signed
    /// statement from a changed enrollment (`P15`) or a counter at or below
    /// the one stored when its challenge was issued (`P19`
    /// `CounterNotIncreased`). An RP that audits rejections must not append
    /// these again. (When the flag could not be written the rejection is
    /// `Store(..)`, which was not recorded.)
    pub fn recorded_by_flag(&self) -> bool {
        matches!(
            (self.step, &self.reason),
            (Step::P15EnrollmentEpoch, Reason::EnrollmentChanged)
                | (Step::P19Counter, Reason::CounterNotIncreased { .. })
        )
    }

    /// Whether this rejection counts toward locking the credential and its
    /// account (docs/PROTOCOL.md §9.2, "Lockout").
    ///
    /// Only a failure that needed **both** the credential key and a fresh
    /// challenge counts: a payment assertion whose signature verified (P5),
    /// for this rp (P8), answering a live payment challenge that was issued
    /// for this credential and account and is still unconsumed and unexpired
    /// (P9–P11), that then fails a later check (P12–P18). Nobody without the
    /// credential key can produce such a statement, and no captured statement
    /// can: its challenge is consumed (P9) or expired (P10) once it has been
    /// used or abandoned.
    ///
    /// Never counted:
    /// - anything before the signature verified (P1–P5): anyone can send
    ///   garbage naming a victim's credential;
    /// - P6–P11: a replayed, expired, foreign or misbound statement is exactly
    ///   what a third party holding captured bytes can submit;
    /// - P19 (`CounterNotIncreased`, `CounterSuperseded`) and P20 (commit
    ///   races): an earlier statement delivered late, or a copy racing the
    ///   original; a suspected clone is flagged by P19 itself;
    /// - deregistrations and enrollment changes (D, E): unsolicited statements
    ///   with no challenge, so a replay of a captured one must not count;
    /// - registrations (R, A, K, and I inside K): there is no credential yet
    ///   to lock;
    /// - App Attest assertions of a payment (J1–J4) and a missing one
    ///   (P17 `AppAttestAssertionRequired`): the assertion travels beside the
    ///   signed statement, not inside it, so whoever relays a live statement
    ///   could strip or replace it; counting it would let a relay lock the
    ///   user out (docs/PROTOCOL.md §9.2);
    /// - a store failure at any step (fail closed, but the user did nothing).
    pub fn counts_toward_lockout(&self) -> bool {
        // A missing App Attest assertion (P17) is not covered by the Secure
        // Enclave signature: whoever relays a live statement can strip it.
        if matches!(
            self.reason,
            Reason::Store(_) | Reason::AppAttestAssertionRequired { .. }
        ) {
            return false;
        }
        matches!(
            self.step,
            Step::P12TransactionHash
                | Step::P13DisplayHash
                | Step::P14UserConfirmed
                | Step::P15EnrollmentEpoch
                | Step::P16Modality
                | Step::P17Policy
                | Step::P18TeeClock
        )
    }
}

/// The amounts of `currency` that need an App Attest assertion, in words
/// (the `Display` of [`Reason::AppAttestAssertionRequired`]).
fn assertion_threshold(above: Option<u64>, currency: &str) -> String {
    match above {
        Some(above) => format!("above {above} {currency}"),
        None => format!("for every amount in {currency}"),
    }
}

/// Shorthand for `Err(Rejection)` at `step`.
pub(crate) fn reject<T>(step: Step, reason: impl Into<Reason>) -> Result<T, Rejection> {
    Err(Rejection::new(step, reason))
}

/// Maps any error at a step into a [`Rejection`].
pub(crate) trait AtStep<T> {
    fn at(self, step: Step) -> Result<T, Rejection>;
}

impl<T, E: Into<Reason>> AtStep<T> for Result<T, E> {
    fn at(self, step: Step) -> Result<T, Rejection> {
        self.map_err(|e| Rejection::new(step, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        android::AndroidPolicyFailure, apple::AppAttestError, cose::CoseError,
        messages::DecodeError, x509::ChainError,
    };

    /// The lockout verdict of every (step, reason) pair the verifiers
    /// produce, written out by hand: the expected verdict lives here, in data,
    /// not in the code under test (docs/PROTOCOL.md §9.2, "Lockout").
    fn table() -> Vec<(Step, Reason, bool)> {
        use Reason as R;
        use Step as S;
        let store = || R::Store(StoreError("disk full".into()));
        let stmt = || R::Statement(CoseError::NotCoseSign1);
        let payload = || R::Payload(DecodeError::NotAMap);
        let skew = || R::ClockSkew {
            tee_time: 1,
            now: 1_000,
        };
        let not_increased = || R::CounterNotIncreased {
            stored: 5,
            received: 5,
        };
        let mut t = vec![
            // Payment: only P12–P18 after a verified signature and a live,
            // unconsumed, bound challenge count.
            (S::P1Statement, stmt(), false),
            (S::P2Header, stmt(), false),
            (S::P3Payload, payload(), false),
            (S::P4Credential, R::UnknownCredential, false),
            (S::P4Credential, store(), false),
            (S::P5Signature, R::BadSignature, false),
            (
                S::P6CredentialStatus,
                R::CredentialNotActive(CredentialStatus::Suspended),
                false,
            ),
            (S::P7DeviceModel, R::UnknownDeviceModel, false),
            (
                S::P7DeviceModel,
                R::DeviceModelNotActive(ModelStatus::Compromised),
                false,
            ),
            (S::P7DeviceModel, R::PlatformNotTrusted, false),
            (S::P8RpId, R::WrongRp, false),
            (S::P9Challenge, R::UnknownChallenge, false),
            (S::P9Challenge, R::WrongChallengeKind, false),
            (S::P9Challenge, R::ChallengeNotAuthentic, false),
            (S::P9Challenge, R::ChallengeAlreadyUsed, false),
            (S::P9Challenge, R::WrongRp, false),
            (S::P9Challenge, store(), false),
            (
                S::P10ChallengeExpiry,
                R::ChallengeExpired {
                    expires_at: 1,
                    now: 2,
                },
                false,
            ),
            (S::P11ChallengeBinding, R::CredentialMismatch, false),
            (S::P11ChallengeBinding, R::AccountMismatch, false),
            (S::P12TransactionHash, R::TransactionMismatch, true),
            (S::P13DisplayHash, R::DisplayMismatch, true),
            (S::P14UserConfirmed, R::NotConfirmed, true),
            (S::P15EnrollmentEpoch, R::EnrollmentChanged, true),
            (S::P15EnrollmentEpoch, store(), false),
            (S::P16Modality, R::ModalityNotAccepted, true),
            (S::P16Modality, R::LivenessRequired, true),
            (
                S::P17Policy,
                R::PolicyRequires(HighValueRequirement::FaceWithLiveness),
                true,
            ),
            (S::P17Policy, R::TooManyFailedAttempts(9), true),
            (
                S::P17Policy,
                R::PlatformKeystoreLimit {
                    currency: "CNY".into(),
                    max: Some(100),
                    amount: 101,
                },
                true,
            ),
            (S::P18TeeClock, skew(), true),
            (S::P19Counter, not_increased(), false),
            (
                S::P19Counter,
                R::CounterSuperseded {
                    stored: 6,
                    received: 5,
                },
                false,
            ),
            (S::P19Counter, store(), false),
            (S::P20Commit, R::ChallengeAlreadyUsed, false),
            (S::P20Commit, R::ConcurrentUpdate, false),
            (S::P20Commit, R::UnknownCredential, false),
            (
                S::P20Commit,
                R::CredentialNotActive(CredentialStatus::SuspectedClone),
                false,
            ),
            (S::P20Commit, store(), false),
            // Deregistration and enrollment change: unsolicited statements,
            // no challenge, so nothing counts (a captured one can be replayed).
            (S::D1Statement, stmt(), false),
            (S::D2Header, stmt(), false),
            (S::D3Payload, payload(), false),
            (S::D4Credential, R::UnknownCredential, false),
            (S::D5Signature, R::BadSignature, false),
            (S::D6RpId, R::WrongRp, false),
            (
                S::D7CredentialStatus,
                R::CredentialNotActive(CredentialStatus::Deregistered),
                false,
            ),
            (S::D8Counter, not_increased(), false),
            (S::D9Commit, R::ConcurrentUpdate, false),
            (S::E1Statement, stmt(), false),
            (S::E2Header, stmt(), false),
            (S::E3Payload, payload(), false),
            (S::E4Credential, R::UnknownCredential, false),
            (S::E5Signature, R::BadSignature, false),
            (S::E6RpId, R::WrongRp, false),
            (
                S::E7CredentialStatus,
                R::CredentialNotActive(CredentialStatus::Deregistered),
                false,
            ),
            (S::E8Epoch, R::EpochMismatch, false),
            (S::E9Counter, not_increased(), false),
            (S::E10Commit, R::ConcurrentUpdate, false),
            // Registrations: there is no credential yet to lock.
            (S::R1Statement, stmt(), false),
            (S::R2Header, stmt(), false),
            (S::R3Payload, payload(), false),
            (S::R4DeviceModel, R::UnknownDeviceModel, false),
            (S::R5AttestationChain, R::Chain(ChainError::Empty), false),
            (S::R5AttestationChain, R::LeafModelMismatch, false),
            (S::R5AttestationChain, R::AttestationKeyType, false),
            (S::R6Signature, R::BadSignature, false),
            (S::R7RpId, R::WrongRp, false),
            (S::R8Challenge, R::ChallengeAlreadyUsed, false),
            (
                S::R9ChallengeExpiry,
                R::ChallengeExpired {
                    expires_at: 1,
                    now: 2,
                },
                false,
            ),
            (S::R10Account, R::AccountMismatch, false),
            (S::R11Modality, R::ModalityNotAccepted, false),
            (S::R12SecurityLevel, R::InsufficientSecurityLevel, false),
            (S::R12SecurityLevel, R::SecurityLevelOverclaimed, false),
            (
                S::R13BootState,
                R::BootState(VerifiedBootState::Unverified),
                false,
            ),
            (S::R14TeeClock, skew(), false),
            (S::R15CredentialId, R::DuplicateCredential, false),
            (S::R15CredentialId, R::CredentialIdPrefixMismatch, false),
            (S::R16Commit, R::ChallengeAlreadyUsed, false),
            (S::A1Statement, stmt(), false),
            (S::A2Header, stmt(), false),
            (S::A3Payload, payload(), false),
            (S::A4Platform, R::PlatformNotTrusted, false),
            (
                S::A5AttestationChain,
                R::AndroidChain(ChainError::Empty.into()),
                false,
            ),
            (
                S::A6Revocation,
                R::AndroidChain(ChainError::Empty.into()),
                false,
            ),
            (
                S::A7KeyDescription,
                R::KeyDescription(KeyDescriptionError::Missing),
                false,
            ),
            (S::A8AttestedKey, R::AttestationKeyType, false),
            (S::A9Signature, R::BadSignature, false),
            (S::A10RpId, R::WrongRp, false),
            (S::A11Challenge, R::UnknownChallenge, false),
            (
                S::A12ChallengeExpiry,
                R::ChallengeExpired {
                    expires_at: 1,
                    now: 2,
                },
                false,
            ),
            (S::A13Account, R::AccountMismatch, false),
            (S::A14Modality, R::ModalityNotAccepted, false),
            (
                S::A15AndroidPolicy,
                R::AndroidPolicy(vec![AndroidPolicyFailure::ChallengeMismatch]),
                false,
            ),
            (S::A16CredentialId, R::DuplicateCredential, false),
            (S::A16CredentialId, R::CredentialIdPrefixMismatch, false),
            (S::A17Commit, R::ChallengeAlreadyUsed, false),
            // Apple App Attest objects (§13): verified on their own, never a
            // payment statement answering a live challenge.
            (
                S::I1AttestationObject,
                R::AppAttest(AppAttestError::TooLarge(1)),
                false,
            ),
            (S::I2AttestationChain, R::Chain(ChainError::Empty), false),
            (
                S::I3Nonce,
                R::AppAttest(AppAttestError::NonceMismatch),
                false,
            ),
            (
                S::I4KeyId,
                R::AppAttest(AppAttestError::KeyIdMismatch),
                false,
            ),
            (
                S::I5AuthenticatorData,
                R::AppAttest(AppAttestError::AuthenticatorData("x")),
                false,
            ),
            (
                S::I6AppId,
                R::AppAttest(AppAttestError::AppIdNotAllowed),
                false,
            ),
            (
                S::I7Counter,
                R::AppAttest(AppAttestError::CounterNotZero(1)),
                false,
            ),
            (
                S::I8Aaguid,
                R::AppAttest(AppAttestError::UnknownAaguid("x".into())),
                false,
            ),
            (
                S::I9CredentialId,
                R::AppAttest(AppAttestError::CredentialIdMismatch),
                false,
            ),
            (
                S::I10CredentialKey,
                R::AppAttest(AppAttestError::CredentialKeyMismatch),
                false,
            ),
            (
                S::J1AssertionObject,
                R::AppAttest(AppAttestError::TooLarge(1)),
                false,
            ),
            (S::J2Signature, R::BadSignature, false),
            (
                S::J3AppId,
                R::AppAttest(AppAttestError::AppIdNotAllowed),
                false,
            ),
            (S::J4Counter, not_increased(), false),
            (S::K1Statement, R::Statement(CoseError::NotCoseSign1), false),
            (S::K2Header, R::Statement(CoseError::SignatureLength), false),
            (
                S::K3Payload,
                R::Payload(DecodeError::MissingField("public_key")),
                false,
            ),
            (S::K4Platform, R::PlatformNotTrusted, false),
            (S::K5Signature, R::BadSignature, false),
            (S::K5Signature, R::AttestationKeyType, false),
            (S::K6RpId, R::WrongRp, false),
            (S::K7Challenge, R::ChallengeAlreadyUsed, false),
            (
                S::K8ChallengeExpiry,
                R::ChallengeExpired {
                    expires_at: 1,
                    now: 2,
                },
                false,
            ),
            (S::K9Account, R::AccountMismatch, false),
            (S::K10Modality, R::ModalityNotAccepted, false),
            (S::K11SecurityLevel, R::InsufficientSecurityLevel, false),
            (S::K12CredentialId, R::DuplicateCredential, false),
            (S::K12CredentialId, R::CredentialIdPrefixMismatch, false),
            (S::K13Commit, R::ChallengeAlreadyUsed, false),
            (
                S::K4Platform,
                R::DeviceModelNotActive(ModelStatus::Revoked),
                false,
            ),
            // Payment steps of an App Attest credential: a missing assertion
            // (P17) and every assertion failure (J) can be caused by a relay
            // that strips or swaps the assertion beside a live statement.
            (
                S::P17Policy,
                R::AppAttestAssertionRequired {
                    currency: "USD".into(),
                    above: Some(1),
                    amount: 2,
                },
                false,
            ),
            (S::J2Signature, R::AttestationKeyType, false),
            (
                S::J4Counter,
                R::CounterSuperseded {
                    stored: 2,
                    received: 2,
                },
                false,
            ),
        ];
        // A store failure never counts, whatever the step.
        t.extend(Step::ALL.iter().map(|&s| (s, store(), false)));
        t
    }

    /// Names each `Reason` variant; no wildcard arm, so a new variant does
    /// not compile until this table says whether it counts.
    fn variant(r: &Reason) -> &'static str {
        match r {
            Reason::Statement(_) => "Statement",
            Reason::Payload(_) => "Payload",
            Reason::UnknownDeviceModel => "UnknownDeviceModel",
            Reason::DeviceModelNotActive(_) => "DeviceModelNotActive",
            Reason::Chain(_) => "Chain",
            Reason::LeafModelMismatch => "LeafModelMismatch",
            Reason::AttestationKeyType => "AttestationKeyType",
            Reason::BadSignature => "BadSignature",
            Reason::WrongRp => "WrongRp",
            Reason::UnknownChallenge => "UnknownChallenge",
            Reason::WrongChallengeKind => "WrongChallengeKind",
            Reason::ChallengeNotAuthentic => "ChallengeNotAuthentic",
            Reason::ChallengeAlreadyUsed => "ChallengeAlreadyUsed",
            Reason::ChallengeExpired { .. } => "ChallengeExpired",
            Reason::AccountMismatch => "AccountMismatch",
            Reason::CredentialMismatch => "CredentialMismatch",
            Reason::ModalityNotAccepted => "ModalityNotAccepted",
            Reason::LivenessRequired => "LivenessRequired",
            Reason::InsufficientSecurityLevel => "InsufficientSecurityLevel",
            Reason::SecurityLevelOverclaimed => "SecurityLevelOverclaimed",
            Reason::BootState(_) => "BootState",
            Reason::ClockSkew { .. } => "ClockSkew",
            Reason::DuplicateCredential => "DuplicateCredential",
            Reason::CredentialIdPrefixMismatch => "CredentialIdPrefixMismatch",
            Reason::UnknownCredential => "UnknownCredential",
            Reason::CredentialNotActive(_) => "CredentialNotActive",
            Reason::TransactionMismatch => "TransactionMismatch",
            Reason::DisplayMismatch => "DisplayMismatch",
            Reason::NotConfirmed => "NotConfirmed",
            Reason::EnrollmentChanged => "EnrollmentChanged",
            Reason::EpochMismatch => "EpochMismatch",
            Reason::PolicyRequires(_) => "PolicyRequires",
            Reason::TooManyFailedAttempts(_) => "TooManyFailedAttempts",
            Reason::CounterNotIncreased { .. } => "CounterNotIncreased",
            Reason::CounterSuperseded { .. } => "CounterSuperseded",
            Reason::ConcurrentUpdate => "ConcurrentUpdate",
            Reason::PlatformNotTrusted => "PlatformNotTrusted",
            Reason::AndroidChain(_) => "AndroidChain",
            Reason::KeyDescription(_) => "KeyDescription",
            Reason::AndroidPolicy(_) => "AndroidPolicy",
            Reason::PlatformKeystoreLimit { .. } => "PlatformKeystoreLimit",
            Reason::AppAttest(_) => "AppAttest",
            Reason::AppAttestAssertionRequired { .. } => "AppAttestAssertionRequired",
            Reason::Store(_) => "Store",
        }
    }

    const ALL_REASONS: usize = 44;

    #[test]
    fn lockout_verdict_of_every_step_and_reason() {
        for (step, reason, counts) in table() {
            let r = Rejection::new(step, reason);
            assert_eq!(r.counts_toward_lockout(), counts, "{r}");
        }
    }

    #[test]
    fn the_lockout_table_covers_every_step_and_every_reason() {
        let t = table();
        for s in Step::ALL {
            assert!(
                t.iter()
                    .any(|(step, reason, _)| step == s && variant(reason) != "Store"),
                "{s} has no row in the lockout table"
            );
        }
        let mut seen: Vec<_> = t.iter().map(|(_, r, _)| variant(r)).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(
            seen.len(),
            ALL_REASONS,
            "a Reason variant has no row: {seen:?}"
        );
    }

    #[test]
    fn only_the_two_flagging_rejections_are_recorded_by_the_flag() {
        for (step, reason, _) in table() {
            let r = Rejection::new(step, reason);
            let expected = matches!(
                (r.step.code(), variant(&r.reason)),
                ("P15", "EnrollmentChanged") | ("P19", "CounterNotIncreased")
            );
            assert_eq!(r.recorded_by_flag(), expected, "{r}");
        }
        let superseded = Rejection::new(
            Step::P19Counter,
            Reason::CounterSuperseded {
                stored: 2,
                received: 1,
            },
        );
        assert!(!superseded.recorded_by_flag());
    }

    #[test]
    fn only_failures_that_need_the_key_and_a_live_challenge_count() {
        // The steps that can count are exactly the payment steps after the
        // challenge checks (P11) and before the counter (P19).
        let counting: Vec<_> = table()
            .into_iter()
            .filter(|(_, _, c)| *c)
            .map(|(s, _, _)| s.code())
            .collect();
        for code in &counting {
            let n: u32 = code[1..].parse().unwrap();
            assert!(code.starts_with('P') && (12..=18).contains(&n), "{code}");
        }
    }

    /// The reason is read by people (and shipped in docs/vectors): it says
    /// the threshold as an amount, not as a Rust `Option`.
    #[test]
    fn the_assertion_threshold_reads_as_an_amount() {
        let required = |above| Reason::AppAttestAssertionRequired {
            currency: "CNY".into(),
            above,
            amount: 20_000,
        };
        assert_eq!(
            required(Some(10_000)).to_string(),
            "an App Attest assertion is required above 10000 CNY, amount 20000"
        );
        assert_eq!(
            required(None).to_string(),
            "an App Attest assertion is required for every amount in CNY, amount 20000"
        );
    }
}
