//! The hash-chained audit log: every decision (accepted or rejected, with the
//! verification step) is one entry carrying the SHA-256 of the previous
//! entry; periodic checkpoints sign the head with the server's Ed25519 key.
//!
//! An entry's hash covers the previous entry's hash and the entry's fields
//! (not its sequence number): the chain itself fixes the order. Verification
//! ([`verify_chain`]) walks the entries in sequence order and names the first
//! one that was altered (its hash no longer matches its fields), removed (a gap
//! in the sequence, or a signed checkpoint past the end) or reordered (it does
//! not follow its predecessor).

use ring::{
    rand::SystemRandom,
    signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519},
};
use serde::Serialize;
use std::{fs, io::Write, path::Path};

/// The hash before the first entry.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// Domain separation for entry hashes.
const ENTRY_DOMAIN: &[u8] = b"biopay-audit-entry-v1";
/// Domain separation for checkpoint signatures.
const CHECKPOINT_DOMAIN: &[u8] = b"biopay-audit-checkpoint-v1";

/// The fields of one decision, before it is chained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// Decision time, Unix seconds.
    pub at: u64,
    /// The ceremony: `registration`, `payment`, `deregistration`, `enrollment_change`.
    pub kind: String,
    /// `accepted` or `rejected`.
    pub outcome: String,
    /// The step code of docs/PROTOCOL.md §6 (the commit step when accepted).
    pub step: String,
    /// The credential id (hex), empty when the statement named none.
    pub credential: String,
    /// SHA-256 of the statement (hex).
    pub statement_hash: String,
    /// Why, for a rejection; empty when accepted.
    pub reason: String,
}

/// One stored entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// Position in the log, from 1.
    pub seq: u64,
    /// The decision.
    #[serde(flatten)]
    pub record: AuditRecord,
    /// Hash of the previous entry (hex), 64 zeros for the first.
    pub prev_hash: String,
    /// This entry's hash (hex).
    pub hash: String,
}

/// A signed statement that the log had `seq` entries ending in `hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checkpoint {
    /// The last entry covered.
    pub seq: u64,
    /// Its hash (hex).
    pub hash: String,
    /// When it was signed, Unix seconds.
    pub at: u64,
    /// The signer's Ed25519 public key (hex).
    pub public_key: String,
    /// Ed25519 signature over the domain, seq and hash (hex).
    pub signature: String,
}

fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    // Lengths of audit fields are far below u32::MAX; saturate rather than wrap.
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

/// The hash of an entry with fields `record` following an entry whose hash is `prev`.
pub fn entry_hash(prev: &[u8; 32], record: &AuditRecord) -> [u8; 32] {
    let mut m = Vec::with_capacity(256);
    put(&mut m, ENTRY_DOMAIN);
    put(&mut m, prev);
    put(&mut m, &record.at.to_be_bytes());
    for f in [
        &record.kind,
        &record.outcome,
        &record.step,
        &record.credential,
        &record.statement_hash,
        &record.reason,
    ] {
        put(&mut m, f.as_bytes());
    }
    biopay_core::crypto::sha256(&m)
}

/// Parses a 64-character hex hash.
pub fn parse_hash(s: &str) -> Option<[u8; 32]> {
    let v = hex::decode(s).ok()?;
    v.try_into().ok()
}

fn checkpoint_message(seq: u64, hash: &str) -> Vec<u8> {
    let mut m = Vec::new();
    put(&mut m, CHECKPOINT_DOMAIN);
    put(&mut m, &seq.to_be_bytes());
    put(&mut m, hash.as_bytes());
    m
}

/// The server's checkpoint signing key (Ed25519), kept in the data directory
/// with mode 0600. Its bytes never appear in `Debug` output or logs.
pub struct SigningKey {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("public_key", &self.public_key_hex())
            .finish_non_exhaustive()
    }
}

/// File name of the key in the data directory.
pub const KEY_FILE: &str = "audit-signing-key.pk8";

