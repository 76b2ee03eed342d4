//! The adversarial suite: every attack the protocol must stop, each asserted
//! to be rejected at the verification step of docs/PROTOCOL.md §6 that is
//! responsible for it, and (unless the step is a documented security event)
//! without changing stored state.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use biopay::{cose, crypto, simulator::*, *};
use common::*;
use coset::{iana, CoseSign1, CoseSign1Builder, HeaderBuilder, TaggedCborSerializable};
use p256::ecdsa::{signature::Signer, Signature, SigningKey};

fn sign_es(key: &SigningKey, header: coset::Header, payload: Vec<u8>) -> Vec<u8> {
    CoseSign1Builder::new()
        .protected(header)
        .payload(payload)
        .create_signature(b"", |tbs| {
            let s: Signature = key.sign(tbs);
            s.to_bytes().to_vec()
        })
        .build()
        .to_tagged_vec()
        .unwrap()
}

fn other_key() -> SigningKey {
    SigningKey::from_slice(&crypto::sha256(b"attacker")).unwrap()
}

#[test]
fn replay_is_rejected_and_changes_nothing() {
    let mut w = World::new();
    let (_, a) = w.assertion("o1");
    let ok = w.server.verify_payment(&a).unwrap();
    let before = w.stored();
    assert_eq!(before.counter, ok.counter);
    assert_eq!(
        assert_step(w.server.verify_payment(&a), Step::P9Challenge),
        Reason::ChallengeAlreadyUsed
    );
    assert_eq!(w.stored(), before, "a replay must not mark the credential");
}

#[test]
fn malleated_high_s_signature_replay_is_rejected() {
    let mut w = World::new();
    let (_, a) = w.assertion("o1");
    w.server.verify_payment(&a).unwrap();
    let mut s = CoseSign1::from_tagged_slice(&a).unwrap();
    // s -> n - s: still a valid ECDSA signature of the same statement.
    let n =
        hex::decode("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551").unwrap();
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = i16::from(n[i]) - i16::from(s.signature[32 + i]) - borrow;
        borrow = i16::from(d < 0);
        s.signature[32 + i] = u8::try_from(d.rem_euclid(256)).unwrap();
    }
    assert!(crypto::verify_es256(
        &w.cred.public_key,
        &s.tbs_data(b""),
        &s.signature,
        crypto::SignatureFormat::Fixed
    ));
    let malleated = s.to_tagged_vec().unwrap();
    assert_ne!(malleated, a);
    assert_eq!(
        assert_step(w.server.verify_payment(&malleated), Step::P9Challenge),
        Reason::ChallengeAlreadyUsed
    );
}

#[test]
fn amount_changed_by_a_malicious_app_is_rejected_and_the_challenge_survives() {
    let mut w = World::new();
    let c = w.challenge("o1", 8800);
    w.phone.authenticator_mut().user().present(thumb());
    let mut app = TamperingApp::new(w.phone.authenticator_mut(), |t: &mut Transaction| {
        t.amount_minor = 880_000
    });
    let tampered = app.get_assertion(&c).unwrap();
    drop(app);
    assert!(
        w.phone
            .authenticator()
            .last_display()
            .unwrap()
            .contains("\nPay 8800.00 CNY\n"),
        "the TEE showed what it signed"
    );
    assert_eq!(
        assert_step(w.server.verify_payment(&tampered), Step::P12TransactionHash),
        Reason::TransactionMismatch
    );
    assert!(
        w.unused(&c.challenge),
        "a rejected statement must not consume the challenge"
    );
    assert_eq!(w.stored().status, CredentialStatus::Active);
}

#[test]
fn payee_changed_by_a_malicious_app_is_rejected() {
    let mut w = World::new();
    let c = w.challenge("o1", 8800);
    w.phone.authenticator_mut().user().present(thumb());
    let mut app = TamperingApp::new(w.phone.authenticator_mut(), |t: &mut Transaction| {
        t.payee_id = "attacker".into()
    });
    let tampered = app.get_assertion(&c).unwrap();
    drop(app);
    assert_step(w.server.verify_payment(&tampered), Step::P12TransactionHash);
}

#[test]
fn display_and_confirmation_are_bound() {
    let mut w = World::new();
    let (_, a) = w.assertion("o1");
    let shown_other = w.resign(&a, |p| p.display_hash = crypto::sha256(b"Pay 0.01 CNY"));
    assert_eq!(
        assert_step(w.server.verify_payment(&shown_other), Step::P13DisplayHash),
        Reason::DisplayMismatch
    );
    let unconfirmed = w.resign(&a, |p| p.user_confirmed = false);
    assert_eq!(
        assert_step(
            w.server.verify_payment(&unconfirmed),
            Step::P14UserConfirmed
        ),
        Reason::NotConfirmed
    );
    // The genuine statement is still accepted: nothing above changed state.
    w.server.verify_payment(&a).unwrap();
}

#[test]
fn cloned_device_is_detected_by_the_counter() {
    let mut w = World::new();
    w.phone
        .authenticator()
        .clone_state_to(&w.dir.path().join("clone"))
        .unwrap();
    let (_, a) = w.assertion("o1");
    w.server.verify_payment(&a).unwrap();
    let mut clone = SoftwareTee::open(&w.dir.path().join("clone"), w.clock.clone()).unwrap();
    let c = w.challenge("o2", 8800);
    clone.user().present(thumb());
    let cloned = clone.get_assertion(&c).unwrap();
    let reason = assert_step(w.server.verify_payment(&cloned), Step::P19Counter);
    assert_eq!(
        reason,
        Reason::CounterNotIncreased {
            stored: 1,
            received: 1
        }
    );
    assert_eq!(
        w.stored().status,
        CredentialStatus::SuspectedClone,
        "a clone is a security event"
    );
    // The rejection was recorded in the same store operation as the flag.
    let flags = w.server.store().flags();
    assert_eq!(flags.len(), 1);
    assert_eq!(flags[0].step, Step::P19Counter);
    assert_eq!(flags[0].status, CredentialStatus::SuspectedClone);
    assert_eq!(flags[0].statement_hash, crypto::sha256(&cloned));
    // From now on even the genuine phone is refused until the RP investigates.
    let (_, genuine) = w.assertion_unchecked("o3");
    assert_eq!(
        assert_step(w.server.verify_payment(&genuine), Step::P6CredentialStatus),
        Reason::CredentialNotActive(CredentialStatus::SuspectedClone)
    );
}

