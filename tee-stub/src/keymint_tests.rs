//! Tests of the KeyMint mode: the attestation verifies with core's Android
//! verifier and passes its policy, the full platform-keystore link, the
//! enrollment binding, lockouts, StrongBox, persistence.

use crate::*;
use biopay_core::{
    android::{self, check_policy, AndroidSecurityLevel, StatusList},
    crypto::{self, sha256},
    AndroidPolicy, AndroidPolicyFailure, AndroidTrust, DeviceError, ManualClock, MemoryStore,
    Modality, PlatformKeystoreClient, PlatformKeystoreSigner, Policy, SecurityLevel, SystemRandom,
    Transaction, TrustConfig, Verifier,
};
use std::{cell::RefCell, path::Path, sync::Arc};

const RP: &str = "pay.example.com";
const MODEL: &str = "acme-phone-x1";
const PACKAGE: &str = "com.example.pay";
const DIGEST: [u8; 32] = [0xAB; 32];
/// 2026-11-21.
const NOW: u64 = 1_795_000_000;

fn pki() -> VendorPki {
    VendorPki::new("Acme Devices", b"keymint test vendor").unwrap()
}

fn app() -> KeymintApplication {
    KeymintApplication {
        package_name: PACKAGE.into(),
        signing_cert_digest: DIGEST,
    }
}

fn device_at(dir: &Path, level: SecurityLevel) -> SoftwareTee {
    let mut config = DeviceConfig::new(MODEL);
    config.security_level = level;
    let clock = Arc::new(ManualClock::new(NOW));
    let mut tee = SoftwareTee::provision(&pki(), config, dir, None, clock).unwrap();
    tee.enroll_fingerprint("right-thumb").unwrap();
    tee
}

fn policy() -> AndroidPolicy {
    AndroidPolicy {
        package_name: Some(PACKAGE.into()),
        signing_cert_digests: vec![DIGEST],
        min_os_patch_level: 202_401,
        require_strongbox: false,
    }
}

fn thumb() -> Presentation {
    Presentation::Finger("right-thumb".into())
}

#[test]
fn attestation_verifies_to_the_vendor_root_and_passes_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let mut tee = device_at(dir.path(), SecurityLevel::Tee);
    let key = tee
        .keymint_generate_key("k1", b"server challenge", false, &app())
        .unwrap();
    assert_eq!(key.public_key.len(), 65);
    assert!(!key.strong_box);
    assert_eq!(key.attestation_chain.len(), 3);
    let verified = android::verify_attestation_chain(
        &key.attestation_chain,
        &[pki().trust_anchor()],
        &StatusList::default(),
        NOW,
    )
    .unwrap();
    assert_eq!(verified.leaf_public_key, key.public_key);
    assert_eq!(verified.path, vec![0, 1, 2]);
    // Not trusted under Google's roots or another vendor's.
    let other = VendorPki::new("Other", b"other").unwrap();
    assert!(android::verify_attestation_chain(
        &key.attestation_chain,
        &[other.trust_anchor()],
        &StatusList::default(),
        NOW
    )
    .is_err());
    assert!(android::verify_attestation_chain(
        &key.attestation_chain,
        &android::google_roots(),
        &StatusList::default(),
        NOW
    )
    .is_err());
    // The key certificate is signed by the device attestation key.
    let (_, ca) = x509_parser::parse_x509_certificate(&key.attestation_chain[1]).unwrap();
    assert_eq!(
        ca.public_key().subject_public_key.data.as_ref(),
        crypto_public(&tee).as_slice()
    );
    let kd = android::key_description_of(&key.attestation_chain[0]).unwrap();
    assert_eq!(kd.attestation_version, 200);
    assert_eq!(
        kd.attestation_security_level,
        AndroidSecurityLevel::TrustedEnvironment
    );
    assert_eq!(kd.hardware_enforced.digest, vec![4]);
    assert_eq!(
        check_policy(&kd, &policy(), Some(b"server challenge")),
        vec![]
    );
    assert_eq!(
        check_policy(&kd, &policy(), Some(b"another challenge")),
        vec![AndroidPolicyFailure::ChallengeMismatch]
    );
    let strict = AndroidPolicy {
        require_strongbox: true,
        ..policy()
    };
    assert_eq!(
        check_policy(&kd, &strict, None),
        vec![AndroidPolicyFailure::StrongBoxRequired {
            found: AndroidSecurityLevel::TrustedEnvironment
        }]
    );
}

fn crypto_public(tee: &SoftwareTee) -> Vec<u8> {
    crate::crypto::sec1_public(&tee.attestation_key)
}

