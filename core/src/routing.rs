//! Routing a credential to its shard without a lookup table
//! (docs/PROTOCOL.md §4.1.9).
//!
//! Every account of a relying party has a 16-bit *slot*, a hash of its rp id
//! and account handle ([`account_slot`]). The registration challenge carries
//! the slot as `credential_id_prefix` (§4.2), and the verifier accepts a
//! credential only if its id starts with it (`R15`, `A16`, `K12`). So a
//! credential's slot is its id's first two bytes ([`credential_slot`]), a
//! pure function of the id, and all of an account's credentials share it.
//! A deployment of `N` shards (a power of two) keeps slot `s` on shard
//! [`shard_of`]`(s, N)`.

use crate::{
    crypto,
    messages::{CredentialId, DecodeError},
};

/// Domain separator of [`account_slot`].
pub const ACCOUNT_SLOT_DOMAIN: &[u8] = b"biopay/account-slot/v1";

/// The largest shard count: one shard per slot.
pub const MAX_SHARDS: u32 = 1 << 16;

/// The slot of an account: the first two bytes, big-endian, of
/// SHA-256(`"biopay/account-slot/v1"` ‖ 0x00 ‖ `rp_id` ‖ 0x00 ‖
/// `account_handle`). An rp id never contains 0x00 (§4.1.4), so distinct
/// (rp id, account handle) pairs hash distinct inputs.
pub fn account_slot(rp_id: &str, account_handle: &[u8]) -> u16 {
    let digest = crypto::sha256_parts(&[
        ACCOUNT_SLOT_DOMAIN,
        &[0],
        rp_id.as_bytes(),
        &[0],
        account_handle,
    ]);
    u16::from_be_bytes([digest[0], digest[1]])
}

/// The two bytes a registration challenge asks the credential id to start
/// with: [`account_slot`], big-endian.
pub fn credential_id_prefix(rp_id: &str, account_handle: &[u8]) -> [u8; 2] {
    account_slot(rp_id, account_handle).to_be_bytes()
}

/// The id a device gives a new credential (§4.1.3): the registration
/// challenge's `credential_id_prefix`, then `random` (at least 14 bytes so
/// that the id has its 16; devices use 32 random bytes).
pub fn prefixed_credential_id(prefix: [u8; 2], random: &[u8]) -> Result<CredentialId, DecodeError> {
    let mut id = Vec::with_capacity(prefix.len() + random.len());
    id.extend_from_slice(&prefix);
    id.extend_from_slice(random);
    CredentialId::new(id)
}

/// The slot of a credential: its id's first two bytes, big-endian. For a
/// registered credential this is its account's [`account_slot`].
pub fn credential_slot(id: &CredentialId) -> u16 {
    match id.as_bytes() {
        // An id is at least 16 bytes (CredentialId::MIN_LEN).
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => 0,
    }
}

/// A shard count that is not a power of two in 1..=65536.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("shard count {0} is not a power of two in 1..={MAX_SHARDS}")]
pub struct InvalidShardCount(pub u32);

/// Checks a configured shard count: a power of two in 1..=65536. Check it
/// when the configuration is read; [`shard_of`] assumes it.
pub fn valid_shard_count(shards: u32) -> Result<u32, InvalidShardCount> {
    if shards.is_power_of_two() && shards <= MAX_SHARDS {
        Ok(shards)
    } else {
        Err(InvalidShardCount(shards))
    }
}

