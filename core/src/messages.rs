//! Protocol messages (docs/PROTOCOL.md §4) and their deterministic CBOR form.
//!
//! Every message is a CBOR map with unsigned integer keys. Key 1 is the
//! message kind and key 2 the protocol version; the remaining keys are listed on
//! each type. Decoding is strict: unknown keys, missing keys, wrong types and
//! out-of-range values are errors, and the input must be deterministically
//! encoded (see [`crate::cbor`]).

mod cose_key;

use crate::cbor::{self, CborError, Item};
pub use crate::crypto::Digest;
use crate::serde_hex::ser_hex;
use ciborium::value::{Integer, Value};
pub use cose_key::{cose_key_from_sec1, sec1_from_cose_key};
use serde::Serialize;

/// The protocol version this crate speaks (map key 2 of every message).
pub const PROTOCOL_VERSION: u64 = 1;

/// Length of every challenge, in bytes.
pub const CHALLENGE_LEN: usize = 32;

/// A 32-byte single-use challenge issued by the server.
pub type Challenge = [u8; CHALLENGE_LEN];

/// Why bytes were not accepted as a protocol message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The bytes are not a deterministic CBOR item.
    #[error("{0}")]
    Cbor(#[from] CborError),
    /// The top-level item is not a map.
    #[error("message is not a CBOR map")]
    NotAMap,
    /// A map key is not an integer.
    #[error("map key is not an integer")]
    NonIntegerKey,
    /// A map key this version of the protocol does not define.
    #[error("unknown map key {0}")]
    UnknownKey(i64),
    /// A required field is absent.
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    /// A field has the wrong CBOR type or an out-of-range value.
    #[error("invalid field `{field}`: {reason}")]
    InvalidField {
        /// The field's name in docs/PROTOCOL.md.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The message kind (key 1) is not the one expected.
    #[error("wrong message kind: expected {expected:?}, found {found}")]
    WrongKind {
        /// The kind the caller asked for.
        expected: MessageKind,
        /// The kind value found.
        found: u64,
    },
    /// The protocol version (key 2) is not supported.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u64),
}

/// The kind of a message (map key 1). docs/PROTOCOL.md §4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MessageKind {
    /// [`RegistrationChallenge`], server to device.
    RegistrationChallenge = 1,
    /// [`KeyAttestation`], signed by the device attestation key.
    KeyAttestation = 2,
    /// [`PaymentChallenge`], server to device.
    PaymentChallenge = 3,
    /// [`PaymentAssertion`], signed by the credential key.
    PaymentAssertion = 4,
    /// [`Deregistration`], signed by the credential key.
    Deregistration = 5,
    /// [`EnrollmentChange`], signed by the credential key.
    EnrollmentChange = 6,
    /// [`PlatformKeyRegistration`], signed by a platform-keystore key
    /// attested by the platform (docs/PROTOCOL.md §12.2).
    PlatformKeyRegistration = 7,
    /// [`AppleKeyRegistration`], signed by a Secure Enclave key bound to an
    /// Apple App Attest attestation (docs/PROTOCOL.md §13.8).
    AppleKeyRegistration = 8,
}

impl MessageKind {
    /// Maps the wire value to a kind.
    pub fn from_u64(v: u64) -> Option<Self> {
        Some(match v {
            1 => Self::RegistrationChallenge,
            2 => Self::KeyAttestation,
            3 => Self::PaymentChallenge,
            4 => Self::PaymentAssertion,
            5 => Self::Deregistration,
            6 => Self::EnrollmentChange,
            7 => Self::PlatformKeyRegistration,
            8 => Self::AppleKeyRegistration,
            _ => return None,
        })
    }

    /// The wire value.
    pub fn to_u64(self) -> u64 {
        match self {
            Self::RegistrationChallenge => 1,
            Self::KeyAttestation => 2,
            Self::PaymentChallenge => 3,
            Self::PaymentAssertion => 4,
            Self::Deregistration => 5,
            Self::EnrollmentChange => 6,
            Self::PlatformKeyRegistration => 7,
            Self::AppleKeyRegistration => 8,
        }
    }

    /// Whether the message travels as a COSE_Sign1 statement.
    pub fn is_signed(self) -> bool {
        !matches!(self, Self::RegistrationChallenge | Self::PaymentChallenge)
    }
}

macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $val:expr),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vm])* $variant = $val),+ }
        impl $name {
            /// Maps the wire value to a variant.
            pub fn from_u64(v: u64) -> Option<Self> {
                match v { $($val => Some(Self::$variant),)+ _ => None }
            }
            /// The wire value.
            pub fn to_u64(self) -> u64 {
                match self { $(Self::$variant => $val),+ }
            }
        }
    };
}

wire_enum!(
    /// A biometric modality. docs/PROTOCOL.md §4.1.
    Modality {
        /// A fingerprint sensor.
        Fingerprint = 1,
        /// A face sensor.
        Face = 2,
    }
);

wire_enum!(
    /// Where a key lives; ordered from weakest to strongest. docs/PROTOCOL.md §4.1.
    SecurityLevel {
        /// A key in ordinary software (tests, emulators). Never accepted by default policy.
        Software = 1,
        /// A key inside a trusted execution environment.
        Tee = 2,
        /// A key inside a discrete secure element (StrongBox, Secure Enclave).
        StrongBox = 3,
    }
);

wire_enum!(
    /// The device's verified-boot state, as the TEE observed it. docs/PROTOCOL.md §4.1.
    VerifiedBootState {
        /// Boot chain verified against the manufacturer's key.
        Verified = 1,
        /// Boot chain verified against a user-installed key.
        SelfSigned = 2,
        /// Bootloader unlocked; boot not verified.
        Unverified = 3,
        /// Verification failed.
        Failed = 4,
    }
);

