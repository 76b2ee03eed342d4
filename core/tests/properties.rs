//! Property tests of the encoding and of the payment verifier.
//!
//! * Round trips: arbitrary valid messages encode with [`Message::to_cbor`] and
//!   decode back equal.
//! * The strict CBOR decoder never panics, and whatever it accepts re-encodes
//!   to the same bytes. Near-valid inputs (a valid encoding written by an
//!   independent encoder, with one forbidden flaw at a random site) are
//!   refused with the error naming the flaw; the flawless one is accepted.
//! * The payment verifier, set up without the software TEE (a `p256` credential
//!   key, a [`CredentialRecord`] committed straight into a [`MemoryStore`]):
//!   every single-byte-level mutation of a valid signed statement is rejected,
//!   and every change of a field that the verifier binds to its own state is
//!   rejected even when correctly re-signed by the credential key. The
//!   unmutated statement is accepted in the same setup.
//!
//! Case counts are kept moderate (256) so the suite stays fast in debug builds;
//! `PROPTEST_CASES` overrides them.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed setup or expectation must fail the test"
)]

use biopay_core::{
    cbor::{self, CborError},
    messages::{is_forbidden_display_char, validate_rp_id},
    testing::{
        self, credential_key, honest_assertion, verifier_with_credential, FixtureVerifier, Setup,
        NOW,
    },
    CredentialId, Liveness, Message, Modality, PaymentAssertion, PaymentChallenge,
    RegistrationChallenge, Rejection, SecurityLevel, Step, Transaction,
};
use ciborium::value::{Integer, Value};
use proptest::prelude::*;
use std::sync::OnceLock;

// ---------------------------------------------------------------------------
// Strategies for valid messages

/// A display string: 1..=max characters, none of them one the trusted UI
/// refuses (`messages::is_forbidden_display_char`: controls, format and
/// bidirectional characters, invisible fillers).
fn display_text(max: usize) -> impl Strategy<Value = String> {
    let allowed =
        any::<char>().prop_filter("display character", |c| !is_forbidden_display_char(*c));
    proptest::collection::vec(allowed, 1..=max).prop_map(String::from_iter)
}

fn transaction() -> impl Strategy<Value = Transaction> {
    (
        1..=biopay_core::messages::MAX_AMOUNT_MINOR,
        "[A-Z]{3}",
        display_text(64),
        display_text(64),
        display_text(64),
        proptest::option::of(display_text(140)),
    )
        .prop_map(
            |(amount_minor, currency, payee_id, payee_name, order_id, memo)| Transaction {
                amount_minor,
                currency,
                payee_id,
                payee_name,
                order_id,
                memo,
            },
        )
}

/// A lower-case DNS name: 1 to 3 labels, the last one not all digits.
fn rp_id() -> impl Strategy<Value = String> {
    let label = "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?";
    (
        proptest::collection::vec(label, 0..3),
        "[a-z]([a-z0-9-]{0,20}[a-z0-9])?",
    )
        .prop_map(|(mut labels, last)| {
            labels.push(last);
            labels.join(".")
        })
        .prop_filter("valid rp id", |rp| validate_rp_id(rp).is_ok())
}

fn account_handle() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 1..=64)
}

fn credential_id() -> impl Strategy<Value = CredentialId> {
    proptest::collection::vec(any::<u8>(), CredentialId::MIN_LEN..=CredentialId::MAX_LEN)
        .prop_map(|b| CredentialId::new(b).unwrap())
}

fn modality() -> impl Strategy<Value = Modality> {
    prop_oneof![Just(Modality::Fingerprint), Just(Modality::Face)]
}

/// A non-empty, sorted modality list without duplicates.
fn modalities() -> impl Strategy<Value = Vec<Modality>> {
    prop_oneof![
        Just(vec![Modality::Fingerprint]),
        Just(vec![Modality::Face]),
        Just(vec![Modality::Fingerprint, Modality::Face]),
    ]
}

fn security_level() -> impl Strategy<Value = SecurityLevel> {
    prop_oneof![
        Just(SecurityLevel::Software),
        Just(SecurityLevel::Tee),
        Just(SecurityLevel::StrongBox)
    ]
}

fn liveness() -> impl Strategy<Value = Liveness> {
    prop_oneof![Just(Liveness::NotChecked), Just(Liveness::Passed)]
}

