//! Real Android key attestation chains (../shared/vectors/android-key-attestation,
//! expected values from its README): parsed values, chain verdicts at fixed
//! times, policy verdicts, and the `biopay android-attestation verify` CLI.
//!
//! When the folder is absent every test fails and says so. To run without it
//! on purpose, build with `BIOPAY_SKIP_VECTORS=1`: build.rs then sets the cfg
//! `biopay_skip_vectors`, which marks each test `#[ignore]`, so the runner
//! lists each one as ignored, by name.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use biopay::{
    android::{
        self, key_description::algorithm, AndroidBootState, AndroidChainError, AndroidPolicy,
        AndroidPolicyFailure as F, AndroidSecurityLevel, KeyDescription, StatusList,
    },
    android_attestation::{certificates_from_bytes, parse_rfc3339},
    x509::ChainError,
};
use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// The sample folder; panics, naming it, when it is absent. Its location can
/// be moved with `BIOPAY_TEST_VECTORS_DIR` (a missing path shows what a
/// checkout without `../shared` reports).
fn vectors() -> PathBuf {
    let dir = std::env::var_os("BIOPAY_TEST_VECTORS_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors/android-key-attestation"),
        PathBuf::from,
    );
    assert!(
        dir.join("README.md").exists(),
        "the real Android chains are required by this test but {} is absent; \
         provide ../shared/vectors or set BIOPAY_SKIP_VECTORS=1 to report these tests as ignored",
        dir.display()
    );
    dir
}

fn chain(dir: &Path, name: &str) -> Vec<Vec<u8>> {
    (0..4)
        .flat_map(|i| {
            certificates_from_bytes(
                &std::fs::read(dir.join(name).join(format!("cert{i}.pem"))).unwrap(),
            )
            .unwrap()
        })
        .collect()
}

fn t(s: &str) -> u64 {
    parse_rfc3339(s).unwrap()
}

fn common_checks(kd: &KeyDescription) {
    assert_eq!(kd.attestation_version, 3);
    assert_eq!(
        kd.attestation_security_level,
        AndroidSecurityLevel::TrustedEnvironment
    );
    assert_eq!(kd.key_mint_version, 4);
    assert_eq!(
        kd.key_mint_security_level,
        AndroidSecurityLevel::TrustedEnvironment
    );
    assert_eq!(kd.attestation_challenge, b"abc");
    assert!(kd.unique_id.is_empty());
    // softwareEnforced
    let sw = &kd.software_enforced;
    let created = sw.creation_date_time.unwrap();
    // 2018-07-29 (UTC), milliseconds.
    assert!(
        (1_532_822_400_000..1_532_908_800_000).contains(&created),
        "{created}"
    );
    let app = sw.attestation_application_id.as_ref().unwrap();
    let names: Vec<&str> = app
        .package_infos
        .iter()
        .map(|p| p.package_name.as_str())
        .collect();
    for expected in ["android", "com.android.keychain", "com.android.settings"] {
        assert!(names.contains(&expected), "{names:?}");
    }
    assert_eq!(app.signature_digests.len(), 1);
    assert!(hex::encode(&app.signature_digests[0]).starts_with("301aa3cb"));
    // hardwareEnforced
    let hw = &kd.hardware_enforced;
    assert_eq!(hw.purpose, vec![2, 3]);
    assert_eq!(hw.digest, vec![4]);
    assert!(hw.no_auth_required);
    assert_eq!(hw.origin, Some(0));
    let rot = hw.root_of_trust.as_ref().unwrap();
    assert_eq!(rot.verified_boot_key, vec![0u8; 32]);
    assert!(!rot.device_locked);
    assert_eq!(rot.verified_boot_state, AndroidBootState::Unverified);
    let hash = hex::encode(rot.verified_boot_hash.as_ref().unwrap());
    assert!(
        hash.starts_with("728db127") && hash.ends_with("937801"),
        "{hash}"
    );
    assert_eq!(hw.os_version, Some(0));
    assert_eq!(hw.os_patch_level, Some(201907));
    assert_eq!(hw.vendor_patch_level, Some(201907));
    assert_eq!(hw.boot_patch_level, Some(201907));
    assert_eq!(hw.user_auth_type, None);
    assert_eq!(hw.auth_timeout, None);
}