wire_enum!(
    /// The platform keystore that attested a [`PlatformKeyRegistration`]
    /// (docs/PROTOCOL.md §12.2).
    Platform {
        /// Android Keystore (KeyMint / Keymaster key attestation).
        Android = 1,
    }
);

wire_enum!(
    /// The result of the liveness (anti-spoofing) check. docs/PROTOCOL.md §4.1.
    Liveness {
        /// The sensor made no liveness check.
        NotChecked = 0,
        /// A liveness check was made and passed.
        Passed = 1,
    }
);

/// An opaque credential identifier chosen by the TEE (16 to 64 bytes).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct CredentialId(#[serde(serialize_with = "ser_hex")] Vec<u8>);

impl CredentialId {
    /// Smallest accepted length.
    pub const MIN_LEN: usize = 16;
    /// Largest accepted length.
    pub const MAX_LEN: usize = 64;

    /// Wraps bytes, checking the length.
    pub fn new(bytes: Vec<u8>) -> Result<Self, DecodeError> {
        if (Self::MIN_LEN..=Self::MAX_LEN).contains(&bytes.len()) {
            Ok(Self(bytes))
        } else {
            Err(DecodeError::InvalidField {
                field: "credential_id",
                reason: "length must be 16..=64",
            })
        }
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Lower-case hex form, used in logs and URLs.
    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }
}

impl core::fmt::Debug for CredentialId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "CredentialId({})", self.to_hex())
    }
}

/// The transaction a payment approves. docs/PROTOCOL.md §4.3.
///
/// Its canonical encoding (the deterministic CBOR map below) is what the
/// `transaction_hash` of a [`PaymentAssertion`] commits to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Transaction {
    /// Key 1: amount in the currency's minor units (e.g. 8800 = 88.00 CNY).
    pub amount_minor: u64,
    /// Key 2: ISO 4217 alphabetic code, three upper-case letters.
    pub currency: String,
    /// Key 3: the payee's stable identifier at the relying party.
    pub payee_id: String,
    /// Key 4: the payee's display name, shown by the trusted UI.
    pub payee_name: String,
    /// Key 5: the relying party's order identifier.
    pub order_id: String,
    /// Key 6 (optional): a memo shown by the trusted UI.
    pub memo: Option<String>,
}

/// Server to device: start a registration. docs/PROTOCOL.md §4.2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegistrationChallenge {
    /// Key 3: the relying party identifier (a DNS name).
    pub rp_id: String,
    /// Key 4: opaque account handle chosen by the RP (1..=64 bytes, never PII).
    #[serde(serialize_with = "ser_hex")]
    pub account_handle: Vec<u8>,
    /// Key 5: 32 random bytes, single use.
    #[serde(serialize_with = "ser_hex")]
    pub challenge: Challenge,
    /// Key 6: issue time, seconds since the Unix epoch.
    pub issued_at: u64,
    /// Key 7: expiry time, seconds since the Unix epoch.
    pub expires_at: u64,
    /// Key 8: modalities the RP accepts for this credential (sorted, no duplicates).
    pub accepted_modalities: Vec<Modality>,
    /// Key 9: the weakest key storage the RP accepts.
    pub required_assurance: SecurityLevel,
    /// Key 10: the two bytes the new credential's id must start with, the
    /// account's slot (`routing::account_slot`, §4.1.9).
    #[serde(serialize_with = "ser_hex")]
    pub credential_id_prefix: [u8; 2],
}

/// Made in the TEE at registration, signed by the device attestation key,
/// with the attestation certificate chain in the `x5chain` header. docs/PROTOCOL.md §4.3.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyAttestation {
    /// Key 3: SHA-256 of the UTF-8 rp id.
    #[serde(serialize_with = "ser_hex")]
    pub rp_id_hash: Digest,
    /// Key 4: the account handle from the challenge.
    #[serde(serialize_with = "ser_hex")]
    pub account_handle: Vec<u8>,
    /// Key 5: the registration challenge.
    #[serde(serialize_with = "ser_hex")]
    pub challenge: Challenge,
    /// Key 6: the credential public key as a COSE_Key (EC2, P-256, ES256),
    /// carried here as the 65-byte SEC1 uncompressed point.
    #[serde(serialize_with = "ser_hex")]
    pub credential_public_key: Vec<u8>,
    /// Key 7: the credential identifier.
    pub credential_id: CredentialId,
    /// Key 8: modalities the key is bound to (sorted, no duplicates).
    pub modalities: Vec<Modality>,
    /// Key 9: salted per-RP hash of the enrolled template set.
    #[serde(serialize_with = "ser_hex")]
    pub enrollment_epoch: Digest,
    /// Key 10: where the credential key lives.
    pub security_level: SecurityLevel,
    /// Key 11: the device model identifier (also the attestation leaf's subject OU).
    pub device_model: String,
    /// Key 12: verified-boot state.
    pub verified_boot: VerifiedBootState,
    /// Key 13: TEE time, seconds since the Unix epoch.
    pub tee_time: u64,
    /// Key 14: the credential's signature counter at creation.
    pub initial_counter: u64,
}

