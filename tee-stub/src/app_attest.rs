//! `SimulatedAppAttest`: a test double of Apple's App Attest service
//! (`DCAppAttestService`) that produces attestation and assertion objects in
//! Apple's format, byte for byte in layout (docs/PROTOCOL.md §13.4, §13.5),
//! under a simulated root instead of Apple's.
//!
//! The PKI has Apple's shape: a self-signed ECDSA P-384 root ("Simulated App
//! Attestation Root CA"), a P-384 intermediate ("Simulated App Attestation CA
//! 1") and per key a P-256 leaf carrying the nonce extension
//! 1.2.840.113635.100.8.2. The attestation object is the CBOR map
//! `{"fmt": "apple-appattest", "attStmt": {"x5c": [leaf, intermediate],
//! "receipt": bytes}, "authData": bytes}` with the authenticator data
//! rpIdHash | flags 0x40 | counter 0 | aaguid | credentialId length 32 |
//! key id | COSE_Key; an assertion is `{"signature": DER, "authenticatorData":
//! rpIdHash | 0x40 | counter}` (37 bytes: AT set, no attested data, as real
//! devices do). The receipt is a placeholder, not a PKCS#7 receipt.
//!
//! [`SimulatedAppAttest::new`] makes random keys; [`SimulatedAppAttest::from_seed`]
//! makes everything (root, intermediate, App Attest keys, leaf serials,
//! signatures) reproducible from a seed, for the committed test vectors.
//!
//! Methods whose name starts with `danger_` build deliberately wrong objects
//! for adversarial tests.
//!
//! ```
//! use biopay_core::{apple::{self, AppAttestEnvironment, AppleTrust}, crypto::sha256};
//! use biopay_tee_stub::SimulatedAppAttest;
//!
//! let service = SimulatedAppAttest::new("ABCDE12345.com.example.pay", AppAttestEnvironment::Production)?;
//! let trust = AppleTrust::new(vec!["ABCDE12345.com.example.pay".into()], AppAttestEnvironment::Production)
//!     .with_anchors(vec![service.trust_anchor()?]);
//! let mut key = service.generate_key()?;
//! let attestation = service.attest_key(&key, &sha256(b"registration"))?;
//! let verified = apple::verify_attestation(&attestation, &sha256(b"registration"),
//!     Some(&key.key_id()), &trust, 1_893_456_000)?;
//! let assertion = service.generate_assertion(&mut key, &sha256(b"payment"))?;
//! let counter = apple::verify_assertion(&assertion, &sha256(b"payment"), &verified.public_key,
//!     "ABCDE12345.com.example.pay", verified.counter)?.counter;
//! assert_eq!(counter, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::{
    crypto::{self, TeeRng, APP_ATTEST_SALT},
    error::TeeError,
    pki::P256Public,
};
use biopay_core::{
    apple::{AppAttestEnvironment, FORMAT},
    crypto::{sha256, sha256_parts},
    messages::cose_key_from_sec1,
    TrustAnchor,
};
use ciborium::value::Value;
use p256::ecdsa::SigningKey;
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer,
    KeyUsagePurpose, PublicKeyData, SignatureAlgorithm, PKCS_ECDSA_P384_SHA384,
};
use zeroize::Zeroizing;

/// The placeholder receipt in simulated attestations.
pub const SIMULATED_RECEIPT: &[u8] = b"biopay simulated App Attest receipt (not a PKCS#7 receipt)";

/// An App Attest key held by the simulated service (the Secure Enclave key
/// `DCAppAttestService.generateKey` makes). Its private key never leaves
/// this value; `Debug` shows only the key id.
pub struct AppAttestKey {
    key: SigningKey,
    public_key: Vec<u8>,
    key_id: [u8; 32],
    counter: u32,
}

impl core::fmt::Debug for AppAttestKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AppAttestKey")
            .field("key_id", &hex::encode(self.key_id))
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}

impl AppAttestKey {
    /// Apple's key id: SHA-256 of the uncompressed public point.
    pub fn key_id(&self) -> [u8; 32] {
        self.key_id
    }
    /// The public key, an uncompressed P-256 point.
    pub fn public_key(&self) -> &[u8] {
        &self.public_key
    }
    /// The counter of the last assertion (0 after the attestation).
    pub fn counter(&self) -> u32 {
        self.counter
    }
}