/// issued_at < expires_at.
fn window() -> impl Strategy<Value = (u64, u64)> {
    (0..u64::MAX).prop_flat_map(|issued| (Just(issued), issued + 1..=u64::MAX))
}

fn digest() -> impl Strategy<Value = [u8; 32]> {
    prop::array::uniform32(any::<u8>())
}

fn registration_challenge() -> impl Strategy<Value = RegistrationChallenge> {
    (
        rp_id(),
        account_handle(),
        digest(),
        window(),
        modalities(),
        security_level(),
        any::<[u8; 2]>(),
    )
        .prop_map(
            |(
                rp_id,
                account_handle,
                challenge,
                (issued_at, expires_at),
                accepted_modalities,
                required_assurance,
                credential_id_prefix,
            )| {
                RegistrationChallenge {
                    rp_id,
                    account_handle,
                    challenge,
                    issued_at,
                    expires_at,
                    accepted_modalities,
                    required_assurance,
                    credential_id_prefix,
                }
            },
        )
}

fn payment_challenge() -> impl Strategy<Value = PaymentChallenge> {
    (
        rp_id(),
        account_handle(),
        credential_id(),
        digest(),
        transaction(),
        window(),
        modalities(),
        any::<bool>(),
    )
        .prop_map(
            |(
                rp_id,
                account_handle,
                credential_id,
                challenge,
                transaction,
                (issued_at, expires_at),
                accepted_modalities,
                require_liveness,
            )| PaymentChallenge {
                rp_id,
                account_handle,
                credential_id,
                challenge,
                transaction,
                issued_at,
                expires_at,
                accepted_modalities,
                require_liveness,
            },
        )
}

fn payment_assertion() -> impl Strategy<Value = PaymentAssertion> {
    (
        (
            digest(),
            credential_id(),
            digest(),
            digest(),
            digest(),
            modality(),
        ),
        (
            prop::array::uniform16(any::<u8>()),
            liveness(),
            any::<u32>(),
            any::<u64>(),
            any::<u64>(),
            any::<bool>(),
        ),
        digest(),
    )
        .prop_map(
            |(
                (rp_id_hash, credential_id, challenge, transaction_hash, display_hash, modality),
                (template_id, liveness, failed_attempts, counter, tee_time, user_confirmed),
                enrollment_epoch,
            )| PaymentAssertion {
                rp_id_hash,
                credential_id,
                challenge,
                transaction_hash,
                display_hash,
                modality,
                template_id,
                liveness,
                failed_attempts,
                counter,
                tee_time,
                user_confirmed,
                enrollment_epoch,
            },
        )
}

/// Arbitrary CBOR values of the kinds biopay uses (no floats), nested.
fn cbor_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<u64>().prop_map(|v| Value::Integer(Integer::from(v))),
        any::<i64>().prop_map(|v| Value::Integer(Integer::from(v))),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::Bytes),
        ".{0,20}".prop_map(Value::Text),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((inner.clone(), inner.clone()), 0..6).prop_map(Value::Map),
            (prop_oneof![0u64..2, 4u64..1000], inner)
                .prop_map(|(tag, v)| Value::Tag(tag, Box::new(v))),
        ]
    })
}

// ---------------------------------------------------------------------------
// Near-valid CBOR: an encoder that writes one flaw at a chosen site

/// What the deterministic profile (docs/PROTOCOL.md §3.1) forbids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlawKind {
    /// A head (major types 0..=6) one size longer than its argument needs.
    LongHead,
    /// An array, map, byte or text string with an indefinite length.
    Indefinite,
    /// A map with two or more entries written in descending key order.
    UnsortedKeys,
    /// A map whose first entry is written twice.
    DuplicateKey,
    /// A leaf replaced by a half-precision float (0.0).
    Float,
    /// A leaf replaced by `undefined`.
    Undefined,
    /// A leaf replaced by a bignum (tag 2 over one byte).
    Bignum,
    /// One byte after the item.
    TrailingByte,
    /// The encoding cut short.
    Truncated,
}

impl FlawKind {
    fn error(self) -> CborError {
        match self {
            Self::DuplicateKey => CborError::DuplicateKey,
            Self::TrailingByte => CborError::TrailingBytes,
            Self::Truncated => CborError::NotWellFormed,
            _ => CborError::NotDeterministic,
        }
    }
}

