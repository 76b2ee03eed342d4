//! Apple App Attest credentials end to end (docs/PROTOCOL.md §13.8, §13.9)
//! on `SimulatedAppAttest` with a software P-256 key standing in for the
//! Secure Enclave: registration K1–K13 (with I1–I10 over the binding),
//! payments with and without an App Attest assertion, the Apple amount cap,
//! the assertion-above-amount rule, and every attack the brief names:
//! another app's attestation, an attestation bound to another challenge,
//! credential or key, a replayed assertion, an assertion over another
//! statement.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use biopay::{
    apple::{binding_client_data_hash, AppAttestEnvironment, AppAttestError, AppleTrust},
    crypto::sha256,
    simulator::{AppAttestKey, AttestationFaults, SimulatedAppAttest},
    store::CredentialKind,
    *,
};
use p256::ecdsa::{signature::Signer, Signature, SigningKey};
use std::sync::Arc;

const RP: &str = "pay.example.com";
const APP: &str = "TEAM123456.com.example.pay";
const NOW: u64 = 1_790_000_000;
type Server = Verifier<MemoryStore, Arc<ManualClock>, SystemRandom>;

/// The Secure Enclave stand-in: a software P-256 key, DER signatures (what
/// `SecKeyCreateSignature` returns).
struct SoftEnclave(SigningKey);

impl SoftEnclave {
    fn new(seed: u8) -> Self {
        Self(SigningKey::from_slice(&[seed; 32]).unwrap())
    }
    fn public_key(&self) -> Vec<u8> {
        self.0
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec()
    }
}

impl PlatformKeystoreSigner for SoftEnclave {
    fn attestation_chain(&self) -> Result<Vec<Vec<u8>>, DeviceError> {
        Ok(Vec::new())
    }
    fn sign(&self, data: &[u8]) -> Result<Vec<u8>, DeviceError> {
        let sig: Signature = self.0.sign(data);
        Ok(sig.to_der().as_bytes().to_vec())
    }
}

type App = PlatformKeystoreClient<SoftEnclave, Arc<ManualClock>>;

struct Setup {
    clock: Arc<ManualClock>,
    server: Server,
    service: SimulatedAppAttest,
}

fn setup_policy(policy: Policy) -> Setup {
    let service = SimulatedAppAttest::new(APP, AppAttestEnvironment::Production).unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let server = Verifier::new(
        RP,
        TrustConfig::new(),
        policy,
        MemoryStore::new(),
        clock.clone(),
        SystemRandom::new(),
    )
    .unwrap()
    .with_apple(
        AppleTrust::new(vec![APP.into()], AppAttestEnvironment::Production)
            .with_anchors(vec![service.trust_anchor().unwrap()]),
    );
    Setup {
        clock,
        server,
        service,
    }
}

fn setup() -> Setup {
    setup_policy(Policy::default())
}

/// An app whose credential id is for `account-1` (the account of every
/// registration here, §4.1.9).
fn app(seed: u8, clock: &Arc<ManualClock>) -> App {
    let prefix = routing::credential_id_prefix(RP, b"account-1");
    PlatformKeystoreClient::new(
        RP,
        SoftEnclave::new(seed),
        clock.clone(),
        routing::prefixed_credential_id(prefix, &[seed; 32]).unwrap(),
        &[Modality::Face],
        [seed; 32],
    )
}

fn challenge(s: &Setup) -> Vec<u8> {
    s.server
        .registration_challenge(b"account-1", &[Modality::Face], SecurityLevel::Tee)
        .unwrap()
        .to_cbor()
}

/// The honest registration: the app asks for the binding hash, App Attest
/// attests its key with it, the Secure Enclave key signs the registration.
fn registration(s: &Setup, app: &mut App, key: &AppAttestKey, challenge: &[u8]) -> Vec<u8> {
    let pk = app.signer().public_key();
    let hash = app.apple_client_data_hash(challenge, &pk).unwrap();
    let object = s.service.attest_key(key, &hash).unwrap();
    app.register_apple(challenge, &pk, key.key_id(), object)
        .unwrap()
}

fn registered(s: &Setup, seed: u8) -> (App, AppAttestKey) {
    let mut a = app(seed, &s.clock);
    let key = s.service.generate_key().unwrap();
    let c = challenge(s);
    let reg = registration(s, &mut a, &key, &c);
    s.server.verify_apple_registration(&reg).unwrap();
    (a, key)
}

