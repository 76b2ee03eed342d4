//! Fuzz target bodies for biopay-core, one `pub fn` per target.
//!
//! Each body takes arbitrary bytes, must never panic on them, and checks an
//! oracle where the code under test has one (an accepted input is its own
//! canonical encoding; nothing is trusted without anchors; a payment is
//! accepted at most once). It returns whether the input was *accepted* by the
//! code under test, which the smoke driver counts to show that its corpus
//! reaches the deep paths.
//!
//! The bodies are called by the libFuzzer targets in `fuzz_targets/`
//! (`cargo +nightly fuzz run <target> --features libfuzzer`) and by the stable
//! smoke driver `src/bin/smoke.rs` (`scripts/fuzz-smoke.sh`). [`seeds`] builds
//! valid inputs for each target deterministically: signed statements, messages
//! and an attestation chain to a fixed root key.
#![forbid(unsafe_code)]

use biopay_core::{
    android::{self, AndroidPolicy, RevocationStatus, StatusEntry, StatusList},
    apple, cbor, cose,
    crypto::sha256,
    messages::peek_kind,
    render_transaction,
    routing::prefixed_credential_id,
    testing::{self, credential_id, transaction, Setup, ACCOUNT, EPOCH, MODEL, RP_ID},
    x509::{self, TrustAnchor},
    Deregistration, EnrollmentChange, KeyAttestation, Message, Modality, PaymentAssertion,
    PaymentChallenge, RegistrationChallenge, SecurityLevel, Transaction, VerifiedBootState,
};
use p256::{
    ecdsa::{signature::Signer, Signature, SigningKey},
    pkcs8::EncodePublicKey,
};
use std::{convert::Infallible, sync::OnceLock};

/// A fuzz target body.
pub type Body = fn(&[u8]) -> bool;

/// Every target: name (as in `fuzz_targets/<name>.rs`) and body.
pub const TARGETS: &[(&str, Body)] = &[
    ("cbor", cbor),
    ("cose", cose),
    ("messages", messages),
    ("x509_chain", x509_chain),
    ("verify_payment", verify_payment),
    ("android_attestation", android_attestation),
    ("apple_app_attest", apple_app_attest),
];

// ---------------------------------------------------------------------------
// Target bodies

/// `cbor::from_deterministic_slice`: an accepted input re-encodes to itself.
pub fn cbor(data: &[u8]) -> bool {
    let Ok(value) = cbor::from_deterministic_slice(data) else {
        return false;
    };
    let _ = peek_kind(&value);
    let again = cbor::to_deterministic_vec(value).expect("an accepted value re-encodes");
    assert_eq!(
        again, data,
        "accepted CBOR is not its own deterministic encoding"
    );
    true
}

/// `cose::parse_sign1` in both modes (with and without a required
/// `x5chain`): an accepted statement is the unique encoding of its parts, so
/// rebuilding it with `cose::sign1` from payload, chain and signature gives
/// back the same bytes, and the Sig_structure is the one signed.
pub fn cose(data: &[u8]) -> bool {
    let _ = cose::peek_payload(data);
    let mut accepted = false;
    for x5chain_required in [false, true] {
        let Ok(parsed) = cose::parse_sign1(data, x5chain_required) else {
            continue;
        };
        accepted = true;
        assert_eq!(parsed.x5chain.is_empty(), !x5chain_required);
        let rebuilt = cose::sign1(parsed.payload.clone(), &parsed.x5chain, |tbs| {
            assert_eq!(
                tbs, parsed.to_be_signed,
                "Sig_structure differs from the one parsed"
            );
            Ok::<_, Infallible>(parsed.signature.clone())
        })
        .unwrap_or_else(|e: Infallible| match e {});
        assert_eq!(rebuilt, data, "an accepted statement has a second encoding");
    }
    accepted
}

