//! Plain data crossing the FFI. Integers are signed (Kotlin/Java have no
//! unsigned types in their everyday APIs); each conversion is checked.

use crate::errors::{BiopayError, VerificationError};

/// A biometric modality.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Modality {
    /// Fingerprint.
    Fingerprint,
    /// Face.
    Face,
}

impl From<Modality> for biopay_core::Modality {
    fn from(m: Modality) -> Self {
        match m {
            Modality::Fingerprint => Self::Fingerprint,
            Modality::Face => Self::Face,
        }
    }
}

impl From<biopay_core::Modality> for Modality {
    fn from(m: biopay_core::Modality) -> Self {
        match m {
            biopay_core::Modality::Fingerprint => Self::Fingerprint,
            biopay_core::Modality::Face => Self::Face,
        }
    }
}

/// Where a key lives, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum SecurityLevel {
    /// Ordinary software.
    Software,
    /// A trusted execution environment.
    Tee,
    /// A discrete secure element (StrongBox, Secure Enclave).
    StrongBox,
}

impl From<SecurityLevel> for biopay_core::SecurityLevel {
    fn from(l: SecurityLevel) -> Self {
        match l {
            SecurityLevel::Software => Self::Software,
            SecurityLevel::Tee => Self::Tee,
            SecurityLevel::StrongBox => Self::StrongBox,
        }
    }
}

impl From<biopay_core::SecurityLevel> for SecurityLevel {
    fn from(l: biopay_core::SecurityLevel) -> Self {
        match l {
            biopay_core::SecurityLevel::Software => Self::Software,
            biopay_core::SecurityLevel::Tee => Self::Tee,
            biopay_core::SecurityLevel::StrongBox => Self::StrongBox,
        }
    }
}

/// A transaction to approve.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Transaction {
    /// Amount in the currency's minor units (8800 = 88.00 CNY); must be positive.
    pub amount_minor: i64,
    /// ISO 4217 code, e.g. `CNY`.
    pub currency: String,
    /// The payee's stable identifier.
    pub payee_id: String,
    /// The payee's display name.
    pub payee_name: String,
    /// The order identifier.
    pub order_id: String,
    /// An optional memo shown to the user.
    pub memo: Option<String>,
}

impl TryFrom<Transaction> for biopay_core::Transaction {
    type Error = VerificationError;
    fn try_from(t: Transaction) -> Result<Self, Self::Error> {
        let amount_minor = u64::try_from(t.amount_minor)
            .ok()
            .filter(|a| *a > 0)
            .ok_or_else(|| VerificationError::InvalidRequest {
                reason: "amount_minor must be positive".into(),
            })?;
        Ok(Self {
            amount_minor,
            currency: t.currency,
            payee_id: t.payee_id,
            payee_name: t.payee_name,
            order_id: t.order_id,
            memo: t.memo,
        })
    }
}

impl From<biopay_core::Transaction> for Transaction {
    fn from(t: biopay_core::Transaction) -> Self {
        Self {
            amount_minor: i64::try_from(t.amount_minor).unwrap_or(i64::MAX),
            currency: t.currency,
            payee_id: t.payee_id,
            payee_name: t.payee_name,
            order_id: t.order_id,
            memo: t.memo,
        }
    }
}

/// A credential on this device (no key material).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct LocalCredential {
    /// The credential id.
    pub credential_id: Vec<u8>,
    /// The account handle it was registered for.
    pub account_handle: Vec<u8>,
    /// Bound modalities.
    pub modalities: Vec<Modality>,
    /// Where the key lives.
    pub security_level: SecurityLevel,
    /// False once the enrolled biometrics changed since registration.
    pub valid: bool,
}

impl From<biopay_core::LocalCredential> for LocalCredential {
    fn from(c: biopay_core::LocalCredential) -> Self {
        Self {
            credential_id: c.credential_id.as_bytes().to_vec(),
            account_handle: c.account_handle,
            modalities: c.modalities.into_iter().map(Into::into).collect(),
            security_level: c.security_level.into(),
            valid: c.valid,
        }
    }
}

/// A device model the verifier trusts.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct DeviceModelConfig {
    /// The model id (the attestation leaf's subject OU).
    pub model_id: String,
    /// DER SubjectPublicKeyInfo of each trusted vendor root key.
    pub trust_anchor_spkis: Vec<Vec<u8>>,
    /// Modalities the model can attest.
    pub modalities: Vec<Modality>,
    /// The strongest key storage the model has.
    pub security_level: SecurityLevel,
}

/// What a verifier trusts for Android Keystore (platform-keystore)
/// credentials, docs/PROTOCOL.md §12.4.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct AndroidTrustConfig {
    /// DER SubjectPublicKeyInfo of each trusted attestation root key (e.g.
    /// `SimulatedVendor.androidTrustRoot()`).
    pub root_spkis: Vec<Vec<u8>>,
    /// Also trust Google's two hardware attestation roots (production).
    pub include_google_roots: bool,
    /// The app's package name.
    pub package_name: String,
    /// SHA-256 digests (32 bytes each) of the app's signing certificates.
    pub signing_cert_digests: Vec<Vec<u8>>,
    /// Oldest accepted osPatchLevel (YYYYMM); 0 accepts any (still required).
    pub min_os_patch_level: i64,
    /// Require keys (and attestation) in StrongBox.
    pub require_strong_box: bool,
}

/// A credential the verifier registered.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct RegisteredCredential {
    /// The credential id.
    pub credential_id: Vec<u8>,
    /// The account.
    pub account_handle: Vec<u8>,
    /// Bound modalities.
    pub modalities: Vec<Modality>,
    /// Where the key lives.
    pub security_level: SecurityLevel,
    /// The attested device model.
    pub device_model: String,
    /// `tee_attested`, `platform_keystore` or `apple_app_attest`.
    pub kind: String,
}

impl From<biopay_core::CredentialRecord> for RegisteredCredential {
    fn from(r: biopay_core::CredentialRecord) -> Self {
        Self {
            credential_id: r.credential_id.as_bytes().to_vec(),
            account_handle: r.account_handle,
            modalities: r.modalities.into_iter().map(Into::into).collect(),
            security_level: r.security_level.into(),
            device_model: r.device_model,
            kind: r.kind.as_str().to_owned(),
        }
    }
}

/// A payment the verifier approved.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ApprovedPayment {
    /// The credential that signed.
    pub credential_id: Vec<u8>,
    /// The approved transaction, as issued.
    pub transaction: Transaction,
    /// The modality that matched.
    pub modality: Modality,
    /// Whether a liveness check passed.
    pub liveness_passed: bool,
    /// The credential's new signature counter.
    pub counter: i64,
    /// The matched template's id (16 bytes, salted per rp by the device).
    pub template_id: Vec<u8>,
}

impl From<biopay_core::ApprovedPayment> for ApprovedPayment {
    fn from(p: biopay_core::ApprovedPayment) -> Self {
        Self {
            credential_id: p.credential_id.as_bytes().to_vec(),
            transaction: p.transaction.into(),
            modality: p.modality.into(),
            liveness_passed: p.liveness == biopay_core::Liveness::Passed,
            counter: i64::try_from(p.counter).unwrap_or(i64::MAX),
            template_id: p.template_id.to_vec(),
        }
    }
}

pub(crate) fn credential_id(bytes: Vec<u8>) -> Result<biopay_core::CredentialId, BiopayError> {
    biopay_core::CredentialId::new(bytes).map_err(|e| BiopayError::InvalidChallenge {
        reason: e.to_string(),
    })
}
