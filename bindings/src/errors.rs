//! Every error that crosses the FFI, mapped from the core types in one place.
//! No field is named `message` (it would clash with the exception's own).

use biopay_core::{DeviceError, Rejection};

/// What an app sees when the device side refuses. Arrives in Kotlin as
/// `BiopayException.NoMatch` etc., in Swift as `BiopayError.NoMatch`, in
/// Python as `BiopayError.NoMatch`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
#[non_exhaustive]
pub enum BiopayError {
    /// The biometric did not match; the user may try again.
    #[error("biometric did not match")]
    NoMatch,
    /// Too many failed attempts. `until_epoch_seconds` is when the lockout
    /// ends (Unix seconds); `None` means locked until the device passcode is entered.
    #[error("biometric locked out")]
    LockedOut {
        /// End of the lockout, Unix seconds, or `None` for a permanent lockout.
        until_epoch_seconds: Option<i64>,
    },
    /// A presentation attack was detected (liveness check failed).
    #[error("liveness check failed")]
    SpoofDetected,
    /// The user dismissed the prompt.
    #[error("user canceled")]
    UserCanceled,
    /// The app cancelled the call ([`crate::BiopayClient::cancel`], e.g. from
    /// a Swift task's cancellation handler) before anything was signed: no
    /// counter was used up, and the next call works. (A cancelled Kotlin
    /// coroutine or Python task ends with the language's own cancellation
    /// exception instead, with the same guarantees.)
    #[error("cancelled")]
    Cancelled,
    /// The key can no longer be used (enrollment changed, or the key is gone): register again.
    #[error("key invalidated")]
    KeyInvalidated,
    /// The user declined the transaction shown on the trusted UI.
    #[error("transaction declined")]
    TransactionDeclined,
    /// No biometric of an accepted modality is enrolled on the device.
    #[error("no accepted biometric is enrolled")]
    NotEnrolled,
    /// The server's challenge is malformed, expired or for another relying party.
    #[error("invalid challenge: {reason}")]
    InvalidChallenge {
        /// Why.
        reason: String,
    },
    /// The keystore (or its storage) failed.
    #[error("keystore: {reason}")]
    Keystore {
        /// Why.
        reason: String,
    },
    /// A bug or an unexpected state in the SDK.
    #[error("internal error: {reason}")]
    Internal {
        /// Why.
        reason: String,
    },
}

impl From<DeviceError> for BiopayError {
    fn from(e: DeviceError) -> Self {
        match e {
            DeviceError::NoMatch => Self::NoMatch,
            DeviceError::LockedOut { until } => Self::LockedOut {
                until_epoch_seconds: until.map(|t| i64::try_from(t).unwrap_or(i64::MAX)),
            },
            DeviceError::SpoofDetected => Self::SpoofDetected,
            DeviceError::UserCanceled => Self::UserCanceled,
            DeviceError::TransactionDeclined => Self::TransactionDeclined,
            DeviceError::NotEnrolled => Self::NotEnrolled,
            DeviceError::KeyInvalidated | DeviceError::UnknownCredential => Self::KeyInvalidated,
            DeviceError::InvalidChallenge(reason) => Self::InvalidChallenge { reason },
            DeviceError::SealedBlobCorrupt => Self::Keystore {
                reason: e.to_string(),
            },
            DeviceError::Keystore(reason) => Self::Keystore { reason },
            other => Self::Internal {
                reason: other.to_string(),
            },
        }
    }
}

impl From<biopay_tee_stub::TeeError> for BiopayError {
    fn from(e: biopay_tee_stub::TeeError) -> Self {
        DeviceError::from(e).into()
    }
}

/// An exception thrown by a foreign [`crate::PlatformKeystore`] that is not a
/// `BiopayError` becomes a typed keystore error, never a crash.
impl From<uniffi::UnexpectedUniFFICallbackError> for BiopayError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        // Kotlin sends the whole stack trace: its first line names the exception.
        let first = e.reason.lines().next().unwrap_or_default();
        Self::Keystore {
            reason: format!("platform keystore failed: {first}"),
        }
    }
}

/// What a back end sees when verification refuses a statement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
#[non_exhaustive]
pub enum VerificationError {
    /// The statement was rejected at a numbered step of docs/PROTOCOL.md §6.
    #[error("rejected at {step_code} {step_name}: {reason}")]
    Rejected {
        /// The step code, e.g. `P12`.
        step_code: String,
        /// The step's stable name, e.g. `transaction-hash`.
        step_name: String,
        /// Why.
        reason: String,
    },
    /// A request to issue a challenge was invalid (bad transaction, unknown credential, ...).
    #[error("invalid request: {reason}")]
    InvalidRequest {
        /// Why.
        reason: String,
    },
}

impl From<Rejection> for VerificationError {
    fn from(r: Rejection) -> Self {
        Self::Rejected {
            step_code: r.step.code().to_owned(),
            step_name: r.step.name().to_owned(),
            reason: r.reason.to_string(),
        }
    }
}

impl From<biopay_core::IssueError> for VerificationError {
    fn from(e: biopay_core::IssueError) -> Self {
        Self::InvalidRequest {
            reason: e.to_string(),
        }
    }
}