/// `from_cbor` of every message kind and `Transaction::from_canonical`: an
/// accepted input is the message's own encoding.
pub fn messages(data: &[u8]) -> bool {
    fn check<M: Message + core::fmt::Debug>(data: &[u8]) -> bool {
        match M::from_cbor(data) {
            Ok(m) => {
                assert_eq!(m.to_cbor(), data, "{m:?} re-encodes differently");
                true
            }
            Err(_) => false,
        }
    }
    let accepted = [
        check::<RegistrationChallenge>(data),
        check::<KeyAttestation>(data),
        check::<PaymentChallenge>(data),
        check::<PaymentAssertion>(data),
        check::<Deregistration>(data),
        check::<EnrollmentChange>(data),
        check::<biopay_core::PlatformKeyRegistration>(data),
    ];
    // At most one kind can accept a given input (key 1 is the kind).
    assert!(
        accepted.iter().filter(|a| **a).count() <= 1,
        "two message kinds accept one input"
    );
    let tx = match Transaction::from_canonical(data) {
        Ok(tx) => {
            assert_eq!(
                tx.canonical_encoding(),
                data,
                "transaction re-encodes differently"
            );
            tx.validate().expect("a decoded transaction is valid");
            let _ = render_transaction(RP_ID, &tx);
            true
        }
        Err(_) => false,
    };
    accepted.contains(&true) || tx
}

/// Splits `data` into at most three DER items: each one is the TLV at the
/// front of what is left (the rest of the input when no DER header parses).
pub fn split_der(data: &[u8]) -> Vec<Vec<u8>> {
    fn tlv_len(data: &[u8]) -> Option<usize> {
        let first = *data.get(1)?;
        let (header, len) = if first < 0x80 {
            (2, usize::from(first))
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 3 {
                return None;
            }
            let len = data
                .get(2..2 + n)?
                .iter()
                .fold(0usize, |acc, b| acc << 8 | usize::from(*b));
            (2 + n, len)
        };
        Some(header + len).filter(|total| *total <= data.len())
    }
    let mut rest = data;
    let mut out = Vec::new();
    while !rest.is_empty() && out.len() < 3 {
        let n = if out.len() == 2 {
            rest.len()
        } else {
            tlv_len(rest).unwrap_or(rest.len())
        };
        out.push(rest[..n].to_vec());
        rest = &rest[n..];
    }
    out
}

/// `x509::verify_chain` over up to three certificates split from the input,
/// against no anchor (must always fail: nothing is trusted by default) and
/// against the fuzz root key plus an unparsable anchor.
pub fn x509_chain(data: &[u8]) -> bool {
    let chain = split_der(data);
    assert!(
        x509::verify_chain(&chain, &[], NOW).is_err(),
        "a chain verified without any trust anchor"
    );
    let fx = fixture();
    let anchors = [
        TrustAnchor {
            name: "garbage".into(),
            spki_der: vec![0x30, 0x00],
        },
        fx.root_anchor.clone(),
    ];
    match x509::verify_chain(&chain, &anchors, NOW) {
        Ok(verified) => {
            assert_eq!(verified.anchor, 1, "the unparsable anchor was used");
            assert_eq!(verified.path.first(), Some(&0));
            true
        }
        Err(_) => false,
    }
}

/// The verifier end to end: a fresh verifier (one registered credential, an
/// open registration challenge and an open payment challenge) is fed the
/// input as a key attestation, a payment assertion, a deregistration and an
/// enrollment change. An accepted statement is never accepted twice.
pub fn verify_payment(data: &[u8]) -> bool {
    let (verifier, _) = fresh_verifier();
    let registered = verifier.verify_registration(data).is_ok();
    if registered {
        assert!(
            verifier.verify_registration(data).is_err(),
            "a key attestation was accepted twice"
        );
    }
    let paid = match verifier.verify_payment(data) {
        Ok(approved) => {
            assert_eq!(approved.transaction, transaction());
            assert_eq!(approved.credential_id, credential_id());
            assert!(
                verifier.verify_payment(data).is_err(),
                "a payment was accepted twice"
            );
            true
        }
        Err(_) => false,
    };
    let deregistered = verifier.verify_deregistration(data).is_ok();
    let changed = verifier.verify_enrollment_change(data).is_ok();
    registered || paid || deregistered || changed
}

