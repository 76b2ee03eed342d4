//! Verification errors. Every rejection names the step of docs/PROTOCOL.md §6
//! that caught it ([`Step`]) and says why ([`Reason`]).

use crate::{
    android::{AndroidChainError, AndroidPolicyFailure, KeyDescriptionError},
    apple::AppAttestError,
    cose::CoseError,
    messages::{DecodeError, VerifiedBootState},
    store::{CredentialStatus, StoreError},
    verifier::{HighValueRequirement, ModelStatus},
    x509::ChainError,
};

macro_rules! steps {
    ($($(#[$m:meta])* $variant:ident = ($code:literal, $name:literal)),+ $(,)?) => {
        /// A numbered verification step of docs/PROTOCOL.md §6.
        ///
        /// `R` steps verify a [`crate::KeyAttestation`] (§6.3), `P` steps a
        /// [`crate::PaymentAssertion`] (§6.4), `D` steps a
        /// [`crate::Deregistration`] (§6.5), `E` steps an
        /// [`crate::EnrollmentChange`] (§6.6), `A` steps a
        /// [`crate::PlatformKeyRegistration`] (§12.5), `K` steps an
        /// [`crate::AppleKeyRegistration`] (§13.8), `I` steps an Apple App
        /// Attest attestation (§13.4) and `J` steps an App Attest assertion
        /// (§13.5, also beside a payment, §13.9).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Step { $($(#[$m])* $variant),+ }

        impl Step {
            /// The step's code as in docs/PROTOCOL.md, e.g. `"P12"`.
            pub fn code(self) -> &'static str {
                match self { $(Self::$variant => $code),+ }
            }
            /// The step's stable name, e.g. `"transaction-hash"`.
            pub fn name(self) -> &'static str {
                match self { $(Self::$variant => $name),+ }
            }
            /// Every step, in order.
            pub const ALL: &'static [Step] = &[$(Self::$variant),+];
        }
    };
}

