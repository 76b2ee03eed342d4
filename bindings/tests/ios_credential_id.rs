//! The iOS SDK forms a credential id that carries its account's slot
//! (docs/PROTOCOL.md §4.1.9, §13.8): `SecureEnclaveCredential::new` takes the
//! app's random bytes and the registration challenge's
//! `credential_id_prefix` goes in front, so K12 accepts it; a resumed
//! credential keeps its id. The Kotlin and Python suites (IosTest.kt,
//! test_ios.py) run the whole iOS flow through the same surface.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use biopay_bindings::{
    AppleTrustConfig, BiopayError, Modality, PaymentVerifier, SecureEnclaveCredential,
    SecurityLevel, SimulatedAppAttestService, SimulatedSecureEnclaveKey,
};
use std::sync::Arc;

const RP: &str = "pay.example.com";
const APP_ID: &str = "TEAM123456.com.example.pay";

fn verifier(service: &SimulatedAppAttestService) -> Arc<PaymentVerifier> {
    let v = PaymentVerifier::new(RP.into(), Vec::new()).unwrap();
    v.trust_apple(AppleTrustConfig {
        app_ids: vec![APP_ID.into()],
        production: true,
        root_certs_pem: vec![service.root_cert_pem()],
    })
    .unwrap();
    v
}

/// The app's registration: binding hash, attestKey, signed registration.
fn register(
    service: &SimulatedAppAttestService,
    credential: &SecureEnclaveCredential,
    challenge: &[u8],
) -> Result<Vec<u8>, BiopayError> {
    let se = SimulatedSecureEnclaveKey::new()?;
    let aa = service.generate_key()?;
    let hash = credential.registration_client_data_hash(challenge.to_vec(), se.public_key())?;
    let object = service.attest_key(aa.clone(), hash)?;
    let request = credential.prepare_registration(
        challenge.to_vec(),
        se.public_key(),
        aa.key_id(),
        object,
    )?;
    credential.finish(se.sign(request.data)?)
}

#[test]
fn a_new_ios_credential_takes_the_challenges_prefix_and_registers() {
    let service = SimulatedAppAttestService::new(APP_ID.into(), true).unwrap();
    let v = verifier(&service);
    let random = vec![0xA5; 32];
    let credential =
        SecureEnclaveCredential::new(RP.into(), random.clone(), vec![Modality::Face], vec![0; 32])
            .unwrap();
    let c = v
        .registration_challenge(
            b"account-ios".to_vec(),
            vec![Modality::Face],
            SecurityLevel::Tee,
        )
        .unwrap();
    let statement = register(&service, &credential, &c).unwrap();
    let registered = v.verify_apple_registration(statement).unwrap();
    let mut expected = biopay_core::routing::credential_id_prefix(RP, b"account-ios").to_vec();
    expected.extend_from_slice(&random);
    assert_eq!(registered.credential_id, expected);
    assert_eq!(credential.credential_id(), expected, "the id to persist");

    // Resumed with the persisted id, it stays that id: a registration
    // challenge of another account is refused on the device.
    let resumed = SecureEnclaveCredential::resume(
        RP.into(),
        credential.credential_id(),
        vec![Modality::Face],
        vec![0; 32],
        credential.counter(),
    )
    .unwrap();
    assert_eq!(resumed.credential_id(), expected);
    let other = v
        .registration_challenge(
            b"account-other".to_vec(),
            vec![Modality::Face],
            SecurityLevel::Tee,
        )
        .unwrap();
    match register(&service, &resumed, &other) {
        Err(BiopayError::InvalidChallenge { reason }) => {
            assert!(reason.contains("credential_id_prefix"), "{reason}")
        }
        r => panic!("expected InvalidChallenge, got {r:?}"),
    }
}

#[test]
fn the_random_part_leaves_room_for_the_prefix() {
    for (len, ok) in [(15, false), (16, true), (62, true), (63, false)] {
        let r = SecureEnclaveCredential::new(
            RP.into(),
            vec![1; len],
            vec![Modality::Face],
            vec![0; 32],
        );
        assert_eq!(r.is_ok(), ok, "{len} random bytes");
    }
}
