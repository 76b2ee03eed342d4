//! Unit tests of the software TEE, and one end-to-end run against the verifier.

use crate::*;
use biopay_core::{
    cose::parse_sign1, Authenticator, Client, CredentialId, DeviceError, KeyAttestation, Liveness,
    ManualClock, MemoryStore, Message, Modality, PaymentAssertion, PaymentChallenge, Policy,
    RegistrationChallenge, SecurityLevel, Step, SystemRandom, Transaction, TrustConfig, Verifier,
};
use std::{path::Path, sync::Arc};

const RP: &str = "pay.example.com";
const MODEL: &str = "acme-phone-x1";
const NOW: u64 = 1_795_000_000;

fn pki() -> VendorPki {
    VendorPki::new("Acme Devices", b"unit test vendor").unwrap()
}

fn thumb() -> Presentation {
    Presentation::Finger("right-thumb".into())
}

fn device(dir: &Path, clock: &Arc<ManualClock>, seed: Option<&[u8]>) -> SoftwareTee {
    let mut tee =
        SoftwareTee::provision(&pki(), DeviceConfig::new(MODEL), dir, seed, clock.clone()).unwrap();
    tee.enroll_fingerprint("right-thumb").unwrap();
    tee.enroll_face().unwrap();
    tee
}

fn reg_challenge(rp: &str, fill: u8) -> RegistrationChallenge {
    RegistrationChallenge {
        rp_id: rp.into(),
        account_handle: b"account-7".to_vec(),
        challenge: [fill; 32],
        issued_at: NOW,
        expires_at: NOW + 120,
        accepted_modalities: vec![Modality::Fingerprint, Modality::Face],
        required_assurance: SecurityLevel::Tee,
        credential_id_prefix: biopay_core::routing::credential_id_prefix(rp, b"account-7"),
    }
}

fn tx(order: &str) -> Transaction {
    Transaction {
        amount_minor: 8800,
        currency: "CNY".into(),
        payee_id: "merchant-0042".into(),
        payee_name: "Coffee Corner".into(),
        order_id: order.into(),
        memo: Some("2 lattes".into()),
    }
}

fn pay_challenge(id: &CredentialId, fill: u8) -> PaymentChallenge {
    PaymentChallenge {
        rp_id: RP.into(),
        account_handle: b"account-7".to_vec(),
        credential_id: id.clone(),
        challenge: [fill; 32],
        transaction: tx("ORDER-1"),
        issued_at: NOW,
        expires_at: NOW + 120,
        accepted_modalities: vec![Modality::Fingerprint, Modality::Face],
        require_liveness: false,
    }
}

fn attestation_of(statement: &[u8]) -> KeyAttestation {
    KeyAttestation::from_cbor(&parse_sign1(statement, true).unwrap().payload).unwrap()
}

fn assertion_of(statement: &[u8]) -> PaymentAssertion {
    PaymentAssertion::from_cbor(&parse_sign1(statement, false).unwrap().payload).unwrap()
}

/// Registers a fingerprint+face credential for RP (the thumb matches).
fn register(tee: &mut SoftwareTee) -> CredentialId {
    tee.user().present(thumb());
    let s = tee
        .make_credential(
            &reg_challenge(RP, 1),
            &[Modality::Fingerprint, Modality::Face],
        )
        .unwrap();
    attestation_of(&s).credential_id
}

fn pay(
    tee: &mut SoftwareTee,
    id: &CredentialId,
    p: Presentation,
) -> Result<PaymentAssertion, DeviceError> {
    tee.user().present(p);
    tee.get_assertion(&pay_challenge(id, 9))
        .map(|s| assertion_of(&s))
}

fn setup() -> (
    tempfile::TempDir,
    Arc<ManualClock>,
    SoftwareTee,
    CredentialId,
) {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let mut tee = device(&dir.path().join("dev"), &clock, None);
    let id = register(&mut tee);
    (dir, clock, tee, id)
}