#[test]
fn counter_rollback_is_detected() {
    let mut w = World::new();
    for order in ["o1", "o2"] {
        let (_, a) = w.assertion(order);
        w.server.verify_payment(&a).unwrap();
    }
    let id = w.cred.credential_id.clone();
    w.phone
        .authenticator_mut()
        .danger_rollback_counter(&id, 0)
        .unwrap();
    let (_, a) = w.assertion("o3");
    assert_eq!(
        assert_step(w.server.verify_payment(&a), Step::P19Counter),
        Reason::CounterNotIncreased {
            stored: 2,
            received: 1
        }
    );
}

#[test]
fn enrollment_change_blocks_payment_until_reregistration() {
    let mut w = World::new();
    w.phone
        .authenticator_mut()
        .enroll_fingerprint("intruder")
        .unwrap();
    let c = w.challenge("o1", 8800);
    w.phone
        .authenticator_mut()
        .user()
        .present(Presentation::Finger("intruder".into()));
    let a = w.phone.authorize(&c.to_cbor()).unwrap();
    assert_eq!(
        assert_step(w.server.verify_payment(&a), Step::P15EnrollmentEpoch),
        Reason::EnrollmentChanged
    );
    assert_eq!(w.stored().status, CredentialStatus::EnrollmentChanged);
    let flags = w.server.store().flags();
    assert_eq!(flags.len(), 1);
    assert_eq!(
        (flags[0].step, flags[0].reason.as_str()),
        (
            Step::P15EnrollmentEpoch,
            Reason::EnrollmentChanged.to_string().as_str()
        )
    );
    // Re-registration gives a usable credential bound to the new epoch.
    let fresh = w.register(b"account-7", &[Modality::Fingerprint]).unwrap();
    assert_ne!(fresh.enrollment_epoch, w.cred.enrollment_epoch);
    w.cred = fresh;
    let (_, a) = w.assertion("o2");
    w.server.verify_payment(&a).unwrap();
}

#[test]
fn removing_a_template_also_changes_the_epoch() {
    let mut w = World::new();
    w.phone.authenticator_mut().remove_face().unwrap();
    let (_, a) = w.assertion("o1");
    assert_step(w.server.verify_payment(&a), Step::P15EnrollmentEpoch);
}

#[test]
fn revoked_and_compromised_models_are_refused() {
    let mut w = World::new();
    let (_, a) = w.assertion("o1");
    assert!(w.server.set_model_status(MODEL, ModelStatus::Revoked));
    assert_eq!(
        assert_step(w.server.verify_payment(&a), Step::P7DeviceModel),
        Reason::DeviceModelNotActive(ModelStatus::Revoked)
    );
    let att = w.attestation(b"account-8", &[Modality::Fingerprint]);
    assert_eq!(
        assert_step(w.server.verify_registration(&att), Step::R4DeviceModel),
        Reason::DeviceModelNotActive(ModelStatus::Revoked)
    );
    w.server.set_model_status(MODEL, ModelStatus::Compromised);
    assert_step(w.server.verify_payment(&a), Step::P7DeviceModel);
    // Reinstated: the held-back assertion is still acceptable (nothing was consumed).
    w.server.set_model_status(MODEL, ModelStatus::Active);
    w.server.verify_payment(&a).unwrap();
}

/// Another process revoked the model: the store holds the new status, this
/// verifier's trust configuration still says active. The commit reads the
/// store's and refuses, at the model's step, changing nothing.
#[test]
fn a_model_revoked_in_the_store_is_refused_by_the_commit_of_a_verifier_that_has_not_loaded_it() {
    let mut w = World::new();
    let (c, a) = w.assertion("o1");
    w.server
        .store()
        .set_model_status(MODEL, ModelStatus::Compromised);
    assert_eq!(
        w.server.trust().model(MODEL).unwrap().status,
        ModelStatus::Active
    );
    assert_eq!(
        assert_step(w.server.verify_payment(&a), Step::P7DeviceModel),
        Reason::DeviceModelNotActive(ModelStatus::Compromised)
    );
    assert!(w.unused(&c.challenge), "nothing was committed");
    let att = w.attestation(b"account-9", &[Modality::Fingerprint]);
    assert_eq!(
        assert_step(w.server.verify_registration(&att), Step::R4DeviceModel),
        Reason::DeviceModelNotActive(ModelStatus::Compromised)
    );
    w.server
        .store()
        .set_model_status(MODEL, ModelStatus::Active);
    w.server.verify_payment(&a).unwrap();
    w.server.verify_registration(&att).unwrap();
}

#[test]
fn wrong_relying_party_is_rejected_on_the_device_and_the_server() {
    let mut w = World::new();
    let (_, a) = w.assertion("o1");
    let other = w.resign(&a, |p| p.rp_id_hash = crypto::sha256(b"evil.example"));
    assert_eq!(
        assert_step(w.server.verify_payment(&other), Step::P8RpId),
        Reason::WrongRp
    );
    // An app for pay.example.com refuses a challenge issued by another RP.
    let mut c = w.challenge("o2", 8800);
    c.rp_id = "evil.example".into();
    assert!(matches!(
        w.phone.authorize(&c.to_cbor()),
        Err(DeviceError::InvalidChallenge(_))
    ));
}

