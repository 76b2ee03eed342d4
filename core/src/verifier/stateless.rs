//! Self-authenticating payment challenges (docs/PROTOCOL.md §6.1.3, §6.4
//! `P9`, §7.1): issuing one writes nothing; its 32 bytes carry a key id, the
//! expiry, the counter at issue, a nonce and a MAC that binds them to the rp
//! id, the credential, its account and the transaction. Single use is
//! enforced by the commit that accepts the payment (a spent-challenge entry,
//! §7.3).

use super::*;
use crate::crypto::HmacKey;
use std::{collections::HashMap, sync::Mutex};

/// Bytes of the MAC in a payment challenge: HMAC-SHA-256 truncated to 128 bits.
pub const CHALLENGE_MAC_LEN: usize = 16;
/// Bytes of the random nonce in a payment challenge.
pub const CHALLENGE_NONCE_LEN: usize = 3;
/// Domain separation of the challenge MAC (docs/PROTOCOL.md §6.1.3).
const MAC_LABEL: &[u8] = b"biopay v1 payment challenge\0";

// Layout (§6.1.3): key id | expires_at (u32 BE) | counter_at_issue (u64 BE) |
// nonce | MAC.
const KEY_ID: usize = 0;
const EXPIRY: std::ops::Range<usize> = 1..5;
const COUNTER: std::ops::Range<usize> = 5..13;
const NONCE: std::ops::Range<usize> = 13..16;
const MAC: std::ops::Range<usize> = 16..32;
const _: () = assert!(MAC.end == CHALLENGE_LEN && MAC.end - MAC.start == CHALLENGE_MAC_LEN);
const _: () = assert!(NONCE.end - NONCE.start == CHALLENGE_NONCE_LEN);

/// The keys that MAC payment challenges (docs/PROTOCOL.md §6.1.3): the
/// current key MACs new challenges; previous keys still verify the
/// challenges they MACed until those expire, after which an operator drops
/// them. Key ids are one byte and unique within the set. The key material
/// is held by ring and never shown by `Debug`.
#[derive(Clone)]
pub struct ChallengeKeys {
    current: (u8, HmacKey),
    previous: Vec<(u8, HmacKey)>,
}

impl std::fmt::Debug for ChallengeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let previous: Vec<u8> = self.previous.iter().map(|(id, _)| *id).collect();
        f.debug_struct("ChallengeKeys")
            .field("current", &self.current.0)
            .field("previous", &previous)
            .finish_non_exhaustive()
    }
}

/// A key id used twice in a [`ChallengeKeys`] set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("challenge key id {0} is already in the set")]
pub struct DuplicateKeyId(pub u8);

impl ChallengeKeys {
    /// A set whose current key has id `id` and secret `secret` (the caller
    /// keeps the secret zeroized; only ring's derived key state is kept).
    pub fn new(id: u8, secret: &[u8; 32]) -> Self {
        Self {
            current: (id, HmacKey::new(secret)),
            previous: Vec::new(),
        }
    }

    /// Adds a previous key, which verifies but no longer MACs.
    pub fn with_previous(mut self, id: u8, secret: &[u8; 32]) -> Result<Self, DuplicateKeyId> {
        if self.key(id).is_some() {
            return Err(DuplicateKeyId(id));
        }
        self.previous.push((id, HmacKey::new(secret)));
        Ok(self)
    }

    /// The current key's id.
    pub fn current_id(&self) -> u8 {
        self.current.0
    }

    /// The ids of every key that verifies, current first.
    pub fn ids(&self) -> Vec<u8> {
        std::iter::once(self.current.0)
            .chain(self.previous.iter().map(|(id, _)| *id))
            .collect()
    }

    fn key(&self, id: u8) -> Option<&HmacKey> {
        std::iter::once(&self.current)
            .chain(self.previous.iter())
            .find(|(k, _)| *k == id)
            .map(|(_, key)| key)
    }
}

/// The unauthenticated fields a payment challenge carries.
struct Fields {
    key_id: u8,
    expires_at: u32,
    counter_at_issue: u64,
    nonce: [u8; CHALLENGE_NONCE_LEN],
}

