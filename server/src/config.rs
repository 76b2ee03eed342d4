//! Server configuration: a TOML file, overridden by environment variables
//! and command-line flags (see `biopay-server serve --help`).

use crate::demo_trust;
use base64::Engine as _;
use biopay_core::{
    android::StatusList,
    apple::{AppAttestEnvironment, AppleTrust},
    AndroidPolicy, AndroidTrust, DeviceModel, Modality, ModelStatus, Policy, SecurityLevel,
    TrustAnchor, TrustConfig,
};
use serde::Deserialize;
use std::{net::SocketAddr, path::PathBuf};

/// The largest `max_batch_items` accepted: each item of a batch runs on its
/// own worker thread while the batch is answered.
pub const MAX_BATCH_ITEMS: usize = 1024;

/// Everything the server needs to start. Its `Debug` hides the password of
/// `database_url`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Listen address (loopback by default).
    pub listen: SocketAddr,
    /// Data directory: the SQLite database and, unless `audit_key` is set,
    /// the audit signing key.
    pub data_dir: PathBuf,
    /// The audit checkpoint signing key (Ed25519 PKCS#8, mode 0600), created
    /// by the server at startup when missing; `data_dir/audit-signing-key.pk8`
    /// when absent. Keep it where whoever can write the database cannot.
    pub audit_key: Option<PathBuf>,
    /// Issue self-authenticating payment challenges (PROTOCOL.md §6.1.3):
    /// nothing is stored at issue, and `/v1/payments/verify` must be given
    /// the transaction. Off: payment challenges are stored.
    pub stateless_payment_challenges: bool,
    /// The payment challenge MAC keys (mode 0600, see
    /// [`crate::challenge_keys`]), created at startup when missing;
    /// `data_dir/payment-challenge-keys` when absent. Every process on one
    /// database must use the same file.
    pub challenge_key: Option<PathBuf>,
    /// `postgres://...`: one PostgreSQL shard (the same as one `[[shards]]`
    /// entry). When neither this nor `shards` is set, SQLite in
    /// `data_dir/biopay.db`.
    pub database_url: Option<String>,
    /// The PostgreSQL shards, in shard order (`[[shards]] url = "..."`, or
    /// repeated `--shard-url`): a power of two of them. Shard `k` holds the
    /// accounts whose slot `s` has `s & (N - 1) == k` (docs/ARCHITECTURE.md,
    /// "Shards"). Never reorder: a credential's shard is fixed by its id.
    pub shards: Vec<ShardConfig>,
    /// PostgreSQL connections per process and shard: one for the shard's
    /// group committer (all its writes), the rest for reads (opened on demand).
    pub pg_max_connections: u32,
    /// The relying party id.
    pub rp_id: String,
    /// Device models and their root keys (TOML, see [`TrustFile`]).
    pub trust_file: Option<PathBuf>,
    /// DANGER: trust the fixed simulated vendor PKI of the demo (tests, demos only).
    pub danger_demo_trust: bool,
    /// DANGER: accept the well-known demo API keys (tests, demos only).
    pub danger_demo_keys: bool,
    /// Relying-party and admin API keys, stored as SHA-256 hashes.
    pub api_keys: Vec<ApiKeyConfig>,
    /// Largest accepted request body, bytes.
    pub max_body_bytes: usize,
    /// Per-request time limit, milliseconds: a request not answered by then
    /// gets 408 with error code `TIMEOUT`.
    pub request_timeout_ms: u64,
    /// Most items in one request to a batch endpoint
    /// (`/v1/payments/challenge/batch`, `/v1/payments/verify/batch`); the
    /// request must also fit `max_body_bytes`.
    pub max_batch_items: usize,
    /// Failed verifications allowed per credential and per account in the
    /// window (0 disables). Counted in the store: shared by every process on it.
    pub lock_after_failures: u32,
    /// The failure-counting window, seconds.
    pub failure_window_secs: u64,
    /// Outstanding (unconsumed, unexpired) challenges allowed per account;
    /// further challenge requests get 429 `CHALLENGE_LIMIT` until one is used
    /// or expires (0 disables). PROTOCOL.md §6.1.3.
    pub max_challenges_per_account: u32,
    /// Challenge lifetime, seconds.
    pub challenge_ttl_secs: u64,
    /// How often expired challenges are collected, seconds.
    pub purge_interval_secs: u64,
    /// How often the audit head is checkpointed (signed), seconds.
    pub checkpoint_interval_secs: u64,
    /// Run the single-payment endpoints' work (`/v1/payments/challenge`,
    /// `/v1/payments/verify`: verification and the wait for its commit) on
    /// the async worker that received the request instead of handing it to
    /// a blocking thread (`spawn_blocking`). A measurement switch: it saves
    /// the thread hand-offs, but a worker waiting for a commit takes no other
    /// request meanwhile. Batches always use blocking threads. On PostgreSQL,
    /// whose synchronous client blocks on a runtime of its own, the worker
    /// steps out with `block_in_place`. An inline verification answers when
    /// it is done: `request_timeout_ms` cannot cut it short. Default false.
    pub inline_verify: bool,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("audit_key", &self.audit_key)
            .field(
                "stateless_payment_challenges",
                &self.stateless_payment_challenges,
            )
            .field("challenge_key", &self.challenge_key)
            .field(
                "database_url",
                &self.database_url.as_deref().map(redact_password),
            )
            .field("shards", &self.shards)
            .field("pg_max_connections", &self.pg_max_connections)
            .field("rp_id", &self.rp_id)
            .field("trust_file", &self.trust_file)
            .field("danger_demo_trust", &self.danger_demo_trust)
            .field("danger_demo_keys", &self.danger_demo_keys)
            .field("api_keys", &self.api_keys)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("max_batch_items", &self.max_batch_items)
            .field("lock_after_failures", &self.lock_after_failures)
            .field("failure_window_secs", &self.failure_window_secs)
            .field(
                "max_challenges_per_account",
                &self.max_challenges_per_account,
            )
            .field("challenge_ttl_secs", &self.challenge_ttl_secs)
            .field("purge_interval_secs", &self.purge_interval_secs)
            .field("checkpoint_interval_secs", &self.checkpoint_interval_secs)
            .field("inline_verify", &self.inline_verify)
            .finish()
    }
}