#[test]
fn expired_challenge_is_rejected() {
    let mut w = World::new();
    let (c, a) = w.assertion("o1");
    w.clock.set(c.expires_at + 1);
    assert_eq!(
        assert_step(w.server.verify_payment(&a), Step::P10ChallengeExpiry),
        Reason::ChallengeExpired {
            expires_at: c.expires_at,
            now: c.expires_at + 1
        }
    );
    // Exactly at expiry it is still valid.
    let mut w = World::new();
    let (c, a) = w.assertion("o1");
    w.clock.set(c.expires_at);
    w.server.verify_payment(&a).unwrap();
}

#[test]
fn challenge_issued_for_another_credential_or_account_is_rejected() {
    let mut w = World::new();
    let other = w.register(b"account-9", &[Modality::Fingerprint]).unwrap();
    let c_other = w
        .server
        .payment_challenge(&other.credential_id, tx("o1", 8800))
        .unwrap();
    let (_, a) = w.assertion("o2");
    // The world's credential signs over a challenge issued for another credential.
    let swapped = w.resign(&a, |p| {
        p.challenge = c_other.challenge;
        p.transaction_hash = c_other.transaction.transaction_hash();
    });
    assert_eq!(
        assert_step(w.server.verify_payment(&swapped), Step::P11ChallengeBinding),
        Reason::CredentialMismatch
    );

    // A key attestation for another account than the challenge's.
    let att = w.attestation(b"account-10", &[Modality::Fingerprint]);
    let mut ka = KeyAttestation::from_cbor(&payload(&att)).unwrap();
    ka.account_handle = b"account-11".to_vec();
    let forged = w
        .phone
        .authenticator()
        .danger_sign_with_attestation_key(ka.to_cbor())
        .unwrap();
    assert_eq!(
        assert_step(w.server.verify_registration(&forged), Step::R10Account),
        Reason::AccountMismatch
    );
}

#[test]
fn a_challenge_is_for_one_ceremony() {
    let mut w = World::new();
    let (_, a) = w.assertion("o1");
    let reg = w
        .server
        .registration_challenge(b"account-7", &[Modality::Fingerprint], SecurityLevel::Tee)
        .unwrap();
    let crossed = w.resign(&a, |p| p.challenge = reg.challenge);
    assert_eq!(
        assert_step(w.server.verify_payment(&crossed), Step::P9Challenge),
        Reason::WrongChallengeKind
    );
    let unknown = w.resign(&a, |p| p.challenge = [0x55; 32]);
    assert_eq!(
        assert_step(w.server.verify_payment(&unknown), Step::P9Challenge),
        Reason::UnknownChallenge
    );
}

#[test]
fn signature_by_another_key_is_rejected() {
    let mut w = World::new();
    let (c, a) = w.assertion("o1");
    let forged = sign_es(
        &other_key(),
        HeaderBuilder::new()
            .algorithm(iana::Algorithm::ES256)
            .build(),
        payload(&a),
    );
    assert_eq!(
        assert_step(w.server.verify_payment(&forged), Step::P5Signature),
        Reason::BadSignature
    );
    assert!(w.unused(&c.challenge));
    // A flipped bit anywhere in the signature.
    let mut s = CoseSign1::from_tagged_slice(&a).unwrap();
    s.signature[63] ^= 0x80;
    assert_step(
        w.server.verify_payment(&s.to_tagged_vec().unwrap()),
        Step::P5Signature,
    );
}

#[test]
fn algorithm_substitution_and_extra_headers_are_rejected() {
    let mut w = World::new();
    let (_, a) = w.assertion("o1");
    let p = payload(&a);
    let k = other_key();
    for alg in [
        iana::Algorithm::ES384,
        iana::Algorithm::EdDSA,
        iana::Algorithm::HMAC_256_256,
    ] {
        let s = sign_es(&k, HeaderBuilder::new().algorithm(alg).build(), p.clone());
        assert_eq!(
            assert_step(w.server.verify_payment(&s), Step::P2Header),
            Reason::Statement(cose::CoseError::UnsupportedAlgorithm),
            "{alg:?}"
        );
    }
    let no_alg = sign_es(&k, HeaderBuilder::new().build(), p.clone());
    assert_step(w.server.verify_payment(&no_alg), Step::P2Header);
    let kid = sign_es(
        &k,
        HeaderBuilder::new()
            .algorithm(iana::Algorithm::ES256)
            .key_id(b"k".to_vec())
            .build(),
        p.clone(),
    );
    assert_eq!(
        assert_step(w.server.verify_payment(&kid), Step::P2Header),
        Reason::Statement(cose::CoseError::UnexpectedHeader)
    );
    let crit = sign_es(
        &k,
        HeaderBuilder::new()
            .algorithm(iana::Algorithm::ES256)
            .add_critical(iana::HeaderParameter::Alg)
            .build(),
        p.clone(),
    );
    assert_step(w.server.verify_payment(&crit), Step::P2Header);
    // An x5chain on a payment assertion is not allowed.
    let chain = w.phone.authenticator().attestation_chain();
    let with_chain = sign_es(
        &k,
        HeaderBuilder::new()
            .algorithm(iana::Algorithm::ES256)
            .value(33, ciborium::value::Value::Bytes(chain[0].clone()))
            .build(),
        p,
    );
    assert_eq!(
        assert_step(w.server.verify_payment(&with_chain), Step::P2Header),
        Reason::Statement(cose::CoseError::X5Chain)
    );
}

#[test]
fn malformed_and_truncated_statements_are_rejected_at_p1() {
    let mut w = World::new();
    let (c, a) = w.assertion("o1");
    for n in 0..a.len() {
        assert_step(w.server.verify_payment(&a[..n]), Step::P1Statement);
    }
    let mut trailing = a.clone();
    trailing.push(0);
    assert_step(w.server.verify_payment(&trailing), Step::P1Statement);
    assert_step(
        w.server.verify_payment(b"\xd2\x84garbage"),
        Step::P1Statement,
    );
    // Untagged COSE_Sign1.
    assert_step(w.server.verify_payment(&a[1..]), Step::P1Statement);
    assert!(w.unused(&c.challenge));
    w.server.verify_payment(&a).unwrap();
}

