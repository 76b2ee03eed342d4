//! A DER encoder for the Android key attestation KeyDescription extension
//! (OID 1.3.6.1.4.1.11129.2.1.17; the KeyMint schema, attestation version
//! 200), the extension [`biopay_core::android::key_description`] parses.
//!
//! [`KeyDescriptionSpec`] has one field per value the encoder writes, so a
//! test can build a KeyDescription that fails exactly one policy check.
//! [`KeyDescriptionSpec::keymint`] is what the simulated KeyMint
//! ([`crate::SoftwareTee::keymint_generate_key`]) attests: a P-256 signing key,
//! a strong biometric for each use, generated in the TEE.

/// The KeyDescription extension's OID, as rcgen wants it.
pub const KEY_DESCRIPTION_OID: &[u64] = &[1, 3, 6, 1, 4, 1, 11129, 2, 1, 17];

/// `attestationVersion` and `keyMintVersion` of KeyMint 2.
pub const KEYMINT_VERSION: u64 = 200;

/// The `osPatchLevel` (YYYYMM) the simulated KeyMint reports.
pub const SIMULATED_OS_PATCH_LEVEL: u64 = 202_509;

/// The `osVersion` the simulated KeyMint reports (Android 16).
pub const SIMULATED_OS_VERSION: u64 = 160_000;

/// `SecurityLevel` values of the schema.
pub mod security_level {
    /// Software.
    pub const SOFTWARE: u8 = 0;
    /// TrustedEnvironment.
    pub const TRUSTED_ENVIRONMENT: u8 = 1;
    /// StrongBox.
    pub const STRONG_BOX: u8 = 2;
}

/// `rootOfTrust` of the hardware-enforced list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootOfTrustSpec {
    /// `verifiedBootKey`.
    pub verified_boot_key: Vec<u8>,
    /// `deviceLocked`.
    pub device_locked: bool,
    /// `verifiedBootState`: 0 Verified, 1 SelfSigned, 2 Unverified, 3 Failed.
    pub verified_boot_state: u8,
    /// `verifiedBootHash` (absent before attestation version 3).
    pub verified_boot_hash: Option<Vec<u8>>,
}

/// Every value the encoder writes. Lists are written in ascending tag order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDescriptionSpec {
    /// `attestationVersion` (and `keyMintVersion`).
    pub version: u64,
    /// `attestationSecurityLevel`.
    pub attestation_level: u8,
    /// `keyMintSecurityLevel`.
    pub key_mint_level: u8,
    /// `attestationChallenge`.
    pub challenge: Vec<u8>,
    /// hardwareEnforced `purpose` (2 = SIGN); empty: absent.
    pub purpose: Vec<u64>,
    /// hardwareEnforced `algorithm` (3 = EC).
    pub algorithm: Option<u64>,
    /// hardwareEnforced `keySize`.
    pub key_size: Option<u64>,
    /// hardwareEnforced `digest` (4 = SHA-256); empty: absent.
    pub digest: Vec<u64>,
    /// hardwareEnforced `ecCurve` (1 = P-256).
    pub ec_curve: Option<u64>,
    /// hardwareEnforced `noAuthRequired`.
    pub no_auth_required: bool,
    /// hardwareEnforced `userAuthType` (2 = biometric).
    pub user_auth_type: Option<u64>,
    /// hardwareEnforced `authTimeout`, seconds.
    pub auth_timeout: Option<u64>,
    /// hardwareEnforced `allApplications`.
    pub all_applications: bool,
    /// hardwareEnforced `origin` (0 = GENERATED).
    pub origin: Option<u64>,
    /// hardwareEnforced `rootOfTrust`.
    pub root_of_trust: Option<RootOfTrustSpec>,
    /// hardwareEnforced `osVersion`.
    pub os_version: Option<u64>,
    /// hardwareEnforced `osPatchLevel` (YYYYMM).
    pub os_patch_level: Option<u64>,
    /// softwareEnforced `creationDateTime`, milliseconds since the Unix epoch.
    pub creation_time_ms: Option<u64>,
    /// softwareEnforced `attestationApplicationId`: (package name, version,
    /// SHA-256 of the signing certificate).
    pub application: Option<(String, u64, [u8; 32])>,
    /// Raw extra hardwareEnforced entries appended last (e.g. unknown tags).
    pub extra_hardware_enforced: Vec<Vec<u8>>,
}

