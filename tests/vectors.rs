//! The committed test vectors (docs/vectors/) are exactly what the generator
//! produces, and each vector's flags hold when checked independently here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use biopay::{vectors, Message, PaymentAssertion};
use std::path::Path;

#[test]
fn committed_vectors_match_the_generator_byte_for_byte() {
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/vectors");
    let out = tempfile::tempdir().unwrap();
    let generated = vectors::generate().unwrap();
    vectors::write(out.path(), &generated).unwrap();
    let mut names: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    let mut committed_names: Vec<_> = std::fs::read_dir(&committed)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    committed_names.sort();
    assert_eq!(names, committed_names, "docs/vectors has other files than the generator writes; run `cargo run -- vectors --out docs/vectors`");
    for name in names {
        let a = std::fs::read(out.path().join(&name)).unwrap();
        let b = std::fs::read(committed.join(&name)).unwrap();
        assert!(
            a == b,
            "{name:?} differs from the generator; run `cargo run -- vectors --out docs/vectors`"
        );
    }
}

#[test]
fn generation_is_deterministic() {
    let a = vectors::generate().unwrap().vectors;
    let b = vectors::generate().unwrap().vectors;
    assert_eq!(vectors::manifest(&a), vectors::manifest(&b));
    assert_eq!(vectors::scenario(&a), vectors::scenario(&b));
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.cose, y.cose, "{}", x.name);
    }
}

/// Re-checks each committed vector with code independent of coset and ring:
/// the Sig_structure is rebuilt by hand with ciborium and the signature is
/// verified with the pure-Rust p256 crate.
#[test]
fn committed_signature_flags_hold_under_an_independent_check() {
    use ciborium::value::Value;
    use p256::ecdsa::{signature::Verifier as _, Signature, VerifyingKey};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/vectors");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let list = manifest["vectors"].as_array().unwrap();
    assert!(list.len() >= 24);
    let (mut valid, mut accepted) = (0, 0);
    for v in list {
        let name = v["name"].as_str().unwrap();
        let cose = std::fs::read(dir.join(v["cose"].as_str().unwrap())).unwrap();
        let pem = pem::parse(std::fs::read(dir.join(v["public_key"].as_str().unwrap())).unwrap())
            .unwrap();
        assert_eq!(pem.tag(), "PUBLIC KEY");
        let key = VerifyingKey::from_sec1_bytes(&pem.contents()[26..]).unwrap();
        let Value::Tag(18, inner) = ciborium::de::from_reader::<Value, _>(cose.as_slice()).unwrap()
        else {
            panic!("{name}: not tag 18")
        };
        let Value::Array(parts) = *inner else {
            panic!("{name}: not an array")
        };
        // The statement-structure vectors have no payload or an unreadable
        // header: they carry no valid signature.
        let (Value::Bytes(protected), Value::Bytes(payload), Value::Bytes(sig)) =
            (&parts[0], &parts[2], &parts[3])
        else {
            assert_eq!(v["signature_valid"], false, "{name}");
            continue;
        };
        let header: Option<Value> = ciborium::de::from_reader(protected.as_slice()).ok();
        let es256 = header.and_then(|h| h.as_map().cloned()).is_some_and(|m| {
            m.iter()
                .any(|(k, v)| *k == Value::Integer(1.into()) && *v == Value::Integer((-7).into()))
        });
        let sig_structure = Value::Array(vec![
            Value::Text("Signature1".into()),
            Value::Bytes(protected.clone()),
            Value::Bytes(vec![]),
            Value::Bytes(payload.clone()),
        ]);
        let mut tbs = Vec::new();
        ciborium::ser::into_writer(&sig_structure, &mut tbs).unwrap();
        let parsed = match v["signature_form"].as_str().unwrap() {
            "fixed" => Signature::from_slice(sig),
            "der" => Signature::from_der(sig),
            other => panic!("{name}: signature_form {other}"),
        };
        let ok = es256
            && parsed
                .map(|s| key.verify(&tbs, &s).is_ok())
                .unwrap_or(false);
        assert_eq!(
            ok,
            v["signature_valid"].as_bool().unwrap(),
            "{name}: signature_valid"
        );
        valid += usize::from(ok);
        let protocol_valid = v["protocol_valid"].as_bool().unwrap();
        accepted += usize::from(protocol_valid);
        assert_eq!(
            protocol_valid,
            v.get("reason").is_none(),
            "{name}: a rejected vector names its reason"
        );
        if v["kind"] == "payment_assertion" && protocol_valid {
            PaymentAssertion::from_cbor(payload).unwrap();
        }
    }
    assert!(
        valid > accepted,
        "some vectors must carry valid signatures yet be rejected by the protocol"
    );
    assert!(accepted >= 5 && accepted < list.len());
}