#[test]
fn unknown_and_duplicate_payload_keys_are_rejected_at_p3() {
    use ciborium::value::Value;
    let mut w = World::new();
    let (_, a) = w.assertion("o1");
    let id = w.cred.credential_id.clone();
    let Value::Map(mut entries) = cbor::from_deterministic_slice(&payload(&a)).unwrap() else {
        panic!()
    };
    entries.push((Value::Integer(99.into()), Value::Bool(true)));
    let unknown = cbor::to_deterministic_vec(Value::Map(entries)).unwrap();
    let s = w
        .phone
        .authenticator_mut()
        .danger_sign_with_credential(RP, &id, unknown)
        .unwrap();
    assert_eq!(
        assert_step(w.server.verify_payment(&s), Step::P3Payload),
        Reason::Payload(DecodeError::UnknownKey(99))
    );
    // A duplicate key 12 (counter) appended by hand, with the map length bumped.
    let mut dup = payload(&a);
    dup[0] += 1;
    dup.extend_from_slice(&[0x0c, 0x18, 0x63]);
    let s = w
        .phone
        .authenticator_mut()
        .danger_sign_with_credential(RP, &id, dup)
        .unwrap();
    assert_eq!(
        assert_step(w.server.verify_payment(&s), Step::P3Payload),
        Reason::Payload(DecodeError::Cbor(cbor::CborError::DuplicateKey))
    );
    // A key attestation presented as a payment.
    let att = w.attestation(b"account-8", &[Modality::Fingerprint]);
    let kind = w
        .phone
        .authenticator_mut()
        .danger_sign_with_credential(RP, &id, payload(&att))
        .unwrap();
    assert!(matches!(
        assert_step(w.server.verify_payment(&kind), Step::P3Payload),
        Reason::Payload(DecodeError::WrongKind { .. })
    ));
}

#[test]
fn modality_liveness_and_amount_policy() {
    // High value (>= 2000.00 CNY by default) needs a live face on a TEE key.
    let mut w = World::new();
    let c = w.challenge("big", 500_000);
    assert_eq!(c.accepted_modalities, vec![Modality::Face]);
    assert!(c.require_liveness);
    // The TEE refuses a fingerprint for it...
    w.phone.authenticator_mut().user().present(thumb());
    assert_eq!(
        w.phone.authorize(&c.to_cbor()),
        Err(DeviceError::UserCanceled)
    );
    // ...and a live face works.
    w.phone
        .authenticator_mut()
        .user()
        .present(Presentation::Face);
    let a = w.phone.authorize(&c.to_cbor()).unwrap();
    let fingerprint = w.resign(&a, |p| p.modality = Modality::Fingerprint);
    assert_eq!(
        assert_step(w.server.verify_payment(&fingerprint), Step::P16Modality),
        Reason::ModalityNotAccepted
    );
    let no_liveness = w.resign(&a, |p| p.liveness = Liveness::NotChecked);
    assert_eq!(
        assert_step(w.server.verify_payment(&no_liveness), Step::P16Modality),
        Reason::LivenessRequired
    );
    let approved = w.server.verify_payment(&a).unwrap();
    assert_eq!(
        (approved.modality, approved.liveness),
        (Modality::Face, Liveness::Passed)
    );

    // A policy that wants StrongBox for high value: the server will not even
    // issue a high-value challenge to this TEE credential.
    let policy = Policy {
        high_value_requirement: HighValueRequirement::StrongBox,
        ..Policy::default()
    };
    let w = World::with(policy, DeviceConfig::new(MODEL));
    assert_eq!(
        w.server
            .payment_challenge(&w.cred.credential_id, tx("big", 500_000)),
        Err(IssueError::PolicyUnsatisfiable)
    );
    w.server
        .payment_challenge(&w.cred.credential_id, tx("small", 8800))
        .unwrap();
}

#[test]
fn many_failed_attempts_before_a_match_are_refused() {
    let mut w = World::new();
    let c = w.challenge("o1", 8800);
    for _ in 0..4 {
        w.phone
            .authenticator_mut()
            .user()
            .present(Presentation::Finger("stranger".into()));
        assert_eq!(w.phone.authorize(&c.to_cbor()), Err(DeviceError::NoMatch));
    }
    w.phone.authenticator_mut().user().present(thumb());
    let a = w.phone.authorize(&c.to_cbor()).unwrap();
    let p = PaymentAssertion::from_cbor(&payload(&a)).unwrap();
    assert_eq!(p.failed_attempts, 4);
    w.server.verify_payment(&a).unwrap();
    let (_, a) = w.assertion("o2");
    let many = w.resign(&a, |p| p.failed_attempts = 5);
    assert_eq!(
        assert_step(w.server.verify_payment(&many), Step::P17Policy),
        Reason::TooManyFailedAttempts(5)
    );
}

#[test]
fn tee_clock_skew_is_rejected() {
    let mut w = World::new();
    w.phone.authenticator_mut().faults().clock_skew_secs = 3600;
    let (_, a) = w.assertion("o1");
    assert!(matches!(
        assert_step(w.server.verify_payment(&a), Step::P18TeeClock),
        Reason::ClockSkew { .. }
    ));
    let att = w.attestation(b"account-8", &[Modality::Fingerprint]);
    assert_step(w.server.verify_registration(&att), Step::R14TeeClock);
    w.phone.authenticator_mut().faults().clock_skew_secs = -299;
    let (_, a) = w.assertion("o2");
    w.server.verify_payment(&a).unwrap();
}

#[test]
fn deregistered_and_suspended_credentials_are_refused() {
    let mut w = World::new();
    let (_, held) = w.assertion("o1");
    w.server
        .store()
        .set_credential_status(&w.cred.credential_id, CredentialStatus::Suspended)
        .unwrap();
    assert_step(w.server.verify_payment(&held), Step::P6CredentialStatus);
    assert!(w
        .server
        .payment_challenge(&w.cred.credential_id, tx("o2", 1))
        .is_err());
    w.server
        .store()
        .set_credential_status(&w.cred.credential_id, CredentialStatus::Active)
        .unwrap();
    let id = w.cred.credential_id.clone();
    let d = w.phone.deregister(&id).unwrap();
    assert_eq!(w.server.verify_deregistration(&d).unwrap(), id);
    assert_eq!(
        assert_step(w.server.verify_payment(&held), Step::P6CredentialStatus),
        Reason::CredentialNotActive(CredentialStatus::Deregistered)
    );
    assert_step(w.server.verify_deregistration(&d), Step::D7CredentialStatus);
    assert!(w.phone.credentials().unwrap().is_empty());
}

