//! The binding the biopay iOS SDK attests (docs/PROTOCOL.md §13.3): the
//! deterministic CBOR encoding of the server's registration challenge, the
//! rp id, the Secure Enclave key's public key and the credential id. Its
//! SHA-256 is the `clientDataHash` passed to `attestKey`, so a verified
//! attestation vouches for exactly this Secure Enclave key in answer to
//! exactly this challenge.

use crate::{
    cbor::{write_bytes, write_head, write_text},
    crypto::{is_valid_p256_point, sha256},
    messages::{validate_rp_id, Challenge, CredentialId, DecodeError, Digest},
};

/// The binding's domain-separation string (key 1).
pub const BINDING_DOMAIN: &str = "biopay app attest binding v1";

/// The binding's bytes (the `--client-data` of `biopay apple-app-attest`):
///
/// ```text
/// { 1: "biopay app attest binding v1", 2: challenge, 3: rp_id,
///   4: secure_enclave_public_key, 5: credential_id }
/// ```
///
/// in deterministic CBOR (RFC 8949 §4.2.1). `public_key` is the Secure
/// Enclave key's uncompressed P-256 point (65 bytes).
pub fn binding_client_data(
    challenge: &Challenge,
    rp_id: &str,
    public_key: &[u8],
    credential_id: &CredentialId,
) -> Result<Vec<u8>, DecodeError> {
    validate_rp_id(rp_id)?;
    if !is_valid_p256_point(public_key) {
        return Err(DecodeError::InvalidField {
            field: "public_key",
            reason: "must be an uncompressed P-256 point",
        });
    }
    let mut out = Vec::with_capacity(64 + rp_id.len() + public_key.len() + 70);
    write_head(&mut out, 5, 5);
    write_head(&mut out, 0, 1);
    write_text(&mut out, BINDING_DOMAIN);
    write_head(&mut out, 0, 2);
    write_bytes(&mut out, challenge);
    write_head(&mut out, 0, 3);
    write_text(&mut out, rp_id);
    write_head(&mut out, 0, 4);
    write_bytes(&mut out, public_key);
    write_head(&mut out, 0, 5);
    write_bytes(&mut out, credential_id.as_bytes());
    Ok(out)
}

/// SHA-256 of [`binding_client_data`]: the `clientDataHash` the app passes
/// to `DCAppAttestService.attestKey`.
pub fn binding_client_data_hash(
    challenge: &Challenge,
    rp_id: &str,
    public_key: &[u8],
    credential_id: &CredentialId,
) -> Result<Digest, DecodeError> {
    binding_client_data(challenge, rp_id, public_key, credential_id).map(|b| sha256(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cbor::{from_deterministic_slice, to_deterministic_vec};
    use ciborium::value::Value;

    fn point() -> Vec<u8> {
        hex::decode(concat!(
            "04",
            "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296",
            "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5"
        ))
        .unwrap()
    }

    #[test]
    fn binding_is_the_deterministic_encoding_of_its_map() {
        let cred = CredentialId::new(vec![9; 32]).unwrap();
        let bytes = binding_client_data(&[7; 32], "pay.example.com", &point(), &cred).unwrap();
        let expected = Value::Map(vec![
            (Value::from(1), Value::Text(BINDING_DOMAIN.into())),
            (Value::from(2), Value::Bytes(vec![7; 32])),
            (Value::from(3), Value::Text("pay.example.com".into())),
            (Value::from(4), Value::Bytes(point())),
            (Value::from(5), Value::Bytes(vec![9; 32])),
        ]);
        assert_eq!(bytes, to_deterministic_vec(expected).unwrap());
        assert!(from_deterministic_slice(&bytes).is_ok());
        assert_eq!(
            binding_client_data_hash(&[7; 32], "pay.example.com", &point(), &cred).unwrap(),
            sha256(&bytes)
        );
    }

    /// The example of docs/PROTOCOL.md §13.3, computed outside this crate
    /// (a hand-written CBOR encoder in Python and hashlib).
    #[test]
    fn binding_known_answer() {
        let cred = CredentialId::new(vec![9; 32]).unwrap();
        let bytes = binding_client_data(&[7; 32], "pay.example.com", &point(), &cred).unwrap();
        assert_eq!(
            hex::encode(&bytes),
            concat!(
                "a501781c62696f70617920617070206174746573742062696e64696e6720763102",
                "58200707070707070707070707070707070707070707070707070707070707070707",
                "036f7061792e6578616d706c652e636f6d045841046b17d1f2e12c4247f8bce6e5",
                "63a440f277037d812deb33a0f4a13945d898c2964fe342e2fe1a7f9b8ee7eb4a7c",
                "0f9e162bce33576b315ececbb6406837bf51f50558200909090909090909090909",
                "090909090909090909090909090909090909090909"
            )
        );
        assert_eq!(
            hex::encode(sha256(&bytes)),
            "72805c455038cc331233700db7ac0ab5ce5fc5b8a2110264c629a4c4bc1de7e1"
        );
    }

    #[test]
    fn every_input_changes_the_hash() {
        let cred = CredentialId::new(vec![9; 32]).unwrap();
        let base = binding_client_data_hash(&[7; 32], "pay.example.com", &point(), &cred).unwrap();
        let other_cred = CredentialId::new(vec![8; 32]).unwrap();
        // 2G, another valid point.
        let other_point = hex::decode(concat!(
            "04",
            "7cf27b188d034f7e8a52380304b51ac3c08969e277f21b35a60b48fc47669978",
            "07775510db8ed040293d9ac69f7430dbba7dade63ce982299e04b79d227873d1"
        ))
        .unwrap();
        for h in [
            binding_client_data_hash(&[6; 32], "pay.example.com", &point(), &cred),
            binding_client_data_hash(&[7; 32], "pay.example.org", &point(), &cred),
            binding_client_data_hash(&[7; 32], "pay.example.com", &other_point, &cred),
            binding_client_data_hash(&[7; 32], "pay.example.com", &point(), &other_cred),
        ] {
            assert_ne!(h.unwrap(), base);
        }
    }

    #[test]
    fn rejects_bad_rp_id_and_key() {
        let cred = CredentialId::new(vec![9; 32]).unwrap();
        assert!(binding_client_data(&[7; 32], "Pay.Example.com", &point(), &cred).is_err());
        let mut off = point();
        off[64] ^= 1;
        assert!(binding_client_data(&[7; 32], "pay.example.com", &off, &cred).is_err());
    }
}
