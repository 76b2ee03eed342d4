//! The software TEE's error type and its mapping to [`DeviceError`].

use biopay_core::DeviceError;
use std::path::PathBuf;

/// Why the software TEE could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TeeError {
    /// Reading or writing the device's state directory failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The state file is corrupt, truncated or not a software-TEE state file.
    #[error("corrupt device state: {0}")]
    CorruptState(String),
    /// The state file was written by an unsupported format version.
    #[error("unsupported device state format version {0}")]
    UnsupportedStateVersion(u32),
    /// A sealed key blob failed to authenticate: it was tampered with, or
    /// belongs to another device or another relying party.
    #[error("sealed key blob failed to authenticate (tampered, or from another device or relying party)")]
    SealedBlobTampered,
    /// No enrolled template has this label (or no face is enrolled).
    #[error("no enrolled template `{0}`")]
    UnknownTemplate(String),
    /// A template with this label (or a face) is already enrolled.
    #[error("template `{0}` is already enrolled")]
    AlreadyEnrolled(String),
    /// No credential with this id (for this relying party) exists on the device.
    #[error("unknown credential")]
    UnknownCredential,
    /// An argument or configuration value is not acceptable.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A cryptographic operation failed.
    #[error("crypto: {0}")]
    Crypto(&'static str),
    /// The random number generator failed.
    #[error("random number generator failed")]
    Random,
    /// Certificate generation failed.
    #[error("certificate generation: {0}")]
    Certificate(String),
}

impl TeeError {
    pub(crate) fn io(
        op: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_owned();
        move |source| Self::Io { op, path, source }
    }
}

impl From<rcgen::Error> for TeeError {
    fn from(e: rcgen::Error) -> Self {
        Self::Certificate(e.to_string())
    }
}

impl From<biopay_core::env::RandomError> for TeeError {
    fn from(_: biopay_core::env::RandomError) -> Self {
        Self::Random
    }
}

/// A tampered sealed blob becomes [`DeviceError::SealedBlobCorrupt`], an
/// unknown credential [`DeviceError::UnknownCredential`]; everything else is a
/// [`DeviceError::Keystore`] failure carrying the message.
impl From<TeeError> for DeviceError {
    fn from(e: TeeError) -> Self {
        match e {
            TeeError::SealedBlobTampered => Self::SealedBlobCorrupt,
            TeeError::UnknownCredential => Self::UnknownCredential,
            e => Self::Keystore(e.to_string()),
        }
    }
}

impl From<crate::durable::WriteError> for TeeError {
    fn from(e: crate::durable::WriteError) -> Self {
        Self::Io {
            op: e.op,
            path: e.path,
            source: e.source,
        }
    }
}
