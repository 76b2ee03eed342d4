//! Verifier and device-side throughput against raw-crypto baselines, all in
//! one process and one run (the machine is shared and noisy: compare the
//! ratios, not the absolute figures). See docs/PERFORMANCE.md.
//!
//! * `ring_verify`: ring `ECDSA_P256_SHA256_FIXED` verification of a message
//!   the size of a payment statement's Sig_structure (the floor of any
//!   verifier: one signature check).
//! * `verify_payment`: `Verifier::verify_payment` of an accepted payment over
//!   a `MemoryStore` (steps P1–P20, including the atomic commit). Every
//!   iteration needs a fresh, unused challenge: challenges and signed
//!   statements are made in untimed setup (`iter_batched`).
//! * `p256_sign`: `p256` ECDSA signing of a Sig_structure-size message (the
//!   floor of any device).
//! * `device_authorize`: the device-side protocol work minus biometrics and
//!   the trusted UI: decode the `PaymentChallenge` bytes, hash the canonical
//!   transaction and its rendering, encode the `PaymentAssertion` and make the
//!   COSE_Sign1 with `p256` (what `SoftwareTee::get_assertion` does around its
//!   simulated biometrics).
//!
//! After the criterion groups, the two ratios are measured again by timing the
//! operations interleaved (A, B, A, B, ...) over fixed iteration counts, and
//! printed as `ratio verify_payment/ring_verify = X.XX` (throughput; goal >=
//! 0.90) and `ratio device_authorize/p256_sign = X.XX` (time per operation).
//!
//! Then the breakdown: each step of `verify_payment` timed alone, and the
//! remainder (`rest`): the whole call minus the same steps run back to back,
//! the two timed interleaved. The run ends with the figures to watch: the
//! verify ratio, what `verify_payment` costs beyond its signature check
//! (pairs of one `ring_verify` and one `verify_payment`, median difference),
//! and the remainder in µs and as a share of the call.
//!
//! `BIOPAY_BENCH_QUICK=1` shortens everything (a smoke run of the harness).
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "benchmark harness: a failed setup must stop the run"
)]

use biopay_core::{
    cose,
    crypto::sha256,
    render_transaction,
    store::{Decision, DecisionKind},
    testing::{
        self, credential_id, credential_key, honest_assertion, public_key, transaction,
        verifier_with_policy, FixtureVerifier, Setup, ACCOUNT, NOW, RP_ID,
    },
    MemoryStore, Message, Modality, PaymentAssertion, PaymentChallenge, Policy, SecurityLevel,
    Store,
};
use criterion::{black_box, BatchSize, Criterion, Throughput};
use p256::ecdsa::{signature::Signer, Signature, SigningKey};
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use std::{
    cell::Cell,
    time::{Duration, Instant},
};

type BenchVerifier = FixtureVerifier;

/// The fixture verifier without the per-account challenge limit: the
/// harness issues thousands of challenges before it verifies any.
fn verifier() -> BenchVerifier {
    verifier_with_policy(
        Setup {
            seed: b"bench",
            ..Setup::default()
        },
        Policy {
            max_challenges_per_account: 0,
            ..Policy::default()
        },
    )
}

/// The device side: from the challenge bytes to the signed statement.
fn authorize(challenge_bytes: &[u8], key: &SigningKey, counter: u64) -> Vec<u8> {
    let c = PaymentChallenge::from_cbor(challenge_bytes).expect("challenge decodes");
    testing::sign(&honest_assertion(&c, counter), key)
}

/// Issues a payment challenge and returns the statement that approves it.
/// `counter` must increase from call to call.
fn next_statement(v: &BenchVerifier, key: &SigningKey, counter: &Cell<u64>) -> Vec<u8> {
    let challenge = v
        .payment_challenge(&credential_id(), transaction())
        .expect("payment challenge");
    counter.set(counter.get() + 1);
    authorize(&challenge.to_cbor(), key, counter.get())
}