#[test]
fn key_attestation_contents() {
    let (_d, _c, tee, _) = setup();
    let mut tee = tee;
    tee.user().present(Presentation::Face);
    let s = tee
        .make_credential(
            &reg_challenge(RP, 2),
            &[Modality::Face, Modality::Fingerprint, Modality::Face],
        )
        .unwrap();
    let sign1 = parse_sign1(&s, true).unwrap();
    assert_eq!(sign1.x5chain, tee.attestation_chain());
    let a = attestation_of(&s);
    assert_eq!(a.rp_id_hash, biopay_core::crypto::sha256(RP.as_bytes()));
    assert_eq!(a.challenge, [2; 32]);
    assert_eq!(a.modalities, vec![Modality::Fingerprint, Modality::Face]);
    assert_eq!(a.enrollment_epoch, tee.enrollment_epoch(RP));
    assert_eq!(a.device_model, MODEL);
    assert_eq!(a.tee_time, NOW);
    assert_eq!(a.initial_counter, 0);
    // The challenge's prefix, then 32 random bytes (docs/PROTOCOL.md §4.1.3).
    assert_eq!(a.credential_id.as_bytes().len(), 34);
    assert_eq!(
        a.credential_id.as_bytes()[..2],
        biopay_core::routing::credential_id_prefix(RP, b"account-7")
    );
    assert_eq!(a.credential_public_key.len(), 65);
    let listed = tee.credentials(RP).unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|c| c.valid && c.rp_id == RP));
    assert!(tee.credentials("other.example").unwrap().is_empty());
}

#[test]
fn make_credential_requires_enrolled_modalities_and_a_match() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let mut tee =
        SoftwareTee::provision(&pki(), DeviceConfig::new(MODEL), dir.path(), None, clock).unwrap();
    tee.enroll_fingerprint("right-thumb").unwrap();
    tee.user().present(Presentation::Face);
    let c = reg_challenge(RP, 1);
    assert_eq!(
        tee.make_credential(&c, &[Modality::Face]),
        Err(DeviceError::NotEnrolled)
    );
    assert_eq!(
        tee.make_credential(&c, &[Modality::Fingerprint, Modality::Face]),
        Err(DeviceError::NotEnrolled)
    );
    // A face presented for a fingerprint-only credential: canceled, not counted.
    assert_eq!(
        tee.make_credential(&c, &[Modality::Fingerprint]),
        Err(DeviceError::UserCanceled)
    );
    tee.user()
        .present(Presentation::Finger("left-index".into()));
    assert_eq!(
        tee.make_credential(&c, &[Modality::Fingerprint]),
        Err(DeviceError::NoMatch)
    );
    // Empty queue.
    assert_eq!(
        tee.make_credential(&c, &[Modality::Fingerprint]),
        Err(DeviceError::UserCanceled)
    );
    assert!(tee.credentials(RP).unwrap().is_empty());
    tee.user().present(thumb());
    assert!(tee.make_credential(&c, &[Modality::Fingerprint]).is_ok());
}

#[test]
fn payment_assertion_contents_and_counter() {
    let (_d, _c, mut tee, id) = setup();
    let a = pay(&mut tee, &id, thumb()).unwrap();
    let text = biopay_core::render_transaction("pay.example.com", &tx("ORDER-1"));
    assert_eq!(tee.last_display(), Some(text.as_str()));
    assert_eq!(a.display_hash, biopay_core::crypto::sha256(text.as_bytes()));
    assert_eq!(a.transaction_hash, tx("ORDER-1").transaction_hash());
    assert_eq!(
        (a.counter, a.modality, a.liveness, a.failed_attempts),
        (1, Modality::Fingerprint, Liveness::NotChecked, 0)
    );
    assert!(a.user_confirmed);
    assert_eq!(a.enrollment_epoch, tee.enrollment_epoch(RP));
    let b = pay(&mut tee, &id, Presentation::Face).unwrap();
    assert_eq!(
        (b.counter, b.modality, b.liveness),
        (2, Modality::Face, Liveness::Passed)
    );
    assert_ne!(a.template_id, b.template_id);
    assert_eq!(
        pay(&mut tee, &id, thumb()).unwrap().template_id,
        a.template_id
    );
    // Unknown credential, and a credential of another RP.
    let other = CredentialId::new(vec![5; 32]).unwrap();
    assert_eq!(
        pay(&mut tee, &other, thumb()),
        Err(DeviceError::UnknownCredential)
    );
    let mut c = pay_challenge(&id, 3);
    c.rp_id = "other.example".into();
    assert_eq!(tee.get_assertion(&c), Err(DeviceError::UnknownCredential));
}

