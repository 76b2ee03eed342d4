//! Every vector's decision is reproducible from the files in docs/vectors
//! alone (docs/PROTOCOL.md §10): for each entry of `scenario.json`, a fresh
//! verifier is configured from the file (policy, device model, Android
//! trust, the vendor root key from `vendor-root.pub.pem`, Apple trust with
//! the simulated App Attestation root key from `app-attest-root.pub.pem`), a fresh
//! `MemoryStore` receives exactly the entry's issued challenge and credential
//! record through the public `Store` trait, the clock reads the entry's
//! `now`, and the vector's `.cose` is submitted to the entry's procedure
//! (with the App Attest assertion file the manifest names, if any). The
//! decision must be the manifest's: accepted or not, the deciding step and
//! the reason. Nothing here calls the generator.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use biopay::{
    android::{AndroidPolicy, AndroidTrust},
    apple::{AppAttestEnvironment, AppleTrust},
    store::{AppAttestKey, Decision, DecisionKind, IssuedChallenge, Store},
    CredentialId, CredentialKind, CredentialRecord, CredentialStatus, DeviceModel,
    HighValueRequirement, ManualClock, MemoryStore, Message, Modality, ModelStatus,
    PaymentChallenge, Policy, RegistrationChallenge, SecurityLevel, SystemRandom, TrustAnchor,
    TrustConfig, Verifier,
};
use serde_json::Value;
use std::{collections::BTreeMap, path::Path};

fn dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/vectors"))
}

fn read_json(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(dir().join(name)).unwrap()).unwrap()
}

fn anchor(file: &Value) -> TrustAnchor {
    let file = file.as_str().unwrap();
    let pem = pem::parse(std::fs::read(dir().join(file)).unwrap()).unwrap();
    assert_eq!(pem.tag(), "PUBLIC KEY", "{file}");
    TrustAnchor {
        name: file.into(),
        spki_der: pem.contents().to_vec(),
    }
}

fn hex_of(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

fn modality(v: &Value) -> Modality {
    match v.as_str().unwrap() {
        "fingerprint" => Modality::Fingerprint,
        "face" => Modality::Face,
        other => panic!("modality {other}"),
    }
}

fn level(v: &Value) -> SecurityLevel {
    match v.as_str().unwrap() {
        "software" => SecurityLevel::Software,
        "tee" => SecurityLevel::Tee,
        "strong_box" => SecurityLevel::StrongBox,
        other => panic!("security level {other}"),
    }
}

fn amounts(v: &Value) -> BTreeMap<String, u64> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect()
}

fn policy(p: &Value) -> Policy {
    Policy {
        challenge_ttl_secs: p["challenge_ttl_secs"].as_u64().unwrap(),
        min_security_level: level(&p["min_security_level"]),
        require_verified_boot: p["require_verified_boot"].as_bool().unwrap(),
        max_clock_skew_secs: p["max_clock_skew_secs"].as_u64().unwrap(),
        max_failed_attempts: u32::try_from(p["max_failed_attempts"].as_u64().unwrap()).unwrap(),
        high_value_thresholds: amounts(&p["high_value_thresholds"]),
        high_value_requirement: match p["high_value_requirement"].as_str().unwrap() {
            "face_with_liveness" => HighValueRequirement::FaceWithLiveness,
            "strong_box" => HighValueRequirement::StrongBox,
            "face_with_liveness_or_strong_box" => HighValueRequirement::FaceWithLivenessOrStrongBox,
            other => panic!("requirement {other}"),
        },
        platform_keystore_max_amount: amounts(&p["platform_keystore_max_amount"]),
        max_challenges_per_account: u32::try_from(
            p["max_challenges_per_account"].as_u64().unwrap(),
        )
        .unwrap(),
        apple_max_amount: amounts(&p["apple_max_amount"]),
        apple_assertion_above: amounts(&p["apple_assertion_above"]),
    }
}

fn trust(t: &Value) -> TrustConfig {
    let mut config = TrustConfig::new();
    for m in t["device_models"].as_array().unwrap() {
        assert_eq!(m["status"], "active");
        config = config.with_model(DeviceModel {
            id: m["id"].as_str().unwrap().into(),
            trust_anchors: m["trust_anchors"]
                .as_array()
                .unwrap()
                .iter()
                .map(anchor)
                .collect(),
            modalities: m["modalities"]
                .as_array()
                .unwrap()
                .iter()
                .map(modality)
                .collect(),
            security_level: level(&m["security_level"]),
            status: ModelStatus::Active,
        });
    }
    config
}