impl KeyDescriptionSpec {
    /// What KeyMint attests for a key generated as docs/PROTOCOL.md §12.7
    /// asks: EC P-256, SIGN, SHA-256, a strong biometric for each use (no
    /// timeout), GENERATED, verified boot with a locked bootloader, at
    /// `level` ([`security_level`]) for both levels.
    pub fn keymint(
        challenge: &[u8],
        level: u8,
        package_name: &str,
        signing_cert_digest: [u8; 32],
    ) -> Self {
        Self {
            version: KEYMINT_VERSION,
            attestation_level: level,
            key_mint_level: level,
            challenge: challenge.to_vec(),
            purpose: vec![2],
            algorithm: Some(3),
            key_size: Some(256),
            digest: vec![4],
            ec_curve: Some(1),
            no_auth_required: false,
            user_auth_type: Some(2),
            auth_timeout: None,
            all_applications: false,
            origin: Some(0),
            root_of_trust: Some(RootOfTrustSpec {
                verified_boot_key: vec![0x5a; 32],
                device_locked: true,
                verified_boot_state: 0,
                verified_boot_hash: Some(vec![0xa5; 32]),
            }),
            os_version: Some(SIMULATED_OS_VERSION),
            os_patch_level: Some(SIMULATED_OS_PATCH_LEVEL),
            creation_time_ms: None,
            application: Some((package_name.to_owned(), 1, signing_cert_digest)),
            extra_hardware_enforced: Vec::new(),
        }
    }

    /// The DER encoding (the extension's value).
    pub fn encode(&self) -> Vec<u8> {
        use der::*;
        let mut hw = Vec::new();
        if !self.purpose.is_empty() {
            hw.push(ctx(1, &set_of_int(&self.purpose)));
        }
        if let Some(a) = self.algorithm {
            hw.push(ctx(2, &int(a)));
        }
        if let Some(k) = self.key_size {
            hw.push(ctx(3, &int(k)));
        }
        if !self.digest.is_empty() {
            hw.push(ctx(5, &set_of_int(&self.digest)));
        }
        if let Some(c) = self.ec_curve {
            hw.push(ctx(10, &int(c)));
        }
        if self.no_auth_required {
            hw.push(ctx(503, &null()));
        }
        if let Some(t) = self.user_auth_type {
            hw.push(ctx(504, &int(t)));
        }
        if let Some(t) = self.auth_timeout {
            hw.push(ctx(505, &int(t)));
        }
        if self.all_applications {
            hw.push(ctx(600, &null()));
        }
        if let Some(o) = self.origin {
            hw.push(ctx(702, &int(o)));
        }
        if let Some(rot) = &self.root_of_trust {
            let mut fields = vec![
                octets(&rot.verified_boot_key),
                boolean(rot.device_locked),
                enumerated(rot.verified_boot_state),
            ];
            if let Some(h) = &rot.verified_boot_hash {
                fields.push(octets(h));
            }
            hw.push(ctx(704, &seq(&fields)));
        }
        if let Some(v) = self.os_version {
            hw.push(ctx(705, &int(v)));
        }
        if let Some(p) = self.os_patch_level {
            hw.push(ctx(706, &int(p)));
        }
        hw.extend(self.extra_hardware_enforced.iter().cloned());
        let mut sw = Vec::new();
        if let Some(t) = self.creation_time_ms {
            sw.push(ctx(701, &int(t)));
        }
        if let Some((package, version, digest)) = &self.application {
            let app_id = seq(&[
                set(&[seq(&[octets(package.as_bytes()), int(*version)])]),
                set(&[octets(digest)]),
            ]);
            sw.push(ctx(709, &octets(&app_id)));
        }
        seq(&[
            int(self.version),
            enumerated(self.attestation_level),
            int(self.version),
            enumerated(self.key_mint_level),
            octets(&self.challenge),
            octets(&[]),
            seq(&sw),
            seq(&hw),
        ])
    }
}

