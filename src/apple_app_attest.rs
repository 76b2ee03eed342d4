//! `biopay apple-app-attest attestation|assertion`: verifies an Apple App
//! Attest attestation or assertion object (docs/PROTOCOL.md §13) and reports
//! the verdict, the step that refused it, and what was attested.

use base64::{engine::general_purpose::STANDARD, Engine as _};
use biopay_core::{
    apple::{self, AppAttestEnvironment, AppleTrust},
    crypto::sha256,
    Rejection,
};
use serde::Serialize;

/// One failed step.
#[derive(Debug, Clone, Serialize)]
pub struct StepError {
    /// The step code, e.g. `"I3"`.
    pub step: String,
    /// The step name, e.g. `"nonce"`.
    pub name: String,
    /// What was wrong.
    pub detail: String,
}

impl From<&Rejection> for StepError {
    fn from(r: &Rejection) -> Self {
        Self {
            step: r.step.code().to_owned(),
            name: r.step.name().to_owned(),
            detail: r.reason.to_string(),
        }
    }
}

/// The attestation verdict (`--json` prints it).
#[derive(Debug, Clone, Serialize)]
pub struct AttestationReport {
    /// Every step passed.
    pub valid: bool,
    /// SHA-256 of the attested key's point, standard base64 (when valid).
    pub key_id: Option<String>,
    /// The configured environment (what the aaguid had to name).
    pub environment: AppAttestEnvironment,
    /// The app id the rpIdHash matched (when valid).
    pub app_id: Option<String>,
    /// The authenticator data's counter (when valid).
    pub counter: Option<u32>,
    /// The attested key's uncompressed point, standard base64 (when valid).
    pub public_key: Option<String>,
    /// Length of the unverified Apple receipt (when valid).
    pub receipt_len: Option<usize>,
    /// SHA-256 of the client data, standard base64.
    pub client_data_hash: String,
    /// The failed step, if any (the first one; verification stops there).
    pub errors: Vec<StepError>,
}

/// The assertion verdict (`--json` prints it).
#[derive(Debug, Clone, Serialize)]
pub struct AssertionReport {
    /// Every step passed.
    pub valid: bool,
    /// The assertion's counter (when valid).
    pub counter: Option<u32>,
    /// The counter it had to exceed.
    pub previous_counter: u32,
    /// SHA-256 of the client data, standard base64.
    pub client_data_hash: String,
    /// The failed step, if any.
    pub errors: Vec<StepError>,
}

/// Standard base64 (RFC 4648 §4, padded).
pub fn b64(data: &[u8]) -> String {
    STANDARD.encode(data)
}

/// Verifies an attestation object with `client_data` (whose SHA-256 is the
/// clientDataHash) under `trust` at Unix time `at`.
pub fn attestation(
    object: &[u8],
    client_data: &[u8],
    trust: &AppleTrust,
    at: u64,
) -> AttestationReport {
    let client_data_hash = sha256(client_data);
    let verdict = apple::verify_attestation(object, &client_data_hash, None, trust, at);
    let mut report = AttestationReport {
        valid: verdict.is_ok(),
        key_id: None,
        environment: trust.environment,
        app_id: None,
        counter: None,
        public_key: None,
        receipt_len: None,
        client_data_hash: b64(&client_data_hash),
        errors: Vec::new(),
    };
    match verdict {
        Ok(v) => {
            report.key_id = Some(b64(&v.key_id));
            report.app_id = Some(v.app_id);
            report.counter = Some(v.counter);
            report.public_key = Some(b64(&v.public_key));
            report.receipt_len = Some(v.receipt.len());
        }
        Err(r) => report.errors.push(StepError::from(&r)),
    }
    report
}

/// Verifies an assertion object made by `public_key` (uncompressed point) of
/// `app_id` over `client_data`, after `previous_counter`.
pub fn assertion(
    object: &[u8],
    client_data: &[u8],
    public_key: &[u8],
    app_id: &str,
    previous_counter: u32,
) -> AssertionReport {
    let client_data_hash = sha256(client_data);
    let verdict = apple::verify_assertion(
        object,
        &client_data_hash,
        public_key,
        app_id,
        previous_counter,
    );
    AssertionReport {
        valid: verdict.is_ok(),
        counter: verdict.as_ref().ok().map(|v| v.counter),
        previous_counter,
        client_data_hash: b64(&client_data_hash),
        errors: verdict
            .err()
            .map(|r| vec![StepError::from(&r)])
            .unwrap_or_default(),
    }
}

/// The uncompressed P-256 point of a PEM `PUBLIC KEY` (SubjectPublicKeyInfo).
pub fn public_key_from_pem(pem_bytes: &[u8]) -> Result<Vec<u8>, String> {
    let block = pem::parse(pem_bytes).map_err(|e| format!("PEM: {e}"))?;
    if block.tag() != "PUBLIC KEY" {
        return Err(format!("expected a PUBLIC KEY block, got {}", block.tag()));
    }
    biopay_core::crypto::p256_point_from_spki(block.contents())
        .map(<[u8]>::to_vec)
        .ok_or_else(|| "not an uncompressed P-256 public key".to_owned())
}

fn render_errors(out: &mut String, errors: &[StepError]) {
    use std::fmt::Write;
    for e in errors {
        let _ = writeln!(out, "refused at {} {}: {}", e.step, e.name, e.detail);
    }
}

/// A human-readable rendering of an attestation report.
pub fn render_attestation(r: &AttestationReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "environment: {}", r.environment);
    let _ = writeln!(out, "clientDataHash: {}", r.client_data_hash);
    if let (Some(k), Some(p), Some(a)) = (&r.key_id, &r.public_key, &r.app_id) {
        let _ = writeln!(out, "app id: {a}\nkey id: {k}\npublic key: {p}");
    }
    render_errors(&mut out, &r.errors);
    let _ = writeln!(
        out,
        "verdict: {}",
        if r.valid { "VALID" } else { "INVALID" }
    );
    out
}

/// A human-readable rendering of an assertion report.
pub fn render_assertion(r: &AssertionReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "clientDataHash: {}", r.client_data_hash);
    if let Some(c) = r.counter {
        let _ = writeln!(out, "counter: {} (previous {})", c, r.previous_counter);
    }
    render_errors(&mut out, &r.errors);
    let _ = writeln!(
        out,
        "verdict: {}",
        if r.valid { "VALID" } else { "INVALID" }
    );
    out
}
