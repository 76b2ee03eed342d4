//! Fixtures for tests, benchmarks and fuzz targets (feature `testing`; never
//! in production builds): a verifier whose one credential is committed
//! straight into a [`MemoryStore`] without a TEE, and the assertion an honest
//! device makes, signed with a fixed `p256` key. Clock and randomness are
//! deterministic, so every setup issues the same challenges and every run
//! signs the same bytes (ECDSA in `p256` is deterministic, RFC 6979).
#![allow(
    clippy::expect_used,
    reason = "fixtures: a setup that fails must stop the test or benchmark"
)]

use crate::{
    cose,
    crypto::sha256,
    display::render_transaction,
    env::{DangerDeterministicRandom, ManualClock},
    messages::{
        CredentialId, Liveness, Message, Modality, PaymentAssertion, PaymentChallenge,
        SecurityLevel, Transaction,
    },
    store::{
        CredentialKind, CredentialRecord, CredentialStatus, Decision, DecisionKind, MemoryStore,
        Store,
    },
    verifier::{DeviceModel, ModelStatus, Policy, TrustConfig, Verifier},
    x509::TrustAnchor,
};
use p256::ecdsa::{signature::Signer, Signature, SigningKey};
use std::convert::Infallible;

/// The relying party of every fixture.
pub const RP_ID: &str = "pay.example.com";
/// The fixtures' clock, Unix seconds (2026-09-21).
pub const NOW: u64 = 1_790_000_000;
/// The credential's device model.
pub const MODEL: &str = "fixture-model-1";
/// The credential's account handle.
pub const ACCOUNT: &[u8] = b"account-7";
/// The credential's enrollment epoch.
pub const EPOCH: [u8; 32] = [0xE7; 32];
/// The credential's template id in assertions.
pub const TEMPLATE_ID: [u8; 16] = [0x7E; 16];

/// A verifier over the deterministic environment.
pub type FixtureVerifier = Verifier<MemoryStore, ManualClock, DangerDeterministicRandom>;

/// The credential key: a fixed scalar.
pub fn credential_key() -> SigningKey {
    SigningKey::from_slice(&[0x5A; 32]).expect("0x5A.. is a valid P-256 scalar")
}

/// SEC1 uncompressed public key of `key`.
pub fn public_key(key: &SigningKey) -> Vec<u8> {
    key.verifying_key()
        .to_encoded_point(false)
        .as_bytes()
        .to_vec()
}

/// The credential id.
pub fn credential_id() -> CredentialId {
    CredentialId::new(vec![0xC1; 32]).expect("32 bytes is a valid credential id length")
}

/// The transaction the fixtures pay: 88.00 CNY to Coffee Corner.
pub fn transaction() -> Transaction {
    Transaction {
        amount_minor: 8800,
        currency: "CNY".into(),
        payee_id: "merchant-0042".into(),
        payee_name: "Coffee Corner".into(),
        order_id: "2026-11-21-000123".into(),
        memo: Some("2 lattes".into()),
    }
}

/// How [`verifier_with_credential`] sets up.
pub struct Setup<'a> {
    /// Seed of the deterministic randomness (distinct seeds, distinct challenges).
    pub seed: &'a [u8],
    /// Trust anchors of [`MODEL`] (empty when no key attestation is verified).
    pub trust_anchors: Vec<TrustAnchor>,
    /// The credential's public key (SEC1).
    pub public_key: Vec<u8>,
    /// The credential's stored counter.
    pub counter: u64,
}

impl Default for Setup<'_> {
    fn default() -> Self {
        Self {
            seed: b"fixture",
            trust_anchors: Vec::new(),
            public_key: public_key(&credential_key()),
            counter: 0,
        }
    }
}

/// A verifier for [`RP_ID`] trusting [`MODEL`], with the fixture credential
/// (fingerprint, TEE) committed into its store through a consumed
/// registration challenge.
pub fn verifier_with_credential(setup: Setup<'_>) -> FixtureVerifier {
    verifier_with_policy(setup, Policy::default())
}

/// [`verifier_with_credential`] under `policy` (e.g. without the per-account
/// challenge limit, for a benchmark that issues thousands of challenges
/// before verifying any).
pub fn verifier_with_policy(setup: Setup<'_>, policy: Policy) -> FixtureVerifier {
    let model = DeviceModel {
        id: MODEL.into(),
        trust_anchors: setup.trust_anchors,
        modalities: vec![Modality::Fingerprint, Modality::Face],
        security_level: SecurityLevel::Tee,
        status: ModelStatus::Active,
    };
    let verifier = Verifier::new(
        RP_ID,
        TrustConfig::new().with_model(model),
        policy,
        MemoryStore::new(),
        ManualClock::new(NOW),
        DangerDeterministicRandom::new(setup.seed),
    )
    .expect("RP_ID is a valid rp id");
    let record = CredentialRecord {
        credential_id: credential_id(),
        rp_id: RP_ID.into(),
        account_handle: ACCOUNT.to_vec(),
        public_key: setup.public_key,
        modalities: vec![Modality::Fingerprint],
        enrollment_epoch: EPOCH,
        security_level: SecurityLevel::Tee,
        kind: CredentialKind::TeeAttested,
        device_model: MODEL.into(),
        counter: setup.counter,
        status: CredentialStatus::Active,
        registered_at: NOW,
        app_attest: None,
    };
    let decision = Decision {
        kind: DecisionKind::Registration,
        credential_id: credential_id(),
        statement_hash: [0; 32],
        at: NOW,
    };
    let reg = verifier
        .registration_challenge(ACCOUNT, &[Modality::Fingerprint], SecurityLevel::Tee)
        .expect("the fixture model accepts fingerprint at TEE level");
    verifier
        .store()
        .commit_registration(&reg.challenge, &record, &decision)
        .expect("a fresh MemoryStore accepts the fixture credential");
    verifier
}

/// The assertion an honest TEE makes for `challenge` with `counter`.
pub fn honest_assertion(challenge: &PaymentChallenge, counter: u64) -> PaymentAssertion {
    PaymentAssertion {
        rp_id_hash: sha256(challenge.rp_id.as_bytes()),
        credential_id: challenge.credential_id.clone(),
        challenge: challenge.challenge,
        transaction_hash: challenge.transaction.transaction_hash(),
        display_hash: sha256(
            render_transaction(&challenge.rp_id, &challenge.transaction).as_bytes(),
        ),
        modality: Modality::Fingerprint,
        template_id: TEMPLATE_ID,
        liveness: Liveness::NotChecked,
        failed_attempts: 0,
        counter,
        tee_time: NOW,
        user_confirmed: true,
        enrollment_epoch: EPOCH,
    }
}

/// A COSE_Sign1 statement over `message` signed with `key` (r || s), without x5chain.
pub fn sign<M: Message>(message: &M, key: &SigningKey) -> Vec<u8> {
    let signed = cose::sign1(message.to_cbor(), &[], |tbs| {
        let sig: Signature = key.sign(tbs);
        Ok::<_, Infallible>(sig.to_bytes().to_vec())
    });
    match signed {
        Ok(statement) => statement,
        Err(never) => match never {},
    }
}
