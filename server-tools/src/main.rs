//! `biopay-server-tools`: the tools that drive a biopay server from the
//! outside and need what the service must not link: the simulated phone of
//! the demo vendor (`demo-device`, the software TEE) and the load generator
//! (`load`, an HTTP client). Tests, demos and benchmarks only.
#![forbid(unsafe_code)]

use biopay_server::b64::{b64, unb64};
use biopay_server_tools::{demo::DemoDevice, load};
use clap::{Args, Parser, Subcommand};
use std::{path::PathBuf, process::ExitCode, time::Duration};

#[derive(Parser)]
#[command(
    name = "biopay-server-tools",
    version,
    about = "Tools for a biopay server: a simulated phone and a load generator (tests and demos only)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// DANGER: a simulated phone of the demo vendor, for trying the API by hand.
    DemoDevice {
        #[command(subcommand)]
        cmd: DemoCmd,
    },
    /// Load generator: N clients register and pay over HTTP; reports payments/s, p50/p99.
    Load(LoadArgs),
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
    /// The database's processes (repeatable: PostgreSQL's), measured like
    /// `--server-pid` but reported apart. Linux only.
    #[arg(long = "db-pid")]
    database_pids: Vec<u32>,
    /// Send the payment challenge requests and assertions as
    /// `application/cbor` (the bytes as they are) instead of JSON with base64url.
    #[arg(long)]
    cbor: bool,
    /// Before the payment phase, add filler credentials (copied from one
    /// client's, written straight into the store) so that this run's
    /// clients and the filler make N: a fresh store then holds N. Needs the
    /// server's `--data-dir` or `--database-url`. DANGER: test stores only.
    #[arg(long, default_value_t = 0)]
    prepopulate: u64,
    /// The server's data directory (SQLite), for `--prepopulate`.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The server's PostgreSQL URL, for `--prepopulate`.
    #[arg(long)]
    database_url: Option<String>,
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
        Cmd::DemoDevice { cmd } => demo(cmd),
        Cmd::Load(a) => load::run(&load::LoadConfig {
            url: a.url.clone(),
            key: a.key.clone(),
            clients: a.clients,
            batch: a.batch,
            duration: Duration::from_secs_f64(a.seconds.max(0.0)),
            max_payments: a.max_payments,
            ecdsa_secs: a.ecdsa_seconds,
            server_pids: a.server_pids.clone(),
            database_pids: a.database_pids.clone(),
            cbor: a.cbor,
            prepopulate: a.prepopulate,
            store: match (&a.database_url, &a.data_dir) {
                (Some(u), _) => Some(load::StoreLocation::DatabaseUrl(u.clone())),
                (None, Some(d)) => Some(load::StoreLocation::DataDir(d.clone())),
                (None, None) => None,
            },
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
            eprintln!("biopay-server-tools: {e}");
            ExitCode::FAILURE
        }
    }
}