steps! {
    /// R1: the statement is a deterministic, tagged COSE_Sign1.
    R1Statement = ("R1", "statement"),
    /// R2: protected header is exactly alg ES256 + x5chain.
    R2Header = ("R2", "header"),
    /// R3: the payload is a well-formed KeyAttestation.
    R3Payload = ("R3", "payload"),
    /// R4: the device model is known and active.
    R4DeviceModel = ("R4", "device-model"),
    /// R5: the x5chain verifies to a trust root of the model at the current time.
    R5AttestationChain = ("R5", "attestation-chain"),
    /// R6: the statement is signed by the attestation leaf's key.
    R6Signature = ("R6", "signature"),
    /// R7: rp_id_hash is SHA-256 of this verifier's rp id.
    R7RpId = ("R7", "rp-id"),
    /// R8: the challenge was issued as a registration challenge and is unused.
    R8Challenge = ("R8", "challenge"),
    /// R9: the challenge has not expired.
    R9ChallengeExpiry = ("R9", "challenge-expiry"),
    /// R10: the account handle is the one the challenge was issued for.
    R10Account = ("R10", "account"),
    /// R11: the bound modalities are accepted by the challenge and the device model.
    R11Modality = ("R11", "modality"),
    /// R12: the key's security level meets the challenge and policy and does not exceed the model's.
    R12SecurityLevel = ("R12", "security-level"),
    /// R13: the verified-boot state is acceptable.
    R13BootState = ("R13", "boot-state"),
    /// R14: the TEE clock is within the allowed skew.
    R14TeeClock = ("R14", "tee-clock"),
    /// R15: the credential id is not registered yet.
    R15CredentialId = ("R15", "credential-id"),
    /// R16: the challenge is consumed and the credential stored atomically.
    R16Commit = ("R16", "commit"),

    /// P1: the statement is a deterministic, tagged COSE_Sign1.
    P1Statement = ("P1", "statement"),
    /// P2: protected header is exactly alg ES256.
    P2Header = ("P2", "header"),
    /// P3: the payload is a well-formed PaymentAssertion.
    P3Payload = ("P3", "payload"),
    /// P4: the credential is registered.
    P4Credential = ("P4", "credential"),
    /// P5: the statement is signed by the credential key.
    P5Signature = ("P5", "signature"),
    /// P6: the credential is active.
    P6CredentialStatus = ("P6", "credential-status"),
    /// P7: the credential's device model is active.
    P7DeviceModel = ("P7", "device-model"),
    /// P8: rp_id_hash is SHA-256 of this verifier's rp id.
    P8RpId = ("P8", "rp-id"),
    /// P9: the challenge was issued as a payment challenge and is unused.
    P9Challenge = ("P9", "challenge"),
    /// P10: the challenge has not expired.
    P10ChallengeExpiry = ("P10", "challenge-expiry"),
    /// P11: the challenge was issued for this account and credential.
    P11ChallengeBinding = ("P11", "challenge-binding"),
    /// P12: transaction_hash matches the transaction stored with the challenge.
    P12TransactionHash = ("P12", "transaction-hash"),
    /// P13: display_hash matches the rendering of that transaction.
    P13DisplayHash = ("P13", "display-hash"),
    /// P14: the user confirmed on the trusted UI.
    P14UserConfirmed = ("P14", "user-confirmed"),
    /// P15: the enrollment epoch is the registered one.
    P15EnrollmentEpoch = ("P15", "enrollment-epoch"),
    /// P16: modality and liveness are accepted for this credential and challenge.
    P16Modality = ("P16", "modality"),
    /// P17: the policy for this amount is met.
    P17Policy = ("P17", "policy"),
    /// P18: the TEE clock is within the allowed skew.
    P18TeeClock = ("P18", "tee-clock"),
    /// P19: the counter is greater than the stored counter.
    P19Counter = ("P19", "counter"),
    /// P20: challenge consumed and counter advanced atomically.
    P20Commit = ("P20", "commit"),

    /// D1: the statement is a deterministic, tagged COSE_Sign1.
    D1Statement = ("D1", "statement"),
    /// D2: protected header is exactly alg ES256.
    D2Header = ("D2", "header"),
    /// D3: the payload is a well-formed Deregistration.
    D3Payload = ("D3", "payload"),
    /// D4: the credential is registered.
    D4Credential = ("D4", "credential"),
    /// D5: the statement is signed by the credential key.
    D5Signature = ("D5", "signature"),
    /// D6: rp_id_hash is SHA-256 of this verifier's rp id.
    D6RpId = ("D6", "rp-id"),
    /// D7: the credential is not deregistered already.
    D7CredentialStatus = ("D7", "credential-status"),
    /// D8: the counter is greater than the stored counter.
    D8Counter = ("D8", "counter"),
    /// D9: status and counter updated atomically.
    D9Commit = ("D9", "commit"),

    /// E1: the statement is a deterministic, tagged COSE_Sign1.
    E1Statement = ("E1", "statement"),
    /// E2: protected header is exactly alg ES256.
    E2Header = ("E2", "header"),
    /// E3: the payload is a well-formed EnrollmentChange.
    E3Payload = ("E3", "payload"),
    /// E4: the credential is registered.
    E4Credential = ("E4", "credential"),
    /// E5: the statement is signed by the credential key.
    E5Signature = ("E5", "signature"),
    /// E6: rp_id_hash is SHA-256 of this verifier's rp id.
    E6RpId = ("E6", "rp-id"),
    /// E7: the credential is not deregistered.
    E7CredentialStatus = ("E7", "credential-status"),
    /// E8: previous_epoch is the registered epoch and current_epoch differs.
    E8Epoch = ("E8", "epoch"),
    /// E9: the counter is greater than the stored counter.
    E9Counter = ("E9", "counter"),
    /// E10: status and counter updated atomically.
    E10Commit = ("E10", "commit"),

    /// A1: the statement is a deterministic, tagged COSE_Sign1.
    A1Statement = ("A1", "statement"),
    /// A2: protected header is exactly alg ES256 + x5chain; signature 64-byte fixed or DER.
    A2Header = ("A2", "header"),
    /// A3: the payload is a well-formed PlatformKeyRegistration.
    A3Payload = ("A3", "payload"),
    /// A4: the verifier trusts this platform (Android trust is configured).
    A4Platform = ("A4", "platform"),
    /// A5: the x5chain verifies to an Android root key at the current time.
    A5AttestationChain = ("A5", "attestation-chain"),
    /// A6: no certificate on the path is revoked or suspended.
    A6Revocation = ("A6", "revocation"),
    /// A7: the leaf carries a well-formed KeyDescription.
    A7KeyDescription = ("A7", "key-description"),
    /// A8: the attested key is an EC P-256 key.
    A8AttestedKey = ("A8", "attested-key"),
    /// A9: the statement is signed by the attested key (proof of possession).
    A9Signature = ("A9", "signature"),
    /// A10: rp_id_hash is SHA-256 of this verifier's rp id.
    A10RpId = ("A10", "rp-id"),
    /// A11: the challenge was issued as a registration challenge and is unused.
    A11Challenge = ("A11", "challenge"),
    /// A12: the challenge has not expired.
    A12ChallengeExpiry = ("A12", "challenge-expiry"),
    /// A13: the account handle is the one the challenge was issued for.
    A13Account = ("A13", "account"),
    /// A14: the modalities are accepted by the challenge.
    A14Modality = ("A14", "modality"),
    /// A15: the KeyDescription meets the Android registration policy (all failures reported).
    A15AndroidPolicy = ("A15", "android-policy"),
    /// A16: the credential id is not registered yet.
    A16CredentialId = ("A16", "credential-id"),
    /// A17: the challenge is consumed and the credential stored atomically.
    A17Commit = ("A17", "commit"),

    /// K1: the statement is a deterministic, tagged COSE_Sign1 with a payload.
    K1Statement = ("K1", "statement"),
    /// K2: protected header is exactly alg ES256; signature 64-byte fixed or DER.
    K2Header = ("K2", "header"),
    /// K3: the payload is a well-formed AppleKeyRegistration.
    K3Payload = ("K3", "payload"),
    /// K4: the verifier trusts Apple App Attest (Apple trust is configured).
    K4Platform = ("K4", "platform"),
    /// K5: the statement is signed by the Secure Enclave key it carries (proof of possession).
    K5Signature = ("K5", "signature"),
    /// K6: rp_id_hash is SHA-256 of this verifier's rp id.
    K6RpId = ("K6", "rp-id"),
    /// K7: the challenge was issued as a registration challenge and is unused.
    K7Challenge = ("K7", "challenge"),
    /// K8: the challenge has not expired.
    K8ChallengeExpiry = ("K8", "challenge-expiry"),
    /// K9: the account handle is the one the challenge was issued for.
    K9Account = ("K9", "account"),
    /// K10: the modalities are accepted by the challenge.
    K10Modality = ("K10", "modality"),
    /// K11: the challenge and the policy accept an unattested Secure Enclave key (TEE level).
    K11SecurityLevel = ("K11", "security-level"),
    /// K12: the credential id is not registered yet.
    K12CredentialId = ("K12", "credential-id"),
    /// K13: the challenge is consumed and the credential stored atomically.
    K13Commit = ("K13", "commit"),

    /// I1: the App Attest attestation object is well formed; `fmt` is "apple-appattest".
    I1AttestationObject = ("I1", "attestation-object"),
    /// I2: the x5c chain verifies to an Apple App Attestation root key at the verification time.
    I2AttestationChain = ("I2", "attestation-chain"),
    /// I3: SHA-256(authData ‖ clientDataHash) equals the leaf's nonce extension.
    I3Nonce = ("I3", "nonce"),
    /// I4: the leaf key is P-256; its key id (SHA-256 of the point) is the app's key id.
    I4KeyId = ("I4", "key-id"),
    /// I5: the authenticator data is well formed (attested credential data present).
    I5AuthenticatorData = ("I5", "authenticator-data"),
    /// I6: rpIdHash is SHA-256 of an allowed app id.
    I6AppId = ("I6", "app-id"),
    /// I7: the counter is 0.
    I7Counter = ("I7", "counter"),
    /// I8: the aaguid is the configured environment's.
    I8Aaguid = ("I8", "aaguid"),
    /// I9: credentialId is the key id.
    I9CredentialId = ("I9", "credential-id"),
    /// I10: the credential public key is the leaf's key.
    I10CredentialKey = ("I10", "credential-key"),

    /// J1: the App Attest assertion object is well formed (37-byte authenticatorData).
    J1AssertionObject = ("J1", "assertion-object"),
    /// J2: the signature over SHA-256(authenticatorData ‖ clientDataHash) verifies with the attested key.
    J2Signature = ("J2", "signature"),
    /// J3: rpIdHash is SHA-256 of the credential's app id.
    J3AppId = ("J3", "app-id"),
    /// J4: the counter is greater than the stored counter.
    J4Counter = ("J4", "counter"),
}

impl core::fmt::Display for Step {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} {}", self.code(), self.name())
    }
}

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
    #[error("an App Attest assertion is required above {above:?} {currency}, amount {amount}")]
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

    const ALL_REASONS: usize = 43;

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
}
