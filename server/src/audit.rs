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
use serde::{Deserialize, Serialize};
use std::{fs, io::Write, path::Path};

/// The hash before the first entry.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// Domain separation for entry hashes.
const ENTRY_DOMAIN: &[u8] = b"biopay-audit-entry-v1";
/// Domain separation for checkpoint signatures (version 2, chained).
const CHECKPOINT_DOMAIN: &[u8] = b"biopay-audit-checkpoint-v2";
/// Domain separation for version 1 checkpoint signatures (verified only).
const CHECKPOINT_DOMAIN_V1: &[u8] = b"biopay-audit-checkpoint-v1";

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

/// The checkpoint format that chains checkpoints (each names its predecessor).
pub const CHECKPOINT_CHAINED: u64 = 2;
/// The first checkpoint format (schema before migration 4): signed over
/// `seq` and the entry hash only, not chained. Still verified, never written.
pub const CHECKPOINT_UNCHAINED: u64 = 1;

/// A signed statement that the log had `seq` entries, the last one hashing
/// to `entry_hash`. One witness line (`audit export-checkpoints`) is one
/// checkpoint as JSON: it carries everything needed to verify it alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// The format: 2 (chained, written now) or 1 (unchained, written
    /// before migration 4; see docs/PROTOCOL.md §9.4).
    pub version: u64,
    /// The last entry covered (the log's length then).
    pub seq: u64,
    /// That entry's hash (hex).
    pub entry_hash: String,
    /// When it was signed, Unix seconds (signed in version 2 only).
    pub at: u64,
    /// SHA-256 (hex) of the previous checkpoint's signed message; 64 zeros
    /// for the first chained checkpoint; empty in version 1.
    pub prev_checkpoint_hash: String,
    /// The signer's Ed25519 public key (hex).
    pub public_key: String,
    /// Ed25519 signature over the checkpoint message (hex).
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

/// The hash that names no previous checkpoint (hex).
pub fn genesis_hex() -> String {
    hex::encode(GENESIS_HASH)
}

impl Checkpoint {
    /// The signed message (docs/PROTOCOL.md §9.4).
    pub fn message(&self) -> Vec<u8> {
        let mut m = Vec::new();
        if self.version == CHECKPOINT_UNCHAINED {
            put(&mut m, CHECKPOINT_DOMAIN_V1);
            put(&mut m, &self.seq.to_be_bytes());
            put(&mut m, self.entry_hash.as_bytes());
        } else {
            put(&mut m, CHECKPOINT_DOMAIN);
            put(&mut m, &self.seq.to_be_bytes());
            put(&mut m, self.entry_hash.as_bytes());
            put(&mut m, &self.at.to_be_bytes());
            put(&mut m, self.prev_checkpoint_hash.as_bytes());
        }
        m
    }

    /// This checkpoint's hash (hex): SHA-256 of its signed message. The next
    /// checkpoint names it in `prev_checkpoint_hash`.
    pub fn checkpoint_hash(&self) -> String {
        hex::encode(biopay_core::crypto::sha256(&self.message()))
    }

    /// Whether `signature` verifies under `public_key` (says nothing about
    /// whether that key is trusted).
    pub fn signature_valid(&self) -> bool {
        let known = self.version == CHECKPOINT_CHAINED || self.version == CHECKPOINT_UNCHAINED;
        known
            && hex::decode(&self.public_key)
                .ok()
                .zip(hex::decode(&self.signature).ok())
                .is_some_and(|(pk, sig)| {
                    UnparsedPublicKey::new(&ED25519, pk)
                        .verify(&self.message(), &sig)
                        .is_ok()
                })
    }
}

/// The server's checkpoint signing key (Ed25519), a PKCS#8 file of mode
/// 0600 (by default in the data directory; `--audit-key` puts it anywhere).
/// Its bytes never appear in `Debug` output or logs.
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

/// File name of the key in the data directory (when no `--audit-key` is given).
pub const KEY_FILE: &str = "audit-signing-key.pk8";

