//! Platform-keystore (Android Keystore) credentials end to end, on synthetic
//! attestation chains (rcgen + a hand-encoded KeyDescription): every policy
//! rejection and every chain error individually, registration with DER and
//! fixed signatures, payments, the platform-keystore amount limit, and the
//! fixed-form-only rule for TEE credentials. docs/PROTOCOL.md §12.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod android_support;
mod common;

use android_support::*;
use biopay::{
    android::{
        AndroidBootState, AndroidChainError, AndroidPolicy, AndroidPolicyFailure as F,
        AndroidSecurityLevel, AndroidTrust, KeyDescriptionError, RevocationStatus, StatusEntry,
        StatusList,
    },
    cose,
    x509::{ChainError, TrustAnchor},
    *,
};
use std::sync::Arc;

const RP: &str = "pay.example.com";
type Server = Verifier<MemoryStore, Arc<ManualClock>, SystemRandom>;
type App = PlatformKeystoreClient<RingKeystore, Arc<ManualClock>>;

fn policy() -> AndroidPolicy {
    AndroidPolicy {
        package_name: Some(PACKAGE.into()),
        signing_cert_digests: vec![APP_DIGEST],
        min_os_patch_level: 202401,
        require_strongbox: false,
    }
}

struct Setup {
    clock: Arc<ManualClock>,
    server: Server,
    pki: Pki,
}

fn setup_with(pki: PkiSpec, android: impl FnOnce(TrustAnchor) -> Option<AndroidTrust>) -> Setup {
    setup_policy(pki, android, Policy::default())
}

fn setup_policy(
    pki: PkiSpec,
    android: impl FnOnce(TrustAnchor) -> Option<AndroidTrust>,
    verifier_policy: Policy,
) -> Setup {
    let pki = Pki::new(&pki);
    let clock = Arc::new(ManualClock::new(NOW));
    let mut server = Verifier::new(
        RP,
        TrustConfig::new(),
        verifier_policy,
        MemoryStore::new(),
        clock.clone(),
        SystemRandom::new(),
    )
    .unwrap();
    if let Some(t) = android(pki.root()) {
        server = server.with_android(t);
    }
    Setup { clock, server, pki }
}

/// A server that trusts the synthetic root (only) under [`policy`].
fn setup() -> Setup {
    setup_with(PkiSpec::default(), |root| {
        Some(AndroidTrust::new(policy()).with_anchors(vec![root]))
    })
}

/// An id for a registration of `account-7` (the account of every
/// registration here): its prefix (§4.1.9), then 16 × `byte`.
fn cred_id(byte: u8) -> CredentialId {
    routing::prefixed_credential_id(routing::credential_id_prefix(RP, b"account-7"), &[byte; 16])
        .unwrap()
}

/// What to attest.
enum Ext {
    /// A KeyDescription edited from a good one for the issued challenge.
    Kd(Box<dyn FnOnce(&mut Kd)>),
    /// Raw extension bytes.
    Raw(Vec<u8>),
    /// No extension.
    None,
}

/// Issues a registration challenge, a leaf for it, and the app's signed
/// registration (not verified yet).
fn attempt(s: &Setup, ext: Ext, corrupt: bool, form: Form, id: u8) -> (App, Vec<u8>) {
    let c = s
        .server
        .registration_challenge(b"account-7", &[Modality::Fingerprint], SecurityLevel::Tee)
        .unwrap();
    let ext = match ext {
        Ext::Kd(edit) => {
            let mut kd = Kd::good(&c.challenge);
            edit(&mut kd);
            Some(kd.encode())
        }
        Ext::Raw(b) => Some(b),
        Ext::None => None,
    };
    let att = s.pki.issue(ext, corrupt);
    let keystore = RingKeystore {
        pkcs8: att.leaf_pkcs8,
        chain: att.chain,
        form,
    };
    let mut app = PlatformKeystoreClient::new(
        RP,
        keystore,
        s.clock.clone(),
        cred_id(id),
        &[Modality::Fingerprint],
        [0xE0; 32],
    );
    let bytes = app.register(&c.to_cbor()).unwrap();
    (app, bytes)
}

