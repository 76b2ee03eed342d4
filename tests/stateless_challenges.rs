//! Self-authenticating payment challenges (docs/PROTOCOL.md §6.1.3, §6.4
//! P9–P11, §7.1): the attacks a stored challenge stopped, each asserted to
//! be stopped by the MAC, the expiry or the spent-challenge entry the
//! accepting commit inserts, at the step the spec names, without changing
//! stored state. "Processes" are verifiers sharing one store and key set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use biopay::{
    crypto,
    messages::CHALLENGE_LEN,
    simulator::*,
    store::{Decision, DecisionKind, IssuedChallenge},
    verifier::ChallengeKeys,
    *,
};
use common::{assert_step, payload, thumb, tx, MODEL, NOW, RP};
use std::sync::Arc;

type Shared = Arc<MemoryStore>;
type Process = Verifier<Shared, Arc<ManualClock>, SystemRandom>;

const KEY_1: [u8; 32] = [0x11; 32];
const KEY_2: [u8; 32] = [0x22; 32];

fn keys() -> ChallengeKeys {
    ChallengeKeys::new(1, &KEY_1)
}

struct World {
    clock: Arc<ManualClock>,
    pki: VendorPki,
    store: Shared,
    server: Process,
    phone: Client<SoftwareTee, Arc<ManualClock>>,
    cred: CredentialRecord,
    _dir: tempfile::TempDir,
}

impl World {
    fn new() -> Self {
        Self::with(Policy::default())
    }

    fn with(policy: Policy) -> Self {
        let clock = Arc::new(ManualClock::new(NOW));
        let pki = VendorPki::new("Acme Devices", b"test vendor").unwrap();
        let store: Shared = Arc::new(MemoryStore::new());
        let dir = tempfile::tempdir().unwrap();
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
        let phone = Client::new(RP, tee, clock.clone());
        let server = process(&pki, &store, &clock, policy, keys());
        let mut w = Self {
            clock,
            pki,
            store,
            server,
            phone,
            cred: placeholder(),
            _dir: dir,
        };
        w.cred = w.register(b"account-7");
        w
    }

    /// Another process on the same store with `keys`.
    fn process(&self, keys: ChallengeKeys) -> Process {
        process(
            &self.pki,
            &self.store,
            &self.clock,
            self.server.policy().clone(),
            keys,
        )
    }

    fn register(&mut self, account: &[u8]) -> CredentialRecord {
        let m = [Modality::Fingerprint, Modality::Face];
        let c = self
            .server
            .registration_challenge(account, &m, SecurityLevel::Tee)
            .unwrap();
        self.phone.authenticator_mut().user().present(thumb());
        let bytes = self.phone.register(&c.to_cbor(), &m).unwrap();
        self.server.verify_registration(&bytes).unwrap().record
    }

    fn challenge(&self, order: &str) -> PaymentChallenge {
        self.server
            .payment_challenge(&self.cred.credential_id, tx(order, 8800))
            .unwrap()
    }

    fn sign(&mut self, c: &PaymentChallenge) -> Vec<u8> {
        self.phone.authenticator_mut().user().present(thumb());
        self.phone.authorize(&c.to_cbor()).unwrap()
    }

    /// Re-signs `statement`'s payload, changed by `f`, with credential `id`'s
    /// genuine key (a compromised app driving the key).
    fn resign(
        &mut self,
        statement: &[u8],
        id: &CredentialId,
        f: impl FnOnce(&mut PaymentAssertion),
    ) -> Vec<u8> {
        let mut a = PaymentAssertion::from_cbor(&payload(statement)).unwrap();
        f(&mut a);
        self.phone
            .authenticator_mut()
            .danger_sign_with_credential(RP, id, a.to_cbor())
            .unwrap()
    }

    fn stored(&self) -> CredentialRecord {
        self.store
            .credential(&self.cred.credential_id)
            .unwrap()
            .unwrap()
    }
}

fn process(
    pki: &VendorPki,
    store: &Shared,
    clock: &Arc<ManualClock>,
    policy: Policy,
    keys: ChallengeKeys,
) -> Process {
    let trust = TrustConfig::new().with_model(pki.device_model(
        MODEL,
        &[Modality::Fingerprint, Modality::Face],
        SecurityLevel::Tee,
    ));
    Verifier::new(
        RP,
        trust,
        policy,
        store.clone(),
        clock.clone(),
        SystemRandom::new(),
    )
    .unwrap()
    .with_challenge_keys(keys)
}