fn android(a: &Value) -> AndroidTrust {
    let p = &a["policy"];
    assert_eq!(a["status_list"], Value::Array(vec![]));
    AndroidTrust::new(AndroidPolicy {
        package_name: p["package_name"].as_str().map(String::from),
        signing_cert_digests: p["signing_cert_digests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| hex_of(d).try_into().unwrap())
            .collect(),
        min_os_patch_level: p["min_os_patch_level"].as_u64().unwrap(),
        require_strongbox: p["require_strongbox"].as_bool().unwrap(),
    })
    .with_anchors(
        a["trust_anchors"]
            .as_array()
            .unwrap()
            .iter()
            .map(anchor)
            .collect(),
    )
}

fn apple(a: &Value) -> AppleTrust {
    AppleTrust::new(
        a["app_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|id| id.as_str().unwrap().to_owned())
            .collect(),
        environment(&a["environment"]),
    )
    .with_anchors(
        a["trust_anchors"]
            .as_array()
            .unwrap()
            .iter()
            .map(anchor)
            .collect(),
    )
}

fn environment(v: &Value) -> AppAttestEnvironment {
    v.as_str().unwrap().parse().unwrap()
}

fn app_attest(k: &Value) -> Option<AppAttestKey> {
    if k.is_null() {
        return None;
    }
    Some(AppAttestKey {
        key_id: hex_of(&k["key_id"]).try_into().unwrap(),
        public_key: hex_of(&k["public_key"]),
        app_id: k["app_id"].as_str().unwrap().into(),
        environment: environment(&k["environment"]),
        counter: u32::try_from(k["counter"].as_u64().unwrap()).unwrap(),
        receipt: hex_of(&k["receipt"]),
    })
}

fn record(c: &Value) -> CredentialRecord {
    CredentialRecord {
        credential_id: CredentialId::new(hex_of(&c["credential_id"])).unwrap(),
        rp_id: c["rp_id"].as_str().unwrap().into(),
        account_handle: hex_of(&c["account_handle"]),
        public_key: hex_of(&c["public_key"]),
        modalities: c["modalities"]
            .as_array()
            .unwrap()
            .iter()
            .map(modality)
            .collect(),
        enrollment_epoch: hex_of(&c["enrollment_epoch"]).try_into().unwrap(),
        security_level: level(&c["security_level"]),
        kind: CredentialKind::parse(c["kind"].as_str().unwrap()).unwrap(),
        device_model: c["device_model"].as_str().unwrap().into(),
        counter: c["counter"].as_u64().unwrap(),
        status: CredentialStatus::parse(c["status"].as_str().unwrap()).unwrap(),
        registered_at: c["registered_at"].as_u64().unwrap(),
        app_attest: app_attest(&c["app_attest"]),
    }
}

/// A verifier configured from the scenario (trust `t`), its clock at `now`.
fn verifier(
    scenario: &Value,
    t: &Value,
    now: u64,
) -> Verifier<MemoryStore, ManualClock, SystemRandom> {
    Verifier::new(
        scenario["rp_id"].as_str().unwrap(),
        trust(t),
        policy(&scenario["policy"]),
        MemoryStore::new(),
        ManualClock::new(now),
        SystemRandom::new(),
    )
    .unwrap()
    .with_android(android(&t["android"]))
    .with_apple(apple(&t["apple"]))
}

/// Puts the entry's challenge and credential record into `store`, using only
/// the public `Store` operations.
fn populate(store: &MemoryStore, entry: &Value, now: u64) {
    let decision = |id: &CredentialId, kind| Decision {
        kind,
        credential_id: id.clone(),
        statement_hash: [0; 32],
        at: now,
    };
    let c = &entry["challenge"];
    let mut consumed_payment = None;
    if !c.is_null() {
        let bytes = hex_of(&c["encoded"]);
        let issued = match c["kind"].as_str().unwrap() {
            "registration" => {
                assert_eq!(c["consumed"], false, "not needed by any vector");
                IssuedChallenge::Registration(RegistrationChallenge::from_cbor(&bytes).unwrap())
            }
            "payment" => IssuedChallenge::Payment {
                challenge: PaymentChallenge::from_cbor(&bytes).unwrap(),
                counter_at_issue: c["counter_at_issue"].as_u64().unwrap(),
            },
            other => panic!("challenge kind {other}"),
        };
        if c["consumed"] == true {
            consumed_payment = Some(*issued.challenge());
        }
        assert!(store.insert_challenge(issued, None).unwrap());
    }
    let cred = &entry["credential"];
    if cred.is_null() {
        assert!(consumed_payment.is_none());
        return;
    }
    let wanted = record(cred);
    // A credential enters a store by a registration commit, which consumes a
    // registration challenge: a placeholder one, expired long ago.
    let placeholder = RegistrationChallenge {
        rp_id: wanted.rp_id.clone(),
        account_handle: wanted.account_handle.clone(),
        challenge: [0xee; 32],
        issued_at: 0,
        expires_at: 1,
        accepted_modalities: wanted.modalities.clone(),
        required_assurance: SecurityLevel::Tee,
        credential_id_prefix: biopay::routing::credential_id_prefix(
            &wanted.rp_id,
            &wanted.account_handle,
        ),
    };
    assert!(store
        .insert_challenge(IssuedChallenge::Registration(placeholder), None)
        .unwrap());
    let mut inserted = wanted.clone();
    if consumed_payment.is_some() {
        // The challenge was consumed by an accepted payment, which set the
        // counter: replay that commit.
        inserted.counter = wanted.counter.checked_sub(1).unwrap();
        inserted.status = CredentialStatus::Active;
    }
    store
        .commit_registration(
            &[0xee; 32],
            &inserted,
            &decision(&wanted.credential_id, DecisionKind::Registration),
        )
        .unwrap();
    if let Some(ch) = consumed_payment {
        store
            .commit_payment(
                &ch,
                &wanted.credential_id,
                wanted.counter,
                None,
                &decision(&wanted.credential_id, DecisionKind::Payment),
            )
            .unwrap();
        if wanted.status != CredentialStatus::Active {
            store
                .set_credential_status(&wanted.credential_id, wanted.status)
                .unwrap();
        }
    }
    assert_eq!(
        store.credential(&wanted.credential_id).unwrap().as_ref(),
        Some(&wanted),
        "the store holds the scenario's record"
    );
}

#[test]
fn every_vector_is_decided_as_the_manifest_says_from_the_files_alone() {
    let scenario = read_json("scenario.json");
    let manifest = read_json("manifest.json");
    let entries = scenario["vectors"].as_array().unwrap();
    let vectors = manifest["vectors"].as_array().unwrap();
    assert_eq!(entries.len(), vectors.len());
    assert!(vectors.len() >= 24);
    let (mut accepted, mut rejected) = (0, 0);
    for (entry, v) in entries.iter().zip(vectors) {
        let name = v["name"].as_str().unwrap();
        assert_eq!(
            entry["name"], v["name"],
            "scenario and manifest in the same order"
        );
        assert_eq!(entry["procedure"], v["procedure"], "{name}");
        let now = entry["now"].as_u64().unwrap();
        let verifier = verifier(&scenario, &scenario["trust"], now);
        populate(verifier.store(), entry, now);
        let cose = std::fs::read(dir().join(v["cose"].as_str().unwrap())).unwrap();
        let assertion = v
            .get("app_attest_assertion")
            .map(|f| std::fs::read(dir().join(f.as_str().unwrap())).unwrap());
        assert!(
            assertion.is_none() || entry["procedure"] == "payment",
            "{name}: only payments carry an App Attest assertion"
        );
        let result = match entry["procedure"].as_str().unwrap() {
            "registration" => verifier.verify_registration(&cose).map(drop),
            "platform_registration" => verifier.verify_platform_registration(&cose).map(drop),
            "apple_registration" => verifier.verify_apple_registration(&cose).map(drop),
            "payment" => verifier
                .verify_payment_with_app_attest(&cose, assertion.as_deref())
                .map(drop),
            "deregistration" => verifier.verify_deregistration(&cose).map(drop),
            "enrollment_change" => verifier.verify_enrollment_change(&cose).map(drop),
            other => panic!("{name}: procedure {other}"),
        };
        assert_eq!(
            result.is_ok(),
            v["protocol_valid"].as_bool().unwrap(),
            "{name}: {result:?}"
        );
        match result {
            Ok(()) => {
                accepted += 1;
                let decisions = verifier.store().decisions();
                let last = decisions.last().unwrap();
                assert_eq!(last.at, now, "{name}");
                assert_eq!(last.kind.commit_step().code(), v["step"], "{name}");
            }
            Err(r) => {
                rejected += 1;
                assert_eq!(r.step.code(), v["step"], "{name}");
                assert_eq!(Some(r.to_string().as_str()), v["reason"].as_str(), "{name}");
            }
        }
    }
    assert!(
        accepted >= 9 && rejected >= 24,
        "{accepted} accepted, {rejected} rejected"
    );
    // The Apple vectors are among them: a kind-8 registration and a payment
    // with an App Attest assertion, each accepted.
    let accepted_where =
        |f: &dyn Fn(&Value) -> bool| vectors.iter().any(|v| f(v) && v["protocol_valid"] == true);
    assert!(accepted_where(&|v| v["procedure"] == "apple_registration"));
    assert!(accepted_where(&|v| v.get("app_attest_assertion").is_some()));
}

/// The trust files are what the chains need: the registration's chain does
/// not verify when the anchor is another key (so the root file is used, not
/// decorative).
#[test]
fn the_registration_vector_needs_the_shipped_root_key() {
    let scenario = read_json("scenario.json");
    let entry = &scenario["vectors"][0];
    assert_eq!(entry["name"], "registration");
    let mut t = scenario["trust"].clone();
    t["device_models"][0]["trust_anchors"] = serde_json::json!(["payment.pub.pem"]);
    let now = entry["now"].as_u64().unwrap();
    let verifier = verifier(&scenario, &t, now);
    populate(verifier.store(), entry, now);
    let cose = std::fs::read(dir().join("registration.cose")).unwrap();
    let r = verifier.verify_registration(&cose).unwrap_err();
    assert_eq!(r.step.code(), "R5");
}

fn entry<'a>(scenario: &'a Value, name: &str) -> &'a Value {
    scenario["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no vector {name}"))
}

