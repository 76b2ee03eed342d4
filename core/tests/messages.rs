//! Encoding of every message: round trips, known bytes, and strict decoding.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use biopay_core::{
    cbor, messages::DecodeError, CredentialId, Liveness, Message, MessageKind, Modality,
    PaymentAssertion, PaymentChallenge, RegistrationChallenge, SecurityLevel, Transaction,
};
use ciborium::value::Value;

fn tx() -> Transaction {
    Transaction {
        amount_minor: 8800,
        currency: "CNY".into(),
        payee_id: "merchant-0042".into(),
        payee_name: "Coffee Corner".into(),
        order_id: "ORDER-1".into(),
        memo: None,
    }
}

fn reg() -> RegistrationChallenge {
    RegistrationChallenge {
        rp_id: "pay.example.com".into(),
        account_handle: b"acct".to_vec(),
        challenge: [7; 32],
        issued_at: 100,
        expires_at: 220,
        accepted_modalities: vec![Modality::Fingerprint, Modality::Face],
        required_assurance: SecurityLevel::Tee,
        credential_id_prefix: [0xe4, 0xfa],
    }
}

fn assertion() -> PaymentAssertion {
    PaymentAssertion {
        rp_id_hash: [1; 32],
        credential_id: CredentialId::new(vec![2; 32]).unwrap(),
        challenge: [3; 32],
        transaction_hash: [4; 32],
        display_hash: [5; 32],
        modality: Modality::Face,
        template_id: [6; 16],
        liveness: Liveness::Passed,
        failed_attempts: 1,
        counter: 9,
        tee_time: 1000,
        user_confirmed: true,
        enrollment_epoch: [8; 32],
    }
}

/// Re-encodes `bytes` with one top-level map entry changed by `f`.
fn edit(bytes: &[u8], f: impl FnOnce(&mut Vec<(Value, Value)>)) -> Vec<u8> {
    let Value::Map(mut entries) = cbor::from_deterministic_slice(bytes).unwrap() else {
        panic!("not a map")
    };
    f(&mut entries);
    cbor::to_deterministic_vec(Value::Map(entries)).unwrap()
}

#[test]
fn transaction_canonical_encoding_is_stable() {
    // {1: 8800, 2: "CNY", 3: "merchant-0042", 4: "Coffee Corner", 5: "ORDER-1"}
    assert_eq!(
        hex::encode(tx().canonical_encoding()),
        "a501192260026343 4e59036d6d65726368616e742d30303432046d436f6666656520436f726e657205674f524445522d31"
            .replace(' ', "")
    );
    assert_eq!(
        Transaction::from_canonical(&tx().canonical_encoding()).unwrap(),
        tx()
    );
}

/// The one P12 helper hashes exactly the canonical encoding above (known
/// answer computed with Python's hashlib, independent of the crate).
#[test]
fn transaction_hash_is_sha256_of_the_canonical_encoding() {
    assert_eq!(
        hex::encode(tx().transaction_hash()),
        "9d3df2cafb565732623c90befac66ce080d1595cafd8e166e4438aa3a4c5128e"
    );
}

#[test]
fn messages_round_trip() {
    assert_eq!(
        RegistrationChallenge::from_cbor(&reg().to_cbor()).unwrap(),
        reg()
    );
    assert_eq!(
        PaymentAssertion::from_cbor(&assertion().to_cbor()).unwrap(),
        assertion()
    );
    let pc = PaymentChallenge {
        rp_id: "pay.example.com".into(),
        account_handle: b"acct".to_vec(),
        credential_id: CredentialId::new(vec![2; 16]).unwrap(),
        challenge: [9; 32],
        transaction: Transaction {
            memo: Some("2 lattes".into()),
            ..tx()
        },
        issued_at: 1,
        expires_at: 2,
        accepted_modalities: vec![Modality::Face],
        require_liveness: true,
    };
    assert_eq!(PaymentChallenge::from_cbor(&pc.to_cbor()).unwrap(), pc);
}

#[test]
fn kind_and_version_are_checked() {
    let bytes = reg().to_cbor();
    assert_eq!(
        PaymentAssertion::from_cbor(&bytes),
        Err(DecodeError::WrongKind {
            expected: MessageKind::PaymentAssertion,
            found: 1
        })
    );
    let v2 = edit(&bytes, |m| m[1].1 = Value::Integer(2.into()));
    assert_eq!(
        RegistrationChallenge::from_cbor(&v2),
        Err(DecodeError::UnsupportedVersion(2))
    );
}

#[test]
fn unknown_missing_and_mistyped_fields_are_rejected() {
    let bytes = assertion().to_cbor();
    let unknown = edit(&bytes, |m| m.push((Value::Integer(99.into()), Value::Null)));
    assert_eq!(
        PaymentAssertion::from_cbor(&unknown),
        Err(DecodeError::UnknownKey(99))
    );
    let missing = edit(&bytes, |m| {
        m.retain(|(k, _)| *k != Value::Integer(12.into()))
    });
    assert_eq!(
        PaymentAssertion::from_cbor(&missing),
        Err(DecodeError::MissingField("counter"))
    );
    let mistyped = edit(&bytes, |m| {
        for (k, v) in m.iter_mut() {
            if *k == Value::Integer(14.into()) {
                *v = Value::Integer(1.into());
            }
        }
    });
    assert!(matches!(
        PaymentAssertion::from_cbor(&mistyped),
        Err(DecodeError::InvalidField {
            field: "user_confirmed",
            ..
        })
    ));
    let text_key = edit(&bytes, |m| m.push((Value::Text("x".into()), Value::Null)));
    assert_eq!(
        PaymentAssertion::from_cbor(&text_key),
        Err(DecodeError::NonIntegerKey)
    );
}