fn register(s: &Setup, form: Form, id: u8) -> (App, CredentialRecord) {
    let (app, bytes) = attempt(s, Ext::Kd(Box::new(|_| {})), false, form, id);
    let record = s
        .server
        .verify_platform_registration(&bytes)
        .unwrap()
        .record;
    (app, record)
}

/// The rejection of a registration whose KeyDescription is edited by `edit`.
fn policy_rejection(edit: impl FnOnce(&mut Kd) + 'static) -> Vec<F> {
    let s = setup();
    let (_, bytes) = attempt(&s, Ext::Kd(Box::new(edit)), false, Form::Der, 1);
    let r = s.server.verify_platform_registration(&bytes).unwrap_err();
    assert_eq!(r.step, Step::A15AndroidPolicy, "{r}");
    match r.reason {
        Reason::AndroidPolicy(f) => f,
        other => panic!("unexpected reason {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Registration and payment

#[test]
fn registers_with_der_signature_and_pays_with_der_and_fixed() {
    let s = setup();
    let (mut app, record) = register(&s, Form::Der, 1);
    assert_eq!(record.kind, CredentialKind::PlatformKeystore);
    assert_eq!(record.device_model, ANDROID_KEYSTORE_MODEL);
    assert_eq!(record.security_level, SecurityLevel::Tee);
    assert_eq!(record.modalities, vec![Modality::Fingerprint]);
    assert_eq!(record.public_key, app_public_key(&app));
    assert_eq!(record.counter, 0);

    // JCA-style DER signature.
    let c = s
        .server
        .payment_challenge(&record.credential_id, common::tx("order-1", 8800))
        .unwrap();
    let assertion = app.authorize(&c.to_cbor(), Modality::Fingerprint).unwrap();
    let sig = cose::parse_sign1_any_form(&assertion, false)
        .unwrap()
        .signature;
    assert_ne!(sig.len(), 64, "a DER signature");
    assert_eq!(sig[0], 0x30);
    let ok = s.server.verify_payment(&assertion).unwrap();
    assert_eq!(ok.counter, 1);
    assert_eq!(ok.transaction.order_id, "order-1");
    // Replay.
    assert_eq!(
        s.server.verify_payment(&assertion).unwrap_err().step,
        Step::P9Challenge
    );

    // The same credential signing in COSE's fixed form.
    let mut fixed = PlatformKeystoreClient::resume(
        RP,
        RingKeystore {
            pkcs8: app_pkcs8(&app),
            chain: Vec::new(),
            form: Form::Fixed,
        },
        s.clock.clone(),
        app.state().clone(),
    );
    let c = s
        .server
        .payment_challenge(&record.credential_id, common::tx("order-2", 9900))
        .unwrap();
    let assertion = fixed
        .authorize(&c.to_cbor(), Modality::Fingerprint)
        .unwrap();
    assert_eq!(
        cose::parse_sign1(&assertion, false)
            .unwrap()
            .signature
            .len(),
        64
    );
    assert_eq!(s.server.verify_payment(&assertion).unwrap().counter, 2);
    let _ = &mut app;
}

fn app_public_key(app: &App) -> Vec<u8> {
    RingKeystore {
        pkcs8: app_pkcs8(app),
        chain: Vec::new(),
        form: Form::Der,
    }
    .public_key()
}

fn app_pkcs8(app: &App) -> Vec<u8> {
    app.signer().pkcs8.clone()
}

#[test]
fn registers_with_fixed_signature() {
    let s = setup();
    let (_, record) = register(&s, Form::Fixed, 2);
    assert_eq!(record.kind, CredentialKind::PlatformKeystore);
}

#[test]
fn platform_keystore_limit_rejects_larger_payment_at_p17() {
    let s = setup();
    let (mut app, record) = register(&s, Form::Der, 3);
    let max = Policy::default().platform_keystore_max_amount["CNY"];
    let c = s
        .server
        .payment_challenge(&record.credential_id, common::tx("big", max + 1))
        .unwrap();
    let assertion = app.authorize(&c.to_cbor(), Modality::Fingerprint).unwrap();
    let r = s.server.verify_payment(&assertion).unwrap_err();
    assert_eq!(r.step, Step::P17Policy);
    assert_eq!(
        r.reason,
        Reason::PlatformKeystoreLimit {
            currency: "CNY".into(),
            max: Some(max),
            amount: max + 1
        }
    );
    // At the limit it passes.
    let c = s
        .server
        .payment_challenge(&record.credential_id, common::tx("at-limit", max))
        .unwrap();
    let assertion = app.authorize(&c.to_cbor(), Modality::Fingerprint).unwrap();
    s.server.verify_payment(&assertion).unwrap();
    // A currency without a limit is not approvable by such credentials.
    let mut tx = common::tx("jpy", 100);
    tx.currency = "JPY".into();
    let c = s
        .server
        .payment_challenge(&record.credential_id, tx)
        .unwrap();
    let assertion = app.authorize(&c.to_cbor(), Modality::Fingerprint).unwrap();
    let r = s.server.verify_payment(&assertion).unwrap_err();
    assert_eq!(r.step, Step::P17Policy);
    assert!(matches!(
        r.reason,
        Reason::PlatformKeystoreLimit { max: None, .. }
    ));
}

#[test]
fn app_face_liveness_claims_never_satisfy_high_value() {
    let mut p = Policy::default();
    p.platform_keystore_max_amount
        .insert("CNY".into(), 10_000_000);
    let s = setup_policy(
        PkiSpec::default(),
        |root| Some(AndroidTrust::new(policy()).with_anchors(vec![root])),
        p,
    );
    let (_, record) = register(&s, Form::Der, 6);
    // 3000.00 CNY is high value: face with liveness or StrongBox; the app's
    // liveness claim does not count and the key is in a TEE.
    assert_eq!(
        s.server
            .payment_challenge(&record.credential_id, common::tx("hv", 300_000)),
        Err(IssueError::PolicyUnsatisfiable)
    );
}

#[test]
fn der_signature_on_tee_credential_is_rejected() {
    let mut w = common::World::new();
    let (_, assertion) = w.assertion("der-on-tee");
    let parsed = cose::parse_sign1(&assertion, false).unwrap();
    let der = p256::ecdsa::Signature::from_slice(&parsed.signature)
        .unwrap()
        .to_der()
        .as_bytes()
        .to_vec();
    let resigned = cose::sign1(parsed.payload.clone(), &[], |_| {
        Ok::<_, std::convert::Infallible>(der.clone())
    })
    .unwrap();
    let r = w.server.verify_payment(&resigned).unwrap_err();
    assert_eq!(r.step, Step::P2Header);
    assert_eq!(
        r.reason,
        Reason::Statement(cose::CoseError::SignatureLength)
    );
    // The fixed original is still good.
    w.server.verify_payment(&assertion).unwrap();
}

#[test]
fn credential_id_placed_on_another_accounts_shard_is_refused_at_a16() {
    // The app (which forms a platform credential's id) puts another slot in
    // front of the id, to land the credential on a shard its account is not
    // on (§4.1.9). It rewrites the challenge it hands the SDK so that the
    // SDK's own check passes; the key is attested for the real challenge.
    let s = setup();
    let c = s
        .server
        .registration_challenge(b"account-7", &[Modality::Fingerprint], SecurityLevel::Tee)
        .unwrap();
    let other = routing::credential_id_prefix(RP, b"account-of-someone-else");
    for prefix in [
        other,
        [c.credential_id_prefix[0], c.credential_id_prefix[1] ^ 1],
    ] {
        assert_ne!(prefix, c.credential_id_prefix);
        let att = s.pki.issue(Some(Kd::good(&c.challenge).encode()), false);
        let mut app = PlatformKeystoreClient::new(
            RP,
            RingKeystore {
                pkcs8: att.leaf_pkcs8,
                chain: att.chain,
                form: Form::Der,
            },
            s.clock.clone(),
            routing::prefixed_credential_id(prefix, &[0x77; 32]).unwrap(),
            &[Modality::Fingerprint],
            [0; 32],
        );
        let mut forged = c.clone();
        forged.credential_id_prefix = prefix;
        let bytes = app.register(&forged.to_cbor()).unwrap();
        let r = s.server.verify_platform_registration(&bytes).unwrap_err();
        assert_eq!(
            (r.step, r.reason),
            (Step::A16CredentialId, Reason::CredentialIdPrefixMismatch)
        );
        assert!(s
            .server
            .store()
            .credential(&app.state().credential_id)
            .unwrap()
            .is_none());
    }
    // The challenge survives, and the honest id registers with it.
    let (_, record) = {
        let att = s.pki.issue(Some(Kd::good(&c.challenge).encode()), false);
        let mut app = PlatformKeystoreClient::new(
            RP,
            RingKeystore {
                pkcs8: att.leaf_pkcs8,
                chain: att.chain,
                form: Form::Der,
            },
            s.clock.clone(),
            cred_id(0x78),
            &[Modality::Fingerprint],
            [0; 32],
        );
        let bytes = app.register(&c.to_cbor()).unwrap();
        let record = s
            .server
            .verify_platform_registration(&bytes)
            .unwrap()
            .record;
        (app, record)
    };
    assert_eq!(
        credential_slot(&record.credential_id),
        account_slot(RP, b"account-7")
    );
}

#[test]
fn the_sdk_refuses_a_challenge_whose_prefix_its_credential_id_lacks() {
    // Fail early, on the device: the verifier would refuse it at A16.
    let s = setup();
    let c = s
        .server
        .registration_challenge(b"account-8", &[Modality::Fingerprint], SecurityLevel::Tee)
        .unwrap();
    let att = s.pki.issue(Some(Kd::good(&c.challenge).encode()), false);
    let mut app = PlatformKeystoreClient::new(
        RP,
        RingKeystore {
            pkcs8: att.leaf_pkcs8,
            chain: att.chain,
            form: Form::Der,
        },
        s.clock.clone(),
        cred_id(9), // for account-7
        &[Modality::Fingerprint],
        [0; 32],
    );
    match app.register(&c.to_cbor()) {
        Err(DeviceError::InvalidChallenge(why)) => {
            assert!(why.contains("credential_id_prefix"), "{why}")
        }
        other => panic!("expected InvalidChallenge, got {other:?}"),
    }
    assert!(s
        .server
        .store()
        .challenge(&c.challenge)
        .unwrap()
        .is_some_and(|e| !e.consumed));
}

#[test]
fn wrong_attested_key_signature_is_rejected_at_a9() {
    let s = setup();
    let c = s
        .server
        .registration_challenge(b"account-7", &[Modality::Fingerprint], SecurityLevel::Tee)
        .unwrap();
    let att = s.pki.issue(Some(Kd::good(&c.challenge).encode()), false);
    let other = s.pki.issue(Some(Kd::good(&c.challenge).encode()), false);
    let mut app = PlatformKeystoreClient::new(
        RP,
        RingKeystore {
            pkcs8: other.leaf_pkcs8,
            chain: att.chain,
            form: Form::Der,
        },
        s.clock.clone(),
        cred_id(9),
        &[Modality::Fingerprint],
        [0; 32],
    );
    let bytes = app.register(&c.to_cbor()).unwrap();
    let r = s.server.verify_platform_registration(&bytes).unwrap_err();
    assert_eq!(
        (r.step, r.reason),
        (Step::A9Signature, Reason::BadSignature)
    );
}

#[test]
fn registration_is_single_use_and_needs_android_trust() {
    let s = setup();
    let (_, bytes) = attempt(&s, Ext::Kd(Box::new(|_| {})), false, Form::Der, 4);
    s.server.verify_platform_registration(&bytes).unwrap();
    assert_eq!(
        s.server
            .verify_platform_registration(&bytes)
            .unwrap_err()
            .step,
        Step::A11Challenge
    );
    let s = setup_with(PkiSpec::default(), |_| None);
    let (_, bytes) = attempt(&s, Ext::Kd(Box::new(|_| {})), false, Form::Der, 4);
    let r = s.server.verify_platform_registration(&bytes).unwrap_err();
    assert_eq!(
        (r.step, r.reason),
        (Step::A4Platform, Reason::PlatformNotTrusted)
    );
    // The TEE registration path does not take the new kind (here: a DER signature, R2).
    assert_eq!(
        s.server.verify_registration(&bytes).unwrap_err().step,
        Step::R2Header
    );
}

// ---------------------------------------------------------------------------
// Each policy check, one at a time

#[test]
fn a_good_key_description_has_no_failures() {
    let s = setup();
    register(&s, Form::Der, 5);
}

#[test]
fn policy_challenge_mismatch() {
    assert_eq!(
        policy_rejection(|kd| kd.challenge = b"abc".to_vec()),
        vec![F::ChallengeMismatch]
    );
}

#[test]
fn policy_software_security_level() {
    assert_eq!(
        policy_rejection(|kd| kd.attestation_level = 0),
        vec![F::SecurityLevelTooLow {
            found: AndroidSecurityLevel::Software
        }]
    );
    assert_eq!(
        policy_rejection(|kd| kd.key_mint_level = 0),
        vec![F::SecurityLevelTooLow {
            found: AndroidSecurityLevel::Software
        }]
    );
}

#[test]
fn policy_strongbox_required() {
    let s = setup_with(PkiSpec::default(), |root| {
        let mut p = policy();
        p.require_strongbox = true;
        Some(AndroidTrust::new(p).with_anchors(vec![root]))
    });
    let (_, bytes) = attempt(&s, Ext::Kd(Box::new(|_| {})), false, Form::Der, 1);
    let r = s.server.verify_platform_registration(&bytes).unwrap_err();
    assert_eq!(
        r.reason,
        Reason::AndroidPolicy(vec![F::StrongBoxRequired {
            found: AndroidSecurityLevel::TrustedEnvironment
        }])
    );
    // A StrongBox key passes and is recorded as such.
    let (_, bytes) = attempt(
        &s,
        Ext::Kd(Box::new(|kd| {
            kd.attestation_level = 2;
            kd.key_mint_level = 2;
        })),
        false,
        Form::Der,
        2,
    );
    let rec = s
        .server
        .verify_platform_registration(&bytes)
        .unwrap()
        .record;
    assert_eq!(rec.security_level, SecurityLevel::StrongBox);
}

#[test]
fn policy_not_ec() {
    assert_eq!(
        policy_rejection(|kd| kd.algorithm = Some(1)),
        vec![F::NotEcKey { found: Some(1) }]
    );
}

#[test]
fn policy_not_p256() {
    assert_eq!(
        policy_rejection(|kd| kd.ec_curve = Some(2)),
        vec![F::NotP256 { found: Some(2) }]
    );
}

#[test]
fn policy_no_sign_purpose() {
    assert_eq!(
        policy_rejection(|kd| kd.purpose = vec![3]),
        vec![F::NoSignPurpose]
    );
}

#[test]
fn policy_not_generated() {
    assert_eq!(
        policy_rejection(|kd| kd.origin = Some(2)),
        vec![F::NotGenerated { found: Some(2) }]
    );
}

#[test]
fn policy_no_biometric() {
    assert_eq!(
        policy_rejection(|kd| kd.user_auth_type = None),
        vec![F::NoBiometricAuth { found: None }]
    );
    assert_eq!(
        policy_rejection(|kd| kd.user_auth_type = Some(0)),
        vec![F::NoBiometricAuth { found: Some(0) }]
    );
}

// userAuthType must be exactly the biometric bit (2): docs/PROTOCOL.md §12.1,
// §12.4. Each of the following keys opens with the device PIN (or with some
// authenticator the policy cannot vouch for), so a signature proves no
// biometric match; each was accepted when only the biometric bit was tested.

#[test]
fn pin_only_key_is_refused() {
    // PASSWORD (1): `setUserAuthenticationParameters(0, AUTH_DEVICE_CREDENTIAL)`.
    assert_eq!(
        policy_rejection(|kd| kd.user_auth_type = Some(1)),
        vec![
            F::NoBiometricAuth { found: Some(1) },
            F::PasswordAuthAllowed { found: 1 }
        ]
    );
}

#[test]
fn pin_or_biometric_key_is_refused() {
    // PASSWORD | FINGERPRINT (3): `AUTH_BIOMETRIC_STRONG | AUTH_DEVICE_CREDENTIAL`.
    assert_eq!(
        policy_rejection(|kd| kd.user_auth_type = Some(3)),
        vec![F::PasswordAuthAllowed { found: 3 }]
    );
}

#[test]
fn any_authenticator_key_is_refused() {
    // ANY (0xFFFFFFFF).
    assert_eq!(
        policy_rejection(|kd| kd.user_auth_type = Some(0xFFFF_FFFF)),
        vec![F::AnyAuthAllowed]
    );
}

#[test]
fn unknown_authenticator_bit_is_refused() {
    // The biometric bit plus a bit no KeyMint version defines (4): fail closed.
    assert_eq!(
        policy_rejection(|kd| kd.user_auth_type = Some(2 | 4)),
        vec![F::UnknownAuthType { found: 6 }]
    );
    assert_eq!(
        policy_rejection(|kd| kd.user_auth_type = Some(1 | 2 | 0x100)),
        vec![
            F::PasswordAuthAllowed { found: 0x103 },
            F::UnknownAuthType { found: 0x103 }
        ]
    );
}

#[test]
fn policy_auth_timeout() {
    // A key usable for 30 s after one unlock: the signature does not prove a
    // biometric for this statement.
    assert_eq!(
        policy_rejection(|kd| kd.auth_timeout = Some(30)),
        vec![F::AuthTimeout { seconds: 30 }]
    );
    // `setUserAuthenticationParameters(30, AUTH_BIOMETRIC_STRONG |
    // AUTH_DEVICE_CREDENTIAL)`: both failures, in the order of §12.4.
    assert_eq!(
        policy_rejection(|kd| {
            kd.user_auth_type = Some(3);
            kd.auth_timeout = Some(30);
        }),
        vec![
            F::PasswordAuthAllowed { found: 3 },
            F::AuthTimeout { seconds: 30 }
        ]
    );
}

#[test]
fn policy_failures_serialize_with_their_check_names() {
    let names: Vec<String> = [
        F::NoBiometricAuth { found: Some(1) },
        F::PasswordAuthAllowed { found: 3 },
        F::AnyAuthAllowed,
        F::UnknownAuthType { found: 6 },
        F::AuthTimeout { seconds: 30 },
    ]
    .iter()
    .map(|f| {
        serde_json::to_value(f).unwrap()["check"]
            .as_str()
            .unwrap()
            .to_owned()
    })
    .collect();
    assert_eq!(
        names,
        [
            "no_biometric_auth",
            "password_auth_allowed",
            "any_auth_allowed",
            "unknown_auth_type",
            "auth_timeout"
        ]
    );
}

#[test]
fn policy_auth_timeout_zero_is_per_use() {
    let s = setup();
    let (_, bytes) = attempt(
        &s,
        Ext::Kd(Box::new(|kd| kd.auth_timeout = Some(0))),
        false,
        Form::Der,
        1,
    );
    s.server.verify_platform_registration(&bytes).unwrap();
}

#[test]
fn policy_no_auth_required() {
    assert_eq!(
        policy_rejection(|kd| kd.no_auth_required = true),
        vec![F::NoAuthRequired]
    );
}

#[test]
fn policy_all_applications() {
    assert_eq!(
        policy_rejection(|kd| kd.all_applications = true),
        vec![F::AllApplications]
    );
}

#[test]
fn policy_root_of_trust_missing() {
    assert_eq!(
        policy_rejection(|kd| kd.root_of_trust = None),
        vec![F::RootOfTrustMissing]
    );
}

#[test]
fn policy_boot_not_verified() {
    assert_eq!(
        policy_rejection(|kd| kd.root_of_trust = Some((true, 1))),
        vec![F::BootNotVerified {
            found: AndroidBootState::SelfSigned
        }]
    );
}

#[test]
fn policy_device_unlocked() {
    assert_eq!(
        policy_rejection(|kd| kd.root_of_trust = Some((false, 0))),
        vec![F::DeviceUnlocked]
    );
}

#[test]
fn policy_application_id_missing() {
    assert_eq!(
        policy_rejection(|kd| kd.app = None),
        vec![F::ApplicationIdMissing]
    );
}

#[test]
fn policy_package_mismatch() {
    assert_eq!(
        policy_rejection(|kd| kd.app = Some(("com.evil.app".into(), APP_DIGEST))),
        vec![F::PackageMismatch {
            expected: PACKAGE.into()
        }]
    );
}

#[test]
fn policy_signing_cert_mismatch() {
    assert_eq!(
        policy_rejection(|kd| kd.app = Some((PACKAGE.into(), [0xCD; 32]))),
        vec![F::SigningCertMismatch]
    );
}

#[test]
fn policy_os_patch_level() {
    assert_eq!(
        policy_rejection(|kd| kd.os_patch_level = Some(202312)),
        vec![F::OsPatchLevelTooOld {
            found: 202312,
            min: 202401
        }]
    );
    assert_eq!(
        policy_rejection(|kd| kd.os_patch_level = None),
        vec![F::OsPatchLevelMissing]
    );
}

#[test]
fn policy_application_not_configured() {
    let s = setup_with(PkiSpec::default(), |root| {
        let p = AndroidPolicy {
            package_name: None,
            signing_cert_digests: Vec::new(),
            ..policy()
        };
        Some(AndroidTrust::new(p).with_anchors(vec![root]))
    });
    let (_, bytes) = attempt(&s, Ext::Kd(Box::new(|_| {})), false, Form::Der, 1);
    let r = s.server.verify_platform_registration(&bytes).unwrap_err();
    assert_eq!(
        r.reason,
        Reason::AndroidPolicy(vec![F::ApplicationNotConfigured])
    );
}

#[test]
fn policy_reports_every_failure_together() {
    let f = policy_rejection(|kd| {
        kd.no_auth_required = true;
        kd.user_auth_type = None;
        kd.root_of_trust = Some((false, 2));
    });
    assert_eq!(
        f,
        vec![
            F::NoBiometricAuth { found: None },
            F::NoAuthRequired,
            F::BootNotVerified {
                found: AndroidBootState::Unverified
            },
            F::DeviceUnlocked,
        ]
    );
}

#[test]
fn quirks_unknown_tags_and_repeated_set_values_are_accepted() {
    let s = setup();
    let (_, bytes) = attempt(
        &s,
        Ext::Kd(Box::new(|kd| {
            kd.purpose = vec![2, 2, 3];
            // rollbackResistance [303] NULL and a tag from the future [899].
            kd.extra_hw = vec![ctx(303, &null()), ctx(899, &int(5))];
        })),
        false,
        Form::Der,
        1,
    );
    s.server.verify_platform_registration(&bytes).unwrap();
}

// ---------------------------------------------------------------------------
// Each chain error, one at a time

fn chain_rejection(s: &Setup, ext: Ext, corrupt: bool) -> Rejection {
    let (_, bytes) = attempt(s, ext, corrupt, Form::Der, 1);
    s.server.verify_platform_registration(&bytes).unwrap_err()
}

fn good() -> Ext {
    Ext::Kd(Box::new(|_| {}))
}

#[test]
fn chain_bad_signature() {
    let s = setup();
    let r = chain_rejection(&s, good(), true);
    assert_eq!(r.step, Step::A5AttestationChain);
    assert_eq!(
        r.reason,
        Reason::AndroidChain(AndroidChainError::Chain(ChainError::UntrustedRoot {
            index: 0
        }))
    );
}

#[test]
fn chain_issuer_not_ca() {
    let s = setup_with(
        PkiSpec {
            intermediate_is_ca: false,
            ..PkiSpec::default()
        },
        |root| Some(AndroidTrust::new(policy()).with_anchors(vec![root])),
    );
    let r = chain_rejection(&s, good(), false);
    assert_eq!(r.step, Step::A5AttestationChain);
    assert_eq!(
        r.reason,
        Reason::AndroidChain(AndroidChainError::Chain(ChainError::IssuerNotCa {
            index: 1
        }))
    );
}

#[test]
fn chain_expired_intermediate() {
    let s = setup_with(
        PkiSpec {
            intermediate_until: 2024,
            ..PkiSpec::default()
        },
        |root| Some(AndroidTrust::new(policy()).with_anchors(vec![root])),
    );
    let r = chain_rejection(&s, good(), false);
    assert_eq!(r.step, Step::A5AttestationChain);
    assert_eq!(
        r.reason,
        Reason::AndroidChain(AndroidChainError::Chain(ChainError::NotValidAtTime {
            index: 1
        }))
    );
}

#[test]
fn chain_untrusted_root() {
    // Google's roots only: the synthetic root is not trusted.
    let s = setup_with(PkiSpec::default(), |_| Some(AndroidTrust::new(policy())));
    let r = chain_rejection(&s, good(), false);
    assert_eq!(r.step, Step::A5AttestationChain);
    assert_eq!(
        r.reason,
        Reason::AndroidChain(AndroidChainError::Chain(ChainError::UntrustedRoot {
            index: 2
        }))
    );
}

#[test]
fn chain_p384_root() {
    let s = setup_with(
        PkiSpec {
            p384_root: true,
            ..PkiSpec::default()
        },
        |root| Some(AndroidTrust::new(policy()).with_anchors(vec![root])),
    );
    let (_, bytes) = attempt(&s, good(), false, Form::Der, 1);
    s.server.verify_platform_registration(&bytes).unwrap();
}

fn revoked(status: RevocationStatus) -> Rejection {
    let s = setup();
    let serial = serial_hex(s.pki.intermediate_der());
    assert_eq!(serial, "a1b2c3d");
    let mut list = StatusList::default();
    list.insert(
        &serial,
        StatusEntry {
            status,
            reason: Some("KEY_COMPROMISE".into()),
            comment: None,
        },
    );
    assert!(s.server.set_android_status_list(list));
    chain_rejection(&s, good(), false)
}

#[test]
fn chain_revoked_serial() {
    let r = revoked(RevocationStatus::Revoked);
    assert_eq!(r.step, Step::A6Revocation);
    assert_eq!(
        r.reason,
        Reason::AndroidChain(AndroidChainError::Revoked {
            index: 1,
            serial: "a1b2c3d".into(),
            status: RevocationStatus::Revoked
        })
    );
    assert!(r.to_string().contains("a1b2c3d"), "{r}");
    assert!(r.to_string().contains("REVOKED"), "{r}");
}

#[test]
fn chain_suspended_serial() {
    let r = revoked(RevocationStatus::Suspended);
    assert_eq!(r.step, Step::A6Revocation);
    assert!(r.to_string().contains("SUSPENDED"), "{r}");
}

#[test]
fn status_list_json_revokes() {
    let s = setup();
    let serial = serial_hex(s.pki.intermediate_der());
    let json = format!(
        r#"{{"entries": {{"{serial}": {{"status": "SUSPENDED", "reason": "SUPERSEDED"}}}}}}"#
    );
    s.server
        .set_android_status_list(StatusList::from_json(json.as_bytes()).unwrap());
    assert_eq!(chain_rejection(&s, good(), false).step, Step::A6Revocation);
}

#[test]
fn chain_missing_extension() {
    let s = setup();
    let r = chain_rejection(&s, Ext::None, false);
    assert_eq!(
        (r.step, r.reason),
        (
            Step::A7KeyDescription,
            Reason::KeyDescription(KeyDescriptionError::Missing)
        )
    );
}

#[test]
fn chain_malformed_extension() {
    let s = setup();
    for bad in [
        vec![0x30, 0x03, 0x02, 0x01],                   // truncated
        vec![0x04, 0x00],                               // not a SEQUENCE
        [Kd::good(b"c").encode(), vec![0x00]].concat(), // trailing byte
    ] {
        let r = chain_rejection(&s, Ext::Raw(bad), false);
        assert_eq!(r.step, Step::A7KeyDescription);
        assert!(
            matches!(
                r.reason,
                Reason::KeyDescription(KeyDescriptionError::Malformed { .. })
            ),
            "{r}"
        );
    }
    // A tag repeated in one AuthorizationList.
    let r = chain_rejection(
        &s,
        Ext::Kd(Box::new(|kd| kd.extra_hw = vec![ctx(702, &int(0))])),
        false,
    );
    assert_eq!(
        r.reason,
        Reason::KeyDescription(KeyDescriptionError::DuplicateTag {
            list: "hardwareEnforced",
            tag: 702
        })
    );
}

#[test]
fn decode_shows_platform_key_registration() {
    let s = setup();
    let (_, bytes) = attempt(&s, good(), false, Form::Der, 7);
    let v = biopay::decode::decode_to_json(&bytes).unwrap();
    assert_eq!(v["kind"], "platform_key_registration");
    assert_eq!(v["cose"]["well_formed"], true);
    assert_eq!(v["cose"]["x5chain"].as_array().unwrap().len(), 3);
    assert_eq!(v["payload"]["platform"], "android");
    assert_eq!(v["payload"]["credential_id"], cred_id(7).to_hex());
}