/// Made by the app at registration of a platform-keystore credential (an
/// Android Keystore key), signed by that key, with the platform's attestation
/// chain in the `x5chain` header. docs/PROTOCOL.md §12.2.
///
/// Unlike [`KeyAttestation`], the app (not a TEE) assembles this message; the
/// credential public key is the attested leaf certificate's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlatformKeyRegistration {
    /// Key 3: SHA-256 of the UTF-8 rp id.
    #[serde(serialize_with = "ser_hex")]
    pub rp_id_hash: Digest,
    /// Key 4: the account handle from the challenge.
    #[serde(serialize_with = "ser_hex")]
    pub account_handle: Vec<u8>,
    /// Key 5: the registration challenge (also the key's attestation challenge).
    #[serde(serialize_with = "ser_hex")]
    pub challenge: Challenge,
    /// Key 6: the credential identifier, chosen by the app.
    pub credential_id: CredentialId,
    /// Key 7: modalities the app bound the key to (sorted, no duplicates).
    pub modalities: Vec<Modality>,
    /// Key 8: the platform whose attestation is in `x5chain`.
    pub platform: Platform,
    /// Key 9: the app's signature counter at creation.
    pub initial_counter: u64,
    /// Key 10: the app's enrollment epoch (its own convention, e.g. a hash of
    /// the key alias generation); carried into every assertion.
    #[serde(serialize_with = "ser_hex")]
    pub enrollment_epoch: Digest,
}

/// Made by the iOS app at registration of a Secure Enclave key, signed by
/// that key (proof of possession), carrying the App Attest attestation whose
/// clientDataHash binds the key, the challenge, the rp id and the credential
/// id (docs/PROTOCOL.md §13.3, §13.8).
///
/// Like [`PlatformKeyRegistration`], the app assembles this message; unlike
/// it, the credential public key travels in the message: Apple attests the
/// App Attest key, and the binding ties the Secure Enclave key to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppleKeyRegistration {
    /// Key 3: SHA-256 of the UTF-8 rp id.
    #[serde(serialize_with = "ser_hex")]
    pub rp_id_hash: Digest,
    /// Key 4: the account handle from the challenge.
    #[serde(serialize_with = "ser_hex")]
    pub account_handle: Vec<u8>,
    /// Key 5: the registration challenge (also in the attested binding).
    #[serde(serialize_with = "ser_hex")]
    pub challenge: Challenge,
    /// Key 6: the credential identifier, chosen by the app.
    pub credential_id: CredentialId,
    /// Key 7: modalities the app bound the key to (sorted, no duplicates).
    pub modalities: Vec<Modality>,
    /// Key 8: the Secure Enclave key, an uncompressed P-256 point (65 bytes).
    #[serde(serialize_with = "ser_hex")]
    pub public_key: Vec<u8>,
    /// Key 9: the app's signature counter at creation.
    pub initial_counter: u64,
    /// Key 10: the app's enrollment epoch; carried into every assertion.
    #[serde(serialize_with = "ser_hex")]
    pub enrollment_epoch: Digest,
    /// Key 11: the App Attest key id (SHA-256 of the App Attest public key).
    #[serde(serialize_with = "ser_hex")]
    pub app_attest_key_id: Digest,
    /// Key 12: the App Attest attestation object, as `attestKey` returned it.
    #[serde(serialize_with = "ser_hex")]
    pub attestation_object: Vec<u8>,
}

/// Longest App Attest attestation object an [`AppleKeyRegistration`] carries.
pub const MAX_APPLE_ATTESTATION_LEN: usize = 32 * 1024;

/// Server to device: approve one transaction. docs/PROTOCOL.md §4.4.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PaymentChallenge {
    /// Key 3: relying party identifier.
    pub rp_id: String,
    /// Key 4: the account the payment is for.
    #[serde(serialize_with = "ser_hex")]
    pub account_handle: Vec<u8>,
    /// Key 5: the credential that must sign.
    pub credential_id: CredentialId,
    /// Key 6: 32 random bytes, single use.
    #[serde(serialize_with = "ser_hex")]
    pub challenge: Challenge,
    /// Key 7: the transaction.
    pub transaction: Transaction,
    /// Key 8: issue time, seconds since the Unix epoch.
    pub issued_at: u64,
    /// Key 9: expiry time, seconds since the Unix epoch.
    pub expires_at: u64,
    /// Key 10: modalities the RP accepts for this payment (sorted, no duplicates).
    pub accepted_modalities: Vec<Modality>,
    /// Key 11: whether a passed liveness check is required.
    pub require_liveness: bool,
}

/// Made in the TEE after a biometric match and the user's confirmation on the
/// trusted UI, signed by the credential key. docs/PROTOCOL.md §4.5.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PaymentAssertion {
    /// Key 3: SHA-256 of the UTF-8 rp id.
    #[serde(serialize_with = "ser_hex")]
    pub rp_id_hash: Digest,
    /// Key 4: the signing credential.
    pub credential_id: CredentialId,
    /// Key 5: the payment challenge.
    #[serde(serialize_with = "ser_hex")]
    pub challenge: Challenge,
    /// Key 6: SHA-256 of the transaction's canonical encoding.
    #[serde(serialize_with = "ser_hex")]
    pub transaction_hash: Digest,
    /// Key 7: SHA-256 of the UTF-8 text the trusted UI displayed.
    #[serde(serialize_with = "ser_hex")]
    pub display_hash: Digest,
    /// Key 8: the modality that matched.
    pub modality: Modality,
    /// Key 9: the matched template, salted per RP (16 bytes).
    #[serde(serialize_with = "ser_hex")]
    pub template_id: [u8; 16],
    /// Key 10: liveness result.
    pub liveness: Liveness,
    /// Key 11: failed match attempts since the last success.
    pub failed_attempts: u32,
    /// Key 12: the credential's signature counter (strictly increasing).
    pub counter: u64,
    /// Key 13: TEE time, seconds since the Unix epoch.
    pub tee_time: u64,
    /// Key 14: the user confirmed the displayed transaction.
    pub user_confirmed: bool,
    /// Key 15: the current enrollment epoch for this RP.
    #[serde(serialize_with = "ser_hex")]
    pub enrollment_epoch: Digest,
}

