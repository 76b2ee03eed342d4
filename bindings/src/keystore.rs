//! The platform seam: [`PlatformKeystore`], a foreign trait the app
//! implements in Kotlin (Android Keystore + BiometricPrompt) or Swift (the
//! Secure Enclave + LocalAuthentication), and the software TEE's KeyMint mode
//! behind the same trait ([`crate::SimulatedTee::as_keystore`]).
//!
//! A foreign implementation reports failures by throwing `BiopayException`
//! (Kotlin) / `BiopayError` (Swift, Python): the variant arrives as thrown
//! (`NoMatch`, `LockedOut`, `UserCanceled`, `KeyInvalidated`, ...). Any other
//! exception arrives as [`BiopayError::Keystore`] (see [`crate::errors`]).

use crate::errors::BiopayError;
use biopay_core::DeviceError;
use biopay_tee_stub::{KeymintApplication, KeymintKeyState};
use std::sync::Arc;

/// The platform keystore: Android Keystore + BiometricPrompt, the iOS Secure Enclave +
/// LocalAuthentication, or SimulatedTee. Implemented in Kotlin/Swift by the app.
///
/// `generate_key` and `sign` are async (Kotlin `suspend`, Swift and Python
/// `async`): `sign` suspends while the prompt is up, without blocking a
/// thread. When the SDK call that awaits them is cancelled, they are
/// cancelled too (Kotlin: the coroutine is cancelled; Swift: the task's
/// cancellation flag is set; Python: the task is cancelled): dismiss the
/// prompt then. `delete_key` and `key_state` are quick and synchronous.
#[uniffi::export(with_foreign)]
#[async_trait::async_trait]
pub trait PlatformKeystore: Send + Sync {
    /// Generates a new P-256 signing key under `alias`: usable only after a strong biometric
    /// authentication for each use, invalidated when biometric enrollment changes, with
    /// `attestation_challenge` as its attestation challenge. `require_strong_box`: fail unless
    /// a discrete secure element holds the key (otherwise use one when present).
    async fn generate_key(
        &self,
        alias: String,
        attestation_challenge: Vec<u8>,
        require_strong_box: bool,
    ) -> Result<GeneratedKey, BiopayError>;
    /// Shows the biometric prompt with `prompt_text` and, once the user authenticated, signs
    /// `data` with ECDSA P-256/SHA-256. Returns ASN.1 DER (as java.security.Signature does) or r||s.
    async fn sign(
        &self,
        alias: String,
        data: Vec<u8>,
        prompt_text: String,
    ) -> Result<Vec<u8>, BiopayError>;
    /// Deletes the key; not an error when it is already gone.
    fn delete_key(&self, alias: String) -> Result<(), BiopayError>;
    /// Whether the key is usable.
    fn key_state(&self, alias: String) -> Result<KeyState, BiopayError>;
}

/// A key the platform generated.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct GeneratedKey {
    /// The public key, SEC1 uncompressed (65 bytes: `04 || x || y`).
    pub public_key: Vec<u8>,
    /// The attestation certificate chain, DER, leaf first (Android:
    /// `KeyStore.getCertificateChain(alias)`); empty when the platform has no
    /// key attestation (the Secure Enclave).
    pub attestation_chain: Vec<Vec<u8>>,
    /// Whether a discrete secure element (StrongBox) holds the key.
    pub strong_box: bool,
}

/// Whether a key is usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum KeyState {
    /// The key exists and can sign (after a biometric authentication).
    Valid,
    /// The key exists but biometric enrollment changed since it was generated
    /// (Android: `KeyPermanentlyInvalidatedException`): register again.
    Invalidated,
    /// No key with this alias.
    Missing,
}

/// Maps what a keystore (foreign or simulated) threw to the core's device
/// error, keeping the variant.
pub(crate) fn to_device_error(e: BiopayError) -> DeviceError {
    match e {
        BiopayError::NoMatch => DeviceError::NoMatch,
        BiopayError::LockedOut {
            until_epoch_seconds,
        } => DeviceError::LockedOut {
            until: until_epoch_seconds.map(|t| u64::try_from(t).unwrap_or(0)),
        },
        BiopayError::SpoofDetected => DeviceError::SpoofDetected,
        BiopayError::UserCanceled | BiopayError::Cancelled => DeviceError::UserCanceled,
        BiopayError::KeyInvalidated => DeviceError::KeyInvalidated,
        BiopayError::TransactionDeclined => DeviceError::TransactionDeclined,
        BiopayError::NotEnrolled => DeviceError::NotEnrolled,
        BiopayError::InvalidChallenge { reason } => DeviceError::InvalidChallenge(reason),
        BiopayError::Keystore { reason } => DeviceError::Keystore(reason),
        BiopayError::Internal { reason } => DeviceError::Keystore(format!("internal: {reason}")),
    }
}

/// The software TEE's KeyMint mode as a [`PlatformKeystore`], for one app
/// (package name and signing-certificate digest go into each attestation).
pub(crate) struct SimulatedKeystore {
    pub(crate) tee: Arc<crate::SimulatedTee>,
    pub(crate) app: KeymintApplication,
}

#[async_trait::async_trait]
impl PlatformKeystore for SimulatedKeystore {
    async fn generate_key(
        &self,
        alias: String,
        attestation_challenge: Vec<u8>,
        require_strong_box: bool,
    ) -> Result<GeneratedKey, BiopayError> {
        let key = self.tee.lock().keymint_generate_key(
            &alias,
            &attestation_challenge,
            require_strong_box,
            &self.app,
        )?;
        Ok(GeneratedKey {
            public_key: key.public_key,
            attestation_chain: key.attestation_chain,
            strong_box: key.strong_box,
        })
    }

    async fn sign(
        &self,
        alias: String,
        data: Vec<u8>,
        prompt_text: String,
    ) -> Result<Vec<u8>, BiopayError> {
        Ok(self.tee.lock().keymint_sign(&alias, &data, &prompt_text)?)
    }

    fn delete_key(&self, alias: String) -> Result<(), BiopayError> {
        Ok(self.tee.lock().keymint_delete_key(&alias)?)
    }

    fn key_state(&self, alias: String) -> Result<KeyState, BiopayError> {
        Ok(match self.tee.lock().keymint_key_state(&alias) {
            KeymintKeyState::Valid => KeyState::Valid,
            KeymintKeyState::Invalidated => KeyState::Invalidated,
            KeymintKeyState::Missing => KeyState::Missing,
        })
    }
}
