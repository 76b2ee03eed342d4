//! The Android KeyDescription extension (OID 1.3.6.1.4.1.11129.2.1.17), as
//! specified in the Android key attestation schema
//! (<https://source.android.com/docs/security/features/keystore/attestation#schema>).
//!
//! Field names follow the schema, in snake_case. Integer-valued enumerations
//! whose value sets grow with new KeyMint versions (purpose, algorithm,
//! digest, padding, ec curve, origin) are kept as the raw integers, with the
//! values the policy needs as constants ([`purpose`], [`algorithm`], ...).

use super::{
    der::{self, Class, Reader},
    KeyDescriptionError,
};
use crate::serde_hex::{ser_hex, ser_hex_list, ser_opt_hex};
use serde::Serialize;

/// KeyMint `KeyPurpose` values.
pub mod purpose {
    /// SIGN.
    pub const SIGN: u64 = 2;
    /// VERIFY.
    pub const VERIFY: u64 = 3;
}
/// KeyMint `Algorithm` values.
pub mod algorithm {
    /// RSA.
    pub const RSA: u64 = 1;
    /// EC.
    pub const EC: u64 = 3;
}
/// KeyMint `EcCurve` values.
pub mod ec_curve {
    /// NIST P-256.
    pub const P_256: u64 = 1;
}
/// KeyMint `KeyOrigin` values.
pub mod origin {
    /// Generated inside the secure hardware.
    pub const GENERATED: u64 = 0;
}
/// KeyMint `HardwareAuthenticatorType` bits (userAuthType).
pub mod user_auth_type {
    /// Device credential (PIN, pattern, password).
    pub const PASSWORD: u64 = 1;
    /// Biometric ("fingerprint" in the schema; any class-3 biometric).
    pub const FINGERPRINT: u64 = 2;
    /// Any authenticator (`HardwareAuthenticatorType::ANY`, all 32 bits set):
    /// the device credential unlocks the key as well as a biometric.
    pub const ANY: u64 = 0xFFFF_FFFF;
}

/// Schema `SecurityLevel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AndroidSecurityLevel {
    /// Software (0).
    Software,
    /// TrustedEnvironment (1).
    TrustedEnvironment,
    /// StrongBox (2).
    StrongBox,
}

impl AndroidSecurityLevel {
    fn from_u64(v: u64) -> Option<Self> {
        Some(match v {
            0 => Self::Software,
            1 => Self::TrustedEnvironment,
            2 => Self::StrongBox,
            _ => return None,
        })
    }
}

/// Schema `VerifiedBootState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AndroidBootState {
    /// Verified (0): a locked device booting the manufacturer's image.
    Verified,
    /// SelfSigned (1): booting an image signed with a user-installed key.
    SelfSigned,
    /// Unverified (2): unlocked bootloader.
    Unverified,
    /// Failed (3).
    Failed,
}

impl AndroidBootState {
    fn from_u64(v: u64) -> Option<Self> {
        Some(match v {
            0 => Self::Verified,
            1 => Self::SelfSigned,
            2 => Self::Unverified,
            3 => Self::Failed,
            _ => return None,
        })
    }
}

/// Schema `RootOfTrust` (tag 704).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RootOfTrust {
    /// Digest of the key that verified the boot image.
    #[serde(serialize_with = "ser_hex")]
    pub verified_boot_key: Vec<u8>,
    /// Whether the bootloader is locked.
    pub device_locked: bool,
    /// The verified-boot state.
    pub verified_boot_state: AndroidBootState,
    /// Digest of the verified boot images (attestation version 3 and later).
    #[serde(serialize_with = "ser_opt_hex")]
    pub verified_boot_hash: Option<Vec<u8>>,
}

/// One `AttestationPackageInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PackageInfo {
    /// The package name (bytes as in the schema; UTF-8 in practice).
    pub package_name: String,
    /// The package version code.
    pub version: u64,
}

/// Schema `AttestationApplicationId` (tag 709), decoded from its OCTET STRING.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttestationApplicationId {
    /// The packages sharing the calling uid.
    pub package_infos: Vec<PackageInfo>,
    /// SHA-256 digests of the packages' signing certificates.
    #[serde(serialize_with = "ser_hex_list")]
    pub signature_digests: Vec<Vec<u8>>,
}

