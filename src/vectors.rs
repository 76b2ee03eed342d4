//! Test vectors (docs/PROTOCOL.md §10): generated from fixed seeds by driving
//! the software TEE and the verifier, so every `signature_valid` and
//! `protocol_valid` flag is the result of a real verification, not a label.
//!
//! `biopay vectors --out DIR` writes them; `tests/vectors.rs` regenerates
//! them and compares with the committed `docs/vectors/` byte for byte.

use crate::simulator::{
    AttestationFaults, DeviceConfig, Presentation, SimulatedAppAttest, SoftwareTee, TamperingApp,
    VendorPki,
};
use biopay_core::{
    android::{AndroidPolicy, AndroidTrust},
    apple::{AppAttestEnvironment, AppleTrust},
    cbor, crypto,
    store::{IssuedChallenge, Store},
    AppleKeyRegistration, Authenticator, Client, CredentialId, DangerDeterministicRandom,
    Deregistration, DeviceError, EnrollmentChange, KeyAttestation, ManualClock, MemoryStore,
    Message, MessageKind, Modality, PaymentAssertion, PlatformKeyRegistration,
    PlatformKeystoreClient, PlatformKeystoreSigner, Policy, Rejection, SecurityLevel, Step,
    Transaction, TrustConfig, Verifier,
};
use ciborium::value::Value;
use coset::{iana, CoseSign1, CoseSign1Builder, HeaderBuilder, TaggedCborSerializable};
use p256::ecdsa::{signature::Signer, Signature, SigningKey};
use serde_json::json;
use std::{path::Path, sync::Arc};

/// The relying party of the vectors.
pub const RP_ID: &str = "pay.example.com";
/// The device model of the vectors.
pub const MODEL: &str = "acme-phone-x1";
/// Verification time of the vectors (2026-11-18T11:06:40Z); later steps advance it.
pub const T0: u64 = 1_795_000_000;
/// The Android app package the platform-keystore vectors are attested for.
pub const ANDROID_PACKAGE: &str = "com.example.pay";
/// SHA-256 of the Android app's signing certificate in those vectors.
pub const ANDROID_SIGNING_DIGEST: [u8; 32] = [0xd1; 32];
/// The smallest Android security patch level the vectors' policy accepts.
pub const ANDROID_MIN_PATCH_LEVEL: u64 = 202_401;
/// File (in the vectors directory) holding the vendor root key, the trust
/// anchor of every chain in the vectors (SubjectPublicKeyInfo, PEM).
pub const ROOT_KEY_FILE: &str = "vendor-root.pub.pem";
/// The vendor root certificate (PEM), for reference: trust is in its key.
pub const ROOT_CERT_FILE: &str = "vendor-root.pem";
/// The vendor's intermediate certificate for [`MODEL`] (PEM); the
/// KeyAttestation chains carry it as their second certificate.
pub const INTERMEDIATE_CERT_FILE: &str = "vendor-intermediate.pem";
/// The state every vector is verified against (docs/PROTOCOL.md §10).
pub const SCENARIO_FILE: &str = "scenario.json";
/// The iOS app (`TEAMID.bundle.id`) of the Apple App Attest vectors.
pub const APPLE_APP_ID: &str = "TEAMID1234.com.example.pay";
/// The App Attest environment of those vectors.
pub const APPLE_ENVIRONMENT: AppAttestEnvironment = AppAttestEnvironment::Production;
/// File holding the simulated App Attestation root key (SubjectPublicKeyInfo,
/// PEM, ECDSA P-384): the Apple trust anchor of the vectors, standing in for
/// Apple's App Attestation Root CA.
pub const APPLE_ROOT_KEY_FILE: &str = "app-attest-root.pub.pem";
/// The simulated App Attestation root certificate (PEM), for reference.
pub const APPLE_ROOT_CERT_FILE: &str = "app-attest-root.pem";

/// The verification procedure a statement is submitted to. The relying
/// party's endpoint chooses it, never the bytes (docs/PROTOCOL.md §3.2,
/// "Which procedure applies").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Procedure {
    /// R1–R16 (§6.3), `Verifier::verify_registration`.
    Registration,
    /// A1–A17 (§12.5), `Verifier::verify_platform_registration`.
    PlatformRegistration,
    /// K1–K13 with I1–I10 (§13.8), `Verifier::verify_apple_registration`.
    AppleRegistration,
    /// P1–P20 (§6.4), `Verifier::verify_payment`.
    Payment,
    /// D1–D9 (§6.5), `Verifier::verify_deregistration`.
    Deregistration,
    /// E1–E10 (§6.6), `Verifier::verify_enrollment_change`.
    EnrollmentChange,
}

impl Procedure {
    /// The name used in manifest.json and scenario.json.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registration => "registration",
            Self::PlatformRegistration => "platform_registration",
            Self::AppleRegistration => "apple_registration",
            Self::Payment => "payment",
            Self::Deregistration => "deregistration",
            Self::EnrollmentChange => "enrollment_change",
        }
    }
    /// Parses [`Self::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Registration,
            Self::PlatformRegistration,
            Self::AppleRegistration,
            Self::Payment,
            Self::Deregistration,
            Self::EnrollmentChange,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }
    /// The step that commits an accepted statement of this procedure.
    pub fn commit_step(self) -> Step {
        match self {
            Self::Registration => Step::R16Commit,
            Self::PlatformRegistration => Step::A17Commit,
            Self::AppleRegistration => Step::K13Commit,
            Self::Payment => Step::P20Commit,
            Self::Deregistration => Step::D9Commit,
            Self::EnrollmentChange => Step::E10Commit,
        }
    }
    /// Runs the procedure: `Ok(())` on acceptance.
    pub fn run<S: Store, C: biopay_core::Clock, R: biopay_core::Random>(
        self,
        verifier: &Verifier<S, C, R>,
        statement: &[u8],
    ) -> Result<(), Rejection> {
        self.run_with(verifier, statement, None)
    }

    /// Runs the procedure with the App Attest assertion sent beside a
    /// payment (§13.9; ignored by the other procedures, which take none).
    pub fn run_with<S: Store, C: biopay_core::Clock, R: biopay_core::Random>(
        self,
        verifier: &Verifier<S, C, R>,
        statement: &[u8],
        app_attest_assertion: Option<&[u8]>,
    ) -> Result<(), Rejection> {
        match self {
            Self::Registration => verifier.verify_registration(statement).map(drop),
            Self::PlatformRegistration => {
                verifier.verify_platform_registration(statement).map(drop)
            }
            Self::AppleRegistration => verifier.verify_apple_registration(statement).map(drop),
            Self::Payment => verifier
                .verify_payment_with_app_attest(statement, app_attest_assertion)
                .map(drop),
            Self::Deregistration => verifier.verify_deregistration(statement).map(drop),
            Self::EnrollmentChange => verifier.verify_enrollment_change(statement).map(drop),
        }
    }
}