#[test]
fn decode_shows_each_vector_as_it_is() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/vectors");
    let ok =
        biopay::decode::decode_to_json(&std::fs::read(dir.join("payment.cose")).unwrap()).unwrap();
    assert_eq!(ok["kind"], "payment_assertion");
    assert_eq!(ok["cose"]["alg"], "ES256");
    assert_eq!(ok["cose"]["well_formed"], true);
    assert_eq!(ok["payload"]["counter"], 1);
    let es384 =
        biopay::decode::decode_to_json(&std::fs::read(dir.join("payment-alg-es384.cose")).unwrap())
            .unwrap();
    assert_eq!(
        es384["cose"]["alg"], "ES384",
        "the viewer shows the header as written"
    );
    assert_eq!(es384["cose"]["well_formed"], false);
    let reg =
        biopay::decode::decode_to_json(&std::fs::read(dir.join("registration.cose")).unwrap())
            .unwrap();
    assert_eq!(reg["cose"]["x5chain"].as_array().unwrap().len(), 2);
    // Hex input is accepted too.
    let hex_input = hex::encode(std::fs::read(dir.join("payment.cose")).unwrap());
    assert_eq!(
        biopay::decode::decode_to_json(hex_input.as_bytes()).unwrap(),
        ok
    );
}

/// A CBOR map's entry under key `k` (an integer or a text key).
fn entry(map: &ciborium::value::Value, k: ciborium::value::Value) -> ciborium::value::Value {
    map.as_map()
        .unwrap()
        .iter()
        .find(|(key, _)| *key == k)
        .map(|(_, v)| v.clone())
        .unwrap()
}

fn cbor_of(bytes: &[u8]) -> ciborium::value::Value {
    ciborium::de::from_reader(bytes).unwrap()
}

/// The payload of a tagged COSE_Sign1, read with ciborium.
fn cose_payload(cose: &[u8]) -> Vec<u8> {
    let ciborium::value::Value::Tag(18, inner) = cbor_of(cose) else {
        panic!("not tag 18")
    };
    inner.as_array().unwrap()[2].as_bytes().unwrap().clone()
}

