//! [`crate::BiopayClient`] on a [`PlatformKeystore`]: platform-keystore
//! credentials (docs/PROTOCOL.md §12) built with
//! [`biopay_core::PlatformKeystoreClient`], several per relying party, their
//! state kept durably in the app's state directory.
//!
//! One JSON file per relying party, `biopay-keystore-<rp id>.json`, holds each
//! credential's id, key alias, account, modalities, enrollment epoch, counter
//! and StrongBox flag (no key material: the key stays in the keystore). It is
//! rewritten atomically (temporary file, fsync, rename, fsync of the
//! directory) *before* a statement is signed, so a counter never goes back,
//! even after a crash. One client per relying party and state directory.

use crate::{
    errors::BiopayError,
    keystore::{to_device_error, KeyState, PlatformKeystore},
    types::{LocalCredential, Modality, SecurityLevel},
};
use biopay_core::{
    crypto::{is_valid_p256_point, p256_point_from_spki, sha256_parts},
    routing::prefixed_credential_id,
    CredentialId, DeviceError, Message, PaymentChallenge, PendingStatement,
    PlatformCredentialState, PlatformKeystoreClient, PlatformKeystoreSigner, Random,
    RegistrationChallenge, SystemClock, SystemRandom,
};
use serde::{Deserialize, Serialize};
use std::{
    fs,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

/// The state file's format version.
const FORMAT: u32 = 1;
/// Domain separator of the enrollment epoch a platform credential reports.
const EPOCH_DOMAIN: &[u8] = b"biopay platform enrollment epoch v1";

/// One credential as persisted (hex for byte strings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredCredential {
    credential_id: String,
    alias: String,
    account_handle: String,
    /// Wire values (docs/PROTOCOL.md §4.1), ascending.
    modalities: Vec<u64>,
    enrollment_epoch: String,
    counter: u64,
    strong_box: bool,
}

/// The state file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    format: u32,
    rp_id: String,
    credentials: Vec<StoredCredential>,
}

/// A credential in memory, checked.
#[derive(Debug, Clone)]
struct Credential {
    alias: String,
    account_handle: Vec<u8>,
    state: PlatformCredentialState,
    strong_box: bool,
}

impl Credential {
    fn stored(&self) -> StoredCredential {
        StoredCredential {
            credential_id: hex::encode(self.state.credential_id.as_bytes()),
            alias: self.alias.clone(),
            account_handle: hex::encode(&self.account_handle),
            modalities: self.state.modalities.iter().map(|m| m.to_u64()).collect(),
            enrollment_epoch: hex::encode(self.state.enrollment_epoch),
            counter: self.state.counter,
            strong_box: self.strong_box,
        }
    }

    fn from_stored(s: StoredCredential) -> Result<Self, String> {
        let bytes =
            |field: &str, v: &str| hex::decode(v).map_err(|_| format!("{field} is not hex"));
        let credential_id = CredentialId::new(bytes("credential_id", &s.credential_id)?)
            .map_err(|e| format!("credential_id: {e}"))?;
        let enrollment_epoch =
            <[u8; 32]>::try_from(bytes("enrollment_epoch", &s.enrollment_epoch)?)
                .map_err(|_| "enrollment_epoch must be 32 bytes".to_owned())?;
        let modalities = s
            .modalities
            .iter()
            .map(|v| biopay_core::Modality::from_u64(*v).ok_or("unknown modality"))
            .collect::<Result<Vec<_>, _>>()?;
        if modalities.is_empty() || !modalities.windows(2).all(|w| w[0] < w[1]) {
            return Err("modalities must be non-empty and ascending".into());
        }
        if s.alias.is_empty() {
            return Err("empty alias".into());
        }
        Ok(Self {
            alias: s.alias,
            account_handle: bytes("account_handle", &s.account_handle)?,
            state: PlatformCredentialState {
                credential_id,
                modalities,
                enrollment_epoch,
                counter: s.counter,
            },
            strong_box: s.strong_box,
        })
    }
}

/// The state file of one relying party.
struct StateStore {
    dir: PathBuf,
    path: PathBuf,
    rp_id: String,
}

fn io_error(op: &str, path: &Path, e: std::io::Error) -> BiopayError {
    BiopayError::Keystore {
        reason: format!("{op} {}: {e}", path.display()),
    }
}

impl StateStore {
    fn new(dir: &Path, rp_id: &str) -> Self {
        Self {
            dir: dir.to_owned(),
            path: dir.join(format!("biopay-keystore-{rp_id}.json")),
            rp_id: rp_id.to_owned(),
        }
    }