/// One vector.
#[derive(Debug, Clone)]
pub struct Vector {
    /// File stem.
    pub name: String,
    /// The statement kind.
    pub kind: MessageKind,
    /// The procedure it is submitted to.
    pub procedure: Procedure,
    /// The tagged COSE_Sign1 bytes.
    pub cose: Vec<u8>,
    /// The App Attest assertion object sent beside a payment (§13.9), if any.
    pub app_attest_assertion: Option<Vec<u8>>,
    /// DER SubjectPublicKeyInfo of the key that must verify the signature.
    pub public_key_spki: Vec<u8>,
    /// `"fixed"` (r || s, 64 bytes) or `"der"` (§12.3).
    pub signature_form: &'static str,
    /// Whether the ES256 signature verifies under `public_key_spki` (computed).
    pub signature_valid: bool,
    /// Whether the verifier accepted it in sequence (computed).
    pub protocol_valid: bool,
    /// The deciding step: the rejecting step, or the commit step on acceptance.
    pub step: Step,
    /// The rejection, when not accepted.
    pub reason: Option<String>,
    /// What the vector is, where its name does not say it all.
    pub note: Option<&'static str>,
    /// The state it was verified against (one entry of scenario.json).
    pub state: serde_json::Value,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// SPKI DER of a SEC1 uncompressed P-256 point.
pub fn p256_spki(sec1: &[u8]) -> Vec<u8> {
    let mut der =
        hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap_or_default();
    der.extend_from_slice(sec1);
    der
}

/// Whether a tagged COSE_Sign1's signature verifies under `spki` with the
/// algorithm its protected header names. ES256 is the only algorithm biopay
/// defines, so any other `alg` counts as not verifying. A signature of 64
/// bytes is read as r || s, any other as ASN.1 DER (docs/PROTOCOL.md §12.3).
/// Other headers are not checked: that is the protocol's job.
pub fn signature_verifies(cose: &[u8], spki: &[u8]) -> bool {
    let Ok(sign1) = CoseSign1::from_tagged_slice(cose) else {
        return false;
    };
    if sign1.protected.header.alg != Some(coset::Algorithm::Assigned(iana::Algorithm::ES256)) {
        return false;
    }
    let sec1 = spki.get(26..).unwrap_or_default();
    crypto::verify_es256(
        sec1,
        &sign1.tbs_data(b""),
        &sign1.signature,
        signature_form(cose).1,
    )
}

/// The form of a statement's signature: `("fixed", Fixed)` for 64 bytes,
/// `("der", Der)` otherwise.
fn signature_form(cose: &[u8]) -> (&'static str, crypto::SignatureFormat) {
    match CoseSign1::from_tagged_slice(cose) {
        Ok(s) if s.signature.len() != 64 => ("der", crypto::SignatureFormat::Der),
        _ => ("fixed", crypto::SignatureFormat::Fixed),
    }
}

fn leaf_spki(chain: &[Vec<u8>]) -> Result<Vec<u8>, BoxError> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let leaf = chain.first().ok_or("empty chain")?;
    let (_, cert) = X509Certificate::from_der(leaf).map_err(|e| e.to_string())?;
    Ok(cert.public_key().raw.to_vec())
}

/// s -> n - s on P-256 (an equally valid, "high-S" signature).
fn malleate_s(sig: &[u8]) -> Vec<u8> {
    const N: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63,
        0x25, 0x51,
    ];
    let mut out = sig.to_vec();
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = i16::from(N[i]) - i16::from(sig[32 + i]) - borrow;
        borrow = i16::from(d < 0);
        out[32 + i] = u8::try_from(d.rem_euclid(256)).unwrap_or(0);
    }
    out
}

fn replace_signature(cose: &[u8], sig: Vec<u8>) -> Result<Vec<u8>, BoxError> {
    let mut s = CoseSign1::from_tagged_slice(cose).map_err(|e| e.to_string())?;
    s.signature = sig;
    Ok(s.to_tagged_vec().map_err(|e| e.to_string())?)
}

fn payload_of(cose: &[u8]) -> Result<Vec<u8>, BoxError> {
    let s = CoseSign1::from_tagged_slice(cose).map_err(|e| e.to_string())?;
    Ok(s.payload.ok_or("no payload")?)
}

fn sign_with(
    key: &SigningKey,
    alg: iana::Algorithm,
    payload: Vec<u8>,
) -> Result<Vec<u8>, BoxError> {
    let s = CoseSign1Builder::new()
        .protected(HeaderBuilder::new().algorithm(alg).build())
        .payload(payload)
        .create_signature(b"", |tbs| {
            let sig: Signature = key.sign(tbs);
            sig.to_bytes().to_vec()
        })
        .build();
    Ok(s.to_tagged_vec().map_err(|e| e.to_string())?)
}

fn tx(order: &str, amount_minor: u64) -> Transaction {
    Transaction {
        amount_minor,
        currency: "CNY".into(),
        payee_id: "merchant-0042".into(),
        payee_name: "Coffee Corner".into(),
        order_id: order.into(),
        memo: Some("2 lattes".into()),
    }
}

type VectorVerifier = Verifier<MemoryStore, Arc<ManualClock>, DangerDeterministicRandom>;