/// The user removed the credential on the device; signed by the credential
/// key. docs/PROTOCOL.md §4.6.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deregistration {
    /// Key 3: SHA-256 of the UTF-8 rp id.
    #[serde(serialize_with = "ser_hex")]
    pub rp_id_hash: Digest,
    /// Key 4: the credential being removed.
    pub credential_id: CredentialId,
    /// Key 5: the credential's signature counter.
    pub counter: u64,
    /// Key 6: TEE time, seconds since the Unix epoch.
    pub tee_time: u64,
}

/// The enrolled template set changed since registration; signed by the
/// credential key. docs/PROTOCOL.md §4.7.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnrollmentChange {
    /// Key 3: SHA-256 of the UTF-8 rp id.
    #[serde(serialize_with = "ser_hex")]
    pub rp_id_hash: Digest,
    /// Key 4: the affected credential.
    pub credential_id: CredentialId,
    /// Key 5: the epoch at registration.
    #[serde(serialize_with = "ser_hex")]
    pub previous_epoch: Digest,
    /// Key 6: the epoch now.
    #[serde(serialize_with = "ser_hex")]
    pub current_epoch: Digest,
    /// Key 7: the credential's signature counter.
    pub counter: u64,
    /// Key 8: TEE time, seconds since the Unix epoch.
    pub tee_time: u64,
}

// ---------------------------------------------------------------------------
// Encoding

/// A protocol message with a deterministic CBOR form.
pub trait Message: Sized {
    /// The message kind (map key 1).
    const KIND: MessageKind;

    /// The message-specific fields (keys 3 and up).
    fn fields(&self) -> Vec<(u64, Value)>;

    /// Reads the message-specific fields. Every key must be consumed.
    fn from_fields(fields: &mut Fields<'_>) -> Result<Self, DecodeError>;

    /// The deterministic CBOR encoding.
    fn to_cbor(&self) -> Vec<u8> {
        let mut entries = vec![(1, uint(Self::KIND.to_u64())), (2, uint(PROTOCOL_VERSION))];
        entries.extend(self.fields());
        encode_map(entries)
    }

    /// Strictly decodes the deterministic CBOR encoding.
    fn from_cbor(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::from_item(cbor::decode(bytes)?)
    }

    /// Strictly decodes an already parsed CBOR item.
    fn from_item(item: Item<'_>) -> Result<Self, DecodeError> {
        let mut fields = Fields::new(item)?;
        let kind = fields.u64(1, "kind")?;
        if kind != Self::KIND.to_u64() {
            return Err(DecodeError::WrongKind {
                expected: Self::KIND,
                found: kind,
            });
        }
        let version = fields.u64(2, "version")?;
        if version != PROTOCOL_VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let msg = Self::from_fields(&mut fields)?;
        fields.finish()?;
        Ok(msg)
    }
}

/// Reads the kind (key 1) of a message map without decoding the rest.
pub fn peek_kind(value: &Value) -> Option<MessageKind> {
    let Value::Map(entries) = value else {
        return None;
    };
    entries.iter().find_map(|(k, v)| match (k, v) {
        (Value::Integer(k), Value::Integer(v)) if i128::from(*k) == 1 => {
            u64::try_from(*v).ok().and_then(MessageKind::from_u64)
        }
        _ => None,
    })
}

fn encode_map(entries: Vec<(u64, Value)>) -> Vec<u8> {
    let map = Value::Map(entries.into_iter().map(|(k, v)| (uint(k), v)).collect());
    // Messages built by this crate contain no floats, duplicate keys or deep
    // nesting, so deterministic encoding cannot fail.
    cbor::to_deterministic_vec(map).unwrap_or_default()
}

fn uint(v: u64) -> Value {
    Value::Integer(Integer::from(v))
}
fn bytes(v: &[u8]) -> Value {
    Value::Bytes(v.to_vec())
}
fn text(v: &str) -> Value {
    Value::Text(v.to_owned())
}
fn modalities(v: &[Modality]) -> Value {
    Value::Array(v.iter().map(|m| uint(m.to_u64())).collect())
}

/// The fields of a message map being decoded; see [`Message::from_fields`].
/// Keys are integers in increasing order (deterministic CBOR), so fields are
/// taken in key order with a cursor.
pub struct Fields<'a> {
    entries: Vec<(i64, Item<'a>)>,
    taken: Vec<bool>,
}

impl<'a> Fields<'a> {
    fn new(item: Item<'a>) -> Result<Self, DecodeError> {
        let Item::Map(entries) = item else {
            return Err(DecodeError::NotAMap);
        };
        let mut out = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            let k = match k {
                Item::Uint(u) => i64::try_from(u).map_err(|_| DecodeError::NonIntegerKey)?,
                Item::Nint(n) => i64::try_from(n)
                    .map(|n| -1 - n)
                    .map_err(|_| DecodeError::NonIntegerKey)?,
                _ => return Err(DecodeError::NonIntegerKey),
            };
            out.push((k, v));
        }
        let taken = vec![false; out.len()];
        Ok(Self {
            entries: out,
            taken,
        })
    }

    fn finish(self) -> Result<(), DecodeError> {
        match self
            .entries
            .iter()
            .zip(&self.taken)
            .find(|(_, taken)| !**taken)
        {
            Some(((k, _), _)) => Err(DecodeError::UnknownKey(*k)),
            None => Ok(()),
        }
    }

