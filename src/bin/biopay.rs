//! The `biopay` command line: decode protocol messages and write test vectors.

use clap::{Parser, Subcommand};
use std::{io::Read, path::PathBuf, process::ExitCode};

#[derive(Parser)]
#[command(
    name = "biopay",
    version,
    about = "biopay: biometric payment authentication anchored in trusted hardware"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print any protocol message (raw bytes or hex) as JSON. Signatures are not verified.
    Decode {
        /// A file, or `-` for standard input.
        input: String,
    },
    /// Write the protocol test vectors (deterministic, from fixed seeds).
    Vectors {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Android Keystore key attestation (docs/PROTOCOL.md §12).
    #[command(name = "android-attestation", subcommand)]
    AndroidAttestation(AndroidCommand),
    /// Apple App Attest attestations and assertions (docs/PROTOCOL.md §13).
    #[command(name = "apple-app-attest", subcommand)]
    AppleAppAttest(AppleCommand),
}

#[derive(Subcommand)]
enum AppleCommand {
    /// Verify an attestation object (steps I1-I10). Exits 0 only when valid.
    Attestation(AppleAttestation),
    /// Verify an assertion object (steps J1-J4). Exits 0 only when valid.
    Assertion(AppleAssertion),
}

#[derive(clap::Args)]
struct AppleAttestation {
    /// The allowed app id, TEAMID.bundle.id (its SHA-256 is the rpIdHash).
    #[arg(long, value_name = "TEAMID.BUNDLE")]
    app_id: String,
    /// The client data: raw bytes whose SHA-256 is the clientDataHash.
    #[arg(long, value_name = "FILE")]
    client_data: PathBuf,
    /// The environment whose aaguid is accepted.
    #[arg(long, value_name = "development|production")]
    environment: String,
    /// Verification time, RFC 3339 (default: now).
    #[arg(long, value_name = "RFC3339")]
    at: Option<String>,
    /// A trust root (PEM CERTIFICATE or PUBLIC KEY); repeatable. Replaces
    /// Apple's App Attestation Root CA.
    #[arg(long = "trust-root", value_name = "PEM")]
    trust_roots: Vec<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// The attestation object (raw CBOR).
    #[arg(value_name = "ATTESTATION_FILE")]
    attestation: PathBuf,
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("key").required(true).args(["public_key", "attestation"])))]
struct AppleAssertion {
    /// The credential's app id, TEAMID.bundle.id.
    #[arg(long, value_name = "TEAMID.BUNDLE")]
    app_id: String,
    /// The client data: raw bytes whose SHA-256 is the clientDataHash.
    #[arg(long, value_name = "FILE")]
    client_data: PathBuf,
    /// The attested public key (PEM PUBLIC KEY).
    #[arg(long, value_name = "PEM")]
    public_key: Option<PathBuf>,
    /// The attestation object whose leaf key made the assertion (it is not
    /// verified here; verify it with `attestation`).
    #[arg(long, value_name = "ATTESTATION_FILE")]
    attestation: Option<PathBuf>,
    /// The counter stored before this assertion.
    #[arg(long, default_value_t = 0, value_name = "N")]
    previous_counter: u32,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// The assertion object (raw CBOR).
    #[arg(value_name = "ASSERTION_FILE")]
    assertion: PathBuf,
}

fn read_file(p: &PathBuf) -> Result<Vec<u8>, String> {
    std::fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()))
}

fn now_or(at: Option<&str>) -> Result<u64, String> {
    match at {
        Some(s) => biopay::android_attestation::parse_rfc3339(s),
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| e.to_string())
            .map(|d| d.as_secs()),
    }
}

fn apple_attestation(a: AppleAttestation) -> Result<bool, String> {
    use biopay::{apple, apple_app_attest as aa};
    let environment: apple::AppAttestEnvironment = a.environment.parse()?;
    let mut trust = apple::AppleTrust::new(vec![a.app_id], environment);
    if !a.trust_roots.is_empty() {
        let mut anchors = Vec::new();
        for path in &a.trust_roots {
            let name = path.display().to_string();
            anchors.push(
                apple::anchor_from_pem(&name, &read_file(path)?)
                    .map_err(|e| format!("{name}: {e}"))?,
            );
        }
        trust = trust.with_anchors(anchors);
    }
    let at = now_or(a.at.as_deref())?;
    let report = aa::attestation(
        &read_file(&a.attestation)?,
        &read_file(&a.client_data)?,
        &trust,
        at,
    );
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", aa::render_attestation(&report));
    }
    Ok(report.valid)
}

fn apple_assertion(a: AppleAssertion) -> Result<bool, String> {
    use biopay::apple_app_attest as aa;
    let public_key = match (&a.public_key, &a.attestation) {
        (Some(pem), None) => aa::public_key_from_pem(&read_file(pem)?)
            .map_err(|e| format!("{}: {e}", pem.display()))?,
        (None, Some(att)) => biopay::apple::attested_public_key(&read_file(att)?)
            .map_err(|e| format!("{}: {e}", att.display()))?,
        _ => return Err("give exactly one of --public-key and --attestation".into()),
    };
    let report = aa::assertion(
        &read_file(&a.assertion)?,
        &read_file(&a.client_data)?,
        &public_key,
        &a.app_id,
        a.previous_counter,
    );
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", aa::render_assertion(&report));
    }
    Ok(report.valid)
}

#[derive(Subcommand)]
enum AndroidCommand {
    /// Parse and verify an attestation chain; print the KeyDescription, the
    /// chain verdict and every failed policy check. Exits 0 only when the
    /// chain is valid and trusted (and the policy passes when a policy
    /// option is given).
    Verify(AndroidVerify),
}

