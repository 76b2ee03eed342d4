//! Synthetic Android key attestations for tests: KeyDescriptions with every
//! knob (encoded by the software TEE's KeyDescription encoder) and an rcgen
//! PKI (root, intermediate, leaf) whose leaf carries one.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use biopay::{x509::TrustAnchor, PlatformKeystoreSigner};
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SerialNumber,
};
use ring::{
    rand::SystemRandom,
    signature::{
        EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED_SIGNING,
    },
};

/// 2025-01-01T00:00:00Z.
pub const NOW: u64 = 1_735_689_600;
pub const PACKAGE: &str = "com.example.pay";
pub const APP_DIGEST: [u8; 32] = [0xAB; 32];
pub use biopay::simulator::key_description::KEY_DESCRIPTION_OID;

// ---------------------------------------------------------------------------
// KeyDescription: the knobs the policy tests turn, encoded by the software
// TEE's encoder (`biopay::simulator::key_description`).

pub use biopay::simulator::key_description::der::{ctx, int, null};
use biopay::simulator::key_description::{KeyDescriptionSpec, RootOfTrustSpec};

/// The knobs of a synthetic KeyDescription; `Kd::good(challenge)` passes the
/// test policy.
#[derive(Clone)]
pub struct Kd {
    pub attestation_level: u8,
    pub key_mint_level: u8,
    pub challenge: Vec<u8>,
    pub purpose: Vec<u64>,
    pub algorithm: Option<u64>,
    pub key_size: Option<u64>,
    pub ec_curve: Option<u64>,
    pub no_auth_required: bool,
    pub user_auth_type: Option<u64>,
    pub auth_timeout: Option<u64>,
    pub all_applications: bool,
    pub origin: Option<u64>,
    /// (deviceLocked, verifiedBootState)
    pub root_of_trust: Option<(bool, u8)>,
    pub os_patch_level: Option<u64>,
    /// (package, signing digest) in softwareEnforced
    pub app: Option<(String, [u8; 32])>,
    /// Raw extra hardwareEnforced entries (e.g. unknown tags).
    pub extra_hw: Vec<Vec<u8>>,
}

impl Kd {
    pub fn good(challenge: &[u8]) -> Self {
        Self {
            attestation_level: 1,
            key_mint_level: 1,
            challenge: challenge.to_vec(),
            purpose: vec![2],
            algorithm: Some(3),
            key_size: Some(256),
            ec_curve: Some(1),
            no_auth_required: false,
            user_auth_type: Some(2),
            auth_timeout: None,
            all_applications: false,
            origin: Some(0),
            root_of_trust: Some((true, 0)),
            os_patch_level: Some(202406),
            app: Some((PACKAGE.into(), APP_DIGEST)),
            extra_hw: Vec::new(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        KeyDescriptionSpec {
            version: 300,
            attestation_level: self.attestation_level,
            key_mint_level: self.key_mint_level,
            challenge: self.challenge.clone(),
            purpose: self.purpose.clone(),
            algorithm: self.algorithm,
            key_size: self.key_size,
            digest: vec![4],
            ec_curve: self.ec_curve,
            no_auth_required: self.no_auth_required,
            user_auth_type: self.user_auth_type,
            auth_timeout: self.auth_timeout,
            all_applications: self.all_applications,
            origin: self.origin,
            root_of_trust: self.root_of_trust.map(|(locked, state)| RootOfTrustSpec {
                verified_boot_key: vec![7; 32],
                device_locked: locked,
                verified_boot_state: state,
                verified_boot_hash: Some(vec![9; 32]),
            }),
            os_version: Some(140000),
            os_patch_level: self.os_patch_level,
            creation_time_ms: Some(1_735_000_000_000),
            application: self.app.clone().map(|(p, d)| (p, 7, d)),
            extra_hardware_enforced: self.extra_hw.clone(),
        }
        .encode()
    }
}

// ---------------------------------------------------------------------------
// PKI

/// How to build the PKI (root and intermediate).
#[derive(Clone)]
pub struct PkiSpec {
    pub intermediate_is_ca: bool,
    /// Year the intermediate expires.
    pub intermediate_until: i32,
    pub intermediate_serial: Vec<u8>,
    /// A P-384 root (else P-256).
    pub p384_root: bool,
}

impl Default for PkiSpec {
    fn default() -> Self {
        Self {
            intermediate_is_ca: true,
            intermediate_until: 2030,
            intermediate_serial: vec![0x0a, 0x1b, 0x2c, 0x3d],
            p384_root: false,
        }
    }
}

/// A root and an intermediate that issue attestation leaves.
pub struct Pki {
    root_key: KeyPair,
    root_params: CertificateParams,
    root_cert: Vec<u8>,
    inter_key: KeyPair,
    inter_params: CertificateParams,
    inter_cert: Vec<u8>,
}

pub struct Attested {
    /// DER, leaf first: leaf, intermediate, root.
    pub chain: Vec<Vec<u8>>,
    /// PKCS#8 of the leaf (attested) key.
    pub leaf_pkcs8: Vec<u8>,
}

fn dn(cn: &str) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::CommonName, cn);
    d
}

