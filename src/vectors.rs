//! Test vectors (docs/PROTOCOL.md §10): generated from fixed seeds by driving
//! the software TEE and the verifier, so every `signature_valid` and
//! `protocol_valid` flag is the result of a real verification, not a label.
//!
//! `biopay vectors --out DIR` writes them; `tests/vectors.rs` regenerates
//! them and compares with the committed `docs/vectors/` byte for byte.

use crate::simulator::{DeviceConfig, Presentation, SoftwareTee, TamperingApp, VendorPki};
use biopay_core::{
    crypto, Authenticator, Client, CredentialId, DangerDeterministicRandom, ManualClock,
    MemoryStore, Message, MessageKind, Modality, PaymentAssertion, Policy, Rejection,
    SecurityLevel, Transaction, TrustConfig, Verifier,
};
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

/// One vector.
#[derive(Debug, Clone)]
pub struct Vector {
    /// File stem.
    pub name: String,
    /// The statement kind.
    pub kind: MessageKind,
    /// The tagged COSE_Sign1 bytes.
    pub cose: Vec<u8>,
    /// DER SubjectPublicKeyInfo of the key that must verify the signature.
    pub public_key_spki: Vec<u8>,
    /// Whether the ES256 signature verifies under `public_key_spki` (computed).
    pub signature_valid: bool,
    /// Whether the verifier accepted it in sequence (computed).
    pub protocol_valid: bool,
    /// The rejection, when not accepted.
    pub reason: Option<String>,
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
/// defines, so any other `alg` counts as not verifying. Other headers are not
/// checked: that is the protocol's job.
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
        crypto::SignatureFormat::Fixed,
    )
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

struct Recorder(Vec<Vector>);

impl Recorder {
    fn add<T>(
        &mut self,
        name: &str,
        kind: MessageKind,
        cose: &[u8],
        spki: &[u8],
        result: Result<T, Rejection>,
    ) {
        self.0.push(Vector {
            name: name.into(),
            kind,
            cose: cose.to_vec(),
            public_key_spki: spki.to_vec(),
            signature_valid: signature_verifies(cose, spki),
            protocol_valid: result.is_ok(),
            reason: result.err().map(|r| r.to_string()),
        });
    }
}

