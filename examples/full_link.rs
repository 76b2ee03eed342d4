//! A biometric payment end to end on the software TEE: provision a simulated
//! phone, enroll a fingerprint and a face, register, pay 88.00 CNY, then watch
//! attacks fail at the verification step that catches each.
//!
//! Run: `cargo run --example full_link`

use biopay::{decode::decode_to_json, simulator::*, *};
use serde_json::Value;
use std::{process::ExitCode, sync::Arc};

const RP: &str = "pay.example.com";
const MODEL: &str = "acme-phone-x1";
const NOW: u64 = 1_795_000_000; // 2026-11-18T11:06:40Z

type Error = Box<dyn std::error::Error>;

/// Shortens long hex strings so a message fits on a line or two.
fn compact(v: Value) -> Value {
    match v {
        Value::String(s) if s.len() > 20 && s.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Value::String(format!("{}…{}", &s[..8], &s[s.len() - 4..]))
        }
        Value::Array(a) => Value::Array(a.into_iter().map(compact).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, compact(v))).collect()),
        v => v,
    }
}

fn show(arrow: &str, bytes: &[u8]) {
    match decode_to_json(bytes) {
        Ok(json) => {
            let kind = json["kind"].as_str().unwrap_or("?").to_owned();
            let mut body = compact(json["payload"].clone());
            if let Some(o) = body.as_object_mut() {
                o.remove("rp_id_hash");
            }
            let chain = json["cose"]["x5chain"]
                .as_array()
                .map(|c| c.len())
                .unwrap_or(0);
            let framing = if json.get("cose").is_some() {
                format!(
                    "COSE_Sign1/ES256{}, {} bytes",
                    if chain > 0 {
                        format!(", x5chain {chain} certs")
                    } else {
                        String::new()
                    },
                    bytes.len()
                )
            } else {
                format!("CBOR, {} bytes", bytes.len())
            };
            println!("  {arrow} {kind} ({framing})\n      {body}");
        }
        Err(e) => println!("  {arrow} undecodable: {e}"),
    }
}

struct Tally {
    accepted: u32,
    rejected: u32,
    unexpected: u32,
}

