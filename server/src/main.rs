//! `biopay-server`: the payment verification service and its tools.
#![forbid(unsafe_code)]

use biopay_server::{
    audit::{self, SigningKey},
    client::{b64, unb64},
    config::Config,
    demo::DemoDevice,
    load,
    store::{postgres::PgStore, sqlite::SqliteStore, AnyStore},
};
use clap::{Args, Parser, Subcommand};
use std::{
    io::Read as _,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

/// mimalloc instead of glibc's malloc: a payment allocates and frees a few
/// hundred small buffers across threads (HTTP, JSON, CBOR, SQLite), and
/// glibc's malloc/free were ~10 % of the server's CPU under load
/// (docs/PERFORMANCE.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "biopay-server",
    version,
    about = "biopay payment verification service"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs the server (the default).
    Serve(ServeArgs),
    /// Audit log tools.
    Audit {
        #[command(subcommand)]
        cmd: AuditCmd,
    },
    /// Prints the OpenAPI document (docs/openapi.json).
    Openapi,
    /// Reads an API key on stdin and prints its SHA-256 for the configuration.
    HashKey,
    /// DANGER: a simulated phone of the demo vendor, for trying the API by hand.
    DemoDevice {
        #[command(subcommand)]
        cmd: DemoCmd,
    },
    /// Load generator: N clients register and pay over HTTP; reports payments/s, p50/p99.
    Load(LoadArgs),
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Checks the entries against the head row and the chain of signed
    /// checkpoints, and against a witness file; names the first problem.
    /// Never creates a key.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
        /// Trusted checkpoint public key (hex Ed25519; repeatable, e.g. across
        /// a key rotation). When none is given, the public key of the key file
        /// (`--audit-key`, else the data directory's) is trusted, which
        /// whoever can replace that file can forge.
        #[arg(long = "audit-public-key", alias = "trust-key")]
        public_keys: Vec<String>,
        /// Witness file (JSON lines from `audit export-checkpoints`): the log
        /// must reach, and agree with, every checkpoint in it.
        #[arg(long)]
        witness: Option<PathBuf>,
    },
    /// Writes the signed checkpoints as JSON lines, for a witness that keeps
    /// them outside the database (`audit verify --witness`).
    ExportCheckpoints {
        #[command(flatten)]
        store: StoreArgs,
        /// Only checkpoints past this entry; default: the last one already in
        /// `--out` (0 without it).
        #[arg(long)]
        since: Option<u64>,
        /// Appends to this file (created when missing) instead of stdout,
        /// after checking that the new checkpoints continue its chain.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum DemoCmd {
    /// Answers a registration challenge (provisions the device on first use); prints the attestation.
    Register {
        /// Device state directory.
        #[arg(long, default_value = "biopay-demo-phone")]
        dir: PathBuf,
        /// The relying party id.
        #[arg(long, default_value = "pay.example.com")]
        rp_id: String,
        /// The `challenge` field of /v1/registrations/challenge.
        challenge: String,
    },
    /// Shows the transaction, "presents the thumb", prints the payment assertion.
    Pay {
        /// Device state directory.
        #[arg(long, default_value = "biopay-demo-phone")]
        dir: PathBuf,
        /// The relying party id.
        #[arg(long, default_value = "pay.example.com")]
        rp_id: String,
        /// The `challenge` field of /v1/payments/challenge.
        challenge: String,
    },
}

#[derive(Args, Clone)]
struct StoreArgs {
    /// Configuration file (TOML).
    #[arg(long, env = "BIOPAY_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (SQLite database, audit signing key).
    #[arg(long, env = "BIOPAY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// PostgreSQL URL (postgres://user@host:port/db); SQLite when absent.
    #[arg(long, env = "BIOPAY_DATABASE_URL")]
    database_url: Option<String>,
    /// The audit checkpoint signing key (created by `serve` when missing;
    /// only read by `audit verify`); default: in the data directory.
    #[arg(long, env = "BIOPAY_AUDIT_KEY")]
    audit_key: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct ServeArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Listen address.
    #[arg(long, env = "BIOPAY_LISTEN")]
    listen: Option<SocketAddr>,
    /// Relying party id.
    #[arg(long, env = "BIOPAY_RP_ID")]
    rp_id: Option<String>,
    /// Trust file (device models and root keys, TOML).
    #[arg(long, env = "BIOPAY_TRUST_FILE")]
    trust_file: Option<PathBuf>,
    /// DANGER: trust the published demo vendor PKI (tests and demos only).
    #[arg(long)]
    danger_demo_trust: bool,
    /// DANGER: accept the well-known demo API keys `demo-rp-key` and `demo-admin-key`.
    #[arg(long)]
    danger_demo_keys: bool,
    /// Failed verifications per credential and per account before locking.
    #[arg(long)]
    lock_after_failures: Option<u32>,
    /// Outstanding challenges allowed per account (0: no limit).
    #[arg(long)]
    max_challenges_per_account: Option<u32>,
    /// Issue self-authenticating payment challenges (nothing stored at
    /// issue; `/v1/payments/verify` must be given the transaction).
    #[arg(long)]
    stateless_payment_challenges: bool,
    /// The payment challenge MAC key file (mode 0600, created when
    /// missing); default: in the data directory.
    #[arg(long, env = "BIOPAY_CHALLENGE_KEY")]
    challenge_key: Option<PathBuf>,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
}