fn ca(cn: &str, serial: &[u8], until: i32, is_ca: bool) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = dn(cn);
    p.serial_number = Some(SerialNumber::from_slice(serial));
    p.not_before = date_time_ymd(2020, 1, 1);
    p.not_after = date_time_ymd(until, 1, 1);
    if is_ca {
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    } else {
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    }
    p
}

impl Pki {
    pub fn new(spec: &PkiSpec) -> Self {
        let root_key = if spec.p384_root {
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap()
        } else {
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap()
        };
        let root_params = ca("Synthetic Attestation Root", &[0x01], 2040, true);
        let root_cert = root_params.self_signed(&root_key).unwrap().der().to_vec();
        let inter_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let inter_params = ca(
            "Synthetic TEE Intermediate",
            &spec.intermediate_serial,
            spec.intermediate_until,
            spec.intermediate_is_ca,
        );
        let inter_cert = inter_params
            .signed_by(&inter_key, &Issuer::from_params(&root_params, &root_key))
            .unwrap()
            .der()
            .to_vec();
        Self {
            root_key,
            root_params,
            root_cert,
            inter_key,
            inter_params,
            inter_cert,
        }
    }

    pub fn root(&self) -> TrustAnchor {
        TrustAnchor {
            name: "synthetic root".into(),
            spki_der: self.root_key.subject_public_key_info(),
        }
    }

    pub fn intermediate_der(&self) -> &[u8] {
        &self.inter_cert
    }

    /// A leaf carrying `key_description` (raw extension value; `None`: no
    /// extension) and the chain leaf, intermediate, root.
    pub fn issue(&self, key_description: Option<Vec<u8>>, corrupt_signature: bool) -> Attested {
        let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
        leaf.distinguished_name = dn("Android Keystore Key");
        leaf.serial_number = Some(SerialNumber::from_slice(&[0x01]));
        leaf.not_before = date_time_ymd(1970, 1, 1);
        leaf.not_after = date_time_ymd(2100, 1, 1);
        if let Some(kd) = key_description {
            leaf.custom_extensions
                .push(CustomExtension::from_oid_content(KEY_DESCRIPTION_OID, kd));
        }
        let issuer = Issuer::from_params(&self.inter_params, &self.inter_key);
        let mut leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap().der().to_vec();
        if corrupt_signature {
            let n = leaf_cert.len();
            leaf_cert[n - 1] ^= 0x01;
        }
        Attested {
            chain: vec![leaf_cert, self.inter_cert.clone(), self.root_cert.clone()],
            leaf_pkcs8: leaf_key.serialize_der(),
        }
    }
}

/// A certificate's serial in status-list form.
pub fn serial_hex(der: &[u8]) -> String {
    biopay::x509::serial_hex(der).unwrap()
}

// ---------------------------------------------------------------------------
// A platform keystore signer backed by ring.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Form {
    /// What Android's `Signature` returns.
    Der,
    /// COSE's r || s.
    Fixed,
}

pub struct RingKeystore {
    pub pkcs8: Vec<u8>,
    pub chain: Vec<Vec<u8>>,
    pub form: Form,
}

impl RingKeystore {
    pub fn public_key(&self) -> Vec<u8> {
        let alg = &ECDSA_P256_SHA256_ASN1_SIGNING;
        EcdsaKeyPair::from_pkcs8(alg, &self.pkcs8, &SystemRandom::new())
            .unwrap()
            .public_key()
            .as_ref()
            .to_vec()
    }
}

impl PlatformKeystoreSigner for RingKeystore {
    fn attestation_chain(&self) -> Result<Vec<Vec<u8>>, biopay::DeviceError> {
        Ok(self.chain.clone())
    }
    fn sign(&self, data: &[u8]) -> Result<Vec<u8>, biopay::DeviceError> {
        let alg = match self.form {
            Form::Der => &ECDSA_P256_SHA256_ASN1_SIGNING,
            Form::Fixed => &ECDSA_P256_SHA256_FIXED_SIGNING,
        };
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(alg, &self.pkcs8, &rng).unwrap();
        Ok(key.sign(&rng, data).unwrap().as_ref().to_vec())
    }
}