/// Everything the baselines need: the key, a real Sig_structure and its signature.
struct Baseline {
    key: SigningKey,
    public_key: Vec<u8>,
    message: Vec<u8>,
    signature: Vec<u8>,
    challenge_bytes: Vec<u8>,
}

fn baseline() -> Baseline {
    let key = credential_key();
    let v = verifier();
    let counter = Cell::new(0);
    let statement = next_statement(&v, &key, &counter);
    // Sanity: the statement the benchmark verifies is accepted.
    let approved = v
        .verify_payment(&statement)
        .expect("a valid payment is accepted");
    assert_eq!(approved.counter, 1);
    let parsed = cose::parse_sign1(&statement, false).expect("statement parses");
    let challenge_bytes = v
        .payment_challenge(&credential_id(), transaction())
        .expect("challenge")
        .to_cbor();
    Baseline {
        public_key: public_key(&key),
        message: parsed.to_be_signed,
        signature: parsed.signature,
        key,
        challenge_bytes,
    }
}

fn ring_verify(b: &Baseline) -> bool {
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &b.public_key)
        .verify(&b.message, &b.signature)
        .is_ok()
}

fn p256_sign(b: &Baseline) -> Signature {
    b.key.sign(&b.message)
}

fn quick() -> bool {
    std::env::var_os("BIOPAY_BENCH_QUICK").is_some_and(|v| v != "0")
}

fn criterion_groups(c: &mut Criterion, b: &Baseline) {
    let mut verify = c.benchmark_group("verify");
    verify.throughput(Throughput::Elements(1));
    verify.bench_function("ring_verify", |bench| {
        bench.iter(|| assert!(ring_verify(black_box(b))))
    });
    let v = verifier();
    let counter = Cell::new(0);
    verify.bench_function("verify_payment", |bench| {
        bench.iter_batched(
            || next_statement(&v, &b.key, &counter),
            |statement| v.verify_payment(black_box(&statement)).is_ok(),
            BatchSize::SmallInput,
        )
    });
    verify.finish();
    // Every statement verified above was accepted (each one advanced the counter).
    let stored = v
        .store()
        .credential(&credential_id())
        .expect("store")
        .expect("credential")
        .counter;
    assert_eq!(stored, counter.get(), "a benchmarked payment was rejected");
    println!("verify_payment: {stored} payments accepted during the benchmark");

    let mut sign = c.benchmark_group("device");
    sign.throughput(Throughput::Elements(1));
    sign.bench_function("p256_sign", |bench| bench.iter(|| p256_sign(black_box(b))));
    let mut n = 0u64;
    sign.bench_function("device_authorize", |bench| {
        bench.iter(|| {
            n += 1;
            authorize(black_box(&b.challenge_bytes), &b.key, n)
        })
    });
    sign.finish();
}

/// `a` and `b` timed interleaved, round by round.
struct Interleaved {
    /// Median of the per-round ratios time(b)/time(a).
    ratio: f64,
    /// Mean seconds per operation of `a`.
    a: f64,
    /// Mean seconds per operation of `b`.
    b: f64,
    /// Median of the per-round differences time(b) - time(a), seconds per operation.
    difference: f64,
}

/// Times `per_round` calls of `a`, then of `b`, `rounds` times.
fn interleaved(
    rounds: usize,
    per_round: usize,
    mut a: impl FnMut(usize),
    mut b: impl FnMut(usize),
) -> Interleaved {
    let mut ratios = Vec::with_capacity(rounds);
    let mut differences = Vec::with_capacity(rounds);
    let (mut ta, mut tb) = (Duration::ZERO, Duration::ZERO);
    for round in 0..rounds {
        let start = Instant::now();
        for i in 0..per_round {
            a(round * per_round + i);
        }
        let da = start.elapsed();
        let start = Instant::now();
        for i in 0..per_round {
            b(round * per_round + i);
        }
        let db = start.elapsed();
        ta += da;
        tb += db;
        ratios.push(db.as_secs_f64() / da.as_secs_f64());
        differences.push((db.as_secs_f64() - da.as_secs_f64()) / per_round as f64);
    }
    ratios.sort_by(f64::total_cmp);
    differences.sort_by(f64::total_cmp);
    let n = (rounds * per_round) as f64;
    Interleaved {
        ratio: ratios[rounds / 2],
        a: ta.as_secs_f64() / n,
        b: tb.as_secs_f64() / n,
        difference: differences[rounds / 2],
    }
}