// ---------------------------------------------------------------------------
// Fixture: keys, a PKI and a verifier, all deterministic

/// Verification time of every target, Unix seconds.
pub use biopay_core::testing::NOW;
const STORED_COUNTER: u64 = 41;

struct Fixture {
    credential_key: SigningKey,
    credential_public_key: Vec<u8>,
    root_key: SigningKey,
    root_anchor: TrustAnchor,
}

fn key(byte: u8) -> SigningKey {
    SigningKey::from_slice(&[byte; 32]).expect("a fixed scalar in range")
}

fn sec1(key: &SigningKey) -> Vec<u8> {
    key.verifying_key()
        .to_encoded_point(false)
        .as_bytes()
        .to_vec()
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let credential_key = testing::credential_key();
        let root_key = key(0x11);
        let spki = root_key
            .verifying_key()
            .to_public_key_der()
            .expect("SPKI encodes");
        Fixture {
            credential_public_key: testing::public_key(&credential_key),
            credential_key,
            root_anchor: TrustAnchor {
                name: "fuzz-root".into(),
                spki_der: spki.as_bytes().to_vec(),
            },
            root_key,
        }
    })
}

type FuzzVerifier = testing::FixtureVerifier;

/// Challenges a fresh verifier has open (the same every time: clock and
/// randomness are deterministic).
struct Open {
    registration: RegistrationChallenge,
    payment: PaymentChallenge,
}

fn fresh_verifier() -> (FuzzVerifier, Open) {
    let fx = fixture();
    // The fixture credential is committed through one registration
    // challenge; a second stays open for key attestations.
    let verifier = testing::verifier_with_credential(Setup {
        seed: b"biopay-fuzz",
        trust_anchors: vec![fx.root_anchor.clone()],
        public_key: fx.credential_public_key.clone(),
        counter: STORED_COUNTER,
    });
    let registration = verifier
        .registration_challenge(
            ACCOUNT,
            &[Modality::Fingerprint, Modality::Face],
            SecurityLevel::Tee,
        )
        .expect("issue");
    let payment = verifier
        .payment_challenge(&credential_id(), transaction())
        .expect("issue");
    (
        verifier,
        Open {
            registration,
            payment,
        },
    )
}

/// A p256 key as an rcgen signer: deterministic (RFC 6979) DER signatures, so
/// the seed certificates are the same bytes on every run.
struct CertKey {
    key: SigningKey,
    sec1: Vec<u8>,
}

impl CertKey {
    fn new(key: SigningKey) -> Self {
        Self {
            sec1: sec1(&key),
            key,
        }
    }
}

impl rcgen::PublicKeyData for CertKey {
    fn der_bytes(&self) -> &[u8] {
        &self.sec1
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

impl rcgen::SigningKey for CertKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let sig: Signature = self.key.sign(msg);
        Ok(sig.to_der().as_bytes().to_vec())
    }
}

fn cert_params(cn: &str, ou: Option<&str>, serial: u64, ca: bool) -> rcgen::CertificateParams {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    if let Some(ou) = ou {
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationalUnitName, ou);
    }
    params.serial_number = Some(serial.into());
    if ca {
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    }
    params
}

/// [leaf, intermediate]: the attestation leaf (subject OU = the device model,
/// key `attestation_key`) issued by an intermediate CA issued by the root key.
fn attestation_chain(attestation_key: &SigningKey) -> Vec<Vec<u8>> {
    let fx = fixture();
    let root = rcgen::Issuer::new(
        cert_params("Fuzz Root", None, 1, true),
        CertKey::new(fx.root_key.clone()),
    );
    let intermediate_key = CertKey::new(key(0x22));
    let intermediate_params = cert_params("Fuzz Intermediate", None, 2, true);
    let intermediate = intermediate_params
        .signed_by(&intermediate_key, &root)
        .expect("intermediate");
    let intermediate_issuer = rcgen::Issuer::new(intermediate_params, intermediate_key);
    let leaf = cert_params("Fuzz Attestation", Some(MODEL), 3, false)
        .signed_by(&CertKey::new(attestation_key.clone()), &intermediate_issuer)
        .expect("leaf");
    vec![leaf.der().to_vec(), intermediate.der().to_vec()]
}