/// The challenge and the credential a statement refers to, read from its
/// payload as the procedure decodes it (nothing when it does not decode).
fn references(procedure: Procedure, cose: &[u8]) -> (Option<[u8; 32]>, Option<CredentialId>) {
    let Some((payload, _)) = biopay_core::cose::peek_payload(cose) else {
        return (None, None);
    };
    match procedure {
        Procedure::Registration => KeyAttestation::from_cbor(&payload)
            .map(|a| (Some(a.challenge), None))
            .unwrap_or_default(),
        Procedure::PlatformRegistration => PlatformKeyRegistration::from_cbor(&payload)
            .map(|a| (Some(a.challenge), None))
            .unwrap_or_default(),
        Procedure::AppleRegistration => AppleKeyRegistration::from_cbor(&payload)
            .map(|a| (Some(a.challenge), None))
            .unwrap_or_default(),
        Procedure::Payment => PaymentAssertion::from_cbor(&payload)
            .map(|a| (Some(a.challenge), Some(a.credential_id)))
            .unwrap_or_default(),
        Procedure::Deregistration => Deregistration::from_cbor(&payload)
            .map(|a| (None, Some(a.credential_id)))
            .unwrap_or_default(),
        Procedure::EnrollmentChange => EnrollmentChange::from_cbor(&payload)
            .map(|a| (None, Some(a.credential_id)))
            .unwrap_or_default(),
    }
}

/// The verifier state a statement is checked against, just before it is
/// verified: the clock, the issued challenge it answers (if stored) and the
/// stored record of the credential it names (if any).
fn snapshot(
    verifier: &VectorVerifier,
    clock: &ManualClock,
    procedure: Procedure,
    cose: &[u8],
) -> Result<serde_json::Value, BoxError> {
    let (challenge, credential) = references(procedure, cose);
    let store = verifier.store();
    let challenge = match challenge {
        Some(c) => store.challenge(&c)?,
        None => None,
    };
    let challenge = match challenge {
        None => serde_json::Value::Null,
        Some(entry) => {
            let (kind, encoded, message, counter_at_issue) = match &entry.issued {
                IssuedChallenge::Registration(c) => (
                    "registration",
                    c.to_cbor(),
                    serde_json::to_value(c)?,
                    serde_json::Value::Null,
                ),
                IssuedChallenge::Payment {
                    challenge,
                    counter_at_issue,
                } => (
                    "payment",
                    challenge.to_cbor(),
                    serde_json::to_value(challenge)?,
                    json!(counter_at_issue),
                ),
            };
            json!({
                "kind": kind,
                "encoded": hex::encode(encoded),
                "message": message,
                "counter_at_issue": counter_at_issue,
                "consumed": entry.consumed,
            })
        }
    };
    let credential = match credential {
        Some(id) => store.credential(&id)?,
        None => None,
    };
    Ok(json!({
        "procedure": procedure.as_str(),
        "now": biopay_core::Clock::now(clock),
        "challenge": challenge,
        "credential": credential,
    }))
}

struct Recorder {
    vectors: Vec<Vector>,
}

impl Recorder {
    /// Verifies `cose` with `procedure` and records the vector, with the
    /// state it was verified against.
    #[allow(clippy::too_many_arguments)]
    fn submit(
        &mut self,
        verifier: &VectorVerifier,
        clock: &ManualClock,
        name: &str,
        kind: MessageKind,
        procedure: Procedure,
        cose: &[u8],
        spki: &[u8],
    ) -> Result<(), BoxError> {
        self.submit_with(verifier, clock, name, kind, procedure, cose, spki, None)
    }

    /// [`Self::submit`] with an App Attest assertion beside the statement.
    #[allow(clippy::too_many_arguments)]
    fn submit_with(
        &mut self,
        verifier: &VectorVerifier,
        clock: &ManualClock,
        name: &str,
        kind: MessageKind,
        procedure: Procedure,
        cose: &[u8],
        spki: &[u8],
        app_attest_assertion: Option<&[u8]>,
    ) -> Result<(), BoxError> {
        let state = snapshot(verifier, clock, procedure, cose)?;
        let result = procedure.run_with(verifier, cose, app_attest_assertion);
        self.vectors.push(Vector {
            name: name.into(),
            kind,
            procedure,
            cose: cose.to_vec(),
            app_attest_assertion: app_attest_assertion.map(<[u8]>::to_vec),
            public_key_spki: spki.to_vec(),
            signature_form: signature_form(cose).0,
            signature_valid: signature_verifies(cose, spki),
            protocol_valid: result.is_ok(),
            step: match &result {
                Ok(()) => procedure.commit_step(),
                Err(r) => r.step,
            },
            reason: result.as_ref().err().map(|r| r.to_string()),
            note: None,
            state,
        });
        Ok(())
    }

    /// Fails unless the last vector was accepted (the sequence depends on it).
    fn require_accepted(&self) -> Result<(), BoxError> {
        match self.vectors.last() {
            Some(v) if v.protocol_valid => Ok(()),
            Some(v) => Err(format!("{}: {}", v.name, v.reason.as_deref().unwrap_or("")).into()),
            None => Err("no vector".into()),
        }
    }

    /// Adds a note to the last vector.
    fn note(&mut self, note: &'static str) {
        if let Some(v) = self.vectors.last_mut() {
            v.note = Some(note);
        }
    }
}

/// A platform keystore holding one P-256 key and its attestation chain,
/// signing in ASN.1 DER as Android's `Signature` does (docs/PROTOCOL.md §12.3).
struct DerKeystore {
    key: SigningKey,
    chain: Vec<Vec<u8>>,
}

impl PlatformKeystoreSigner for DerKeystore {
    fn attestation_chain(&self) -> Result<Vec<Vec<u8>>, DeviceError> {
        Ok(self.chain.clone())
    }
    fn sign(&self, data: &[u8]) -> Result<Vec<u8>, DeviceError> {
        let sig: Signature = self.key.sign(data);
        Ok(sig.to_der().as_bytes().to_vec())
    }
}