// ---------------------------------------------------------------------------
// Registration: attestation chains and device claims.

#[test]
fn registration_replay_and_duplicate_credential() {
    let mut w = World::new();
    let att = w.attestation(b"account-8", &[Modality::Fingerprint]);
    w.server.verify_registration(&att).unwrap();
    assert_eq!(
        assert_step(w.server.verify_registration(&att), Step::R8Challenge),
        Reason::ChallengeAlreadyUsed
    );
    // The same credential id presented again over a fresh challenge.
    let fresh = w
        .server
        .registration_challenge(b"account-8", &[Modality::Fingerprint], SecurityLevel::Tee)
        .unwrap();
    let mut ka = KeyAttestation::from_cbor(&payload(&att)).unwrap();
    ka.challenge = fresh.challenge;
    let again = w
        .phone
        .authenticator()
        .danger_sign_with_attestation_key(ka.to_cbor())
        .unwrap();
    assert_eq!(
        assert_step(w.server.verify_registration(&again), Step::R15CredentialId),
        Reason::DuplicateCredential
    );
    assert!(w.unused(&fresh.challenge));
}

/// Prefixes a device might put on a new credential id instead of the
/// challenge's `prefix`: another account's slot, the slot with its lowest
/// bit (the shard bit of two shards) flipped, the slot with its highest bit
/// flipped, none.
fn foreign_prefixes(prefix: [u8; 2]) -> Vec<[u8; 2]> {
    let other = routing::credential_id_prefix(RP, b"account-of-someone-else");
    assert_ne!(other, prefix);
    vec![
        other,
        [prefix[0], prefix[1] ^ 1],
        [prefix[0] ^ 0x80, prefix[1]],
        [!prefix[0], !prefix[1]],
    ]
}

#[test]
fn credential_id_placed_on_another_accounts_shard_is_refused_at_r15() {
    // A malicious app hands the TEE the registration challenge with another
    // slot as credential_id_prefix: the TEE signs an id that would route the
    // credential to a shard its account is not on (§4.1.9).
    let mut w = World::new();
    let c = w
        .server
        .registration_challenge(b"account-8", &[Modality::Fingerprint], SecurityLevel::Tee)
        .unwrap();
    for prefix in foreign_prefixes(c.credential_id_prefix) {
        let mut forged = c.clone();
        forged.credential_id_prefix = prefix;
        w.phone.authenticator_mut().user().present(thumb());
        let att = w
            .phone
            .authenticator_mut()
            .make_credential(&forged, &[Modality::Fingerprint])
            .unwrap();
        let id = KeyAttestation::from_cbor(&payload(&att))
            .unwrap()
            .credential_id;
        assert_eq!(
            id.as_bytes()[..2],
            prefix,
            "the TEE put the prefix it saw first"
        );
        assert_eq!(
            assert_step(w.server.verify_registration(&att), Step::R15CredentialId),
            Reason::CredentialIdPrefixMismatch
        );
        assert!(w.unused(&c.challenge), "the challenge survives");
        assert!(w.server.store().credential(&id).unwrap().is_none());
    }
    // The same challenge, honestly answered, registers.
    w.phone.authenticator_mut().user().present(thumb());
    let att = w
        .phone
        .register(&c.to_cbor(), &[Modality::Fingerprint])
        .unwrap();
    w.server.verify_registration(&att).unwrap();
}

#[test]
fn an_accounts_tee_credentials_share_the_accounts_slot() {
    let mut w = World::new();
    let slot = account_slot(RP, b"account-7");
    assert_eq!(credential_slot(&w.cred.credential_id), slot);
    let second = w.register(b"account-7", &[Modality::Face]).unwrap();
    assert_ne!(second.credential_id, w.cred.credential_id);
    assert_eq!(credential_slot(&second.credential_id), slot);
    // The id has as much entropy as before: 32 random bytes after the prefix.
    assert_eq!(second.credential_id.as_bytes().len(), 34);
    let other = w.register(b"account-8", &[Modality::Face]).unwrap();
    assert_eq!(
        credential_slot(&other.credential_id),
        account_slot(RP, b"account-8")
    );
}

#[test]
fn untrusted_root_is_rejected() {
    let w = World::new();
    let rogue = VendorPki::new("Rogue", b"rogue").unwrap();
    let mut tee = SoftwareTee::provision(
        &rogue,
        DeviceConfig::new(MODEL),
        &w.dir.path().join("rogue"),
        None,
        w.clock.clone(),
    )
    .unwrap();
    tee.enroll_fingerprint("f").unwrap();
    let c = w
        .server
        .registration_challenge(b"a", &[Modality::Fingerprint], SecurityLevel::Tee)
        .unwrap();
    tee.user().present(Presentation::Finger("f".into()));
    let att = tee.make_credential(&c, &[Modality::Fingerprint]).unwrap();
    assert_eq!(
        assert_step(w.server.verify_registration(&att), Step::R5AttestationChain),
        Reason::Chain(x509::ChainError::UntrustedRoot { index: 1 })
    );
    assert!(w.unused(&c.challenge));
}

#[test]
fn attestation_certificate_outside_its_validity_is_rejected() {
    let mut w = World::new();
    // The simulated leaf certificates are valid 2024-01-01 .. 2040-01-01.
    w.clock.set(2_240_000_000); // 2040-12-25
    let att = w.attestation(b"account-8", &[Modality::Fingerprint]);
    assert_eq!(
        assert_step(w.server.verify_registration(&att), Step::R5AttestationChain),
        Reason::Chain(x509::ChainError::NotValidAtTime { index: 0 })
    );
}