fn sign_statement(payload: Vec<u8>, x5chain: &[Vec<u8>], key: &SigningKey) -> Vec<u8> {
    cose::sign1(payload, x5chain, |tbs| {
        let sig: Signature = key.sign(tbs);
        Ok::<_, Infallible>(sig.to_bytes().to_vec())
    })
    .unwrap_or_else(|e: Infallible| match e {})
}

/// Valid inputs built once: every message, both signed statements and the
/// attestation chain.
pub struct Seeds {
    /// A key attestation the fresh verifier accepts.
    pub registration_statement: Vec<u8>,
    /// A payment assertion the fresh verifier accepts.
    pub payment_statement: Vec<u8>,
    /// Every message kind's encoding and a transaction's canonical encoding.
    pub messages: Vec<Vec<u8>>,
    /// The DER certificates of the attestation chain, leaf first.
    pub chain: Vec<Vec<u8>>,
    /// An Android attestation chain (leaf with a KeyDescription, intermediate).
    pub android_chain: Vec<Vec<u8>>,
}

/// The seeds (computed once).
pub fn seeds() -> &'static Seeds {
    static SEEDS: OnceLock<Seeds> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let fx = fixture();
        let (_, open) = fresh_verifier();
        let tx = &open.payment.transaction;
        let assertion = testing::honest_assertion(&open.payment, STORED_COUNTER + 1);
        let attestation_key = key(0x33);
        let new_credential_key = key(0x44);
        let attestation = KeyAttestation {
            rp_id_hash: sha256(RP_ID.as_bytes()),
            account_handle: ACCOUNT.to_vec(),
            challenge: open.registration.challenge,
            credential_public_key: sec1(&new_credential_key),
            credential_id: prefixed_credential_id(
                open.registration.credential_id_prefix,
                &[0xC2; 32],
            )
            .expect("valid length"),
            modalities: vec![Modality::Fingerprint, Modality::Face],
            enrollment_epoch: [0xE8; 32],
            security_level: SecurityLevel::Tee,
            device_model: MODEL.into(),
            verified_boot: VerifiedBootState::Verified,
            tee_time: NOW,
            initial_counter: 0,
        };
        let deregistration = Deregistration {
            rp_id_hash: sha256(RP_ID.as_bytes()),
            credential_id: credential_id(),
            counter: STORED_COUNTER + 1,
            tee_time: NOW,
        };
        let enrollment_change = EnrollmentChange {
            rp_id_hash: sha256(RP_ID.as_bytes()),
            credential_id: credential_id(),
            previous_epoch: EPOCH,
            current_epoch: [0xE9; 32],
            counter: STORED_COUNTER + 1,
            tee_time: NOW,
        };
        let chain = attestation_chain(&attestation_key);
        let android_chain = android_chain(&key(0x55));
        Seeds {
            registration_statement: sign_statement(attestation.to_cbor(), &chain, &attestation_key),
            payment_statement: sign_statement(assertion.to_cbor(), &[], &fx.credential_key),
            messages: vec![
                open.registration.to_cbor(),
                attestation.to_cbor(),
                open.payment.to_cbor(),
                assertion.to_cbor(),
                deregistration.to_cbor(),
                enrollment_change.to_cbor(),
                tx.canonical_encoding(),
            ],
            chain,
            android_chain,
        }
    })
}

/// Valid inputs for `target`: each one is accepted by the target's body.
pub fn seeds_for(target: &str) -> Vec<Vec<u8>> {
    let s = seeds();
    let statements = vec![
        s.registration_statement.clone(),
        s.payment_statement.clone(),
    ];
    match target {
        "cbor" => s.messages.iter().cloned().chain(statements).collect(),
        "cose" => statements,
        "messages" => s.messages.clone(),
        "x509_chain" => vec![s.chain.concat()],
        "verify_payment" => statements,
        "android_attestation" => vec![android_key_description(), s.android_chain.concat()],
        "apple_app_attest" => apple_seeds(),
        _ => Vec::new(),
    }
}