impl Tally {
    fn attack<T>(&mut self, name: &str, expected: Step, result: Result<T, Rejection>) {
        match result {
            Err(r) if r.step == expected => {
                self.rejected += 1;
                println!("  ✗ {name}\n      rejected at {}: {}", r.step, r.reason);
            }
            Err(r) => {
                self.unexpected += 1;
                println!(
                    "  ! {name}: rejected at {} but expected {expected}: {}",
                    r.step, r.reason
                );
            }
            Ok(_) => {
                self.unexpected += 1;
                println!("  ! {name}: ACCEPTED");
            }
        }
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(t) if t.unexpected == 0 => {
            println!(
                "\nfull link: {} payment accepted, {} attacks rejected",
                t.accepted, t.rejected
            );
            ExitCode::SUCCESS
        }
        Ok(t) => {
            eprintln!("full link: {} unexpected outcomes", t.unexpected);
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("full link failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<Tally, Error> {
    let clock = Arc::new(ManualClock::new(NOW));
    let dir = tempfile::tempdir()?;

    println!("== Setup: a device vendor, its phone model, and the payment server");
    let vendor = VendorPki::new("Acme Devices", b"full_link vendor")?;
    let trust = TrustConfig::new().with_model(vendor.device_model(
        MODEL,
        &[Modality::Fingerprint, Modality::Face],
        SecurityLevel::Tee,
    ));
    let server = Verifier::new(
        RP,
        trust,
        Policy::default(),
        MemoryStore::new(),
        clock.clone(),
        SystemRandom::new(),
    )?;
    let mut tee = SoftwareTee::provision(
        &vendor,
        DeviceConfig::new(MODEL),
        &dir.path().join("phone"),
        None,
        clock.clone(),
    )?;
    tee.enroll_fingerprint("right-thumb")?;
    tee.enroll_face()?;
    println!("  phone {MODEL}: software TEE with a vendor-certified attestation key; enrolled right thumb and face");
    let mut phone = Client::new(RP, tee, clock.clone());
    let thumb = || Presentation::Finger("right-thumb".into());

    println!("\n== Registration");
    let challenge = server.registration_challenge(
        b"account-7",
        &[Modality::Fingerprint, Modality::Face],
        SecurityLevel::Tee,
    )?;
    show("server → phone", &challenge.to_cbor());
    phone.authenticator_mut().user().present(thumb());
    let attestation = phone.register(
        &challenge.to_cbor(),
        &[Modality::Fingerprint, Modality::Face],
    )?;
    show("phone → server", &attestation);
    let credential = server.verify_registration(&attestation)?.record;
    println!(
        "  ✓ verifier: credential {} registered for account-7 ({:?}, {:?})",
        &credential.credential_id.to_hex()[..12],
        credential.modalities,
        credential.security_level
    );
    // An attacker copies the phone's whole state now (used below).
    phone
        .authenticator()
        .clone_state_to(&dir.path().join("clone"))?;

    println!("\n== Payment: 88.00 CNY to Coffee Corner");
    let tx = Transaction {
        amount_minor: 8800,
        currency: "CNY".into(),
        payee_id: "merchant-0042".into(),
        payee_name: "Coffee Corner".into(),
        order_id: "2026-11-18-000123".into(),
        memo: Some("2 lattes".into()),
    };
    let pay = server.payment_challenge(&credential.credential_id, tx.clone())?;
    show("server → phone", &pay.to_cbor());
    phone.authenticator_mut().user().present(thumb());
    let assertion = phone.authorize(&pay.to_cbor())?;
    let shown = phone
        .authenticator()
        .last_display()
        .unwrap_or_default()
        .to_owned();
    println!("  trusted UI showed:\n      ┌─────────────────────────────────────────\n{}\n      └─────────────────────────────────────────  [confirmed, right thumb matched]", shown.lines().map(|l| format!("      │ {l}")).collect::<Vec<_>>().join("\n"));
    show("phone → server", &assertion);
    let approved = server.verify_payment(&assertion)?;
    println!(
        "  ✓ verifier: payment approved: {} {} to {} (counter {})",
        display::format_amount(
            approved.transaction.amount_minor,
            &approved.transaction.currency
        ),
        approved.transaction.currency,
        approved.transaction.payee_name,
        approved.counter
    );
    let mut tally = Tally {
        accepted: 1,
        rejected: 0,
        unexpected: 0,
    };

    println!("\n== Attacks");
    tally.attack(
        "replay: the same assertion sent again",
        Step::P9Challenge,
        server.verify_payment(&assertion),
    );

    let c = server.payment_challenge(
        &credential.credential_id,
        Transaction {
            order_id: "2026-11-18-000124".into(),
            ..tx.clone()
        },
    )?;
    phone.authenticator_mut().user().present(thumb());
    let mut malware = TamperingApp::new(phone.authenticator_mut(), |t: &mut Transaction| {
        t.amount_minor = 880_000;
        t.payee_name = "Totally Legit Shop".into();
    });
    let tampered = malware.get_assertion(&c)?;
    drop(malware);
    tally.attack(
        "malicious app: changed the amount to 8800.00 before the TEE saw it",
        Step::P12TransactionHash,
        server.verify_payment(&tampered),
    );

    let c = server.payment_challenge(
        &credential.credential_id,
        Transaction {
            order_id: "2026-11-18-000125".into(),
            ..tx.clone()
        },
    )?;
    phone.authenticator_mut().user().present(thumb());
    let late = phone.authorize(&c.to_cbor())?;
    clock.advance(server.policy().challenge_ttl_secs + 60);
    tally.attack(
        "stale: an assertion held back until its challenge expired",
        Step::P10ChallengeExpiry,
        server.verify_payment(&late),
    );

    let mut clone = SoftwareTee::open(&dir.path().join("clone"), clock.clone())?;
    let c = server.payment_challenge(
        &credential.credential_id,
        Transaction {
            order_id: "2026-11-18-000126".into(),
            ..tx.clone()
        },
    )?;
    clone.user().present(thumb());
    let cloned = clone.get_assertion(&c)?;
    tally.attack(
        "cloned device: a copy of the phone's state pays with a stale counter",
        Step::P19Counter,
        server.verify_payment(&cloned),
    );
    println!(
        "      credential is now {:?}",
        server
            .store()
            .credential(&credential.credential_id)?
            .map(|c| c.status)
    );

    let rogue_vendor = VendorPki::new("Rogue Devices", b"full_link rogue")?;
    let mut rogue = SoftwareTee::provision(
        &rogue_vendor,
        DeviceConfig::new(MODEL),
        &dir.path().join("rogue"),
        None,
        clock.clone(),
    )?;
    rogue.enroll_fingerprint("right-thumb")?;
    let c = server.registration_challenge(
        b"account-7",
        &[Modality::Fingerprint],
        SecurityLevel::Tee,
    )?;
    rogue.user().present(thumb());
    let fake = rogue.make_credential(&c, &[Modality::Fingerprint])?;
    tally.attack(
        "fake device: attestation chain from an untrusted root",
        Step::R5AttestationChain,
        server.verify_registration(&fake),
    );

    // A fresh credential, then someone adds their own finger and pays with it.
    let c = server.registration_challenge(
        b"account-7",
        &[Modality::Fingerprint],
        SecurityLevel::Tee,
    )?;
    phone.authenticator_mut().user().present(thumb());
    let second = server
        .verify_registration(&phone.register(&c.to_cbor(), &[Modality::Fingerprint])?)?
        .record;
    phone
        .authenticator_mut()
        .enroll_fingerprint("intruder-index")?;
    let c = server.payment_challenge(
        &second.credential_id,
        Transaction {
            order_id: "2026-11-18-000127".into(),
            ..tx.clone()
        },
    )?;
    phone
        .authenticator_mut()
        .user()
        .present(Presentation::Finger("intruder-index".into()));
    let intruder = phone.authorize(&c.to_cbor())?;
    tally.attack(
        "enrollment change: someone added a fingerprint and paid with it",
        Step::P15EnrollmentEpoch,
        server.verify_payment(&intruder),
    );

    // The vendor's model is revoked (e.g. its TEE was broken).
    let c = server.registration_challenge(b"account-7", &[Modality::Face], SecurityLevel::Tee)?;
    phone.authenticator_mut().user().present(Presentation::Face);
    let third = server
        .verify_registration(&phone.register(&c.to_cbor(), &[Modality::Face])?)?
        .record;
    let c = server.payment_challenge(
        &third.credential_id,
        Transaction {
            order_id: "2026-11-18-000128".into(),
            ..tx
        },
    )?;
    phone.authenticator_mut().user().present(Presentation::Face);
    let after_revocation = phone.authorize(&c.to_cbor())?;
    server.set_model_status(MODEL, ModelStatus::Revoked);
    tally.attack(
        "revoked device model: the model was revoked before the payment arrived",
        Step::P7DeviceModel,
        server.verify_payment(&after_revocation),
    );

    Ok(tally)
}
