//! # biopay-bindings
//!
//! The biopay SDK for Kotlin (Android and the JVM), Swift (iOS) and Python,
//! generated with uniffi. This is the only crate that knows FFI: it maps the
//! core API to a small, idiomatic surface and maps errors in one place
//! ([`errors`]).
//!
//! - [`BiopayClient`]: what an app calls to register, authorize a payment,
//!   deregister and list credentials.
//! - [`SimulatedTee`] and [`SimulatedVendor`]: the software TEE, so apps and
//!   tests can run the full link without hardware.
//! - [`PlatformKeystore`]: the platform seam, implemented in Kotlin/Swift over
//!   Android Keystore or the Secure Enclave; [`BiopayClient::with_keystore`]
//!   builds platform-keystore credentials (docs/PROTOCOL.md §12) on it.
//! - [`PaymentVerifier`]: the relying party's verifier for JVM and Python back ends.
//! - [`SecureEnclaveCredential`]: iOS credentials with Apple App Attest
//!   (docs/PROTOCOL.md §13), with [`SimulatedAppAttestService`] and
//!   [`SimulatedSecureEnclaveKey`] as test doubles.

mod apple;
mod bench;
mod client;
mod errors;
mod keystore;
mod keystore_client;
mod types;
mod verifier;

pub use apple::{
    sha256, AppleTrustConfig, SecureEnclaveCredential, SigningRequest, SimulatedAppAttestKey,
    SimulatedAppAttestService, SimulatedSecureEnclaveKey,
};
pub use bench::{native_flow_timings, FlowTimings};
pub use client::{BiopayClient, SimulatedTee, SimulatedVendor};
pub use errors::{BiopayError, VerificationError};
pub use keystore::{GeneratedKey, KeyState, PlatformKeystore};
pub use types::{
    AndroidTrustConfig, ApprovedPayment, DeviceModelConfig, LocalCredential, Modality,
    RegisteredCredential, SecurityLevel, Transaction,
};
pub use verifier::PaymentVerifier;

uniffi::setup_scaffolding!("biopay");