#[test]
fn template_ids_do_not_link_across_rps() {
    let (_d, _c, mut tee, id) = setup();
    tee.user().present(thumb());
    let s = tee
        .make_credential(
            &reg_challenge("shop.example.org", 4),
            &[Modality::Fingerprint],
        )
        .unwrap();
    let id2 = attestation_of(&s).credential_id;
    let a = pay(&mut tee, &id, thumb()).unwrap();
    let mut c = pay_challenge(&id2, 5);
    c.rp_id = "shop.example.org".into();
    tee.user().present(thumb());
    let b = assertion_of(&tee.get_assertion(&c).unwrap());
    assert_ne!(a.template_id, b.template_id);
}

#[test]
fn modality_must_be_accepted_and_bound() {
    let (_d, _c, mut tee, _) = setup();
    tee.user().present(thumb());
    let s = tee
        .make_credential(&reg_challenge(RP, 6), &[Modality::Fingerprint])
        .unwrap();
    let finger_only = attestation_of(&s).credential_id;
    // Face is accepted by the challenge but not bound to the credential.
    assert_eq!(
        pay(&mut tee, &finger_only, Presentation::Face),
        Err(DeviceError::UserCanceled)
    );
    // Challenge accepts only face: the thumb is not usable.
    let (_d2, _c2, mut tee2, id) = setup();
    let mut c = pay_challenge(&id, 7);
    c.accepted_modalities = vec![Modality::Face];
    tee2.user().present(thumb());
    assert_eq!(tee2.get_assertion(&c), Err(DeviceError::UserCanceled));
    tee2.user().present(Presentation::Cancel);
    assert_eq!(tee2.get_assertion(&c), Err(DeviceError::UserCanceled));
    assert_eq!(tee2.get_assertion(&c), Err(DeviceError::UserCanceled));
    // None of those counted as failures.
    tee2.user().present(Presentation::Face);
    assert_eq!(
        assertion_of(&tee2.get_assertion(&c).unwrap()).failed_attempts,
        0
    );
}

#[test]
fn tampered_sealed_blob_is_reported() {
    let (_d, _c, mut tee, id) = setup();
    tee.danger_corrupt_sealed_key(&id, 20).unwrap();
    assert_eq!(
        pay(&mut tee, &id, thumb()),
        Err(DeviceError::SealedBlobCorrupt)
    );
    assert!(matches!(
        tee.danger_sign_with_credential(RP, &id, vec![1]),
        Err(TeeError::SealedBlobTampered)
    ));
    assert_eq!(
        DeviceError::from(TeeError::SealedBlobTampered),
        DeviceError::SealedBlobCorrupt
    );
    assert!(matches!(
        DeviceError::from(TeeError::Random),
        DeviceError::Keystore(_)
    ));
}

#[test]
fn state_survives_reopen() {
    let (dir, clock, mut tee, id) = setup();
    assert_eq!(pay(&mut tee, &id, thumb()).unwrap().counter, 1);
    let chain = tee.attestation_chain();
    let epoch = tee.enrollment_epoch(RP);
    drop(tee);
    let mut tee = SoftwareTee::open(&dir.path().join("dev"), clock.clone()).unwrap();
    assert_eq!(tee.attestation_chain(), chain);
    assert_eq!(tee.enrollment_epoch(RP), epoch);
    assert_eq!(tee.credentials(RP).unwrap().len(), 1);
    assert_eq!(pay(&mut tee, &id, thumb()).unwrap().counter, 2);
    // The counter is persisted before the statement is returned.
    drop(tee);
    let mut tee = SoftwareTee::open(&dir.path().join("dev"), clock).unwrap();
    assert_eq!(pay(&mut tee, &id, Presentation::Face).unwrap().counter, 3);
}

#[cfg(unix)]
#[test]
fn state_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, ..) = setup();
    let meta = std::fs::metadata(dir.path().join("dev").join(crate::state::STATE_FILE)).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
}