impl SigningKey {
    /// Loads the key from `dir`, generating it (mode 0600) on first start.
    pub fn load_or_create(dir: &Path) -> Result<Self, String> {
        fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let path = dir.join(KEY_FILE);
        if !path.exists() {
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                .map_err(|_| "key generation failed".to_owned())?;
            let mut opts = fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            match opts.open(&path) {
                Ok(mut f) => {
                    f.write_all(pkcs8.as_ref())
                        .and_then(|()| f.sync_all())
                        .map_err(|e| format!("write {}: {e}", path.display()))?;
                }
                // Another process created it first: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(format!("create {}: {e}", path.display())),
            }
        }
        let bytes = fs::read(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
        let pair = Ed25519KeyPair::from_pkcs8(&bytes)
            .map_err(|_| format!("{} is not an Ed25519 PKCS#8 key", path.display()))?;
        Ok(Self { pair })
    }

    /// The public key, hex.
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.pair.public_key().as_ref())
    }

    /// Signs a checkpoint for the log ending at (`seq`, `hash`).
    pub fn checkpoint(&self, seq: u64, hash: &str, at: u64) -> Checkpoint {
        let sig = self.pair.sign(&checkpoint_message(seq, hash));
        Checkpoint {
            seq,
            hash: hash.to_owned(),
            at,
            public_key: self.public_key_hex(),
            signature: hex::encode(sig.as_ref()),
        }
    }
}

/// The first problem found in a log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainProblem {
    /// The entry's stored hash does not match its fields.
    #[error("entry {0} was altered: its hash does not match its contents")]
    Altered(u64),
    /// An entry is missing from the sequence.
    #[error("entry {0} was removed: the sequence jumps past it")]
    Removed(u64),
    /// The entry does not follow its predecessor (reordered, or entries before it removed).
    #[error("entry {0} is out of order: it does not follow entry {prev}", prev = .0.saturating_sub(1))]
    Reordered(u64),
    /// A signed checkpoint covers entries that are gone.
    #[error("entries after {have} were removed: a signed checkpoint covers entry {checkpoint}")]
    Truncated {
        /// The last entry present.
        have: u64,
        /// The checkpoint's entry.
        checkpoint: u64,
    },
    /// A checkpoint's hash is not the hash of the entry it names.
    #[error("entry {0} does not match its signed checkpoint")]
    CheckpointMismatch(u64),
    /// A checkpoint's signature does not verify or its key is not trusted.
    #[error("checkpoint at entry {0} has an invalid or untrusted signature")]
    BadCheckpoint(u64),
}

/// What a successful verification saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    /// Entries checked.
    pub entries: u64,
    /// Signed checkpoints checked.
    pub checkpoints: u64,
    /// The head hash (hex).
    pub head: String,
}

