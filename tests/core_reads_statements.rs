//! What core reads from a statement for the relying party that decides on it
//! (issue #13 §2: the server parses no statement itself). The attacker holds
//! captured statements, forges signatures, or sends garbage; core must name
//! the credential a statement claims only as far as it decoded it, never
//! treat that name as verified, and decide every statement exactly as the
//! one-call verification would.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use biopay::{cose, crypto, store::DecisionKind, *};
use common::*;
use coset::{CoseSign1, TaggedCborSerializable};
use p256::ecdsa::{signature::Signer, Signature, SigningKey};

fn attacker_key() -> SigningKey {
    SigningKey::from_slice(&crypto::sha256(b"attacker")).unwrap()
}

#[test]
fn a_replayed_registration_is_decided_at_r8_and_names_the_credential_it_claims() {
    let mut w = World::new();
    let bytes = w.attestation(b"account-9", &[Modality::Fingerprint]);
    let first = w.server.verify_any_registration(&bytes);
    assert_eq!(first.kind, DecisionKind::Registration);
    let id = first.decision.unwrap().record.credential_id;
    assert_eq!(first.credential_id.as_ref(), Some(&id));
    let replay = w.server.verify_any_registration(&bytes);
    assert_eq!(replay.kind, DecisionKind::Registration);
    assert_eq!(replay.credential_id, Some(id));
    assert_eq!(
        assert_step(replay.decision, Step::R8Challenge),
        Reason::ChallengeAlreadyUsed
    );
}

/// A key attestation whose signature has a DER length (a TEE signs in the
/// fixed form only) is refused at R2 before its payload is looked at, but
/// names its credential for the audit record, as the server's own parse did.
#[test]
fn a_registration_with_a_der_length_signature_is_refused_at_r2_and_still_names_its_credential() {
    let mut w = World::new();
    let bytes = w.attestation(b"account-9", &[Modality::Fingerprint]);
    let mut s = CoseSign1::from_tagged_slice(&bytes).unwrap();
    let claimed = KeyAttestation::from_cbor(s.payload.as_ref().unwrap())
        .unwrap()
        .credential_id;
    s.signature = vec![0x30; 70];
    let bad = s.to_tagged_vec().unwrap();
    let outcome = w.server.verify_any_registration(&bad);
    assert_eq!(outcome.kind, DecisionKind::Registration);
    assert_eq!(outcome.credential_id, Some(claimed));
    assert_eq!(
        assert_step(outcome.decision, Step::R2Header),
        Reason::Statement(cose::CoseError::SignatureLength)
    );
    assert_step(w.server.verify_registration(&bad), Step::R2Header);
}

#[test]
fn garbage_sent_as_a_registration_names_nothing_and_is_decided_at_r1() {
    let w = World::new();
    for garbage in [
        &b""[..],
        b"\x00",
        b"\xd2\x84\x40\xa0\xf6\x40",
        b"not cbor at all",
    ] {
        let outcome = w.server.verify_any_registration(garbage);
        assert_eq!(outcome.kind, DecisionKind::Registration);
        assert_eq!(outcome.credential_id, None);
        assert_step(outcome.decision, Step::R1Statement);
    }
}

/// Someone without the credential key signs a payment naming a victim's
/// credential: core names the victim (the name is unverified: it is what
/// the lockout check is keyed on) and refuses the statement at P5.
#[test]
fn a_payment_forged_for_a_victims_credential_is_opened_naming_the_victim_and_refused_at_p5() {
    let mut w = World::new();
    let (c, a) = w.assertion("o1");
    let mut s = CoseSign1::from_tagged_slice(&a).unwrap();
    let sig: Signature = attacker_key().sign(&s.tbs_data(b""));
    s.signature = sig.to_bytes().to_vec();
    let forged = s.to_tagged_vec().unwrap();
    let opened = w.server.open_payment(&forged).unwrap();
    assert_eq!(opened.credential_id(), &w.cred.credential_id);
    assert_eq!(opened.statement(), &forged[..]);
    assert_eq!(
        assert_step(
            w.server.verify_opened_payment(opened, None),
            Step::P5Signature
        ),
        Reason::BadSignature
    );
    assert!(w.unused(&c.challenge));
}

#[test]
fn an_opened_payment_is_decided_once_and_its_replay_is_refused_at_p9() {
    let mut w = World::new();
    let (c, a) = w.assertion("o1");
    let opened = w.server.open_payment(&a).unwrap();
    let ok = w.server.verify_opened_payment(opened, None).unwrap();
    assert_eq!(ok.credential_id, w.cred.credential_id);
    assert!(!w.unused(&c.challenge));
    let again = w.server.open_payment(&a).unwrap();
    assert_eq!(
        assert_step(
            w.server.verify_opened_payment(again, None),
            Step::P9Challenge
        ),
        Reason::ChallengeAlreadyUsed
    );
}

#[test]
fn a_statement_that_is_not_a_payment_is_not_opened_and_names_nothing() {
    let mut w = World::new();
    assert_step(w.server.open_payment(b"\x00"), Step::P1Statement);
    // A key attestation carries an x5chain: a header a payment may not have.
    let att = w.attestation(b"account-9", &[Modality::Fingerprint]);
    assert_step(w.server.open_payment(&att), Step::P2Header);
    // A deregistration is a well-formed statement of another kind.
    let d = w.phone.deregister(&w.cred.credential_id.clone()).unwrap();
    assert_step(w.server.open_payment(&d), Step::P3Payload);
    let opened = w.server.open_deregistration(&d).unwrap();
    assert_eq!(opened.credential_id(), &w.cred.credential_id);
    assert_eq!(
        w.server.verify_opened_deregistration(opened).unwrap(),
        w.cred.credential_id
    );
    assert_eq!(w.stored().status, CredentialStatus::Deregistered);
}