fn flaw_kind() -> impl Strategy<Value = FlawKind> {
    prop_oneof![
        Just(FlawKind::LongHead),
        Just(FlawKind::Indefinite),
        Just(FlawKind::UnsortedKeys),
        Just(FlawKind::DuplicateKey),
        Just(FlawKind::Float),
        Just(FlawKind::Undefined),
        Just(FlawKind::Bignum),
        Just(FlawKind::TrailingByte),
        Just(FlawKind::Truncated),
    ]
}

/// One flaw of `kind` at its `at`-th site (sites counted in writing order).
#[derive(Debug, Clone, Copy)]
struct Flaw {
    kind: FlawKind,
    at: usize,
}

/// A CBOR encoder written for this test, independent of `biopay_core::cbor`:
/// given a canonical value and no flaw it writes the deterministic encoding;
/// with a flaw it writes it at the chosen site and nowhere else.
struct FlawedEncoder {
    out: Vec<u8>,
    flaw: Option<Flaw>,
    /// Sites of the flaw's kind seen so far.
    seen: usize,
}

impl FlawedEncoder {
    fn encode(value: &Value, flaw: Option<Flaw>) -> Vec<u8> {
        let mut e = Self {
            out: Vec::new(),
            flaw,
            seen: 0,
        };
        e.value(value);
        e.out
    }

    /// How many sites of `kind` the value has.
    fn sites(value: &Value, kind: FlawKind) -> usize {
        let mut e = Self {
            out: Vec::new(),
            flaw: Some(Flaw {
                kind,
                at: usize::MAX,
            }),
            seen: 0,
        };
        e.value(value);
        e.seen
    }

    /// True when this is a site of `kind` and the chosen one.
    fn here(&mut self, kind: FlawKind) -> bool {
        match self.flaw {
            Some(f) if f.kind == kind => {
                self.seen += 1;
                self.seen - 1 == f.at
            }
            _ => false,
        }
    }

    fn head(&mut self, major: u8, arg: u64) {
        let m = major << 5;
        // Shortest size class (0 = in the initial byte, 1, 2, 4, 8 bytes).
        let mut class = match arg {
            0..=23 => 0,
            24..=0xff => 1,
            0x100..=0xffff => 2,
            0x1_0000..=0xffff_ffff => 3,
            _ => 4,
        };
        if class < 4 && self.here(FlawKind::LongHead) {
            class += 1;
        }
        let be = arg.to_be_bytes();
        match class {
            0 => self.out.push(m | u8::try_from(arg).unwrap()),
            1 => self.out.extend_from_slice(&[m | 24, be[7]]),
            2 => {
                self.out.push(m | 25);
                self.out.extend_from_slice(&be[6..]);
            }
            3 => {
                self.out.push(m | 26);
                self.out.extend_from_slice(&be[4..]);
            }
            _ => {
                self.out.push(m | 27);
                self.out.extend_from_slice(&be);
            }
        }
    }

    /// A leaf, unless a leaf flaw replaces it here.
    fn leaf(&mut self, write: impl FnOnce(&mut Self)) {
        for (kind, bytes) in [
            (FlawKind::Float, &[0xf9, 0x00, 0x00][..]),
            (FlawKind::Undefined, &[0xf7][..]),
            (FlawKind::Bignum, &[0xc2, 0x41, 0x01][..]),
        ] {
            if self.here(kind) {
                self.out.extend_from_slice(bytes);
                return;
            }
        }
        write(self);
    }

    fn string(&mut self, major: u8, bytes: &[u8]) {
        if self.here(FlawKind::Indefinite) {
            // One definite chunk inside an indefinite-length string.
            self.out.push((major << 5) | 31);
            self.head(major, u64::try_from(bytes.len()).unwrap());
            self.out.extend_from_slice(bytes);
            self.out.push(0xff);
        } else {
            self.head(major, u64::try_from(bytes.len()).unwrap());
            self.out.extend_from_slice(bytes);
        }
    }

