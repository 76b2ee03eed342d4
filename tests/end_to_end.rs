//! The full link on the software TEE: registration, payment, lifecycle, and
//! what the device does on its side (lockouts, spoofs, declines, restarts).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use biopay::{simulator::*, *};
use common::*;

#[test]
fn register_pay_and_record_the_decision() {
    let mut w = World::new();
    assert_eq!(w.cred.status, CredentialStatus::Active);
    assert_eq!(
        w.cred.modalities,
        vec![Modality::Fingerprint, Modality::Face]
    );
    assert_eq!(w.cred.device_model, MODEL);
    let (c, a) = w.assertion("o1");
    let approved = w.server.verify_payment(&a).unwrap();
    assert_eq!(approved.transaction, c.transaction);
    assert_eq!(approved.counter, 1);
    assert_eq!(w.stored().counter, 1);
    assert!(!w.unused(&c.challenge));
    // What the trusted UI showed is exactly what the server rendered.
    assert_eq!(
        w.phone.authenticator().last_display().unwrap(),
        render_transaction(RP, &c.transaction)
    );
    let decisions = w.server.store().decisions();
    assert_eq!(decisions.len(), 2, "registration and payment");
    assert_eq!(decisions[1].statement_hash, crypto::sha256(&a));
    // Counters keep increasing across payments.
    let (_, b) = w.assertion("o2");
    assert_eq!(w.server.verify_payment(&b).unwrap().counter, 2);
}

#[test]
fn face_payment_carries_liveness() {
    let mut w = World::new();
    let c = w.challenge("o1", 8800);
    w.phone
        .authenticator_mut()
        .user()
        .present(Presentation::Face);
    let a = w.phone.authorize(&c.to_cbor()).unwrap();
    let ok = w.server.verify_payment(&a).unwrap();
    assert_eq!(
        (ok.modality, ok.liveness),
        (Modality::Face, Liveness::Passed)
    );
}

#[test]
fn the_device_survives_a_restart() {
    let mut w = World::new();
    let (_, a) = w.assertion("o1");
    w.server.verify_payment(&a).unwrap();
    // Drop the phone and reopen its state directory.
    let dir = w.dir.path().join("phone");
    let old = std::mem::replace(
        &mut w.phone,
        Client::new(
            RP,
            SoftwareTee::open(&dir, w.clock.clone()).unwrap(),
            w.clock.clone(),
        ),
    );
    drop(old);
    let listed = w.phone.credentials().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].credential_id, w.cred.credential_id);
    assert!(listed[0].valid);
    let (_, b) = w.assertion("o2");
    assert_eq!(
        w.server.verify_payment(&b).unwrap().counter,
        2,
        "the counter persisted"
    );
}

#[test]
fn device_side_refusals_produce_no_statement() {
    let mut w = World::new();
    let c = w.challenge("o1", 8800);
    w.phone.authenticator_mut().user().will_confirm(false);
    assert_eq!(
        w.phone.authorize(&c.to_cbor()),
        Err(DeviceError::TransactionDeclined)
    );
    w.phone
        .authenticator_mut()
        .user()
        .present(Presentation::Spoof(Modality::Face));
    assert_eq!(
        w.phone.authorize(&c.to_cbor()),
        Err(DeviceError::SpoofDetected)
    );
    w.phone
        .authenticator_mut()
        .user()
        .present(Presentation::Cancel);
    assert_eq!(
        w.phone.authorize(&c.to_cbor()),
        Err(DeviceError::UserCanceled)
    );
    w.phone.authenticator_mut().user().present(thumb());
    let a = w.phone.authorize(&c.to_cbor()).unwrap();
    let ok = w.server.verify_payment(&a).unwrap();
    assert_eq!(ok.counter, 1, "refusals did not advance the counter");
    let p = PaymentAssertion::from_cbor(&payload(&a)).unwrap();
    assert_eq!(
        p.failed_attempts, 1,
        "the spoof counted as a failed attempt"
    );
}