// ---------------------------------------------------------------------------
// Android key attestation (docs/PROTOCOL.md §12)

/// `android::parse_key_description` on the input, and the input split into
/// up to three certificates as an Android attestation chain: no chain
/// verifies without anchors, a chain that verifies to the fuzz root stops
/// verifying once its path's serials are revoked, and the policy never
/// panics on a parsed KeyDescription.
pub fn android_attestation(data: &[u8]) -> bool {
    let policy = AndroidPolicy {
        package_name: Some("com.example.pay".into()),
        signing_cert_digests: vec![[0xAB; 32]],
        min_os_patch_level: 202401,
        require_strongbox: false,
    };
    let direct = match android::parse_key_description(data) {
        Ok(kd) => {
            let _ = android::check_policy(&kd, &policy, Some(b"abc"));
            true
        }
        Err(_) => false,
    };
    let chain = split_der(data);
    let none = StatusList::default();
    assert!(
        android::verify_attestation_chain(&chain, &[], &none, NOW).is_err(),
        "an Android chain verified without any trust anchor"
    );
    let mut chained = false;
    if let Some(Ok(kd)) = chain.first().map(|leaf| android::key_description_of(leaf)) {
        let _ = android::check_policy(&kd, &policy, None);
        let anchors = [fixture().root_anchor.clone()];
        if let Ok(v) = android::verify_attestation_chain(&chain, &anchors, &none, NOW) {
            let mut revoked = StatusList::default();
            for &i in &v.path {
                let serial = x509::serial_hex(&chain[i]).expect("a verified certificate parses");
                revoked.insert(
                    &serial,
                    StatusEntry {
                        status: RevocationStatus::Revoked,
                        reason: None,
                        comment: None,
                    },
                );
            }
            assert!(
                android::verify_attestation_chain(&chain, &anchors, &revoked, NOW).is_err(),
                "a revoked Android chain verified"
            );
            chained = true;
        }
    }
    direct || chained
}