    fn value(&mut self, value: &Value) {
        match value {
            Value::Integer(i) => {
                let i = i128::from(*i);
                self.leaf(|e| match u64::try_from(i) {
                    Ok(u) => e.head(0, u),
                    Err(_) => e.head(1, u64::try_from(-1 - i).unwrap()),
                });
            }
            Value::Bytes(b) => self.leaf(|e| e.string(2, b)),
            Value::Text(t) => self.leaf(|e| e.string(3, t.as_bytes())),
            Value::Bool(b) => self.leaf(|e| e.out.push(if *b { 0xf5 } else { 0xf4 })),
            Value::Null => self.leaf(|e| e.out.push(0xf6)),
            Value::Tag(tag, inner) => {
                self.head(6, *tag);
                self.value(inner);
            }
            Value::Array(items) => {
                let indefinite = self.here(FlawKind::Indefinite);
                if indefinite {
                    self.out.push(0x9f);
                } else {
                    self.head(4, u64::try_from(items.len()).unwrap());
                }
                for v in items {
                    self.value(v);
                }
                if indefinite {
                    self.out.push(0xff);
                }
            }
            Value::Map(entries) => {
                let indefinite = self.here(FlawKind::Indefinite);
                let reversed = entries.len() >= 2 && self.here(FlawKind::UnsortedKeys);
                let duplicate = !entries.is_empty() && self.here(FlawKind::DuplicateKey);
                let mut order: Vec<&(Value, Value)> = entries.iter().collect();
                if reversed {
                    order.reverse();
                }
                if duplicate {
                    order.insert(0, &entries[0]);
                }
                if indefinite {
                    self.out.push(0xbf);
                } else {
                    self.head(5, u64::try_from(order.len()).unwrap());
                }
                for (k, v) in order {
                    self.value(k);
                    self.value(v);
                }
                if indefinite {
                    self.out.push(0xff);
                }
            }
            other => panic!("not in the profile: {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// A verifier set up without the software TEE

const STORED_COUNTER: u64 = 41;

type TestVerifier = FixtureVerifier;

fn cred_id() -> CredentialId {
    testing::credential_id()
}

/// A fresh verifier with one registered credential and one issued, unused
/// payment challenge. Clock and randomness are deterministic, so every call
/// issues the same challenge.
fn fresh_verifier() -> (TestVerifier, PaymentChallenge) {
    let verifier = verifier_with_credential(Setup {
        seed: b"properties",
        counter: STORED_COUNTER,
        ..Setup::default()
    });
    let challenge = verifier
        .payment_challenge(&cred_id(), testing::transaction())
        .unwrap();
    (verifier, challenge)
}

/// The assertion an honest TEE makes for `challenge`.
fn valid_assertion(challenge: &PaymentChallenge) -> PaymentAssertion {
    honest_assertion(challenge, STORED_COUNTER + 1)
}

/// COSE_Sign1 over the assertion, signed with the credential key (r || s).
fn sign(assertion: &PaymentAssertion) -> Vec<u8> {
    testing::sign(assertion, &credential_key())
}

/// The valid statement for the (deterministic) challenge of `fresh_verifier`.
fn valid_statement() -> &'static [u8] {
    static STATEMENT: OnceLock<Vec<u8>> = OnceLock::new();
    STATEMENT.get_or_init(|| {
        let (_, challenge) = fresh_verifier();
        sign(&valid_assertion(&challenge))
    })
}

#[test]
fn unmutated_statement_is_accepted_once() {
    let (verifier, challenge) = fresh_verifier();
    let approved = verifier.verify_payment(valid_statement()).unwrap();
    assert_eq!(approved.credential_id, cred_id());
    assert_eq!(approved.transaction, challenge.transaction);
    assert_eq!(approved.counter, STORED_COUNTER + 1);
    assert_eq!(approved.template_id, testing::TEMPLATE_ID);
    // Replay is rejected: the challenge is consumed.
    let replay = verifier.verify_payment(valid_statement()).unwrap_err();
    assert_eq!(replay.step, Step::P9Challenge);
    // Setups are deterministic: each fresh verifier issues the same challenge.
    assert_eq!(fresh_verifier().1, challenge);
}

/// Exhaustive companion of the byte-mutation property: every bit flip, every
/// truncation and every deletion of the valid statement (several thousand
/// statements) is rejected by one verifier, which still accepts the original
/// at the end (no rejection consumed the challenge or changed the counter).
#[test]
fn every_bit_flip_truncation_and_deletion_is_rejected() {
    let original = valid_statement();
    let (verifier, _) = fresh_verifier();
    let mut mutations = Vec::new();
    for index in 0..original.len() {
        mutations.extend((0..8).map(|bit| ByteMutation::FlipBit { index, bit }));
        mutations.push(ByteMutation::Truncate { len: index });
        mutations.push(ByteMutation::Delete { index });
    }
    for m in &mutations {
        assert!(
            verifier.verify_payment(&m.apply(original)).is_err(),
            "mutation {m:?} accepted"
        );
    }
    assert!(
        mutations.len() >= 2000,
        "only {} mutations",
        mutations.len()
    );
    verifier.verify_payment(original).unwrap();
}

/// One byte-level edit of a statement.
#[derive(Debug, Clone)]
enum ByteMutation {
    FlipBit { index: usize, bit: u8 },
    Truncate { len: usize },
    Insert { index: usize, byte: u8 },
    Delete { index: usize },
}

impl ByteMutation {
    fn apply(&self, bytes: &[u8]) -> Vec<u8> {
        let mut out = bytes.to_vec();
        match *self {
            Self::FlipBit { index, bit } => out[index] ^= 1 << bit,
            Self::Truncate { len } => out.truncate(len),
            Self::Insert { index, byte } => out.insert(index, byte),
            Self::Delete { index } => {
                out.remove(index);
            }
        }
        out
    }
}

fn byte_mutation(len: usize) -> impl Strategy<Value = ByteMutation> {
    prop_oneof![
        (0..len, 0u8..8).prop_map(|(index, bit)| ByteMutation::FlipBit { index, bit }),
        (0..len).prop_map(|len| ByteMutation::Truncate { len }),
        (0..=len, any::<u8>()).prop_map(|(index, byte)| ByteMutation::Insert { index, byte }),
        (0..len).prop_map(|index| ByteMutation::Delete { index }),
    ]
}

/// A field of the assertion changed to a value the verifier must refuse, with
/// the step that must catch it. The statement is re-signed with the credential
/// key, so the signature is valid and only the field check can reject it.
#[derive(Debug, Clone)]
enum FieldMutation {
    RpIdHash([u8; 32]),
    CredentialId(CredentialId),
    Challenge([u8; 32]),
    TransactionHash([u8; 32]),
    DisplayHash([u8; 32]),
    /// The only other modality (the credential is bound to fingerprint only).
    ModalityFace,
    NotConfirmed,
    EnrollmentEpoch([u8; 32]),
    /// A counter that did not increase.
    Counter(u64),
    /// A TEE clock outside the allowed skew (300 s by default).
    TeeTime(u64),
    /// More failed attempts than the policy allows (4 by default).
    FailedAttempts(u32),
}

impl FieldMutation {
    fn apply(&self, a: &mut PaymentAssertion) {
        match self {
            Self::RpIdHash(v) => a.rp_id_hash = *v,
            Self::CredentialId(v) => a.credential_id = v.clone(),
            Self::Challenge(v) => a.challenge = *v,
            Self::TransactionHash(v) => a.transaction_hash = *v,
            Self::DisplayHash(v) => a.display_hash = *v,
            Self::ModalityFace => a.modality = Modality::Face,
            Self::NotConfirmed => a.user_confirmed = false,
            Self::EnrollmentEpoch(v) => a.enrollment_epoch = *v,
            Self::Counter(v) => a.counter = *v,
            Self::TeeTime(v) => a.tee_time = *v,
            Self::FailedAttempts(v) => a.failed_attempts = *v,
        }
    }

    fn expected_step(&self) -> Step {
        match self {
            Self::RpIdHash(_) => Step::P8RpId,
            Self::CredentialId(_) => Step::P4Credential,
            Self::Challenge(_) => Step::P9Challenge,
            Self::TransactionHash(_) => Step::P12TransactionHash,
            Self::DisplayHash(_) => Step::P13DisplayHash,
            Self::ModalityFace => Step::P16Modality,
            Self::NotConfirmed => Step::P14UserConfirmed,
            Self::EnrollmentEpoch(_) => Step::P15EnrollmentEpoch,
            Self::Counter(_) => Step::P19Counter,
            Self::TeeTime(_) => Step::P18TeeClock,
            Self::FailedAttempts(_) => Step::P17Policy,
        }
    }
}

fn field_mutation() -> impl Strategy<Value = FieldMutation> {
    let (_, challenge) = fresh_verifier();
    let valid = valid_assertion(&challenge);
    let differs = |orig: [u8; 32]| digest().prop_filter("changed", move |v| *v != orig);
    prop_oneof![
        differs(valid.rp_id_hash).prop_map(FieldMutation::RpIdHash),
        credential_id()
            .prop_filter("changed", |c| *c != cred_id())
            .prop_map(FieldMutation::CredentialId),
        differs(valid.challenge).prop_map(FieldMutation::Challenge),
        differs(valid.transaction_hash).prop_map(FieldMutation::TransactionHash),
        differs(valid.display_hash).prop_map(FieldMutation::DisplayHash),
        Just(FieldMutation::ModalityFace),
        Just(FieldMutation::NotConfirmed),
        differs(valid.enrollment_epoch).prop_map(FieldMutation::EnrollmentEpoch),
        (0..=STORED_COUNTER).prop_map(FieldMutation::Counter),
        prop_oneof![0..NOW - 300, NOW + 301..=u64::MAX].prop_map(FieldMutation::TeeTime),
        (5..=u32::MAX).prop_map(FieldMutation::FailedAttempts),
    ]
}

/// 256 cases per property unless `PROPTEST_CASES` says otherwise.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn transaction_round_trips(t in transaction()) {
        prop_assert_eq!(Transaction::from_canonical(&t.canonical_encoding()).unwrap(), t);
    }

    /// The directly written canonical encoding is the generic deterministic
    /// encoding of the transaction map inside a PaymentChallenge.
    #[test]
    fn canonical_encoding_equals_the_generic_encoder(m in payment_challenge()) {
        let Value::Map(entries) = cbor::from_deterministic_slice(&m.to_cbor()).unwrap() else {
            panic!("not a map");
        };
        let tx = entries
            .into_iter()
            .find(|(k, _)| *k == Value::Integer(Integer::from(7u8)))
            .map(|(_, v)| v)
            .unwrap();
        prop_assert_eq!(cbor::to_deterministic_vec(tx).unwrap(), m.transaction.canonical_encoding());
    }

    #[test]
    fn registration_challenge_round_trips(m in registration_challenge()) {
        prop_assert_eq!(RegistrationChallenge::from_cbor(&m.to_cbor()).unwrap(), m);
    }

    #[test]
    fn payment_challenge_round_trips(m in payment_challenge()) {
        prop_assert_eq!(PaymentChallenge::from_cbor(&m.to_cbor()).unwrap(), m);
    }

    #[test]
    fn payment_assertion_round_trips(m in payment_assertion()) {
        prop_assert_eq!(PaymentAssertion::from_cbor(&m.to_cbor()).unwrap(), m);
    }

    /// Arbitrary bytes never make the decoder panic (almost all are refused;
    /// what it accepts is its own deterministic encoding). The property below
    /// is the one that tests acceptance.
    #[test]
    fn strict_decoder_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(value) = cbor::from_deterministic_slice(&bytes) {
            prop_assert_eq!(cbor::to_deterministic_vec(value).unwrap(), bytes);
        }
    }

