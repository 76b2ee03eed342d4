//! `biopay android-attestation verify`: parses an Android Keystore
//! attestation chain, verifies it against trust roots and a revocation status
//! list at a given time, and evaluates the registration policy
//! (docs/PROTOCOL.md §12).

use biopay_core::{
    android::{self, check_policy, AndroidChainError, AndroidPolicy, KeyDescription, StatusList},
    x509::{ChainError, TrustAnchor},
};
use serde::Serialize;
use serde_json::Value;

/// What to verify against.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Trust roots (Google's two by default).
    pub anchors: Vec<TrustAnchor>,
    /// The revocation status list.
    pub status_list: StatusList,
    /// Verification time, Unix seconds.
    pub at: u64,
    /// The expected attestation challenge, if any.
    pub challenge: Option<Vec<u8>>,
    /// The policy's package / digest / patch-level / StrongBox settings.
    pub policy: AndroidPolicy,
    /// Whether a policy option was given (then the exit status depends on it).
    pub policy_requested: bool,
}

/// The chain verdict.
#[derive(Debug, Clone, Serialize)]
pub struct ChainVerdict {
    /// Signatures, validity at the time, CA constraints and revocation all pass.
    pub valid: bool,
    /// The path ends at a trusted root key.
    pub trusted: bool,
    /// Every error found.
    pub errors: Vec<String>,
}

/// The policy verdict.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyVerdict {
    /// No check failed.
    pub passed: bool,
    /// Each failed check: `check` (its name), its fields, and `detail`.
    pub failures: Vec<Value>,
}

/// One certificate of the submitted chain.
#[derive(Debug, Clone, Serialize)]
pub struct CertSummary {
    /// Position (0 = leaf).
    pub index: usize,
    /// Subject, RFC 4514.
    pub subject: String,
    /// Serial, lower-case hex (as in the status list).
    pub serial: String,
    /// notBefore, RFC 3339.
    pub not_before: String,
    /// notAfter, RFC 3339.
    pub not_after: String,
}

/// The full report: the KeyDescription fields (schema names, snake_case) at
/// the top level, plus `certificates`, `chain` and `policy`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The parsed KeyDescription of the leaf.
    #[serde(flatten)]
    pub key_description: Option<KeyDescription>,
    /// Why the KeyDescription could not be read, if so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_description_error: Option<String>,
    /// The submitted certificates.
    pub certificates: Vec<CertSummary>,
    /// The chain verdict.
    pub chain: ChainVerdict,
    /// The policy verdict.
    pub policy: PolicyVerdict,
    /// Whether the command succeeds (see [`Report::success`]).
    #[serde(skip)]
    pub policy_requested: bool,
}

impl Report {
    /// Valid and trusted, and the policy passes if a policy option was given.
    pub fn success(&self) -> bool {
        self.chain.valid && self.chain.trusted && (!self.policy_requested || self.policy.passed)
    }
}

