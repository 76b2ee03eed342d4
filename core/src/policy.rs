//! What the relying party trusts and accepts (docs/PROTOCOL.md §6.1): the
//! device models and their status ([`TrustConfig`], [`ModelStatus`]), the
//! acceptance policy ([`Policy`], [`HighValueRequirement`]) and the App Attest
//! environment the verifier expects ([`AppAttestEnvironment`], §13.2). Plain
//! data: the store records a model's status and a credential's environment,
//! rejections name them, the verifier reads them.

use crate::{
    messages::{Modality, SecurityLevel},
    x509::TrustAnchor,
};
use serde::Serialize;
use std::collections::BTreeMap;

/// Status of a device model in the trust configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelStatus {
    /// Registrations and payments accepted.
    Active,
    /// Withdrawn by the vendor or the relying party: nothing accepted.
    Revoked,
    /// Known to be broken (e.g. an extracted attestation key): nothing accepted.
    Compromised,
}

/// What the relying party trusts about one device model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceModel {
    /// The model id (the attestation leaf's subject OU).
    pub id: String,
    /// Root keys the model's attestation chains must end at.
    pub trust_anchors: Vec<TrustAnchor>,
    /// Modalities the model's TEE can attest.
    pub modalities: Vec<Modality>,
    /// The strongest key storage the model has.
    pub security_level: SecurityLevel,
    /// Status.
    pub status: ModelStatus,
}

/// Device-model metadata, keyed by model id.
#[derive(Debug, Clone, Default)]
pub struct TrustConfig {
    models: BTreeMap<String, DeviceModel>,
}

impl TrustConfig {
    /// An empty configuration (trusts nothing).
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds or replaces a model.
    pub fn with_model(mut self, model: DeviceModel) -> Self {
        self.models.insert(model.id.clone(), model);
        self
    }
    /// Looks a model up.
    pub fn model(&self, id: &str) -> Option<&DeviceModel> {
        self.models.get(id)
    }
    /// Looks a model up for a change (the verifier's `set_model_status`).
    pub(crate) fn model_mut(&mut self, id: &str) -> Option<&mut DeviceModel> {
        self.models.get_mut(id)
    }
    /// All models.
    pub fn models(&self) -> impl Iterator<Item = &DeviceModel> {
        self.models.values()
    }
}

/// What the policy requires of a high-value payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HighValueRequirement {
    /// A face match with a passed liveness check.
    FaceWithLiveness,
    /// A credential key in StrongBox.
    StrongBox,
    /// Either of the above.
    FaceWithLivenessOrStrongBox,
}

/// The relying party's acceptance policy. docs/PROTOCOL.md §6.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Lifetime of issued challenges, seconds.
    pub challenge_ttl_secs: u64,
    /// Weakest key storage accepted at registration.
    pub min_security_level: SecurityLevel,
    /// Accept only devices whose verified-boot state is `Verified`.
    pub require_verified_boot: bool,
    /// Largest accepted difference between TEE time and verifier time, seconds.
    pub max_clock_skew_secs: u64,
    /// Largest accepted number of failed match attempts before a successful one.
    pub max_failed_attempts: u32,
    /// Per currency, the amount (minor units) from which [`Self::high_value_requirement`] applies.
    pub high_value_thresholds: BTreeMap<String, u64>,
    /// What a high-value payment requires.
    pub high_value_requirement: HighValueRequirement,
    /// Per currency, the largest amount (minor units) a
    /// `CredentialKind::PlatformKeystore` credential may approve (P17); a
    /// currency without an entry cannot be approved by such credentials.
    /// docs/PROTOCOL.md §12.6.
    pub platform_keystore_max_amount: BTreeMap<String, u64>,
    /// Per currency, the largest amount (minor units) a
    /// `CredentialKind::AppleAppAttest` credential may approve (P17); a
    /// currency without an entry cannot be approved by such credentials.
    /// docs/PROTOCOL.md §13.9.
    pub apple_max_amount: BTreeMap<String, u64>,
    /// Per currency, the amount (minor units) above which a payment of a
    /// `CredentialKind::AppleAppAttest` credential must also carry an App
    /// Attest assertion over the statement (P17, J1–J4); in a currency
    /// without an entry every payment must. docs/PROTOCOL.md §13.9.
    pub apple_assertion_above: BTreeMap<String, u64>,
    /// At most this many outstanding (unconsumed, unexpired) challenges,
    /// registration and payment, per account; `0` means no limit.
    /// docs/PROTOCOL.md §6.1.3: the account is refused further challenges
    /// until one is used or expires.
    pub max_challenges_per_account: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            challenge_ttl_secs: 120,
            max_challenges_per_account: 32,
            min_security_level: SecurityLevel::Tee,
            require_verified_boot: true,
            max_clock_skew_secs: 300,
            max_failed_attempts: 4,
            high_value_thresholds: BTreeMap::from([
                ("CNY".to_owned(), 200_000),
                ("USD".to_owned(), 30_000),
                ("EUR".to_owned(), 30_000),
            ]),
            high_value_requirement: HighValueRequirement::FaceWithLivenessOrStrongBox,
            platform_keystore_max_amount: BTreeMap::from([
                ("CNY".to_owned(), 50_000),
                ("USD".to_owned(), 10_000),
                ("EUR".to_owned(), 10_000),
            ]),
            apple_max_amount: BTreeMap::from([
                ("CNY".to_owned(), 50_000),
                ("USD".to_owned(), 10_000),
                ("EUR".to_owned(), 10_000),
            ]),
            apple_assertion_above: BTreeMap::from([
                ("CNY".to_owned(), 10_000),
                ("USD".to_owned(), 2_000),
                ("EUR".to_owned(), 2_000),
            ]),
        }
    }
}

/// The App Attest environment, named by the authenticator data's aaguid (I8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AppAttestEnvironment {
    /// Development builds: aaguid `appattestdevelop`.
    Development,
    /// App Store / TestFlight builds: aaguid `appattest` followed by seven 0x00 bytes.
    Production,
}

impl AppAttestEnvironment {
    /// The 16-byte aaguid this environment's attestations carry.
    pub fn aaguid(self) -> [u8; 16] {
        match self {
            Self::Development => *b"appattestdevelop",
            Self::Production => *b"appattest\0\0\0\0\0\0\0",
        }
    }

    /// The environment an aaguid names; `None` for any other value.
    pub fn from_aaguid(aaguid: &[u8]) -> Option<Self> {
        [Self::Development, Self::Production]
            .into_iter()
            .find(|e| e.aaguid() == aaguid)
    }

    /// `"development"` or `"production"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Production => "production",
        }
    }
}

impl core::str::FromStr for AppAttestEnvironment {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "development" => Ok(Self::Development),
            "production" => Ok(Self::Production),
            other => Err(format!(
                "unknown App Attest environment {other:?} (development or production)"
            )),
        }
    }
}

impl core::fmt::Display for AppAttestEnvironment {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}
