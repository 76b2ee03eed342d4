//! # biopay-tee-stub
//!
//! A software TEE that behaves like trusted hardware, so tests and demos
//! exercise the real biopay link (docs/PROTOCOL.md §8): a simulated vendor PKI
//! ([`VendorPki`]) certifies a per-device attestation key; [`SoftwareTee`]
//! implements [`biopay_core::Authenticator`] with credential keys sealed under
//! a per-device root secret, simulated fingerprint and face matching with
//! lockouts, a trusted UI, persistent signature counters and fault injection.
//!
//! In its KeyMint mode ([`SoftwareTee::keymint_generate_key`] and the other
//! `keymint_*` methods) the same device behaves like Android Keystore: keys
//! by alias, a biometric per signature, and attestation certificates with a
//! KeyDescription ([`key_description`]) in a chain to the vendor root, for the
//! platform-keystore path of docs/PROTOCOL.md §12.
//!
//! It is **not** a security boundary: every secret lives in an ordinary file.
//! Methods whose name starts with `danger_` exist only to build adversarial
//! tests.
//!
//! ```
//! use biopay_core::{Authenticator, ManualClock, Modality, RegistrationChallenge, SecurityLevel};
//! use biopay_tee_stub::{DeviceConfig, Presentation, SoftwareTee, VendorPki};
//! use std::sync::Arc;
//!
//! let clock = Arc::new(ManualClock::new(1_790_000_000));
//! let pki = VendorPki::new("Acme Devices", b"doc vendor seed")?;
//! let dir = tempfile::tempdir()?;
//! let mut tee = SoftwareTee::provision(&pki, DeviceConfig::new("acme-x1"), dir.path(), None, clock)?;
//! tee.enroll_fingerprint("right-thumb")?;
//!
//! let challenge = RegistrationChallenge {
//!     rp_id: "pay.example.com".into(),
//!     account_handle: b"account-7".to_vec(),
//!     challenge: [7; 32],
//!     issued_at: 1_790_000_000,
//!     expires_at: 1_790_000_120,
//!     accepted_modalities: vec![Modality::Fingerprint],
//!     required_assurance: SecurityLevel::Tee,
//!     credential_id_prefix: biopay_core::routing::credential_id_prefix("pay.example.com", b"account-7"),
//! };
//! tee.user().present(Presentation::Finger("right-thumb".into()));
//! let attestation = tee.make_credential(&challenge, &[Modality::Fingerprint])?;
//! assert_eq!(tee.credentials("pay.example.com")?.len(), 1);
//! # assert!(!attestation.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

pub mod app_attest;
mod crypto;
pub mod durable;
mod error;
pub mod key_description;
mod keymint;
mod pki;
mod state;
mod tampering;
mod tee;
mod user;

pub use app_attest::{AppAttestKey, AttestationFaults, SimulatedAppAttest};
pub use error::TeeError;
pub use key_description::KeyDescriptionSpec;
pub use keymint::{KeymintApplication, KeymintKeyInfo, KeymintKeyState};
pub use pki::{VendorPki, KEYSTORE_TEST_DOUBLE_MODEL};
pub use tampering::TamperingApp;
pub use tee::{BiometricPolicy, DeviceConfig, SoftwareTee};
pub use user::{Faults, Presentation, SimulatedUser};

#[cfg(test)]
mod keymint_tests;