#[test]
fn corrupt_or_missing_state_is_a_clear_error() {
    let (dir, clock, tee, _) = setup();
    drop(tee);
    let path = dir.path().join("dev").join(crate::state::STATE_FILE);
    let good = std::fs::read(&path).unwrap();
    let open = || SoftwareTee::open(&dir.path().join("dev"), clock.clone());

    std::fs::write(&path, &good[..good.len() / 2]).unwrap();
    assert!(matches!(open(), Err(TeeError::CorruptState(_))));
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x40;
    std::fs::write(&path, &flipped).unwrap();
    assert!(matches!(open(), Err(TeeError::CorruptState(_))));
    std::fs::write(&path, b"").unwrap();
    assert!(matches!(open(), Err(TeeError::CorruptState(_))));
    std::fs::write(&path, &good).unwrap();
    assert!(open().is_ok());
    assert!(matches!(
        SoftwareTee::open(&dir.path().join("nowhere"), clock.clone()),
        Err(TeeError::Io { .. })
    ));
    // Provisioning over an existing device is refused.
    assert!(matches!(
        SoftwareTee::provision(
            &pki(),
            DeviceConfig::new(MODEL),
            &dir.path().join("dev"),
            None,
            clock.clone()
        ),
        Err(TeeError::InvalidInput(_))
    ));
}

#[test]
fn enrollment_epoch_tracks_templates_per_rp() {
    let (_d, _c, mut tee, id) = setup();
    let e0 = tee.enrollment_epoch(RP);
    assert_ne!(e0, tee.enrollment_epoch("shop.example.org"));
    tee.enroll_fingerprint("left-index").unwrap();
    let e1 = tee.enrollment_epoch(RP);
    assert_ne!(e0, e1);
    assert!(!tee.credentials(RP).unwrap()[0].valid);
    tee.remove_fingerprint("left-index").unwrap();
    assert_eq!(tee.enrollment_epoch(RP), e0);
    assert!(tee.credentials(RP).unwrap()[0].valid);
    tee.remove_face().unwrap();
    assert_ne!(tee.enrollment_epoch(RP), e0);
    tee.enroll_face().unwrap();
    // A re-enrolled face is a new template.
    assert_ne!(tee.enrollment_epoch(RP), e0);
    assert!(matches!(
        tee.enroll_face(),
        Err(TeeError::AlreadyEnrolled(_))
    ));
    assert!(matches!(
        tee.enroll_fingerprint("right-thumb"),
        Err(TeeError::AlreadyEnrolled(_))
    ));
    assert!(matches!(
        tee.remove_fingerprint("nope"),
        Err(TeeError::UnknownTemplate(_))
    ));
    assert!(matches!(
        tee.enroll_fingerprint(""),
        Err(TeeError::InvalidInput(_))
    ));
    // Default config: the TEE keeps signing and reports the new epoch.
    let a = pay(&mut tee, &id, thumb()).unwrap();
    assert_eq!(a.enrollment_epoch, tee.enrollment_epoch(RP));
    assert_ne!(a.enrollment_epoch, e0);
}

#[test]
fn enrollment_change_statement() {
    let (_d, _c, mut tee, id) = setup();
    let e0 = tee.enrollment_epoch(RP);
    assert_eq!(
        tee.enrollment_change(RP, &id),
        Err(DeviceError::Keystore("enrollment unchanged".into()))
    );
    tee.enroll_fingerprint("left-index").unwrap();
    let s = tee.enrollment_change(RP, &id).unwrap();
    let e =
        biopay_core::EnrollmentChange::from_cbor(&parse_sign1(&s, false).unwrap().payload).unwrap();
    assert_eq!(
        (e.previous_epoch, e.current_epoch, e.counter),
        (e0, tee.enrollment_epoch(RP), 1)
    );
    assert_eq!(pay(&mut tee, &id, thumb()).unwrap().counter, 2);
}