/// A tagged COSE_Sign1 assembled from its parts, deterministically encoded
/// (for the statement-structure vectors, whose parts no signer would write).
fn assemble(protected: Vec<u8>, payload: Option<Vec<u8>>, signature: Vec<u8>) -> Vec<u8> {
    cbor::to_deterministic_vec(Value::Tag(
        18,
        Box::new(Value::Array(vec![
            Value::Bytes(protected),
            Value::Map(vec![]),
            payload.map_or(Value::Null, Value::Bytes),
            Value::Bytes(signature),
        ])),
    ))
    .unwrap_or_default()
}

/// The Android policy of the platform-keystore vectors.
pub fn android_policy() -> AndroidPolicy {
    AndroidPolicy {
        package_name: Some(ANDROID_PACKAGE.into()),
        signing_cert_digests: vec![ANDROID_SIGNING_DIGEST],
        min_os_patch_level: ANDROID_MIN_PATCH_LEVEL,
        require_strongbox: false,
    }
}

/// What [`generate`] produces: the vectors and the trust they were verified
/// under.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The vectors, in the order they were verified.
    pub vectors: Vec<Vector>,
    /// DER SubjectPublicKeyInfo of the vendor root key (the trust anchor).
    pub root_spki: Vec<u8>,
    /// DER of the vendor root certificate.
    pub root_cert: Vec<u8>,
    /// DER of the vendor intermediate certificate for [`MODEL`].
    pub intermediate_cert: Vec<u8>,
    /// DER SubjectPublicKeyInfo of the simulated App Attestation root key.
    pub apple_root_spki: Vec<u8>,
    /// DER of the simulated App Attestation root certificate.
    pub apple_root_cert: Vec<u8>,
}