#[test]
fn a_device_cannot_claim_another_model_or_more_than_its_model_has() {
    let mut w = World::new();
    // Another model id in the payload than in the leaf's subject OU.
    let att = w.attestation(b"account-8", &[Modality::Fingerprint]);
    let mut ka = KeyAttestation::from_cbor(&payload(&att)).unwrap();
    ka.device_model = "acme-phone-x2".into();
    let forged = w
        .phone
        .authenticator()
        .danger_sign_with_attestation_key(ka.to_cbor())
        .unwrap();
    assert_eq!(
        assert_step(w.server.verify_registration(&forged), Step::R4DeviceModel),
        Reason::UnknownDeviceModel
    );

    // StrongBox claimed on a TEE-only model; software keys; unverified boot.
    for (level, boot, step, reason) in [
        (
            SecurityLevel::StrongBox,
            VerifiedBootState::Verified,
            Step::R12SecurityLevel,
            Reason::SecurityLevelOverclaimed,
        ),
        (
            SecurityLevel::Software,
            VerifiedBootState::Verified,
            Step::R12SecurityLevel,
            Reason::InsufficientSecurityLevel,
        ),
        (
            SecurityLevel::Tee,
            VerifiedBootState::Unverified,
            Step::R13BootState,
            Reason::BootState(VerifiedBootState::Unverified),
        ),
    ] {
        let att = w.attestation(b"account-8", &[Modality::Fingerprint]);
        let mut ka = KeyAttestation::from_cbor(&payload(&att)).unwrap();
        ka.security_level = level;
        ka.verified_boot = boot;
        let forged = w
            .phone
            .authenticator()
            .danger_sign_with_attestation_key(ka.to_cbor())
            .unwrap();
        assert_eq!(
            assert_step(w.server.verify_registration(&forged), step),
            reason
        );
    }
}

#[test]
fn modalities_outside_the_challenge_or_model_are_rejected() {
    let mut w = World::new();
    let c = w
        .server
        .registration_challenge(b"account-8", &[Modality::Fingerprint], SecurityLevel::Tee)
        .unwrap();
    w.phone.authenticator_mut().user().present(thumb());
    let att = w
        .phone
        .authenticator_mut()
        .make_credential(&c, &[Modality::Fingerprint, Modality::Face])
        .unwrap();
    assert_eq!(
        assert_step(w.server.verify_registration(&att), Step::R11Modality),
        Reason::ModalityNotAccepted
    );
}

/// Chains built by hand with rcgen: a non-CA intermediate, an expired
/// intermediate, and a leaf whose issuer is missing.
mod forged_chains {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose,
        PKCS_ECDSA_P256_SHA256,
    };

    struct Forged {
        root_spki: Vec<u8>,
        chain: Vec<Vec<u8>>,
        leaf_key: ring::signature::EcdsaKeyPair,
    }

    fn forge(intermediate_is_ca: bool, intermediate_not_after: (i32, u8, u8)) -> Forged {
        let root_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut root = CertificateParams::new(vec![]).unwrap();
        root.distinguished_name
            .push(DnType::CommonName, "Forged Root");
        root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        root.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        root.not_before = rcgen::date_time_ymd(2020, 1, 1);
        root.not_after = rcgen::date_time_ymd(2045, 1, 1);
        let root_issuer = rcgen::Issuer::new(root.clone(), &root_key);

        let int_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut int = CertificateParams::new(vec![]).unwrap();
        int.distinguished_name
            .push(DnType::CommonName, "Forged Intermediate");
        int.is_ca = if intermediate_is_ca {
            IsCa::Ca(BasicConstraints::Constrained(0))
        } else {
            IsCa::ExplicitNoCa
        };
        if intermediate_is_ca {
            int.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        }
        int.not_before = rcgen::date_time_ymd(2020, 1, 1);
        let (y, m, d) = intermediate_not_after;
        int.not_after = rcgen::date_time_ymd(y, m, d);
        let int_cert = int.signed_by(&int_key, &root_issuer).unwrap();
        let int_issuer = rcgen::Issuer::new(int, &int_key);

        let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut leaf = CertificateParams::new(vec![]).unwrap();
        leaf.distinguished_name
            .push(DnType::CommonName, "Forged device");
        leaf.distinguished_name
            .push(DnType::OrganizationalUnitName, MODEL);
        leaf.not_before = rcgen::date_time_ymd(2024, 1, 1);
        leaf.not_after = rcgen::date_time_ymd(2040, 1, 1);
        let leaf_cert = leaf.signed_by(&leaf_key, &int_issuer).unwrap();
        let ring_key = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &leaf_key.serialize_der(),
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();
        Forged {
            root_spki: rcgen::PublicKeyData::subject_public_key_info(&root_key),
            chain: vec![leaf_cert.der().to_vec(), int_cert.der().to_vec()],
            leaf_key: ring_key,
        }
    }

    /// Registers through a forged chain whose root the server trusts for MODEL.
    fn register_with(f: &Forged, chain: &[Vec<u8>]) -> Result<RegisteredCredential, Rejection> {
        let clock = std::sync::Arc::new(ManualClock::new(NOW));
        let model = DeviceModel {
            id: MODEL.into(),
            trust_anchors: vec![TrustAnchor {
                name: "forged".into(),
                spki_der: f.root_spki.clone(),
            }],
            modalities: vec![Modality::Fingerprint],
            security_level: SecurityLevel::Tee,
            status: ModelStatus::Active,
        };
        let server = Verifier::new(
            RP,
            TrustConfig::new().with_model(model),
            Policy::default(),
            MemoryStore::new(),
            clock,
            SystemRandom::new(),
        )
        .unwrap();
        let c = server
            .registration_challenge(b"acct", &[Modality::Fingerprint], SecurityLevel::Tee)
            .unwrap();
        let cred_key = other_key();
        let ka = KeyAttestation {
            rp_id_hash: crypto::sha256(RP.as_bytes()),
            account_handle: b"acct".to_vec(),
            challenge: c.challenge,
            credential_public_key: cred_key
                .verifying_key()
                .to_encoded_point(false)
                .as_bytes()
                .to_vec(),
            credential_id: routing::prefixed_credential_id(c.credential_id_prefix, &[0x42; 32])
                .unwrap(),
            modalities: vec![Modality::Fingerprint],
            enrollment_epoch: [1; 32],
            security_level: SecurityLevel::Tee,
            device_model: MODEL.into(),
            verified_boot: VerifiedBootState::Verified,
            tee_time: NOW,
            initial_counter: 0,
        };
        let statement = cose::sign1(ka.to_cbor(), chain, |tbs| {
            f.leaf_key
                .sign(&ring::rand::SystemRandom::new(), tbs)
                .map(|s| s.as_ref().to_vec())
        })
        .unwrap();
        server.verify_registration(&statement)
    }

    #[test]
    fn a_well_formed_forged_chain_is_accepted_when_its_root_is_trusted() {
        // Control: the forging code itself produces acceptable chains.
        let f = forge(true, (2045, 1, 1));
        register_with(&f, &f.chain).unwrap();
    }

    #[test]
    fn an_intermediate_that_is_not_a_ca_is_rejected() {
        let f = forge(false, (2045, 1, 1));
        assert_eq!(
            assert_step(register_with(&f, &f.chain), Step::R5AttestationChain),
            Reason::Chain(x509::ChainError::IssuerNotCa { index: 1 })
        );
    }

    #[test]
    fn an_expired_intermediate_is_rejected() {
        let f = forge(true, (2025, 1, 1));
        assert_eq!(
            assert_step(register_with(&f, &f.chain), Step::R5AttestationChain),
            Reason::Chain(x509::ChainError::NotValidAtTime { index: 1 })
        );
    }

    #[test]
    fn a_chain_missing_its_intermediate_is_rejected() {
        let f = forge(true, (2045, 1, 1));
        assert_eq!(
            assert_step(register_with(&f, &f.chain[..1]), Step::R5AttestationChain),
            Reason::Chain(x509::ChainError::UntrustedRoot { index: 0 })
        );
    }
}

