//! A simulated device vendor's attestation PKI (docs/PROTOCOL.md §6.2): a
//! root CA, one intermediate CA per device model, and device attestation
//! certificates. Everything is deterministic for a given seed: keys and serial
//! numbers come from HKDF over the seed, validity windows are fixed, and
//! certificates are signed with RFC 6979 (deterministic) ECDSA through rcgen's
//! external-signer traits.

use crate::{
    crypto::{self, PKI_SALT},
    error::TeeError,
};
use biopay_core::{DeviceModel, Modality, ModelStatus, SecurityLevel, TrustAnchor};
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer,
    KeyUsagePurpose, PublicKeyData, SerialNumber, SignatureAlgorithm, PKCS_ECDSA_P256_SHA256,
};
use zeroize::Zeroizing;

/// A P-256 key that rcgen signs with (DER ECDSA signatures, RFC 6979 nonces).
#[derive(Clone)]
pub(crate) struct RcgenP256 {
    key: p256::ecdsa::SigningKey,
    public: Vec<u8>,
}

impl RcgenP256 {
    pub(crate) fn new(key: p256::ecdsa::SigningKey) -> Self {
        let public = crypto::sec1_public(&key);
        Self { key, public }
    }
}

impl PublicKeyData for RcgenP256 {
    fn der_bytes(&self) -> &[u8] {
        &self.public
    }
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

impl rcgen::SigningKey for RcgenP256 {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        Ok(crypto::sign_der(&self.key, msg))
    }
}

/// A P-256 public key (SEC1 uncompressed) to be certified.
pub(crate) struct P256Public<'a>(pub(crate) &'a [u8]);

impl PublicKeyData for P256Public<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.0
    }
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

/// A positive 16-byte serial number from 16 bytes of entropy.
pub(crate) fn serial_number(mut bytes: [u8; 16]) -> SerialNumber {
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

fn name(vendor: &str, cn: &str, ou: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, vendor);
    if let Some(ou) = ou {
        dn.push(DnType::OrganizationalUnitName, ou);
    }
    dn.push(DnType::CommonName, cn);
    dn
}

fn ca_params(
    dn: DistinguishedName,
    constraints: BasicConstraints,
    serial: SerialNumber,
) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.not_before = date_time_ymd(2020, 1, 1);
    p.not_after = date_time_ymd(2045, 1, 1);
    p.serial_number = Some(serial);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(constraints);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

/// A simulated device vendor: a root CA (ECDSA P-256) and per-model
/// intermediate CAs, all derived from a seed.
///
/// The root is self-signed (basicConstraints cA, no path length limit,
/// keyCertSign) and valid 2020-01-01..2045-01-01. The intermediate CA of a
/// model (`"<vendor> <model> Attestation CA"`, pathLen 0, same validity) is
/// derived from the seed and the model id whenever a device of that model is
/// provisioned, so it is the same every time.
#[derive(Clone)]
pub struct VendorPki {
    vendor: String,
    seed: Zeroizing<Vec<u8>>,
    root_key: RcgenP256,
    root_params: CertificateParams,
    root_cert: Vec<u8>,
}

impl core::fmt::Debug for VendorPki {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("VendorPki")
            .field("vendor", &self.vendor)
            .field("root_cert_len", &self.root_cert.len())
            .finish_non_exhaustive()
    }
}

impl VendorPki {
    /// A vendor PKI, deterministic from `seed`: root CA key and certificate
    /// (ECDSA P-256); per-model intermediate CAs are created on demand.
    pub fn new(vendor_name: &str, seed: &[u8]) -> Result<Self, TeeError> {
        if vendor_name.trim().is_empty() || vendor_name.chars().any(char::is_control) {
            return Err(TeeError::InvalidInput(
                "vendor name must be non-empty printable text".into(),
            ));
        }
        let seed = Zeroizing::new(seed.to_vec());
        let root_key = RcgenP256::new(crypto::derive_p256(PKI_SALT, &seed, &[b"root key"])?);
        let serial = crypto::hkdf32(PKI_SALT, &seed, &[b"root serial"]);
        let root_params = ca_params(
            name(vendor_name, &format!("{vendor_name} Root CA"), None),
            BasicConstraints::Unconstrained,
            serial_number(first16(&serial)),
        );
        let root_cert = root_params.self_signed(&root_key)?.der().to_vec();
        Ok(Self {
            vendor: vendor_name.to_owned(),
            seed,
            root_key,
            root_params,
            root_cert,
        })
    }