/// The most shards a configuration may name: one per account slot.
pub const MAX_SHARDS: usize = 1 << 16;

/// One `[[shards]]` entry. Its `Debug` hides the password.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ShardConfig {
    /// `postgres://user@host:port/db`.
    pub url: String,
}

impl std::fmt::Debug for ShardConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardConfig")
            .field("url", &redact_password(&self.url))
            .finish()
    }
}

/// Where the server keeps its state: the embedded SQLite database, or N
/// PostgreSQL shards (N = 1 for `database_url`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLayout {
    /// SQLite at this path.
    Sqlite(PathBuf),
    /// PostgreSQL shards, in shard order.
    Postgres(Vec<String>),
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (userinfo, host) = match rest.rsplit_once('@') {
        Some(parts) => parts,
        None => return url.to_owned(),
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("biopay-data"),
            audit_key: None,
            stateless_payment_challenges: false,
            challenge_key: None,
            database_url: None,
            shards: Vec::new(),
            pg_max_connections: 16,
            rp_id: "pay.example.com".into(),
            trust_file: None,
            danger_demo_trust: false,
            danger_demo_keys: false,
            api_keys: Vec::new(),
            max_body_bytes: 64 * 1024,
            request_timeout_ms: 10_000,
            max_batch_items: 64,
            lock_after_failures: 5,
            failure_window_secs: 300,
            max_challenges_per_account: 32,
            challenge_ttl_secs: 120,
            purge_interval_secs: 30,
            checkpoint_interval_secs: 10,
            inline_verify: false,
        }
    }
}