impl Fields {
    fn parse(c: &Challenge) -> Self {
        let mut expires = [0u8; 4];
        expires.copy_from_slice(&c[EXPIRY]);
        let mut counter = [0u8; 8];
        counter.copy_from_slice(&c[COUNTER]);
        let mut nonce = [0u8; CHALLENGE_NONCE_LEN];
        nonce.copy_from_slice(&c[NONCE]);
        Self {
            key_id: c[KEY_ID],
            expires_at: u32::from_be_bytes(expires),
            counter_at_issue: u64::from_be_bytes(counter),
            nonce,
        }
    }

    /// The challenge bytes before the MAC.
    fn prefix(&self) -> [u8; MAC.start] {
        let mut out = [0u8; MAC.start];
        out[KEY_ID] = self.key_id;
        out[EXPIRY].copy_from_slice(&self.expires_at.to_be_bytes());
        out[COUNTER].copy_from_slice(&self.counter_at_issue.to_be_bytes());
        out[NONCE].copy_from_slice(&self.nonce);
        out
    }
}

/// What the MAC binds besides the challenge's own fields.
struct Bound<'a> {
    rp_id: &'a str,
    credential_id: &'a CredentialId,
    account_handle: &'a [u8],
    transaction_hash: &'a [u8; 32],
    display_hash: &'a [u8; 32],
}

/// The truncated MAC over the label, the challenge's fields and `b`, every
/// variable-length field preceded by its length (u32 BE).
fn mac(key: &HmacKey, prefix: &[u8], b: &Bound<'_>) -> [u8; CHALLENGE_MAC_LEN] {
    let len = |x: &[u8]| u32::try_from(x.len()).unwrap_or(u32::MAX).to_be_bytes();
    let rp = b.rp_id.as_bytes();
    let cred = b.credential_id.as_bytes();
    let tag = key.tag(&[
        MAC_LABEL,
        prefix,
        &len(rp),
        rp,
        &len(cred),
        cred,
        &len(b.account_handle),
        b.account_handle,
        b.transaction_hash,
        b.display_hash,
    ]);
    let mut out = [0u8; CHALLENGE_MAC_LEN];
    out.copy_from_slice(&tag[..CHALLENGE_MAC_LEN]);
    out
}

/// Per account, the payment challenges this process issued that are not
/// known to be used and have not expired: the per-account issuance limit
/// without a stored challenge (docs/PROTOCOL.md §6.1.3).
#[derive(Debug, Default)]
pub(super) struct Outstanding(Mutex<ByAccount>);

/// Per account handle, its outstanding challenges and their expiry.
type ByAccount = HashMap<Vec<u8>, Vec<(Challenge, u64)>>;

impl Outstanding {
    fn lock(&self) -> std::sync::MutexGuard<'_, ByAccount> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many of `account`'s challenges are outstanding at `now`.
    pub(super) fn count(&self, account: &[u8], now: u64) -> u32 {
        let mut g = self.lock();
        let Some(listed) = g.get_mut(account) else {
            return 0;
        };
        listed.retain(|(_, exp)| *exp > now);
        u32::try_from(listed.len()).unwrap_or(u32::MAX)
    }

    /// Records a challenge unless `max` are outstanding already.
    fn try_add(&self, account: &[u8], c: Challenge, expires_at: u64, now: u64, max: u32) -> bool {
        let mut g = self.lock();
        let listed = g.entry(account.to_vec()).or_default();
        listed.retain(|(_, exp)| *exp > now);
        if max > 0 && listed.len() >= usize::try_from(max).unwrap_or(usize::MAX) {
            return false;
        }
        listed.push((c, expires_at));
        true
    }

    /// A challenge of `account` was used (accepted here).
    pub(super) fn release(&self, account: &[u8], c: &Challenge) {
        let mut g = self.lock();
        if let Some(listed) = g.get_mut(account) {
            listed.retain(|(x, _)| x != c);
            if listed.is_empty() {
                g.remove(account);
            }
        }
    }

    /// Forgets every challenge expired at `now`.
    pub(super) fn prune(&self, now: u64) {
        self.lock().retain(|_, listed| {
            listed.retain(|(_, exp)| *exp > now);
            !listed.is_empty()
        });
    }
}

