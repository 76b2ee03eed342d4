//! Apple App Attest (docs/PROTOCOL.md §13) against real iPhone samples
//! (../shared/vectors/apple-app-attest, expected verdicts from each sample's
//! JSON and GROUND_TRUTH.md) through the library and the
//! `biopay apple-app-attest` CLI, every tampering an attacker could try on
//! them refused at its step, and what no real sample covers (the production
//! aaguid, faults that need a re-signed leaf) on `SimulatedAppAttest`.
//!
//! When the folder is absent the real-sample tests fail and say why; to run
//! without it on purpose, build with `BIOPAY_SKIP_VECTORS=1` (build.rs sets the
//! cfg `biopay_skip_vectors`), and they are reported as ignored, by name.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use base64::{engine::general_purpose::STANDARD, Engine as _};
use biopay::{
    android_attestation::parse_rfc3339,
    apple::{
        self, binding_client_data, AppAttestEnvironment, AppAttestError, AppleTrust,
        VerifiedAttestation,
    },
    crypto::sha256,
    simulator::{AttestationFaults, SimulatedAppAttest},
    CredentialId, Reason, Rejection, Step,
};
use ciborium::value::Value as Cbor;
use serde_json::Value;
use std::{
    path::{Path, PathBuf},
    process::Command,
};

// ---------------------------------------------------------------------------
// The sample set

/// The sample folder; panics, naming it, when it is absent. Its location can
/// be moved with `BIOPAY_TEST_APPLE_VECTORS_DIR` (a missing path shows what a
/// checkout without `../shared` reports).
fn vectors() -> PathBuf {
    let dir = std::env::var_os("BIOPAY_TEST_APPLE_VECTORS_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors/apple-app-attest"),
        PathBuf::from,
    );
    assert!(
        dir.join("GROUND_TRUTH.md").exists(),
        "the real App Attest samples are required by this test but {} is absent; \
         provide ../shared/vectors or set BIOPAY_SKIP_VECTORS=1 to report these tests as ignored",
        dir.display()
    );
    dir
}

struct Sample {
    name: String,
    json: Value,
    dir: PathBuf,
}

impl Sample {
    fn app_id(&self) -> &str {
        self.json["app_id"].as_str().unwrap()
    }
    fn environment(&self) -> AppAttestEnvironment {
        self.json["environment"].as_str().unwrap().parse().unwrap()
    }
    fn att(&self) -> &Value {
        &self.json["attestation"]
    }
    fn attestation(&self) -> Vec<u8> {
        std::fs::read(self.dir.join(self.att()["file"].as_str().unwrap())).unwrap()
    }
    fn client_data(&self) -> Vec<u8> {
        b64(&self.att()["client_data_b64"])
    }
    fn verify_at(&self) -> u64 {
        parse_rfc3339(self.att()["verify_at"].as_str().unwrap()).unwrap()
    }
    fn trust(&self) -> AppleTrust {
        AppleTrust::new(vec![self.app_id().to_owned()], self.environment())
    }
    fn assertions(&self) -> Vec<&Value> {
        self.json["assertions"]
            .as_array()
            .map(|a| a.iter().collect())
            .unwrap_or_default()
    }
    fn assertion(&self, a: &Value) -> Vec<u8> {
        std::fs::read(self.dir.join(a["file"].as_str().unwrap())).unwrap()
    }
    /// The public key an assertion is verified with (`public_key_from`).
    fn assertion_key(&self, a: &Value) -> Vec<u8> {
        assert_eq!(a["public_key_from"], "attestation");
        b64(&self.att()["public_key_x962_b64"])
    }
    fn expected_valid(&self) -> bool {
        self.att()["expected"]["valid"].as_bool().unwrap()
    }
    fn verify(&self, object: &[u8]) -> Result<VerifiedAttestation, Rejection> {
        apple::verify_attestation(
            object,
            &sha256(&self.client_data()),
            None,
            &self.trust(),
            self.verify_at(),
        )
    }
}

fn b64(v: &Value) -> Vec<u8> {
    STANDARD.decode(v.as_str().unwrap()).unwrap()
}