/// The App Attest objects of the Apple vectors are CBOR, not COSE, so pycose
/// cannot check them: this re-derives, without biopay's `apple` module,
/// x509 code or COSE code (ciborium, x509-parser and the `p256` crate, the
/// binding of PROTOCOL.md §13.3 built by hand), the facts the manifest's
/// decisions rest on, and requires each to fail for exactly the vector
/// rejected at its step:
/// - in every kind-8 registration's attestation: the leaf's nonce extension
///   equals SHA-256(authData ‖ SHA-256(binding of the issued challenge, rp
///   id, Secure Enclave key, credential id)) (I3), rpIdHash is SHA-256 of
///   the allowed app id (I6), the counter is 0 (I7), the aaguid is
///   production's (I8), and the credentialId is the App Attest key id (I9);
/// - in every assertion file: the DER signature by the stored App Attest key
///   verifies over SHA-256(authenticatorData ‖ SHA-256(the .cose bytes))
///   (J2), rpIdHash is SHA-256 of the app id (J3), the counter exceeds the
///   stored one (J4).
#[test]
fn committed_app_attest_objects_hold_under_an_independent_check() {
    use ciborium::value::Value;
    use p256::ecdsa::{signature::Verifier as _, Signature, VerifyingKey};
    use x509_parser::prelude::{FromDer, X509Certificate};
    let sha256 = biopay::crypto::sha256;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/vectors");
    let read_json = |name: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.join(name)).unwrap()).unwrap()
    };
    let manifest = read_json("manifest.json");
    let scenario = read_json("scenario.json");
    let apple = &scenario["trust"]["apple"];
    assert_eq!(apple["environment"], "production");
    let app_id = apple["app_ids"][0].as_str().unwrap();
    let rp_id = scenario["rp_id"].as_str().unwrap();
    let int = |i: i64| Value::Integer(i.into());
    let text = |s: &str| Value::Text(s.into());
    let (mut registrations, mut assertions) = (0, 0);
    for (v, state) in manifest["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .zip(scenario["vectors"].as_array().unwrap())
    {
        let name = v["name"].as_str().unwrap();
        let step = v["step"].as_str().unwrap();
        let cose = std::fs::read(dir.join(v["cose"].as_str().unwrap())).unwrap();
        if v["procedure"] == "apple_registration" {
            registrations += 1;
            let reg = cbor_of(&cose_payload(&cose));
            let public_key = entry(&reg, int(8)).into_bytes().unwrap();
            let credential_id = entry(&reg, int(6)).into_bytes().unwrap();
            let key_id = entry(&reg, int(11)).into_bytes().unwrap();
            let issued =
                hex::decode(state["challenge"]["message"]["challenge"].as_str().unwrap()).unwrap();
            let binding = Value::Map(vec![
                (int(1), text("biopay app attest binding v1")),
                (int(2), Value::Bytes(issued)),
                (int(3), text(rp_id)),
                (int(4), Value::Bytes(public_key)),
                (int(5), Value::Bytes(credential_id)),
            ]);
            let mut encoded = Vec::new();
            ciborium::ser::into_writer(&binding, &mut encoded).unwrap();
            let client_data_hash = sha256(&encoded);
            let object = cbor_of(&entry(&reg, int(12)).into_bytes().unwrap());
            let auth = entry(&object, text("authData")).into_bytes().unwrap();
            let x5c = entry(&entry(&object, text("attStmt")), text("x5c"));
            let leaf = x5c.as_array().unwrap()[0].as_bytes().unwrap().clone();
            let (_, leaf) = X509Certificate::from_der(&leaf).unwrap();
            let ext = leaf
                .extensions()
                .iter()
                .find(|e| e.oid.to_id_string() == "1.2.840.113635.100.8.2")
                .unwrap();
            assert_eq!(
                &ext.value[..6],
                [0x30, 0x24, 0xa1, 0x22, 0x04, 0x20],
                "{name}"
            );
            let mut nonce_input = auth.clone();
            nonce_input.extend_from_slice(&client_data_hash);
            let checks = [
                ("I3", ext.value[6..] == sha256(&nonce_input)),
                ("I6", auth[..32] == sha256(app_id.as_bytes())),
                ("I7", auth[33..37] == [0, 0, 0, 0]),
                ("I8", &auth[37..53] == b"appattest\0\0\0\0\0\0\0"),
                ("I9", auth[53..55] == [0, 32] && auth[55..87] == key_id[..]),
            ];
            for (check, holds) in checks {
                assert_eq!(holds, step != check, "{name}: {check}");
            }
        }
        if let Some(file) = v.get("app_attest_assertion") {
            assertions += 1;
            let object = cbor_of(&std::fs::read(dir.join(file.as_str().unwrap())).unwrap());
            let data = entry(&object, text("authenticatorData"))
                .into_bytes()
                .unwrap();
            let signature = entry(&object, text("signature")).into_bytes().unwrap();
            assert_eq!(data.len(), 37, "{name}");
            let stored = &state["credential"]["app_attest"];
            let key = VerifyingKey::from_sec1_bytes(
                &hex::decode(stored["public_key"].as_str().unwrap()).unwrap(),
            )
            .unwrap();
            let mut nonce_input = data.clone();
            nonce_input.extend_from_slice(&sha256(&cose));
            let nonce = sha256(&nonce_input);
            let counter = u64::from(u32::from_be_bytes(data[33..37].try_into().unwrap()));
            let checks = [
                (
                    "J2",
                    Signature::from_der(&signature).is_ok_and(|s| key.verify(&nonce, &s).is_ok()),
                ),
                ("J3", data[..32] == sha256(app_id.as_bytes())),
                ("J4", counter > stored["counter"].as_u64().unwrap()),
            ];
            for (check, holds) in checks {
                assert_eq!(holds, step != check, "{name}: {check}");
            }
        }
    }
    assert!(
        registrations >= 6 && assertions >= 4,
        "{registrations} {assertions}"
    );
}