    fn take(&mut self, key: i64) -> Option<Item<'a>> {
        let i = self.entries.iter().position(|(k, _)| *k == key)?;
        let taken = self.taken.get_mut(i)?;
        if *taken {
            return None;
        }
        *taken = true;
        let slot = self.entries.get_mut(i)?;
        Some(std::mem::replace(&mut slot.1, Item::Null))
    }

    fn req(&mut self, key: i64, field: &'static str) -> Result<Item<'a>, DecodeError> {
        self.take(key).ok_or(DecodeError::MissingField(field))
    }

    /// A required unsigned integer.
    pub fn u64(&mut self, key: i64, field: &'static str) -> Result<u64, DecodeError> {
        as_u64(&self.req(key, field)?, field)
    }

    fn u32(&mut self, key: i64, field: &'static str) -> Result<u32, DecodeError> {
        u32::try_from(self.u64(key, field)?).map_err(|_| DecodeError::InvalidField {
            field,
            reason: "exceeds 32 bits",
        })
    }

    fn bool(&mut self, key: i64, field: &'static str) -> Result<bool, DecodeError> {
        match self.req(key, field)? {
            Item::Bool(b) => Ok(b),
            _ => Err(DecodeError::InvalidField {
                field,
                reason: "expected a boolean",
            }),
        }
    }

    fn byte_slice(
        &mut self,
        key: i64,
        field: &'static str,
        min: usize,
        max: usize,
    ) -> Result<&'a [u8], DecodeError> {
        match self.req(key, field)? {
            Item::Bytes(b) if (min..=max).contains(&b.len()) => Ok(b),
            Item::Bytes(_) => Err(DecodeError::InvalidField {
                field,
                reason: "byte string length out of range",
            }),
            _ => Err(DecodeError::InvalidField {
                field,
                reason: "expected a byte string",
            }),
        }
    }

    fn bytes(
        &mut self,
        key: i64,
        field: &'static str,
        min: usize,
        max: usize,
    ) -> Result<Vec<u8>, DecodeError> {
        Ok(self.byte_slice(key, field, min, max)?.to_vec())
    }

    fn array<const N: usize>(
        &mut self,
        key: i64,
        field: &'static str,
    ) -> Result<[u8; N], DecodeError> {
        let b = self.byte_slice(key, field, N, N)?;
        b.try_into().map_err(|_| DecodeError::InvalidField {
            field,
            reason: "byte string length out of range",
        })
    }

    fn array32(&mut self, key: i64, field: &'static str) -> Result<[u8; 32], DecodeError> {
        self.array::<32>(key, field)
    }

    fn array16(&mut self, key: i64, field: &'static str) -> Result<[u8; 16], DecodeError> {
        self.array::<16>(key, field)
    }

    fn text(&mut self, key: i64, field: &'static str) -> Result<String, DecodeError> {
        match self.req(key, field)? {
            Item::Text(t) => Ok(t.to_owned()),
            _ => Err(DecodeError::InvalidField {
                field,
                reason: "expected a text string",
            }),
        }
    }

    fn opt_text(&mut self, key: i64, field: &'static str) -> Result<Option<String>, DecodeError> {
        match self.take(key) {
            None => Ok(None),
            Some(Item::Text(t)) => Ok(Some(t.to_owned())),
            Some(_) => Err(DecodeError::InvalidField {
                field,
                reason: "expected a text string",
            }),
        }
    }

    fn credential_id(&mut self, key: i64) -> Result<CredentialId, DecodeError> {
        CredentialId::new(self.bytes(
            key,
            "credential_id",
            CredentialId::MIN_LEN,
            CredentialId::MAX_LEN,
        )?)
    }

    fn account_handle(&mut self, key: i64) -> Result<Vec<u8>, DecodeError> {
        self.bytes(key, "account_handle", 1, MAX_ACCOUNT_HANDLE_LEN)
    }

    fn rp_id(&mut self, key: i64) -> Result<String, DecodeError> {
        let rp = self.text(key, "rp_id")?;
        validate_rp_id(&rp)?;
        Ok(rp)
    }

    fn modalities(&mut self, key: i64, field: &'static str) -> Result<Vec<Modality>, DecodeError> {
        let Item::Array(items) = self.req(key, field)? else {
            return Err(DecodeError::InvalidField {
                field,
                reason: "expected an array",
            });
        };
        let mut out = Vec::with_capacity(items.len());
        for item in &items {
            let m = Modality::from_u64(as_u64(item, field)?).ok_or(DecodeError::InvalidField {
                field,
                reason: "unknown modality",
            })?;
            out.push(m);
        }
        if out.is_empty() || out.windows(2).any(|w| w[0] >= w[1]) {
            return Err(DecodeError::InvalidField {
                field,
                reason: "must be non-empty, sorted and without duplicates",
            });
        }
        Ok(out)
    }

    fn wire<T>(
        &mut self,
        key: i64,
        field: &'static str,
        f: fn(u64) -> Option<T>,
    ) -> Result<T, DecodeError> {
        f(self.u64(key, field)?).ok_or(DecodeError::InvalidField {
            field,
            reason: "unknown value",
        })
    }
}

fn as_u64(v: &Item<'_>, field: &'static str) -> Result<u64, DecodeError> {
    match v {
        Item::Uint(u) => Ok(*u),
        _ => Err(DecodeError::InvalidField {
            field,
            reason: "expected an unsigned integer",
        }),
    }
}

/// Checks an rp id: a lower-case DNS name of at most 253 characters whose
/// labels are 1..=63 of `a-z`, `0-9` and `-`, neither starting nor ending with
/// `-`, and whose last label is not all digits.
pub fn validate_rp_id(rp: &str) -> Result<(), DecodeError> {
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let ok = !rp.is_empty()
        && rp.len() <= 253
        && rp.split('.').all(label_ok)
        && !rp
            .rsplit('.')
            .next()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err(DecodeError::InvalidField {
            field: "rp_id",
            reason: "must be a lower-case DNS name",
        })
    }
}

