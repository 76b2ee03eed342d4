//! The device's persistent state and its file.
//!
//! One file, `tee-state.bin`, in the device's state directory:
//! `MAGIC (8 bytes) || CBOR(State) || SHA-256(MAGIC || CBOR)`. The checksum
//! catches truncation and corruption (it is not a defence against an attacker
//! with file access; this is a simulator). Writes are atomic: a temporary file
//! with mode 0600 is written and fsynced, then renamed over the old file, and
//! the directory is fsynced.

use crate::{durable, error::TeeError};
use biopay_core::{crypto::sha256_parts, Modality, SecurityLevel, VerifiedBootState};
use serde::{Deserialize, Serialize};
use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};
use zeroize::Zeroizing;

/// The state file's name inside the state directory.
pub(crate) const STATE_FILE: &str = "tee-state.bin";
const TMP_FILE: &str = "tee-state.bin.tmp";
const MAGIC: &[u8; 8] = b"BPTEE\x00\x00\x01";
/// The current format version.
pub(crate) const FORMAT: u32 = 1;

/// An enrolled biometric template.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Template {
    #[serde(with = "wire")]
    pub modality: Modality,
    /// The finger's label (`None` for the face).
    pub label: Option<String>,
    /// The template's random id (never leaves the TEE unsalted).
    #[serde(with = "bytes")]
    pub id: [u8; 32],
}

/// A credential on the device.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Credential {
    pub rp_id: String,
    #[serde(with = "bytes")]
    pub account_handle: Vec<u8>,
    #[serde(with = "bytes")]
    pub credential_id: Vec<u8>,
    #[serde(with = "wire_vec")]
    pub modalities: Vec<Modality>,
    #[serde(with = "bytes")]
    pub enrollment_epoch: [u8; 32],
    #[serde(with = "wire")]
    pub security_level: SecurityLevel,
    /// SEC1 uncompressed public key.
    #[serde(with = "bytes")]
    pub public_key: Vec<u8>,
    /// The private scalar, sealed (see [`crate::crypto::seal`]).
    #[serde(with = "bytes")]
    pub sealed_key: Vec<u8>,
    pub counter: u64,
}

/// A key of the KeyMint mode ([`crate::SoftwareTee::keymint_generate_key`]).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeymintKey {
    pub alias: String,
    /// SEC1 uncompressed public key.
    #[serde(with = "bytes")]
    pub public_key: Vec<u8>,
    /// The private scalar, sealed under the alias (see [`crate::crypto::seal`]).
    #[serde(with = "bytes")]
    pub sealed_key: Vec<u8>,
    /// The enrolled-template set the key is bound to (an enrollment epoch).
    #[serde(with = "bytes")]
    pub enrollment: [u8; 32],
    pub strong_box: bool,
    /// Set for good when a template was added or removed after generation
    /// (as Android's `setInvalidatedByBiometricEnrollment`).
    #[serde(default)]
    pub invalidated: bool,
}

/// Biometric lockout bookkeeping.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Lockout {
    /// Failed attempts since the last success (or passcode reset).
    pub consecutive_failures: u32,
    /// End of a timed lockout, TEE time.
    pub locked_until: Option<u64>,
    /// Locked until the passcode is entered.
    pub permanent: bool,
}

/// Everything the device keeps.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct State {
    pub format: u32,
    pub vendor_name: String,
    pub model_id: String,
    #[serde(with = "wire")]
    pub security_level: SecurityLevel,
    #[serde(with = "wire")]
    pub verified_boot: VerifiedBootState,
    pub lockout_after: u32,
    pub lockout_secs: u64,
    pub permanent_after: u32,
    pub invalidate_on_enrollment_change: bool,
    #[serde(with = "secret32")]
    pub root_secret: Zeroizing<[u8; 32]>,
    #[serde(with = "secret32")]
    pub attestation_key: Zeroizing<[u8; 32]>,
    pub attestation_chain: Vec<Der>,
    pub templates: Vec<Template>,
    pub lockout: Lockout,
    pub credentials: Vec<Credential>,
    /// The deterministic-RNG seed, when the device was provisioned with one.
    #[serde(with = "opt_bytes")]
    pub rng_seed: Option<Zeroizing<Vec<u8>>>,
    /// Incremented and persisted at each `open`, selecting a fresh seeded stream.
    pub rng_session: u64,
    /// The attestation key's KeyMint CA certificate and the model's KeyMint
    /// intermediate, DER (empty for devices provisioned before KeyMint mode).
    #[serde(default)]
    pub keymint_chain: Vec<Der>,
    /// The serial of the KeyMint CA certificate.
    #[serde(default, with = "opt_bytes")]
    pub keymint_ca_serial: Option<[u8; 16]>,
    /// KeyMint-mode keys.
    #[serde(default)]
    pub keymint_keys: Vec<KeymintKey>,
}