    fn load(&self) -> Result<Vec<Credential>, BiopayError> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error("reading", &self.path, e)),
        };
        let corrupt = |why: String| BiopayError::Keystore {
            reason: format!("corrupt keystore state file {}: {why}", self.path.display()),
        };
        let file: StateFile = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if file.format != FORMAT {
            return Err(corrupt(format!("unsupported format {}", file.format)));
        }
        if file.rp_id != self.rp_id {
            return Err(corrupt(format!("holds rp `{}`", file.rp_id)));
        }
        let credentials = file
            .credentials
            .into_iter()
            .map(Credential::from_stored)
            .collect::<Result<Vec<_>, _>>()
            .map_err(corrupt)?;
        for (i, c) in credentials.iter().enumerate() {
            if credentials[..i]
                .iter()
                .any(|o| o.alias == c.alias || o.state.credential_id == c.state.credential_id)
            {
                return Err(corrupt("duplicate credential".into()));
            }
        }
        Ok(credentials)
    }

    /// Writes `credentials` atomically and durably.
    fn save(&self, credentials: &[Credential]) -> Result<(), BiopayError> {
        let file = StateFile {
            format: FORMAT,
            rp_id: self.rp_id.clone(),
            credentials: credentials.iter().map(Credential::stored).collect(),
        };
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| BiopayError::Internal {
            reason: format!("encoding keystore state: {e}"),
        })?;
        let tmp = self.path.with_extension("json.tmp");
        biopay_tee_stub::durable::replace(&self.dir, &tmp, &self.path, &bytes).map_err(|e| {
            BiopayError::Keystore {
                reason: e.to_string(),
            }
        })
    }
}

/// Core's signer for the async path: it only knows the attestation chain;
/// the statements are signed by awaiting [`PlatformKeystore::sign`] on a
/// [`PendingStatement`].
struct ChainOnly(Vec<Vec<u8>>);

impl PlatformKeystoreSigner for ChainOnly {
    fn attestation_chain(&self) -> Result<Vec<Vec<u8>>, DeviceError> {
        Ok(self.0.clone())
    }
    fn sign(&self, _: &[u8]) -> Result<Vec<u8>, DeviceError> {
        Err(DeviceError::Keystore(
            "internal: platform keys sign asynchronously".into(),
        ))
    }
}

/// The keystore backend of a [`crate::BiopayClient`].
///
/// Two locks, so that no thread ever waits on the prompt: `ops` serialises
/// register / authorize / deregister and is held across the prompt, but it
/// is an async lock (a second call suspends, it does not block a thread);
/// `credentials` is held only for short synchronous sections, never across
/// an await or a call into the keystore, so [`Self::credentials`] answers
/// while a prompt is up (on Android, from the main thread that must deliver
/// the prompt's result).
pub(crate) struct KeystoreBackend {
    rp_id: String,
    keystore: Arc<dyn PlatformKeystore>,
    store: StateStore,
    credentials: Mutex<Vec<Credential>>,
    ops: futures_util::lock::Mutex<()>,
}

/// Undoes a used-up counter when the call is cancelled (its future dropped)
/// while the prompt is up: nothing was signed, so the counter can be
/// reused. Disarmed once the keystore answered (a failed signature keeps
/// its counter used up, as core's `authorize_durably` says).
struct CounterRollback<'a> {
    backend: &'a KeystoreBackend,
    before: PlatformCredentialState,
    armed: bool,
}

impl Drop for CounterRollback<'_> {
    fn drop(&mut self) {
        if self.armed {
            // If the state file cannot be rewritten, it and the memory keep
            // the used-up counter: a gap in counters is harmless.
            let _ = self.backend.replace_state(&self.before);
        }
    }
}

/// Deletes a generated key unless its registration completed (an error,
/// or the call cancelled during the prompt).
struct DeleteKeyUnlessKept<'a> {
    keystore: &'a dyn PlatformKeystore,
    alias: String,
    keep: bool,
}

impl Drop for DeleteKeyUnlessKept<'_> {
    fn drop(&mut self) {
        if !self.keep {
            // Best effort: the key is of no use without its credential.
            let _ = self.keystore.delete_key(std::mem::take(&mut self.alias));
        }
    }
}

impl KeystoreBackend {
    /// Opens (or starts) the state of `rp_id` in `state_dir`.
    pub(crate) fn open(
        rp_id: &str,
        keystore: Arc<dyn PlatformKeystore>,
        state_dir: &Path,
    ) -> Result<Self, BiopayError> {
        let store = StateStore::new(state_dir, rp_id);
        let credentials = store.load()?;
        Ok(Self {
            rp_id: rp_id.to_owned(),
            keystore,
            store,
            credentials: Mutex::new(credentials),
            ops: futures_util::lock::Mutex::new(()),
        })
    }