/// Generates every vector from fixed seeds.
pub fn generate() -> Result<Generated, BoxError> {
    let clock = Arc::new(ManualClock::new(T0));
    let pki = VendorPki::new("Acme Devices", b"biopay vectors: vendor")?;
    let rogue = VendorPki::new("Rogue Devices", b"biopay vectors: rogue vendor")?;
    let trust = TrustConfig::new().with_model(pki.device_model(
        MODEL,
        &[Modality::Fingerprint, Modality::Face],
        SecurityLevel::Tee,
    ));
    let app_attest = SimulatedAppAttest::from_seed(
        APPLE_APP_ID,
        APPLE_ENVIRONMENT,
        b"biopay vectors: app attest",
    )?;
    let verifier = Verifier::new(
        RP_ID,
        trust,
        Policy::default(),
        MemoryStore::new(),
        clock.clone(),
        DangerDeterministicRandom::new(b"biopay vectors: verifier"),
    )?
    .with_android(AndroidTrust::new(android_policy()).with_anchors(vec![pki.trust_anchor()]))
    .with_apple(
        AppleTrust::new(vec![APPLE_APP_ID.into()], APPLE_ENVIRONMENT)
            .with_anchors(vec![app_attest.trust_anchor()?]),
    );
    let attacker = SigningKey::from_slice(&crypto::sha256(b"biopay vectors: attacker key"))?;
    let attacker_spki = p256_spki(attacker.verifying_key().to_encoded_point(false).as_bytes());
    let dir = tempfile::tempdir()?;
    let mut rec = Recorder {
        vectors: Vec::new(),
    };
    let v = &verifier;
    let ck = clock.as_ref();
    use MessageKind::{
        Deregistration as Dereg, EnrollmentChange as Change, KeyAttestation as Att,
        PaymentAssertion as Pay,
    };

    let mut tee = SoftwareTee::provision(
        &pki,
        DeviceConfig::new(MODEL),
        &dir.path().join("device"),
        Some(b"biopay vectors: device"),
        clock.clone(),
    )?;
    tee.enroll_fingerprint("right-thumb")?;
    tee.enroll_face()?;
    let device_spki = leaf_spki(&tee.attestation_chain())?;
    let mut app = Client::new(RP_ID, tee, clock.clone());
    let finger = || Presentation::Finger("right-thumb".into());

    // Registration (accepted).
    let reg = verifier.registration_challenge(
        b"vector-account-1",
        &[Modality::Fingerprint, Modality::Face],
        SecurityLevel::Tee,
    )?;
    app.authenticator_mut().user().present(finger());
    let attestation = app.register(&reg.to_cbor(), &[Modality::Fingerprint, Modality::Face])?;
    rec.submit(
        v,
        ck,
        "registration",
        Att,
        Procedure::Registration,
        &attestation,
        &device_spki,
    )?;
    rec.require_accepted()?;
    let id: CredentialId = KeyAttestation::from_cbor(&payload_of(&attestation)?)?.credential_id;
    let cred = verifier
        .store()
        .credential(&id)?
        .ok_or("registered credential not stored")?;
    let cred_spki = p256_spki(&cred.public_key);

    let pay = |app: &mut Client<SoftwareTee, Arc<ManualClock>>,
               order: &str|
     -> Result<Vec<u8>, BoxError> {
        let c = verifier.payment_challenge(&id, tx(order, 8800))?;
        app.authenticator_mut()
            .user()
            .present(Presentation::Finger("right-thumb".into()));
        Ok(app.authorize(&c.to_cbor())?)
    };

    // Payment (accepted), then the same bytes again (replay).
    let payment = pay(&mut app, "ORDER-0001")?;
    rec.submit(
        v,
        ck,
        "payment",
        Pay,
        Procedure::Payment,
        &payment,
        &cred_spki,
    )?;
    rec.note(
        "its signature is in high-S form (s > n/2); biopay accepts both forms (PROTOCOL.md §3.2, 'Low-S is not required')",
    );
    rec.submit(
        v,
        ck,
        "payment-replayed",
        Pay,
        Procedure::Payment,
        &payment,
        &cred_spki,
    )?;

    // The accepted signature malleated (s -> n - s) and replayed.
    let sig = CoseSign1::from_tagged_slice(&payment)
        .map_err(|e| e.to_string())?
        .signature;
    let high_s = replace_signature(&payment, malleate_s(&sig))?;
    rec.submit(
        v,
        ck,
        "payment-high-s-replayed",
        Pay,
        Procedure::Payment,
        &high_s,
        &cred_spki,
    )?;
    rec.note(
        "the signature of 'payment' malleated to (r, n - s): since that one is high-S, this one is its LOW-S twin; valid, and rejected as a replay of the consumed challenge",
    );

    // A bit flipped in the signature.
    let fresh = pay(&mut app, "ORDER-0002")?;
    let mut flipped_sig = CoseSign1::from_tagged_slice(&fresh)
        .map_err(|e| e.to_string())?
        .signature;
    flipped_sig[10] ^= 0x01;
    let tampered_sig = replace_signature(&fresh, flipped_sig)?;
    rec.submit(
        v,
        ck,
        "payment-tampered-signature",
        Pay,
        Procedure::Payment,
        &tampered_sig,
        &cred_spki,
    )?;

    // Signed by another key.
    let other_key = sign_with(&attacker, iana::Algorithm::ES256, payload_of(&fresh)?)?;
    rec.submit(
        v,
        ck,
        "payment-other-key",
        Pay,
        Procedure::Payment,
        &other_key,
        &cred_spki,
    )?;

    // alg ES384 in the protected header (algorithm substitution).
    let es384 = sign_with(&attacker, iana::Algorithm::ES384, payload_of(&fresh)?)?;
    rec.submit(
        v,
        ck,
        "payment-alg-es384",
        Pay,
        Procedure::Payment,
        &es384,
        &attacker_spki,
    )?;

    // For another relying party, signed by the genuine credential key.
    let mut wrong_rp = PaymentAssertion::from_cbor(&payload_of(&fresh)?)?;
    wrong_rp.rp_id_hash = crypto::sha256(b"evil.example");
    let wrong_rp =
        app.authenticator_mut()
            .danger_sign_with_credential(RP_ID, &id, wrong_rp.to_cbor())?;
    rec.submit(
        v,
        ck,
        "payment-wrong-rp",
        Pay,
        Procedure::Payment,
        &wrong_rp,
        &cred_spki,
    )?;

    // A malicious app changed the amount before handing the challenge to the TEE.
    let c = verifier.payment_challenge(&id, tx("ORDER-0003", 8800))?;
    app.authenticator_mut().user().present(finger());
    let mut tampering = TamperingApp::new(app.authenticator_mut(), |t: &mut Transaction| {
        t.amount_minor = 880_000
    });
    let tampered_amount = tampering.get_assertion(&c)?;
    drop(tampering);
    rec.submit(
        v,
        ck,
        "payment-tampered-amount",
        Pay,
        Procedure::Payment,
        &tampered_amount,
        &cred_spki,
    )?;

    // Verified after its challenge expired.
    let late = pay(&mut app, "ORDER-0004")?;
    clock.advance(verifier.policy().challenge_ttl_secs + 1);
    rec.submit(
        v,
        ck,
        "payment-expired",
        Pay,
        Procedure::Payment,
        &late,
        &cred_spki,
    )?;

    // A device whose attestation chain ends at an untrusted root.
    let mut rogue_tee = SoftwareTee::provision(
        &rogue,
        DeviceConfig::new(MODEL),
        &dir.path().join("rogue"),
        Some(b"biopay vectors: rogue device"),
        clock.clone(),
    )?;
    rogue_tee.enroll_fingerprint("right-thumb")?;
    let rogue_spki = leaf_spki(&rogue_tee.attestation_chain())?;
    let reg = verifier.registration_challenge(
        b"vector-account-1",
        &[Modality::Fingerprint],
        SecurityLevel::Tee,
    )?;
    rogue_tee.user().present(finger());
    let rogue_att = rogue_tee.make_credential(&reg, &[Modality::Fingerprint])?;
    rec.submit(
        v,
        ck,
        "registration-untrusted-root",
        Att,
        Procedure::Registration,
        &rogue_att,
        &rogue_spki,
    )?;

    // A cloned device: the original pays, then the clone pays with a stale counter.
    let reg = verifier.registration_challenge(
        b"vector-account-2",
        &[Modality::Fingerprint],
        SecurityLevel::Tee,
    )?;
    app.authenticator_mut().user().present(finger());
    let att2 = app.register(&reg.to_cbor(), &[Modality::Fingerprint])?;
    let cred2 = verifier
        .verify_registration(&att2)
        .map_err(|e| e.to_string())?
        .record;
    let cred2_spki = p256_spki(&cred2.public_key);
    app.authenticator()
        .clone_state_to(&dir.path().join("clone"))?;
    let mut clone = SoftwareTee::open(&dir.path().join("clone"), clock.clone())?;
    let c = verifier.payment_challenge(&cred2.credential_id, tx("ORDER-0005", 8800))?;
    app.authenticator_mut().user().present(finger());
    let original = app.authorize(&c.to_cbor())?;
    rec.submit(
        v,
        ck,
        "payment-2",
        Pay,
        Procedure::Payment,
        &original,
        &cred2_spki,
    )?;
    rec.note("the first payment of credential 2 (registered off the vectors; its record is in scenario.json)");
    let c = verifier.payment_challenge(&cred2.credential_id, tx("ORDER-0006", 8800))?;
    clone.user().present(finger());
    let cloned = clone.get_assertion(&c)?;
    rec.submit(
        v,
        ck,
        "payment-cloned-counter",
        Pay,
        Procedure::Payment,
        &cloned,
        &cred2_spki,
    )?;

    // Someone adds a fingerprint, then pays with the first credential.
    app.authenticator_mut().enroll_fingerprint("left-index")?;
    let after_change = pay(&mut app, "ORDER-0007")?;
    rec.submit(
        v,
        ck,
        "payment-enrollment-changed",
        Pay,
        Procedure::Payment,
        &after_change,
        &cred_spki,
    )?;
    let change = app.report_enrollment_change(&id)?;
    rec.submit(
        v,
        ck,
        "enrollment-change",
        Change,
        Procedure::EnrollmentChange,
        &change,
        &cred_spki,
    )?;
    let dereg = app.deregister(&id)?;
    rec.submit(
        v,
        ck,
        "deregistration",
        Dereg,
        Procedure::Deregistration,
        &dereg,
        &cred_spki,
    )?;
    rec.submit(
        v,
        ck,
        "deregistration-replayed",
        Dereg,
        Procedure::Deregistration,
        &dereg,
        &cred_spki,
    )?;

    // Statement structure and error order (PROTOCOL.md §3.2): no payload and
    // alg ES384 is a step-1 error; h'' and a too-deep protected header.
    let fresh_payload = payload_of(&fresh)?;
    let no_payload = assemble(vec![0xa1, 0x01, 0x38, 0x22], None, vec![0x11; 64]);
    rec.submit(
        v,
        ck,
        "payment-no-payload-alg-es384",
        Pay,
        Procedure::Payment,
        &no_payload,
        &cred_spki,
    )?;
    let empty_header = assemble(Vec::new(), Some(fresh_payload.clone()), vec![0x11; 64]);
    rec.submit(
        v,
        ck,
        "payment-empty-protected-header",
        Pay,
        Procedure::Payment,
        &empty_header,
        &cred_spki,
    )?;
    // {1: -7, 4: [[..[]..]]}: 17 nested arrays, the innermost at depth 17.
    let mut deep = vec![0xa2, 0x01, 0x26, 0x04];
    deep.extend([0x81; 16]);
    deep.push(0x80);
    let deep_header = assemble(deep, Some(fresh_payload), vec![0x11; 64]);
    rec.submit(
        v,
        ck,
        "payment-deep-protected-header",
        Pay,
        Procedure::Payment,
        &deep_header,
        &cred_spki,
    )?;

    // The procedure is the endpoint's choice: a genuine payment submitted for
    // deregistration, a genuine registration submitted as a payment.
    rec.submit(
        v,
        ck,
        "payment-as-deregistration",
        Pay,
        Procedure::Deregistration,
        &fresh,
        &cred_spki,
    )?;
    rec.submit(
        v,
        ck,
        "registration-as-payment",
        Att,
        Procedure::Payment,
        &attestation,
        &device_spki,
    )?;

    // A platform-keystore credential (PROTOCOL.md §12): registered with an
    // Android Keystore attestation chain to the vendor root, signing in DER.
    let platform_key =
        SigningKey::from_slice(&crypto::sha256(b"biopay vectors: platform keystore key"))?;
    let platform_public = platform_key
        .verifying_key()
        .to_encoded_point(false)
        .as_bytes()
        .to_vec();
    let platform_spki = p256_spki(&platform_public);
    let reg = verifier.registration_challenge(
        b"vector-account-3",
        &[Modality::Fingerprint],
        SecurityLevel::Tee,
    )?;
    let chain = pki.certify_keystore_key(
        &platform_public,
        &reg.challenge,
        ANDROID_PACKAGE,
        ANDROID_SIGNING_DIGEST,
        false,
    )?;
    let platform_id = biopay_core::routing::prefixed_credential_id(
        reg.credential_id_prefix,
        &crypto::sha256(b"biopay vectors: platform id"),
    )?;
    let mut platform_app = PlatformKeystoreClient::new(
        RP_ID,
        DerKeystore {
            key: platform_key,
            chain,
        },
        clock.clone(),
        platform_id.clone(),
        &[Modality::Fingerprint],
        crypto::sha256(b"biopay vectors: platform epoch"),
    );
    let platform_reg = platform_app.register(&reg.to_cbor())?;
    rec.submit(
        v,
        ck,
        "platform-registration",
        MessageKind::PlatformKeyRegistration,
        Procedure::PlatformRegistration,
        &platform_reg,
        &platform_spki,
    )?;
    rec.require_accepted()?;
    let c = verifier.payment_challenge(&platform_id, tx("ORDER-0008", 8800))?;
    let platform_pay = platform_app.authorize(&c.to_cbor(), Modality::Fingerprint)?;
    rec.submit(
        v,
        ck,
        "payment-platform-der",
        Pay,
        Procedure::Payment,
        &platform_pay,
        &platform_spki,
    )?;

    apple_vectors(&mut rec, v, ck, &clock, &app_attest, &attacker)?;
    Ok(Generated {
        vectors: rec.vectors,
        root_spki: pki.trust_anchor().spki_der,
        root_cert: pki.root_cert_der(),
        intermediate_cert: pki.intermediate_cert_der(MODEL)?,
        apple_root_spki: app_attest.trust_anchor()?.spki_der,
        apple_root_cert: app_attest.root_cert_der(),
    })
}