fn usd(amount: u64) -> Transaction {
    Transaction {
        amount_minor: amount,
        currency: "USD".into(),
        payee_id: "m-1".into(),
        payee_name: "Corner Shop".into(),
        order_id: "r-1".into(),
        memo: None,
    }
}

fn pay(s: &Setup, a: &mut App, amount: u64) -> Vec<u8> {
    let tx = usd(amount);
    let c = s
        .server
        .payment_challenge(&a.state().credential_id, tx)
        .unwrap();
    a.authorize(&c.to_cbor(), Modality::Face).unwrap()
}

fn refused(r: Result<impl std::fmt::Debug, Rejection>) -> Rejection {
    r.expect_err("must be refused")
}

#[test]
fn honest_registration_records_an_apple_credential_with_its_app_attest_key() {
    let s = setup();
    let mut a = app(1, &s.clock);
    let key = s.service.generate_key().unwrap();
    let c = challenge(&s);
    let reg = registration(&s, &mut a, &key, &c);
    let rec = s.server.verify_apple_registration(&reg).unwrap().record;
    assert_eq!(rec.kind, CredentialKind::AppleAppAttest);
    assert_eq!(rec.device_model, APPLE_APP_ATTEST_MODEL);
    assert_eq!(rec.security_level, SecurityLevel::Tee);
    assert_eq!(rec.public_key, a.signer().public_key());
    let k = rec.app_attest.unwrap();
    assert_eq!(k.key_id, key.key_id());
    assert_eq!(k.public_key, key.public_key());
    assert_eq!((k.app_id.as_str(), k.counter), (APP, 0));
    assert_eq!(k.environment, AppAttestEnvironment::Production);
    assert!(!k.receipt.is_empty(), "the receipt is stored");
    // The same statement again: its challenge is consumed.
    let again = refused(s.server.verify_apple_registration(&reg));
    assert_eq!(again.step, Step::K7Challenge);
}

#[test]
fn credential_id_placed_on_another_accounts_shard_is_refused_at_k12() {
    // The app (which forms an iOS credential's id) puts another slot in
    // front of the id, to land the credential on a shard its account is not
    // on (§4.1.9). It rewrites the challenge it hands the SDK so that the
    // SDK's own check passes; App Attest binds the real challenge value, the
    // key and that id, so I1–I10 pass and K12 is what stops it.
    let s = setup();
    let c = challenge(&s);
    let issued = RegistrationChallenge::from_cbor(&c).unwrap();
    let other = routing::credential_id_prefix(RP, b"account-of-someone-else");
    let flipped = [
        issued.credential_id_prefix[0],
        issued.credential_id_prefix[1] ^ 1,
    ];
    for (seed, prefix) in [(7u8, other), (8u8, flipped)] {
        assert_ne!(prefix, issued.credential_id_prefix);
        let mut a = PlatformKeystoreClient::new(
            RP,
            SoftEnclave::new(seed),
            s.clock.clone(),
            routing::prefixed_credential_id(prefix, &[seed; 32]).unwrap(),
            &[Modality::Face],
            [seed; 32],
        );
        let mut forged = issued.clone();
        forged.credential_id_prefix = prefix;
        let key = s.service.generate_key().unwrap();
        let reg = registration(&s, &mut a, &key, &forged.to_cbor());
        let r = refused(s.server.verify_apple_registration(&reg));
        assert_eq!(
            (r.step, r.reason),
            (Step::K12CredentialId, Reason::CredentialIdPrefixMismatch)
        );
        assert!(s
            .server
            .store()
            .credential(&a.state().credential_id)
            .unwrap()
            .is_none());
    }
    // The challenge survives, and an honest id registers with it.
    let mut a = app(1, &s.clock);
    let key = s.service.generate_key().unwrap();
    let reg = registration(&s, &mut a, &key, &c);
    let rec = s.server.verify_apple_registration(&reg).unwrap().record;
    assert_eq!(
        credential_slot(&rec.credential_id),
        account_slot(RP, b"account-1")
    );
}