#[test]
fn invalidation_on_enrollment_change_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let mut config = DeviceConfig::new(MODEL);
    config.invalidate_on_enrollment_change = true;
    let mut tee = SoftwareTee::provision(&pki(), config, dir.path(), None, clock).unwrap();
    tee.enroll_fingerprint("right-thumb").unwrap();
    tee.enroll_face().unwrap();
    let id = register(&mut tee);
    assert!(pay(&mut tee, &id, thumb()).is_ok());
    tee.enroll_fingerprint("left-index").unwrap();
    assert_eq!(
        pay(&mut tee, &id, thumb()),
        Err(DeviceError::KeyInvalidated)
    );
    // Nothing was consumed: the presentation is still queued.
    assert_eq!(tee.user().pending_presentations(), 1);
}

#[test]
fn lockout_then_unlock_then_permanent() {
    let (_d, clock, mut tee, id) = setup();
    let wrong = || Presentation::Finger("left-index".into());
    for _ in 0..4 {
        assert_eq!(pay(&mut tee, &id, wrong()), Err(DeviceError::NoMatch));
    }
    let t5 = tee.tee_time();
    assert_eq!(
        pay(&mut tee, &id, Presentation::Spoof(Modality::Fingerprint)),
        Err(DeviceError::SpoofDetected)
    );
    // Locked: the presentation is not consumed.
    assert_eq!(
        pay(&mut tee, &id, thumb()),
        Err(DeviceError::LockedOut {
            until: Some(t5 + 30)
        })
    );
    assert_eq!(tee.user().pending_presentations(), 1);
    clock.advance(29);
    assert_eq!(
        tee.get_assertion(&pay_challenge(&id, 9)),
        Err(DeviceError::LockedOut {
            until: Some(t5 + 30)
        })
    );
    clock.advance(1);
    let a = assertion_of(&tee.get_assertion(&pay_challenge(&id, 9)).unwrap());
    assert_eq!((a.failed_attempts, a.counter), (5, 1));
    // After a success the count restarts; 20 consecutive failures lock until the passcode.
    for round in 0..4 {
        for _ in 0..5 {
            assert_eq!(pay(&mut tee, &id, wrong()), Err(DeviceError::NoMatch));
        }
        let until = if round < 3 {
            Some(tee.tee_time() + 30)
        } else {
            None
        };
        assert_eq!(
            pay(&mut tee, &id, thumb()),
            Err(DeviceError::LockedOut { until })
        );
        tee.user().clear();
        clock.advance(31);
    }
    clock.advance(10_000);
    assert_eq!(
        pay(&mut tee, &id, thumb()),
        Err(DeviceError::LockedOut { until: None })
    );
    tee.user().clear();
    // The lockout survives a restart.
    let dir = tee.state_dir().to_owned();
    drop(tee);
    let mut tee = SoftwareTee::open(&dir, clock.clone()).unwrap();
    assert_eq!(
        pay(&mut tee, &id, thumb()),
        Err(DeviceError::LockedOut { until: None })
    );
    tee.user().clear();
    tee.passcode_reset().unwrap();
    let a = pay(&mut tee, &id, thumb()).unwrap();
    assert_eq!((a.failed_attempts, a.counter), (0, 2));
}

#[test]
fn lockout_uses_tee_time() {
    let (_d, _clock, mut tee, id) = setup();
    tee.faults().clock_skew_secs = -100;
    assert_eq!(tee.tee_time(), NOW - 100);
    for _ in 0..5 {
        assert!(pay(&mut tee, &id, Presentation::Spoof(Modality::Face)).is_err());
    }
    assert_eq!(
        pay(&mut tee, &id, thumb()),
        Err(DeviceError::LockedOut {
            until: Some(NOW - 70)
        })
    );
    tee.user().clear();
    tee.faults().clock_skew_secs = 0;
    let a = pay(&mut tee, &id, thumb()).unwrap();
    assert_eq!((a.failed_attempts, a.tee_time), (5, NOW));
    tee.faults().clock_skew_secs = i64::MIN;
    assert_eq!(tee.tee_time(), 0);
}

#[test]
fn spoof_is_counted() {
    let (_d, _c, mut tee, id) = setup();
    assert_eq!(
        pay(&mut tee, &id, Presentation::Spoof(Modality::Face)),
        Err(DeviceError::SpoofDetected)
    );
    assert_eq!(
        pay(&mut tee, &id, Presentation::Finger("stranger".into())),
        Err(DeviceError::NoMatch)
    );
    let a = pay(&mut tee, &id, Presentation::Face).unwrap();
    assert_eq!(a.failed_attempts, 2);
}