fn der_tlv(tag: &[u8], content: &[u8]) -> Vec<u8> {
    let mut out = tag.to_vec();
    let n = content.len();
    match n {
        0..=0x7f => out.push(n as u8),
        0x80..=0xff => out.extend([0x81, n as u8]),
        _ => out.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(content);
    out
}

/// `[n] EXPLICIT` for 31 <= n < 16384, or a low tag.
fn der_ctx(n: u32, inner: &[u8]) -> Vec<u8> {
    if n < 31 {
        der_tlv(&[0xa0 | n as u8], inner)
    } else if n < 128 {
        der_tlv(&[0xbf, n as u8], inner)
    } else {
        der_tlv(&[0xbf, 0x80 | (n >> 7) as u8, (n & 0x7f) as u8], inner)
    }
}

/// A KeyDescription that passes the Android policy of [`android_attestation`]
/// (challenge `abc`).
pub fn android_key_description() -> Vec<u8> {
    let int = |v: u32| {
        let b = v.to_be_bytes();
        let mut bytes: Vec<u8> = b.iter().copied().skip_while(|x| *x == 0).collect();
        if bytes.first().is_none_or(|f| f & 0x80 != 0) {
            bytes.insert(0, 0);
        }
        der_tlv(&[0x02], &bytes)
    };
    let seq = |items: &[Vec<u8>]| der_tlv(&[0x30], &items.concat());
    let set = |items: &[Vec<u8>]| der_tlv(&[0x31], &items.concat());
    let octets = |v: &[u8]| der_tlv(&[0x04], v);
    let app_id = seq(&[
        set(&[seq(&[octets(b"com.example.pay"), int(7)])]),
        set(&[octets(&[0xAB; 32])]),
    ]);
    let sw = seq(&[
        der_ctx(701, &int(1_735_000_000)),
        der_ctx(709, &octets(&app_id)),
    ]);
    let hw = seq(&[
        der_ctx(1, &set(&[int(2), int(3)])),
        der_ctx(2, &int(3)),
        der_ctx(3, &int(256)),
        der_ctx(5, &set(&[int(4)])),
        der_ctx(10, &int(1)),
        der_ctx(504, &int(2)),
        der_ctx(702, &int(0)),
        der_ctx(
            704,
            &seq(&[
                octets(&[7; 32]),
                vec![0x01, 0x01, 0xff],
                vec![0x0a, 0x01, 0x00],
                octets(&[9; 32]),
            ]),
        ),
        der_ctx(705, &int(140000)),
        der_ctx(706, &int(202406)),
    ]);
    seq(&[
        int(300),
        vec![0x0a, 0x01, 0x01],
        int(300),
        vec![0x0a, 0x01, 0x01],
        octets(b"abc"),
        octets(&[]),
        sw,
        hw,
    ])
}

fn android_chain(leaf_key: &SigningKey) -> Vec<Vec<u8>> {
    let fx = fixture();
    let root = rcgen::Issuer::new(
        cert_params("Fuzz Root", None, 1, true),
        CertKey::new(fx.root_key.clone()),
    );
    let intermediate_key = CertKey::new(key(0x66));
    let intermediate_params = cert_params("Fuzz Android Intermediate", None, 4, true);
    let intermediate = intermediate_params
        .signed_by(&intermediate_key, &root)
        .expect("intermediate");
    let intermediate_issuer = rcgen::Issuer::new(intermediate_params, intermediate_key);
    let mut leaf_params = cert_params("Android Keystore Key", None, 5, false);
    leaf_params
        .custom_extensions
        .push(rcgen::CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 4, 1, 11129, 2, 1, 17],
            android_key_description(),
        ));
    let leaf = leaf_params
        .signed_by(&CertKey::new(leaf_key.clone()), &intermediate_issuer)
        .expect("leaf");
    vec![leaf.der().to_vec(), intermediate.der().to_vec()]
}

// ---------------------------------------------------------------------------
// Apple App Attest (docs/PROTOCOL.md §13)

/// The app id of the App Attest seeds.
const APPLE_APP_ID: &str = "FUZZTEAM01.com.example.pay";
/// The clientDataHash of the App Attest seeds.
const APPLE_CLIENT_DATA: &[u8] = b"fuzz client data";

fn apple_trust(anchors: Vec<TrustAnchor>) -> apple::AppleTrust {
    apple::AppleTrust::new(
        vec![APPLE_APP_ID.into()],
        apple::AppAttestEnvironment::Production,
    )
    .with_anchors(anchors)
}

/// The input as an App Attest attestation object and as an assertion
/// object: no attestation verifies without anchors; an accepted one names
/// the key whose SHA-256 is its key id, with counter 0; an accepted
/// assertion (made by the seed attestation's key) is refused once its
/// counter is stored.
pub fn apple_app_attest(data: &[u8]) -> bool {
    let cdh = sha256(APPLE_CLIENT_DATA);
    assert!(
        apple::verify_attestation(data, &cdh, None, &apple_trust(Vec::new()), NOW).is_err(),
        "an App Attest attestation verified without any trust anchor"
    );
    let attested = match apple::verify_attestation(
        data,
        &cdh,
        None,
        &apple_trust(vec![fixture().root_anchor.clone()]),
        NOW,
    ) {
        Ok(v) => {
            assert_eq!(v.key_id, sha256(&v.public_key), "key id is not the key's");
            assert_eq!(v.counter, 0);
            assert_eq!(v.app_id, APPLE_APP_ID);
            true
        }
        Err(_) => false,
    };
    let _ = apple::attested_public_key(data);
    let asserted = match apple::verify_assertion(data, &cdh, &sec1(&key(0x77)), APPLE_APP_ID, 0) {
        Ok(v) => {
            assert!(v.counter > 0);
            assert!(
                apple::verify_assertion(data, &cdh, &sec1(&key(0x77)), APPLE_APP_ID, v.counter)
                    .is_err(),
                "an App Attest assertion was accepted after its own counter"
            );
            true
        }
        Err(_) => false,
    };
    attested || asserted
}