#[test]
#[cfg_attr(biopay_skip_vectors, ignore = "BIOPAY_SKIP_VECTORS=1")]
fn ec_tee_parses_to_the_documented_values() {
    let dir = vectors();
    let kd = android::key_description_of(&chain(&dir, "ec-tee")[0]).unwrap();
    common_checks(&kd);
    let hw = &kd.hardware_enforced;
    assert_eq!(hw.algorithm, Some(algorithm::EC));
    assert_eq!(hw.key_size, Some(256));
    assert_eq!(hw.ec_curve, Some(1));
    assert!(hw.padding.is_empty());
}

#[test]
#[cfg_attr(biopay_skip_vectors, ignore = "BIOPAY_SKIP_VECTORS=1")]
fn rsa_tee_parses_to_the_documented_values() {
    let dir = vectors();
    let kd = android::key_description_of(&chain(&dir, "rsa-tee")[0]).unwrap();
    common_checks(&kd);
    let hw = &kd.hardware_enforced;
    assert_eq!(hw.algorithm, Some(algorithm::RSA));
    assert_eq!(hw.key_size, Some(2048));
    assert_eq!(hw.padding, vec![3, 5]);
    assert_eq!(hw.rsa_public_exponent, Some(65537));
    assert_eq!(hw.ec_curve, None);
}

#[test]
#[cfg_attr(biopay_skip_vectors, ignore = "BIOPAY_SKIP_VECTORS=1")]
fn chains_verify_at_fixed_times() {
    let dir = vectors();
    let roots = android::google_roots();
    assert_eq!(roots.len(), 2, "both default roots parse");
    let none = StatusList::default();
    for name in ["ec-tee", "rsa-tee"] {
        let c = chain(&dir, name);
        let ok = android::verify_attestation_chain(&c, &roots, &none, t("2020-01-01T00:00:00Z"))
            .unwrap();
        // cert2 is signed by the root key itself: the path ends there.
        assert_eq!(ok.path, vec![0, 1, 2]);
        assert_eq!(ok.anchor, 0, "Google's hardware attestation root key");
        // The root certificate expired 2026-05-24, but trust is in its key
        // (Google reissued the certificate with the same key), so the chain
        // is still trusted while the intermediates are valid.
        android::verify_attestation_chain(&c, &roots, &none, t("2027-01-01T00:00:00Z")).unwrap();
        // The intermediates expire 2028-03-18.
        assert_eq!(
            android::verify_attestation_chain(&c, &roots, &none, t("2029-01-01T00:00:00Z"))
                .unwrap_err(),
            AndroidChainError::Chain(ChainError::NotValidAtTime { index: 1 })
        );
        // Only CA1 trusted: the path ends at the Google root, untrusted.
        assert_eq!(
            android::verify_attestation_chain(&c, &roots[1..], &none, t("2020-01-01T00:00:00Z"))
                .unwrap_err(),
            AndroidChainError::Chain(ChainError::UntrustedRoot { index: 3 })
        );
        // The sample status list lists none of these serials.
        let sample =
            StatusList::from_json(&std::fs::read(dir.join("status.json")).unwrap()).unwrap();
        assert_eq!(sample.len(), 5);
        android::verify_attestation_chain(&c, &roots, &sample, t("2020-01-01T00:00:00Z")).unwrap();
    }
}