#[test]
fn another_apps_attestation_is_refused_at_i6() {
    let s = setup();
    let mut a = app(1, &s.clock);
    let key = s.service.generate_key().unwrap();
    let c = challenge(&s);
    let pk = a.signer().public_key();
    let hash = a.apple_client_data_hash(&c, &pk).unwrap();
    let faults = AttestationFaults {
        app_id: Some("OTHERTEAM1.com.example.other".into()),
        ..Default::default()
    };
    let object = s
        .service
        .danger_attest_key_with(&key, &hash, &faults)
        .unwrap();
    let reg = a.register_apple(&c, &pk, key.key_id(), object).unwrap();
    let r = refused(s.server.verify_apple_registration(&reg));
    assert_eq!(r.step, Step::I6AppId);
    assert_eq!(r.reason, Reason::AppAttest(AppAttestError::AppIdNotAllowed));
    // Nothing stored, the challenge still usable.
    let c2 = biopay::RegistrationChallenge::from_cbor(&c).unwrap();
    assert!(s
        .server
        .store()
        .challenge(&c2.challenge)
        .unwrap()
        .is_some_and(|e| !e.consumed));
}

#[test]
fn an_attestation_bound_to_another_challenge_is_refused_at_i3() {
    let s = setup();
    let mut a = app(1, &s.clock);
    let key = s.service.generate_key().unwrap();
    let first = challenge(&s);
    let second = challenge(&s);
    let pk = a.signer().public_key();
    // Attested for the first challenge, sent with the second.
    let hash = a.apple_client_data_hash(&first, &pk).unwrap();
    let object = s.service.attest_key(&key, &hash).unwrap();
    let reg = a
        .register_apple(&second, &pk, key.key_id(), object)
        .unwrap();
    let r = refused(s.server.verify_apple_registration(&reg));
    assert_eq!(r.step, Step::I3Nonce);
    assert_eq!(r.reason, Reason::AppAttest(AppAttestError::NonceMismatch));
}

#[test]
fn an_attestation_bound_to_another_secure_enclave_key_is_refused_at_i3() {
    // The attacker holds their own key and replays the victim's attestation.
    let s = setup();
    let victim = app(1, &s.clock);
    let mut attacker = PlatformKeystoreClient::new(
        RP,
        SoftEnclave::new(66),
        s.clock.clone(),
        victim.state().credential_id.clone(),
        &[Modality::Face],
        [1; 32],
    );
    let key = s.service.generate_key().unwrap();
    let c = challenge(&s);
    let hash = victim
        .apple_client_data_hash(&c, &victim.signer().public_key())
        .unwrap();
    let object = s.service.attest_key(&key, &hash).unwrap();
    let pk = attacker.signer().public_key();
    let reg = attacker
        .register_apple(&c, &pk, key.key_id(), object)
        .unwrap();
    let r = refused(s.server.verify_apple_registration(&reg));
    assert_eq!(r.step, Step::I3Nonce);
}

#[test]
fn an_attestation_bound_to_another_credential_id_is_refused_at_i3() {
    let s = setup();
    let mut a = app(1, &s.clock);
    let other = app(2, &s.clock);
    let key = s.service.generate_key().unwrap();
    let c = challenge(&s);
    let pk = a.signer().public_key();
    // The binding of the same key under credential id 2.
    let cc = biopay::RegistrationChallenge::from_cbor(&c).unwrap();
    let hash =
        binding_client_data_hash(&cc.challenge, RP, &pk, &other.state().credential_id).unwrap();
    let object = s.service.attest_key(&key, &hash).unwrap();
    let reg = a.register_apple(&c, &pk, key.key_id(), object).unwrap();
    assert_eq!(
        refused(s.server.verify_apple_registration(&reg)).step,
        Step::I3Nonce
    );
}

#[test]
fn a_registration_not_signed_by_the_key_it_carries_is_refused_at_k5() {
    let s = setup();
    let mut a = app(1, &s.clock);
    let key = s.service.generate_key().unwrap();
    let c = challenge(&s);
    // The binding and attestation name key 77's public key, but key 1 signs.
    let claimed = SoftEnclave::new(77).public_key();
    let hash = a.apple_client_data_hash(&c, &claimed).unwrap();
    let object = s.service.attest_key(&key, &hash).unwrap();
    let reg = a
        .register_apple(&c, &claimed, key.key_id(), object)
        .unwrap();
    let r = refused(s.server.verify_apple_registration(&reg));
    assert_eq!(
        (r.step, r.reason),
        (Step::K5Signature, Reason::BadSignature)
    );
}