fn cbor_map(entries: Vec<(&str, ciborium::value::Value)>) -> Vec<u8> {
    let map = ciborium::value::Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (ciborium::value::Value::Text(k.into()), v))
            .collect(),
    );
    let mut out = Vec::new();
    ciborium::ser::into_writer(&map, &mut out).expect("CBOR encodes");
    out
}

/// [attestation, assertion] in Apple's format, by the fuzz root's PKI, for
/// the App Attest key `key(0x77)`.
pub fn apple_seeds() -> Vec<Vec<u8>> {
    use ciborium::value::Value;
    let fx = fixture();
    let app_key = key(0x77);
    let point = sec1(&app_key);
    let key_id = sha256(&point);
    let cdh = sha256(APPLE_CLIENT_DATA);
    let mut auth_data = sha256(APPLE_APP_ID.as_bytes()).to_vec();
    auth_data.push(0x40);
    auth_data.extend_from_slice(&0u32.to_be_bytes());
    auth_data.extend_from_slice(&apple::AppAttestEnvironment::Production.aaguid());
    auth_data.extend_from_slice(&32u16.to_be_bytes());
    auth_data.extend_from_slice(&key_id);
    let mut cose_key = Vec::new();
    ciborium::ser::into_writer(
        &biopay_core::messages::cose_key_from_sec1(&point),
        &mut cose_key,
    )
    .expect("CBOR encodes");
    auth_data.extend_from_slice(&cose_key);
    let nonce = biopay_core::crypto::sha256_parts(&[&auth_data, &cdh]);

    let root = rcgen::Issuer::new(
        cert_params("Fuzz Root", None, 1, true),
        CertKey::new(fx.root_key.clone()),
    );
    let intermediate_key = CertKey::new(key(0x78));
    let intermediate_params = cert_params("Fuzz App Attestation CA", None, 6, true);
    let intermediate = intermediate_params
        .signed_by(&intermediate_key, &root)
        .expect("intermediate");
    let intermediate_issuer = rcgen::Issuer::new(intermediate_params, intermediate_key);
    let mut leaf_params = cert_params("Fuzz App Attest Key", None, 7, false);
    let mut extension = vec![0x30, 0x24, 0xa1, 0x22, 0x04, 0x20];
    extension.extend_from_slice(&nonce);
    leaf_params
        .custom_extensions
        .push(rcgen::CustomExtension::from_oid_content(
            &[1, 2, 840, 113635, 100, 8, 2],
            extension,
        ));
    let leaf = leaf_params
        .signed_by(&CertKey::new(app_key.clone()), &intermediate_issuer)
        .expect("leaf");
    let attestation = cbor_map(vec![
        ("fmt", Value::Text(apple::FORMAT.into())),
        (
            "attStmt",
            Value::Map(vec![
                (
                    Value::Text("x5c".into()),
                    Value::Array(vec![
                        Value::Bytes(leaf.der().to_vec()),
                        Value::Bytes(intermediate.der().to_vec()),
                    ]),
                ),
                (Value::Text("receipt".into()), Value::Bytes(vec![0x30; 8])),
            ]),
        ),
        ("authData", Value::Bytes(auth_data)),
    ]);

    let mut authenticator_data = sha256(APPLE_APP_ID.as_bytes()).to_vec();
    authenticator_data.push(0x40);
    authenticator_data.extend_from_slice(&1u32.to_be_bytes());
    let nonce = biopay_core::crypto::sha256_parts(&[&authenticator_data, &cdh]);
    let sig: Signature = app_key.sign(&nonce);
    let assertion = cbor_map(vec![
        ("signature", Value::Bytes(sig.to_der().as_bytes().to_vec())),
        ("authenticatorData", Value::Bytes(authenticator_data)),
    ]);
    vec![attestation, assertion]
}
