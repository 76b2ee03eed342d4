//! The registration policy for Android Keystore credentials
//! (docs/PROTOCOL.md §12.4). Every check runs and every failure is reported.
//!
//! Security properties are read from `hardwareEnforced` only: values in
//! `softwareEnforced` are asserted by Android itself and an attacker with
//! root could forge them. Two checks read other places by necessity:
//! the attestation challenge and security levels are top-level fields, and
//! `attestationApplicationId` only ever appears in `softwareEnforced` (the
//! keystore daemon fills it in); the "must be absent" checks
//! (`noAuthRequired`, `allApplications`) look at both lists.

use super::key_description::{
    algorithm, ec_curve, origin, purpose, user_auth_type, AndroidBootState, AndroidSecurityLevel,
    KeyDescription,
};
use serde::Serialize;

/// What the relying party requires of an Android Keystore key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AndroidPolicy {
    /// The app's package name. `None` skips the check (diagnostics only; the
    /// verifier refuses to register without it).
    pub package_name: Option<String>,
    /// SHA-256 digests of the app's signing certificates; one must be listed.
    /// Empty skips the check (diagnostics only; the verifier refuses).
    pub signing_cert_digests: Vec<[u8; 32]>,
    /// Oldest accepted osPatchLevel (YYYYMM); 0 accepts any but still
    /// requires the field.
    pub min_os_patch_level: u64,
    /// Require the key and the attestation to be in StrongBox.
    pub require_strongbox: bool,
}

/// One failed policy check. docs/PROTOCOL.md §12.4 lists them in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "check", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AndroidPolicyFailure {
    /// attestationChallenge is not the server's registration challenge.
    #[error("attestation challenge does not match")]
    ChallengeMismatch,
    /// attestationSecurityLevel or keyMintSecurityLevel is Software.
    #[error("security level {found:?} is below TrustedEnvironment")]
    SecurityLevelTooLow {
        /// The weaker of the two levels.
        found: AndroidSecurityLevel,
    },
    /// StrongBox is required but the key or attestation is elsewhere.
    #[error("StrongBox required, found {found:?}")]
    StrongBoxRequired {
        /// The weaker of the two levels.
        found: AndroidSecurityLevel,
    },
    /// algorithm is not EC (hardwareEnforced).
    #[error("key algorithm {found:?} is not EC")]
    NotEcKey {
        /// The algorithm found.
        found: Option<u64>,
    },
    /// ecCurve is not P-256 (hardwareEnforced).
    #[error("EC curve {found:?} is not P-256")]
    NotP256 {
        /// The curve found.
        found: Option<u64>,
    },
    /// purpose does not include SIGN (hardwareEnforced).
    #[error("key purposes do not include SIGN")]
    NoSignPurpose,
    /// origin is not GENERATED (hardwareEnforced).
    #[error("key origin {found:?} is not GENERATED")]
    NotGenerated {
        /// The origin found.
        found: Option<u64>,
    },
    /// userAuthType is absent or lacks the biometric bit (hardwareEnforced).
    #[error("key does not require biometric authentication")]
    NoBiometricAuth {
        /// The userAuthType found.
        found: Option<u64>,
    },
    /// userAuthType has the PASSWORD bit (hardwareEnforced): the device
    /// PIN, pattern or password unlocks the key, so a signature does not
    /// prove a biometric match (docs/PROTOCOL.md §12.1).
    #[error("key can be unlocked with the device credential (userAuthType {found})")]
    PasswordAuthAllowed {
        /// The userAuthType found.
        found: u64,
    },
    /// userAuthType is ANY (0xFFFFFFFF, hardwareEnforced): every
    /// authenticator, the device credential included, unlocks the key.
    #[error("key can be unlocked by any authenticator (userAuthType ANY)")]
    AnyAuthAllowed,
    /// userAuthType has bits other than PASSWORD and biometric, and is not
    /// ANY (hardwareEnforced): authenticators this policy cannot vouch for.
    #[error("key can be unlocked by unknown authenticators (userAuthType {found:#x})")]
    UnknownAuthType {
        /// The userAuthType found.
        found: u64,
    },
    /// authTimeout is set and non-zero: authentication is not per use.
    #[error("key allows use for {seconds} s after authentication")]
    AuthTimeout {
        /// The timeout, seconds.
        seconds: u64,
    },
    /// noAuthRequired is present.
    #[error("key requires no user authentication")]
    NoAuthRequired,
    /// allApplications is present.
    #[error("key is usable by all applications")]
    AllApplications,
    /// rootOfTrust is absent from hardwareEnforced.
    #[error("no hardware-enforced root of trust")]
    RootOfTrustMissing,
    /// verifiedBootState is not Verified.
    #[error("verified boot state is {found:?}")]
    BootNotVerified {
        /// The state found.
        found: AndroidBootState,
    },
    /// deviceLocked is false.
    #[error("bootloader is unlocked")]
    DeviceUnlocked,
    /// attestationApplicationId is absent.
    #[error("no attestation application id")]
    ApplicationIdMissing,
    /// The configured package is not among the attested packages.
    #[error("package {expected} is not the attested application")]
    PackageMismatch {
        /// The configured package name.
        expected: String,
    },
    /// No attested signing-certificate digest is a configured one.
    #[error("application signing certificate is not the configured one")]
    SigningCertMismatch,
    /// The verifier has no package name or signing digest configured.
    #[error("no application package / signing digest configured")]
    ApplicationNotConfigured,
    /// osPatchLevel is absent from hardwareEnforced.
    #[error("no hardware-enforced OS patch level")]
    OsPatchLevelMissing,
    /// osPatchLevel is older than the configured floor.
    #[error("OS patch level {found} is older than {min}")]
    OsPatchLevelTooOld {
        /// The patch level found (YYYYMM).
        found: u64,
        /// The configured floor.
        min: u64,
    },
}