#[test]
fn strong_box_devices_attest_strong_box_and_others_refuse_to_require_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut tee = device_at(&dir.path().join("tee"), SecurityLevel::Tee);
    assert_eq!(
        tee.keymint_generate_key("k", b"c", true, &app()),
        Err(DeviceError::Keystore("StrongBox unavailable".into()))
    );
    assert_eq!(tee.keymint_key_state("k"), KeymintKeyState::Missing);
    let mut sb = device_at(&dir.path().join("sb"), SecurityLevel::StrongBox);
    let key = sb.keymint_generate_key("k", b"c", true, &app()).unwrap();
    assert!(key.strong_box);
    let kd = android::key_description_of(&key.attestation_chain[0]).unwrap();
    let strict = AndroidPolicy {
        require_strongbox: true,
        ..policy()
    };
    assert_eq!(check_policy(&kd, &strict, Some(b"c")), vec![]);
}

#[test]
fn sign_needs_a_match_shows_the_prompt_and_returns_der() {
    let dir = tempfile::tempdir().unwrap();
    let mut tee = device_at(dir.path(), SecurityLevel::Tee);
    let key = tee.keymint_generate_key("k", b"c", false, &app()).unwrap();
    // Nobody in front of the sensor: canceled.
    assert_eq!(
        tee.keymint_sign("k", b"data", "Pay 1.00 CNY"),
        Err(DeviceError::UserCanceled)
    );
    assert_eq!(tee.last_display(), Some("Pay 1.00 CNY"));
    tee.user().present(thumb());
    let sig = tee.keymint_sign("k", b"data", "Pay 2.00 CNY").unwrap();
    assert_eq!(tee.last_display(), Some("Pay 2.00 CNY"));
    assert_eq!(
        crypto::es256_signature_format(&sig),
        crypto::SignatureFormat::Der
    );
    assert!(crypto::verify_es256(
        &key.public_key,
        b"data",
        &sig,
        crypto::SignatureFormat::Der
    ));
    assert!(!crypto::verify_es256(
        &key.public_key,
        b"other",
        &sig,
        crypto::SignatureFormat::Der
    ));
}

#[test]
fn lockouts_apply_to_keymint_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let mut tee = device_at(dir.path(), SecurityLevel::Tee);
    tee.keymint_generate_key("k", b"c", false, &app()).unwrap();
    for _ in 0..5 {
        tee.user().present(Presentation::Finger("stranger".into()));
        assert_eq!(tee.keymint_sign("k", b"d", "p"), Err(DeviceError::NoMatch));
    }
    tee.user().present(thumb());
    assert_eq!(
        tee.keymint_sign("k", b"d", "p"),
        Err(DeviceError::LockedOut {
            until: Some(NOW + 30)
        })
    );
    tee.passcode_reset().unwrap();
    assert!(tee.keymint_sign("k", b"d", "p").is_ok());
}

#[test]
fn enrollment_changes_invalidate_keys() {
    let dir = tempfile::tempdir().unwrap();
    let mut tee = device_at(dir.path(), SecurityLevel::Tee);
    tee.keymint_generate_key("k", b"c", false, &app()).unwrap();
    assert_eq!(tee.keymint_key_state("k"), KeymintKeyState::Valid);
    tee.enroll_fingerprint("left-thumb").unwrap();
    assert_eq!(tee.keymint_key_state("k"), KeymintKeyState::Invalidated);
    tee.user().present(thumb());
    assert_eq!(
        tee.keymint_sign("k", b"d", "p"),
        Err(DeviceError::KeyInvalidated)
    );
    // The presentation was not consumed: no prompt for an invalid key.
    assert_eq!(tee.user().pending_presentations(), 1);
    // Removing the new finger does not bring the key back.
    tee.remove_fingerprint("left-thumb").unwrap();
    assert_eq!(tee.keymint_key_state("k"), KeymintKeyState::Invalidated);
    // A new key is bound to the current enrollment.
    tee.keymint_generate_key("k2", b"c", false, &app()).unwrap();
    assert_eq!(tee.keymint_key_state("k2"), KeymintKeyState::Valid);
    tee.remove_fingerprint("right-thumb").unwrap();
    assert_eq!(tee.keymint_key_state("k2"), KeymintKeyState::Invalidated);
    assert_eq!(
        tee.keymint_generate_key("k3", b"c", false, &app()),
        Err(DeviceError::NotEnrolled)
    );
}

#[test]
fn keys_survive_a_restart_and_delete_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let key = {
        let mut tee = device_at(dir.path(), SecurityLevel::Tee);
        tee.keymint_generate_key("k", b"c", false, &app()).unwrap()
    };
    let mut tee = SoftwareTee::open(dir.path(), Arc::new(ManualClock::new(NOW))).unwrap();
    assert_eq!(tee.keymint_aliases(), vec!["k".to_owned()]);
    tee.user().present(thumb());
    let sig = tee.keymint_sign("k", b"d", "p").unwrap();
    assert!(crypto::verify_es256(
        &key.public_key,
        b"d",
        &sig,
        crypto::SignatureFormat::Der
    ));
    tee.keymint_delete_key("k").unwrap();
    tee.keymint_delete_key("k").unwrap();
    assert_eq!(tee.keymint_key_state("k"), KeymintKeyState::Missing);
    assert_eq!(
        tee.keymint_sign("k", b"d", "p"),
        Err(DeviceError::KeyInvalidated)
    );
    let reopened = SoftwareTee::open(dir.path(), Arc::new(ManualClock::new(NOW))).unwrap();
    assert!(reopened.keymint_aliases().is_empty());
}