/// Generates every vector from fixed seeds.
pub fn generate() -> Result<Vec<Vector>, BoxError> {
    let clock = Arc::new(ManualClock::new(T0));
    let pki = VendorPki::new("Acme Devices", b"biopay vectors: vendor")?;
    let rogue = VendorPki::new("Rogue Devices", b"biopay vectors: rogue vendor")?;
    let trust = TrustConfig::new().with_model(pki.device_model(
        MODEL,
        &[Modality::Fingerprint, Modality::Face],
        SecurityLevel::Tee,
    ));
    let verifier = Verifier::new(
        RP_ID,
        trust,
        Policy::default(),
        MemoryStore::new(),
        clock.clone(),
        DangerDeterministicRandom::new(b"biopay vectors: verifier"),
    )?;
    let attacker = SigningKey::from_slice(&crypto::sha256(b"biopay vectors: attacker key"))?;
    let attacker_spki = p256_spki(attacker.verifying_key().to_encoded_point(false).as_bytes());
    let dir = tempfile::tempdir()?;
    let mut rec = Recorder(Vec::new());

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
    let registered = verifier.verify_registration(&attestation);
    let cred = registered
        .as_ref()
        .map_err(|e| e.to_string())?
        .record
        .clone();
    let cred_spki = p256_spki(&cred.public_key);
    rec.add(
        "registration",
        MessageKind::KeyAttestation,
        &attestation,
        &device_spki,
        registered,
    );
    let id: CredentialId = cred.credential_id.clone();

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
    rec.add(
        "payment",
        MessageKind::PaymentAssertion,
        &payment,
        &cred_spki,
        verifier.verify_payment(&payment),
    );
    rec.add(
        "payment-replayed",
        MessageKind::PaymentAssertion,
        &payment,
        &cred_spki,
        verifier.verify_payment(&payment),
    );

    // The accepted signature malleated to high-S and replayed.
    let sig = CoseSign1::from_tagged_slice(&payment)
        .map_err(|e| e.to_string())?
        .signature;
    let high_s = replace_signature(&payment, malleate_s(&sig))?;
    rec.add(
        "payment-high-s-replayed",
        MessageKind::PaymentAssertion,
        &high_s,
        &cred_spki,
        verifier.verify_payment(&high_s),
    );

    // A bit flipped in the signature.
    let fresh = pay(&mut app, "ORDER-0002")?;
    let mut flipped_sig = CoseSign1::from_tagged_slice(&fresh)
        .map_err(|e| e.to_string())?
        .signature;
    flipped_sig[10] ^= 0x01;
    let tampered_sig = replace_signature(&fresh, flipped_sig)?;
    rec.add(
        "payment-tampered-signature",
        MessageKind::PaymentAssertion,
        &tampered_sig,
        &cred_spki,
        verifier.verify_payment(&tampered_sig),
    );

    // Signed by another key.
    let other_key = sign_with(&attacker, iana::Algorithm::ES256, payload_of(&fresh)?)?;
    rec.add(
        "payment-other-key",
        MessageKind::PaymentAssertion,
        &other_key,
        &cred_spki,
        verifier.verify_payment(&other_key),
    );

    // alg ES384 in the protected header (algorithm substitution).
    let es384 = sign_with(&attacker, iana::Algorithm::ES384, payload_of(&fresh)?)?;
    rec.add(
        "payment-alg-es384",
        MessageKind::PaymentAssertion,
        &es384,
        &attacker_spki,
        verifier.verify_payment(&es384),
    );

    // For another relying party, signed by the genuine credential key.
    let mut wrong_rp = PaymentAssertion::from_cbor(&payload_of(&fresh)?)?;
    wrong_rp.rp_id_hash = crypto::sha256(b"evil.example");
    let wrong_rp =
        app.authenticator_mut()
            .danger_sign_with_credential(RP_ID, &id, wrong_rp.to_cbor())?;
    rec.add(
        "payment-wrong-rp",
        MessageKind::PaymentAssertion,
        &wrong_rp,
        &cred_spki,
        verifier.verify_payment(&wrong_rp),
    );

    // A malicious app changed the amount before handing the challenge to the TEE.
    let c = verifier.payment_challenge(&id, tx("ORDER-0003", 8800))?;
    app.authenticator_mut().user().present(finger());
    let mut tampering = TamperingApp::new(app.authenticator_mut(), |t: &mut Transaction| {
        t.amount_minor = 880_000
    });
    let tampered_amount = tampering.get_assertion(&c)?;
    drop(tampering);
    rec.add(
        "payment-tampered-amount",
        MessageKind::PaymentAssertion,
        &tampered_amount,
        &cred_spki,
        verifier.verify_payment(&tampered_amount),
    );

    // Verified after its challenge expired.
    let late = pay(&mut app, "ORDER-0004")?;
    clock.advance(verifier.policy().challenge_ttl_secs + 1);
    rec.add(
        "payment-expired",
        MessageKind::PaymentAssertion,
        &late,
        &cred_spki,
        verifier.verify_payment(&late),
    );

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
    rec.add(
        "registration-untrusted-root",
        MessageKind::KeyAttestation,
        &rogue_att,
        &rogue_spki,
        verifier.verify_registration(&rogue_att),
    );

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
    rec.add(
        "payment-2",
        MessageKind::PaymentAssertion,
        &original,
        &cred2_spki,
        verifier.verify_payment(&original),
    );
    let c = verifier.payment_challenge(&cred2.credential_id, tx("ORDER-0006", 8800))?;
    clone.user().present(finger());
    let cloned = clone.get_assertion(&c)?;
    rec.add(
        "payment-cloned-counter",
        MessageKind::PaymentAssertion,
        &cloned,
        &cred2_spki,
        verifier.verify_payment(&cloned),
    );

    // Someone adds a fingerprint, then pays with the first credential.
    app.authenticator_mut().enroll_fingerprint("left-index")?;
    let after_change = pay(&mut app, "ORDER-0007")?;
    rec.add(
        "payment-enrollment-changed",
        MessageKind::PaymentAssertion,
        &after_change,
        &cred_spki,
        verifier.verify_payment(&after_change),
    );
    let change = app.report_enrollment_change(&id)?;
    rec.add(
        "enrollment-change",
        MessageKind::EnrollmentChange,
        &change,
        &cred_spki,
        verifier.verify_enrollment_change(&change),
    );
    let dereg = app.deregister(&id)?;
    rec.add(
        "deregistration",
        MessageKind::Deregistration,
        &dereg,
        &cred_spki,
        verifier.verify_deregistration(&dereg),
    );
    rec.add(
        "deregistration-replayed",
        MessageKind::Deregistration,
        &dereg,
        &cred_spki,
        verifier.verify_deregistration(&dereg),
    );
    Ok(rec.0)
}

/// The manifest (docs/PROTOCOL.md §10).
pub fn manifest(vectors: &[Vector]) -> String {
    let items: Vec<_> = vectors
        .iter()
        .map(|v| {
            let mut o = json!({
                "name": v.name,
                "kind": v.kind,
                "cose": format!("{}.cose", v.name),
                "public_key": format!("{}.pub.pem", v.name),
                "signature_valid": v.signature_valid,
                "protocol_valid": v.protocol_valid,
            });
            if let (Some(reason), Some(map)) = (&v.reason, o.as_object_mut()) {
                map.insert("reason".into(), json!(reason));
            }
            o
        })
        .collect();
    let mut s = serde_json::to_string_pretty(
        &json!({ "rp_id": RP_ID, "device_model": MODEL, "vectors": items }),
    )
    .unwrap_or_default();
    s.push('\n');
    s
}

/// PEM of an SPKI, LF line endings.
pub fn spki_pem(spki: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new("PUBLIC KEY", spki.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// Writes `NAME.cose`, `NAME.pub.pem` and `manifest.json` into `dir`.
pub fn write(dir: &Path, vectors: &[Vector]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for v in vectors {
        std::fs::write(dir.join(format!("{}.cose", v.name)), &v.cose)?;
        std::fs::write(
            dir.join(format!("{}.pub.pem", v.name)),
            spki_pem(&v.public_key_spki),
        )?;
    }
    std::fs::write(dir.join("manifest.json"), manifest(vectors))
}