#[test]
fn declined_transaction_signs_nothing() {
    let (_d, _c, mut tee, id) = setup();
    tee.user().will_confirm(false);
    assert_eq!(
        pay(&mut tee, &id, thumb()),
        Err(DeviceError::TransactionDeclined)
    );
    assert!(tee.last_display().unwrap().contains("\nPay 88.00 CNY\n"));
    // The presentation was not consumed, no failure counted, the counter did not move.
    assert_eq!(tee.user().pending_presentations(), 1);
    let a = assertion_of(&tee.get_assertion(&pay_challenge(&id, 9)).unwrap());
    assert_eq!((a.counter, a.failed_attempts), (1, 0));
}

#[test]
fn invalid_transaction_is_refused_before_display() {
    let (_d, _c, mut tee, id) = setup();
    let mut c = pay_challenge(&id, 9);
    c.transaction.payee_name = "Coffee\u{202E}Corner".into();
    tee.user().present(thumb());
    assert!(matches!(
        tee.get_assertion(&c),
        Err(DeviceError::InvalidChallenge(_))
    ));
    assert_eq!(tee.last_display(), None);
}

#[test]
fn deregistration_deletes_the_credential() {
    let (_d, _c, mut tee, id) = setup();
    pay(&mut tee, &id, thumb()).unwrap();
    let s = tee.deregister(RP, &id).unwrap();
    let d =
        biopay_core::Deregistration::from_cbor(&parse_sign1(&s, false).unwrap().payload).unwrap();
    assert_eq!(
        (d.counter, d.tee_time, d.credential_id.clone()),
        (2, NOW, id.clone())
    );
    assert!(tee.credentials(RP).unwrap().is_empty());
    assert_eq!(tee.deregister(RP, &id), Err(DeviceError::UnknownCredential));
}

#[test]
fn seeded_devices_are_reproducible() {
    let clock = Arc::new(ManualClock::new(NOW));
    let run = |seed: &[u8]| {
        let dir = tempfile::tempdir().unwrap();
        let mut tee = device(dir.path(), &clock, Some(seed));
        tee.user().present(thumb());
        let att = tee
            .make_credential(&reg_challenge(RP, 1), &[Modality::Fingerprint])
            .unwrap();
        let id = attestation_of(&att).credential_id;
        tee.user().present(thumb());
        let pay = tee.get_assertion(&pay_challenge(&id, 2)).unwrap();
        (tee.attestation_chain(), att, pay)
    };
    let a = run(b"seed one");
    let b = run(b"seed one");
    let c = run(b"seed two");
    assert_eq!(a, b);
    assert_ne!(a.0[0], c.0[0]);
    assert_eq!(
        a.0[1], c.0[1],
        "the intermediate depends on the vendor only"
    );
    assert_ne!(a.1, c.1);
}

#[test]
fn reopened_seeded_device_draws_fresh_randomness() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let mut original = device(&dir.path().join("a"), &clock, Some(b"seed"));
    original.clone_state_to(&dir.path().join("b")).unwrap();
    let mut copy = SoftwareTee::open(&dir.path().join("b"), clock.clone()).unwrap();
    let id_a = register(&mut original);
    let id_b = register(&mut copy);
    assert_ne!(id_a, id_b);
}

#[test]
fn clone_and_rollback_share_keys_and_counters() {
    let (dir, clock, mut tee, id) = setup();
    assert_eq!(pay(&mut tee, &id, thumb()).unwrap().counter, 1);
    tee.clone_state_to(&dir.path().join("clone")).unwrap();
    assert_eq!(pay(&mut tee, &id, thumb()).unwrap().counter, 2);
    let mut clone = SoftwareTee::open(&dir.path().join("clone"), clock).unwrap();
    assert_eq!(clone.attestation_chain(), tee.attestation_chain());
    assert_eq!(pay(&mut clone, &id, thumb()).unwrap().counter, 2);
    tee.danger_rollback_counter(&id, 0).unwrap();
    assert_eq!(pay(&mut tee, &id, thumb()).unwrap().counter, 1);
    assert!(tee.clone_state_to(&dir.path().join("dev")).is_err());
}