    /// The credentials in memory (a short lock: never held across an
    /// await or a foreign call).
    fn creds(&self) -> MutexGuard<'_, Vec<Credential>> {
        self.credentials
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn client(
        &self,
        c: &Credential,
        chain: Vec<Vec<u8>>,
    ) -> PlatformKeystoreClient<ChainOnly, SystemClock> {
        PlatformKeystoreClient::resume(&self.rp_id, ChainOnly(chain), SystemClock, c.state.clone())
    }

    /// The credential with this id, if its key is usable.
    fn usable(&self, id: &CredentialId) -> Result<Credential, BiopayError> {
        let cred = self
            .creds()
            .iter()
            .find(|c| &c.state.credential_id == id)
            .cloned()
            .ok_or(BiopayError::KeyInvalidated)?;
        match self.keystore.key_state(cred.alias.clone())? {
            KeyState::Valid => Ok(cred),
            KeyState::Invalidated | KeyState::Missing => Err(BiopayError::KeyInvalidated),
        }
    }

    /// Writes the credentials with the state of `state.credential_id`
    /// replaced (file first, then memory). Only called under `ops`.
    fn replace_state(&self, state: &PlatformCredentialState) -> Result<(), BiopayError> {
        let mut next = self.creds().clone();
        if let Some(c) = next
            .iter_mut()
            .find(|c| c.state.credential_id == state.credential_id)
        {
            c.state = state.clone();
        }
        self.store.save(&next)?;
        *self.creds() = next;
        Ok(())
    }

    /// Shows the prompt and signs `pending` with the key `alias`.
    async fn sign(&self, alias: &str, pending: PendingStatement) -> Result<Vec<u8>, BiopayError> {
        let signature = self
            .keystore
            .sign(
                alias.to_owned(),
                pending.to_be_signed(),
                pending.prompt().to_owned(),
            )
            .await
            .map_err(to_device_error)?;
        Ok(pending.finish(signature))
    }

    pub(crate) async fn register(
        &self,
        challenge: &[u8],
        modalities: &[biopay_core::Modality],
    ) -> Result<Vec<u8>, BiopayError> {
        let _serialised = self.ops.lock().await;
        let c = RegistrationChallenge::from_cbor(challenge).map_err(DeviceError::from)?;
        if c.rp_id != self.rp_id {
            return Err(BiopayError::InvalidChallenge {
                reason: format!(
                    "challenge is for rp `{}`, this app is `{}`",
                    c.rp_id, self.rp_id
                ),
            });
        }
        let mut modalities = modalities.to_vec();
        modalities.sort();
        modalities.dedup();
        if modalities.is_empty() || !modalities.iter().all(|m| c.accepted_modalities.contains(m)) {
            return Err(BiopayError::InvalidChallenge {
                reason: "modalities must be non-empty and accepted by the challenge".into(),
            });
        }
        // The challenge's prefix (the account's slot, docs/PROTOCOL.md
        // §4.1.9) first, then 32 random bytes.
        let mut random = [0u8; 32];
        SystemRandom::new()
            .fill(&mut random)
            .map_err(|e| BiopayError::Internal {
                reason: e.to_string(),
            })?;
        let credential_id =
            prefixed_credential_id(c.credential_id_prefix, &random).map_err(|e| {
                BiopayError::Internal {
                    reason: e.to_string(),
                }
            })?;
        let alias = format!("biopay.{}", credential_id.to_hex());
        let require_strong_box = c.required_assurance == biopay_core::SecurityLevel::StrongBox;
        // Armed before the platform is asked: a call cancelled while the key is being
        // generated may leave a key whose answer never arrived.
        let mut generated = DeleteKeyUnlessKept {
            keystore: self.keystore.as_ref(),
            alias: alias.clone(),
            keep: false,
        };
        let key = self
            .keystore
            .generate_key(alias.clone(), c.challenge.to_vec(), require_strong_box)
            .await?;
        check_generated_key(&key)?;
        if require_strong_box && !key.strong_box {
            return Err(BiopayError::Keystore {
                reason: "StrongBox required but the platform put the key elsewhere".into(),
            });
        }
        let enrollment_epoch = sha256_parts(&[EPOCH_DOMAIN, alias.as_bytes()]);
        let credential = Credential {
            alias: alias.clone(),
            account_handle: c.account_handle.clone(),
            state: PlatformCredentialState {
                credential_id,
                modalities,
                enrollment_epoch,
                counter: 0,
            },
            strong_box: key.strong_box,
        };
        let pending = self
            .client(&credential, key.attestation_chain)
            .begin_register(challenge)?;
        let statement = self.sign(&alias, pending).await?;
        let mut next = self.creds().clone();
        next.push(credential);
        self.store.save(&next)?;
        *self.creds() = next;
        generated.keep = true;
        Ok(statement)
    }