/// Runs every check of `policy` on `kd`; `challenge` is the expected
/// attestationChallenge (`None` skips that check). Returns every failure, in
/// the order of docs/PROTOCOL.md §12.4; empty means the policy passes.
pub fn check_policy(
    kd: &KeyDescription,
    policy: &AndroidPolicy,
    challenge: Option<&[u8]>,
) -> Vec<AndroidPolicyFailure> {
    use AndroidPolicyFailure as F;
    let mut out = Vec::new();
    let hw = &kd.hardware_enforced;
    let sw = &kd.software_enforced;
    if let Some(c) = challenge {
        if !crate::crypto::ct_eq(c, &kd.attestation_challenge) {
            out.push(F::ChallengeMismatch);
        }
    }
    let level = kd
        .attestation_security_level
        .min(kd.key_mint_security_level);
    if level < AndroidSecurityLevel::TrustedEnvironment {
        out.push(F::SecurityLevelTooLow { found: level });
    } else if policy.require_strongbox && level < AndroidSecurityLevel::StrongBox {
        out.push(F::StrongBoxRequired { found: level });
    }
    if hw.algorithm != Some(algorithm::EC) {
        out.push(F::NotEcKey {
            found: hw.algorithm,
        });
    }
    if hw.ec_curve != Some(ec_curve::P_256) {
        out.push(F::NotP256 { found: hw.ec_curve });
    }
    if !hw.purpose.contains(&purpose::SIGN) {
        out.push(F::NoSignPurpose);
    }
    if hw.origin != Some(origin::GENERATED) {
        out.push(F::NotGenerated { found: hw.origin });
    }
    // userAuthType must be exactly the biometric bit: a key that the device
    // credential (or any authenticator) unlocks proves no biometric match.
    match hw.user_auth_type {
        Some(user_auth_type::FINGERPRINT) => {}
        Some(user_auth_type::ANY) => out.push(F::AnyAuthAllowed),
        found => {
            let t = found.unwrap_or(0);
            if t & user_auth_type::FINGERPRINT == 0 {
                out.push(F::NoBiometricAuth { found });
            }
            if t & user_auth_type::PASSWORD != 0 {
                out.push(F::PasswordAuthAllowed { found: t });
            }
            if t & !(user_auth_type::PASSWORD | user_auth_type::FINGERPRINT) != 0 {
                out.push(F::UnknownAuthType { found: t });
            }
        }
    }
    if let Some(seconds) = hw.auth_timeout.filter(|t| *t != 0) {
        out.push(F::AuthTimeout { seconds });
    }
    if hw.no_auth_required || sw.no_auth_required {
        out.push(F::NoAuthRequired);
    }
    if hw.all_applications || sw.all_applications {
        out.push(F::AllApplications);
    }
    match &hw.root_of_trust {
        None => out.push(F::RootOfTrustMissing),
        Some(rot) => {
            if rot.verified_boot_state != AndroidBootState::Verified {
                out.push(F::BootNotVerified {
                    found: rot.verified_boot_state,
                });
            }
            if !rot.device_locked {
                out.push(F::DeviceUnlocked);
            }
        }
    }
    let app = sw
        .attestation_application_id
        .as_ref()
        .or(hw.attestation_application_id.as_ref());
    let wants_app = policy.package_name.is_some() || !policy.signing_cert_digests.is_empty();
    match app {
        None if wants_app => out.push(F::ApplicationIdMissing),
        None => {}
        Some(app) => {
            if let Some(expected) = &policy.package_name {
                if !app
                    .package_infos
                    .iter()
                    .any(|p| &p.package_name == expected)
                {
                    out.push(F::PackageMismatch {
                        expected: expected.clone(),
                    });
                }
            }
            if !policy.signing_cert_digests.is_empty()
                && !app.signature_digests.iter().any(|d| {
                    policy
                        .signing_cert_digests
                        .iter()
                        .any(|c| crate::crypto::ct_eq(c, d))
                })
            {
                out.push(F::SigningCertMismatch);
            }
        }
    }
    match hw.os_patch_level {
        None => out.push(F::OsPatchLevelMissing),
        Some(found) if found < policy.min_os_patch_level => out.push(F::OsPatchLevelTooOld {
            found,
            min: policy.min_os_patch_level,
        }),
        Some(_) => {}
    }
    out
}