#[test]
fn debug_output_holds_no_secrets() {
    let (_d, _c, tee, _) = setup();
    let dbg = format!("{tee:?}");
    assert!(dbg.contains(MODEL));
    for secret in [
        hex::encode(tee.state.root_secret.as_ref()),
        hex::encode(tee.state.attestation_key.as_ref()),
    ] {
        assert!(!dbg.contains(&secret));
        assert!(!dbg.to_lowercase().contains(&secret));
    }
    let bytes_dbg = format!("{:?}", tee.state.root_secret.as_ref());
    assert!(!dbg.contains(&bytes_dbg));
    let p = pki();
    let s = format!("{p:?}");
    assert!(s.contains("Acme Devices") && !s.contains("unit test vendor"));
}

#[test]
fn danger_signing() {
    let (_d, _c, mut tee, id) = setup();
    let s = tee
        .danger_sign_with_attestation_key(b"anything".to_vec())
        .unwrap();
    let parsed = parse_sign1(&s, true).unwrap();
    assert_eq!(parsed.payload, b"anything");
    let s = tee
        .danger_sign_with_credential(RP, &id, b"anything".to_vec())
        .unwrap();
    assert!(parse_sign1(&s, false).is_ok());
    assert!(matches!(
        tee.danger_sign_with_credential("other.example", &id, vec![1]),
        Err(TeeError::UnknownCredential)
    ));
    // Counters untouched.
    assert_eq!(pay(&mut tee, &id, thumb()).unwrap().counter, 1);
}