#[derive(Args)]
struct LoadArgs {
    /// Server URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Relying-party API key.
    #[arg(long, env = "BIOPAY_API_KEY", default_value = "demo-rp-key")]
    key: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Payments per request: 1 uses the single-payment endpoints; more goes
    /// through `/v1/payments/{challenge,verify}/batch` (each client then
    /// holds that many devices).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Payment phase bound, seconds.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Payment count bound.
    #[arg(long, default_value_t = 1_000_000)]
    max_payments: u64,
    /// Seconds of raw ECDSA verification measured after the load (0 skips).
    #[arg(long, default_value_t = 3.0)]
    ecdsa_seconds: f64,
    /// Server-side processes to measure the CPU time of (repeatable: the
    /// server, and for PostgreSQL the database's processes). Linux only.
    #[arg(long = "server-pid")]
    server_pids: Vec<u32>,
}

fn config_of(store: &StoreArgs) -> Result<Config, String> {
    let mut c = match &store.config {
        Some(p) => Config::from_file(p)?,
        None => Config::default(),
    };
    if let Some(d) = &store.data_dir {
        c.data_dir = d.clone();
    }
    if let Some(u) = &store.database_url {
        c.database_url = Some(u.clone());
    }
    if let Some(k) = &store.audit_key {
        c.audit_key = Some(k.clone());
    }
    Ok(c)
}

fn serve_config(a: &ServeArgs) -> Result<Config, String> {
    let mut c = config_of(&a.store)?;
    if let Some(l) = a.listen {
        c.listen = l;
    }
    if let Some(r) = &a.rp_id {
        c.rp_id = r.clone();
    }
    if let Some(t) = &a.trust_file {
        c.trust_file = Some(t.clone());
    }
    c.danger_demo_trust |= a.danger_demo_trust;
    c.danger_demo_keys |= a.danger_demo_keys;
    if let Some(n) = a.lock_after_failures {
        c.lock_after_failures = n;
    }
    if let Some(n) = a.max_challenges_per_account {
        c.max_challenges_per_account = n;
    }
    c.stateless_payment_challenges |= a.stateless_payment_challenges;
    if let Some(k) = &a.challenge_key {
        c.challenge_key = Some(k.clone());
    }
    Ok(c)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down: finishing in-flight requests");
}

fn serve(a: &ServeArgs) -> Result<(), String> {
    let config = serve_config(a)?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if a.log_json {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| format!("bind {}: {e}", config.listen))?;
        biopay_server::run(config, listener, shutdown_signal()).await
    })
}

fn open_store(config: &Config) -> Result<AnyStore, String> {
    Ok(match &config.database_url {
        Some(url) => AnyStore::Postgres(PgStore::connect(url, 2).map_err(|e| e.to_string())?),
        None => {
            let path = config.data_dir.join("biopay.db");
            if !path.exists() {
                return Err(format!("{} does not exist", path.display()));
            }
            AnyStore::Sqlite(SqliteStore::open(&path).map_err(|e| e.to_string())?)
        }
    })
}

fn audit_verify(
    store: &StoreArgs,
    public_keys: &[String],
    witness: Option<&Path>,
) -> Result<bool, String> {
    let config = config_of(store)?;
    let mut trusted = Vec::new();
    for k in public_keys {
        let k = k.trim().to_ascii_lowercase();
        if hex::decode(&k).map(|b| b.len()) != Ok(32) {
            return Err(format!(
                "--audit-public-key {k:?} is not 64 hex digits (an Ed25519 public key)"
            ));
        }
        trusted.push(k);
    }
    if trusted.is_empty() {
        // Read, never created: a missing key is an error.
        let path = config.audit_key_path();
        if store.audit_key.is_none() && config.audit_key.is_none() && !path.exists() {
            return Err(format!(
                "no checkpoint key to trust: pass --audit-public-key HEX (or --audit-key PATH); {} does not exist",
                path.display()
            ));
        }
        let key = SigningKey::load(&path)?;
        eprintln!(
            "trusting checkpoint key {} from {} (pass --audit-public-key to trust a key recorded elsewhere)",
            key.public_key_hex(),
            path.display()
        );
        trusted.push(key.public_key_hex());
    }
    let witness = match witness {
        Some(p) => audit::parse_witness(
            &std::fs::read_to_string(p).map_err(|e| format!("read {}: {e}", p.display()))?,
        )?,
        None => Vec::new(),
    };
    let backend = open_store(&config)?;
    match biopay_server::verify_audit(&backend, &witness, &trusted)? {
        Ok(report) => {
            println!(
                "audit log intact: {} entries, {} signed checkpoints ({} unchained), head {}",
                report.entries, report.checkpoints, report.unchained, report.head
            );
            if report.witnessed > 0 {
                println!("{} witness checkpoints agree", report.witnessed);
            } else {
                println!(
                    "no witness file given: a log cut back together with its checkpoints and head row cannot be told from a shorter one (docs/PROTOCOL.md §9.4)"
                );
            }
            Ok(true)
        }
        Err(problem) => {
            println!("audit log BROKEN: {problem}");
            Ok(false)
        }
    }
}