fn placeholder() -> CredentialRecord {
    CredentialRecord {
        credential_id: CredentialId::new(vec![0; 16]).unwrap(),
        rp_id: String::new(),
        account_handle: Vec::new(),
        public_key: Vec::new(),
        modalities: Vec::new(),
        enrollment_epoch: [0; 32],
        security_level: SecurityLevel::Tee,
        kind: CredentialKind::TeeAttested,
        device_model: String::new(),
        counter: 0,
        status: CredentialStatus::Active,
        registered_at: 0,
        app_attest: None,
    }
}

#[test]
fn issuing_a_payment_challenge_stores_nothing_and_a_genuine_answer_is_accepted() {
    let mut w = World::new();
    let c = w.challenge("o1");
    assert_eq!(w.store.challenge(&c.challenge).unwrap(), None);
    let a = w.sign(&c);
    let ok = w
        .server
        .verify_payment_for(&a, &c.transaction, None)
        .unwrap();
    assert_eq!(ok.transaction, c.transaction);
    assert_eq!(w.stored().counter, ok.counter);
    assert!(w.store.challenge_spent(&c.challenge).unwrap());
    assert_eq!(w.store.decisions().len(), 2, "registration and payment");
}

#[test]
fn forged_challenge_with_any_bit_flipped_is_rejected_at_p9() {
    let mut w = World::new();
    let c = w.challenge("o1");
    let genuine = w.sign(&c);
    let id = w.cred.credential_id.clone();
    let before = w.stored();
    // Every byte: key id, expiry, counter at issue, nonce and the MAC itself.
    for i in 0..CHALLENGE_LEN {
        for bit in (0..8).map(|b| 1u8 << b) {
            let forged = w.resign(&genuine, &id, |a| a.challenge[i] ^= bit);
            assert_eq!(
                assert_step(
                    w.server.verify_payment_for(&forged, &c.transaction, None),
                    Step::P9Challenge
                ),
                Reason::ChallengeNotAuthentic,
                "byte {i} bit {bit:#x}"
            );
        }
    }
    assert_eq!(w.stored(), before, "forgeries change nothing");
    assert!(!w.store.challenge_spent(&c.challenge).unwrap());
    w.server
        .verify_payment_for(&genuine, &c.transaction, None)
        .unwrap();
}

#[test]
fn challenge_verified_for_another_transaction_is_rejected_at_p9() {
    let mut w = World::new();
    let c = w.challenge("o1");
    let a = w.sign(&c);
    let mut other = c.transaction.clone();
    other.amount_minor += 1;
    assert_eq!(
        assert_step(
            w.server.verify_payment_for(&a, &other, None),
            Step::P9Challenge
        ),
        Reason::ChallengeNotAuthentic
    );
}

#[test]
fn amount_changed_by_a_malicious_app_is_still_p12_and_counts_toward_lockout() {
    let mut w = World::new();
    let c = w.challenge("o1");
    w.phone.authenticator_mut().user().present(thumb());
    let mut app = TamperingApp::new(w.phone.authenticator_mut(), |t: &mut Transaction| {
        t.amount_minor = 880_000
    });
    let tampered = app.get_assertion(&c).unwrap();
    drop(app);
    let r = w
        .server
        .verify_payment_for(&tampered, &c.transaction, None)
        .unwrap_err();
    assert_eq!(r.step, Step::P12TransactionHash, "{r}");
    assert_eq!(r.reason, Reason::TransactionMismatch);
    assert!(r.counts_toward_lockout());
    assert!(!w.store.challenge_spent(&c.challenge).unwrap());
}

#[test]
fn challenge_issued_for_credential_a_used_by_credential_b_is_rejected() {
    let mut w = World::new();
    // B: a second credential of the same account, on the same phone.
    let b = w.register(b"account-7");
    let c = w.challenge("o1");
    let a = w.sign(&c);
    let by_b = w.resign(&a, &b.credential_id, |p| {
        p.credential_id = b.credential_id.clone();
        p.counter = 1_000;
    });
    assert_eq!(
        assert_step(
            w.server.verify_payment_for(&by_b, &c.transaction, None),
            Step::P9Challenge
        ),
        Reason::ChallengeNotAuthentic
    );
    assert_eq!(w.store.credential(&b.credential_id).unwrap().unwrap(), b);
}

