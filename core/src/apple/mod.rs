//! Apple App Attest (docs/PROTOCOL.md §13): verification of the attestation
//! object an iPhone app gets from `DCAppAttestService.attestKey` (steps
//! I1–I10) and of the assertions it gets from `generateAssertion` (steps
//! J1–J4), and the binding hash the biopay iOS SDK passes as
//! `clientDataHash` (§13.3).
//!
//! Trust is anchored in the public key of Apple's "App Attestation Root CA"
//! (ECDSA P-384), built in from `apple/roots/` and replaceable
//! ([`AppleTrust::with_anchors`]). Certificates are checked by
//! [`crate::x509::verify_chain`], signatures by [`crate::crypto`]. Nothing here
//! does I/O: the caller passes the bytes, the clientDataHash and the
//! verification time.
//!
//! What a verified attestation proves: the key was made by a genuine instance
//! of an allowed app (team id + bundle id) on a genuine Apple device. It does
//! **not** prove that a biometric is needed to use any key: that is enforced by
//! the app's own code (§13.1).

mod assertion;
mod attestation;
mod binding;
mod object;

pub use assertion::{verify_assertion, VerifiedAssertion};
pub use attestation::{attested_public_key, verify_attestation, VerifiedAttestation};
pub use binding::{binding_client_data, binding_client_data_hash, BINDING_DOMAIN};

/// Reads a trust root from PEM (a `CERTIFICATE` or a `PUBLIC KEY`), e.g. a
/// replacement for Apple's root in tests.
pub use crate::android::{anchor_from_pem, RootError};
use crate::x509::TrustAnchor;
pub use crate::{error::AppAttestError, policy::AppAttestEnvironment};

/// OID of the leaf extension that carries the nonce
/// (`SEQUENCE { [1] EXPLICIT OCTET STRING }`).
pub const NONCE_OID: &str = "1.2.840.113635.100.8.2";

/// The attestation object's `fmt`.
pub const FORMAT: &str = "apple-appattest";

/// Apple's "App Attestation Root CA" certificate (ECDSA P-384, serial
/// `0bf3be0ef1cdd2e0fb8c6e721f621798`, 2020-03-18 to 2045-03-15, certificate
/// SHA-256 `1cb9823b…6242c932`), PEM, as Apple publishes it.
pub const APPLE_APP_ATTESTATION_ROOT_CA_PEM: &str =
    include_str!("roots/apple-app-attestation-root-ca.pem");

/// Longest attestation object accepted (real ones are about 5.5 kB).
pub const MAX_ATTESTATION_LEN: usize = 32 * 1024;
/// Longest assertion object accepted (real ones are about 140 bytes).
pub const MAX_ASSERTION_LEN: usize = 1024;

/// Apple's App Attestation Root CA as a trust anchor (its public key).
pub fn apple_roots() -> Vec<TrustAnchor> {
    anchor_from_pem(
        "Apple App Attestation Root CA (P-384)",
        APPLE_APP_ATTESTATION_ROOT_CA_PEM.as_bytes(),
    )
    .into_iter()
    .collect()
}

/// What the relying party trusts for App Attest (docs/PROTOCOL.md §13.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppleTrust {
    /// Allowed app ids, `TEAMID.bundle.id` (the string whose SHA-256 is the rpIdHash).
    pub app_ids: Vec<String>,
    /// The environment whose aaguid is accepted.
    pub environment: AppAttestEnvironment,
    /// Root keys the x5c chain must end at (Apple's root by default).
    pub anchors: Vec<TrustAnchor>,
}

impl AppleTrust {
    /// Apple's root ([`apple_roots`]), these app ids, this environment.
    pub fn new(app_ids: Vec<String>, environment: AppAttestEnvironment) -> Self {
        Self {
            app_ids,
            environment,
            anchors: apple_roots(),
        }
    }
    /// Replaces the trust roots.
    pub fn with_anchors(mut self, anchors: Vec<TrustAnchor>) -> Self {
        self.anchors = anchors;
        self
    }
}