/// Schema `AuthorizationList`. Absent tags are `None` / empty / `false`;
/// tags this parser does not know are skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuthorizationList {
    /// Tag 1: purpose (SET OF INTEGER).
    pub purpose: Vec<u64>,
    /// Tag 2: algorithm.
    pub algorithm: Option<u64>,
    /// Tag 3: keySize.
    pub key_size: Option<u64>,
    /// Tag 5: digest (SET OF INTEGER).
    pub digest: Vec<u64>,
    /// Tag 6: padding (SET OF INTEGER).
    pub padding: Vec<u64>,
    /// Tag 10: ecCurve.
    pub ec_curve: Option<u64>,
    /// Tag 200: rsaPublicExponent.
    pub rsa_public_exponent: Option<u64>,
    /// Tag 503: noAuthRequired.
    pub no_auth_required: bool,
    /// Tag 504: userAuthType (HardwareAuthenticatorType bitmask).
    pub user_auth_type: Option<u64>,
    /// Tag 505: authTimeout, seconds.
    pub auth_timeout: Option<u64>,
    /// Tag 507: trustedUserPresenceRequired.
    pub trusted_user_presence_required: bool,
    /// Tag 508: trustedConfirmationRequired.
    pub trusted_confirmation_required: bool,
    /// Tag 509: unlockedDeviceRequired.
    pub unlocked_device_required: bool,
    /// Tag 600: allApplications.
    pub all_applications: bool,
    /// Tag 701: creationDateTime, milliseconds since the Unix epoch.
    pub creation_date_time: Option<u64>,
    /// Tag 702: origin.
    pub origin: Option<u64>,
    /// Tag 704: rootOfTrust.
    pub root_of_trust: Option<RootOfTrust>,
    /// Tag 705: osVersion.
    pub os_version: Option<u64>,
    /// Tag 706: osPatchLevel (YYYYMM).
    pub os_patch_level: Option<u64>,
    /// Tag 709: attestationApplicationId.
    pub attestation_application_id: Option<AttestationApplicationId>,
    /// Tag 710: attestationIdBrand.
    #[serde(serialize_with = "ser_opt_hex")]
    pub attestation_id_brand: Option<Vec<u8>>,
    /// Tag 711: attestationIdDevice.
    #[serde(serialize_with = "ser_opt_hex")]
    pub attestation_id_device: Option<Vec<u8>>,
    /// Tag 712: attestationIdProduct.
    #[serde(serialize_with = "ser_opt_hex")]
    pub attestation_id_product: Option<Vec<u8>>,
    /// Tag 713: attestationIdSerial.
    #[serde(serialize_with = "ser_opt_hex")]
    pub attestation_id_serial: Option<Vec<u8>>,
    /// Tag 714: attestationIdImei.
    #[serde(serialize_with = "ser_opt_hex")]
    pub attestation_id_imei: Option<Vec<u8>>,
    /// Tag 715: attestationIdMeid.
    #[serde(serialize_with = "ser_opt_hex")]
    pub attestation_id_meid: Option<Vec<u8>>,
    /// Tag 716: attestationIdManufacturer.
    #[serde(serialize_with = "ser_opt_hex")]
    pub attestation_id_manufacturer: Option<Vec<u8>>,
    /// Tag 717: attestationIdModel.
    #[serde(serialize_with = "ser_opt_hex")]
    pub attestation_id_model: Option<Vec<u8>>,
    /// Tag 718: vendorPatchLevel (YYYYMMDD or YYYYMM).
    pub vendor_patch_level: Option<u64>,
    /// Tag 719: bootPatchLevel (YYYYMMDD or YYYYMM).
    pub boot_patch_level: Option<u64>,
    /// Tag 723: attestationIdSecondImei.
    #[serde(serialize_with = "ser_opt_hex")]
    pub attestation_id_second_imei: Option<Vec<u8>>,
}