    /// The vendor name.
    pub fn vendor_name(&self) -> &str {
        &self.vendor
    }

    /// The root key as a verifier trust anchor (DER SubjectPublicKeyInfo).
    pub fn trust_anchor(&self) -> TrustAnchor {
        TrustAnchor {
            name: format!("{} Root CA", self.vendor),
            spki_der: self.root_key.subject_public_key_info(),
        }
    }

    /// The self-signed root certificate, DER.
    pub fn root_cert_der(&self) -> Vec<u8> {
        self.root_cert.clone()
    }

    /// The intermediate CA certificate of `model_id`, DER.
    pub fn intermediate_cert_der(&self, model_id: &str) -> Result<Vec<u8>, TeeError> {
        Ok(self.intermediate(model_id)?.1)
    }

    /// A verifier trust-configuration entry for `model_id`: anchored at this
    /// vendor's root, [`ModelStatus::Active`].
    pub fn device_model(
        &self,
        model_id: &str,
        modalities: &[Modality],
        security_level: SecurityLevel,
    ) -> DeviceModel {
        let mut modalities = modalities.to_vec();
        modalities.sort();
        modalities.dedup();
        DeviceModel {
            id: model_id.to_owned(),
            trust_anchors: vec![self.trust_anchor()],
            modalities,
            security_level,
            status: ModelStatus::Active,
        }
    }

    /// The intermediate CA of `model_id`: its parameters and key (an rcgen
    /// issuer) and its certificate.
    fn intermediate(
        &self,
        model_id: &str,
    ) -> Result<(Issuer<'static, RcgenP256>, Vec<u8>), TeeError> {
        self.intermediate_ca(model_id, "intermediate", "Attestation CA", 0)
    }

    /// An intermediate CA under the root for `model_id`, its key and serial
    /// derived from the vendor seed under `label` (so each kind of
    /// intermediate has its own), CN "<vendor> <model> <cn_suffix>".
    fn intermediate_ca(
        &self,
        model_id: &str,
        label: &str,
        cn_suffix: &str,
        path_len: u8,
    ) -> Result<(Issuer<'static, RcgenP256>, Vec<u8>), TeeError> {
        let key = RcgenP256::new(crypto::derive_p256(
            PKI_SALT,
            &self.seed,
            &[format!("{label} key/").as_bytes(), model_id.as_bytes()],
        )?);
        let serial = crypto::hkdf32(
            PKI_SALT,
            &self.seed,
            &[format!("{label} serial/").as_bytes(), model_id.as_bytes()],
        );
        let mut params = ca_params(
            name(
                &self.vendor,
                &format!("{} {model_id} {cn_suffix}", self.vendor),
                None,
            ),
            BasicConstraints::Constrained(path_len),
            serial_number(first16(&serial)),
        );
        params.use_authority_key_identifier_extension = true;
        let root = Issuer::from_params(&self.root_params, &self.root_key);
        let cert = params.signed_by(&key, &root)?.der().to_vec();
        Ok((Issuer::new(params, key), cert))
    }

    /// Certifies a device attestation key (SEC1 uncompressed P-256) for
    /// `model_id`: subject O = vendor, OU = model id, CN = "<vendor> device
    /// attestation"; not a CA; valid 2024-01-01..2040-01-01. Returns the chain
    /// `[leaf, intermediate]`, DER, leaf first.
    pub(crate) fn certify_device(
        &self,
        model_id: &str,
        public_key: &[u8],
        serial: [u8; 16],
    ) -> Result<Vec<Vec<u8>>, TeeError> {
        let (issuer, intermediate) = self.intermediate(model_id)?;
        let mut params = CertificateParams::default();
        params.not_before = date_time_ymd(2024, 1, 1);
        params.not_after = date_time_ymd(2040, 1, 1);
        params.serial_number = Some(serial_number(serial));
        params.distinguished_name = name(
            &self.vendor,
            &format!("{} device attestation", self.vendor),
            Some(model_id),
        );
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let leaf = params
            .signed_by(&P256Public(public_key), &issuer)?
            .der()
            .to_vec();
        Ok(vec![leaf, intermediate])
    }
}

/// The model id under which [`VendorPki::certify_keystore_key`] (the test
/// double for a platform KeyMint) issues its attestation CA.
pub const KEYSTORE_TEST_DOUBLE_MODEL: &str = "keystore-test-double";