impl<S: Store, C: Clock, R: Random> Verifier<S, C, R> {
    /// Issues a self-authenticating payment challenge (§6.1.3): nothing is
    /// stored; the per-account limit counts this process's outstanding ones.
    pub(super) fn seal_payment_challenge(
        &self,
        keys: &ChallengeKeys,
        cred: &CredentialRecord,
        mut challenge: PaymentChallenge,
        now: u64,
    ) -> Result<PaymentChallenge, IssueError> {
        let expires_at = u32::try_from(challenge.expires_at).map_err(|_| {
            IssueError::Invalid(crate::messages::DecodeError::InvalidField {
                field: "expires_at",
                reason: "a payment challenge's expiry must fit 32 bits",
            })
        })?;
        let mut nonce = [0u8; CHALLENGE_NONCE_LEN];
        self.random.fill(&mut nonce)?;
        let fields = Fields {
            key_id: keys.current.0,
            expires_at,
            counter_at_issue: cred.counter,
            nonce,
        };
        let prefix = fields.prefix();
        let tx_hash = challenge.transaction.transaction_hash();
        let display_hash =
            crypto::sha256(render_transaction(&self.rp_id, &challenge.transaction).as_bytes());
        let tag = mac(
            &keys.current.1,
            &prefix,
            &Bound {
                rp_id: &self.rp_id,
                credential_id: &challenge.credential_id,
                account_handle: &challenge.account_handle,
                transaction_hash: &tx_hash,
                display_hash: &display_hash,
            },
        );
        challenge.challenge[..MAC.start].copy_from_slice(&prefix);
        challenge.challenge[MAC].copy_from_slice(&tag);
        PaymentChallenge::from_cbor(&challenge.to_cbor())?;
        let max = self.policy.max_challenges_per_account;
        if !self.outstanding.try_add(
            &challenge.account_handle,
            challenge.challenge,
            challenge.expires_at,
            now,
            max,
        ) {
            return Err(IssueError::TooManyChallenges { max });
        }
        Ok(challenge)
    }

    /// `P9` for a self-authenticating challenge: its key id names a key of
    /// the set and its MAC verifies over this rp id, the statement's
    /// credential, the record's account and the caller's transaction.
    /// Returns the challenge as issued (without its issue time, which no
    /// check uses) and the counter at issue.
    pub(super) fn open_payment_challenge(
        &self,
        keys: &ChallengeKeys,
        a: &PaymentAssertion,
        cred: &CredentialRecord,
        transaction: &Transaction,
    ) -> Result<(PaymentChallenge, u64), Rejection> {
        let fields = Fields::parse(&a.challenge);
        let Some(key) = keys.key(fields.key_id) else {
            return reject(Step::P9Challenge, Reason::ChallengeNotAuthentic);
        };
        let tx_hash = transaction.transaction_hash();
        let display_hash = crypto::sha256(render_transaction(&self.rp_id, transaction).as_bytes());
        let expected = mac(
            key,
            &fields.prefix(),
            &Bound {
                rp_id: &self.rp_id,
                credential_id: &a.credential_id,
                account_handle: &cred.account_handle,
                transaction_hash: &tx_hash,
                display_hash: &display_hash,
            },
        );
        if !crypto::ct_eq(&expected, &a.challenge[MAC]) {
            return reject(Step::P9Challenge, Reason::ChallengeNotAuthentic);
        }
        let (accepted_modalities, require_liveness) =
            match self.payment_requirements(cred, transaction) {
                Ok(r) => r,
                // The policy changed since issuance so that this credential can
                // no longer meet it: what P17 would say.
                Err(_) => {
                    return reject(
                        Step::P17Policy,
                        Reason::PolicyRequires(self.policy.high_value_requirement),
                    )
                }
            };
        Ok((
            PaymentChallenge {
                rp_id: self.rp_id.clone(),
                account_handle: cred.account_handle.clone(),
                credential_id: a.credential_id.clone(),
                challenge: a.challenge,
                transaction: transaction.clone(),
                issued_at: 0,
                expires_at: u64::from(fields.expires_at),
                accepted_modalities,
                require_liveness,
            },
            fields.counter_at_issue,
        ))
    }
}