impl World {
    /// Like `assertion` but tolerates a credential the server no longer accepts.
    fn assertion_unchecked(&mut self, order: &str) -> (PaymentChallenge, Vec<u8>) {
        // The server will not issue a challenge for a credential that is not
        // active, so hand the TEE one directly (it does not consult the server).
        let now = self.clock.now();
        let c = PaymentChallenge {
            rp_id: RP.into(),
            account_handle: self.cred.account_handle.clone(),
            credential_id: self.cred.credential_id.clone(),
            challenge: [0x77; 32],
            transaction: tx(order, 8800),
            issued_at: now,
            expires_at: now + 60,
            accepted_modalities: vec![Modality::Fingerprint],
            require_liveness: false,
        };
        self.phone.authenticator_mut().user().present(thumb());
        let bytes = self.phone.authorize(&c.to_cbor()).unwrap();
        (c, bytes)
    }
}

#[test]
fn out_of_order_delivery_is_refused_but_not_flagged_as_a_clone() {
    let mut w = World::new();
    let (_, first) = w.assertion("o1"); // counter 1
    let (_, second) = w.assertion("o2"); // counter 2
    w.server.verify_payment(&second).unwrap();
    assert_eq!(
        assert_step(w.server.verify_payment(&first), Step::P19Counter),
        Reason::CounterSuperseded {
            stored: 2,
            received: 1
        }
    );
    assert_eq!(
        w.stored().status,
        CredentialStatus::Active,
        "a late genuine statement is not a clone"
    );
    // A statement at or below the counter known when its challenge was issued is.
    let id = w.cred.credential_id.clone();
    w.phone
        .authenticator_mut()
        .danger_rollback_counter(&id, 1)
        .unwrap();
    let (_, stale) = w.assertion("o3"); // counter 2, challenge issued at stored counter 2
    assert_eq!(
        assert_step(w.server.verify_payment(&stale), Step::P19Counter),
        Reason::CounterNotIncreased {
            stored: 2,
            received: 2
        }
    );
    assert_eq!(w.stored().status, CredentialStatus::SuspectedClone);
}

#[test]
fn commits_re_check_the_credential_atomically() {
    use biopay::store::{CommitError, Decision, DecisionKind, Flag};
    let mut w = World::new();
    let (c, a) = w.assertion("o1");
    let id = w.cred.credential_id.clone();
    // The credential is suspended between the checks and the commit.
    w.server
        .store()
        .set_credential_status(&id, CredentialStatus::Suspended)
        .unwrap();
    let decision = Decision {
        kind: DecisionKind::Payment,
        credential_id: id.clone(),
        statement_hash: crypto::sha256(&a),
        at: NOW,
    };
    assert_eq!(
        w.server
            .store()
            .commit_payment(&c.challenge, &id, 1, None, &decision),
        Err(CommitError::CredentialNotActive(
            CredentialStatus::Suspended
        ))
    );
    assert!(w.unused(&c.challenge), "nothing was committed");
    // A security flag never overwrites a status other than active.
    w.server
        .store()
        .flag_credential(&Flag {
            credential_id: id.clone(),
            status: CredentialStatus::SuspectedClone,
            step: Step::P19Counter,
            reason: "counter did not increase".into(),
            statement_hash: crypto::sha256(&a),
            at: NOW,
        })
        .unwrap();
    assert_eq!(w.stored().status, CredentialStatus::Suspended);
}