/// Schema `KeyDescription`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyDescription {
    /// attestationVersion (3 = Keymaster 4, 100+ = KeyMint).
    pub attestation_version: u64,
    /// attestationSecurityLevel: where the attestation was produced.
    pub attestation_security_level: AndroidSecurityLevel,
    /// keyMintVersion (keymasterVersion before attestation version 100).
    pub key_mint_version: u64,
    /// keyMintSecurityLevel: where the key lives.
    pub key_mint_security_level: AndroidSecurityLevel,
    /// attestationChallenge.
    #[serde(serialize_with = "ser_hex")]
    pub attestation_challenge: Vec<u8>,
    /// uniqueId.
    #[serde(serialize_with = "ser_hex")]
    pub unique_id: Vec<u8>,
    /// softwareEnforced: enforced by Android, not by the secure hardware.
    pub software_enforced: AuthorizationList,
    /// hardwareEnforced (teeEnforced): enforced by the TEE or StrongBox.
    pub hardware_enforced: AuthorizationList,
}

/// Parses the DER value of a KeyDescription extension.
pub fn parse_key_description(der: &[u8]) -> Result<KeyDescription, KeyDescriptionError> {
    let mut outer = Reader::new(der, "KeyDescription");
    let body = outer.expect(der::SEQUENCE)?;
    outer.finish()?;
    let mut r = Reader::new(body, "KeyDescription");
    let attestation_version = r.at("attestationVersion").integer()?;
    let attestation_security_level = security_level(&mut r, "attestationSecurityLevel")?;
    let key_mint_version = r.at("keyMintVersion").integer()?;
    let key_mint_security_level = security_level(&mut r, "keyMintSecurityLevel")?;
    let attestation_challenge = r.at("attestationChallenge").octets()?.to_vec();
    let unique_id = r.at("uniqueId").octets()?.to_vec();
    let sw = r.at("softwareEnforced").expect(der::SEQUENCE)?;
    let hw = r.at("hardwareEnforced").expect(der::SEQUENCE)?;
    // Later schema versions may append fields; none is defined today.
    r.finish()?;
    Ok(KeyDescription {
        attestation_version,
        attestation_security_level,
        key_mint_version,
        key_mint_security_level,
        attestation_challenge,
        unique_id,
        software_enforced: authorization_list(sw, "softwareEnforced")?,
        hardware_enforced: authorization_list(hw, "hardwareEnforced")?,
    })
}

fn security_level(
    r: &mut Reader<'_>,
    field: &'static str,
) -> Result<AndroidSecurityLevel, KeyDescriptionError> {
    let v = r.at(field).enumerated()?;
    AndroidSecurityLevel::from_u64(v).ok_or(KeyDescriptionError::Malformed {
        field,
        reason: "unknown security level",
    })
}

fn authorization_list(
    body: &[u8],
    list: &'static str,
) -> Result<AuthorizationList, KeyDescriptionError> {
    let mut out = AuthorizationList::default();
    let mut seen: Vec<u32> = Vec::new();
    let mut r = Reader::new(body, list);
    while !r.is_empty() {
        let tlv = r.next_tlv()?;
        if tlv.class != Class::Context || !tlv.constructed {
            return Err(KeyDescriptionError::Malformed {
                field: list,
                reason: "entry is not an EXPLICIT context tag",
            });
        }
        // A tag may appear once; repeated values belong inside a SET OF.
        if seen.contains(&tlv.number) {
            return Err(KeyDescriptionError::DuplicateTag {
                list,
                tag: tlv.number,
            });
        }
        seen.push(tlv.number);
        let field = tag_name(tlv.number);
        let mut inner = Reader::new(tlv.value, field);
        match tlv.number {
            1 => out.purpose = set_of_integer(&mut inner)?,
            2 => out.algorithm = Some(inner.integer()?),
            3 => out.key_size = Some(inner.integer()?),
            5 => out.digest = set_of_integer(&mut inner)?,
            6 => out.padding = set_of_integer(&mut inner)?,
            10 => out.ec_curve = Some(inner.integer()?),
            200 => out.rsa_public_exponent = Some(inner.integer()?),
            503 => out.no_auth_required = flag(&mut inner)?,
            504 => out.user_auth_type = Some(inner.integer()?),
            505 => out.auth_timeout = Some(inner.integer()?),
            507 => out.trusted_user_presence_required = flag(&mut inner)?,
            508 => out.trusted_confirmation_required = flag(&mut inner)?,
            509 => out.unlocked_device_required = flag(&mut inner)?,
            600 => out.all_applications = flag(&mut inner)?,
            701 => out.creation_date_time = Some(inner.integer()?),
            702 => out.origin = Some(inner.integer()?),
            704 => out.root_of_trust = Some(root_of_trust(&mut inner)?),
            705 => out.os_version = Some(inner.integer()?),
            706 => out.os_patch_level = Some(inner.integer()?),
            709 => {
                out.attestation_application_id = Some(application_id(inner.octets()?)?);
            }
            710 => out.attestation_id_brand = Some(inner.octets()?.to_vec()),
            711 => out.attestation_id_device = Some(inner.octets()?.to_vec()),
            712 => out.attestation_id_product = Some(inner.octets()?.to_vec()),
            713 => out.attestation_id_serial = Some(inner.octets()?.to_vec()),
            714 => out.attestation_id_imei = Some(inner.octets()?.to_vec()),
            715 => out.attestation_id_meid = Some(inner.octets()?.to_vec()),
            716 => out.attestation_id_manufacturer = Some(inner.octets()?.to_vec()),
            717 => out.attestation_id_model = Some(inner.octets()?.to_vec()),
            718 => out.vendor_patch_level = Some(inner.integer()?),
            719 => out.boot_patch_level = Some(inner.integer()?),
            723 => out.attestation_id_second_imei = Some(inner.octets()?.to_vec()),
            // Unknown or unused tags (rollbackResistance, activeDateTime, ...)
            // are skipped; their content is only checked to be one TLV.
            _ => {
                inner.next_tlv()?;
            }
        }
        inner.finish()?;
    }
    Ok(out)
}