#[test]
fn the_test_double_certifies_a_foreign_key() {
    let pki = pki();
    let foreign = p256::ecdsa::SigningKey::from_slice(&[3; 32]).unwrap();
    let public = foreign
        .verifying_key()
        .to_encoded_point(false)
        .as_bytes()
        .to_vec();
    let chain = pki
        .certify_keystore_key(&public, b"chal", PACKAGE, DIGEST, false)
        .unwrap();
    let verified = android::verify_attestation_chain(
        &chain,
        &[pki.trust_anchor()],
        &StatusList::default(),
        NOW,
    )
    .unwrap();
    assert_eq!(verified.leaf_public_key, public);
    let kd = android::key_description_of(&chain[0]).unwrap();
    assert_eq!(check_policy(&kd, &policy(), Some(b"chal")), vec![]);
    assert!(pki
        .certify_keystore_key(&[4; 65], b"chal", PACKAGE, DIGEST, false)
        .is_err());
}

/// The app side: PlatformKeystoreClient over the KeyMint mode.
struct Signer<'a> {
    tee: &'a RefCell<SoftwareTee>,
    alias: &'a str,
    chain: Vec<Vec<u8>>,
}

impl PlatformKeystoreSigner for Signer<'_> {
    fn attestation_chain(&self) -> Result<Vec<Vec<u8>>, DeviceError> {
        Ok(self.chain.clone())
    }
    fn sign(&self, data: &[u8]) -> Result<Vec<u8>, DeviceError> {
        self.sign_with_prompt(data, "")
    }
    fn sign_with_prompt(&self, data: &[u8], prompt: &str) -> Result<Vec<u8>, DeviceError> {
        self.tee.borrow_mut().keymint_sign(self.alias, data, prompt)
    }
}

#[test]
fn full_platform_keystore_link_with_the_verifier() {
    let dir = tempfile::tempdir().unwrap();
    let tee = RefCell::new(device_at(dir.path(), SecurityLevel::Tee));
    let clock = Arc::new(ManualClock::new(NOW));
    let verifier = Verifier::new(
        RP,
        TrustConfig::new(),
        Policy::default(),
        MemoryStore::new(),
        clock.clone(),
        SystemRandom::new(),
    )
    .unwrap()
    .with_android(AndroidTrust::new(policy()).with_anchors(vec![pki().trust_anchor()]));
    let reg = verifier
        .registration_challenge(b"account-7", &[Modality::Fingerprint], SecurityLevel::Tee)
        .unwrap();
    let key = tee
        .borrow_mut()
        .keymint_generate_key("k", &reg.challenge, false, &app())
        .unwrap();
    let id = biopay_core::routing::prefixed_credential_id(reg.credential_id_prefix, &[0x42; 32])
        .unwrap();
    let mut client = PlatformKeystoreClient::new(
        RP,
        Signer {
            tee: &tee,
            alias: "k",
            chain: key.attestation_chain,
        },
        clock.clone(),
        id.clone(),
        &[Modality::Fingerprint],
        [1; 32],
    );
    tee.borrow_mut().user().present(thumb());
    let statement = client
        .register(&biopay_core::Message::to_cbor(&reg))
        .unwrap();
    assert_eq!(
        tee.borrow().last_display(),
        Some("Register this device for payments at pay.example.com")
    );
    let record = verifier.verify_platform_registration(&statement).unwrap();
    assert_eq!(record.record.public_key, key.public_key);
    let tx = Transaction {
        amount_minor: 8800,
        currency: "CNY".into(),
        payee_id: "merchant-0042".into(),
        payee_name: "Coffee Corner".into(),
        order_id: "o-1".into(),
        memo: None,
    };
    let pay = verifier.payment_challenge(&id, tx).unwrap();
    tee.borrow_mut().user().present(thumb());
    let assertion = client
        .authorize(&biopay_core::Message::to_cbor(&pay), Modality::Fingerprint)
        .unwrap();
    let shown = tee.borrow().last_display().map(str::to_owned).unwrap();
    assert!(shown.contains("\nPay 88.00 CNY\n"));
    let approved = verifier.verify_payment(&assertion).unwrap();
    assert_eq!(approved.counter, 1);
    let s = biopay_core::cose::parse_sign1_any_form(&assertion, false).unwrap();
    let a = <biopay_core::PaymentAssertion as biopay_core::Message>::from_cbor(&s.payload).unwrap();
    assert_eq!(a.display_hash, sha256(shown.as_bytes()));
}