    /// Near-valid inputs: a value written by an independent encoder (this
    /// file's [`FlawedEncoder`]) is accepted and decodes back equal; the same
    /// value with exactly one flaw the profile forbids (a head longer than
    /// needed, an indefinite length, two map keys out of order, a duplicate
    /// key, a float, `undefined`, a bignum, a trailing byte, a truncation),
    /// placed at a random site, is refused with the error that names it.
    #[test]
    fn strict_decoder_refuses_each_flaw_of_a_valid_encoding(
        a in cbor_value(),
        b in cbor_value(),
        kind in flaw_kind(),
        site in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        // Always a map of two entries at the top: every kind of flaw has a site.
        let value = Value::Map(vec![
            (Value::Integer(Integer::from(1u8)), a),
            (Value::Text("k".into()), b),
        ]);
        let Ok(value) = cbor::canonicalize(value) else {
            return Ok(()); // a duplicate key inside a or b: not a valid value
        };
        let valid = FlawedEncoder::encode(&value, None);
        prop_assert_eq!(&valid, &cbor::to_deterministic_vec(value.clone()).unwrap());
        prop_assert_eq!(cbor::from_deterministic_slice(&valid).unwrap(), value.clone());

        let (flawed, expected) = match kind {
            FlawKind::TrailingByte => ([valid.clone(), vec![byte]].concat(), CborError::TrailingBytes),
            FlawKind::Truncated => {
                (valid[..site.index(valid.len())].to_vec(), CborError::NotWellFormed)
            }
            kind => {
                let sites = FlawedEncoder::sites(&value, kind);
                prop_assert!(sites > 0, "no site for {:?} in {:?}", kind, value);
                let flaw = Flaw { kind, at: site.index(sites) };
                (FlawedEncoder::encode(&value, Some(flaw)), kind.error())
            }
        };
        prop_assert_ne!(&flawed, &valid);
        prop_assert_eq!(
            cbor::from_deterministic_slice(&flawed),
            Err(expected),
            "{:?} in {}",
            kind,
            hex::encode(&flawed)
        );
    }