/// Characters that must not appear in displayed text: they are invisible,
/// reorder text (bidirectional controls), or render as blanks, so they could
/// make the trusted UI show something other than what is signed.
pub fn is_forbidden_display_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'                      // soft hyphen
            | '\u{034F}'                    // combining grapheme joiner
            | '\u{061C}'                    // Arabic letter mark
            | '\u{115F}' | '\u{1160}'      // Hangul fillers
            | '\u{17B4}' | '\u{17B5}'      // Khmer inherent vowels
            | '\u{180B}'..='\u{180F}'      // Mongolian selectors and vowel separator
            | '\u{200B}'..='\u{200F}'      // zero-width, LRM, RLM
            | '\u{2028}'..='\u{202E}'      // separators, bidi embeddings and overrides
            | '\u{2060}'..='\u{206F}'      // word joiner, invisible operators, bidi isolates
            | '\u{3164}' | '\u{FFA0}'      // Hangul fillers
            | '\u{FE00}'..='\u{FE0F}'      // variation selectors
            | '\u{FEFF}'                    // zero-width no-break space
            | '\u{FFF9}'..='\u{FFFB}'      // interlinear annotation
            | '\u{1D173}'..='\u{1D17A}'    // musical formatting
            | '\u{E0000}'..='\u{E0FFF}'    // tags and variation selectors supplement
        )
}

/// Checks a display string: 1..=max characters, no control, format or
/// bidirectional-override characters (they could forge lines on the trusted UI).
pub fn validate_display_text(s: &str, field: &'static str, max: usize) -> Result<(), DecodeError> {
    let count = s.chars().count();
    if count == 0 || count > max {
        return Err(DecodeError::InvalidField {
            field,
            reason: "length out of range",
        });
    }
    let forbidden = is_forbidden_display_char;
    if s.chars().any(forbidden) {
        return Err(DecodeError::InvalidField {
            field,
            reason: "contains control or bidi characters",
        });
    }
    Ok(())
}

/// The longest account handle, bytes (docs/PROTOCOL.md §4.1.3; at least 1).
pub const MAX_ACCOUNT_HANDLE_LEN: usize = 64;

/// Checks an account handle's length (docs/PROTOCOL.md §4.1.3): 1 to
/// [`MAX_ACCOUNT_HANDLE_LEN`] bytes, as every message that carries one requires.
pub fn validate_account_handle(handle: &[u8]) -> Result<(), DecodeError> {
    if (1..=MAX_ACCOUNT_HANDLE_LEN).contains(&handle.len()) {
        Ok(())
    } else {
        Err(DecodeError::InvalidField {
            field: "account_handle",
            reason: "must be 1 to 64 bytes",
        })
    }
}

/// The largest `amount_minor` (docs/PROTOCOL.md §4.3.2): 2^63 − 1, so that
/// every accepted amount fits the signed 64-bit integers of JSON clients,
/// SQL columns and the JVM.
pub const MAX_AMOUNT_MINOR: u64 = i64::MAX.unsigned_abs();

impl Transaction {
    /// Validates every field (docs/PROTOCOL.md §4.3).
    pub fn validate(&self) -> Result<(), DecodeError> {
        if self.amount_minor == 0 {
            return Err(DecodeError::InvalidField {
                field: "amount_minor",
                reason: "must be positive",
            });
        }
        if self.amount_minor > MAX_AMOUNT_MINOR {
            return Err(DecodeError::InvalidField {
                field: "amount_minor",
                reason: "must be at most 2^63 - 1",
            });
        }
        if self.currency.len() != 3 || !self.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(DecodeError::InvalidField {
                field: "currency",
                reason: "must be three upper-case letters",
            });
        }
        validate_display_text(&self.payee_id, "payee_id", 64)?;
        validate_display_text(&self.payee_name, "payee_name", 64)?;
        validate_display_text(&self.order_id, "order_id", 64)?;
        if let Some(memo) = &self.memo {
            validate_display_text(memo, "memo", 140)?;
        }
        Ok(())
    }

    fn to_value(&self) -> Value {
        let mut entries = vec![
            (uint(1), uint(self.amount_minor)),
            (uint(2), text(&self.currency)),
            (uint(3), text(&self.payee_id)),
            (uint(4), text(&self.payee_name)),
            (uint(5), text(&self.order_id)),
        ];
        if let Some(memo) = &self.memo {
            entries.push((uint(6), text(memo)));
        }
        Value::Map(entries)
    }

    fn from_item(item: Item<'_>) -> Result<Self, DecodeError> {
        let mut f = Fields::new(item)?;
        let tx = Self {
            amount_minor: f.u64(1, "amount_minor")?,
            currency: f.text(2, "currency")?,
            payee_id: f.text(3, "payee_id")?,
            payee_name: f.text(4, "payee_name")?,
            order_id: f.text(5, "order_id")?,
            memo: f.opt_text(6, "memo")?,
        };
        f.finish()?;
        tx.validate()?;
        Ok(tx)
    }

    /// The transaction hash of docs/PROTOCOL.md §4.5 and `P12`: SHA-256 of
    /// [`Transaction::canonical_encoding`]. Devices put it in a
    /// `PaymentAssertion`; the verifier compares it with the issued
    /// transaction's. Every producer and checker calls this one function.
    pub fn transaction_hash(&self) -> Digest {
        crate::crypto::sha256(&self.canonical_encoding())
    }

    /// The canonical encoding: the deterministic CBOR map (keys 1..6),
    /// written directly (the verifier hashes it for every payment, P12).
    pub fn canonical_encoding(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            16 + self.currency.len()
                + self.payee_id.len()
                + self.payee_name.len()
                + self.order_id.len()
                + self.memo.as_ref().map_or(0, |m| m.len() + 4),
        );
        // Keys 1..6 are single-byte unsigned integers, already in order.
        cbor::write_head(&mut out, 5, if self.memo.is_some() { 6 } else { 5 });
        out.push(1);
        cbor::write_head(&mut out, 0, self.amount_minor);
        out.push(2);
        cbor::write_text(&mut out, &self.currency);
        out.push(3);
        cbor::write_text(&mut out, &self.payee_id);
        out.push(4);
        cbor::write_text(&mut out, &self.payee_name);
        out.push(5);
        cbor::write_text(&mut out, &self.order_id);
        if let Some(memo) = &self.memo {
            out.push(6);
            cbor::write_text(&mut out, memo);
        }
        out
    }

    /// Strictly decodes a canonical encoding.
    pub fn from_canonical(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::from_item(cbor::decode(bytes)?)
    }
}

