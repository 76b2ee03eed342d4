//! docs/PROTOCOL.md §6.2 step 2 defines `Malformed` by DER (X.690 §10) and
//! RFC 5280, not by what a parser happens to accept: a certificate that is
//! BER but not DER (a length in a longer form than needed, an indefinite
//! length) or that has trailing bytes is `Malformed`, whichever position it
//! has in the chain. The chain is the one of the `registration` vector,
//! verified against the shipped vendor root key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use biopay::{
    x509::{self, ChainError, TrustAnchor},
    *,
};
use std::path::Path;

/// The `now` of the registration vector (docs/vectors/scenario.json).
const NOW: u64 = 1_795_000_000;

fn chain_and_anchor() -> (Vec<Vec<u8>>, Vec<TrustAnchor>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/vectors");
    let cose = std::fs::read(dir.join("registration.cose")).unwrap();
    let (_, chain) = cose::peek_payload(&cose).unwrap();
    let pem = pem::parse(std::fs::read(dir.join("vendor-root.pub.pem")).unwrap()).unwrap();
    let anchor = TrustAnchor {
        name: "vendor root".into(),
        spki_der: pem.contents().to_vec(),
    };
    assert_eq!(chain.len(), 2);
    (chain, vec![anchor])
}

/// Re-encodes the outer SEQUENCE's length (two-byte long form `30 82 hi lo`
/// in these certificates) in a three-byte long form: valid BER, not DER.
fn long_length(der: &[u8]) -> Vec<u8> {
    assert_eq!(&der[..2], &[0x30, 0x82]);
    let mut out = vec![0x30, 0x83, 0x00];
    out.extend_from_slice(&der[2..]);
    out
}

/// The outer SEQUENCE with an indefinite length (`30 80 .. 00 00`): BER only.
fn indefinite_length(der: &[u8]) -> Vec<u8> {
    assert_eq!(&der[..2], &[0x30, 0x82]);
    let mut out = vec![0x30, 0x80];
    out.extend_from_slice(&der[4..]);
    out.extend_from_slice(&[0x00, 0x00]);
    out
}

#[test]
fn a_certificate_that_is_ber_but_not_der_is_malformed() {
    let (chain, anchors) = chain_and_anchor();
    assert!(
        x509::verify_chain(&chain, &anchors, NOW).is_ok(),
        "control: the genuine chain verifies"
    );
    for (what, edit, index) in [
        (
            "leaf, long-form length",
            long_length as fn(&[u8]) -> Vec<u8>,
            0,
        ),
        ("intermediate, long-form length", long_length, 1),
        ("leaf, indefinite length", indefinite_length, 0),
        ("intermediate, indefinite length", indefinite_length, 1),
    ] {
        let mut bad = chain.clone();
        bad[index] = edit(&bad[index]);
        assert_eq!(
            x509::verify_chain(&bad, &anchors, NOW).unwrap_err(),
            ChainError::Malformed { index },
            "{what}"
        );
    }
}

#[test]
fn a_certificate_with_trailing_bytes_is_malformed() {
    let (chain, anchors) = chain_and_anchor();
    for index in 0..2 {
        let mut bad = chain.clone();
        bad[index].push(0x00);
        assert_eq!(
            x509::verify_chain(&bad, &anchors, NOW).unwrap_err(),
            ChainError::Malformed { index }
        );
    }
}