fn summary(index: usize, der: &[u8]) -> CertSummary {
    use x509_parser::prelude::FromDer;
    let rfc3339 = |t: x509_parser::time::ASN1Time| {
        t.to_datetime()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    match x509_parser::certificate::X509Certificate::from_der(der) {
        Ok((_, c)) => CertSummary {
            index,
            subject: c.subject().to_string(),
            serial: format!("{:x}", c.tbs_certificate.serial),
            not_before: rfc3339(c.validity().not_before),
            not_after: rfc3339(c.validity().not_after),
        },
        Err(_) => CertSummary {
            index,
            subject: "(malformed)".into(),
            serial: String::new(),
            not_before: String::new(),
            not_after: String::new(),
        },
    }
}

/// Verifies `chain` (DER, leaf first) under `opts`.
pub fn verify(chain: &[Vec<u8>], opts: &VerifyOptions) -> Report {
    let certificates = chain
        .iter()
        .enumerate()
        .map(|(i, c)| summary(i, c))
        .collect();
    let verdict =
        android::verify_attestation_chain(chain, &opts.anchors, &opts.status_list, opts.at);
    let chain_verdict = match verdict {
        Ok(_) => ChainVerdict {
            valid: true,
            trusted: true,
            errors: Vec::new(),
        },
        Err(e) => {
            let (valid, trusted) = match e {
                AndroidChainError::Chain(ChainError::UntrustedRoot { .. }) => (true, false),
                AndroidChainError::Revoked { .. } => (false, true),
                _ => (false, false),
            };
            ChainVerdict {
                valid,
                trusted,
                errors: vec![e.to_string()],
            }
        }
    };
    let parsed = chain
        .first()
        .map(|leaf| android::key_description_of(leaf))
        .unwrap_or(Err(android::KeyDescriptionError::Missing));
    let (key_description, key_description_error, failures) = match parsed {
        Ok(kd) => {
            let failures = check_policy(&kd, &opts.policy, opts.challenge.as_deref())
                .into_iter()
                .map(|f| {
                    let mut v = serde_json::to_value(&f).unwrap_or(Value::Null);
                    if let Value::Object(m) = &mut v {
                        m.insert("detail".into(), Value::String(f.to_string()));
                    }
                    v
                })
                .collect();
            (Some(kd), None, failures)
        }
        Err(e) => (
            None,
            Some(e.to_string()),
            vec![serde_json::json!({"check": "key_description", "detail": e.to_string()})],
        ),
    };
    Report {
        key_description,
        key_description_error,
        certificates,
        chain: chain_verdict,
        policy: PolicyVerdict {
            passed: failures.is_empty(),
            failures,
        },
        policy_requested: opts.policy_requested,
    }
}

/// Reads certificates from a file's bytes: every PEM `CERTIFICATE` block, or
/// the whole file as one DER certificate.
pub fn certificates_from_bytes(bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    if bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        let blocks = pem::parse_many(bytes).map_err(|e| format!("PEM: {e}"))?;
        let certs: Vec<Vec<u8>> = blocks
            .into_iter()
            .filter(|b| b.tag() == "CERTIFICATE")
            .map(|b| b.into_contents())
            .collect();
        if certs.is_empty() {
            return Err("no CERTIFICATE block".into());
        }
        Ok(certs)
    } else {
        Ok(vec![bytes.to_vec()])
    }
}

/// Parses an RFC 3339 time to Unix seconds (must not be before 1970).
pub fn parse_rfc3339(s: &str) -> Result<u64, String> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("bad RFC 3339 time {s:?}: {e}"))?;
    u64::try_from(t.unix_timestamp()).map_err(|_| format!("time {s:?} is before 1970"))
}

/// A human-readable rendering of the report.
pub fn render_text(r: &Report) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for c in &r.certificates {
        let _ = writeln!(
            out,
            "cert {}: {} (serial {}, {} .. {})",
            c.index, c.subject, c.serial, c.not_before, c.not_after
        );
    }
    match &r.key_description {
        Some(kd) => {
            let json = serde_json::to_string_pretty(kd).unwrap_or_default();
            let _ = writeln!(out, "key description:\n{json}");
        }
        None => {
            let _ = writeln!(
                out,
                "key description: {}",
                r.key_description_error.as_deref().unwrap_or("absent")
            );
        }
    }
    let _ = writeln!(
        out,
        "chain: {} and {}",
        if r.chain.valid { "valid" } else { "INVALID" },
        if r.chain.trusted {
            "trusted"
        } else {
            "NOT TRUSTED"
        }
    );
    for e in &r.chain.errors {
        let _ = writeln!(out, "  chain error: {e}");
    }
    let _ = writeln!(
        out,
        "policy: {}",
        if r.policy.passed { "passed" } else { "FAILED" }
    );
    for f in &r.policy.failures {
        let check = f.get("check").and_then(Value::as_str).unwrap_or("?");
        let detail = f.get("detail").and_then(Value::as_str).unwrap_or("");
        let _ = writeln!(out, "  failed check {check}: {detail}");
    }
    let _ = writeln!(
        out,
        "verdict: {}",
        if r.success() { "ACCEPT" } else { "REJECT" }
    );
    out
}