#[derive(clap::Args)]
struct AndroidVerify {
    /// A trust root (PEM PUBLIC KEY or CERTIFICATE); repeatable. Replaces
    /// the default roots (Google's hardware attestation root and Key
    /// Attestation CA1).
    #[arg(long = "trust-root", value_name = "PEM")]
    trust_roots: Vec<PathBuf>,
    /// A revocation status list in Google's JSON format.
    #[arg(long, value_name = "FILE")]
    status_list: Option<PathBuf>,
    /// Verification time, RFC 3339 (default: now).
    #[arg(long, value_name = "RFC3339")]
    at: Option<String>,
    /// Expected attestation challenge, hex (a policy option).
    #[arg(long, value_name = "HEX")]
    challenge: Option<String>,
    /// Expected app package name (a policy option).
    #[arg(long)]
    package: Option<String>,
    /// Expected app signing-certificate SHA-256, hex; repeatable (a policy option).
    #[arg(long = "signing-digest", value_name = "HEX")]
    signing_digests: Vec<String>,
    /// Oldest accepted OS patch level, YYYYMM (a policy option).
    #[arg(long, value_name = "YYYYMM")]
    min_patch_level: Option<u64>,
    /// Require StrongBox (a policy option).
    #[arg(long)]
    require_strongbox: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Certificate files (PEM or DER), leaf first; a file may hold several PEM certificates.
    #[arg(required = true, value_name = "CERT")]
    certs: Vec<PathBuf>,
}

fn android_verify(a: AndroidVerify) -> Result<bool, String> {
    use biopay::{android, android_attestation as aa};
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()));
    let mut chain = Vec::new();
    for path in &a.certs {
        chain.extend(
            aa::certificates_from_bytes(&read(path)?)
                .map_err(|e| format!("{}: {e}", path.display()))?,
        );
    }
    let anchors = if a.trust_roots.is_empty() {
        android::google_roots()
    } else {
        let mut anchors = Vec::new();
        for path in &a.trust_roots {
            let name = path.display().to_string();
            anchors.push(
                android::anchor_from_pem(&name, &read(path)?)
                    .map_err(|e| format!("{name}: {e}"))?,
            );
        }
        anchors
    };
    let status_list = match &a.status_list {
        Some(p) => android::StatusList::from_json(&read(p)?)
            .map_err(|e| format!("{}: {e}", p.display()))?,
        None => android::StatusList::default(),
    };
    let at = match &a.at {
        Some(s) => aa::parse_rfc3339(s)?,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs(),
    };
    let challenge = a
        .challenge
        .as_deref()
        .map(hex::decode)
        .transpose()
        .map_err(|e| format!("--challenge: {e}"))?;
    let mut signing_cert_digests = Vec::new();
    for d in &a.signing_digests {
        let bytes = hex::decode(d).map_err(|e| format!("--signing-digest: {e}"))?;
        signing_cert_digests.push(
            <[u8; 32]>::try_from(bytes.as_slice())
                .map_err(|_| "--signing-digest must be 32 bytes".to_string())?,
        );
    }
    let policy_requested = challenge.is_some()
        || a.package.is_some()
        || !signing_cert_digests.is_empty()
        || a.min_patch_level.is_some()
        || a.require_strongbox;
    let opts = aa::VerifyOptions {
        anchors,
        status_list,
        at,
        challenge,
        policy: android::AndroidPolicy {
            package_name: a.package,
            signing_cert_digests,
            min_os_patch_level: a.min_patch_level.unwrap_or(0),
            require_strongbox: a.require_strongbox,
        },
        policy_requested,
    };
    let report = aa::verify(&chain, &opts);
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", aa::render_text(&report));
    }
    Ok(report.success())
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::AndroidAttestation(AndroidCommand::Verify(a)) => {
            if android_verify(a)? {
                Ok(())
            } else {
                Err("attestation rejected".into())
            }
        }
        Command::AppleAppAttest(cmd) => {
            let valid = match cmd {
                AppleCommand::Attestation(a) => apple_attestation(a)?,
                AppleCommand::Assertion(a) => apple_assertion(a)?,
            };
            if valid {
                Ok(())
            } else {
                Err("refused".into())
            }
        }
        Command::Decode { input } => {
            let mut bytes = Vec::new();
            if input == "-" {
                std::io::stdin()
                    .read_to_end(&mut bytes)
                    .map_err(|e| format!("reading stdin: {e}"))?;
            } else {
                bytes = std::fs::read(&input).map_err(|e| format!("reading {input}: {e}"))?;
            }
            let json = biopay::decode::decode_to_json(&bytes).map_err(|e| e.to_string())?;
            println!(
                "{}",
                serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?
            );
            Ok(())
        }
        Command::Vectors { out } => {
            let vectors =
                biopay::vectors::generate().map_err(|e| format!("generating vectors: {e}"))?;
            biopay::vectors::write(&out, &vectors)
                .map_err(|e| format!("writing {}: {e}", out.display()))?;
            for v in &vectors.vectors {
                println!(
                    "{:<32} signature_valid={:<5} protocol_valid={:<5} {}",
                    v.name,
                    v.signature_valid,
                    v.protocol_valid,
                    v.reason.as_deref().unwrap_or("")
                );
            }
            println!(
                "wrote {} vectors to {}",
                vectors.vectors.len(),
                out.display()
            );
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("biopay: {e}");
            ExitCode::FAILURE
        }
    }
}