/// The shard (0-based) of `slot` among `shards` shards: the slot's low bits,
/// `slot & (shards - 1)`, for a count [`valid_shard_count`] accepts.
///
/// Resharding from `N` to `2N` shards moves exactly the slots whose bit `N`
/// (the next bit up) is set, from shard `k` to shard `k + N`; every other
/// slot stays where it is, and no slot moves between two old shards.
///
/// For a count `valid_shard_count` refuses, the answer is still below
/// `shards` (0 for 0 shards) but the spread is uneven: refuse such counts at
/// configuration time.
pub fn shard_of(slot: u16, shards: u32) -> u32 {
    u32::from(slot) & shards.saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(prefix: [u8; 2]) -> CredentialId {
        prefixed_credential_id(prefix, &[0x5a; 32]).unwrap()
    }

    #[test]
    fn a_prefixed_id_is_the_prefix_then_the_random_bytes() {
        let id = prefixed_credential_id([0xe4, 0xfa], &[1; 14]).unwrap();
        assert_eq!(id.as_bytes()[..2], [0xe4, 0xfa]);
        assert_eq!(id.as_bytes()[2..], [1; 14]);
        assert!(prefixed_credential_id([0, 0], &[1; 13]).is_err());
        assert!(prefixed_credential_id([0, 0], &[1; 62]).is_ok());
        assert!(prefixed_credential_id([0, 0], &[1; 63]).is_err());
    }

    /// Known answers computed independently, with Python's hashlib:
    /// `hashlib.sha256(b"biopay/account-slot/v1" + b"\0" + rp.encode()
    /// + b"\0" + handle).digest()[:2]`.
    #[test]
    fn account_slot_known_answers() {
        let cases: [(&str, &[u8], u16); 5] = [
            ("pay.example.com", b"acct", 0xe4fa),
            ("pay.example.com", b"account-7", 0xbcd6),
            ("pay.example.com", b"account-8", 0x54e2),
            ("shop.example.org", b"acct", 0x0ed8),
            ("pay.example.com", &[0xff; 64], 0x980e),
        ];
        for (rp, handle, slot) in cases {
            assert_eq!(account_slot(rp, handle), slot, "{rp} {handle:02x?}");
            assert_eq!(credential_id_prefix(rp, handle), slot.to_be_bytes());
        }
    }

    #[test]
    fn the_separator_keeps_rp_and_account_apart() {
        // Without the 0x00 between them, these two pairs would hash the
        // same bytes.
        assert_ne!(
            account_slot("pay.example.com", b"ab"),
            account_slot("pay.example.coma", b"b")
        );
    }

    #[test]
    fn credential_slot_is_the_ids_first_two_bytes_big_endian() {
        assert_eq!(credential_slot(&id([0x00, 0x00])), 0);
        assert_eq!(credential_slot(&id([0x12, 0x34])), 0x1234);
        assert_eq!(credential_slot(&id([0xff, 0xfe])), 0xfffe);
        assert_eq!(
            credential_slot(&id(credential_id_prefix("pay.example.com", b"acct"))),
            0xe4fa
        );
    }

    #[test]
    fn shard_of_known_answers() {
        let cases: [(u16, u32, u32); 9] = [
            (0xe4fa, 1, 0),
            (0xe4fa, 2, 0),
            (0xe4fa, 4, 2),
            (0xe4fa, 8, 2),
            (0xe4fa, 64, 58),
            (0xe4fa, 65_536, 0xe4fa),
            (0x0001, 2, 1),
            (0xffff, 64, 63),
            (0x0000, 64, 0),
        ];
        for (slot, shards, shard) in cases {
            assert_eq!(shard_of(slot, shards), shard, "{slot:#06x} over {shards}");
        }
    }

    #[test]
    fn valid_shard_counts_are_the_powers_of_two_up_to_65536() {
        for k in 0..=16 {
            assert_eq!(valid_shard_count(1 << k), Ok(1 << k));
        }
        for bad in [0, 3, 6, 12, 48, 65_535, 65_537, 1 << 17, u32::MAX] {
            assert_eq!(valid_shard_count(bad), Err(InvalidShardCount(bad)));
        }
    }

    #[test]
    fn resharding_n_to_2n_moves_exactly_the_slots_with_the_next_bit_set() {
        for k in 0..16 {
            let n = 1u32 << k;
            for slot in 0..=u16::MAX {
                let (before, after) = (shard_of(slot, n), shard_of(slot, 2 * n));
                if u32::from(slot) & n == 0 {
                    assert_eq!(after, before, "{slot:#06x}, {n} -> {}", 2 * n);
                } else {
                    assert_eq!(after, before + n, "{slot:#06x}, {n} -> {}", 2 * n);
                }
            }
        }
    }

    #[test]
    fn an_invalid_count_still_answers_in_range() {
        for shards in [0u32, 3, 6, 100, 1 << 20, u32::MAX] {
            for slot in [0u16, 1, 0x7fff, 0xe4fa, 0xffff] {
                assert!(shard_of(slot, shards) < shards.max(1));
            }
        }
    }
}