impl VendorPki {
    /// The KeyMint attestation intermediate CA of `model_id` (pathLen 1: it
    /// certifies each device's KeyMint attestation key, which certifies keys).
    fn keymint_intermediate(
        &self,
        model_id: &str,
    ) -> Result<(Issuer<'static, RcgenP256>, Vec<u8>), TeeError> {
        self.intermediate_ca(
            model_id,
            "keymint intermediate",
            "KeyMint Attestation CA",
            1,
        )
    }

    /// Certifies a device attestation key (SEC1 uncompressed P-256) as the
    /// device's KeyMint attestation CA for `model_id` (pathLen 0: it signs
    /// key certificates only). Returns `[device CA, KeyMint intermediate]`,
    /// DER; the root is the vendor root.
    pub(crate) fn certify_keymint_device(
        &self,
        model_id: &str,
        public_key: &[u8],
        serial: [u8; 16],
    ) -> Result<Vec<Vec<u8>>, TeeError> {
        let (issuer, intermediate) = self.keymint_intermediate(model_id)?;
        let params = keymint_device_ca_params(&self.vendor, model_id, serial);
        let cert = params
            .signed_by(&P256Public(public_key), &issuer)?
            .der()
            .to_vec();
        Ok(vec![cert, intermediate])
    }

    /// **A test double, not an attestation.** Certifies `public_key` (SEC1
    /// uncompressed P-256, generated anywhere, e.g. by a JVM test's
    /// `KeyPairGenerator`) as if a KeyMint had generated it with
    /// `attestation_challenge`, for `package_name` signed by
    /// `signing_cert_digest`, at TrustedEnvironment (or StrongBox) level, with
    /// the attributes of [`crate::KeyDescriptionSpec::keymint`]. The signer is
    /// an attestation CA derived from the vendor seed (model
    /// [`KEYSTORE_TEST_DOUBLE_MODEL`]), in a chain to the vendor root. Nothing
    /// about where the key lives is true: use it only to test the link
    /// without a device. Returns the chain, DER, leaf first (`[key,
    /// attestation CA, KeyMint intermediate]`).
    pub fn certify_keystore_key(
        &self,
        public_key: &[u8],
        attestation_challenge: &[u8],
        package_name: &str,
        signing_cert_digest: [u8; 32],
        strong_box: bool,
    ) -> Result<Vec<Vec<u8>>, TeeError> {
        if !biopay_core::crypto::is_valid_p256_point(public_key) {
            return Err(TeeError::InvalidInput(
                "public key must be an uncompressed P-256 point".into(),
            ));
        }
        let model = KEYSTORE_TEST_DOUBLE_MODEL;
        let ca_key = crypto::derive_p256(PKI_SALT, &self.seed, &[b"keystore test double ca"])?;
        let serial = first16(&crypto::hkdf32(
            PKI_SALT,
            &self.seed,
            &[b"keystore test double ca serial"],
        ));
        let mut chain =
            self.certify_keymint_device(model, &crypto::sec1_public(&ca_key), serial)?;
        let issuer = Issuer::new(
            keymint_device_ca_params(&self.vendor, model, serial),
            RcgenP256::new(ca_key),
        );
        let level = if strong_box {
            crate::key_description::security_level::STRONG_BOX
        } else {
            crate::key_description::security_level::TRUSTED_ENVIRONMENT
        };
        let spec = crate::KeyDescriptionSpec::keymint(
            attestation_challenge,
            level,
            package_name,
            signing_cert_digest,
        );
        let leaf = issue_key_certificate(&issuer, public_key, &spec)?;
        chain.insert(0, leaf);
        Ok(chain)
    }
}

/// The parameters of a device's KeyMint attestation CA certificate: O =
/// vendor, OU = model id, CN = "<vendor> KeyMint attestation key"; CA with
/// pathLen 0; valid 2024-01-01..2040-01-01.
pub(crate) fn keymint_device_ca_params(
    vendor: &str,
    model_id: &str,
    serial: [u8; 16],
) -> CertificateParams {
    let mut params = ca_params(
        name(
            vendor,
            &format!("{vendor} KeyMint attestation key"),
            Some(model_id),
        ),
        BasicConstraints::Constrained(0),
        serial_number(serial),
    );
    params.not_before = date_time_ymd(2024, 1, 1);
    params.not_after = date_time_ymd(2040, 1, 1);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    params.use_authority_key_identifier_extension = true;
    params
}

