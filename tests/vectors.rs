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