#[test]
fn challenge_issued_at_rp_x_used_at_rp_y_is_rejected_even_with_a_shared_key() {
    let mut w = World::new();
    let c = w.challenge("o1");
    let a = w.sign(&c);
    // rp Y: same key set, its own store holding the same credential (as if
    // registered there too).
    let y_store: Shared = Arc::new(MemoryStore::new());
    let y = "shop.example.org";
    let rc = RegistrationChallenge {
        rp_id: y.into(),
        account_handle: w.cred.account_handle.clone(),
        challenge: [7; 32],
        issued_at: NOW,
        expires_at: NOW + 60,
        accepted_modalities: vec![Modality::Fingerprint],
        required_assurance: SecurityLevel::Tee,
        credential_id_prefix: biopay_core::routing::credential_id_prefix(y, &w.cred.account_handle),
    };
    y_store
        .insert_challenge(IssuedChallenge::Registration(rc), None)
        .unwrap();
    let mut record = w.cred.clone();
    record.rp_id = y.into();
    y_store
        .commit_registration(
            &[7; 32],
            &record,
            &Decision {
                kind: DecisionKind::Registration,
                credential_id: record.credential_id.clone(),
                statement_hash: [0; 32],
                at: NOW,
            },
        )
        .unwrap();
    let trust = TrustConfig::new().with_model(w.pki.device_model(
        MODEL,
        &[Modality::Fingerprint, Modality::Face],
        SecurityLevel::Tee,
    ));
    let at_y = Verifier::new(
        y,
        trust,
        Policy::default(),
        y_store.clone(),
        w.clock.clone(),
        SystemRandom::new(),
    )
    .unwrap()
    .with_challenge_keys(keys());
    let id = w.cred.credential_id.clone();
    let for_y = w.resign(&a, &id, |p| p.rp_id_hash = crypto::sha256(y.as_bytes()));
    assert_eq!(
        assert_step(
            at_y.verify_payment_for(&for_y, &c.transaction, None),
            Step::P9Challenge
        ),
        Reason::ChallengeNotAuthentic
    );
    assert!(!y_store.challenge_spent(&c.challenge).unwrap());
}

#[test]
fn expired_challenge_is_rejected_at_p10() {
    let mut w = World::new();
    let c = w.challenge("o1");
    let a = w.sign(&c);
    w.clock.set(c.expires_at + 1);
    assert!(matches!(
        assert_step(
            w.server.verify_payment_for(&a, &c.transaction, None),
            Step::P10ChallengeExpiry
        ),
        Reason::ChallengeExpired { .. }
    ));
}

#[test]
fn replay_after_acceptance_is_rejected_and_changes_nothing() {
    let mut w = World::new();
    let c = w.challenge("o1");
    let a = w.sign(&c);
    w.server
        .verify_payment_for(&a, &c.transaction, None)
        .unwrap();
    let before = w.stored();
    assert_eq!(
        assert_step(
            w.server.verify_payment_for(&a, &c.transaction, None),
            Step::P9Challenge
        ),
        Reason::ChallengeAlreadyUsed
    );
    assert_eq!(w.stored(), before, "a replay must not mark the credential");
}

#[test]
fn second_statement_for_a_spent_challenge_is_rejected_at_the_commit() {
    // A compromised app makes the TEE sign the same challenge twice: the
    // second statement's counter is higher, so only the spent entry stops it.
    let mut w = World::new();
    let c = w.challenge("o1");
    let first = w.sign(&c);
    let second = w.sign(&c);
    w.server
        .verify_payment_for(&first, &c.transaction, None)
        .unwrap();
    let before = w.stored();
    assert_eq!(
        assert_step(
            w.server.verify_payment_for(&second, &c.transaction, None),
            Step::P20Commit
        ),
        Reason::ChallengeAlreadyUsed
    );
    assert_eq!(w.stored(), before);
}

#[test]
fn challenge_issued_before_a_restart_verifies_after_it_and_its_replay_does_not() {
    let mut w = World::new();
    let c = w.challenge("o1");
    let a = w.sign(&c);
    // Restart: a new process with the same key set and store.
    w.server = w.process(keys());
    w.server
        .verify_payment_for(&a, &c.transaction, None)
        .unwrap();
    w.server = w.process(keys());
    assert_eq!(
        assert_step(
            w.server.verify_payment_for(&a, &c.transaction, None),
            Step::P9Challenge
        ),
        Reason::ChallengeAlreadyUsed
    );
}

