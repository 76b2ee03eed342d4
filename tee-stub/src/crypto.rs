//! The software TEE's crypto seam: randomness, key derivation (HKDF-SHA256),
//! P-256 keys and signatures (p256, RFC 6979 deterministic nonces) and key
//! sealing (AES-256-GCM, ring). Nothing else in the crate touches key bytes.

use crate::error::TeeError;
use biopay_core::{cose, DangerDeterministicRandom, Random, SystemRandom};
use hkdf::Hkdf;
use p256::ecdsa::{signature::Signer, Signature, SigningKey};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

/// HKDF salt of the sealing key (info = the rp id).
pub(crate) const SEAL_SALT: &[u8] = b"biopay-tee-stub seal v1";
/// HKDF salt of the per-RP salts (info = label || rp id). Distinct from
/// [`SEAL_SALT`] so that no per-RP salt can equal a sealing key.
const RP_SALT_SALT: &[u8] = b"biopay-tee-stub rp salts v1";
/// HKDF salt of the vendor PKI keys and serial numbers (ikm = the vendor seed).
pub(crate) const PKI_SALT: &[u8] = b"biopay-tee-stub vendor pki v1";

/// HKDF salt of the simulated App Attest PKI keys and randomness (ikm = the
/// service seed).
pub(crate) const APP_ATTEST_SALT: &[u8] = b"biopay-tee-stub app attest v1";

/// A 32-byte secret, zeroized on drop.
pub(crate) type Secret32 = Zeroizing<[u8; 32]>;

/// The TEE's randomness: the system CSPRNG, or a seeded deterministic stream.
pub(crate) enum TeeRng {
    System(SystemRandom),
    Seeded(DangerDeterministicRandom),
}

impl TeeRng {
    /// The system generator (`seed == None`), or the deterministic stream of
    /// `seed` for `session`. Session 0 (provisioning) is exactly
    /// `DangerDeterministicRandom::new(seed)`; every later session (one per
    /// [`crate::SoftwareTee::open`], counted in the persisted state) draws from
    /// a distinct stream, so no value (in particular no AES-GCM nonce) repeats
    /// across reopenings.
    pub(crate) fn new(seed: Option<&[u8]>, session: u64) -> Self {
        match seed {
            None => Self::System(SystemRandom::new()),
            Some(seed) if session == 0 => Self::Seeded(DangerDeterministicRandom::new(seed)),
            Some(seed) => {
                const LABEL: &[u8] = b"/biopay-tee-stub session/";
                let session = session.to_be_bytes();
                // Sized once: a growing Vec would leave copies of the seed.
                let mut s =
                    Zeroizing::new(Vec::with_capacity(seed.len() + LABEL.len() + session.len()));
                s.extend_from_slice(seed);
                s.extend_from_slice(LABEL);
                s.extend_from_slice(&session);
                Self::Seeded(DangerDeterministicRandom::new(&s))
            }
        }
    }

    pub(crate) fn fill(&self, dest: &mut [u8]) -> Result<(), TeeError> {
        match self {
            Self::System(r) => r.fill(dest)?,
            Self::Seeded(r) => r.fill(dest)?,
        }
        Ok(())
    }

    pub(crate) fn array<const N: usize>(&self) -> Result<[u8; N], TeeError> {
        let mut out = [0u8; N];
        self.fill(&mut out)?;
        Ok(out)
    }

    pub(crate) fn secret32(&self) -> Result<Secret32, TeeError> {
        let mut out = Zeroizing::new([0u8; 32]);
        self.fill(out.as_mut())?;
        Ok(out)
    }
}

/// HKDF-SHA256 with `info` the concatenation of `info`, 32 bytes out.
pub(crate) fn hkdf32(salt: &[u8], ikm: &[u8], info: &[&[u8]]) -> Secret32 {
    let mut out = Zeroizing::new([0u8; 32]);
    // Expanding to 32 bytes cannot fail: HKDF-SHA256 allows up to 255 * 32 bytes.
    let _ = Hkdf::<Sha256>::new(Some(salt), ikm).expand_multi_info(info, out.as_mut());
    out
}

/// A per-RP salt derived from the device root secret: `label` is `b"template"`
/// or `b"epoch"`.
pub(crate) fn rp_salt(root_secret: &[u8], label: &[u8], rp_id: &str) -> Secret32 {
    hkdf32(RP_SALT_SALT, root_secret, &[label, rp_id.as_bytes()])
}

/// A P-256 signing key from its 32-byte scalar.
pub(crate) fn p256_key(scalar: &[u8]) -> Result<SigningKey, TeeError> {
    if scalar.len() != 32 {
        return Err(TeeError::Crypto("P-256 private key must be 32 bytes"));
    }
    SigningKey::from_slice(scalar).map_err(|_| TeeError::Crypto("invalid P-256 private key"))
}

/// The 32-byte scalar of a signing key.
pub(crate) fn p256_scalar(key: &SigningKey) -> Secret32 {
    let mut bytes = key.to_bytes();
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&bytes);
    let raw: &mut [u8] = &mut bytes;
    raw.zeroize();
    out
}