/// Measures and prints both ratios; returns verify_payment/ring_verify
/// (throughput) and the paired difference verify_payment - ring_verify (seconds).
fn ratios(b: &Baseline) -> (f64, f64) {
    let (rounds, per_round) = if quick() { (5, 20) } else { (30, 200) };
    // Statements for every verify_payment iteration, made before timing starts.
    let v = verifier();
    let counter = Cell::new(0);
    let statements: Vec<Vec<u8>> = (0..rounds * per_round)
        .map(|_| next_statement(&v, &b.key, &counter))
        .collect();
    let mut accepted = 0usize;
    let Interleaved {
        ratio: r,
        a: ring_s,
        b: verify_s,
        ..
    } = interleaved(
        rounds,
        per_round,
        |_| assert!(ring_verify(black_box(b))),
        |i| accepted += usize::from(v.verify_payment(black_box(&statements[i])).is_ok()),
    );
    assert_eq!(
        accepted,
        statements.len(),
        "a payment was rejected during the ratio run"
    );
    println!();
    println!(
        "interleaved, {rounds} rounds x {per_round} operations each (median of per-round ratios):"
    );
    println!(
        "  ring_verify      {:>8.1} us/op  {:>8.0} ops/s",
        ring_s * 1e6,
        1.0 / ring_s
    );
    println!(
        "  verify_payment   {:>8.1} us/op  {:>8.0} ops/s",
        verify_s * 1e6,
        1.0 / verify_s
    );
    let verify_ratio = 1.0 / r;
    println!("ratio verify_payment/ring_verify = {verify_ratio:.2} (throughput; goal >= 0.90)");
    // What verify_payment costs beyond its signature check, from pairs of
    // one call each (both halves of a pair see the same machine).
    let pairs = if quick() { 100 } else { 2000 };
    let paired: Vec<Vec<u8>> = (0..pairs)
        .map(|_| next_statement(&v, &b.key, &counter))
        .collect();
    let outside = interleaved(
        pairs,
        1,
        |_| assert!(ring_verify(black_box(b))),
        |i| assert!(v.verify_payment(black_box(&paired[i])).is_ok()),
    );
    println!(
        "  outside the signature check: {:.1} us/op ({pairs} pairs ring_verify, verify_payment; median of the per-pair differences)",
        outside.difference * 1e6
    );

    let mut n = 0u64;
    let Interleaved {
        ratio: r,
        a: sign_s,
        b: auth_s,
        ..
    } = interleaved(
        rounds,
        per_round,
        |_| {
            black_box(p256_sign(black_box(b)));
        },
        |_| {
            n += 1;
            black_box(authorize(black_box(&b.challenge_bytes), &b.key, n));
        },
    );
    println!(
        "  p256_sign        {:>8.1} us/op  {:>8.0} ops/s",
        sign_s * 1e6,
        1.0 / sign_s
    );
    println!(
        "  device_authorize {:>8.1} us/op  {:>8.0} ops/s",
        auth_s * 1e6,
        1.0 / auth_s
    );
    println!(
        "ratio device_authorize/p256_sign = {r:.2} (time per operation; throughput ratio {:.2})",
        1.0 / r
    );
    (verify_ratio, outside.difference)
}

/// Time per operation of `f`, best of three runs of `n` calls.
fn per_op(n: usize, mut f: impl FnMut()) -> f64 {
    (0..3)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..n {
                f();
            }
            start.elapsed().as_secs_f64() / n as f64
        })
        .fold(f64::INFINITY, f64::min)
}