/// Another app, for the App Attest vectors that name the wrong one.
const OTHER_APPLE_APP_ID: &str = "TEAMID9999.com.example.other";

/// The Apple App Attest vectors (PROTOCOL.md §13.8, §13.9): an
/// AppleKeyRegistration (kind 8) signed in DER by a software stand-in for
/// the Secure Enclave key, the negative cases of K and I steps a second
/// implementation most needs to get right, then payments with and without an
/// App Attest assertion and the J-step negatives.
fn apple_vectors(
    rec: &mut Recorder,
    v: &VectorVerifier,
    ck: &ManualClock,
    clock: &Arc<ManualClock>,
    app_attest: &SimulatedAppAttest,
    attacker: &SigningKey,
) -> Result<(), BoxError> {
    use MessageKind::{AppleKeyRegistration as AppleReg, PaymentAssertion as Pay};
    let enclave_key =
        SigningKey::from_slice(&crypto::sha256(b"biopay vectors: secure enclave key"))?;
    let enclave_public = enclave_key
        .verifying_key()
        .to_encoded_point(false)
        .as_bytes()
        .to_vec();
    let enclave_spki = p256_spki(&enclave_public);
    // The id starts with the account's slot, as the registration challenge's
    // credential_id_prefix asks (PROTOCOL.md §4.1.9).
    let apple_id = biopay_core::routing::prefixed_credential_id(
        biopay_core::routing::credential_id_prefix(RP_ID, b"vector-account-4"),
        &crypto::sha256(b"biopay vectors: apple id"),
    )?;
    let epoch = crypto::sha256(b"biopay vectors: apple epoch");
    let enclave_app = |key: SigningKey| {
        PlatformKeystoreClient::new(
            RP_ID,
            DerKeystore {
                key,
                chain: Vec::new(),
            },
            clock.clone(),
            apple_id.clone(),
            &[Modality::Face],
            epoch,
        )
    };
    let mut app = enclave_app(enclave_key);
    let mut key = app_attest.generate_key()?;
    let reg = v
        .registration_challenge(b"vector-account-4", &[Modality::Face], SecurityLevel::Tee)?
        .to_cbor();
    let hash = app.apple_client_data_hash(&reg, &enclave_public)?;
    let key_id = key.key_id();
    let register = |app: &mut PlatformKeystoreClient<DerKeystore, Arc<ManualClock>>,
                    object: Vec<u8>|
     -> Result<Vec<u8>, BoxError> {
        Ok(app.register_apple(&reg, &enclave_public, key_id, object)?)
    };

    // Rejected first, while the challenge is unconsumed: an attestation
    // whose nonce binds another registration challenge.
    let other_hash = biopay_core::apple::binding_client_data_hash(
        &crypto::sha256(b"biopay vectors: another challenge"),
        RP_ID,
        &enclave_public,
        &apple_id,
    )?;
    let statement = register(&mut app, app_attest.attest_key(&key, &other_hash)?)?;
    rec.submit(
        v,
        ck,
        "apple-registration-other-challenge",
        AppleReg,
        Procedure::AppleRegistration,
        &statement,
        &enclave_spki,
    )?;
    rec.note("the attestation's nonce binds (§13.3) another registration challenge");
    let faulty =
        |faults: AttestationFaults| app_attest.danger_attest_key_with(&key, &hash, &faults);
    for (name, faults, note) in [
        (
            "apple-registration-other-app",
            AttestationFaults {
                app_id: Some(OTHER_APPLE_APP_ID.into()),
                ..AttestationFaults::default()
            },
            "rpIdHash of the attestation is SHA-256 of TEAMID9999.com.example.other, an app the scenario does not allow; its nonce covers that authData",
        ),
        (
            "apple-registration-counter-not-zero",
            AttestationFaults {
                counter: Some(1),
                ..AttestationFaults::default()
            },
            "the attestation's authData counter is 1",
        ),
        (
            "apple-registration-development-aaguid",
            AttestationFaults {
                aaguid: Some(AppAttestEnvironment::Development.aaguid()),
                ..AttestationFaults::default()
            },
            "the attestation carries the development aaguid 'appattestdevelop'; the scenario's environment is production",
        ),
    ] {
        let statement = register(&mut app, faulty(faults)?)?;
        rec.submit(
            v,
            ck,
            name,
            AppleReg,
            Procedure::AppleRegistration,
            &statement,
            &enclave_spki,
        )?;
        rec.note(note);
    }
    // An honest attestation in a registration signed by another key than
    // the Secure Enclave key it carries.
    let object = app_attest.attest_key(&key, &hash)?;
    let mut impostor = enclave_app(attacker.clone());
    let statement = register(&mut impostor, object.clone())?;
    rec.submit(
        v,
        ck,
        "apple-registration-other-signer",
        AppleReg,
        Procedure::AppleRegistration,
        &statement,
        &enclave_spki,
    )?;
    rec.note("a genuine attestation, but the statement is signed by the attacker's key, not by the Secure Enclave key it carries");
    let statement = register(&mut app, object)?;
    rec.submit(
        v,
        ck,
        "apple-registration",
        AppleReg,
        Procedure::AppleRegistration,
        &statement,
        &enclave_spki,
    )?;
    rec.require_accepted()?;
    rec.note("an Apple credential (face, account vector-account-4), signed in DER by the Secure Enclave key; its attestation chain ends at app-attest-root.pub.pem");

    // Payments of 200.00 CNY: above apple_assertion_above (100.00 CNY), so
    // each needs an App Attest assertion over the exact statement bytes.
    let mut pay = |order: &str| -> Result<Vec<u8>, BoxError> {
        let c = v.payment_challenge(&apple_id, tx(order, 20_000))?;
        Ok(app.authorize(&c.to_cbor(), Modality::Face)?)
    };
    let payment = pay("ORDER-0009")?;
    let assertion = app_attest.generate_assertion(&mut key, &crypto::sha256(&payment))?;
    rec.submit_with(
        v,
        ck,
        "payment-apple-assertion",
        Pay,
        Procedure::Payment,
        &payment,
        &enclave_spki,
        Some(&assertion),
    )?;
    rec.require_accepted()?;
    rec.note("with App Attest assertion counter 1 over SHA-256 of the .cose bytes (J1–J4, §13.9); the assertion is the file named by app_attest_assertion");
    let unasserted = pay("ORDER-0010")?;
    rec.submit(
        v,
        ck,
        "payment-apple-no-assertion",
        Pay,
        Procedure::Payment,
        &unasserted,
        &enclave_spki,
    )?;
    let over_other = app_attest.generate_assertion(&mut key, &crypto::sha256(&payment))?;
    rec.submit_with(
        v,
        ck,
        "payment-apple-assertion-other-statement",
        Pay,
        Procedure::Payment,
        &unasserted,
        &enclave_spki,
        Some(&over_other),
    )?;
    rec.note("the statement of payment-apple-no-assertion with a fresh assertion (counter 2) made over the bytes of payment-apple-assertion");
    let other_app = app_attest.danger_assertion_with(
        &key,
        &crypto::sha256(&unasserted),
        3,
        OTHER_APPLE_APP_ID,
    )?;
    rec.submit_with(
        v,
        ck,
        "payment-apple-assertion-other-app",
        Pay,
        Procedure::Payment,
        &unasserted,
        &enclave_spki,
        Some(&other_app),
    )?;
    rec.note("the same statement with an assertion (counter 3) by the attested key whose rpIdHash is SHA-256 of TEAMID9999.com.example.other");
    let stale =
        app_attest.danger_assertion_with(&key, &crypto::sha256(&unasserted), 1, APPLE_APP_ID)?;
    rec.submit_with(
        v,
        ck,
        "payment-apple-assertion-counter-replayed",
        Pay,
        Procedure::Payment,
        &unasserted,
        &enclave_spki,
        Some(&stale),
    )?;
    rec.note("the same statement with an assertion over it whose counter is 1, the App Attest counter already stored");
    Ok(())
}