/// One API key.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// A name for logs (never the key).
    pub name: String,
    /// `rp` (the /v1 API) or `admin` (the /v1/admin API).
    pub scope: Scope,
    /// Hex SHA-256 of the key (`biopay-server hash-key` prints it).
    pub sha256: String,
}

impl std::fmt::Debug for ApiKeyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyConfig")
            .field("name", &self.name)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// What a key may call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The relying party's /v1 API.
    Rp,
    /// Operator actions under /v1/admin.
    Admin,
}

/// The trust file: device models and the root keys their attestation chains end at.
///
/// ```toml
/// [[models]]
/// id = "acme-phone-x1"
/// modalities = ["fingerprint", "face"]
/// security_level = "tee"          # software | tee | strong_box
/// status = "active"               # active | revoked | compromised
/// [[models.roots]]
/// name = "Acme Devices Root CA"
/// spki_der_base64url = "MFkwEwYH..."
///
/// # Optional: accept Android Keystore credentials (docs/PROTOCOL.md §12).
/// [android]
/// package_name = "com.example.pay"
/// signing_cert_digests = ["9a3c...64 hex digits..."]   # SHA-256 of the app signing certificates
/// min_os_patch_level = 202401                          # YYYYMM
/// require_strongbox = false
/// status_list_file = "/var/lib/biopay/android-status.json"  # Google's list, refreshed by cron
/// # roots = [...]   # replaces Google's root keys (private test PKIs only)
///
/// # Optional: accept Apple App Attest credentials (docs/PROTOCOL.md §13.10).
/// [apple]
/// app_ids = ["TEAMID1234.com.example.pay"]   # TEAMID.bundle.id
/// environment = "production"                 # or "development"
/// # roots = ["/etc/biopay/apple-root.pem"]  # PEM files replacing Apple's root (tests)
/// [apple.max_amount]                         # per currency, minor units (P17)
/// USD = 10000
/// [apple.assertion_above]                    # an App Attest assertion above this (P17)
/// USD = 2000
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustFile {
    /// The models.
    #[serde(default)]
    pub models: Vec<TrustModel>,
    /// Android Keystore trust; absent: platform-keystore registrations are
    /// refused (A4).
    #[serde(default)]
    pub android: Option<TrustAndroid>,
    /// Apple App Attest trust; absent: Apple registrations are refused (K4).
    #[serde(default)]
    pub apple: Option<TrustApple>,
}

/// The `[apple]` section of the trust file (docs/PROTOCOL.md §13.10).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustApple {
    /// Allowed app ids, `TEAMID.bundle.id`.
    pub app_ids: Vec<String>,
    /// `development` or `production`.
    pub environment: String,
    /// PEM files (CERTIFICATE or PUBLIC KEY) replacing Apple's App
    /// Attestation Root CA (private or test PKIs only).
    #[serde(default)]
    pub roots: Option<Vec<PathBuf>>,
    /// Per currency, the largest amount (minor units) an Apple credential
    /// may approve; replaces the default `policy.apple_max_amount`.
    #[serde(default)]
    pub max_amount: Option<std::collections::BTreeMap<String, u64>>,
    /// Per currency, the amount above which a payment needs an App Attest
    /// assertion; replaces the default `policy.apple_assertion_above`.
    #[serde(default)]
    pub assertion_above: Option<std::collections::BTreeMap<String, u64>>,
}

/// The `[android]` section of the trust file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustAndroid {
    /// The app's package name.
    pub package_name: String,
    /// SHA-256 digests of the app's signing certificates, hex.
    pub signing_cert_digests: Vec<String>,
    /// Oldest accepted OS patch level, YYYYMM (0: any, but it must be attested).
    #[serde(default)]
    pub min_os_patch_level: u64,
    /// Require StrongBox keys.
    #[serde(default)]
    pub require_strongbox: bool,
    /// Google's attestation status list (JSON), re-read when it changes.
    #[serde(default)]
    pub status_list_file: Option<PathBuf>,
    /// Root keys replacing Google's (a private or test PKI).
    #[serde(default)]
    pub roots: Option<Vec<TrustRoot>>,
}