/// Reads a secret file into one zeroized buffer allocated at the file's size
/// (no reallocation, so no unwiped copy is left in freed memory).
fn read_secret(path: &Path) -> Result<zeroize::Zeroizing<Vec<u8>>, String> {
    use std::io::Read as _;
    let err = |e: std::io::Error| format!("read audit key {}: {e}", path.display());
    let mut f = fs::File::open(path).map_err(err)?;
    let len = usize::try_from(f.metadata().map_err(err)?.len())
        .map_err(|_| format!("audit key {} is too large", path.display()))?;
    if len > 4096 {
        return Err(format!("audit key {} is too large", path.display()));
    }
    let mut buf = zeroize::Zeroizing::new(vec![0u8; len]);
    f.read_exact(&mut buf).map_err(err)?;
    Ok(buf)
}

impl SigningKey {
    /// Loads the key at `path`, generating it (mode 0600, parent directory
    /// created) when the file does not exist. Only the server calls this, at
    /// startup.
    pub fn load_or_create(path: &Path) -> Result<Self, String> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        }
        if !path.exists() {
            // ring's `Document` gives no way to wipe it: the generated key
            // stays in this stack frame's memory until it is reused (once, at
            // the first start). The file is the key's home.
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                .map_err(|_| "key generation failed".to_owned())?;
            let mut opts = fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            match opts.open(path) {
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
        Self::load(path)
    }

    /// Loads an existing key; never creates one. Refuses a file that other
    /// users may read or write (unix).
    pub fn load(path: &Path) -> Result<Self, String> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(path)
                .map_err(|e| format!("audit key {}: {e}", path.display()))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(format!(
                    "audit key {} has mode {:o}: it must be readable by its owner only (chmod 600)",
                    path.display(),
                    mode & 0o777
                ));
            }
        }
        // The key's bytes live in one buffer of the file's exact size, wiped
        // when dropped (the parsed pair is ring's, which keeps its own copy).
        let bytes = read_secret(path)?;
        let pair = Ed25519KeyPair::from_pkcs8(&bytes)
            .map_err(|_| format!("{} is not an Ed25519 PKCS#8 key", path.display()))?;
        Ok(Self { pair })
    }

    /// The public key, hex.
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.pair.public_key().as_ref())
    }

    /// Signs a chained checkpoint for the log ending at (`seq`,
    /// `entry_hash`), following the checkpoint whose hash is `prev` (64
    /// zeros for the first).
    pub fn checkpoint(&self, seq: u64, entry_hash: &str, at: u64, prev: &str) -> Checkpoint {
        let mut c = Checkpoint {
            version: CHECKPOINT_CHAINED,
            seq,
            entry_hash: entry_hash.to_owned(),
            at,
            prev_checkpoint_hash: prev.to_owned(),
            public_key: self.public_key_hex(),
            signature: String::new(),
        };
        c.signature = hex::encode(self.pair.sign(&c.message()).as_ref());
        c
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
    /// The head row names more entries than the log holds.
    #[error("the head row says the log has {head} entries but it ends at entry {have}: entries after {have} were removed")]
    HeadAhead {
        /// The head row's entry count.
        head: u64,
        /// The last entry present.
        have: u64,
    },
    /// The head row names fewer entries than the log holds, or another hash.
    #[error("the head row (entry {head}, hash {hash}) does not match the log's last entry {have}: the head row was rewritten")]
    HeadMismatch {
        /// The head row's entry count.
        head: u64,
        /// The head row's hash.
        hash: String,
        /// The last entry present.
        have: u64,
    },
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
    /// A checkpoint is signed by a key that is not trusted.
    #[error(
        "checkpoint at entry {seq} is signed by key {key}, which is not a trusted checkpoint key"
    )]
    UntrustedKey {
        /// The checkpoint's entry.
        seq: u64,
        /// The key it names.
        key: String,
    },
    /// A checkpoint's signature does not verify (its contents were altered).
    #[error("checkpoint at entry {0} has an invalid signature: its contents were altered")]
    BadSignature(u64),
    /// A chained checkpoint does not name the checkpoint before it.
    #[error("the checkpoint chain is broken at entry {seq}: {}", match .previous {
        Some(p) => format!("it does not follow the checkpoint at entry {p} (a checkpoint between them was removed or replaced)"),
        None => "it names a previous checkpoint, but none precedes it (earlier checkpoints were removed)".to_owned(),
    })]
    ChainBroken {
        /// The checkpoint whose link is wrong.
        seq: u64,
        /// The chained checkpoint before it, if any.
        previous: Option<u64>,
    },
    /// An unchained (version 1) checkpoint after the chain started.
    #[error("checkpoint at entry {0} is unchained (version 1) but follows a chained one")]
    UnchainedAfterChain(u64),
    /// A witness checkpoint is signed by a key that is not trusted.
    #[error("witness checkpoint at entry {seq} is signed by key {key}, which is not a trusted checkpoint key")]
    WitnessUntrustedKey {
        /// The checkpoint's entry.
        seq: u64,
        /// The key it names.
        key: String,
    },
    /// A witness checkpoint's signature does not verify.
    #[error(
        "witness checkpoint at entry {0} has an invalid signature: the witness file was altered"
    )]
    WitnessBadSignature(u64),
    /// The log is shorter than a witness checkpoint.
    #[error("the log has {have} entries but the witness holds a signed checkpoint at entry {checkpoint}: entries after {have} were removed")]
    WitnessAhead {
        /// The last entry present.
        have: u64,
        /// The witness checkpoint's entry.
        checkpoint: u64,
    },
    /// The log's entry differs from what a witness checkpoint signed.
    #[error("entry {0} does not match the witness's signed checkpoint: the log was rewritten up to there")]
    WitnessMismatch(u64),
    /// The database's checkpoint differs from the witness's at the same entry.
    #[error("the database's checkpoint at entry {0} differs from the witness's: the checkpoint chain was rewritten")]
    WitnessCheckpointDiffers(u64),
    /// The witness holds a checkpoint the database lost.
    #[error("the database has no checkpoint at entry {0}, but the witness holds one: checkpoints were removed")]
    WitnessCheckpointMissing(u64),
}