/// The manifest (docs/PROTOCOL.md §10).
pub fn manifest(vectors: &[Vector]) -> String {
    let items: Vec<_> = vectors
        .iter()
        .map(|v| {
            let mut o = json!({
                "name": v.name,
                "kind": v.kind,
                "procedure": v.procedure.as_str(),
                "cose": format!("{}.cose", v.name),
                "public_key": format!("{}.pub.pem", v.name),
                "signature_form": v.signature_form,
                "signature_valid": v.signature_valid,
                "protocol_valid": v.protocol_valid,
                "step": v.step.code(),
            });
            if let Some(map) = o.as_object_mut() {
                if v.app_attest_assertion.is_some() {
                    map.insert(
                        "app_attest_assertion".into(),
                        json!(assertion_file(&v.name)),
                    );
                }
                if let Some(reason) = &v.reason {
                    map.insert("reason".into(), json!(reason));
                }
                if let Some(note) = v.note {
                    map.insert("note".into(), json!(note));
                }
            }
            o
        })
        .collect();
    pretty(&json!({ "rp_id": RP_ID, "device_model": MODEL, "vectors": items }))
}

/// The file of a vector's App Attest assertion object (CBOR, binary).
fn assertion_file(name: &str) -> String {
    format!("{name}.app-attest-assertion.cbor")
}