#[test]
#[cfg_attr(biopay_skip_vectors, ignore = "BIOPAY_SKIP_VECTORS=1")]
fn revocation_of_a_real_intermediate() {
    let dir = vectors();
    let c = chain(&dir, "ec-tee");
    let serial = biopay::x509::serial_hex(&c[1]).unwrap();
    let json = format!(
        r#"{{"entries": {{"{serial}": {{"status": "REVOKED", "reason": "KEY_COMPROMISE"}}}}}}"#
    );
    let list = StatusList::from_json(json.as_bytes()).unwrap();
    let e = android::verify_attestation_chain(
        &c,
        &android::google_roots(),
        &list,
        t("2020-01-01T00:00:00Z"),
    )
    .unwrap_err();
    assert!(
        matches!(e, AndroidChainError::Revoked { index: 1, .. }),
        "{e}"
    );
    assert!(e.to_string().contains(&serial) && e.to_string().contains("REVOKED"));
}

#[test]
#[cfg_attr(biopay_skip_vectors, ignore = "BIOPAY_SKIP_VECTORS=1")]
fn payment_policy_refuses_the_real_chains() {
    let dir = vectors();
    let policy = AndroidPolicy::default();
    let ec = android::key_description_of(&chain(&dir, "ec-tee")[0]).unwrap();
    let expected = vec![
        F::NoBiometricAuth { found: None },
        F::NoAuthRequired,
        F::BootNotVerified {
            found: AndroidBootState::Unverified,
        },
        F::DeviceUnlocked,
    ];
    assert_eq!(android::check_policy(&ec, &policy, Some(b"abc")), expected);
    let mut with_challenge = vec![F::ChallengeMismatch];
    with_challenge.extend(expected.clone());
    assert_eq!(
        android::check_policy(&ec, &policy, Some(b"xyz")),
        with_challenge
    );
    let rsa = android::key_description_of(&chain(&dir, "rsa-tee")[0]).unwrap();
    assert_eq!(
        android::check_policy(&rsa, &policy, Some(b"abc")),
        [
            vec![F::NotEcKey { found: Some(1) }, F::NotP256 { found: None }],
            expected.clone()
        ]
        .concat()
    );
    // With an app policy: the platform packages are not our app.
    let app = AndroidPolicy {
        package_name: Some("com.example.pay".into()),
        signing_cert_digests: vec![[0xAB; 32]],
        min_os_patch_level: 202401,
        require_strongbox: false,
    };
    let f = android::check_policy(&ec, &app, Some(b"abc"));
    assert!(f.contains(&F::PackageMismatch {
        expected: "com.example.pay".into()
    }));
    assert!(f.contains(&F::SigningCertMismatch));
    assert!(f.contains(&F::OsPatchLevelTooOld {
        found: 201907,
        min: 202401
    }));
}

// ---------------------------------------------------------------------------
// CLI

fn cli(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_biopay"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
    )
}

fn certs(dir: &Path, name: &str) -> Vec<String> {
    (0..4)
        .map(|i| {
            dir.join(name)
                .join(format!("cert{i}.pem"))
                .display()
                .to_string()
        })
        .collect()
}

#[test]
#[cfg_attr(biopay_skip_vectors, ignore = "BIOPAY_SKIP_VECTORS=1")]
fn cli_json_on_real_chain() {
    let dir = vectors();
    let files = certs(&dir, "ec-tee");
    let mut args = vec![
        "android-attestation",
        "verify",
        "--json",
        "--at",
        "2020-01-01T00:00:00Z",
    ];
    args.extend(files.iter().map(String::as_str));
    let (code, out) = cli(&args);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["attestation_version"], 3);
    assert_eq!(v["attestation_security_level"], "trusted_environment");
    assert_eq!(v["key_mint_version"], 4);
    assert_eq!(v["attestation_challenge"], "616263");
    assert_eq!(
        v["hardware_enforced"]["root_of_trust"]["verified_boot_state"],
        "unverified"
    );
    assert_eq!(
        v["hardware_enforced"]["root_of_trust"]["device_locked"],
        false
    );
    assert_eq!(v["hardware_enforced"]["no_auth_required"], true);
    assert_eq!(v["hardware_enforced"]["os_patch_level"], 201907);
    assert_eq!(v["chain"]["valid"], true);
    assert_eq!(v["chain"]["trusted"], true);
    assert_eq!(v["chain"]["errors"], serde_json::json!([]));
    assert_eq!(v["policy"]["passed"], false);
    let checks: Vec<&str> = v["policy"]["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["check"].as_str().unwrap())
        .collect();
    assert_eq!(
        checks,
        [
            "no_biometric_auth",
            "no_auth_required",
            "boot_not_verified",
            "device_unlocked"
        ]
    );
    assert_eq!(v["certificates"].as_array().unwrap().len(), 4);
}