/// A KeyMint key certificate: subject CN "Android Keystore Key" (what
/// KeyMint writes by default), serial 1, valid 1970-01-01..2100-01-01 (no
/// validity requested), digitalSignature, carrying the KeyDescription.
pub(crate) fn issue_key_certificate<S: rcgen::SigningKey>(
    issuer: &Issuer<'_, S>,
    public_key: &[u8],
    spec: &crate::KeyDescriptionSpec,
) -> Result<Vec<u8>, TeeError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Android Keystore Key");
    params.distinguished_name = dn;
    params.serial_number = Some(SerialNumber::from_slice(&[0x01]));
    params.not_before = date_time_ymd(1970, 1, 1);
    params.not_after = date_time_ymd(2100, 1, 1);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params
        .custom_extensions
        .push(rcgen::CustomExtension::from_oid_content(
            crate::key_description::KEY_DESCRIPTION_OID,
            spec.encode(),
        ));
    Ok(params
        .signed_by(&P256Public(public_key), issuer)?
        .der()
        .to_vec())
}

fn first16(b: &[u8; 32]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&b[..16]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::{FromDer, X509Certificate};

    #[test]
    fn deterministic_from_seed() {
        let a = VendorPki::new("Acme", b"seed").unwrap();
        let b = VendorPki::new("Acme", b"seed").unwrap();
        let c = VendorPki::new("Acme", b"other seed").unwrap();
        assert_eq!(a.root_cert_der(), b.root_cert_der());
        assert_eq!(a.trust_anchor(), b.trust_anchor());
        assert_ne!(a.trust_anchor(), c.trust_anchor());
        assert_eq!(
            a.intermediate_cert_der("m1").unwrap(),
            b.intermediate_cert_der("m1").unwrap()
        );
        assert_ne!(
            a.intermediate_cert_der("m1").unwrap(),
            a.intermediate_cert_der("m2").unwrap()
        );
    }

    #[test]
    fn chain_verifies_with_core() {
        let pki = VendorPki::new("Acme", b"seed").unwrap();
        let device = crypto::derive_p256(PKI_SALT, b"device", &[b"k"]).unwrap();
        let chain = pki
            .certify_device("acme-x1", &crypto::sec1_public(&device), [5; 16])
            .unwrap();
        // 2030-01-01
        let v =
            biopay_core::x509::verify_chain(&chain, &[pki.trust_anchor()], 1_893_456_000).unwrap();
        assert_eq!(v.leaf_subject_ou, vec!["acme-x1".to_owned()]);
        assert_eq!(v.leaf_public_key, crypto::sec1_public(&device));
        assert_eq!(v.path, vec![0, 1]);
        // Outside the leaf's validity window.
        assert!(
            biopay_core::x509::verify_chain(&chain, &[pki.trust_anchor()], 1_600_000_000).is_err()
        );
        // Another vendor's root.
        let other = VendorPki::new("Other", b"seed2").unwrap();
        assert!(
            biopay_core::x509::verify_chain(&chain, &[other.trust_anchor()], 1_893_456_000)
                .is_err()
        );
        let (_, leaf) = X509Certificate::from_der(&chain[0]).unwrap();
        assert!(!leaf.is_ca());
        let (_, inter) = X509Certificate::from_der(&chain[1]).unwrap();
        assert_eq!(
            inter
                .basic_constraints()
                .unwrap()
                .unwrap()
                .value
                .path_len_constraint,
            Some(0)
        );
        assert!(inter
            .subject()
            .to_string()
            .contains("Acme acme-x1 Attestation CA"));
        let root_der = pki.root_cert_der();
        let (_, root) = X509Certificate::from_der(&root_der).unwrap();
        assert_eq!(
            root.public_key().raw,
            pki.trust_anchor().spki_der.as_slice()
        );
    }

    #[test]
    fn debug_hides_seed_and_keys() {
        let pki = VendorPki::new("Acme", b"a very secret seed").unwrap();
        let dbg = format!("{pki:?}");
        assert!(dbg.contains("Acme"));
        assert!(!dbg.contains("secret"));
        let scalar = crypto::p256_scalar(&pki.root_key.key);
        assert!(!dbg.contains(&hex::encode(scalar.as_ref())));
    }
}