/// A DER certificate.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct Der(#[serde(with = "bytes")] pub Vec<u8>);

impl State {
    /// Writes the state atomically into `dir` (created if needed).
    pub(crate) fn save(&self, dir: &Path) -> Result<(), TeeError> {
        fs::create_dir_all(dir).map_err(TeeError::io("creating state directory", dir))?;
        let bytes = self.encode()?;
        durable::replace(dir, &dir.join(TMP_FILE), &dir.join(STATE_FILE), &bytes)?;
        Ok(())
    }

    /// The state file's bytes: MAGIC, the CBOR state, its SHA-256.
    ///
    /// The buffer holds the root secret, the attestation key and the RNG
    /// seed, so it is allocated once at its final size (measured by a first,
    /// counting pass) and written through [`FixedBuf`], which refuses to grow
    /// it: a growing `Vec` copies itself and frees the old block unzeroized.
    pub(crate) fn encode(&self) -> Result<Zeroizing<Vec<u8>>, TeeError> {
        let encoding = |e: &dyn std::fmt::Display| TeeError::CorruptState(format!("encoding: {e}"));
        let mut size = ByteCount(0);
        ciborium::into_writer(self, &mut size).map_err(|e| encoding(&e))?;
        let total = MAGIC
            .len()
            .checked_add(size.0)
            .and_then(|n| n.checked_add(32))
            .ok_or_else(|| TeeError::CorruptState("encoding: state too large".into()))?;
        let mut bytes = Zeroizing::new(Vec::with_capacity(total));
        let mut out = FixedBuf(&mut bytes);
        out.write_all(MAGIC).map_err(|e| encoding(&e))?;
        ciborium::into_writer(self, &mut out).map_err(|e| encoding(&e))?;
        let sum = sha256_parts(&[&bytes]);
        FixedBuf(&mut bytes)
            .write_all(&sum)
            .map_err(|e| encoding(&e))?;
        Ok(bytes)
    }

    /// Reads and checks the state file in `dir`.
    pub(crate) fn load(dir: &Path) -> Result<Self, TeeError> {
        let path = dir.join(STATE_FILE);
        let bytes = durable::read_secret(&path).map_err(TeeError::io("reading", &path))?;
        Self::decode(&bytes)
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, TeeError> {
        let corrupt = |m: &str| TeeError::CorruptState(m.to_owned());
        if bytes.len() < MAGIC.len() + 32 {
            return Err(corrupt("file too short (truncated?)"));
        }
        if !bytes.starts_with(MAGIC) {
            return Err(corrupt("not a biopay software-TEE state file"));
        }
        let (body, sum) = bytes.split_at(bytes.len() - 32);
        if !biopay_core::crypto::ct_eq(&sha256_parts(&[body]), sum) {
            return Err(corrupt("checksum mismatch (truncated or corrupted)"));
        }
        // ciborium reads byte strings (the secrets among them) through this
        // scratch buffer; from_reader's own is an unzeroized stack array.
        let mut scratch = Zeroizing::new([0u8; 4096]);
        let state: State =
            ciborium::de::from_reader_with_buffer(&body[MAGIC.len()..], scratch.as_mut_slice())
                .map_err(|e| TeeError::CorruptState(format!("decoding: {e}")))?;
        if state.format != FORMAT {
            return Err(TeeError::UnsupportedStateVersion(state.format));
        }
        state.check()?;
        Ok(state)
    }

    fn check(&self) -> Result<(), TeeError> {
        let corrupt = |m: &str| Err(TeeError::CorruptState(m.to_owned()));
        if self.attestation_chain.len() < 2 {
            return corrupt("attestation chain too short");
        }
        for c in &self.credentials {
            if biopay_core::CredentialId::new(c.credential_id.clone()).is_err()
                || !biopay_core::crypto::is_valid_p256_point(&c.public_key)
                || c.modalities.is_empty()
            {
                return corrupt("malformed credential record");
            }
        }
        for k in &self.keymint_keys {
            if !biopay_core::crypto::is_valid_p256_point(&k.public_key) {
                return corrupt("malformed KeyMint key record");
            }
        }
        Ok(())
    }
}

/// A writer that only counts the bytes written (the sizing pass of
/// [`State::encode`]).
struct ByteCount(usize);

impl Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 = self.0.saturating_add(buf.len());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A writer into the spare capacity of a `Vec` that never grows it: a write
/// that does not fit fails instead of reallocating (which would leave a copy
/// of the secrets already written in freed memory).
struct FixedBuf<'a>(&'a mut Vec<u8>);