    pub(crate) async fn authorize(&self, challenge: &[u8]) -> Result<Vec<u8>, BiopayError> {
        let _serialised = self.ops.lock().await;
        let c = PaymentChallenge::from_cbor(challenge).map_err(DeviceError::from)?;
        if c.rp_id != self.rp_id {
            return Err(BiopayError::InvalidChallenge {
                reason: format!(
                    "challenge is for rp `{}`, this app is `{}`",
                    c.rp_id, self.rp_id
                ),
            });
        }
        let cred = self.usable(&c.credential_id)?;
        // Android does not say which biometric matched: the first of the
        // credential's modalities the challenge accepts is reported.
        let modality = cred
            .state
            .modalities
            .iter()
            .copied()
            .find(|m| c.accepted_modalities.contains(m))
            .ok_or(BiopayError::NotEnrolled)?;
        let mut client = self.client(&cred, Vec::new());
        let pending = client.begin_authorize(challenge, modality, |s| {
            self.replace_state(s).map_err(to_device_error)
        })?;
        let mut rollback = CounterRollback {
            backend: self,
            before: cred.state.clone(),
            armed: true,
        };
        let signed = self.sign(&cred.alias, pending).await;
        rollback.armed = false;
        signed
    }

    pub(crate) async fn deregister(&self, id: &CredentialId) -> Result<Vec<u8>, BiopayError> {
        let _serialised = self.ops.lock().await;
        let cred = self.usable(id)?;
        let mut client = self.client(&cred, Vec::new());
        let pending =
            client.begin_deregister(|s| self.replace_state(s).map_err(to_device_error))?;
        let mut rollback = CounterRollback {
            backend: self,
            before: cred.state.clone(),
            armed: true,
        };
        let signed = self.sign(&cred.alias, pending).await;
        rollback.armed = false;
        let statement = signed?;
        self.keystore.delete_key(cred.alias.clone())?;
        let mut next = self.creds().clone();
        next.retain(|c| c.state.credential_id != cred.state.credential_id);
        self.store.save(&next)?;
        *self.creds() = next;
        Ok(statement)
    }

    /// Lists the credentials; never waits for a call in progress.
    pub(crate) fn credentials(&self) -> Result<Vec<LocalCredential>, BiopayError> {
        let snapshot = self.creds().clone();
        snapshot
            .iter()
            .map(|c| {
                Ok(LocalCredential {
                    credential_id: c.state.credential_id.as_bytes().to_vec(),
                    account_handle: c.account_handle.clone(),
                    modalities: c
                        .state
                        .modalities
                        .iter()
                        .copied()
                        .map(Modality::from)
                        .collect(),
                    security_level: if c.strong_box {
                        SecurityLevel::StrongBox
                    } else {
                        SecurityLevel::Tee
                    },
                    valid: self.keystore.key_state(c.alias.clone())? == KeyState::Valid,
                })
            })
            .collect()
    }
}

/// The platform's public key must be a P-256 point, with an attestation
/// chain whose leaf certifies it. A key without attestation (the iOS Secure
/// Enclave) is refused here rather than sent: the verifier trusts platform
/// keys only through Android key attestation (PROTOCOL.md §12, A2/A5), so the
/// server would refuse it anyway.
fn check_generated_key(key: &crate::keystore::GeneratedKey) -> Result<(), BiopayError> {
    let bad = |reason: &str| BiopayError::Keystore {
        reason: reason.to_owned(),
    };
    if !is_valid_p256_point(&key.public_key) {
        return Err(bad(
            "the platform returned a public key that is not an uncompressed P-256 point",
        ));
    }
    let Some(leaf) = key.attestation_chain.first() else {
        return Err(bad(
            "the platform returned no attestation chain: platform keys register only with \
             Android key attestation (docs/PROTOCOL.md §12)",
        ));
    };
    let spki = biopay_core::x509::spki_of(leaf)
        .ok_or_else(|| bad("the attestation leaf is not a certificate"))?;
    match p256_point_from_spki(&spki) {
        Some(point) if point == key.public_key.as_slice() => Ok(()),
        _ => Err(bad("the attestation leaf certifies another key")),
    }
}