/// The same for Apple: the accepted `apple-registration` is refused at
/// `I2 attestation-chain` when the Apple trust anchor is another key (the
/// vendor root), so `app-attest-root.pub.pem` is what its chain needs; and
/// under the development environment it fails `I8 aaguid`.
#[test]
fn the_apple_registration_vector_needs_the_shipped_app_attest_root() {
    let scenario = read_json("scenario.json");
    let entry = entry(&scenario, "apple-registration");
    let now = entry["now"].as_u64().unwrap();
    let cose = std::fs::read(dir().join("apple-registration.cose")).unwrap();
    let mut t = scenario["trust"].clone();
    t["apple"]["trust_anchors"] = serde_json::json!(["vendor-root.pub.pem"]);
    let v = verifier(&scenario, &t, now);
    populate(v.store(), entry, now);
    let r = v.verify_apple_registration(&cose).unwrap_err();
    assert_eq!(r.step.code(), "I2");
    let mut t = scenario["trust"].clone();
    t["apple"]["environment"] = serde_json::json!("development");
    let v = verifier(&scenario, &t, now);
    populate(v.store(), entry, now);
    let r = v.verify_apple_registration(&cose).unwrap_err();
    assert_eq!(r.step.code(), "I8");
    // And with the scenario as shipped it is accepted.
    let v = verifier(&scenario, &scenario["trust"], now);
    populate(v.store(), entry, now);
    v.verify_apple_registration(&cose).unwrap();
}