impl Write for FixedBuf<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() > self.0.capacity().saturating_sub(self.0.len()) {
            return Err(std::io::Error::other(
                "secret buffer full: refusing to reallocate it",
            ));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Copies every regular file of `from` into `to` (created if needed), with mode 0600.
pub(crate) fn copy_dir(from: &Path, to: &Path) -> Result<(), TeeError> {
    fs::create_dir_all(to).map_err(TeeError::io("creating directory", to))?;
    for entry in fs::read_dir(from).map_err(TeeError::io("listing", from))? {
        let entry = entry.map_err(TeeError::io("listing", from))?;
        let src: PathBuf = entry.path();
        if !entry
            .file_type()
            .map_err(TeeError::io("inspecting", &src))?
            .is_file()
            || entry.file_name() == TMP_FILE
        {
            continue;
        }
        let bytes = durable::read_secret(&src).map_err(TeeError::io("reading", &src))?;
        let dst = to.join(entry.file_name());
        durable::write_and_rename(&to.join(TMP_FILE), &dst, &bytes)?;
    }
    Ok(durable::sync_dir(to)?)
}

/// Byte strings as CBOR byte strings (not arrays of integers).
mod bytes {
    use serde::{de, Deserializer, Serializer};

    pub fn serialize<S: Serializer, T: AsRef<[u8]>>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v.as_ref())
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: TryFrom<Vec<u8>>>(
        d: D,
    ) -> Result<T, D::Error> {
        let v = d.deserialize_byte_buf(Visitor)?;
        T::try_from(v).map_err(|_| de::Error::custom("byte string of the wrong length"))
    }

    pub(super) struct Visitor;

    impl<'de> de::Visitor<'de> for Visitor {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.write_str("a byte string")
        }
        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
    }
}

/// 32-byte secrets; the intermediate buffer is zeroized.
mod secret32 {
    use serde::{de, Deserializer, Serializer};
    use zeroize::Zeroizing;

    pub fn serialize<S: Serializer>(v: &Zeroizing<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v.as_ref())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Zeroizing<[u8; 32]>, D::Error> {
        let v = Zeroizing::new(d.deserialize_byte_buf(super::bytes::Visitor)?);
        let mut out = Zeroizing::new([0u8; 32]);
        if v.len() != 32 {
            return Err(de::Error::custom("secret must be 32 bytes"));
        }
        out.copy_from_slice(&v);
        Ok(out)
    }
}

/// Optional byte strings.
mod opt_bytes {
    use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Deserialize)]
    #[serde(transparent)]
    struct B(#[serde(with = "super::bytes")] Vec<u8>);

    /// Borrowed, so that serializing a secret (the RNG seed) makes no copy.
    #[derive(Serialize)]
    #[serde(transparent)]
    struct BorrowedB<'a>(#[serde(with = "super::bytes")] &'a [u8]);

    pub fn serialize<S: Serializer, T: AsRef<[u8]>>(
        v: &Option<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_some(&BorrowedB(v.as_ref())),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: TryFrom<Vec<u8>>>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        match Option::<B>::deserialize(d)? {
            Some(B(v)) => T::try_from(v)
                .map(Some)
                .map_err(|_| de::Error::custom("byte string of the wrong length")),
            None => Ok(None),
        }
    }
}

/// Protocol enums by their wire value.
pub(crate) trait Wire: Sized + Copy {
    fn to_wire(self) -> u64;
    fn from_wire(v: u64) -> Option<Self>;
}

macro_rules! wire_impl {
    ($($t:ty),*) => {$(
        impl Wire for $t {
            fn to_wire(self) -> u64 { self.to_u64() }
            fn from_wire(v: u64) -> Option<Self> { Self::from_u64(v) }
        }
    )*};
}
wire_impl!(Modality, SecurityLevel, VerifiedBootState);

mod wire {
    use super::Wire;
    use serde::{de, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer, T: Wire>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(v.to_wire())
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: Wire>(d: D) -> Result<T, D::Error> {
        T::from_wire(u64::deserialize(d)?).ok_or_else(|| de::Error::custom("unknown enum value"))
    }
}

mod wire_vec {
    use super::Wire;
    use serde::{de, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer, T: Wire>(v: &[T], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|m| m.to_wire()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: Wire>(d: D) -> Result<Vec<T>, D::Error> {
        Vec::<u64>::deserialize(d)?
            .into_iter()
            .map(|v| T::from_wire(v).ok_or_else(|| de::Error::custom("unknown enum value")))
            .collect()
    }
}