#[test]
fn a_wrong_key_id_is_refused_at_i4_and_development_attestations_at_i8() {
    let s = setup();
    let mut a = app(1, &s.clock);
    let key = s.service.generate_key().unwrap();
    let c = challenge(&s);
    let pk = a.signer().public_key();
    let hash = a.apple_client_data_hash(&c, &pk).unwrap();
    let object = s.service.attest_key(&key, &hash).unwrap();
    let reg = a.register_apple(&c, &pk, [0; 32], object).unwrap();
    assert_eq!(
        refused(s.server.verify_apple_registration(&reg)).step,
        Step::I4KeyId
    );
    let faults = AttestationFaults {
        aaguid: Some(AppAttestEnvironment::Development.aaguid()),
        ..Default::default()
    };
    let object = s
        .service
        .danger_attest_key_with(&key, &hash, &faults)
        .unwrap();
    let reg = a.register_apple(&c, &pk, key.key_id(), object).unwrap();
    assert_eq!(
        refused(s.server.verify_apple_registration(&reg)).step,
        Step::I8Aaguid
    );
}

#[test]
fn without_apple_trust_or_with_a_strongbox_challenge_nothing_registers() {
    let s = setup();
    s.server.set_apple(None);
    let mut a = app(1, &s.clock);
    let key = s.service.generate_key().unwrap();
    let c = challenge(&s);
    let reg = registration(&s, &mut a, &key, &c);
    assert_eq!(
        refused(s.server.verify_apple_registration(&reg)).step,
        Step::K4Platform
    );
    let s = setup();
    let c = s
        .server
        .registration_challenge(b"account-1", &[Modality::Face], SecurityLevel::StrongBox)
        .unwrap()
        .to_cbor();
    let mut a = app(1, &s.clock);
    let reg = registration(&s, &mut a, &key, &c);
    let r = refused(s.server.verify_apple_registration(&reg));
    assert_eq!(
        (r.step, r.reason),
        (Step::K11SecurityLevel, Reason::InsufficientSecurityLevel)
    );
}

#[test]
fn a_small_payment_needs_no_assertion_and_a_large_one_does() {
    let s = setup();
    let (mut a, mut key) = registered(&s, 1);
    // USD 20.00: at the default threshold, no assertion needed.
    let st = pay(&s, &mut a, 2_000);
    s.server.verify_payment(&st).unwrap();
    // USD 20.01 without an assertion: refused at P17, not counted.
    let st = pay(&s, &mut a, 2_001);
    let r = refused(s.server.verify_payment(&st));
    assert_eq!(r.step, Step::P17Policy);
    assert!(matches!(
        r.reason,
        Reason::AppAttestAssertionRequired { .. }
    ));
    assert!(!r.counts_toward_lockout());
    // With an assertion over the statement: approved, App Attest counter stored.
    let assertion = s
        .service
        .generate_assertion(&mut key, &sha256(&st))
        .unwrap();
    s.server
        .verify_payment_with_app_attest(&st, Some(&assertion))
        .unwrap();
    let id = a.state().credential_id.clone();
    let rec = s.server.store().credential(&id).unwrap().unwrap();
    assert_eq!(rec.app_attest.unwrap().counter, 1);
}

#[test]
fn an_assertion_over_another_statement_is_refused_at_j2() {
    let s = setup();
    let (mut a, mut key) = registered(&s, 1);
    let first = pay(&s, &mut a, 5_000);
    let assertion = s
        .service
        .generate_assertion(&mut key, &sha256(&first))
        .unwrap();
    let second = pay(&s, &mut a, 5_000);
    let r = refused(
        s.server
            .verify_payment_with_app_attest(&second, Some(&assertion)),
    );
    assert_eq!(
        (r.step, r.reason.clone()),
        (Step::J2Signature, Reason::BadSignature)
    );
    assert!(!r.counts_toward_lockout());
}

#[test]
fn a_replayed_assertion_counter_is_refused_at_j4() {
    let s = setup();
    let (mut a, mut key) = registered(&s, 1);
    let st = pay(&s, &mut a, 5_000);
    let assertion = s
        .service
        .generate_assertion(&mut key, &sha256(&st))
        .unwrap();
    s.server
        .verify_payment_with_app_attest(&st, Some(&assertion))
        .unwrap();
    // A genuine signature over a new statement, but with the used counter 1.
    let st = pay(&s, &mut a, 5_000);
    let stale = s
        .service
        .danger_assertion_with(&key, &sha256(&st), 1, APP)
        .unwrap();
    let r = refused(s.server.verify_payment_with_app_attest(&st, Some(&stale)));
    assert_eq!(r.step, Step::J4Counter);
    assert_eq!(
        r.reason,
        Reason::CounterNotIncreased {
            stored: 1,
            received: 1
        }
    );
    // The payment challenge was not consumed: the honest retry passes.
    let fresh = s
        .service
        .generate_assertion(&mut key, &sha256(&st))
        .unwrap();
    s.server
        .verify_payment_with_app_attest(&st, Some(&fresh))
        .unwrap();
}

