//! `biopay-server`: the payment verification service and its tools.
#![forbid(unsafe_code)]

use biopay_server::{
    client::{b64, unb64},
    config::Config,
    demo::DemoDevice,
    load,
    store::{postgres::PgStore, sqlite::SqliteStore, AnyStore},
};
use clap::{Args, Parser, Subcommand};
use std::{io::Read as _, net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

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
    /// Checks the hash chain and the signed checkpoints; names the first bad entry.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
        /// Additional trusted checkpoint public keys (hex); the data directory's key is always trusted.
        #[arg(long = "trust-key")]
        trust_keys: Vec<String>,
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

fn audit_verify(store: &StoreArgs, extra: &[String]) -> Result<bool, String> {
    let config = config_of(store)?;
    let backend = match &config.database_url {
        Some(url) => AnyStore::Postgres(PgStore::connect(url, 2).map_err(|e| e.to_string())?),
        None => {
            let path = config.data_dir.join("biopay.db");
            if !path.exists() {
                return Err(format!("{} does not exist", path.display()));
            }
            AnyStore::Sqlite(SqliteStore::open(&path).map_err(|e| e.to_string())?)
        }
    };
    let mut trusted = extra.to_vec();
    trusted
        .push(biopay_server::audit::SigningKey::load_or_create(&config.data_dir)?.public_key_hex());
    match biopay_server::verify_audit(&backend, &trusted)? {
        Ok(report) => {
            println!(
                "audit log intact: {} entries, {} signed checkpoints, head {}",
                report.entries, report.checkpoints, report.head
            );
            Ok(true)
        }
        Err(problem) => {
            println!("audit log BROKEN: {problem}");
            Ok(false)
        }
    }
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
            cmd: AuditCmd::Verify { store, trust_keys },
        }) => match audit_verify(store, trust_keys) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::from(2),
            Err(e) => Err(e),
        },
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