#[test]
fn lockout_after_five_failures_and_permanent_after_twenty() {
    let mut w = World::new();
    let c = w.challenge("o1", 8800);
    let stranger = || Presentation::Finger("stranger".into());
    for _ in 0..5 {
        w.phone.authenticator_mut().user().present(stranger());
        assert_eq!(w.phone.authorize(&c.to_cbor()), Err(DeviceError::NoMatch));
    }
    let now = w.clock.now();
    w.phone.authenticator_mut().user().present(thumb());
    assert_eq!(
        w.phone.authorize(&c.to_cbor()),
        Err(DeviceError::LockedOut {
            until: Some(now + 30)
        })
    );
    w.clock.advance(31);
    // The thumb queued during the lockout was not consumed; it matches now.
    let a = w.phone.authorize(&c.to_cbor()).unwrap();
    assert_eq!(
        PaymentAssertion::from_cbor(&payload(&a))
            .unwrap()
            .failed_attempts,
        5
    );

    // Twenty consecutive failures lock until the passcode.
    let c = w.challenge("o2", 8800);
    for _ in 0..20 {
        w.phone.authenticator_mut().user().present(stranger());
        match w.phone.authorize(&c.to_cbor()) {
            Err(DeviceError::NoMatch) => {}
            Err(DeviceError::LockedOut { until: Some(_) }) => {
                // The presentation was not consumed while locked; retry after the lockout.
                w.clock.advance(31);
                assert_eq!(w.phone.authorize(&c.to_cbor()), Err(DeviceError::NoMatch));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    w.clock.advance(3600);
    let c = w.challenge("o2b", 8800);
    w.phone.authenticator_mut().user().present(thumb());
    assert_eq!(
        w.phone.authorize(&c.to_cbor()),
        Err(DeviceError::LockedOut { until: None })
    );
    w.phone.authenticator_mut().passcode_reset().unwrap();
    let c = w.challenge("o3", 8800);
    let a = w.phone.authorize(&c.to_cbor()).unwrap();
    w.server.verify_payment(&a).unwrap();
}

#[test]
fn deregistration_and_enrollment_change_statements() {
    let mut w = World::new();
    let second = w.register(b"account-7", &[Modality::Face]).unwrap();
    assert_eq!(
        w.server
            .store()
            .credentials_for_account(RP, b"account-7")
            .unwrap()
            .len(),
        2
    );

    // Enrollment change reported by the device blocks the credential.
    w.phone
        .authenticator_mut()
        .enroll_fingerprint("left-index")
        .unwrap();
    let listed = w.phone.credentials().unwrap();
    assert!(listed.iter().all(|c| !c.valid));
    let change = w
        .phone
        .report_enrollment_change(&w.cred.credential_id.clone())
        .unwrap();
    assert_eq!(
        w.server.verify_enrollment_change(&change).unwrap(),
        w.cred.credential_id
    );
    assert_eq!(w.stored().status, CredentialStatus::EnrollmentChanged);
    assert_step(w.server.verify_enrollment_change(&change), Step::E9Counter);
    // A suspended credential cannot be moved by an enrollment change.
    w.server
        .store()
        .set_credential_status(&w.cred.credential_id, CredentialStatus::Suspended)
        .unwrap();
    let again = w
        .phone
        .report_enrollment_change(&w.cred.credential_id.clone())
        .unwrap();
    assert_step(
        w.server.verify_enrollment_change(&again),
        Step::E7CredentialStatus,
    );
    assert_eq!(w.stored().status, CredentialStatus::Suspended);

    // Deregistration of the other credential.
    let d = w.phone.deregister(&second.credential_id).unwrap();
    assert_eq!(
        w.server.verify_deregistration(&d).unwrap(),
        second.credential_id
    );
    let stored = w
        .server
        .store()
        .credential(&second.credential_id)
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, CredentialStatus::Deregistered);
    assert_eq!(w.phone.credentials().unwrap().len(), 1);
    assert!(w
        .server
        .payment_challenge(&second.credential_id, tx("o", 1))
        .is_err());
}

#[test]
fn expired_challenges_are_collected() {
    let w = World::new();
    let c = w.challenge("o1", 8800);
    assert_eq!(w.server.purge_expired_challenges().unwrap(), 0);
    w.clock.set(c.expires_at + 1);
    assert_eq!(
        w.server.purge_expired_challenges().unwrap(),
        2,
        "the registration and the payment challenge"
    );
    assert!(w.server.store().challenge(&c.challenge).unwrap().is_none());
}

#[test]
fn the_client_refuses_bad_challenges() {
    let mut w = World::new();
    assert!(matches!(
        w.phone.authorize(b"\xa0"),
        Err(DeviceError::InvalidChallenge(_))
    ));
    let c = w.challenge("o1", 8800);
    w.clock.set(c.expires_at + 301);
    assert!(matches!(
        w.phone.authorize(&c.to_cbor()),
        Err(DeviceError::InvalidChallenge(_))
    ));
}

#[test]
fn enrollment_epochs_are_per_rp_and_track_templates() {
    let mut w = World::new();
    let tee = w.phone.authenticator_mut();
    let a = tee.enrollment_epoch(RP);
    assert_ne!(
        a,
        tee.enrollment_epoch("shop.example.org"),
        "epochs must not link RPs"
    );
    tee.enroll_fingerprint("left-index").unwrap();
    let b = tee.enrollment_epoch(RP);
    assert_ne!(a, b);
    tee.remove_fingerprint("left-index").unwrap();
    assert_ne!(tee.enrollment_epoch(RP), b);
}