/// Minimal DER: definite minimal lengths, the few types the schema uses.
pub mod der {
    /// A TLV with `tag` bytes and `content`.
    pub fn tlv(tag: &[u8], content: &[u8]) -> Vec<u8> {
        let mut out = tag.to_vec();
        let n = content.len();
        let len = n.to_be_bytes();
        let skip = len.iter().take_while(|b| **b == 0).count();
        let significant = &len[skip..];
        match significant {
            [] => out.push(0),
            [b] if *b < 0x80 => out.push(*b),
            bytes => {
                // At most 8 length bytes: always fits the 7-bit count.
                out.push(0x80 | u8::try_from(bytes.len()).unwrap_or(0x7f));
                out.extend_from_slice(bytes);
            }
        }
        out.extend_from_slice(content);
        out
    }
    /// SEQUENCE.
    pub fn seq(items: &[Vec<u8>]) -> Vec<u8> {
        tlv(&[0x30], &items.concat())
    }
    /// SET (items sorted by their encoding, as DER requires for SET OF).
    pub fn set(items: &[Vec<u8>]) -> Vec<u8> {
        let mut items = items.to_vec();
        items.sort();
        tlv(&[0x31], &items.concat())
    }
    /// SET OF INTEGER.
    pub fn set_of_int(values: &[u64]) -> Vec<u8> {
        set(&values.iter().map(|v| int(*v)).collect::<Vec<_>>())
    }
    /// A non-negative INTEGER.
    pub fn int(v: u64) -> Vec<u8> {
        let bytes = v.to_be_bytes();
        let skip = bytes
            .iter()
            .take_while(|b| **b == 0)
            .count()
            .min(bytes.len() - 1);
        let mut content = bytes[skip..].to_vec();
        if content.first().is_some_and(|b| b & 0x80 != 0) {
            content.insert(0, 0);
        }
        tlv(&[0x02], &content)
    }
    /// ENUMERATED with a one-byte value below 128.
    pub fn enumerated(v: u8) -> Vec<u8> {
        tlv(&[0x0a], &[v & 0x7f])
    }
    /// OCTET STRING.
    pub fn octets(v: &[u8]) -> Vec<u8> {
        tlv(&[0x04], v)
    }
    /// NULL.
    pub fn null() -> Vec<u8> {
        vec![0x05, 0x00]
    }
    /// BOOLEAN.
    pub fn boolean(v: bool) -> Vec<u8> {
        vec![0x01, 0x01, if v { 0xff } else { 0x00 }]
    }
    /// `[n] EXPLICIT` around `inner` (high tag numbers in base 128).
    pub fn ctx(n: u32, inner: &[u8]) -> Vec<u8> {
        if n < 31 {
            return tlv(&[0xa0 | u8::try_from(n).unwrap_or(0)], inner);
        }
        let mut groups = Vec::new();
        let mut v = n;
        while v > 0 {
            groups.push(u8::try_from(v & 0x7f).unwrap_or(0));
            v >>= 7;
        }
        let mut tag = vec![0xbf];
        let last = groups.len() - 1;
        for (i, g) in groups.iter().rev().enumerate() {
            tag.push(if i < last { g | 0x80 } else { *g });
        }
        tlv(&tag, inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use biopay_core::android::{parse_key_description, AndroidSecurityLevel};

    #[test]
    fn der_lengths_and_integers_are_minimal() {
        assert_eq!(der::int(0), vec![2, 1, 0]);
        assert_eq!(der::int(127), vec![2, 1, 127]);
        assert_eq!(der::int(128), vec![2, 2, 0, 128]);
        assert_eq!(der::int(256), vec![2, 2, 1, 0]);
        assert_eq!(der::tlv(&[4], &[0; 200])[..3], [4, 0x81, 200]);
        assert_eq!(der::tlv(&[4], &[0; 300])[..4], [4, 0x82, 1, 44]);
        assert_eq!(der::ctx(704, &[])[..3], [0xbf, 0x85, 0x40]);
        assert_eq!(der::ctx(10, &[]), vec![0xaa, 0]);
    }

    #[test]
    fn keymint_description_round_trips_through_core() {
        let spec = KeyDescriptionSpec::keymint(
            b"challenge",
            security_level::STRONG_BOX,
            "com.example.pay",
            [7; 32],
        );
        let kd = parse_key_description(&spec.encode()).unwrap();
        assert_eq!(kd.attestation_version, 200);
        assert_eq!(
            kd.attestation_security_level,
            AndroidSecurityLevel::StrongBox
        );
        assert_eq!(kd.key_mint_security_level, AndroidSecurityLevel::StrongBox);
        assert_eq!(kd.attestation_challenge, b"challenge");
        let hw = &kd.hardware_enforced;
        assert_eq!(hw.purpose, vec![2]);
        assert_eq!(hw.algorithm, Some(3));
        assert_eq!(hw.ec_curve, Some(1));
        assert_eq!(hw.user_auth_type, Some(2));
        assert_eq!(hw.auth_timeout, None);
        assert_eq!(hw.origin, Some(0));
        assert_eq!(hw.os_patch_level, Some(SIMULATED_OS_PATCH_LEVEL));
        let rot = hw.root_of_trust.as_ref().unwrap();
        assert!(rot.device_locked);
        let app = kd
            .software_enforced
            .attestation_application_id
            .as_ref()
            .unwrap();
        assert_eq!(app.package_infos[0].package_name, "com.example.pay");
        assert_eq!(app.signature_digests, vec![vec![7; 32]]);
    }
}