/// A fresh P-256 key: scalars are drawn from `rng` until one is in range
/// (all but a 2^-32 fraction of draws are).
pub(crate) fn generate_p256(rng: &TeeRng) -> Result<SigningKey, TeeError> {
    for _ in 0..16 {
        let candidate = rng.secret32()?;
        if let Ok(key) = SigningKey::from_slice(candidate.as_ref()) {
            return Ok(key);
        }
    }
    Err(TeeError::Crypto("could not generate a P-256 key"))
}

/// A P-256 key derived deterministically: HKDF-SHA256(salt, ikm, info || counter)
/// until the output is a valid scalar.
pub(crate) fn derive_p256(salt: &[u8], ikm: &[u8], info: &[&[u8]]) -> Result<SigningKey, TeeError> {
    for counter in 0u8..16 {
        let mut parts = info.to_vec();
        let c = [counter];
        parts.push(&c);
        let candidate = hkdf32(salt, ikm, &parts);
        if let Ok(key) = SigningKey::from_slice(candidate.as_ref()) {
            return Ok(key);
        }
    }
    Err(TeeError::Crypto("could not derive a P-256 key"))
}

/// A P-384 key derived deterministically: HKDF-SHA256(salt, ikm, info ||
/// counter), 48 bytes, until the output is a valid scalar.
pub(crate) fn derive_p384(
    salt: &[u8],
    ikm: &[u8],
    info: &[&[u8]],
) -> Result<p384::ecdsa::SigningKey, TeeError> {
    let hkdf = Hkdf::<Sha256>::new(Some(salt), ikm);
    for counter in 0u8..16 {
        let mut parts = info.to_vec();
        let c = [counter];
        parts.push(&c);
        let mut candidate = Zeroizing::new([0u8; 48]);
        // Expanding to 48 bytes cannot fail: HKDF-SHA256 allows up to 255 * 32 bytes.
        let _ = hkdf.expand_multi_info(&parts, candidate.as_mut());
        if let Ok(key) = p384::ecdsa::SigningKey::from_slice(candidate.as_ref()) {
            return Ok(key);
        }
    }
    Err(TeeError::Crypto("could not derive a P-384 key"))
}

/// The 65-byte SEC1 uncompressed public key.
pub(crate) fn sec1_public(key: &SigningKey) -> Vec<u8> {
    key.verifying_key()
        .to_encoded_point(false)
        .as_bytes()
        .to_vec()
}

/// ES256 signature in COSE's fixed form (r || s), RFC 6979 nonce.
pub(crate) fn sign_fixed(key: &SigningKey, msg: &[u8]) -> Vec<u8> {
    let sig: Signature = key.sign(msg);
    sig.to_bytes().to_vec()
}

/// ECDSA P-256 / SHA-256 signature, DER `Ecdsa-Sig-Value` (X.509), RFC 6979 nonce.
pub(crate) fn sign_der(key: &SigningKey, msg: &[u8]) -> Vec<u8> {
    let sig: Signature = key.sign(msg);
    sig.to_der().as_bytes().to_vec()
}

/// A tagged COSE_Sign1 (docs/PROTOCOL.md §3.2) over `payload`, signed by `key`,
/// with `x5chain` in the protected header when non-empty.
pub(crate) fn sign_statement(key: &SigningKey, payload: Vec<u8>, x5chain: &[Vec<u8>]) -> Vec<u8> {
    cose::sign1(payload, x5chain, |tbs| {
        Ok::<_, std::convert::Infallible>(sign_fixed(key, tbs))
    })
    .unwrap_or_else(|never| match never {})
}

fn seal_key(root_secret: &[u8], rp_id: &str) -> Result<LessSafeKey, TeeError> {
    let key = hkdf32(SEAL_SALT, root_secret, &[rp_id.as_bytes()]);
    let unbound = UnboundKey::new(&AES_256_GCM, key.as_ref())
        .map_err(|_| TeeError::Crypto("AES-256-GCM key"))?;
    Ok(LessSafeKey::new(unbound))
}

fn seal_aad(credential_id: &[u8], rp_id: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(credential_id.len() + rp_id.len());
    aad.extend_from_slice(credential_id);
    aad.extend_from_slice(rp_id.as_bytes());
    aad
}

/// Seals `plaintext` for (`rp_id`, `credential_id`): AES-256-GCM under
/// HKDF-SHA256(salt = [`SEAL_SALT`], ikm = root secret, info = rp id), AAD =
/// credential id || rp id. The blob is nonce (12) || ciphertext || tag (16).
pub(crate) fn seal(
    root_secret: &[u8],
    rp_id: &str,
    credential_id: &[u8],
    plaintext: &[u8],
    nonce: [u8; NONCE_LEN],
) -> Result<Vec<u8>, TeeError> {
    let key = seal_key(root_secret, rp_id)?;
    // The plaintext is a private key: room for the tag up front, since
    // appending it to a full Vec would reallocate and leave the key behind.
    let mut in_out = Zeroizing::new(Vec::with_capacity(plaintext.len() + AES_256_GCM.tag_len()));
    in_out.extend_from_slice(plaintext);
    let capacity = in_out.capacity();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(seal_aad(credential_id, rp_id)),
        &mut *in_out,
    )
    .map_err(|_| TeeError::Crypto("AES-256-GCM seal"))?;
    if in_out.capacity() != capacity {
        return Err(TeeError::Crypto(
            "AES-256-GCM seal reallocated the key buffer",
        ));
    }
    let mut blob = Vec::with_capacity(NONCE_LEN + in_out.len());
    blob.extend_from_slice(&nonce);
    blob.extend_from_slice(&in_out);
    Ok(blob)
}

