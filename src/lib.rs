//! # biopay
//!
//! Biometric payment authentication anchored in trusted hardware: a shopper
//! approves a payment with a fingerprint or a face, and the payment server can
//! verify that the key lives in genuine trusted hardware, that the biometric
//! matched inside it, and that the user approved exactly this transaction.
//!
//! This facade re-exports [`biopay_core`] (protocol, device-side client,
//! verifier) and, with the default `simulator` feature, the software TEE as
//! [`simulator`]. The specification is `docs/PROTOCOL.md`.
//!
//! A full payment on the software TEE:
//!
//! ```
//! use biopay::{simulator::*, *};
//! use std::sync::Arc;
//!
//! let clock = Arc::new(ManualClock::new(1_790_000_000));
//! let pki = VendorPki::new("Acme Devices", b"doc vendor seed").unwrap();
//! let trust = TrustConfig::new()
//!     .with_model(pki.device_model("acme-x1", &[Modality::Fingerprint, Modality::Face], SecurityLevel::Tee));
//! let verifier = Verifier::new("pay.example.com", trust, Policy::default(), MemoryStore::new(), clock.clone(), SystemRandom::new()).unwrap();
//!
//! let dir = tempfile::tempdir().unwrap();
//! let mut tee = SoftwareTee::provision(&pki, DeviceConfig::new("acme-x1"), dir.path(), None, clock.clone()).unwrap();
//! tee.enroll_fingerprint("right-thumb").unwrap();
//! let mut app = Client::new("pay.example.com", tee, clock.clone());
//!
//! // Registration.
//! let reg = verifier.registration_challenge(b"account-7", &[Modality::Fingerprint], SecurityLevel::Tee).unwrap();
//! app.authenticator_mut().user().present(Presentation::Finger("right-thumb".into()));
//! let attestation = app.register(&reg.to_cbor(), &[Modality::Fingerprint]).unwrap();
//! let credential = verifier.verify_registration(&attestation).unwrap().record.credential_id;
//!
//! // Payment of 88.00 CNY.
//! let tx = Transaction { amount_minor: 8800, currency: "CNY".into(), payee_id: "m-42".into(),
//!     payee_name: "Coffee Corner".into(), order_id: "A-1".into(), memo: None };
//! let pay = verifier.payment_challenge(&credential, tx).unwrap();
//! app.authenticator_mut().user().present(Presentation::Finger("right-thumb".into()));
//! let assertion = app.authorize(&pay.to_cbor()).unwrap();
//! let approved = verifier.verify_payment(&assertion).unwrap();
//! assert_eq!(approved.transaction.amount_minor, 8800);
//! // The same assertion again is a replay.
//! assert_eq!(verifier.verify_payment(&assertion).unwrap_err().step, Step::P9Challenge);
//! ```
#![forbid(unsafe_code)]

pub use biopay_core::*;

/// The software TEE (`biopay-tee-stub`): a simulated device for tests and demos.
#[cfg(feature = "simulator")]
pub mod simulator {
    pub use biopay_tee_stub::*;
}

#[cfg(feature = "simulator")]
pub mod vectors;

pub mod decode;

pub mod android_attestation;

pub mod apple_app_attest;