#[test]
fn end_to_end_with_the_verifier() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let pki = pki();
    let trust = TrustConfig::new().with_model(pki.device_model(
        MODEL,
        &[Modality::Fingerprint, Modality::Face],
        SecurityLevel::Tee,
    ));
    let server = Verifier::new(
        RP,
        trust,
        Policy::default(),
        MemoryStore::new(),
        clock.clone(),
        SystemRandom::new(),
    )
    .unwrap();
    let mut tee = SoftwareTee::provision(
        &pki,
        DeviceConfig::new(MODEL),
        &dir.path().join("phone"),
        None,
        clock.clone(),
    )
    .unwrap();
    tee.enroll_fingerprint("right-thumb").unwrap();
    tee.enroll_face().unwrap();
    let mut phone = Client::new(RP, tee, clock.clone());

    // Registration.
    let c = server
        .registration_challenge(
            b"account-7",
            &[Modality::Fingerprint, Modality::Face],
            SecurityLevel::Tee,
        )
        .unwrap();
    phone.authenticator_mut().user().present(thumb());
    let att = phone
        .register(&c.to_cbor(), &[Modality::Fingerprint, Modality::Face])
        .unwrap();
    let cred = server.verify_registration(&att).unwrap().record;
    assert_eq!(cred.device_model, MODEL);

    // Payment.
    let c = server
        .payment_challenge(&cred.credential_id, tx("ORDER-1"))
        .unwrap();
    phone.authenticator_mut().user().present(thumb());
    let s = phone.authorize(&c.to_cbor()).unwrap();
    assert_eq!(server.verify_payment(&s).unwrap().counter, 1);
    assert_eq!(
        server.verify_payment(&s).unwrap_err().step,
        Step::P9Challenge
    );

    // A high-value payment needs the face with liveness.
    let mut big = tx("ORDER-2");
    big.amount_minor = 500_000;
    let c = server.payment_challenge(&cred.credential_id, big).unwrap();
    assert_eq!(c.accepted_modalities, vec![Modality::Face]);
    phone
        .authenticator_mut()
        .user()
        .present(thumb())
        .present(Presentation::Face);
    assert_eq!(
        phone.authorize(&c.to_cbor()),
        Err(DeviceError::UserCanceled)
    );
    let s = phone.authorize(&c.to_cbor()).unwrap();
    assert_eq!(
        server.verify_payment(&s).unwrap().liveness,
        Liveness::Passed
    );

    // A malicious app changes the amount: the server notices.
    let c = server
        .payment_challenge(&cred.credential_id, tx("ORDER-3"))
        .unwrap();
    phone.authenticator_mut().user().present(thumb());
    let mut app = TamperingApp::new(phone.authenticator_mut(), |t: &mut Transaction| {
        t.amount_minor = 880_000
    });
    let s = app.get_assertion(&c).unwrap();
    drop(app);
    assert_eq!(
        server.verify_payment(&s).unwrap_err().step,
        Step::P12TransactionHash
    );
    assert!(phone
        .authenticator()
        .last_display()
        .unwrap()
        .contains("\nPay 8800.00 CNY\n"));

    // A clone pays with a stale counter.
    phone
        .authenticator()
        .clone_state_to(&dir.path().join("clone"))
        .unwrap();
    let mut clone = SoftwareTee::open(&dir.path().join("clone"), clock.clone()).unwrap();
    let c = server
        .payment_challenge(&cred.credential_id, tx("ORDER-4"))
        .unwrap();
    phone.authenticator_mut().user().present(thumb());
    assert!(server
        .verify_payment(&phone.authorize(&c.to_cbor()).unwrap())
        .is_ok());
    let c = server
        .payment_challenge(&cred.credential_id, tx("ORDER-5"))
        .unwrap();
    clone.user().present(thumb());
    let s = clone.get_assertion(&c).unwrap();
    assert_eq!(
        server.verify_payment(&s).unwrap_err().step,
        Step::P19Counter
    );

    // A second credential: enrollment change, then deregistration.
    let c = server
        .registration_challenge(b"account-8", &[Modality::Fingerprint], SecurityLevel::Tee)
        .unwrap();
    phone.authenticator_mut().user().present(thumb());
    let cred2 = server
        .verify_registration(
            &phone
                .register(&c.to_cbor(), &[Modality::Fingerprint])
                .unwrap(),
        )
        .unwrap()
        .record;
    phone
        .authenticator_mut()
        .enroll_fingerprint("intruder")
        .unwrap();
    let c = server
        .payment_challenge(&cred2.credential_id, tx("ORDER-6"))
        .unwrap();
    phone
        .authenticator_mut()
        .user()
        .present(Presentation::Finger("intruder".into()));
    let s = phone.authorize(&c.to_cbor()).unwrap();
    assert_eq!(
        server.verify_payment(&s).unwrap_err().step,
        Step::P15EnrollmentEpoch
    );
    let s = phone
        .report_enrollment_change(&cred2.credential_id)
        .unwrap();
    assert_eq!(
        server.verify_enrollment_change(&s).unwrap(),
        cred2.credential_id
    );
    let s = phone.deregister(&cred2.credential_id).unwrap();
    assert_eq!(
        server.verify_deregistration(&s).unwrap(),
        cred2.credential_id
    );
    assert!(phone
        .credentials()
        .unwrap()
        .iter()
        .all(|c| c.credential_id != cred2.credential_id));
}

/// The state file's buffer holds the root secret, the attestation key and the
/// RNG seed: it must be allocated once at its final size, since every growth
/// of a `Vec` copies it and frees the old block unzeroized.
#[test]
fn state_encoding_holds_the_secrets_in_one_exact_allocation() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let mut tee = device(
        dir.path(),
        &clock,
        Some(b"a seed that is kept in the state"),
    );
    register(&mut tee);
    for (i, rp) in ["a.example.com", "b.example.com"].into_iter().enumerate() {
        tee.user().present(thumb());
        tee.make_credential(
            &reg_challenge(rp, 2 + u8::try_from(i).unwrap()),
            &[Modality::Fingerprint],
        )
        .unwrap();
    }
    let bytes = tee.state.encode().unwrap();
    assert_eq!(
        bytes.capacity(),
        bytes.len(),
        "encoded state was reallocated"
    );
    let back = crate::state::State::decode(&bytes).unwrap();
    assert_eq!(back.root_secret.as_ref(), tee.state.root_secret.as_ref());
    assert_eq!(
        back.rng_seed.as_deref(),
        Some(&b"a seed that is kept in the state".to_vec())
    );
}
