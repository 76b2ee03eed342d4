//! A native baseline for measuring the bindings' overhead (docs/PERFORMANCE.md):
//! the same register-then-pay flow as a foreign-language benchmark, run in
//! Rust without crossing the FFI per call, so both sides are timed in one run.

use crate::errors::BiopayError;
use biopay_core::{
    Client, ManualClock, MemoryStore, Message, Modality, Policy, SecurityLevel, SystemRandom,
    Transaction, TrustConfig, Verifier,
};
use biopay_tee_stub::{DeviceConfig, Presentation, SoftwareTee, VendorPki};
use std::{sync::Arc, time::Instant};

/// Nanoseconds spent in `authorize` and in `verify_payment` over a number of payments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct FlowTimings {
    /// Payments made.
    pub iterations: i64,
    /// Total time in the device side's `authorize` (TEE, trusted UI, signing, state persisted).
    pub authorize_nanos: i64,
    /// Total time in the verifier's `verify_payment`.
    pub verify_nanos: i64,
}

/// Runs `iterations` payments natively (no FFI per call) in `state_dir` and
/// returns the time spent in authorize and verify.
#[uniffi::export]
pub fn native_flow_timings(iterations: u32, state_dir: String) -> Result<FlowTimings, BiopayError> {
    let internal = |e: &dyn std::fmt::Display| BiopayError::Internal {
        reason: e.to_string(),
    };
    let clock = Arc::new(ManualClock::new(biopay_core::Clock::now(
        &biopay_core::SystemClock,
    )));
    let pki = VendorPki::new("Bench Devices", b"bench vendor")?;
    let trust = TrustConfig::new().with_model(pki.device_model(
        "bench-x1",
        &[Modality::Fingerprint],
        SecurityLevel::Tee,
    ));
    let verifier = Verifier::new(
        "pay.example.com",
        trust,
        Policy::default(),
        MemoryStore::new(),
        clock.clone(),
        SystemRandom::new(),
    )
    .map_err(|e| internal(&e))?;
    let mut tee = SoftwareTee::provision(
        &pki,
        DeviceConfig::new("bench-x1"),
        std::path::Path::new(&state_dir),
        None,
        clock.clone(),
    )?;
    tee.enroll_fingerprint("right-thumb")?;
    let mut client = Client::new("pay.example.com", tee, clock.clone());
    let reg = verifier
        .registration_challenge(
            b"bench-account",
            &[Modality::Fingerprint],
            SecurityLevel::Tee,
        )
        .map_err(|e| internal(&e))?;
    client
        .authenticator_mut()
        .user()
        .present(Presentation::Finger("right-thumb".into()));
    let att = client.register(&reg.to_cbor(), &[Modality::Fingerprint])?;
    let id = verifier
        .verify_registration(&att)
        .map_err(|e| internal(&e))?
        .record
        .credential_id;
    let (mut authorize, mut verify) = (0u128, 0u128);
    for i in 0..iterations {
        let tx = Transaction {
            amount_minor: 8800,
            currency: "CNY".into(),
            payee_id: "merchant-0042".into(),
            payee_name: "Coffee Corner".into(),
            order_id: format!("bench-{i}"),
            memo: None,
        };
        let c = verifier
            .payment_challenge(&id, tx)
            .map_err(|e| internal(&e))?
            .to_cbor();
        client
            .authenticator_mut()
            .user()
            .present(Presentation::Finger("right-thumb".into()));
        let t0 = Instant::now();
        let a = client.authorize(&c)?;
        let t1 = Instant::now();
        verifier.verify_payment(&a).map_err(|e| internal(&e))?;
        let t2 = Instant::now();
        authorize += (t1 - t0).as_nanos();
        verify += (t2 - t1).as_nanos();
    }
    Ok(FlowTimings {
        iterations: i64::from(iterations),
        authorize_nanos: i64::try_from(authorize).unwrap_or(i64::MAX),
        verify_nanos: i64::try_from(verify).unwrap_or(i64::MAX),
    })
}