#[test]
fn challenge_issued_by_process_a_is_verified_once_by_process_b() {
    let mut w = World::new();
    let b = w.process(keys());
    let c = w.challenge("o1");
    let first = w.sign(&c);
    let second = w.sign(&c);
    b.verify_payment_for(&first, &c.transaction, None).unwrap();
    // Back at A, a second statement for the same challenge.
    assert_eq!(
        assert_step(
            w.server.verify_payment_for(&second, &c.transaction, None),
            Step::P20Commit
        ),
        Reason::ChallengeAlreadyUsed
    );
}

#[test]
fn rotation_keeps_outstanding_challenges_and_a_dropped_key_verifies_nothing() {
    let mut w = World::new();
    let old = w.challenge("o1");
    let old_a = w.sign(&old);
    let kept = w.challenge("o2");
    let kept_a = w.sign(&kept);
    // Rotate: key 2 MACs, key 1 still verifies.
    w.server = w.process(
        ChallengeKeys::new(2, &KEY_2)
            .with_previous(1, &KEY_1)
            .unwrap(),
    );
    let fresh = w.challenge("o3");
    assert_eq!(fresh.challenge[0], 2, "the current key MACs new challenges");
    w.server
        .verify_payment_for(&kept_a, &kept.transaction, None)
        .unwrap();
    // Key 1 dropped after its challenges expired: one of them, even within a
    // clock that would still accept its expiry, no longer verifies.
    w.server = w.process(ChallengeKeys::new(2, &KEY_2));
    let before = w.stored();
    assert_eq!(
        assert_step(
            w.server.verify_payment_for(&old_a, &old.transaction, None),
            Step::P9Challenge
        ),
        Reason::ChallengeNotAuthentic
    );
    w.clock.set(old.expires_at + 1);
    assert_eq!(
        assert_step(
            w.server.verify_payment_for(&old_a, &old.transaction, None),
            Step::P9Challenge
        ),
        Reason::ChallengeNotAuthentic
    );
    assert_eq!(w.stored(), before);
    // Another rp's key with the same id does not verify either.
    w.clock.set(NOW);
    w.server = w.process(ChallengeKeys::new(1, &[0x33; 32]));
    assert_eq!(
        assert_step(
            w.server.verify_payment_for(&old_a, &old.transaction, None),
            Step::P9Challenge
        ),
        Reason::ChallengeNotAuthentic
    );
}

#[test]
fn a_flood_of_unanswered_payment_challenges_stops_at_the_limit_and_paying_makes_room() {
    let policy = Policy {
        max_challenges_per_account: 3,
        ..Policy::default()
    };
    let mut w = World::with(policy);
    let id = w.cred.credential_id.clone();
    let issued: Vec<_> = (0..3)
        .map(|i| {
            w.server
                .payment_challenge(&id, tx(&format!("f{i}"), 100))
                .unwrap()
        })
        .collect();
    assert!(matches!(
        w.server.payment_challenge(&id, tx("f3", 100)),
        Err(IssueError::TooManyChallenges { max: 3 })
    ));
    // Registration challenges of the account count the same outstanding ones.
    assert!(matches!(
        w.server
            .registration_challenge(b"account-7", &[Modality::Fingerprint], SecurityLevel::Tee),
        Err(IssueError::TooManyChallenges { max: 3 })
    ));
    // Another account is unaffected.
    w.server
        .registration_challenge(b"account-8", &[Modality::Fingerprint], SecurityLevel::Tee)
        .unwrap();
    let a = w.sign(&issued[0]);
    w.server
        .verify_payment_for(&a, &issued[0].transaction, None)
        .unwrap();
    w.server.payment_challenge(&id, tx("f4", 100)).unwrap();
    // Expiry frees the rest.
    w.clock.set(issued[2].expires_at + 1);
    for i in 0..3 {
        w.server
            .payment_challenge(&id, tx(&format!("g{i}"), 100))
            .unwrap();
    }
}

#[test]
fn spent_entries_are_pruned_only_after_expiry_and_skew() {
    let mut w = World::new();
    let c = w.challenge("o1");
    let a = w.sign(&c);
    w.server
        .verify_payment_for(&a, &c.transaction, None)
        .unwrap();
    let skew = w.server.policy().max_clock_skew_secs;
    w.clock.set(c.expires_at + skew);
    w.server.purge_expired_challenges().unwrap();
    assert!(w.store.challenge_spent(&c.challenge).unwrap());
    w.clock.set(c.expires_at + skew + 1);
    w.server.purge_expired_challenges().unwrap();
    assert!(!w.store.challenge_spent(&c.challenge).unwrap());
}