#[test]
fn an_assertion_of_another_app_is_refused_at_j3() {
    let s = setup();
    let (mut a, key) = registered(&s, 1);
    let st = pay(&s, &mut a, 5_000);
    let other = s
        .service
        .danger_assertion_with(&key, &sha256(&st), 1, "OTHERTEAM1.com.example.other")
        .unwrap();
    assert_eq!(
        refused(s.server.verify_payment_with_app_attest(&st, Some(&other))).step,
        Step::J3AppId
    );
}

#[test]
fn the_apple_amount_cap_applies_even_with_an_assertion() {
    let s = setup();
    let (mut a, mut key) = registered(&s, 1);
    let st = pay(&s, &mut a, 10_001);
    let assertion = s
        .service
        .generate_assertion(&mut key, &sha256(&st))
        .unwrap();
    let r = refused(
        s.server
            .verify_payment_with_app_attest(&st, Some(&assertion)),
    );
    assert_eq!(r.step, Step::P17Policy);
    assert!(matches!(
        r.reason,
        Reason::PlatformKeystoreLimit {
            max: Some(10_000),
            ..
        }
    ));
}

#[test]
fn removing_the_app_id_from_the_trust_stops_payments_at_p7() {
    let s = setup();
    let (mut a, _) = registered(&s, 1);
    let st = pay(&s, &mut a, 100);
    s.server.set_apple(Some(
        AppleTrust::new(vec!["OTHER.app".into()], AppAttestEnvironment::Production)
            .with_anchors(vec![s.service.trust_anchor().unwrap()]),
    ));
    let r = refused(s.server.verify_payment(&st));
    assert_eq!(
        (r.step, r.reason),
        (Step::P7DeviceModel, Reason::PlatformNotTrusted)
    );
}

#[test]
fn deregistration_stops_payments_as_for_the_platform_path() {
    let s = setup();
    let (mut a, _) = registered(&s, 1);
    let d = a.deregister_durably(|_| Ok(())).unwrap();
    let id = s.server.verify_deregistration(&d).unwrap();
    let rec = s.server.store().credential(&id).unwrap().unwrap();
    assert_eq!(rec.status, CredentialStatus::Deregistered);
    // Payments stop.
    let tx = usd(100);
    assert!(s.server.payment_challenge(&id, tx).is_err());
}

#[test]
fn an_app_attest_assertion_sent_with_a_tee_credential_is_refused_at_j1_not_ignored() {
    // A TEE credential has no App Attest key: an assertion beside its
    // statement is refused, and the payment stays payable without it.
    let mut w = common::World::new();
    let (c, st) = w.assertion("o1");
    let service = SimulatedAppAttest::new(APP, AppAttestEnvironment::Production).unwrap();
    let mut key = service.generate_key().unwrap();
    let asr = service.generate_assertion(&mut key, &sha256(&st)).unwrap();
    let r = refused(w.server.verify_payment_with_app_attest(&st, Some(&asr)));
    assert_eq!(r.step, Step::J1AssertionObject);
    assert!(w.unused(&c.challenge));
    w.server.verify_payment(&st).unwrap();
}

#[test]
fn a_currency_without_an_apple_cap_cannot_be_paid() {
    let mut policy = Policy::default();
    policy.apple_max_amount.remove("USD");
    let s = setup_policy(policy);
    let (mut a, mut key) = registered(&s, 1);
    let st = pay(&s, &mut a, 100);
    let asr = s
        .service
        .generate_assertion(&mut key, &sha256(&st))
        .unwrap();
    let r = refused(s.server.verify_payment_with_app_attest(&st, Some(&asr)));
    assert_eq!(r.step, Step::P17Policy);
    assert!(matches!(
        r.reason,
        Reason::PlatformKeystoreLimit { max: None, .. }
    ));
}