/// Deliberate faults for [`SimulatedAppAttest::danger_attest_key_with`]; the
/// default is an honest attestation.
#[derive(Debug, Clone, Default)]
pub struct AttestationFaults {
    /// `fmt` instead of "apple-appattest".
    pub fmt: Option<String>,
    /// The app id whose SHA-256 becomes the rpIdHash, instead of the service's.
    pub app_id: Option<String>,
    /// The counter instead of 0.
    pub counter: Option<u32>,
    /// The aaguid instead of the environment's.
    pub aaguid: Option<[u8; 16]>,
    /// The credentialId instead of the key id.
    pub credential_id: Option<Vec<u8>>,
    /// The uncompressed point written as the COSE_Key instead of the key's.
    pub cose_public_key: Option<Vec<u8>>,
    /// The leaf's nonce instead of SHA-256(authData ‖ clientDataHash).
    pub nonce: Option<[u8; 32]>,
    /// Leave the nonce extension out of the leaf.
    pub omit_nonce_extension: bool,
}

/// A P-384 CA key that rcgen signs with: DER ECDSA P-384 / SHA-384
/// signatures with RFC 6979 (deterministic) nonces.
#[derive(Clone)]
struct RcgenP384 {
    key: p384::ecdsa::SigningKey,
    public: Vec<u8>,
}

impl RcgenP384 {
    fn new(key: p384::ecdsa::SigningKey) -> Self {
        let public = key
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec();
        Self { key, public }
    }
}

impl PublicKeyData for RcgenP384 {
    fn der_bytes(&self) -> &[u8] {
        &self.public
    }
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ECDSA_P384_SHA384
    }
}

impl rcgen::SigningKey for RcgenP384 {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        use p384::ecdsa::signature::Signer;
        let sig: p384::ecdsa::Signature = self.key.sign(msg);
        Ok(sig.to_der().as_bytes().to_vec())
    }
}

/// The simulated App Attest service of one app (`TEAMID.bundle`) in one
/// environment, with its own root.
pub struct SimulatedAppAttest {
    app_id: String,
    environment: AppAttestEnvironment,
    root_cert: Vec<u8>,
    root_pem: String,
    inter_key: RcgenP384,
    inter_params: CertificateParams,
    inter_cert: Vec<u8>,
    rng: TeeRng,
}

impl core::fmt::Debug for SimulatedAppAttest {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SimulatedAppAttest")
            .field("app_id", &self.app_id)
            .field("environment", &self.environment)
            .finish_non_exhaustive()
    }
}

fn dn(cn: &str) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::CommonName, cn);
    d.push(DnType::OrganizationName, "biopay simulation");
    d
}