fn pretty(v: &serde_json::Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

/// scenario.json (docs/PROTOCOL.md §10): the verifier's configuration and,
/// for every vector in order, the state it is verified against.
pub fn scenario(vectors: &[Vector]) -> String {
    let p = Policy::default();
    let a = android_policy();
    let states: Vec<_> = vectors
        .iter()
        .map(|v| {
            let mut o = v.state.clone();
            if let Some(map) = o.as_object_mut() {
                map.insert("name".into(), json!(v.name));
            }
            o
        })
        .collect();
    pretty(&json!({
        "about": "Verify each vector with a verifier configured as below, whose store holds exactly the entry's challenge and credential record (nothing else) and whose clock reads the entry's `now`; submit the vector's .cose to the entry's procedure. The decision is the manifest's (protocol_valid, step, reason). See docs/PROTOCOL.md §10.",
        "rp_id": RP_ID,
        "policy": {
            "challenge_ttl_secs": p.challenge_ttl_secs,
            "min_security_level": p.min_security_level,
            "require_verified_boot": p.require_verified_boot,
            "max_clock_skew_secs": p.max_clock_skew_secs,
            "max_failed_attempts": p.max_failed_attempts,
            "high_value_thresholds": p.high_value_thresholds,
            "high_value_requirement": p.high_value_requirement,
            "platform_keystore_max_amount": p.platform_keystore_max_amount,
            "max_challenges_per_account": p.max_challenges_per_account,
            "apple_max_amount": p.apple_max_amount,
            "apple_assertion_above": p.apple_assertion_above,
        },
        "trust": {
            "device_models": [{
                "id": MODEL,
                "trust_anchors": [ROOT_KEY_FILE],
                "modalities": [Modality::Fingerprint, Modality::Face],
                "security_level": SecurityLevel::Tee,
                "status": "active",
            }],
            "android": {
                "trust_anchors": [ROOT_KEY_FILE],
                "status_list": [],
                "policy": {
                    "package_name": a.package_name,
                    "signing_cert_digests": a.signing_cert_digests.iter().map(hex::encode).collect::<Vec<_>>(),
                    "min_os_patch_level": a.min_os_patch_level,
                    "require_strongbox": a.require_strongbox,
                },
            },
            "apple": {
                "app_ids": [APPLE_APP_ID],
                "environment": APPLE_ENVIRONMENT,
                "trust_anchors": [APPLE_ROOT_KEY_FILE],
            },
        },
        "vectors": states,
    }))
}

/// PEM of an SPKI, LF line endings.
pub fn spki_pem(spki: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new("PUBLIC KEY", spki.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

fn cert_pem(der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new("CERTIFICATE", der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// Writes `NAME.cose` and `NAME.pub.pem` for every vector (and
/// `NAME.app-attest-assertion.cbor` where one is sent beside it),
/// `manifest.json`, `scenario.json`, the vendor's key and certificates and
/// the simulated App Attestation root key and certificate into `dir`.
pub fn write(dir: &Path, generated: &Generated) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for v in &generated.vectors {
        std::fs::write(dir.join(format!("{}.cose", v.name)), &v.cose)?;
        std::fs::write(
            dir.join(format!("{}.pub.pem", v.name)),
            spki_pem(&v.public_key_spki),
        )?;
        if let Some(assertion) = &v.app_attest_assertion {
            std::fs::write(dir.join(assertion_file(&v.name)), assertion)?;
        }
    }
    std::fs::write(dir.join(ROOT_KEY_FILE), spki_pem(&generated.root_spki))?;
    std::fs::write(dir.join(ROOT_CERT_FILE), cert_pem(&generated.root_cert))?;
    std::fs::write(
        dir.join(INTERMEDIATE_CERT_FILE),
        cert_pem(&generated.intermediate_cert),
    )?;
    std::fs::write(
        dir.join(APPLE_ROOT_KEY_FILE),
        spki_pem(&generated.apple_root_spki),
    )?;
    std::fs::write(
        dir.join(APPLE_ROOT_CERT_FILE),
        cert_pem(&generated.apple_root_cert),
    )?;
    std::fs::write(dir.join(SCENARIO_FILE), scenario(&generated.vectors))?;
    std::fs::write(dir.join("manifest.json"), manifest(&generated.vectors))
}