fn export_checkpoints(
    store: &StoreArgs,
    since: Option<u64>,
    out: Option<&Path>,
) -> Result<(), String> {
    let config = config_of(store)?;
    let existing = match out {
        Some(p) if p.exists() => audit::parse_witness(
            &std::fs::read_to_string(p).map_err(|e| format!("read {}: {e}", p.display()))?,
        )?,
        _ => Vec::new(),
    };
    let last = existing.iter().max_by_key(|c| c.seq);
    let since = since.unwrap_or_else(|| last.map_or(0, |c| c.seq));
    let backend = open_store(&config)?;
    let new: Vec<_> = biopay_server::all_checkpoints(&backend)?
        .into_iter()
        .filter(|c| c.seq > since)
        .collect();
    // The new checkpoints must continue the chain the witness already holds:
    // otherwise the database's chain was rewritten since the last export.
    if let (Some(last), Some(first)) = (last, new.first()) {
        if last.seq == since
            && !biopay_server::store::checkpoint_follows(first, Some(last))
            && first.version == audit::CHECKPOINT_CHAINED
        {
            return Err(format!(
                "the database's checkpoint at entry {} does not follow the witness's last checkpoint (entry {}): the checkpoint chain was rewritten; nothing written",
                first.seq, last.seq
            ));
        }
    }
    let mut text = String::new();
    for c in &new {
        text.push_str(&serde_json::to_string(c).map_err(|e| e.to_string())?);
        text.push('\n');
    }
    match out {
        Some(p) => {
            use std::io::Write as _;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| format!("open {}: {e}", p.display()))?;
            f.write_all(text.as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|e| format!("write {}: {e}", p.display()))?;
            eprintln!("{} checkpoints appended to {}", new.len(), p.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}

fn demo(cmd: &DemoCmd) -> Result<(), String> {
    match cmd {
        DemoCmd::Register {
            dir,
            rp_id,
            challenge,
        } => {
            let mut d = if dir.join("tee-state.bin").exists() {
                DemoDevice::open(dir, rp_id)?
            } else {
                DemoDevice::provision(dir, rp_id)?
            };
            println!("{}", b64(&d.register(&unb64(challenge.trim())?)?));
        }
        DemoCmd::Pay {
            dir,
            rp_id,
            challenge,
        } => {
            let mut d = DemoDevice::open(dir, rp_id)?;
            println!("{}", b64(&d.authorize(&unb64(challenge.trim())?)?));
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.cmd {
        None => serve(&cli.serve),
        Some(Cmd::Serve(a)) => serve(a),
        Some(Cmd::Openapi) => {
            print!("{}", biopay_server::api::openapi_document());
            Ok(())
        }
        Some(Cmd::HashKey) => {
            let mut key = String::new();
            std::io::stdin()
                .read_to_string(&mut key)
                .map_err(|e| e.to_string())
                .map(|_| {
                    println!(
                        "{}",
                        hex::encode(biopay_core::crypto::sha256(key.trim().as_bytes()))
                    )
                })
        }
        Some(Cmd::Audit {
            cmd:
                AuditCmd::Verify {
                    store,
                    public_keys,
                    witness,
                },
        }) => match audit_verify(store, public_keys, witness.as_deref()) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::from(2),
            Err(e) => Err(e),
        },
        Some(Cmd::Audit {
            cmd: AuditCmd::ExportCheckpoints { store, since, out },
        }) => export_checkpoints(store, *since, out.as_deref()),
        Some(Cmd::DemoDevice { cmd }) => demo(cmd),
        Some(Cmd::Load(a)) => load::run(&load::LoadConfig {
            url: a.url.clone(),
            key: a.key.clone(),
            clients: a.clients,
            batch: a.batch,
            duration: Duration::from_secs_f64(a.seconds.max(0.0)),
            max_payments: a.max_payments,
            ecdsa_secs: a.ecdsa_seconds,
            server_pids: a.server_pids.clone(),
        })
        .map(|r| {
            println!(
                "{}",
                serde_json::to_string_pretty(&r).unwrap_or_else(|e| e.to_string())
            );
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("biopay-server: {e}");
            ExitCode::FAILURE
        }
    }
}