/// One model in the trust file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustModel {
    /// Model id (attestation leaf subject OU).
    pub id: String,
    /// `fingerprint`, `face`.
    pub modalities: Vec<String>,
    /// `software`, `tee`, `strong_box`.
    pub security_level: String,
    /// `active`, `revoked`, `compromised` (default active).
    #[serde(default)]
    pub status: Option<String>,
    /// Root public keys.
    pub roots: Vec<TrustRoot>,
}

/// A root public key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustRoot {
    /// Display name.
    pub name: String,
    /// DER SubjectPublicKeyInfo, base64url without padding.
    pub spki_der_base64url: String,
}

/// Parses a modality name.
pub fn parse_modality(s: &str) -> Option<Modality> {
    match s {
        "fingerprint" => Some(Modality::Fingerprint),
        "face" => Some(Modality::Face),
        _ => None,
    }
}

/// The name of a modality.
pub fn modality_name(m: Modality) -> &'static str {
    match m {
        Modality::Fingerprint => "fingerprint",
        Modality::Face => "face",
    }
}

/// Parses a security level name.
pub fn parse_security_level(s: &str) -> Option<SecurityLevel> {
    match s {
        "software" => Some(SecurityLevel::Software),
        "tee" => Some(SecurityLevel::Tee),
        "strong_box" => Some(SecurityLevel::StrongBox),
        _ => None,
    }
}

/// Parses a model status name.
pub fn parse_model_status(s: &str) -> Option<ModelStatus> {
    match s {
        "active" => Some(ModelStatus::Active),
        "revoked" => Some(ModelStatus::Revoked),
        "compromised" => Some(ModelStatus::Compromised),
        _ => None,
    }
}

/// The name of a model status.
pub fn model_status_name(s: ModelStatus) -> &'static str {
    match s {
        ModelStatus::Active => "active",
        ModelStatus::Revoked => "revoked",
        ModelStatus::Compromised => "compromised",
    }
}