#[test]
fn duplicate_keys_and_non_canonical_bytes_are_rejected() {
    let bytes = assertion().to_cbor();
    // Duplicate: append a second key 3 by hand (the encoder refuses to emit one).
    let mut dup = bytes.clone();
    dup[0] += 1; // one more map entry (0xad -> 0xae)
    dup.extend_from_slice(&[0x03, 0x40]);
    assert!(PaymentAssertion::from_cbor(&dup).is_err());
    assert_eq!(
        cbor::from_deterministic_slice(&dup),
        Err(cbor::CborError::DuplicateKey)
    );
    // Truncated at every length.
    for n in 0..bytes.len() {
        assert!(
            PaymentAssertion::from_cbor(&bytes[..n]).is_err(),
            "truncated at {n}"
        );
    }
}

#[test]
fn field_constraints() {
    let mut r = reg();
    r.accepted_modalities = vec![Modality::Face, Modality::Fingerprint];
    assert!(
        RegistrationChallenge::from_cbor(&r.to_cbor()).is_err(),
        "unsorted modalities"
    );
    let mut r = reg();
    r.rp_id = "Pay.Example.com".into();
    assert!(
        RegistrationChallenge::from_cbor(&r.to_cbor()).is_err(),
        "upper-case rp id"
    );
    let mut r = reg();
    r.expires_at = r.issued_at;
    assert!(
        RegistrationChallenge::from_cbor(&r.to_cbor()).is_err(),
        "empty validity window"
    );
    for bad in ["a..b", "-a.com", "a-.com", "10.0.0.1", "", &"a".repeat(64)] {
        let r = RegistrationChallenge {
            rp_id: bad.to_string(),
            ..reg()
        };
        assert!(
            RegistrationChallenge::from_cbor(&r.to_cbor()).is_err(),
            "rp id {bad:?} accepted"
        );
    }
    for good in [
        "pay.example.com",
        "localhost",
        "a-b.c0.example",
        &format!("{}.com", "a".repeat(63)),
    ] {
        biopay_core::messages::validate_rp_id(good).unwrap();
    }
    for bad in [
        "Coffee\nPay 1.00 CNY",
        "Coffee\u{202E}renroC",
        "",
        "Zero\u{200B}width",
        "Arabic\u{061C}mark",
        "soft\u{00AD}hyphen",
        "tag\u{E0041}",
        "filler\u{3164}",
        "isolate\u{2066}x",
    ] {
        let t = Transaction {
            payee_name: bad.into(),
            ..tx()
        };
        assert!(t.validate().is_err(), "{bad:?} accepted");
    }
    assert!(Transaction {
        currency: "cny".into(),
        ..tx()
    }
    .validate()
    .is_err());
    assert!(Transaction {
        amount_minor: 0,
        ..tx()
    }
    .validate()
    .is_err());
    assert!(CredentialId::new(vec![0; 15]).is_err());
    assert!(CredentialId::new(vec![0; 65]).is_err());
}

/// `amount_minor` is 1 ..= 2^63 − 1 (PROTOCOL.md §4.3.2): a larger amount
/// fits the CBOR uint but not the int64 of JSON clients, SQL and the JVM, so
/// it is refused wherever a transaction is validated or decoded.
#[test]
fn amounts_beyond_int64_are_invalid() {
    let max = u64::try_from(i64::MAX).unwrap();
    assert_eq!(biopay_core::messages::MAX_AMOUNT_MINOR, max);
    for (amount, ok) in [
        (0, false),
        (1, true),
        (max, true),
        (max + 1, false),
        (u64::MAX, false),
    ] {
        let t = Transaction {
            amount_minor: amount,
            ..tx()
        };
        assert_eq!(t.validate().is_ok(), ok, "{amount}");
        let pc = PaymentChallenge {
            rp_id: "pay.example.com".into(),
            account_handle: b"acct".to_vec(),
            credential_id: CredentialId::new(vec![2; 16]).unwrap(),
            challenge: [9; 32],
            transaction: t,
            issued_at: 1,
            expires_at: 2,
            accepted_modalities: vec![Modality::Face],
            require_liveness: false,
        };
        // A device decoding such a challenge refuses it too.
        assert_eq!(
            PaymentChallenge::from_cbor(&pc.to_cbor()).is_ok(),
            ok,
            "{amount}"
        );
    }
}

#[test]
fn registration_challenge_encodes_as_the_spec_example() {
    // docs/PROTOCOL.md §4.2, with the credential_id_prefix of §4.1.9.
    let c = RegistrationChallenge {
        rp_id: "pay.example.com".into(),
        account_handle: b"acct".to_vec(),
        challenge: [7; 32],
        issued_at: 1_795_000_000,
        expires_at: 1_795_000_120,
        accepted_modalities: vec![Modality::Fingerprint, Modality::Face],
        required_assurance: SecurityLevel::Tee,
        credential_id_prefix: biopay_core::routing::credential_id_prefix(
            "pay.example.com",
            b"acct",
        ),
    };
    let spec = "aa01010201036f7061792e6578616d706c652e636f6d044461636374\
                 05582007070707070707070707070707070707070707070707070707070707070707\
                 07061a6afd86c0071a6afd87380882010209020a42e4fa";
    assert_eq!(hex::encode(c.to_cbor()), spec);
    assert_eq!(
        RegistrationChallenge::from_cbor(&hex::decode(spec).unwrap()).unwrap(),
        c
    );
}