fn ca(cn: &str, serial: u8, path_len: Option<u8>) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(cn);
    p.serial_number = Some(rcgen::SerialNumber::from_slice(&[serial]));
    p.not_before = date_time_ymd(2020, 1, 1);
    p.not_after = date_time_ymd(2045, 1, 1);
    p.is_ca = IsCa::Ca(match path_len {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p
}

/// [`biopay_core::apple::NONCE_OID`] as arcs.
const NONCE_OID_ARCS: [u64; 7] = [1, 2, 840, 113_635, 100, 8, 2];

/// DER `SEQUENCE { [1] EXPLICIT OCTET STRING (32) }`.
fn nonce_extension(nonce: &[u8; 32]) -> Vec<u8> {
    let mut out = vec![0x30, 0x24, 0xa1, 0x22, 0x04, 0x20];
    out.extend_from_slice(nonce);
    out
}

fn cbor(value: &Value) -> Result<Vec<u8>, TeeError> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(value, &mut out)
        .map_err(|_| TeeError::Crypto("CBOR encoding failed"))?;
    Ok(out)
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

impl SimulatedAppAttest {
    /// A new service for `app_id` in `environment`, with fresh random root
    /// and intermediate keys (valid 2020-01-01..2045-01-01); App Attest keys
    /// and leaf serial numbers come from the system generator.
    pub fn new(app_id: &str, environment: AppAttestEnvironment) -> Result<Self, TeeError> {
        let rng = TeeRng::new(None, 0);
        let seed = rng.secret32()?;
        Self::build(app_id, environment, seed.as_ref(), rng)
    }

    /// A service deterministic from `seed`, for reproducible test vectors:
    /// the P-384 root and intermediate keys are derived from it with HKDF,
    /// every certificate is signed with RFC 6979 (deterministic) ECDSA, and
    /// App Attest keys and leaf serial numbers are drawn from a deterministic
    /// stream of the seed. Two services from the same seed make the same
    /// bytes for the same calls in the same order. Not for production: whoever
    /// knows the seed holds the root key.
    pub fn from_seed(
        app_id: &str,
        environment: AppAttestEnvironment,
        seed: &[u8],
    ) -> Result<Self, TeeError> {
        let stream = crypto::hkdf32(APP_ATTEST_SALT, seed, &[b"random stream"]);
        let rng = TeeRng::new(Some(stream.as_ref()), 0);
        Self::build(app_id, environment, seed, rng)
    }

    fn build(
        app_id: &str,
        environment: AppAttestEnvironment,
        seed: &[u8],
        rng: TeeRng,
    ) -> Result<Self, TeeError> {
        let seed = Zeroizing::new(seed.to_vec());
        let root_key = RcgenP384::new(crypto::derive_p384(APP_ATTEST_SALT, &seed, &[b"root key"])?);
        let root_params = ca("Simulated App Attestation Root CA", 1, None);
        let root = root_params.self_signed(&root_key)?;
        let root_cert = root.der().to_vec();
        let root_pem = root.pem();
        let inter_key = RcgenP384::new(crypto::derive_p384(
            APP_ATTEST_SALT,
            &seed,
            &[b"intermediate key"],
        )?);
        let inter_params = ca("Simulated App Attestation CA 1", 2, Some(0));
        let inter_cert = inter_params
            .signed_by(&inter_key, &Issuer::from_params(&root_params, &root_key))?
            .der()
            .to_vec();
        Ok(Self {
            app_id: app_id.to_owned(),
            environment,
            root_cert,
            root_pem,
            inter_key,
            inter_params,
            inter_cert,
            rng,
        })
    }

    /// The app id (`TEAMID.bundle`).
    pub fn app_id(&self) -> &str {
        &self.app_id
    }
    /// The environment whose aaguid the attestations carry.
    pub fn environment(&self) -> AppAttestEnvironment {
        self.environment
    }
    /// The root certificate, DER.
    pub fn root_cert_der(&self) -> Vec<u8> {
        self.root_cert.clone()
    }
    /// The root certificate, PEM (what `--trust-root` takes).
    pub fn root_cert_pem(&self) -> String {
        self.root_pem.clone()
    }
    /// The root's public key as a trust anchor (to replace Apple's).
    pub fn trust_anchor(&self) -> Result<TrustAnchor, TeeError> {
        let spki_der = biopay_core::x509::spki_of(&self.root_cert)
            .ok_or(TeeError::Certificate("root does not parse".into()))?;
        Ok(TrustAnchor {
            name: "Simulated App Attestation Root CA".into(),
            spki_der,
        })
    }

    /// `generateKey`: a new App Attest key.
    pub fn generate_key(&self) -> Result<AppAttestKey, TeeError> {
        let key = crypto::generate_p256(&self.rng)?;
        let public_key = crypto::sec1_public(&key);
        Ok(AppAttestKey {
            key_id: sha256(&public_key),
            public_key,
            key,
            counter: 0,
        })
    }

    /// `attestKey(keyId, clientDataHash)`: the attestation object.
    pub fn attest_key(
        &self,
        key: &AppAttestKey,
        client_data_hash: &[u8; 32],
    ) -> Result<Vec<u8>, TeeError> {
        self.danger_attest_key_with(key, client_data_hash, &AttestationFaults::default())
    }

    /// An attestation object with the given `faults` (none: honest).
    pub fn danger_attest_key_with(
        &self,
        key: &AppAttestKey,
        client_data_hash: &[u8; 32],
        faults: &AttestationFaults,
    ) -> Result<Vec<u8>, TeeError> {
        let app_id = faults.app_id.as_deref().unwrap_or(&self.app_id);
        let credential_id = faults
            .credential_id
            .clone()
            .unwrap_or_else(|| key.key_id.to_vec());
        let cose_point = faults.cose_public_key.as_deref().unwrap_or(&key.public_key);
        let mut auth_data = Vec::with_capacity(200);
        auth_data.extend_from_slice(&sha256(app_id.as_bytes()));
        auth_data.push(0x40);
        auth_data.extend_from_slice(&faults.counter.unwrap_or(0).to_be_bytes());
        auth_data.extend_from_slice(&faults.aaguid.unwrap_or(self.environment.aaguid()));
        let len = u16::try_from(credential_id.len())
            .map_err(|_| TeeError::InvalidInput("credential id too long".into()))?;
        auth_data.extend_from_slice(&len.to_be_bytes());
        auth_data.extend_from_slice(&credential_id);
        auth_data.extend_from_slice(&cbor(&cose_key_from_sec1(cose_point))?);
        let nonce = faults
            .nonce
            .unwrap_or_else(|| sha256_parts(&[&auth_data, client_data_hash]));

        let mut leaf = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, hex::encode(key.key_id));
        name.push(DnType::OrganizationalUnitName, "AAA Certification");
        name.push(DnType::OrganizationName, "biopay simulation");
        leaf.distinguished_name = name;
        let serial: [u8; 8] = self.rng.array()?;
        leaf.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        leaf.not_before = date_time_ymd(2020, 1, 1);
        leaf.not_after = date_time_ymd(2045, 1, 1);
        leaf.is_ca = IsCa::ExplicitNoCa;
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if !faults.omit_nonce_extension {
            leaf.custom_extensions
                .push(rcgen::CustomExtension::from_oid_content(
                    &NONCE_OID_ARCS,
                    nonce_extension(&nonce),
                ));
        }
        let issuer = Issuer::from_params(&self.inter_params, &self.inter_key);
        let leaf_cert = leaf
            .signed_by(&P256Public(&key.public_key), &issuer)?
            .der()
            .to_vec();

        let object = Value::Map(vec![
            (text("fmt"), text(faults.fmt.as_deref().unwrap_or(FORMAT))),
            (
                text("attStmt"),
                Value::Map(vec![
                    (
                        text("x5c"),
                        Value::Array(vec![
                            Value::Bytes(leaf_cert),
                            Value::Bytes(self.inter_cert.clone()),
                        ]),
                    ),
                    (text("receipt"), Value::Bytes(SIMULATED_RECEIPT.to_vec())),
                ]),
            ),
            (text("authData"), Value::Bytes(auth_data)),
        ]);
        cbor(&object)
    }

    /// `generateAssertion(keyId, clientDataHash)`: the assertion object with
    /// the key's next counter.
    pub fn generate_assertion(
        &self,
        key: &mut AppAttestKey,
        client_data_hash: &[u8; 32],
    ) -> Result<Vec<u8>, TeeError> {
        let counter = key
            .counter
            .checked_add(1)
            .ok_or(TeeError::Crypto("assertion counter exhausted"))?;
        key.counter = counter;
        self.danger_assertion_with(key, client_data_hash, counter, &self.app_id)
    }

    /// An assertion with an arbitrary `counter` and rpIdHash of `app_id`,
    /// signed by `key` (the key's own counter is not changed).
    pub fn danger_assertion_with(
        &self,
        key: &AppAttestKey,
        client_data_hash: &[u8; 32],
        counter: u32,
        app_id: &str,
    ) -> Result<Vec<u8>, TeeError> {
        let mut authenticator_data = Vec::with_capacity(37);
        authenticator_data.extend_from_slice(&sha256(app_id.as_bytes()));
        authenticator_data.push(0x40);
        authenticator_data.extend_from_slice(&counter.to_be_bytes());
        let nonce = sha256_parts(&[&authenticator_data, client_data_hash]);
        let signature = crypto::sign_der(&key.key, &nonce);
        cbor(&Value::Map(vec![
            (text("signature"), Value::Bytes(signature)),
            (text("authenticatorData"), Value::Bytes(authenticator_data)),
        ]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use biopay_core::apple::{self, AppleTrust};

    const APP: &str = "ABCDE12345.com.example.pay";
    const NOW: u64 = 1_893_456_000;

    fn map(object: &[u8]) -> Vec<(Value, Value)> {
        match ciborium::de::from_reader(object).unwrap() {
            Value::Map(m) => m,
            _ => panic!("not a map"),
        }
    }

    fn get(m: &[(Value, Value)], k: &str) -> Value {
        m.iter()
            .find(|(key, _)| key.as_text() == Some(k))
            .map(|(_, v)| v.clone())
            .unwrap()
    }

    #[test]
    fn objects_have_apples_layout_and_verify_with_core() {
        for env in [
            AppAttestEnvironment::Development,
            AppAttestEnvironment::Production,
        ] {
            let sim = SimulatedAppAttest::new(APP, env).unwrap();
            let trust = AppleTrust::new(vec![APP.into()], env)
                .with_anchors(vec![sim.trust_anchor().unwrap()]);
            let mut key = sim.generate_key().unwrap();
            let cdh = sha256(b"c");
            let object = sim.attest_key(&key, &cdh).unwrap();
            let m = map(&object);
            let keys: Vec<_> = m
                .iter()
                .map(|(k, _)| k.as_text().unwrap().to_owned())
                .collect();
            assert_eq!(keys, ["fmt", "attStmt", "authData"]);
            assert_eq!(get(&m, "fmt").as_text(), Some(FORMAT));
            let auth = get(&m, "authData").into_bytes().unwrap();
            assert_eq!(&auth[..32], &sha256(APP.as_bytes()));
            assert_eq!(auth[32], 0x40);
            assert_eq!(&auth[33..37], &[0, 0, 0, 0]);
            assert_eq!(auth[37..53], env.aaguid());
            assert_eq!(&auth[53..55], &[0, 32]);
            assert_eq!(auth[55..87], key.key_id());
            let v =
                apple::verify_attestation(&object, &cdh, Some(&key.key_id()), &trust, NOW).unwrap();
            assert_eq!(v.public_key, key.public_key());
            assert_eq!(v.receipt, SIMULATED_RECEIPT);

            let a = sim.generate_assertion(&mut key, &sha256(b"p")).unwrap();
            let am = map(&a);
            let keys: Vec<_> = am
                .iter()
                .map(|(k, _)| k.as_text().unwrap().to_owned())
                .collect();
            assert_eq!(keys, ["signature", "authenticatorData"]);
            let ad = get(&am, "authenticatorData").into_bytes().unwrap();
            assert_eq!(ad.len(), 37);
            assert_eq!(ad[32], 0x40, "AT set with nothing after it, as on devices");
            assert_eq!(key.counter(), 1);
            assert_eq!(
                apple::verify_assertion(&a, &sha256(b"p"), key.public_key(), APP, 0)
                    .unwrap()
                    .counter,
                1
            );
        }
    }

    #[test]
    fn each_service_has_its_own_root_and_keys_differ() {
        let a = SimulatedAppAttest::new(APP, AppAttestEnvironment::Production).unwrap();
        let b = SimulatedAppAttest::new(APP, AppAttestEnvironment::Production).unwrap();
        assert_ne!(a.trust_anchor().unwrap(), b.trust_anchor().unwrap());
        let key = a.generate_key().unwrap();
        assert_ne!(key.key_id(), a.generate_key().unwrap().key_id());
        let object = a.attest_key(&key, &[0; 32]).unwrap();
        let trust_b = AppleTrust::new(vec![APP.into()], AppAttestEnvironment::Production)
            .with_anchors(vec![b.trust_anchor().unwrap()]);
        assert!(apple::verify_attestation(&object, &[0; 32], None, &trust_b, NOW).is_err());
        assert!(a.root_cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    }

    /// A vector that cannot be regenerated cannot be checked: the same seed
    /// gives the same root, keys, attestations and assertions, byte for
    /// byte, and another seed gives another root.
    #[test]
    fn the_same_seed_makes_the_same_bytes_and_another_seed_another_root() {
        let make = |seed: &[u8]| {
            let sim =
                SimulatedAppAttest::from_seed(APP, AppAttestEnvironment::Production, seed).unwrap();
            let mut key = sim.generate_key().unwrap();
            let object = sim.attest_key(&key, &sha256(b"c")).unwrap();
            let assertion = sim.generate_assertion(&mut key, &sha256(b"p")).unwrap();
            (sim.root_cert_der(), object, assertion, sim)
        };
        let (root_a, object_a, assertion_a, sim) = make(b"seed 1");
        let (root_b, object_b, assertion_b, _) = make(b"seed 1");
        assert_eq!(root_a, root_b);
        assert_eq!(object_a, object_b);
        assert_eq!(assertion_a, assertion_b);
        let (root_c, object_c, _, _) = make(b"seed 2");
        assert_ne!(root_a, root_c);
        assert_ne!(object_a, object_c);
        // And what it makes verifies under its own root.
        let trust = AppleTrust::new(vec![APP.into()], AppAttestEnvironment::Production)
            .with_anchors(vec![sim.trust_anchor().unwrap()]);
        apple::verify_attestation(&object_a, &sha256(b"c"), None, &trust, NOW).unwrap();
    }

    #[test]
    fn debug_shows_no_private_key() {
        let sim = SimulatedAppAttest::new(APP, AppAttestEnvironment::Development).unwrap();
        let key = sim.generate_key().unwrap();
        let shown = format!("{key:?} {sim:?}");
        assert!(shown.contains(&hex::encode(key.key_id())));
        let scalar = hex::encode(key.key.to_bytes());
        assert!(!shown.contains(&scalar));
    }
}
