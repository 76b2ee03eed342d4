//! `biopay-server`: the payment verification service and its operator
//! commands (audit, OpenAPI, API key hashes). It links no simulator and no
//! HTTP client: the simulated phone (`demo-device`) and the load generator
//! (`load`) are the `biopay-server-tools` binary (server-tools/).
#![forbid(unsafe_code)]

use biopay_server::{
    audit::{self, SigningKey},
    config::{Config, ShardConfig, StoreLayout},
    store::{postgres::PgStore, sqlite::SqliteStore, AnyStore},
};
use clap::{Args, Parser, Subcommand};
use std::{
    io::Read as _,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
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
    about = "biopay payment verification service",
    after_help = "The simulated phone (demo-device) and the load generator (load) are in \
                  biopay-server-tools (cargo run -p biopay-server-tools -- --help)."
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
        /// must reach, and agree with, every checkpoint in it. One shard's
        /// witness: with several shards, name it with `--shard`.
        #[arg(long)]
        witness: Option<PathBuf>,
        /// Checks only this shard's chain (default: every shard's).
        #[arg(long)]
        shard: Option<u32>,
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
        /// The shard whose checkpoints to write (each shard has its own
        /// chain, and needs its own witness file); required with several.
        #[arg(long)]
        shard: Option<u32>,
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
    /// PostgreSQL URL (postgres://user@host:port/db): one shard; SQLite
    /// when neither this nor --shard-url is given.
    #[arg(long, env = "BIOPAY_DATABASE_URL")]
    database_url: Option<String>,
    /// A PostgreSQL shard's URL, repeated once per shard in shard order (a
    /// power of two of them); replaces the configuration file's `[[shards]]`.
    #[arg(long = "shard-url")]
    shard_urls: Vec<String>,
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
    /// Verify single payments on the async worker instead of a blocking
    /// thread (measurement switch; see `inline_verify` in the config).
    #[arg(long)]
    inline_verify: bool,
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
        c.shards.clear();
    }
    if !store.shard_urls.is_empty() {
        c.database_url = None;
        c.shards = store
            .shard_urls
            .iter()
            .map(|url| ShardConfig { url: url.clone() })
            .collect();
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
    c.inline_verify |= a.inline_verify;
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

/// A shard's index with its store, or why it could not be opened.
type OpenedShard = (u32, Result<AnyStore, String>);

/// The stores of the shards to read: every shard, or only `only`. Never
/// creates a database. A shard that cannot be opened is reported by name.
fn open_stores(config: &Config, only: Option<u32>) -> Result<Vec<OpenedShard>, String> {
    let layout = config.store_layout()?;
    let n = match &layout {
        StoreLayout::Sqlite(_) => 1,
        StoreLayout::Postgres(urls) => urls.len(),
    };
    let n = u32::try_from(n).map_err(|_| "too many shards".to_owned())?;
    if let Some(k) = only.filter(|k| *k >= n) {
        return Err(format!(
            "--shard {k}: the configuration has {n} shards (0 to {})",
            n - 1
        ));
    }
    let open = |k: u32| -> Result<AnyStore, String> {
        match &layout {
            StoreLayout::Sqlite(path) => {
                if !path.exists() {
                    return Err(format!("{} does not exist", path.display()));
                }
                Ok(AnyStore::Sqlite(
                    SqliteStore::open(path).map_err(|e| e.to_string())?,
                ))
            }
            StoreLayout::Postgres(urls) => {
                let url = usize::try_from(k)
                    .ok()
                    .and_then(|k| urls.get(k))
                    .ok_or_else(|| format!("no shard {k}"))?;
                Ok(AnyStore::Postgres(
                    PgStore::connect(url, 2).map_err(|e| e.to_string())?,
                ))
            }
        }
    };
    Ok((0..n)
        .filter(|k| only.is_none_or(|o| o == *k))
        .map(|k| (k, open(k)))
        .collect())
}

fn audit_verify(
    store: &StoreArgs,
    public_keys: &[String],
    witness: Option<&Path>,
    shard: Option<u32>,
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
    let stores = open_stores(&config, shard)?;
    if !witness.is_empty() && stores.len() > 1 {
        return Err(
            "a witness file holds one shard's checkpoints: name the shard with --shard".into(),
        );
    }
    // Each shard's chain is its own; every shard is checked and reported.
    let sharded = stores.len() > 1 || shard.is_some();
    let mut intact = true;
    for (k, store) in stores {
        let name = if sharded {
            format!("shard {k}: ")
        } else {
            String::new()
        };
        let store = match store {
            Ok(s) => s,
            Err(e) => {
                println!("{name}audit log NOT CHECKED: cannot open the store: {e}");
                intact = false;
                continue;
            }
        };
        let verdict = biopay_server::verify_audit(&store, &witness, &trusted);
        // The synchronous PostgreSQL client is dropped here, outside any runtime.
        drop(store);
        match verdict {
            Ok(Ok(report)) => {
                println!(
                    "{name}audit log intact: {} entries, {} signed checkpoints ({} unchained), head {}",
                    report.entries, report.checkpoints, report.unchained, report.head
                );
                if report.witnessed > 0 {
                    println!("{name}{} witness checkpoints agree", report.witnessed);
                } else {
                    println!(
                        "{name}no witness file given: a log cut back together with its checkpoints and head row cannot be told from a shorter one (docs/PROTOCOL.md §9.4)"
                    );
                }
            }
            Ok(Err(problem)) => {
                println!("{name}audit log BROKEN: {problem}");
                intact = false;
            }
            Err(e) => {
                println!("{name}audit log NOT CHECKED: {e}");
                intact = false;
            }
        }
    }
    Ok(intact)
}

fn export_checkpoints(
    store: &StoreArgs,
    since: Option<u64>,
    out: Option<&Path>,
    shard: Option<u32>,
) -> Result<(), String> {
    let config = config_of(store)?;
    let mut stores = open_stores(&config, shard)?;
    if stores.len() > 1 {
        return Err(
            "each shard has its own checkpoint chain (and witness file): name one with --shard"
                .into(),
        );
    }
    let (k, backend) = stores
        .pop()
        .ok_or_else(|| "no shard to export".to_owned())?;
    let backend = backend.map_err(|e| format!("shard {k}: {e}"))?;
    let existing = match out {
        Some(p) if p.exists() => audit::parse_witness(
            &std::fs::read_to_string(p).map_err(|e| format!("read {}: {e}", p.display()))?,
        )?,
        _ => Vec::new(),
    };
    let last = existing.iter().max_by_key(|c| c.seq);
    let since = since.unwrap_or_else(|| last.map_or(0, |c| c.seq));
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
                    shard,
                },
        }) => match audit_verify(store, public_keys, witness.as_deref(), *shard) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::from(2),
            Err(e) => Err(e),
        },
        Some(Cmd::Audit {
            cmd:
                AuditCmd::ExportCheckpoints {
                    store,
                    since,
                    out,
                    shard,
                },
        }) => export_checkpoints(store, *since, out.as_deref(), *shard),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("biopay-server: {e}");
            ExitCode::FAILURE
        }
    }
}