#[test]
#[cfg_attr(biopay_skip_vectors, ignore = "BIOPAY_SKIP_VECTORS=1")]
fn cli_exit_codes() {
    let dir = vectors();
    let files = certs(&dir, "rsa-tee");
    let run = |extra: &[&str]| {
        let mut args = vec!["android-attestation", "verify", "--json"];
        args.extend_from_slice(extra);
        args.extend(files.iter().map(String::as_str));
        let (code, out) = cli(&args);
        (
            code,
            serde_json::from_str::<serde_json::Value>(&out).unwrap(),
        )
    };
    // A policy option makes the policy count: rejected.
    let (code, v) = run(&["--at", "2020-01-01T00:00:00Z", "--challenge", "616263"]);
    assert_eq!(code, 1);
    assert_eq!(v["chain"]["valid"], true);
    assert_eq!(v["policy"]["passed"], false);
    // A wrong challenge is one more failure.
    let (_, v) = run(&["--at", "2020-01-01T00:00:00Z", "--challenge", "00"]);
    assert_eq!(v["policy"]["failures"][0]["check"], "challenge_mismatch");
    // After the intermediates expired: invalid.
    let (code, v) = run(&["--at", "2029-01-01T00:00:00Z"]);
    assert_eq!(code, 1);
    assert_eq!(v["chain"]["valid"], false);
    assert!(v["chain"]["errors"][0]
        .as_str()
        .unwrap()
        .contains("certificate 1"));
    // Trusting only CA1: valid path, untrusted.
    let ca1 = dir
        .join("google-key-attestation-ca1-p384.pub.pem")
        .display()
        .to_string();
    let (code, v) = run(&["--at", "2020-01-01T00:00:00Z", "--trust-root", &ca1]);
    assert_eq!(code, 1);
    assert_eq!(
        (v["chain"]["valid"].clone(), v["chain"]["trusted"].clone()),
        (true.into(), false.into())
    );
    // The sample status list does not list these serials.
    let status = dir.join("status.json").display().to_string();
    let (code, _) = run(&["--at", "2020-01-01T00:00:00Z", "--status-list", &status]);
    assert_eq!(code, 0);
}

#[test]
#[cfg_attr(biopay_skip_vectors, ignore = "BIOPAY_SKIP_VECTORS=1")]
fn cli_text_and_multi_pem_file() {
    let dir = vectors();
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("chain.pem");
    let all: Vec<u8> = (0..4)
        .flat_map(|i| std::fs::read(dir.join("ec-tee").join(format!("cert{i}.pem"))).unwrap())
        .collect();
    std::fs::write(&bundle, all).unwrap();
    let (code, out) = cli(&[
        "android-attestation",
        "verify",
        "--at",
        "2020-01-01T00:00:00Z",
        bundle.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("chain: valid and trusted"), "{out}");
    assert!(out.contains("failed check device_unlocked"), "{out}");
    assert!(out.contains("failed check no_auth_required"), "{out}");
    // DER input.
    let der = tmp.path().join("leaf.der");
    std::fs::write(&der, &chain(&dir, "ec-tee")[0]).unwrap();
    let (code, out) = cli(&[
        "android-attestation",
        "verify",
        "--json",
        "--at",
        "2020-01-01T00:00:00Z",
        der.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "a lone leaf does not reach a root");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["attestation_challenge"], "616263");
    assert_eq!(v["chain"]["trusted"], false);
}