/// Where the time of an accepted `verify_payment` goes: each step of the
/// pipeline timed alone through the public API, next to the whole call.
///
/// Returns the remainder (seconds per call, and its share of the call): the
/// whole call minus the same steps run back to back, measured interleaved.
fn breakdown(b: &Baseline) -> (f64, f64) {
    use biopay_core::{
        cbor,
        crypto::{verify_es256, SignatureFormat},
        store::IssuedChallenge,
    };

    let n = if quick() { 200 } else { 2000 };
    // The remainder's pairs: one run of the steps in sequence, then one whole
    // call, timed one by one so that both halves of a pair see the same
    // machine (on a loaded one, rounds of many calls differ by more than the
    // remainder); the median per-pair difference ignores preempted pairs.
    let (rounds, per_round) = if quick() { (100, 1) } else { (2000, 1) };
    let v = verifier();
    let counter = Cell::new(0);
    let statements: Vec<Vec<u8>> = (0..n + 2 * rounds * per_round)
        .map(|_| next_statement(&v, &b.key, &counter))
        .collect();
    let (statements, remainder_statements) = statements.split_at(n);
    let (whole_statements, sequence_statements) = remainder_statements.split_at(rounds * per_round);
    let mut i = 0;
    let total = per_op(n / 3, || {
        assert!(v.verify_payment(black_box(&statements[i])).is_ok());
        i += 1;
    });

    let st = &statements[0];
    let sign1 = cose::parse_sign1(st, false).expect("parses");
    let assertion = PaymentAssertion::from_cbor(&sign1.payload).expect("decodes");
    let protected = [0xa1, 0x01, 0x26];
    let tx = transaction();
    let store = v.store();
    let entry = store
        .challenge(&assertion.challenge)
        .expect("store")
        .expect("issued");
    let IssuedChallenge::Payment {
        challenge: issued, ..
    } = entry.issued.clone()
    else {
        panic!("not a payment challenge")
    };
    // A separate store for the commit: one unused challenge per call.
    let commit_store = MemoryStore::new();
    let cred = store
        .credential(&credential_id())
        .expect("store")
        .expect("credential");
    let mut record = cred.clone();
    record.counter = 0;
    let reg = Decision {
        kind: DecisionKind::Registration,
        credential_id: credential_id(),
        statement_hash: [0; 32],
        at: NOW,
    };
    commit_store
        .insert_challenge(
            IssuedChallenge::Registration(biopay_core::RegistrationChallenge {
                rp_id: RP_ID.into(),
                account_handle: ACCOUNT.to_vec(),
                challenge: [0xFF; 32],
                issued_at: NOW,
                expires_at: NOW + 1,
                accepted_modalities: vec![Modality::Fingerprint],
                required_assurance: SecurityLevel::Tee,
                credential_id_prefix: biopay_core::routing::credential_id_prefix(RP_ID, ACCOUNT),
            }),
            None,
        )
        .expect("insert");
    commit_store
        .commit_registration(&[0xFF; 32], &record, &reg)
        .expect("register");
    let commit_challenges: Vec<[u8; 32]> = (0..5 * n as u64)
        .map(|k| {
            let mut c = [0u8; 32];
            c[..8].copy_from_slice(&k.to_be_bytes());
            let mut pc = issued.clone();
            pc.challenge = c;
            commit_store
                .insert_challenge(
                    IssuedChallenge::Payment {
                        challenge: pc,
                        counter_at_issue: 0,
                    },
                    None,
                )
                .expect("insert");
            c
        })
        .collect();
    let decision = Decision {
        kind: DecisionKind::Payment,
        credential_id: credential_id(),
        statement_hash: [0; 32],
        at: NOW,
    };
    let mut k = 0usize;

    let steps: Vec<(&str, f64)> = vec![
        (
            "P1-P2 cose::parse_sign1 (all of it)",
            per_op(n, || {
                black_box(cose::parse_sign1(black_box(st), false).is_ok());
            }),
        ),
        (
            "  - cbor::decode(statement), borrowed items",
            per_op(n, || {
                black_box(cbor::decode(black_box(st)).is_ok());
            }),
        ),
        (
            "  - cbor::decode(protected header)",
            per_op(n, || {
                black_box(cbor::decode(black_box(&protected)).is_ok());
            }),
        ),
        (
            "P3 PaymentAssertion::from_cbor",
            per_op(n, || {
                black_box(PaymentAssertion::from_cbor(black_box(&sign1.payload)).is_ok());
            }),
        ),
        (
            "  - cbor::decode(payload), borrowed items",
            per_op(n, || {
                black_box(cbor::decode(black_box(&sign1.payload)).is_ok());
            }),
        ),
        (
            "  - for comparison: ciborium decode to a Value tree",
            per_op(n, || {
                let v: Result<ciborium::value::Value, _> =
                    ciborium::de::from_reader(black_box(&sign1.payload[..]));
                black_box(v.is_ok());
            }),
        ),
        (
            "P4 store.credential (lock + clone)",
            per_op(n, || {
                black_box(
                    store
                        .credential(black_box(&assertion.credential_id))
                        .is_ok(),
                );
            }),
        ),
        (
            "P5 verify_es256 (ring)",
            per_op(n, || {
                assert!(verify_es256(
                    &cred.public_key,
                    &sign1.to_be_signed,
                    &sign1.signature,
                    SignatureFormat::Fixed
                ));
            }),
        ),
        (
            "P9 store.challenge (lock + clone)",
            per_op(n, || {
                black_box(store.challenge(black_box(&assertion.challenge)).is_ok());
            }),
        ),
        (
            "P12 sha256(canonical transaction)",
            per_op(n, || {
                black_box(sha256(&black_box(&tx).canonical_encoding()));
            }),
        ),
        (
            "  - Transaction::canonical_encoding alone",
            per_op(n, || {
                black_box(black_box(&tx).canonical_encoding());
            }),
        ),
        (
            "P13 sha256(render_transaction)",
            per_op(n, || {
                black_box(sha256(render_transaction(RP_ID, black_box(&tx)).as_bytes()));
            }),
        ),
        (
            "P20 sha256(statement) for the decision",
            per_op(n, || {
                black_box(sha256(black_box(st)));
            }),
        ),
        (
            "P20 store.commit_payment",
            per_op(n, || {
                let c = &commit_challenges[k];
                k += 1;
                let new_counter = k as u64;
                assert!(commit_store
                    .commit_payment(c, &credential_id(), new_counter, None, &decision)
                    .is_ok());
            }),
        ),
    ];
    println!();
    println!("where verify_payment's time goes (each step alone, best of 3 x {n} calls):");
    println!(
        "  {:<48} {:>8.1} us  100.0%",
        "verify_payment (whole call)",
        total * 1e6
    );
    let mut top_level = 0.0;
    for (name, t) in &steps {
        if !name.starts_with("  ") {
            top_level += t;
        }
        println!(
            "  {:<48} {:>8.1} us  {:>5.1}%",
            name,
            t * 1e6,
            100.0 * t / total
        );
    }
    let rest = total - top_level;
    println!(
        "  {:<48} {:>8.1} us  {:>5.1}%",
        "rest vs the steps timed alone (not interleaved)",
        rest * 1e6,
        100.0 * rest / total
    );
    // The same steps back to back over distinct statements (the whole call's
    // access pattern), interleaved round by round with whole calls over
    // other distinct statements: the difference is what the whole call does
    // beyond the listed steps, measured so that both halves see the same
    // machine (the sum of steps timed alone, above, does not).
    let steps_in_sequence = |st: &[u8], k: usize| {
        let s1 = cose::parse_sign1(st, false).expect("parses");
        let a = PaymentAssertion::from_cbor(&s1.payload).expect("decodes");
        let c = store
            .credential(&a.credential_id)
            .expect("store")
            .expect("credential");
        assert!(verify_es256(
            &c.public_key,
            &s1.to_be_signed,
            &s1.signature,
            SignatureFormat::Fixed
        ));
        black_box(store.challenge(&a.challenge).expect("store"));
        black_box(sha256(&tx.canonical_encoding()));
        black_box(sha256(render_transaction(RP_ID, &tx).as_bytes()));
        black_box(sha256(st));
        let new_counter = k as u64 + 1;
        assert!(commit_store
            .commit_payment(
                &commit_challenges[k],
                &credential_id(),
                new_counter,
                None,
                &decision
            )
            .is_ok());
    };
    let m = interleaved(
        rounds,
        per_round,
        |i| steps_in_sequence(&sequence_statements[i], k + i),
        |i| assert!(v.verify_payment(black_box(&whole_statements[i])).is_ok()),
    );
    println!(
        "  {:<48} {:>8.1} us  {:>5.1}%",
        "the top-level steps in sequence, distinct inputs",
        m.a * 1e6,
        100.0 * m.a / m.b
    );
    println!(
        "  {:<48} {:>8.1} us  {:>5.1}%",
        "  interleaved with: verify_payment (whole call)",
        m.b * 1e6,
        100.0
    );
    let rest = m.difference;
    println!(
        "  {:<48} {:>8.1} us  {:>5.1}%   <- the remainder to watch",
        "rest: whole call minus the steps in sequence",
        rest * 1e6,
        100.0 * rest / m.b
    );
    println!(
        "    ({rounds} pairs of {per_round} call each, median of the per-pair differences; mean difference {:.1} us)",
        (m.b - m.a) * 1e6
    );
    (rest, rest / m.b)
}