/// The assertion file is what decides `payment-apple-assertion`: without it
/// the same statement is refused at P17 (the amount needs an assertion), and
/// with the stored App Attest counter already at the assertion's it fails J4.
#[test]
fn the_apple_payment_vector_needs_its_assertion_file() {
    let scenario = read_json("scenario.json");
    let entry = entry(&scenario, "payment-apple-assertion");
    let now = entry["now"].as_u64().unwrap();
    let cose = std::fs::read(dir().join("payment-apple-assertion.cose")).unwrap();
    let assertion =
        std::fs::read(dir().join("payment-apple-assertion.app-attest-assertion.cbor")).unwrap();
    let v = verifier(&scenario, &scenario["trust"], now);
    populate(v.store(), entry, now);
    let r = v.verify_payment(&cose).unwrap_err();
    assert_eq!(r.step.code(), "P17");
    let mut e = entry.clone();
    e["credential"]["app_attest"]["counter"] = serde_json::json!(1);
    let v = verifier(&scenario, &scenario["trust"], now);
    populate(v.store(), &e, now);
    let r = v
        .verify_payment_with_app_attest(&cose, Some(&assertion))
        .unwrap_err();
    assert_eq!(r.step.code(), "J4");
    let v = verifier(&scenario, &scenario["trust"], now);
    populate(v.store(), entry, now);
    v.verify_payment_with_app_attest(&cose, Some(&assertion))
        .unwrap();
}