/// What a successful verification saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    /// Entries checked.
    pub entries: u64,
    /// Signed checkpoints checked.
    pub checkpoints: u64,
    /// Of which unchained (version 1, from before migration 4).
    pub unchained: u64,
    /// Witness checkpoints checked.
    pub witnessed: u64,
    /// The head hash (hex).
    pub head: String,
}

fn check_signature(c: &Checkpoint, trusted_keys: &[String]) -> Result<(), ChainProblem> {
    if !trusted_keys
        .iter()
        .any(|k| k.eq_ignore_ascii_case(&c.public_key))
    {
        return Err(ChainProblem::UntrustedKey {
            seq: c.seq,
            key: c.public_key.clone(),
        });
    }
    if !c.signature_valid() {
        return Err(ChainProblem::BadSignature(c.seq));
    }
    Ok(())
}

/// Verifies a log given in sequence order against the head row
/// (`head`: last seq and its hash), its checkpoints (by seq) and, when
/// given, the checkpoints held by a witness, all signed by one of the
/// `trusted_keys` (hex Ed25519 public keys).
///
/// Checked, in this order: each entry follows its predecessor; the head
/// row names the last entry; each checkpoint is signed by a trusted key,
/// names the checkpoint before it (chained ones) and the hash of an entry
/// present; each witness checkpoint is signed by a trusted key, covers an
/// entry present with the same hash, and the database holds the same
/// checkpoint.
pub fn verify_chain(
    entries: &[AuditEntry],
    head: (u64, &str),
    checkpoints: &[Checkpoint],
    witness: &[Checkpoint],
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
    let head_hex = hex::encode(prev);
    if head.0 > last {
        return Err(ChainProblem::HeadAhead {
            head: head.0,
            have: last,
        });
    }
    if head.0 != last || head.1 != head_hex {
        return Err(ChainProblem::HeadMismatch {
            head: head.0,
            hash: head.1.to_owned(),
            have: last,
        });
    }
    let mut previous: Option<&Checkpoint> = None;
    let mut unchained = 0u64;
    for c in checkpoints {
        check_signature(c, trusted_keys)?;
        if c.version == CHECKPOINT_UNCHAINED {
            if previous.is_some() {
                return Err(ChainProblem::UnchainedAfterChain(c.seq));
            }
            unchained = unchained.saturating_add(1);
        } else {
            let expected = previous.map_or_else(genesis_hex, Checkpoint::checkpoint_hash);
            let ordered = previous.is_none_or(|p| c.seq > p.seq);
            if c.prev_checkpoint_hash != expected || !ordered {
                return Err(ChainProblem::ChainBroken {
                    seq: c.seq,
                    previous: previous.map(|p| p.seq),
                });
            }
            previous = Some(c);
        }
        if c.seq > last {
            return Err(ChainProblem::Truncated {
                have: last,
                checkpoint: c.seq,
            });
        }
        if c.seq > 0 && hashes.get(&c.seq) != Some(&c.entry_hash) {
            return Err(ChainProblem::CheckpointMismatch(c.seq));
        }
    }
    let in_db: std::collections::BTreeMap<u64, &Checkpoint> =
        checkpoints.iter().map(|c| (c.seq, c)).collect();
    for w in witness {
        match check_signature(w, trusted_keys) {
            Err(ChainProblem::UntrustedKey { seq, key }) => {
                return Err(ChainProblem::WitnessUntrustedKey { seq, key })
            }
            Err(_) => return Err(ChainProblem::WitnessBadSignature(w.seq)),
            Ok(()) => {}
        }
        if w.seq > last {
            return Err(ChainProblem::WitnessAhead {
                have: last,
                checkpoint: w.seq,
            });
        }
        if w.seq > 0 && hashes.get(&w.seq) != Some(&w.entry_hash) {
            return Err(ChainProblem::WitnessMismatch(w.seq));
        }
        match in_db.get(&w.seq) {
            None => return Err(ChainProblem::WitnessCheckpointMissing(w.seq)),
            Some(c) if c.checkpoint_hash() != w.checkpoint_hash() => {
                return Err(ChainProblem::WitnessCheckpointDiffers(w.seq))
            }
            Some(_) => {}
        }
    }
    let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    Ok(ChainReport {
        entries: last,
        checkpoints: count(checkpoints.len()),
        unchained,
        witnessed: count(witness.len()),
        head: head_hex,
    })
}