#[test]
fn challenge_bytes_are_the_layout_and_mac_the_spec_describes() {
    // Recomputed here from PROTOCOL.md §6.1.3 with ring directly, not with
    // the verifier's code: an implementation from the spec interoperates.
    let w = World::new();
    let c = w.challenge("o1");
    let b = c.challenge;
    assert_eq!(b[0], 1, "key id");
    assert_eq!(
        b[1..5],
        u32::try_from(c.expires_at).unwrap().to_be_bytes(),
        "expires_at"
    );
    assert_eq!(
        b[5..13],
        w.stored().counter.to_be_bytes(),
        "counter_at_issue"
    );
    let len = |x: &[u8]| u32::try_from(x.len()).unwrap().to_be_bytes();
    let rp = RP.as_bytes();
    let cred = w.cred.credential_id.as_bytes();
    let account = &w.cred.account_handle;
    let display = crypto::sha256(render_transaction(RP, &c.transaction).as_bytes());
    let mut msg = b"biopay v1 payment challenge\0".to_vec();
    assert_eq!(msg.len(), 28);
    for part in [
        &b[..16],
        &len(rp)[..],
        rp,
        &len(cred)[..],
        cred,
        &len(account)[..],
        account,
        &c.transaction.transaction_hash()[..],
        &display[..],
    ] {
        msg.extend_from_slice(part);
    }
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &KEY_1);
    let tag = ring::hmac::sign(&key, &msg);
    assert_eq!(b[16..], tag.as_ref()[..16], "MAC");
}

#[test]
fn a_record_read_by_the_caller_is_used_and_a_stale_one_cannot_accept() {
    let mut w = World::new();
    let c = w.challenge("o1");
    let a = w.sign(&c);
    let id = w.cred.credential_id.clone();
    let stale = w.stored();
    w.store
        .set_credential_status(&id, CredentialStatus::Suspended)
        .unwrap();
    // The caller's record says active: P6 passes on it, the commit refuses.
    assert_eq!(
        assert_step(
            w.server
                .verify_payment_with_record(&a, Some(&c.transaction), None, stale.clone()),
            Step::P20Commit
        ),
        Reason::CredentialNotActive(CredentialStatus::Suspended)
    );
    // Another credential's record is not used: P4 reads.
    let mut other = stale;
    other.credential_id = CredentialId::new(vec![9; 16]).unwrap();
    assert_eq!(
        assert_step(
            w.server
                .verify_payment_with_record(&a, Some(&c.transaction), None, other),
            Step::P6CredentialStatus
        ),
        Reason::CredentialNotActive(CredentialStatus::Suspended)
    );
    assert!(!w.store.challenge_spent(&c.challenge).unwrap());
    w.store
        .set_credential_status(&id, CredentialStatus::Active)
        .unwrap();
    let fresh = w.stored();
    w.server
        .verify_payment_with_record(&a, Some(&c.transaction), None, fresh)
        .unwrap();
}

#[test]
fn challenges_stored_before_the_switch_still_verify_once_after_it() {
    let mut w = World::new();
    // Before the switch: a process without keys stores its challenge.
    let before = Verifier::new(
        RP,
        TrustConfig::new().with_model(w.pki.device_model(
            MODEL,
            &[Modality::Fingerprint, Modality::Face],
            SecurityLevel::Tee,
        )),
        Policy::default(),
        w.store.clone(),
        w.clock.clone(),
        SystemRandom::new(),
    )
    .unwrap();
    let c = before
        .payment_challenge(&w.cred.credential_id, tx("o1", 8800))
        .unwrap();
    assert!(w.store.challenge(&c.challenge).unwrap().is_some());
    let a = w.sign(&c);
    // After: the process with keys verifies it as the stored challenge it is,
    // for the stored transaction only, and once.
    let mut other = c.transaction.clone();
    other.amount_minor += 1;
    assert_eq!(
        assert_step(
            w.server.verify_payment_for(&a, &other, None),
            Step::P9Challenge
        ),
        Reason::ChallengeNotAuthentic
    );
    w.server
        .verify_payment_for(&a, &c.transaction, None)
        .unwrap();
    assert_eq!(
        assert_step(
            w.server.verify_payment_for(&a, &c.transaction, None),
            Step::P9Challenge
        ),
        Reason::ChallengeAlreadyUsed
    );
}