fn tag_name(tag: u32) -> &'static str {
    match tag {
        1 => "purpose",
        2 => "algorithm",
        3 => "keySize",
        5 => "digest",
        6 => "padding",
        10 => "ecCurve",
        200 => "rsaPublicExponent",
        503 => "noAuthRequired",
        504 => "userAuthType",
        505 => "authTimeout",
        507 => "trustedUserPresenceRequired",
        508 => "trustedConfirmationRequired",
        509 => "unlockedDeviceRequired",
        600 => "allApplications",
        701 => "creationDateTime",
        702 => "origin",
        704 => "rootOfTrust",
        705 => "osVersion",
        706 => "osPatchLevel",
        709 => "attestationApplicationId",
        710..=717 | 723 => "attestationId",
        718 => "vendorPatchLevel",
        719 => "bootPatchLevel",
        _ => "AuthorizationList",
    }
}

/// SET OF INTEGER. Real devices repeat values and do not always sort the
/// set; both are accepted (values are kept in order of appearance, repeats dropped).
fn set_of_integer(r: &mut Reader<'_>) -> Result<Vec<u64>, KeyDescriptionError> {
    let field = r.field();
    let body = r.expect(der::SET)?;
    let mut items = Reader::new(body, field);
    let mut out = Vec::new();
    while !items.is_empty() {
        let v = items.integer()?;
        if !out.contains(&v) {
            out.push(v);
        }
    }
    Ok(out)
}

fn flag(r: &mut Reader<'_>) -> Result<bool, KeyDescriptionError> {
    r.null()?;
    Ok(true)
}

fn root_of_trust(r: &mut Reader<'_>) -> Result<RootOfTrust, KeyDescriptionError> {
    let body = r.expect(der::SEQUENCE)?;
    let mut s = Reader::new(body, "rootOfTrust");
    let verified_boot_key = s.octets()?.to_vec();
    let device_locked = s.boolean()?;
    let state = s.enumerated()?;
    let verified_boot_state =
        AndroidBootState::from_u64(state).ok_or(KeyDescriptionError::Malformed {
            field: "rootOfTrust",
            reason: "unknown verifiedBootState",
        })?;
    let verified_boot_hash = if s.is_empty() {
        None
    } else {
        Some(s.octets()?.to_vec())
    };
    s.finish()?;
    Ok(RootOfTrust {
        verified_boot_key,
        device_locked,
        verified_boot_state,
        verified_boot_hash,
    })
}