impl Config {
    /// Reads a TOML configuration file.
    pub fn from_file(path: &std::path::Path) -> Result<Self, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("read {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Where the audit checkpoint signing key is: `audit_key`, or the key
    /// file in the data directory.
    pub fn audit_key_path(&self) -> PathBuf {
        self.audit_key
            .clone()
            .unwrap_or_else(|| self.data_dir.join(crate::audit::KEY_FILE))
    }

    /// The store layout: `shards`, else `database_url` (one shard), else
    /// SQLite in the data directory. Refuses both `database_url` and
    /// `shards`, and a shard count that is not a power of two (at most
    /// [`MAX_SHARDS`]).
    pub fn store_layout(&self) -> Result<StoreLayout, String> {
        match (&self.database_url, self.shards.as_slice()) {
            (None, []) => Ok(StoreLayout::Sqlite(self.data_dir.join("biopay.db"))),
            (Some(url), []) => Ok(StoreLayout::Postgres(vec![url.clone()])),
            (None, shards) => {
                let n = shards.len();
                if !n.is_power_of_two() || n > MAX_SHARDS {
                    return Err(format!(
                        "{n} shards: the shard count must be a power of two (1, 2, 4, ..., {MAX_SHARDS}), \
                         since a credential's shard is its slot modulo the count"
                    ));
                }
                let urls: Vec<String> = shards.iter().map(|s| s.url.clone()).collect();
                if let Some((i, _)) = urls
                    .iter()
                    .enumerate()
                    .find(|(i, u)| urls.iter().take(*i).any(|v| v == *u))
                {
                    return Err(format!(
                        "shard {i} repeats the URL of an earlier shard: every shard is its own database"
                    ));
                }
                Ok(StoreLayout::Postgres(urls))
            }
            (Some(_), _) => Err(
                "database_url and shards are both set: give one PostgreSQL database as database_url \
                 (or --database-url), or every shard as [[shards]] (or repeated --shard-url)"
                    .into(),
            ),
        }
    }

    /// Where the payment challenge keys are: `challenge_key`, or the key
    /// file in the data directory.
    pub fn challenge_key_path(&self) -> PathBuf {
        self.challenge_key
            .clone()
            .unwrap_or_else(|| self.data_dir.join(crate::challenge_keys::KEY_FILE))
    }

    /// Refuses settings the server cannot run with (checked at startup).
    pub fn check(&self) -> Result<(), String> {
        self.store_layout()?;
        if !(1..=MAX_BATCH_ITEMS).contains(&self.max_batch_items) {
            return Err(format!(
                "max_batch_items must be 1 to {MAX_BATCH_ITEMS}, not {}",
                self.max_batch_items
            ));
        }
        Ok(())
    }

    /// The verifier policy (with the `[apple]` caps of the trust file, if any).
    pub fn policy(&self) -> Result<Policy, String> {
        let mut policy = Policy {
            challenge_ttl_secs: self.challenge_ttl_secs,
            max_challenges_per_account: self.max_challenges_per_account,
            ..Policy::default()
        };
        if let Some(a) = self.trust_file()?.and_then(|f| f.apple) {
            if let Some(m) = a.max_amount {
                policy.apple_max_amount = m;
            }
            if let Some(m) = a.assertion_above {
                policy.apple_assertion_above = m;
            }
        }
        Ok(policy)
    }

    /// The Apple App Attest trust of the trust file's `[apple]` section;
    /// `None` without one.
    pub fn apple_trust(&self) -> Result<Option<AppleTrust>, String> {
        let Some(a) = self.trust_file()?.and_then(|f| f.apple) else {
            return Ok(None);
        };
        if a.app_ids.is_empty() || a.app_ids.iter().any(|id| id.trim().is_empty()) {
            return Err("apple: app_ids must list at least one TEAMID.bundle.id".into());
        }
        let environment = a
            .environment
            .parse::<AppAttestEnvironment>()
            .map_err(|e| format!("apple: {e}"))?;
        let mut trust = AppleTrust::new(a.app_ids, environment);
        if let Some(paths) = &a.roots {
            let anchors = paths
                .iter()
                .map(|p| {
                    let pem = std::fs::read(p)
                        .map_err(|e| format!("apple: read {}: {e}", p.display()))?;
                    biopay_core::apple::anchor_from_pem(&p.display().to_string(), &pem)
                        .map_err(|e| format!("apple: {}: {e}", p.display()))
                })
                .collect::<Result<Vec<_>, String>>()?;
            if anchors.is_empty() {
                return Err("apple: roots is empty".into());
            }
            trust = trust.with_anchors(anchors);
        }
        Ok(Some(trust))
    }

    fn trust_file(&self) -> Result<Option<TrustFile>, String> {
        let Some(path) = &self.trust_file else {
            return Ok(None);
        };
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("read {}: {e}", path.display()))?;
        toml::from_str(&text)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The Android Keystore trust of the trust file's `[android]` section,
    /// with its status list loaded; `None` without one.
    pub fn android_trust(&self) -> Result<Option<AndroidTrust>, String> {
        let Some(a) = self.trust_file()?.and_then(|f| f.android) else {
            return Ok(None);
        };
        let digests = a
            .signing_cert_digests
            .iter()
            .map(|h| {
                crate::audit::parse_hash(&h.trim().to_ascii_lowercase()).ok_or_else(|| {
                    format!("android: signing certificate digest {h:?} is not 64 hex digits")
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if a.package_name.is_empty() || digests.is_empty() {
            return Err("android: package_name and signing_cert_digests are required".into());
        }
        let mut trust = AndroidTrust::new(AndroidPolicy {
            package_name: Some(a.package_name),
            signing_cert_digests: digests,
            min_os_patch_level: a.min_os_patch_level,
            require_strongbox: a.require_strongbox,
        });
        if let Some(roots) = &a.roots {
            trust = trust.with_anchors(anchors_of("android", roots)?);
        }
        if let Some(path) = &a.status_list_file {
            trust = trust.with_status_list(read_status_list(path)?);
        }
        Ok(Some(trust))
    }

    /// The `[android]` status list file, if configured.
    pub fn android_status_list_file(&self) -> Option<PathBuf> {
        self.trust_file()
            .ok()
            .flatten()
            .and_then(|f| f.android)
            .and_then(|a| a.status_list_file)
    }

    /// The trust configuration: the trust file's models, plus the demo
    /// vendor's model under `danger_demo_trust`.
    pub fn trust(&self) -> Result<TrustConfig, String> {
        let mut trust = TrustConfig::new();
        if let Some(file) = self.trust_file()? {
            for m in file.models {
                trust = trust.with_model(model_of(m)?);
            }
        }
        if self.danger_demo_trust {
            trust = trust.with_model(demo_trust::danger_demo_model()?);
        }
        Ok(trust)
    }
}

fn model_of(m: TrustModel) -> Result<DeviceModel, String> {
    let mut modalities = m
        .modalities
        .iter()
        .map(|s| parse_modality(s).ok_or_else(|| format!("model {}: unknown modality {s:?}", m.id)))
        .collect::<Result<Vec<_>, _>>()?;
    modalities.sort();
    modalities.dedup();
    let security_level = parse_security_level(&m.security_level)
        .ok_or_else(|| format!("model {}: unknown security level", m.id))?;
    let status = match m.status.as_deref() {
        None => ModelStatus::Active,
        Some(s) => {
            parse_model_status(s).ok_or_else(|| format!("model {}: unknown status", m.id))?
        }
    };
    let trust_anchors = anchors_of(&format!("model {}", m.id), &m.roots)?;
    Ok(DeviceModel {
        id: m.id,
        trust_anchors,
        modalities,
        security_level,
        status,
    })
}

/// Root keys from the trust file; at least one.
fn anchors_of(what: &str, roots: &[TrustRoot]) -> Result<Vec<TrustAnchor>, String> {
    let anchors = roots
        .iter()
        .map(|r| {
            let spki_der = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(r.spki_der_base64url.trim())
                .map_err(|e| format!("{what}: root {}: {e}", r.name))?;
            Ok(TrustAnchor {
                name: r.name.clone(),
                spki_der,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    if anchors.is_empty() {
        return Err(format!("{what}: no roots"));
    }
    Ok(anchors)
}

/// Reads Google's attestation status list (JSON).
pub fn read_status_list(path: &std::path::Path) -> Result<StatusList, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    StatusList::from_json(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod redaction_tests {
    use super::*;

    #[test]
    fn debug_hides_the_database_password() {
        let c = Config {
            database_url: Some("postgres://app:hunter2@db.internal:5432/pay".into()),
            ..Config::default()
        };
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("postgres://app:***@db.internal:5432/pay"),
            "{shown}"
        );
        assert_eq!(
            redact_password("postgres://localhost/pay"),
            "postgres://localhost/pay"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_with_keys_and_trust_file_loads() {
        let dir = tempfile::tempdir().unwrap();
        let spki = demo_trust::danger_demo_root().unwrap().spki_der;
        let root = crate::b64::b64(&spki);
        let trust = dir.path().join("trust.toml");
        std::fs::write(
            &trust,
            format!(
                "[[models]]\nid = \"acme-x1\"\nmodalities = [\"face\", \"fingerprint\"]\n\
                 security_level = \"strong_box\"\nstatus = \"revoked\"\n\
                 [[models.roots]]\nname = \"Acme Root\"\nspki_der_base64url = \"{root}\"\n"
            ),
        )
        .unwrap();
        let cfg = dir.path().join("server.toml");
        std::fs::write(
            &cfg,
            format!(
                "listen = \"127.0.0.1:9000\"\nrp_id = \"shop.example\"\ntrust_file = {:?}\n\
                 lock_after_failures = 2\n\
                 [[api_keys]]\nname = \"shop\"\nscope = \"rp\"\nsha256 = \"{}\"\n",
                trust.display().to_string(),
                "ab".repeat(32)
            ),
        )
        .unwrap();
        let c = Config::from_file(&cfg).unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.lock_after_failures, 2);
        assert_eq!(c.api_keys[0].scope, Scope::Rp);
        assert!(
            !format!("{:?}", c.api_keys[0]).contains("abab"),
            "no key hash in Debug"
        );
        let t = c.trust().unwrap();
        let m = t.model("acme-x1").unwrap();
        assert_eq!(m.status, ModelStatus::Revoked);
        assert_eq!(m.security_level, SecurityLevel::StrongBox);
        assert_eq!(m.modalities, vec![Modality::Fingerprint, Modality::Face]);
        assert_eq!(m.trust_anchors[0].spki_der, spki);
        assert!(
            t.model(demo_trust::DEMO_MODEL).is_none(),
            "demo trust is opt-in"
        );

        std::fs::write(&trust, "[[models]]\nid = \"x\"\nmodalities = [\"iris\"]\nsecurity_level = \"tee\"\nroots = []\n").unwrap();
        assert!(c.trust().unwrap_err().contains("unknown modality"));
        std::fs::write(&cfg, "listen = \"127.0.0.1:9000\"\nunknown_field = 1\n").unwrap();
        assert!(Config::from_file(&cfg).is_err());
    }

    #[test]
    fn shard_layout_from_the_file_and_its_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("server.toml");
        std::fs::write(
            &cfg,
            "[[shards]]\nurl = \"postgres://app:pw0@db0/pay\"\n\
             [[shards]]\nurl = \"postgres://app:pw1@db1/pay\"\n",
        )
        .unwrap();
        let c = Config::from_file(&cfg).unwrap();
        assert_eq!(
            c.store_layout().unwrap(),
            StoreLayout::Postgres(vec![
                "postgres://app:pw0@db0/pay".into(),
                "postgres://app:pw1@db1/pay".into()
            ])
        );
        assert!(c.check().is_ok());
        let shown = format!("{c:?}");
        assert!(!shown.contains("pw0") && !shown.contains("pw1"), "{shown}");

        let shard = |i: usize| ShardConfig {
            url: format!("postgres://db{i}/pay"),
        };
        for n in [3, 5, 6, 7] {
            let c = Config {
                shards: (0..n).map(shard).collect(),
                ..Config::default()
            };
            let e = c.check().unwrap_err();
            assert!(e.contains("power of two"), "{e}");
        }
        let both = Config {
            database_url: Some("postgres://db/pay".into()),
            shards: vec![shard(0)],
            ..Config::default()
        };
        assert!(both.check().unwrap_err().contains("both set"));
        let repeated = Config {
            shards: vec![shard(0), shard(0)],
            ..Config::default()
        };
        assert!(repeated.check().unwrap_err().contains("repeats"));
        let one = Config {
            database_url: Some("postgres://db/pay".into()),
            ..Config::default()
        };
        assert_eq!(
            one.store_layout().unwrap(),
            StoreLayout::Postgres(vec!["postgres://db/pay".into()])
        );
        assert!(matches!(
            Config::default().store_layout().unwrap(),
            StoreLayout::Sqlite(_)
        ));
    }

    #[test]
    fn max_batch_items_out_of_range_is_refused() {
        let mut c = Config::default();
        assert!(c.check().is_ok());
        for bad in [0, MAX_BATCH_ITEMS + 1] {
            c.max_batch_items = bad;
            let e = c.check().unwrap_err();
            assert!(e.contains("max_batch_items"), "{e}");
        }
        c.max_batch_items = MAX_BATCH_ITEMS;
        assert!(c.check().is_ok());
    }
}