    /// Deterministic encodings of arbitrary values decode back equal; one-byte
    /// edits of them never panic and, when accepted, re-encode identically.
    #[test]
    fn strict_decoder_on_deterministic_values(value in cbor_value(), edit in any::<(prop::sample::Index, u8)>()) {
        if let Ok(bytes) = cbor::to_deterministic_vec(value) {
            let decoded = cbor::from_deterministic_slice(&bytes).unwrap();
            prop_assert_eq!(cbor::to_deterministic_vec(decoded).unwrap(), bytes.clone());
            let mut edited = bytes;
            let i = edit.0.index(edited.len());
            edited[i] = edit.1;
            if let Ok(v) = cbor::from_deterministic_slice(&edited) {
                prop_assert_eq!(cbor::to_deterministic_vec(v).unwrap(), edited);
            }
        }
    }

    /// Any single byte-level mutation of a valid statement is rejected by a
    /// fresh verifier, and the rejection changes nothing: the unmutated
    /// statement is still accepted afterwards by the same verifier.
    #[test]
    fn any_byte_mutation_of_a_signed_statement_is_rejected(m in byte_mutation(valid_statement().len())) {
        let original = valid_statement();
        let mutated = m.apply(original);
        prop_assert_ne!(&mutated[..], original);
        let (verifier, _) = fresh_verifier();
        let result: Result<_, Rejection> = verifier.verify_payment(&mutated);
        prop_assert!(result.is_err(), "mutation {:?} accepted", m);
        prop_assert!(verifier.verify_payment(original).is_ok(), "original rejected after {:?}", m);
    }