#[test]
fn outer_and_signed_signature_algorithms_must_agree() {
    // Rewrite the leaf's outer signatureAlgorithm from ecdsa-with-SHA256 to
    // ecdsa-with-SHA384 (same length), leaving the signed TBS untouched.
    let w = World::new();
    let mut chain = w.phone.authenticator().attestation_chain();
    let anchors = vec![w.pki.trust_anchor()];
    assert!(
        x509::verify_chain(&chain, &anchors, NOW).is_ok(),
        "control: the genuine chain verifies"
    );
    let leaf = &mut chain[0];
    let sha256_oid = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
    let last = leaf
        .windows(sha256_oid.len())
        .rposition(|w| w == sha256_oid)
        .unwrap();
    leaf[last + sha256_oid.len() - 1] = 0x03;
    assert_eq!(
        x509::verify_chain(&chain, &anchors, NOW).unwrap_err(),
        x509::ChainError::Malformed { index: 0 }
    );
}

/// A verifier whose credential reads are stale (a second process that read
/// the credential at P4 before another process's commit): every other
/// operation goes to the shared store.
struct StaleReads<'a> {
    store: &'a MemoryStore,
    record: CredentialRecord,
}

impl Store for StaleReads<'_> {
    fn insert_challenge(
        &self,
        issued: store::IssuedChallenge,
        limit: Option<store::ChallengeLimit>,
    ) -> Result<bool, store::StoreError> {
        self.store.insert_challenge(issued, limit)
    }
    fn challenge(
        &self,
        challenge: &Challenge,
    ) -> Result<Option<store::ChallengeEntry>, store::StoreError> {
        self.store.challenge(challenge)
    }
    fn credential(&self, _: &CredentialId) -> Result<Option<CredentialRecord>, store::StoreError> {
        Ok(Some(self.record.clone()))
    }
    fn credentials_for_account(
        &self,
        rp_id: &str,
        account_handle: &[u8],
    ) -> Result<Vec<CredentialRecord>, store::StoreError> {
        self.store.credentials_for_account(rp_id, account_handle)
    }
    fn commit_registration(
        &self,
        challenge: &Challenge,
        record: &CredentialRecord,
        decision: &store::Decision,
    ) -> Result<(), store::CommitError> {
        self.store.commit_registration(challenge, record, decision)
    }
    fn commit_payment(
        &self,
        challenge: &Challenge,
        id: &CredentialId,
        new_counter: u64,
        app_attest_counter: Option<u32>,
        decision: &store::Decision,
    ) -> Result<(), store::CommitError> {
        self.store
            .commit_payment(challenge, id, new_counter, app_attest_counter, decision)
    }
    fn commit_status(
        &self,
        id: &CredentialId,
        expected_counter: u64,
        new_counter: u64,
        expected_status: CredentialStatus,
        status: CredentialStatus,
        decision: &store::Decision,
    ) -> Result<(), store::CommitError> {
        self.store.commit_status(
            id,
            expected_counter,
            new_counter,
            expected_status,
            status,
            decision,
        )
    }
    fn flag_credential(&self, flag: &store::Flag) -> Result<(), store::CommitError> {
        self.store.flag_credential(flag)
    }
    fn set_credential_status(
        &self,
        id: &CredentialId,
        status: CredentialStatus,
    ) -> Result<(), store::CommitError> {
        self.store.set_credential_status(id, status)
    }
    fn purge_expired_challenges(&self, now: u64) -> Result<usize, store::StoreError> {
        self.store.purge_expired_challenges(now)
    }
}

/// Two statements of one credential, the later one accepted by another
/// process after this one read the counter at P4: the commit finds the
/// counter moved past this statement's and says what P19 would have said,
/// superseded, without flagging the credential or consuming the challenge;
/// a statement above the moved counter is accepted although P4 read an
/// older counter (the commit's condition is P19's: stored < counter).
#[test]
fn a_counter_moved_between_p4_and_the_commit_is_superseded_not_a_clone() {
    let mut w = World::new();
    let (c1, a1) = w.assertion("o1");
    let (_, a2) = w.assertion("o2");
    let (_, a3) = w.assertion("o3");
    let before = w.stored();
    assert_eq!(w.server.verify_payment(&a2).unwrap().counter, 2);
    let stale = Verifier::new(
        RP,
        w.server.trust(),
        Policy::default(),
        StaleReads {
            store: w.server.store(),
            record: before,
        },
        w.clock.clone(),
        SystemRandom::new(),
    )
    .unwrap();
    assert_eq!(
        assert_step(stale.verify_payment(&a1), Step::P19Counter),
        Reason::CounterSuperseded {
            stored: 2,
            received: 1
        }
    );
    assert!(w.unused(&c1.challenge), "nothing was committed");
    assert_eq!(w.stored().status, CredentialStatus::Active);
    assert!(w.server.store().flags().is_empty(), "nothing was flagged");
    assert_eq!(stale.verify_payment(&a3).unwrap().counter, 3);
    assert_eq!(w.stored().counter, 3);
}

#[test]
fn a_flood_of_unanswered_challenges_stops_at_the_per_account_limit() {
    let policy = Policy {
        max_challenges_per_account: 3,
        ..Policy::default()
    };
    let mut w = World::with(policy, DeviceConfig::new(MODEL));
    let refused = |w: &World| {
        matches!(
            w.server
                .payment_challenge(&w.cred.credential_id, tx("more", 100)),
            Err(IssueError::TooManyChallenges { max: 3 })
        )
    };
    // The consumed registration challenge does not count; three outstanding do.
    let flood: Vec<_> = (0..3).map(|i| w.challenge(&format!("f{i}"), 100)).collect();
    assert!(refused(&w));
    // Answering one makes room for exactly one.
    w.phone.authenticator_mut().user().present(thumb());
    let a = w.phone.authorize(&flood[0].to_cbor()).unwrap();
    w.server.verify_payment(&a).unwrap();
    w.challenge("room", 100);
    assert!(refused(&w));
    // Expiry makes room again; a purge then forgets the expired ones (the
    // registration challenge, the three of the flood and "room").
    w.clock.set(flood[1].expires_at + 1);
    for i in 0..3 {
        w.challenge(&format!("after-{i}"), 100);
    }
    assert!(refused(&w));
    assert_eq!(w.server.purge_expired_challenges().unwrap(), 5);
    assert!(refused(&w));
}