fn application_id(der: &[u8]) -> Result<AttestationApplicationId, KeyDescriptionError> {
    const F: &str = "attestationApplicationId";
    let mut outer = Reader::new(der, F);
    let body = outer.expect(der::SEQUENCE)?;
    outer.finish()?;
    let mut s = Reader::new(body, F);
    let mut infos = Reader::new(s.expect(der::SET)?, F);
    let mut digests = Reader::new(s.expect(der::SET)?, F);
    s.finish()?;
    let mut package_infos = Vec::new();
    while !infos.is_empty() {
        let mut p = Reader::new(infos.expect(der::SEQUENCE)?, F);
        let name = p.octets()?;
        let version = p.integer()?;
        p.finish()?;
        let package_name =
            String::from_utf8(name.to_vec()).map_err(|_| KeyDescriptionError::Malformed {
                field: F,
                reason: "package name is not UTF-8",
            })?;
        package_infos.push(PackageInfo {
            package_name,
            version,
        });
    }
    let mut signature_digests = Vec::new();
    while !digests.is_empty() {
        signature_digests.push(digests.octets()?.to_vec());
    }
    Ok(AttestationApplicationId {
        package_infos,
        signature_digests,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tlv(tag: &[u8], content: &[u8]) -> Vec<u8> {
        let mut out = tag.to_vec();
        let n = u8::try_from(content.len()).unwrap();
        assert!(n < 0x80);
        out.push(n);
        out.extend_from_slice(content);
        out
    }

    fn description(hw: &[Vec<u8>], level: u8) -> Vec<u8> {
        tlv(
            &[0x30],
            &[
                tlv(&[0x02], &[3]),
                tlv(&[0x0a], &[level]),
                tlv(&[0x02], &[4]),
                tlv(&[0x0a], &[1]),
                tlv(&[0x04], b"abc"),
                tlv(&[0x04], b""),
                tlv(&[0x30], b""),
                tlv(&[0x30], &hw.concat()),
            ]
            .concat(),
        )
    }

    #[test]
    fn minimal_and_optional_fields() {
        // rootOfTrust without verifiedBootHash (attestation version < 3).
        let rot = tlv(
            &[0xbf, 0x85, 0x40],
            &tlv(
                &[0x30],
                &[
                    tlv(&[0x04], &[1; 4]),
                    vec![0x01, 0x01, 0xff],
                    tlv(&[0x0a], &[0]),
                ]
                .concat(),
            ),
        );
        let purposes = tlv(&[0xa1], &tlv(&[0x31], &[2u8, 1, 3, 2, 1, 2, 2, 1, 2]));
        let kd = parse_key_description(&description(&[purposes, rot], 2)).unwrap();
        assert_eq!(
            kd.attestation_security_level,
            AndroidSecurityLevel::StrongBox
        );
        assert_eq!(kd.hardware_enforced.purpose, vec![3, 2]);
        let rot = kd.hardware_enforced.root_of_trust.unwrap();
        assert!(rot.device_locked);
        assert_eq!(rot.verified_boot_state, AndroidBootState::Verified);
        assert_eq!(rot.verified_boot_hash, None);
        assert!(kd.software_enforced == AuthorizationList::default());
    }

    #[test]
    fn typed_errors() {
        assert!(matches!(
            parse_key_description(&description(&[], 7)),
            Err(KeyDescriptionError::Malformed {
                field: "attestationSecurityLevel",
                ..
            })
        ));
        let negative = tlv(&[0xa2], &tlv(&[0x02], &[0xff]));
        assert!(matches!(
            parse_key_description(&description(&[negative], 1)),
            Err(KeyDescriptionError::Malformed {
                field: "algorithm",
                reason: "negative INTEGER"
            })
        ));
        let alg = tlv(&[0xa2], &tlv(&[0x02], &[3]));
        assert_eq!(
            parse_key_description(&description(&[alg.clone(), alg], 1)),
            Err(KeyDescriptionError::DuplicateTag {
                list: "hardwareEnforced",
                tag: 2
            })
        );
        let implicit = tlv(&[0x82], &[3]);
        assert!(parse_key_description(&description(&[implicit], 1)).is_err());
        let mut trailing = description(&[], 1);
        trailing.push(0);
        assert!(parse_key_description(&trailing).is_err());
    }
}
