//! # biopay-core
//!
//! The biopay protocol: biometric payment authorization anchored in trusted
//! hardware. This crate holds the message types and their deterministic
//! CBOR/COSE encoding, the device-side [`Client`] and [`Authenticator`] trait,
//! and the relying party's [`Verifier`]. It does no I/O and has no FFI; the
//! specification is `docs/PROTOCOL.md`.
//!
//! ```
//! use biopay_core::{MemoryStore, ManualClock, SystemRandom, Policy, TrustConfig, Verifier, Modality, SecurityLevel};
//!
//! let verifier = Verifier::new(
//!     "pay.example.com",
//!     TrustConfig::new(),          // add device models and their vendor roots here
//!     Policy::default(),
//!     MemoryStore::new(),
//!     ManualClock::new(1_790_000_000),
//!     SystemRandom::new(),
//! ).unwrap();
//! let challenge = verifier
//!     .registration_challenge(b"account-7", &[Modality::Fingerprint], SecurityLevel::Tee)
//!     .unwrap();
//! // Send `challenge.to_cbor()` to the app; verify what comes back with
//! // `verifier.verify_registration(&bytes)`.
//! # use biopay_core::Message;
//! assert_eq!(challenge.to_cbor().len() > 32, true);
//! ```
#![forbid(unsafe_code)]

pub mod android;
pub mod apple;
pub mod cbor;
pub mod cose;
pub mod crypto;
pub mod device;
pub mod display;
pub mod env;
pub mod error;
pub mod keystore;
pub mod messages;
pub mod routing;
mod serde_hex;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod verifier;
pub mod x509;

pub use android::{AndroidPolicy, AndroidPolicyFailure, AndroidTrust};
pub use device::{Authenticator, Client, DeviceError, LocalCredential};
pub use display::render_transaction;
pub use env::{Clock, DangerDeterministicRandom, ManualClock, Random, SystemClock, SystemRandom};
pub use error::{Reason, Rejection, Step};
pub use keystore::{
    deregistration_prompt, registration_prompt, PendingStatement, PlatformCredentialState,
    PlatformKeystoreClient, PlatformKeystoreSigner,
};
pub use messages::{
    AppleKeyRegistration, Challenge, CredentialId, DecodeError, Deregistration, EnrollmentChange,
    KeyAttestation, Liveness, Message, MessageKind, Modality, PaymentAssertion, PaymentChallenge,
    Platform, PlatformKeyRegistration, RegistrationChallenge, SecurityLevel, Transaction,
    VerifiedBootState,
};
pub use routing::{account_slot, credential_slot, shard_of};
pub use store::{CredentialKind, CredentialRecord, CredentialStatus, MemoryStore, Store};
pub use verifier::{
    ApprovedPayment, DeviceModel, HighValueRequirement, IssueError, ModelStatus, Policy,
    RegisteredCredential, TrustConfig, Verifier, ANDROID_KEYSTORE_MODEL, APPLE_APP_ATTEST_MODEL,
};
pub use x509::TrustAnchor;