/// Opens a blob made by [`seal`]. Any modification, or another device, rp id
/// or credential id, gives [`TeeError::SealedBlobTampered`].
pub(crate) fn unseal(
    root_secret: &[u8],
    rp_id: &str,
    credential_id: &[u8],
    blob: &[u8],
) -> Result<Zeroizing<Vec<u8>>, TeeError> {
    let (nonce, ciphertext) = blob
        .split_at_checked(NONCE_LEN)
        .ok_or(TeeError::SealedBlobTampered)?;
    let nonce = <[u8; NONCE_LEN]>::try_from(nonce).map_err(|_| TeeError::SealedBlobTampered)?;
    let key = seal_key(root_secret, rp_id)?;
    let mut in_out = Zeroizing::new(ciphertext.to_vec());
    let len = key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(seal_aad(credential_id, rp_id)),
            &mut in_out,
        )
        .map_err(|_| TeeError::SealedBlobTampered)?
        .len();
    in_out.truncate(len);
    Ok(in_out)
}

/// Unseals a credential key and returns it as a signing key; the unsealed
/// scalar is zeroized before returning (and the key zeroizes itself on drop).
pub(crate) fn unseal_p256(
    root_secret: &[u8],
    rp_id: &str,
    credential_id: &[u8],
    blob: &[u8],
) -> Result<SigningKey, TeeError> {
    let scalar = unseal(root_secret, rp_id, credential_id, blob)?;
    p256_key(&scalar)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: [u8; 32] = [0x11; 32];
    const ID: [u8; 32] = [0x22; 32];

    fn blob() -> Vec<u8> {
        seal(&ROOT, "pay.example.com", &ID, &[0x33; 32], [9; 12]).unwrap()
    }

    #[test]
    fn seal_round_trip() {
        let b = blob();
        assert_eq!(b.len(), 12 + 32 + 16);
        assert_eq!(
            unseal(&ROOT, "pay.example.com", &ID, &b)
                .unwrap()
                .as_slice(),
            &[0x33; 32]
        );
    }

    #[test]
    fn every_tampered_byte_is_detected() {
        let b = blob();
        for i in 0..b.len() {
            let mut t = b.clone();
            t[i] ^= 0x01;
            assert!(
                matches!(
                    unseal(&ROOT, "pay.example.com", &ID, &t),
                    Err(TeeError::SealedBlobTampered)
                ),
                "byte {i}"
            );
        }
        assert!(matches!(
            unseal(&ROOT, "pay.example.com", &ID, &b[..20]),
            Err(TeeError::SealedBlobTampered)
        ));
        assert!(matches!(
            unseal(&ROOT, "pay.example.com", &ID, &[]),
            Err(TeeError::SealedBlobTampered)
        ));
    }

    #[test]
    fn blob_is_bound_to_rp_credential_and_device() {
        let b = blob();
        assert!(matches!(
            unseal(&ROOT, "evil.example.com", &ID, &b),
            Err(TeeError::SealedBlobTampered)
        ));
        assert!(matches!(
            unseal(&ROOT, "pay.example.com", &[0x23; 32], &b),
            Err(TeeError::SealedBlobTampered)
        ));
        assert!(matches!(
            unseal(&[0x12; 32], "pay.example.com", &ID, &b),
            Err(TeeError::SealedBlobTampered)
        ));
    }

    #[test]
    fn signatures_are_deterministic_and_verify() {
        let key = derive_p256(PKI_SALT, b"seed", &[b"k"]).unwrap();
        let pk = sec1_public(&key);
        let a = sign_fixed(&key, b"msg");
        assert_eq!(a, sign_fixed(&key, b"msg"));
        assert!(biopay_core::crypto::verify_es256(
            &pk,
            b"msg",
            &a,
            biopay_core::crypto::SignatureFormat::Fixed
        ));
        let d = sign_der(&key, b"msg");
        assert!(biopay_core::crypto::verify_es256(
            &pk,
            b"msg",
            &d,
            biopay_core::crypto::SignatureFormat::Der
        ));
    }

    #[test]
    fn seeded_sessions_differ() {
        let a: [u8; 32] = TeeRng::new(Some(b"s"), 0).array().unwrap();
        let b: [u8; 32] = TeeRng::new(Some(b"s"), 1).array().unwrap();
        let mut expect = [0u8; 32];
        DangerDeterministicRandom::new(b"s")
            .fill(&mut expect)
            .unwrap();
        assert_eq!(a, expect);
        assert_ne!(a, b);
    }
}