/// Every sample JSON of the folder; their number is the number of rows of
/// GROUND_TRUTH.md's sample table.
fn samples(dir: &Path) -> Vec<Sample> {
    let mut out: Vec<Sample> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let json: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            assert_eq!(json["schema"], "apple-app-attest-sample/1", "{p:?}");
            Sample {
                name: json["name"].as_str().unwrap().to_owned(),
                json,
                dir: dir.to_owned(),
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    let truth = std::fs::read_to_string(dir.join("GROUND_TRUTH.md")).unwrap();
    let rows = truth.lines().filter(|l| l.starts_with("| `ios")).count();
    assert_eq!(out.len(), rows, "one JSON per GROUND_TRUTH.md row");
    assert!(rows >= 9);
    out
}

/// GROUND_TRUTH.md's step names (Apple's numbering) as this verifier's steps
/// (PROTOCOL.md §13.4, §13.5): a translation of names, not a verdict.
fn step_of(ground_truth: &str) -> Step {
    match ground_truth {
        "A0" => Step::I1AttestationObject,
        "A1" => Step::I2AttestationChain,
        "A2" | "A3" | "A4" => Step::I3Nonce,
        "A5" => Step::I4KeyId,
        "A6" => Step::I6AppId,
        "A7" => Step::I7Counter,
        "A8" => Step::I8Aaguid,
        "A9" => Step::I9CredentialId,
        "AX" => Step::I10CredentialKey,
        "S1" | "S2" | "S3" => Step::J2Signature,
        "S4" => Step::J3AppId,
        "S5" => Step::J4Counter,
        other => panic!("unknown ground-truth step {other}"),
    }
}

/// `Ok(())` or the step an `expected` object names.
fn expected(v: &Value) -> Result<(), Step> {
    if v["valid"].as_bool().unwrap() {
        Ok(())
    } else {
        Err(step_of(v["failed_step"].as_str().unwrap()))
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The byte offset of `needle` in `haystack` (it occurs exactly once).
fn find(haystack: &[u8], needle: &[u8]) -> usize {
    let hits: Vec<usize> = haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(hits.len(), 1, "needle must occur once");
    hits[0]
}

/// The offset of the first occurrence of `needle` (the receipt repeats the
/// leaf certificate and the format name after x5c and fmt).
fn find_first(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap()
}

/// The leaf certificate (x5c[0]) of an attestation object.
fn leaf_of(object: &[u8]) -> Vec<u8> {
    let v: Cbor = ciborium::de::from_reader(object).unwrap();
    let Cbor::Map(m) = v else { panic!() };
    let (_, stmt) = m
        .into_iter()
        .find(|(k, _)| k.as_text() == Some("attStmt"))
        .unwrap();
    let Cbor::Map(stmt) = stmt else { panic!() };
    let (_, x5c) = stmt
        .into_iter()
        .find(|(k, _)| k.as_text() == Some("x5c"))
        .unwrap();
    x5c.into_array().unwrap()[0].as_bytes().unwrap().clone()
}

/// The raw authData byte string of an attestation object.
fn auth_data_of(object: &[u8]) -> Vec<u8> {
    let v: Cbor = ciborium::de::from_reader(object).unwrap();
    let Cbor::Map(m) = v else { panic!() };
    m.into_iter()
        .find(|(k, _)| k.as_text() == Some("authData"))
        .and_then(|(_, v)| v.into_bytes().ok())
        .unwrap()
}

/// The raw authenticatorData and signature of an assertion object.
fn assertion_parts(object: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let v: Cbor = ciborium::de::from_reader(object).unwrap();
    let Cbor::Map(m) = v else { panic!() };
    let get = |name: &str| {
        m.iter()
            .find(|(k, _)| k.as_text() == Some(name))
            .and_then(|(_, v)| v.as_bytes().cloned())
            .unwrap()
    };
    (get("authenticatorData"), get("signature"))
}

// ---------------------------------------------------------------------------
// Verdicts of the real samples, through the library

#[test]
#[cfg_attr(biopay_skip_vectors, ignore = "BIOPAY_SKIP_VECTORS=1")]
fn every_real_attestation_gets_its_ground_truth_verdict() {
    let dir = vectors();
    for s in samples(&dir) {
        let att = s.att();
        assert_eq!(
            sha256(&s.client_data()).to_vec(),
            b64(&att["client_data_hash_b64"]),
            "{}",
            s.name
        );
        let key_id = b64(&att["key_id_b64"]);
        let verdict = apple::verify_attestation(
            &s.attestation(),
            &sha256(&s.client_data()),
            Some(&key_id),
            &s.trust(),
            s.verify_at(),
        );
        match (expected(&att["expected"]), verdict) {
            (Ok(()), Ok(v)) => {
                assert_eq!(v.key_id.to_vec(), key_id, "{}", s.name);
                assert_eq!(v.public_key, b64(&att["public_key_x962_b64"]), "{}", s.name);
                assert_eq!(v.app_id, s.app_id());
                assert_eq!(v.environment, s.environment());
                assert_eq!(
                    u64::from(v.counter),
                    att["expected_counter"].as_u64().unwrap()
                );
                assert_eq!(
                    v.receipt.len(),
                    usize::try_from(att["receipt_len"].as_u64().unwrap()).unwrap(),
                    "{}",
                    s.name
                );
                // Without a key id from the app, the same verdict.
                assert_eq!(s.verify(&s.attestation()).unwrap(), v);
            }
            (Err(step), Err(r)) => assert_eq!(r.step, step, "{}: {r}", s.name),
            (want, got) => panic!("{}: expected {want:?}, got {got:?}", s.name),
        }
    }
}

#[test]
#[cfg_attr(biopay_skip_vectors, ignore = "BIOPAY_SKIP_VECTORS=1")]
fn every_real_assertion_gets_its_ground_truth_verdict() {
    let dir = vectors();
    let mut seen = (0, 0);
    for s in samples(&dir) {
        for a in s.assertions() {
            let client_data = b64(&a["client_data_b64"]);
            assert_eq!(
                sha256(&client_data).to_vec(),
                b64(&a["client_data_hash_b64"])
            );
            let previous = u32::try_from(a["previous_counter"].as_u64().unwrap()).unwrap();
            let verdict = apple::verify_assertion(
                &s.assertion(a),
                &sha256(&client_data),
                &s.assertion_key(a),
                s.app_id(),
                previous,
            );
            match (expected(&a["expected"]), verdict) {
                (Ok(()), Ok(v)) => {
                    seen.0 += 1;
                    assert_eq!(
                        u64::from(v.counter),
                        a["expected_counter"].as_u64().unwrap()
                    );
                }
                (Err(step), Err(r)) => {
                    seen.1 += 1;
                    assert_eq!(r.step, step, "{}: {r}", s.name);
                }
                (want, got) => panic!("{}: expected {want:?}, got {got:?}", s.name),
            }
        }
    }
    assert!(seen.0 >= 7 && seen.1 >= 1, "{seen:?}");
}

#[test]
#[cfg_attr(biopay_skip_vectors, ignore = "BIOPAY_SKIP_VECTORS=1")]
fn real_assertion_without_attested_data_despite_the_at_flag_is_read() {
    // The quirk of GROUND_TRUTH.md: 37 bytes, flags 0x40 (AT set) and
    // nothing after the counter. Every valid real assertion has it.
    let dir = vectors();
    for s in samples(&dir) {
        for a in s.assertions() {
            let (auth, _) = assertion_parts(&s.assertion(a));
            assert_eq!(auth.len(), 37);
            assert_eq!(
                format!("{:02x}", auth[32]),
                a["authenticator_data_flags_hex"]
            );
        }
    }
}

#[test]
#[cfg_attr(biopay_skip_vectors, ignore = "BIOPAY_SKIP_VECTORS=1")]
fn expired_real_attestations_are_refused_today() {
    let dir = vectors();
    for s in samples(&dir) {
        let r = apple::verify_attestation(
            &s.attestation(),
            &sha256(&s.client_data()),
            None,
            &s.trust(),
            now(),
        )
        .unwrap_err();
        assert_eq!(
            Err(r.step),
            expected(&s.att()["expected_at_now"]),
            "{}: {r}",
            s.name
        );
        assert!(matches!(r.reason, Reason::Chain(_)), "{}: {r}", s.name);
    }
}

#[test]
#[cfg_attr(biopay_skip_vectors, ignore = "BIOPAY_SKIP_VECTORS=1")]
fn real_attestations_are_refused_under_the_other_environment() {
    let dir = vectors();
    for s in samples(&dir).iter().filter(|s| s.expected_valid()) {
        let other = match s.environment() {
            AppAttestEnvironment::Development => AppAttestEnvironment::Production,
            AppAttestEnvironment::Production => AppAttestEnvironment::Development,
        };
        let trust = AppleTrust::new(vec![s.app_id().to_owned()], other);
        let r = apple::verify_attestation(
            &s.attestation(),
            &sha256(&s.client_data()),
            None,
            &trust,
            s.verify_at(),
        )
        .unwrap_err();
        assert_eq!(r.step, Step::I8Aaguid, "{}", s.name);
        assert_eq!(
            r.reason,
            Reason::AppAttest(AppAttestError::WrongEnvironment {
                expected: other,
                found: s.environment()
            })
        );
    }
}

#[test]
#[cfg_attr(biopay_skip_vectors, ignore = "BIOPAY_SKIP_VECTORS=1")]
fn real_attestations_are_refused_under_a_replaced_root() {
    // A verifier configured with another root trusts none of Apple's chains.
    let dir = vectors();
    let sim = SimulatedAppAttest::new("T.x", AppAttestEnvironment::Production).unwrap();
    for s in samples(&dir).iter().filter(|s| s.expected_valid()) {
        let trust = s.trust().with_anchors(vec![sim.trust_anchor().unwrap()]);
        let r = apple::verify_attestation(
            &s.attestation(),
            &sha256(&s.client_data()),
            None,
            &trust,
            s.verify_at(),
        )
        .unwrap_err();
        assert_eq!(r.step, Step::I2AttestationChain, "{}", s.name);
    }
}

// ---------------------------------------------------------------------------
// Attacks on the real samples

#[test]
#[cfg_attr(biopay_skip_vectors, ignore = "BIOPAY_SKIP_VECTORS=1")]
fn flipping_any_byte_of_auth_data_is_refused_at_the_nonce_step() {
    // authData holds the rpIdHash, flags, counter, aaguid, credentialId and
    // key; the certified nonce covers all of it.
    let dir = vectors();
    for s in samples(&dir).iter().filter(|s| s.expected_valid()) {
        let object = s.attestation();
        let auth = auth_data_of(&object);
        let at = find(&object, &auth);
        for i in 0..auth.len() {
            let mut bad = object.clone();
            bad[at + i] ^= 0x01;
            let r = s.verify(&bad).unwrap_err();
            assert_eq!(r.step, Step::I3Nonce, "{} byte {i}: {r}", s.name);
            assert_eq!(r.reason, Reason::AppAttest(AppAttestError::NonceMismatch));
        }
    }
}

#[test]
#[cfg_attr(biopay_skip_vectors, ignore = "BIOPAY_SKIP_VECTORS=1")]
fn flipping_any_byte_of_the_nonce_extension_breaks_the_apple_signature() {
    let dir = vectors();
    for s in samples(&dir).iter().filter(|s| s.expected_valid()) {
        let object = s.attestation();
        let nonce = hex::decode(s.att()["nonce_hex"].as_str().unwrap()).unwrap();
        // The extension value: SEQUENCE { [1] EXPLICIT OCTET STRING (32) }.
        let ext = [&[0x30, 0x24, 0xa1, 0x22, 0x04, 0x20][..], &nonce].concat();
        let at = find_first(&object, &ext);
        let leaf = leaf_of(&object);
        for i in 0..ext.len() {
            let mut bad = object.clone();
            bad[at + i] ^= 0x01;
            assert_ne!(leaf_of(&bad), leaf, "the flipped byte is in x5c[0]");
            let r = s.verify(&bad).unwrap_err();
            assert_eq!(r.step, Step::I2AttestationChain, "{} byte {i}: {r}", s.name);
        }
    }
}

#[test]
#[cfg_attr(biopay_skip_vectors, ignore = "BIOPAY_SKIP_VECTORS=1")]
fn other_client_data_is_refused_at_the_nonce_step() {
    // The attestation answers one challenge; another (or the base64 text of
    // it, or no hashing) does not match the certified nonce.
    let dir = vectors();
    for s in samples(&dir).iter().filter(|s| s.expected_valid()) {
        let cd = s.client_data();
        let variants = [
            [cd.as_slice(), b"x"].concat(),
            s.att()["client_data_b64"]
                .as_str()
                .unwrap()
                .as_bytes()
                .to_vec(),
            cd[..cd.len() - 1].to_vec(),
        ];
        for v in variants {
            let r = apple::verify_attestation(
                &s.attestation(),
                &sha256(&v),
                None,
                &s.trust(),
                s.verify_at(),
            )
            .unwrap_err();
            assert_eq!(r.step, Step::I3Nonce, "{}", s.name);
        }
        // The clientDataHash taken as the client data itself (hashing twice
        // or not at all) fails too.
        let mut raw = [0u8; 32];
        raw[..].copy_from_slice(&b64(&s.att()["client_data_hash_b64"]));
        let r = apple::verify_attestation(
            &s.attestation(),
            &sha256(&raw),
            None,
            &s.trust(),
            s.verify_at(),
        )
        .unwrap_err();
        assert_eq!(r.step, Step::I3Nonce);
    }
}

#[test]
#[cfg_attr(biopay_skip_vectors, ignore = "BIOPAY_SKIP_VECTORS=1")]
fn a_key_id_that_is_not_the_attested_keys_is_refused_at_key_id() {
    let dir = vectors();
    let all = samples(&dir);
    for s in all.iter().filter(|s| s.expected_valid()) {
        let key_id = b64(&s.att()["key_id_b64"]);
        let mut candidates: Vec<Vec<u8>> = (0..key_id.len())
            .map(|i| {
                let mut k = key_id.clone();
                k[i] ^= 0x80;
                k
            })
            .collect();
        // Another device's key id, and the SHA-256 of the SPKI DER instead of the point.
        candidates.extend(
            all.iter()
                .filter(|o| o.name != s.name)
                .map(|o| b64(&o.att()["key_id_b64"])),
        );
        let pem = s.att()["public_key_spki_pem"].as_str().unwrap();
        let spki = pem::parse(pem).unwrap().into_contents();
        candidates.push(sha256(&spki).to_vec());
        for k in candidates {
            let r = apple::verify_attestation(
                &s.attestation(),
                &sha256(&s.client_data()),
                Some(&k),
                &s.trust(),
                s.verify_at(),
            )
            .unwrap_err();
            assert_eq!(r.step, Step::I4KeyId, "{}", s.name);
            assert_eq!(r.reason, Reason::AppAttest(AppAttestError::KeyIdMismatch));
        }
    }
}

#[test]
#[cfg_attr(biopay_skip_vectors, ignore = "BIOPAY_SKIP_VECTORS=1")]
fn another_app_id_is_refused_at_the_app_id_steps() {
    let dir = vectors();
    let all = samples(&dir);
    for s in all.iter().filter(|s| s.expected_valid()) {
        let id = s.app_id();
        let mut others = vec![
            id.to_lowercase(),
            id.to_uppercase(),
            format!("{id}x"),
            id[..id.len() - 1].to_owned(),
            id.split_once('.').unwrap().1.to_owned(), // bundle id without the team
            format!("XXXXXXXXXX.{}", id.split_once('.').unwrap().1),
        ];
        others.extend(
            all.iter()
                .map(|o| o.app_id().to_owned())
                .filter(|o| o != id),
        );
        others.retain(|o| o != id);
        assert!(others.len() >= 6);
        for other in &others {
            let trust = AppleTrust::new(vec![other.clone()], s.environment());
            let r = apple::verify_attestation(
                &s.attestation(),
                &sha256(&s.client_data()),
                None,
                &trust,
                s.verify_at(),
            )
            .unwrap_err();
            assert_eq!(r.step, Step::I6AppId, "{} as {other}", s.name);
            for a in s
                .assertions()
                .into_iter()
                .filter(|a| expected(&a["expected"]).is_ok())
            {
                let r = apple::verify_assertion(
                    &s.assertion(a),
                    &sha256(&b64(&a["client_data_b64"])),
                    &s.assertion_key(a),
                    other,
                    0,
                )
                .unwrap_err();
                assert_eq!(r.step, Step::J3AppId, "{} as {other}", s.name);
            }
        }
        // Allowed among others: accepted, naming the matched app id.
        let mut many = others.clone();
        many.push(id.to_owned());
        let trust = AppleTrust::new(many, s.environment());
        let v = apple::verify_attestation(
            &s.attestation(),
            &sha256(&s.client_data()),
            None,
            &trust,
            s.verify_at(),
        )
        .unwrap();
        assert_eq!(v.app_id, id);
    }
}

#[test]
#[cfg_attr(biopay_skip_vectors, ignore = "BIOPAY_SKIP_VECTORS=1")]
fn malformed_attestation_objects_are_refused_at_the_object_step() {
    let dir = vectors();
    let s = samples(&dir)
        .into_iter()
        .find(|s| s.expected_valid())
        .unwrap();
    let object = s.attestation();
    for bad in [
        [object.as_slice(), &[0x00]].concat(), // a byte after the item
        object[..object.len() - 1].to_vec(),   // truncated
        Vec::new(),                            // empty
        vec![0xa0],                            // empty map
        vec![0u8; apple::MAX_ATTESTATION_LEN + 1], // too large
    ] {
        let r = s.verify(&bad).unwrap_err();
        assert_eq!(r.step, Step::I1AttestationObject, "{r}");
    }
    // fmt "apple-appattesu": same length, another format.
    let at = find_first(&object, b"\x6fapple-appattest") + 1;
    let mut bad = object.clone();
    bad[at + 14] = b'u';
    let r = s.verify(&bad).unwrap_err();
    assert_eq!(
        r.reason,
        Reason::AppAttest(AppAttestError::WrongFormat("apple-appattesu".into()))
    );
}

#[test]
#[cfg_attr(biopay_skip_vectors, ignore = "BIOPAY_SKIP_VECTORS=1")]
fn tampered_or_replayed_real_assertions_are_refused_at_their_steps() {
    let dir = vectors();
    let all = samples(&dir);
    for s in &all {
        for a in s
            .assertions()
            .into_iter()
            .filter(|a| expected(&a["expected"]).is_ok())
        {
            let object = s.assertion(a);
            let cdh = sha256(&b64(&a["client_data_b64"]));
            let key = s.assertion_key(a);
            let counter = u32::try_from(a["expected_counter"].as_u64().unwrap()).unwrap();
            let verify = |o: &[u8], k: &[u8], prev: u32| {
                apple::verify_assertion(o, &cdh, k, s.app_id(), prev)
            };
            assert!(verify(&object, &key, counter - 1).is_ok());
            // Replayed: the stored counter is already this one (or later).
            for prev in [counter, counter + 1, u32::MAX] {
                let r = verify(&object, &key, prev).unwrap_err();
                assert_eq!(r.step, Step::J4Counter, "{}", s.name);
            }
            // Any byte of authenticatorData (rpIdHash, flags, counter) or of
            // the signature changed.
            let (auth, sig) = assertion_parts(&object);
            for part in [&auth, &sig] {
                let at = find(&object, part);
                for i in 0..part.len() {
                    let mut bad = object.clone();
                    bad[at + i] ^= 0x01;
                    let r = verify(&bad, &key, 0).unwrap_err();
                    assert_eq!(r.step, Step::J2Signature, "{} byte {i}: {r}", s.name);
                }
            }
            // Another challenge.
            let r = apple::verify_assertion(&object, &sha256(b"wurzel"), &key, s.app_id(), 0)
                .unwrap_err();
            assert_eq!(r.step, Step::J2Signature);
            // Another device's attested key.
            for o in all.iter().filter(|o| o.name != s.name) {
                let other = b64(&o.att()["public_key_x962_b64"]);
                assert_eq!(
                    verify(&object, &other, 0).unwrap_err().step,
                    Step::J2Signature
                );
            }
            // A trailing byte after the 37-byte authenticatorData is refused
            // (its length changes, so the CBOR head is rewritten).
            let mut longer = auth.clone();
            longer.push(0);
            let rebuilt = encode_assertion(&sig, &longer);
            assert_eq!(
                verify(&rebuilt, &key, 0).unwrap_err().step,
                Step::J1AssertionObject
            );
        }
    }
}

fn encode_assertion(signature: &[u8], auth: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(
        &Cbor::Map(vec![
            (
                Cbor::Text("signature".into()),
                Cbor::Bytes(signature.to_vec()),
            ),
            (
                Cbor::Text("authenticatorData".into()),
                Cbor::Bytes(auth.to_vec()),
            ),
        ]),
        &mut out,
    )
    .unwrap();
    out
}

// ---------------------------------------------------------------------------
// The CLI on the real samples

fn biopay(args: &[&str]) -> (bool, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_biopay"))
        .args(args)
        .output()
        .unwrap();
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), json)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
#[cfg_attr(biopay_skip_vectors, ignore = "BIOPAY_SKIP_VECTORS=1")]
fn cli_gives_every_real_sample_its_ground_truth_verdict() {
    let dir = vectors();
    let tmp = tempfile::tempdir().unwrap();
    for s in samples(&dir) {
        let cd = tmp.path().join(format!("{}.client-data", s.name));
        std::fs::write(&cd, s.client_data()).unwrap();
        let att_file = dir.join(s.att()["file"].as_str().unwrap());
        let env = s.json["environment"].as_str().unwrap();
        let at = s.att()["verify_at"].as_str().unwrap();
        let base = [
            "apple-app-attest",
            "attestation",
            "--app-id",
            s.app_id(),
            "--client-data",
            path(&cd),
            "--environment",
            env,
            "--json",
        ];
        let (ok, json) = biopay(&[&base[..], &["--at", at, path(&att_file)]].concat());
        assert_eq!(ok, json["valid"].as_bool().unwrap(), "{}", s.name);
        match expected(&s.att()["expected"]) {
            Ok(()) => {
                assert!(ok, "{}: {json}", s.name);
                assert_eq!(json["key_id"], s.att()["key_id_b64"]);
                assert_eq!(json["public_key"], s.att()["public_key_x962_b64"]);
                assert_eq!(json["environment"], env);
                assert_eq!(json["counter"], s.att()["expected_counter"]);
                assert_eq!(json["errors"], serde_json::json!([]));
            }
            Err(step) => {
                assert!(!ok);
                assert_eq!(json["errors"][0]["step"], step.code(), "{}", s.name);
            }
        }
        // Today: expired.
        let (ok, json) = biopay(&[&base[..], &[path(&att_file)]].concat());
        assert!(!ok);
        let want = expected(&s.att()["expected_at_now"]).unwrap_err();
        assert_eq!(json["errors"][0]["step"], want.code(), "{}", s.name);
        assert_eq!(json["errors"][0]["name"], want.name());
        // The other environment.
        let other = if env == "development" {
            "production"
        } else {
            "development"
        };
        let mut args = base.to_vec();
        args[7] = other;
        let (ok, json) = biopay(&[&args[..], &["--at", at, path(&att_file)]].concat());
        assert!(!ok);
        if s.expected_valid() {
            assert_eq!(json["errors"][0]["step"], "I8", "{}", s.name);
        }

        for (i, a) in s.assertions().into_iter().enumerate() {
            let acd = tmp.path().join(format!("{}.{i}.client-data", s.name));
            std::fs::write(&acd, b64(&a["client_data_b64"])).unwrap();
            let pem = tmp.path().join(format!("{}.pem", s.name));
            std::fs::write(&pem, s.att()["public_key_spki_pem"].as_str().unwrap()).unwrap();
            let ass_file = dir.join(a["file"].as_str().unwrap());
            let prev = a["previous_counter"].to_string();
            for key in [
                ["--attestation", path(&att_file)],
                ["--public-key", path(&pem)],
            ] {
                let (ok, json) = biopay(&[
                    "apple-app-attest",
                    "assertion",
                    "--app-id",
                    s.app_id(),
                    "--client-data",
                    path(&acd),
                    key[0],
                    key[1],
                    "--previous-counter",
                    &prev,
                    "--json",
                    path(&ass_file),
                ]);
                match expected(&a["expected"]) {
                    Ok(()) => {
                        assert!(ok, "{}: {json}", s.name);
                        assert_eq!(json["valid"], true);
                        assert_eq!(json["counter"], a["expected_counter"]);
                        assert_eq!(json["errors"], serde_json::json!([]));
                    }
                    Err(step) => {
                        assert!(!ok, "{}", s.name);
                        assert_eq!(json["valid"], false);
                        assert_eq!(json["errors"][0]["step"], step.code(), "{}", s.name);
                    }
                }
            }
            // Replayed against the counter it set.
            let (ok, json) = biopay(&[
                "apple-app-attest",
                "assertion",
                "--app-id",
                s.app_id(),
                "--client-data",
                path(&acd),
                "--attestation",
                path(&att_file),
                "--previous-counter",
                &a["expected_counter"].to_string(),
                "--json",
                path(&ass_file),
            ]);
            assert!(!ok);
            let want = if expected(&a["expected"]).is_ok() {
                "J4"
            } else {
                "J2"
            };
            assert_eq!(json["errors"][0]["step"], want, "{}", s.name);
        }
    }
}

// ---------------------------------------------------------------------------
// The simulated double: the production aaguid and faults that need a
// re-signed leaf (no real sample can have them).

const APP: &str = "ABCDE12345.com.example.pay";
const RP: &str = "pay.example.com";

fn sim(env: AppAttestEnvironment) -> (SimulatedAppAttest, AppleTrust) {
    let sim = SimulatedAppAttest::new(APP, env).unwrap();
    let trust =
        AppleTrust::new(vec![APP.into()], env).with_anchors(vec![sim.trust_anchor().unwrap()]);
    (sim, trust)
}

/// 2030-01-01: inside the simulated PKI's validity.
const SIM_NOW: u64 = 1_893_456_000;

/// A biopay registration's client data: the binding of §13.3 over a Secure
/// Enclave key (here a fresh P-256 point) and credential id.
fn binding(challenge: [u8; 32]) -> (Vec<u8>, Vec<u8>) {
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
    let se =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let point = se.public_key().as_ref().to_vec();
    let cred = CredentialId::new(vec![3; 32]).unwrap();
    (
        binding_client_data(&challenge, RP, &point, &cred).unwrap(),
        point,
    )
}

#[test]
fn simulated_production_attestation_verifies_only_in_production() {
    let (sim, trust) = sim(AppAttestEnvironment::Production);
    let key = sim.generate_key().unwrap();
    let (client_data, _) = binding([9; 32]);
    let object = sim.attest_key(&key, &sha256(&client_data)).unwrap();
    let v = apple::verify_attestation(
        &object,
        &sha256(&client_data),
        Some(&key.key_id()),
        &trust,
        SIM_NOW,
    )
    .unwrap();
    assert_eq!(v.environment, AppAttestEnvironment::Production);
    assert_eq!(v.public_key, key.public_key());
    assert_eq!(v.counter, 0);
    // The production aaguid is `appattest` + 7 zero bytes in the object.
    let auth = auth_data_of(&object);
    assert_eq!(&auth[37..53], b"appattest\0\0\0\0\0\0\0");
    let dev = AppleTrust {
        environment: AppAttestEnvironment::Development,
        ..trust.clone()
    };
    let r =
        apple::verify_attestation(&object, &sha256(&client_data), None, &dev, SIM_NOW).unwrap_err();
    assert_eq!(r.step, Step::I8Aaguid);
    // Apple's real root does not trust the simulated one.
    let apple_root = AppleTrust::new(vec![APP.into()], AppAttestEnvironment::Production);
    let r = apple::verify_attestation(&object, &sha256(&client_data), None, &apple_root, SIM_NOW)
        .unwrap_err();
    assert_eq!(r.step, Step::I2AttestationChain);
}

#[test]
fn simulated_development_attestation_is_refused_in_production() {
    let (sim, trust) = sim(AppAttestEnvironment::Development);
    let key = sim.generate_key().unwrap();
    let object = sim.attest_key(&key, &sha256(b"c")).unwrap();
    assert!(apple::verify_attestation(&object, &sha256(b"c"), None, &trust, SIM_NOW).is_ok());
    let prod = AppleTrust {
        environment: AppAttestEnvironment::Production,
        ..trust
    };
    let r = apple::verify_attestation(&object, &sha256(b"c"), None, &prod, SIM_NOW).unwrap_err();
    assert_eq!(r.step, Step::I8Aaguid);
}

#[test]
fn an_attestation_of_another_secure_enclave_key_or_challenge_fails_the_nonce() {
    // The app attested the binding of key A; an attacker who swaps in key B
    // (or replays the attestation for another challenge) changes the binding.
    let (sim, trust) = sim(AppAttestEnvironment::Production);
    let key = sim.generate_key().unwrap();
    let (client_data, _) = binding([9; 32]);
    let object = sim.attest_key(&key, &sha256(&client_data)).unwrap();
    let (other_key, _) = binding([9; 32]);
    let (other_challenge, _) = binding([8; 32]);
    for cd in [other_key, other_challenge] {
        let r =
            apple::verify_attestation(&object, &sha256(&cd), None, &trust, SIM_NOW).unwrap_err();
        assert_eq!(r.step, Step::I3Nonce);
    }
}

#[test]
fn every_attestation_fault_is_refused_at_its_step() {
    let (sim, trust) = sim(AppAttestEnvironment::Production);
    let key = sim.generate_key().unwrap();
    let other = sim.generate_key().unwrap();
    let cdh = sha256(b"client data");
    let cases: Vec<(AttestationFaults, Step, Option<Reason>)> = vec![
        (
            AttestationFaults {
                fmt: Some("packed".into()),
                ..Default::default()
            },
            Step::I1AttestationObject,
            Some(AppAttestError::WrongFormat("packed".into()).into()),
        ),
        // A sender-chosen fmt reaches logs and the audit log only as its
        // first 32 characters (and Display escapes control characters).
        (
            AttestationFaults {
                fmt: Some(format!("x\nforged log line{}", "A".repeat(20_000))),
                ..Default::default()
            },
            Step::I1AttestationObject,
            Some(
                AppAttestError::WrongFormat(format!("x\nforged log line{}", "A".repeat(15))).into(),
            ),
        ),
        (
            AttestationFaults {
                nonce: Some([0; 32]),
                ..Default::default()
            },
            Step::I3Nonce,
            Some(AppAttestError::NonceMismatch.into()),
        ),
        (
            AttestationFaults {
                omit_nonce_extension: true,
                ..Default::default()
            },
            Step::I3Nonce,
            Some(AppAttestError::NonceExtension("missing").into()),
        ),
        (
            AttestationFaults {
                app_id: Some("ABCDE12345.com.example.other".into()),
                ..Default::default()
            },
            Step::I6AppId,
            Some(AppAttestError::AppIdNotAllowed.into()),
        ),
        (
            AttestationFaults {
                counter: Some(1),
                ..Default::default()
            },
            Step::I7Counter,
            Some(AppAttestError::CounterNotZero(1).into()),
        ),
        (
            AttestationFaults {
                aaguid: Some(*b"appattest\0\0\0\0\0\0\x01"),
                ..Default::default()
            },
            Step::I8Aaguid,
            None,
        ),
        (
            AttestationFaults {
                aaguid: Some(AppAttestEnvironment::Development.aaguid()),
                ..Default::default()
            },
            Step::I8Aaguid,
            None,
        ),
        (
            AttestationFaults {
                credential_id: Some(other.key_id().to_vec()),
                ..Default::default()
            },
            Step::I9CredentialId,
            Some(AppAttestError::CredentialIdMismatch.into()),
        ),
        (
            AttestationFaults {
                credential_id: Some(key.key_id()[..16].to_vec()),
                ..Default::default()
            },
            Step::I9CredentialId,
            None,
        ),
        (
            AttestationFaults {
                cose_public_key: Some(other.public_key().to_vec()),
                ..Default::default()
            },
            Step::I10CredentialKey,
            Some(AppAttestError::CredentialKeyMismatch.into()),
        ),
    ];
    for (faults, step, reason) in cases {
        let object = sim.danger_attest_key_with(&key, &cdh, &faults).unwrap();
        let r = apple::verify_attestation(&object, &cdh, Some(&key.key_id()), &trust, SIM_NOW)
            .unwrap_err();
        assert_eq!(r.step, step, "{faults:?}: {r}");
        if let Some(reason) = reason {
            assert_eq!(r.reason, reason, "{faults:?}");
        }
    }
    // The honest one passes, with the key id the app reports; another key's
    // id is refused at I4.
    let object = sim.attest_key(&key, &cdh).unwrap();
    assert!(apple::verify_attestation(&object, &cdh, Some(&key.key_id()), &trust, SIM_NOW).is_ok());
    let r = apple::verify_attestation(&object, &cdh, Some(&other.key_id()), &trust, SIM_NOW)
        .unwrap_err();
    assert_eq!(r.step, Step::I4KeyId);
}

#[test]
fn simulated_assertions_count_up_and_replays_are_refused() {
    let (sim, trust) = sim(AppAttestEnvironment::Production);
    let mut key = sim.generate_key().unwrap();
    let object = sim.attest_key(&key, &sha256(b"reg")).unwrap();
    let attested =
        apple::verify_attestation(&object, &sha256(b"reg"), None, &trust, SIM_NOW).unwrap();
    let mut stored = attested.counter;
    for n in 1..=3u32 {
        let cdh = sha256(format!("statement {n}").as_bytes());
        let a = sim.generate_assertion(&mut key, &cdh).unwrap();
        let v = apple::verify_assertion(&a, &cdh, &attested.public_key, APP, stored).unwrap();
        assert_eq!(v.counter, n);
        // The same assertion again: refused, the counter did not increase.
        let r =
            apple::verify_assertion(&a, &cdh, &attested.public_key, APP, v.counter).unwrap_err();
        assert_eq!(r.step, Step::J4Counter);
        stored = v.counter;
    }
    let cdh = sha256(b"x");
    let wrong_app = sim
        .danger_assertion_with(&key, &cdh, 10, "ABCDE12345.com.example.other")
        .unwrap();
    assert_eq!(
        apple::verify_assertion(&wrong_app, &cdh, &attested.public_key, APP, stored)
            .unwrap_err()
            .step,
        Step::J3AppId
    );
    let old = sim.danger_assertion_with(&key, &cdh, 2, APP).unwrap();
    assert_eq!(
        apple::verify_assertion(&old, &cdh, &attested.public_key, APP, stored)
            .unwrap_err()
            .reason,
        Reason::CounterNotIncreased {
            stored: 3,
            received: 2
        }
    );
    // Signed by another App Attest key of the same app.
    let stranger = sim.generate_key().unwrap();
    let forged = sim.danger_assertion_with(&stranger, &cdh, 10, APP).unwrap();
    assert_eq!(
        apple::verify_assertion(&forged, &cdh, &attested.public_key, APP, stored)
            .unwrap_err()
            .step,
        Step::J2Signature
    );
}

#[test]
fn cli_verifies_a_simulated_production_attestation_under_its_trust_root() {
    let (sim, _) = sim(AppAttestEnvironment::Production);
    let mut key = sim.generate_key().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (client_data, _) = binding([5; 32]);
    let files = [
        ("cd", client_data.clone()),
        ("att", sim.attest_key(&key, &sha256(&client_data)).unwrap()),
        ("root.pem", sim.root_cert_pem().into_bytes()),
        ("acd", b"statement".to_vec()),
        (
            "ass",
            sim.generate_assertion(&mut key, &sha256(b"statement"))
                .unwrap(),
        ),
    ];
    for (name, bytes) in &files {
        std::fs::write(tmp.path().join(name), bytes).unwrap();
    }
    let p = |n: &str| tmp.path().join(n).to_str().unwrap().to_owned();
    let (ok, json) = biopay(&[
        "apple-app-attest",
        "attestation",
        "--app-id",
        APP,
        "--client-data",
        &p("cd"),
        "--environment",
        "production",
        "--at",
        "2030-01-01T00:00:00Z",
        "--trust-root",
        &p("root.pem"),
        "--json",
        &p("att"),
    ]);
    assert!(ok, "{json}");
    assert_eq!(json["environment"], "production");
    assert_eq!(json["key_id"], STANDARD.encode(key.key_id()));
    assert_eq!(json["public_key"], STANDARD.encode(key.public_key()));
    assert_eq!(json["counter"], 0);
    // Without the simulated root: Apple's root does not trust it.
    let (ok, json) = biopay(&[
        "apple-app-attest",
        "attestation",
        "--app-id",
        APP,
        "--client-data",
        &p("cd"),
        "--environment",
        "production",
        "--at",
        "2030-01-01T00:00:00Z",
        "--json",
        &p("att"),
    ]);
    assert!(!ok);
    assert_eq!(json["errors"][0]["step"], "I2");
    let (ok, json) = biopay(&[
        "apple-app-attest",
        "assertion",
        "--app-id",
        APP,
        "--client-data",
        &p("acd"),
        "--attestation",
        &p("att"),
        "--json",
        &p("ass"),
    ]);
    assert!(ok, "{json}");
    assert_eq!(json["counter"], 1);
}

#[test]
fn cli_refuses_ambiguous_or_invalid_options() {
    let (sim, _) = sim(AppAttestEnvironment::Development);
    let key = sim.generate_key().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n).to_str().unwrap().to_owned();
    std::fs::write(p("cd"), b"c").unwrap();
    std::fs::write(p("att"), sim.attest_key(&key, &sha256(b"c")).unwrap()).unwrap();
    std::fs::write(
        p("pem"),
        "-----BEGIN PUBLIC KEY-----\nAA==\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_biopay"))
            .args(args)
            .output()
            .unwrap()
    };
    // Both key sources, or neither: a usage error.
    for keys in [
        vec!["--attestation", &p("att"), "--public-key", &p("pem")],
        vec![],
    ] {
        let out = run(&[
            &[
                "apple-app-attest",
                "assertion",
                "--app-id",
                APP,
                "--client-data",
                &p("cd"),
            ][..],
            &keys,
            &[p("att").as_str()],
        ]
        .concat());
        assert!(!out.status.success());
        assert!(out.stdout.is_empty());
    }
    // A public key that is not a P-256 point, an unknown environment, a bad time.
    let out = run(&[
        "apple-app-attest",
        "assertion",
        "--app-id",
        APP,
        "--client-data",
        &p("cd"),
        "--public-key",
        &p("pem"),
        &p("att"),
    ]);
    assert!(!out.status.success());
    let cd = p("cd");
    for (flag, value) in [("--environment", "staging"), ("--at", "yesterday")] {
        let environment = if flag == "--environment" {
            value
        } else {
            "development"
        };
        let mut args = vec![
            "apple-app-attest",
            "attestation",
            "--app-id",
            APP,
            "--client-data",
            &cd,
            "--environment",
            environment,
        ];
        if flag == "--at" {
            args.extend([flag, value]);
        }
        let att = p("att");
        args.push(&att);
        let out = run(&args);
        assert!(!out.status.success(), "{flag} {value}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(value),
            "{flag}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The text output names the refusing step.
    let out = run(&[
        "apple-app-attest",
        "attestation",
        "--app-id",
        APP,
        "--client-data",
        &p("cd"),
        "--environment",
        "development",
        &p("att"),
    ]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("refused at I2 attestation-chain"), "{text}");
    assert!(text.contains("verdict: INVALID"));
}