/// Parses a witness file: one checkpoint as JSON per line (blank lines
/// ignored). An unreadable line is an error naming its number.
pub fn parse_witness(text: &str) -> Result<Vec<Checkpoint>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| {
                format!(
                    "witness line {}: not a checkpoint: {e}",
                    i.saturating_add(1)
                )
            })
        })
        .collect()
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

    fn signed(key: &SigningKey, l: &[AuditEntry], seqs: &[u64]) -> Vec<Checkpoint> {
        let mut prev = genesis_hex();
        seqs.iter()
            .map(|&s| {
                let c = key.checkpoint(s, &l[usize::try_from(s).unwrap() - 1].hash, s, &prev);
                prev = c.checkpoint_hash();
                c
            })
            .collect()
    }

    fn head(l: &[AuditEntry]) -> (u64, &str) {
        l.last().map_or((0, "0"), |e| (e.seq, e.hash.as_str()))
    }

    #[test]
    fn intact_log_verifies_and_each_tampering_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::load_or_create(&dir.path().join(KEY_FILE)).unwrap();
        let trusted = vec![key.public_key_hex()];
        let l = log(10);
        let cp = signed(&key, &l, &[4, 10]);
        let ok = verify_chain(&l, head(&l), &cp, &cp, &trusted).unwrap();
        assert_eq!((ok.entries, ok.checkpoints, ok.witnessed), (10, 2, 2));

        let mut altered = l.clone();
        altered[4].record.reason = "edited".into();
        assert_eq!(
            verify_chain(&altered, head(&l), &cp, &[], &trusted),
            Err(ChainProblem::Altered(5))
        );

        let mut removed = l.clone();
        removed.remove(6);
        assert_eq!(
            verify_chain(&removed, head(&l), &cp, &[], &trusted),
            Err(ChainProblem::Removed(7))
        );

        let mut reordered = l.clone();
        reordered.swap(2, 3);
        reordered[2].seq = 3;
        reordered[3].seq = 4;
        assert_eq!(
            verify_chain(&reordered, head(&l), &cp, &[], &trusted),
            Err(ChainProblem::Reordered(3))
        );

        let truncated = l[..8].to_vec();
        assert_eq!(
            verify_chain(&truncated, head(&l), &cp, &[], &trusted),
            Err(ChainProblem::HeadAhead { head: 10, have: 8 })
        );
        assert_eq!(
            verify_chain(&truncated, head(&truncated), &cp, &[], &trusted),
            Err(ChainProblem::Truncated {
                have: 8,
                checkpoint: 10
            })
        );
        // Tail, its checkpoint and the head row rewound: only the witness tells.
        assert!(verify_chain(&truncated, head(&truncated), &cp[..1], &[], &trusted).is_ok());
        assert_eq!(
            verify_chain(&truncated, head(&truncated), &cp[..1], &cp, &trusted),
            Err(ChainProblem::WitnessAhead {
                have: 8,
                checkpoint: 10
            })
        );
        assert_eq!(
            verify_chain(&l, head(&l), &cp[..1], &cp, &trusted),
            Err(ChainProblem::WitnessCheckpointMissing(10))
        );
        assert_eq!(
            verify_chain(&l, (10, &l[8].hash), &cp, &[], &trusted),
            Err(ChainProblem::HeadMismatch {
                head: 10,
                hash: l[8].hash.clone(),
                have: 10
            })
        );

        let mut forged = cp.clone();
        forged[1].entry_hash = l[8].hash.clone();
        assert_eq!(
            verify_chain(&l, head(&l), &forged, &[], &trusted),
            Err(ChainProblem::BadSignature(10))
        );
        assert_eq!(
            verify_chain(&l, head(&l), &cp, &[], &[]),
            Err(ChainProblem::UntrustedKey {
                seq: 4,
                key: key.public_key_hex()
            })
        );
        assert_eq!(
            verify_chain(&l, head(&l), &cp[1..], &[], &trusted),
            Err(ChainProblem::ChainBroken {
                seq: 10,
                previous: None
            })
        );
        let mut alien = cp.clone();
        alien[1] = key.checkpoint(10, &l[9].hash, 10, &genesis_hex());
        assert_eq!(
            verify_chain(&l, head(&l), &alien, &[], &trusted),
            Err(ChainProblem::ChainBroken {
                seq: 10,
                previous: Some(4)
            })
        );
        assert_eq!(
            verify_chain(&l, head(&l), &alien[..1], &cp, &trusted),
            Err(ChainProblem::WitnessCheckpointMissing(10))
        );
    }

    /// Version 1 checkpoints (signed over seq and hash only, before
    /// migration 4) still verify; the chain starts after them.
    #[test]
    fn unchained_checkpoints_verify_and_the_chain_starts_after_them() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::load_or_create(&dir.path().join(KEY_FILE)).unwrap();
        let trusted = vec![key.public_key_hex()];
        let l = log(10);
        let mut v1 = key.checkpoint(3, &l[2].hash, 0, "");
        v1.version = CHECKPOINT_UNCHAINED;
        v1.prev_checkpoint_hash = String::new();
        // The version 1 message, written out as the old code signed it.
        let mut m = Vec::new();
        put(&mut m, b"biopay-audit-checkpoint-v1");
        put(&mut m, &3u64.to_be_bytes());
        put(&mut m, l[2].hash.as_bytes());
        assert_eq!(v1.message(), m);
        v1.signature = hex::encode(key.pair.sign(&m).as_ref());
        let chained = signed(&key, &l, &[6, 10]);
        let all = [vec![v1.clone()], chained.clone()].concat();
        let r = verify_chain(&l, head(&l), &all, &all, &trusted).unwrap();
        assert_eq!((r.checkpoints, r.unchained), (3, 1));
        let late = [chained, vec![v1]].concat();
        assert_eq!(
            verify_chain(&l, head(&l), &late, &[], &trusted),
            Err(ChainProblem::UnchainedAfterChain(3))
        );
    }

    #[cfg(unix)]
    #[test]
    fn key_file_is_private_and_stable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys").join(KEY_FILE);
        assert!(SigningKey::load(&path).is_err(), "load never creates");
        assert!(!path.exists());
        let a = SigningKey::load_or_create(&path).unwrap();
        let b = SigningKey::load(&path).unwrap();
        assert_eq!(a.public_key_hex(), b.public_key_hex());
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let debug = format!("{a:?}");
        assert!(debug.contains(&a.public_key_hex()) && !debug.contains("pair"));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let e = SigningKey::load(&path).unwrap_err();
        assert!(e.contains("chmod 600"), "{e}");
    }
}