fn check_window(issued_at: u64, expires_at: u64) -> Result<(), DecodeError> {
    if expires_at <= issued_at {
        return Err(DecodeError::InvalidField {
            field: "expires_at",
            reason: "must be after issued_at",
        });
    }
    Ok(())
}

impl Message for RegistrationChallenge {
    const KIND: MessageKind = MessageKind::RegistrationChallenge;
    fn fields(&self) -> Vec<(u64, Value)> {
        vec![
            (3, text(&self.rp_id)),
            (4, bytes(&self.account_handle)),
            (5, bytes(&self.challenge)),
            (6, uint(self.issued_at)),
            (7, uint(self.expires_at)),
            (8, modalities(&self.accepted_modalities)),
            (9, uint(self.required_assurance.to_u64())),
            (10, bytes(&self.credential_id_prefix)),
        ]
    }
    fn from_fields(f: &mut Fields<'_>) -> Result<Self, DecodeError> {
        let m = Self {
            rp_id: f.rp_id(3)?,
            account_handle: f.account_handle(4)?,
            challenge: f.array32(5, "challenge")?,
            issued_at: f.u64(6, "issued_at")?,
            expires_at: f.u64(7, "expires_at")?,
            accepted_modalities: f.modalities(8, "accepted_modalities")?,
            required_assurance: f.wire(9, "required_assurance", SecurityLevel::from_u64)?,
            credential_id_prefix: f.array::<2>(10, "credential_id_prefix")?,
        };
        check_window(m.issued_at, m.expires_at)?;
        Ok(m)
    }
}

impl Message for KeyAttestation {
    const KIND: MessageKind = MessageKind::KeyAttestation;
    fn fields(&self) -> Vec<(u64, Value)> {
        vec![
            (3, bytes(&self.rp_id_hash)),
            (4, bytes(&self.account_handle)),
            (5, bytes(&self.challenge)),
            (6, cose_key_from_sec1(&self.credential_public_key)),
            (7, bytes(self.credential_id.as_bytes())),
            (8, modalities(&self.modalities)),
            (9, bytes(&self.enrollment_epoch)),
            (10, uint(self.security_level.to_u64())),
            (11, text(&self.device_model)),
            (12, uint(self.verified_boot.to_u64())),
            (13, uint(self.tee_time)),
            (14, uint(self.initial_counter)),
        ]
    }
    fn from_fields(f: &mut Fields<'_>) -> Result<Self, DecodeError> {
        let m = Self {
            rp_id_hash: f.array32(3, "rp_id_hash")?,
            account_handle: f.account_handle(4)?,
            challenge: f.array32(5, "challenge")?,
            credential_public_key: sec1_from_cose_key(
                f.req(6, "credential_public_key")?.to_value(),
            )?,
            credential_id: f.credential_id(7)?,
            modalities: f.modalities(8, "modalities")?,
            enrollment_epoch: f.array32(9, "enrollment_epoch")?,
            security_level: f.wire(10, "security_level", SecurityLevel::from_u64)?,
            device_model: f.text(11, "device_model")?,
            verified_boot: f.wire(12, "verified_boot", VerifiedBootState::from_u64)?,
            tee_time: f.u64(13, "tee_time")?,
            initial_counter: f.u64(14, "initial_counter")?,
        };
        validate_display_text(&m.device_model, "device_model", 64)?;
        Ok(m)
    }
}

impl Message for PaymentChallenge {
    const KIND: MessageKind = MessageKind::PaymentChallenge;
    fn fields(&self) -> Vec<(u64, Value)> {
        vec![
            (3, text(&self.rp_id)),
            (4, bytes(&self.account_handle)),
            (5, bytes(self.credential_id.as_bytes())),
            (6, bytes(&self.challenge)),
            (7, self.transaction.to_value()),
            (8, uint(self.issued_at)),
            (9, uint(self.expires_at)),
            (10, modalities(&self.accepted_modalities)),
            (11, Value::Bool(self.require_liveness)),
        ]
    }
    fn from_fields(f: &mut Fields<'_>) -> Result<Self, DecodeError> {
        let m = Self {
            rp_id: f.rp_id(3)?,
            account_handle: f.account_handle(4)?,
            credential_id: f.credential_id(5)?,
            challenge: f.array32(6, "challenge")?,
            transaction: Transaction::from_item(f.req(7, "transaction")?)?,
            issued_at: f.u64(8, "issued_at")?,
            expires_at: f.u64(9, "expires_at")?,
            accepted_modalities: f.modalities(10, "accepted_modalities")?,
            require_liveness: f.bool(11, "require_liveness")?,
        };
        check_window(m.issued_at, m.expires_at)?;
        Ok(m)
    }
}