/// Verifies a log given in sequence order and its checkpoints against the
/// trusted checkpoint keys (hex Ed25519 public keys).
pub fn verify_chain(
    entries: &[AuditEntry],
    checkpoints: &[Checkpoint],
    trusted_keys: &[String],
) -> Result<ChainReport, ChainProblem> {
    let mut prev = GENESIS_HASH;
    let mut expected_seq = 1u64;
    let mut hashes = std::collections::BTreeMap::new();
    for e in entries {
        if e.seq != expected_seq {
            return Err(ChainProblem::Removed(expected_seq));
        }
        let recomputed = entry_hash(&prev, &e.record);
        let stored_prev = parse_hash(&e.prev_hash);
        let stored = parse_hash(&e.hash);
        // The entry is intact in itself when its hash matches its own prev link and fields.
        let self_consistent =
            stored_prev.is_some_and(|p| stored == Some(entry_hash(&p, &e.record)));
        if stored != Some(recomputed) {
            return Err(if self_consistent {
                ChainProblem::Reordered(e.seq)
            } else {
                ChainProblem::Altered(e.seq)
            });
        }
        prev = recomputed;
        hashes.insert(e.seq, e.hash.clone());
        expected_seq = expected_seq.saturating_add(1);
    }
    let last = expected_seq.saturating_sub(1);
    for c in checkpoints {
        let key_ok = trusted_keys.iter().any(|k| k == &c.public_key);
        let sig_ok = hex::decode(&c.public_key)
            .ok()
            .zip(hex::decode(&c.signature).ok())
            .is_some_and(|(pk, sig)| {
                UnparsedPublicKey::new(&ED25519, pk)
                    .verify(&checkpoint_message(c.seq, &c.hash), &sig)
                    .is_ok()
            });
        if !key_ok || !sig_ok {
            return Err(ChainProblem::BadCheckpoint(c.seq));
        }
        if c.seq > last {
            return Err(ChainProblem::Truncated {
                have: last,
                checkpoint: c.seq,
            });
        }
        if c.seq > 0 && hashes.get(&c.seq) != Some(&c.hash) {
            return Err(ChainProblem::CheckpointMismatch(c.seq));
        }
    }
    Ok(ChainReport {
        entries: last,
        checkpoints: u64::try_from(checkpoints.len()).unwrap_or(u64::MAX),
        head: hex::encode(prev),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: u64) -> AuditRecord {
        AuditRecord {
            at: 1000 + i,
            kind: "payment".into(),
            outcome: if i % 2 == 0 { "accepted" } else { "rejected" }.into(),
            step: "P20".into(),
            credential: "ab".into(),
            statement_hash: format!("{i:064x}"),
            reason: String::new(),
        }
    }

    fn log(n: u64) -> Vec<AuditEntry> {
        let mut prev = GENESIS_HASH;
        (1..=n)
            .map(|seq| {
                let record = rec(seq);
                let h = entry_hash(&prev, &record);
                let e = AuditEntry {
                    seq,
                    record,
                    prev_hash: hex::encode(prev),
                    hash: hex::encode(h),
                };
                prev = h;
                e
            })
            .collect()
    }

    #[test]
    fn intact_log_verifies_and_each_tampering_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::load_or_create(dir.path()).unwrap();
        let trusted = vec![key.public_key_hex()];
        let l = log(10);
        let cp = vec![key.checkpoint(10, &l[9].hash, 0)];
        assert_eq!(verify_chain(&l, &cp, &trusted).unwrap().entries, 10);

        let mut altered = l.clone();
        altered[4].record.reason = "edited".into();
        assert_eq!(
            verify_chain(&altered, &cp, &trusted),
            Err(ChainProblem::Altered(5))
        );

        let mut removed = l.clone();
        removed.remove(6);
        assert_eq!(
            verify_chain(&removed, &cp, &trusted),
            Err(ChainProblem::Removed(7))
        );

        let mut reordered = l.clone();
        reordered.swap(2, 3);
        reordered[2].seq = 3;
        reordered[3].seq = 4;
        assert_eq!(
            verify_chain(&reordered, &cp, &trusted),
            Err(ChainProblem::Reordered(3))
        );

        let truncated = l[..8].to_vec();
        assert!(matches!(
            verify_chain(&truncated, &cp, &trusted),
            Err(ChainProblem::Truncated {
                have: 8,
                checkpoint: 10
            })
        ));

        let mut forged = cp.clone();
        forged[0].hash = l[8].hash.clone();
        assert_eq!(
            verify_chain(&l, &forged, &trusted),
            Err(ChainProblem::BadCheckpoint(10))
        );
        assert_eq!(
            verify_chain(&l, &cp, &[]),
            Err(ChainProblem::BadCheckpoint(10))
        );
    }

    #[cfg(unix)]
    #[test]
    fn key_file_is_private_and_stable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = SigningKey::load_or_create(dir.path()).unwrap();
        let b = SigningKey::load_or_create(dir.path()).unwrap();
        assert_eq!(a.public_key_hex(), b.public_key_hex());
        let mode = fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let debug = format!("{a:?}");
        assert!(debug.contains(&a.public_key_hex()) && !debug.contains("pair"));
    }
}