/// `BIOPAY_BENCH_PROFILE=N`: make N statements, then only verify them (for
/// `perf record -p <pid>` once "verifying" is printed). No criterion run.
fn profile(n: usize) {
    let key = credential_key();
    let v = verifier();
    let counter = Cell::new(0);
    let statements: Vec<Vec<u8>> = (0..n).map(|_| next_statement(&v, &key, &counter)).collect();
    println!(
        "profile: verifying {n} statements (pid {})",
        std::process::id()
    );
    let start = Instant::now();
    let accepted = statements
        .iter()
        .filter(|s| v.verify_payment(black_box(s)).is_ok())
        .count();
    assert_eq!(accepted, n, "a payment was rejected");
    println!(
        "profile: {:.1} us per verify_payment",
        start.elapsed().as_secs_f64() * 1e6 / n as f64
    );
}

fn main() {
    if let Some(n) = std::env::var("BIOPAY_BENCH_PROFILE")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        profile(n);
        return;
    }
    let b = baseline();
    println!(
        "Sig_structure of a payment statement: {} bytes; credential key P-256; statement verified and accepted",
        b.message.len()
    );
    let (warm_up, measure, samples) = if quick() {
        (Duration::from_millis(200), Duration::from_millis(500), 10)
    } else {
        (Duration::from_secs(2), Duration::from_secs(5), 30)
    };
    let mut c = Criterion::default()
        .warm_up_time(warm_up)
        .measurement_time(measure)
        .sample_size(samples)
        .configure_from_args();
    criterion_groups(&mut c, &b);
    c.final_summary();
    let (ratio, outside) = ratios(&b);
    let (rest, rest_share) = breakdown(&b);
    println!();
    println!("figures to watch:");
    println!("  ratio verify_payment/ring_verify = {ratio:.2} (throughput; goal >= 0.90)");
    println!(
        "  outside the signature check = {:.1} us per verify_payment (paired with ring_verify)",
        outside * 1e6
    );
    println!(
        "  rest = {:.1} us per verify_payment ({:.1}% of the call): what the call costs beyond its listed steps",
        rest * 1e6,
        100.0 * rest_share
    );
}