impl Message for PaymentAssertion {
    const KIND: MessageKind = MessageKind::PaymentAssertion;
    fn fields(&self) -> Vec<(u64, Value)> {
        vec![
            (3, bytes(&self.rp_id_hash)),
            (4, bytes(self.credential_id.as_bytes())),
            (5, bytes(&self.challenge)),
            (6, bytes(&self.transaction_hash)),
            (7, bytes(&self.display_hash)),
            (8, uint(self.modality.to_u64())),
            (9, bytes(&self.template_id)),
            (10, uint(self.liveness.to_u64())),
            (11, uint(u64::from(self.failed_attempts))),
            (12, uint(self.counter)),
            (13, uint(self.tee_time)),
            (14, Value::Bool(self.user_confirmed)),
            (15, bytes(&self.enrollment_epoch)),
        ]
    }
    fn from_fields(f: &mut Fields<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            rp_id_hash: f.array32(3, "rp_id_hash")?,
            credential_id: f.credential_id(4)?,
            challenge: f.array32(5, "challenge")?,
            transaction_hash: f.array32(6, "transaction_hash")?,
            display_hash: f.array32(7, "display_hash")?,
            modality: f.wire(8, "modality", Modality::from_u64)?,
            template_id: f.array16(9, "template_id")?,
            liveness: f.wire(10, "liveness", Liveness::from_u64)?,
            failed_attempts: f.u32(11, "failed_attempts")?,
            counter: f.u64(12, "counter")?,
            tee_time: f.u64(13, "tee_time")?,
            user_confirmed: f.bool(14, "user_confirmed")?,
            enrollment_epoch: f.array32(15, "enrollment_epoch")?,
        })
    }
}

impl Message for Deregistration {
    const KIND: MessageKind = MessageKind::Deregistration;
    fn fields(&self) -> Vec<(u64, Value)> {
        vec![
            (3, bytes(&self.rp_id_hash)),
            (4, bytes(self.credential_id.as_bytes())),
            (5, uint(self.counter)),
            (6, uint(self.tee_time)),
        ]
    }
    fn from_fields(f: &mut Fields<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            rp_id_hash: f.array32(3, "rp_id_hash")?,
            credential_id: f.credential_id(4)?,
            counter: f.u64(5, "counter")?,
            tee_time: f.u64(6, "tee_time")?,
        })
    }
}

impl Message for EnrollmentChange {
    const KIND: MessageKind = MessageKind::EnrollmentChange;
    fn fields(&self) -> Vec<(u64, Value)> {
        vec![
            (3, bytes(&self.rp_id_hash)),
            (4, bytes(self.credential_id.as_bytes())),
            (5, bytes(&self.previous_epoch)),
            (6, bytes(&self.current_epoch)),
            (7, uint(self.counter)),
            (8, uint(self.tee_time)),
        ]
    }
    fn from_fields(f: &mut Fields<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            rp_id_hash: f.array32(3, "rp_id_hash")?,
            credential_id: f.credential_id(4)?,
            previous_epoch: f.array32(5, "previous_epoch")?,
            current_epoch: f.array32(6, "current_epoch")?,
            counter: f.u64(7, "counter")?,
            tee_time: f.u64(8, "tee_time")?,
        })
    }
}

impl Message for AppleKeyRegistration {
    const KIND: MessageKind = MessageKind::AppleKeyRegistration;
    fn fields(&self) -> Vec<(u64, Value)> {
        vec![
            (3, bytes(&self.rp_id_hash)),
            (4, bytes(&self.account_handle)),
            (5, bytes(&self.challenge)),
            (6, bytes(self.credential_id.as_bytes())),
            (7, modalities(&self.modalities)),
            (8, bytes(&self.public_key)),
            (9, uint(self.initial_counter)),
            (10, bytes(&self.enrollment_epoch)),
            (11, bytes(&self.app_attest_key_id)),
            (12, bytes(&self.attestation_object)),
        ]
    }
    fn from_fields(f: &mut Fields<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            rp_id_hash: f.array32(3, "rp_id_hash")?,
            account_handle: f.account_handle(4)?,
            challenge: f.array32(5, "challenge")?,
            credential_id: f.credential_id(6)?,
            modalities: f.modalities(7, "modalities")?,
            public_key: f.bytes(8, "public_key", 65, 65)?,
            initial_counter: f.u64(9, "initial_counter")?,
            enrollment_epoch: f.array32(10, "enrollment_epoch")?,
            app_attest_key_id: f.array32(11, "app_attest_key_id")?,
            attestation_object: f.bytes(12, "attestation_object", 1, MAX_APPLE_ATTESTATION_LEN)?,
        })
    }
}

impl Message for PlatformKeyRegistration {
    const KIND: MessageKind = MessageKind::PlatformKeyRegistration;
    fn fields(&self) -> Vec<(u64, Value)> {
        vec![
            (3, bytes(&self.rp_id_hash)),
            (4, bytes(&self.account_handle)),
            (5, bytes(&self.challenge)),
            (6, bytes(self.credential_id.as_bytes())),
            (7, modalities(&self.modalities)),
            (8, uint(self.platform.to_u64())),
            (9, uint(self.initial_counter)),
            (10, bytes(&self.enrollment_epoch)),
        ]
    }
    fn from_fields(f: &mut Fields<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            rp_id_hash: f.array32(3, "rp_id_hash")?,
            account_handle: f.account_handle(4)?,
            challenge: f.array32(5, "challenge")?,
            credential_id: f.credential_id(6)?,
            modalities: f.modalities(7, "modalities")?,
            platform: f.wire(8, "platform", Platform::from_u64)?,
            initial_counter: f.u64(9, "initial_counter")?,
            enrollment_epoch: f.array32(10, "enrollment_epoch")?,
        })
    }
}