    /// Every change of a field the verifier binds to its state, re-signed by
    /// the credential key, is rejected, at the step that checks that field.
    #[test]
    fn any_bound_field_change_is_rejected_even_when_re_signed(m in field_mutation()) {
        let (verifier, challenge) = fresh_verifier();
        let mut a = valid_assertion(&challenge);
        m.apply(&mut a);
        prop_assert_ne!(&a, &valid_assertion(&challenge));
        let rejection = verifier.verify_payment(&sign(&a)).unwrap_err();
        prop_assert_eq!(rejection.step, m.expected_step(), "{:?}: {:?}", m, rejection.reason);
    }

    /// The fields the verifier does not bind to its own state are the
    /// device's report, and any value within policy is accepted when signed:
    /// template_id (not checked), liveness (not required below the
    /// high-value threshold), failed_attempts up to the policy maximum, any
    /// counter above the stored one, and TEE time within the allowed skew.
    /// This documents exactly what a signer could vary without rejection.
    #[test]
    fn unbound_fields_within_policy_are_accepted(
        template_id in prop::array::uniform16(any::<u8>()),
        liveness in liveness(),
        failed_attempts in 0u32..=4,
        counter in STORED_COUNTER + 1..=u64::MAX,
        tee_time in NOW - 300..=NOW + 300,
    ) {
        let (verifier, challenge) = fresh_verifier();
        let a = PaymentAssertion {
            template_id,
            liveness,
            failed_attempts,
            counter,
            tee_time,
            ..valid_assertion(&challenge)
        };
        let approved = verifier.verify_payment(&sign(&a)).unwrap();
        prop_assert_eq!(approved.counter, counter);
        prop_assert_eq!(approved.liveness, liveness);
    }
}
