//! Shard routing (docs/ARCHITECTURE.md, "Shards"): which of N stores holds
//! an account's credentials. An account's slot is a pure function of the
//! relying party and the account handle; a credential id starts with its
//! account's slot (2 bytes, big-endian), so a server routes any statement to
//! its shard from the id alone, without a lookup table. A deployment of N
//! shards (N a power of two, at most 65,536) keeps slot `s` on shard
//! `s & (N - 1)`: going from N to 2N splits every shard in two and moves no
//! credential between surviving pairs.

use crate::{crypto::sha256_parts, CredentialId};

/// The domain separation tag of [`account_slot`].
const ACCOUNT_SLOT_TAG: &[u8] = b"biopay/account-slot/v1";

/// The account's slot: the first two bytes (big-endian) of
/// SHA-256("biopay/account-slot/v1" || 0x00 || rp_id || 0x00 || account_handle).
pub fn account_slot(rp_id: &str, account_handle: &[u8]) -> u16 {
    let d = sha256_parts(&[
        ACCOUNT_SLOT_TAG,
        &[0],
        rp_id.as_bytes(),
        &[0],
        account_handle,
    ]);
    u16::from_be_bytes([d[0], d[1]])
}

/// The slot a credential id carries: its first two bytes, big-endian (ids
/// are at least 16 bytes long).
pub fn credential_slot(id: &CredentialId) -> u16 {
    match id.as_bytes() {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => 0,
    }
}

/// The shard of `slot` among `shards` (a power of two): `slot & (shards - 1)`.
pub fn shard_of(slot: u16, shards: u32) -> u32 {
    u32::from(slot) & shards.wrapping_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_is_the_first_two_bytes_of_the_tagged_hash() {
        let d = crate::crypto::sha256(b"biopay/account-slot/v1\0pay.example.com\0account-7");
        assert_eq!(
            account_slot("pay.example.com", b"account-7"),
            u16::from_be_bytes([d[0], d[1]])
        );
        // The separators keep (rp, account) pairs apart.
        assert_ne!(account_slot("a", b"bc"), account_slot("ab", b"c"));
    }

    #[test]
    fn credential_slot_and_shard() {
        let id = CredentialId::new([vec![0x12, 0x35], vec![0; 30]].concat()).unwrap();
        assert_eq!(credential_slot(&id), 0x1235);
        assert_eq!(shard_of(0x1235, 1), 0);
        assert_eq!(shard_of(0x1235, 2), 1);
        assert_eq!(shard_of(0x1235, 64), 0x35);
        assert_eq!(shard_of(0xffff, 65_536), 0xffff);
    }
}
