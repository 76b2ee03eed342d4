//! The load generator: N concurrent clients, each a [`FastDevice`] that
//! registers once and then pays in a loop over loopback HTTP, bounded by time
//! and by count. Reports payments/s and latency percentiles, and, in the same
//! run on the same cores, raw ring ECDSA-P256 verifications/s for the ratio.

use crate::{
    client::{batch_items, field_bytes, unb64, ApiClient},
    demo::FastDevice,
};
use ring::{
    rand::SystemRandom,
    signature::{
        EcdsaKeyPair, KeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED,
        ECDSA_P256_SHA256_FIXED_SIGNING,
    },
};
use serde::Serialize;
use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Server base URL.
    pub url: String,
    /// Relying-party API key.
    pub key: String,
    /// Concurrent clients.
    pub clients: usize,
    /// Payments per request: 1 uses `/v1/payments/challenge` and
    /// `/v1/payments/verify`; more sends that many payments (each client then
    /// holds that many devices) through the `/batch` endpoints.
    pub batch: usize,
    /// Time bound for the payment phase.
    pub duration: Duration,
    /// Count bound: stop after this many accepted payments in total.
    pub max_payments: u64,
    /// Seconds to measure raw ECDSA verification (0 skips it).
    pub ecdsa_secs: f64,
    /// Processes whose CPU time during the payment phase is reported as the
    /// server's (the biopay-server process; PostgreSQL's go in
    /// `database_pids`). Linux only (`/proc/<pid>/stat`); empty: not measured.
    pub server_pids: Vec<u32>,
    /// The database's processes (PostgreSQL), measured like `server_pids`
    /// but reported apart (`database_cpu_us_per_payment`).
    pub database_pids: Vec<u32>,
    /// Send the payment endpoints' bodies (challenge requests, assertions)
    /// as `application/cbor` instead of JSON.
    pub cbor: bool,
    /// Before the payment phase, add filler credentials so that this run's
    /// clients and the filler make this many ([`prepopulate`]; on a fresh
    /// store, the store then holds that many); 0: only the clients' own.
    pub prepopulate: u64,
    /// The store of the server under test (its data directory or database
    /// URL), for `prepopulate`.
    pub store: Option<StoreLocation>,
}

/// Where the server under test keeps its store.
#[derive(Debug, Clone)]
pub enum StoreLocation {
    /// SQLite: the server's data directory (`biopay.db` in it).
    DataDir(std::path::PathBuf),
    /// PostgreSQL: the server's database URL.
    DatabaseUrl(String),
}

/// Filler credentials per transaction.
const PREPOPULATE_CHUNK: u64 = 50_000;

/// Adds `total` − `registered` credentials to the store at `location`
/// (`registered`: those this run's clients registered over HTTP), filler copied from
/// the credential `template` (a real registration: same public key, model,
/// epoch; own id and account), written straight into the store in
/// transactions of [`PREPOPULATE_CHUNK`], not one HTTP registration each.
/// The server keeps running meanwhile (idle: SQLite's WAL admits this second
/// writer; PostgreSQL any number). Returns (filler inserted, seconds).
pub fn prepopulate(
    location: &StoreLocation,
    template: &biopay_core::CredentialId,
    total: u64,
    registered: u64,
) -> Result<(u64, f64), String> {
    use biopay_core::Store as _;
    let filler = total.saturating_sub(registered);
    if filler == 0 {
        return Ok((0, 0.0));
    }
    let started = Instant::now();
    let store = match location {
        StoreLocation::DataDir(d) => biopay_server::store::AnyStore::Sqlite(
            biopay_server::store::sqlite::SqliteStore::open(&d.join("biopay.db"))
                .map_err(|e| e.to_string())?,
        ),
        StoreLocation::DatabaseUrl(u) => biopay_server::store::AnyStore::Postgres(
            biopay_server::store::postgres::PgStore::connect(u, 2).map_err(|e| e.to_string())?,
        ),
    };
    let record = store
        .credential(template)
        .map_err(|e| e.to_string())?
        .ok_or("prepopulate: the template credential is not in that store (another server's?)")?;
    let mut first = 0;
    while first < filler {
        let n = PREPOPULATE_CHUNK.min(filler - first);
        store
            .danger_insert_filler_credentials(&record, first, n)
            .map_err(|e| format!("prepopulate: {e}"))?;
        first += n;
    }
    Ok((filler, started.elapsed().as_secs_f64()))
}

/// What was measured.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// Clients.
    pub clients: usize,
    /// Payments per request (1: the single-payment endpoints).
    pub batch: usize,
    /// Whether the payment requests went as `application/cbor`.
    pub cbor: bool,
    /// Filler credentials this run wrote into the store (`--prepopulate`).
    pub prepopulated: u64,
    /// Seconds that took.
    pub prepopulate_seconds: f64,
    /// Accepted payments.
    pub accepted: u64,
    /// Failed or rejected payments.
    pub failed: u64,
    /// Payment phase wall time, seconds.
    pub seconds: f64,
    /// Accepted payments per second (challenge + verify round trips).
    pub payments_per_sec: f64,
    /// Median latency of one payment (challenge + sign + verify; with
    /// batches, of the whole batch the payment was in), ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Raw ECDSA-P256 verifications per second on all cores (0 when skipped).
    pub ecdsa_verifications_per_sec: f64,
    /// payments_per_sec / ecdsa_verifications_per_sec: the headline figure,
    /// with the load generator and the server on the same cores.
    pub ratio: f64,
    /// CPU time of the load generator itself per accepted payment (HTTP
    /// client, JSON, the device's ECDSA signature), microseconds.
    pub client_cpu_us_per_payment: f64,
    /// CPU time of the `server_pids` per accepted payment, microseconds (0
    /// when not measured).
    pub server_cpu_us_per_payment: f64,
    /// Server-only ratio: payments per second of server CPU ÷ ECDSA
    /// verifications per second of one core, i.e. the ratio if the load
    /// generator ran elsewhere and the server had the cores to itself
    /// (`server_pids` only; [`Self::server_ratio`] adds the database and
    /// uses a one-core ring measurement). Not the headline figure (0 when
    /// not measured).
    pub server_only_ratio: f64,
    /// CPU time of the `database_pids` per accepted payment, microseconds
    /// (0 when not measured).
    pub database_cpu_us_per_payment: f64,
    /// One raw ring ECDSA-P256 verification on one core, measured after the
    /// payment phase in the same run, microseconds (0 when skipped).
    pub ring_verify_us: f64,
    /// The server ratio of issue #12: `ring_verify_us` ÷ (server +
    /// database CPU µs per accepted payment), the load generator excluded
    /// (0 when not measured). 1.0 would be a server spending exactly one
    /// signature check's CPU per payment.
    pub server_ratio: f64,
    /// Write operations per store transaction during the payment phase (the
    /// group commit's batch size, from the server's /metrics; 0 if unknown).
    pub operations_per_commit: f64,
    /// Store operations each shard served during the payment phase, in
    /// shard order (from the server's /metrics: how the load spread over a
    /// sharded server's databases; one entry for one database).
    pub shard_operations: Vec<u64>,
}

/// Store operations served by each shard so far, in shard order, from /metrics.
fn shard_operations(api: &ApiClient) -> Vec<u64> {
    let Some(text) = api
        .get("/metrics")
        .ok()
        .and_then(|r| r.body.as_str().map(str::to_owned))
    else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| l.strip_prefix("biopay_shard_store_operations_total{shard=\""))
        .filter_map(|l| l.split_once(' ')?.1.trim().parse().ok())
        .collect()
}

/// (transactions, operations) of the server's group committer, from /metrics.
fn commit_counters(api: &ApiClient) -> Option<(u64, u64)> {
    let r = api.get("/metrics").ok()?;
    let text = r.body.as_str()?;
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    };
    Some((
        value("biopay_store_commits_total")?,
        value("biopay_store_commit_operations_total")?,
    ))
}

/// CPU seconds (user + system) a process has used so far, from
/// `/proc/<pid>/stat` (fields 14 and 15, in USER_HZ = 100 ticks per second).
pub fn process_cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count fields after its ')'.
    let rest = stat.rsplit_once(')')?.1;
    let mut f = rest.split_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    #[allow(clippy::cast_precision_loss)]
    Some((utime + stime) as f64 / 100.0)
}

fn cpu_of(pids: &[u32]) -> f64 {
    pids.iter()
        .filter_map(|p| process_cpu_secs(&p.to_string()))
        .sum()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let last = sorted.len() - 1;
    // Rounded index into a non-empty slice; float-to-int conversion saturates.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let idx = ((last as f64) * p).round() as usize;
    sorted
        .get(idx.min(last))
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// Raw ring ECDSA-P256 verifications per second with `threads` threads for `secs`.
pub fn ecdsa_verifications_per_sec(threads: usize, secs: f64) -> Result<f64, String> {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| "keygen".to_owned())?;
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|_| "key".to_owned())?;
    let msg = [42u8; 200];
    let sig = key.sign(&rng, &msg).map_err(|_| "sign".to_owned())?;
    let public = key.public_key().as_ref().to_vec();
    let sig = sig.as_ref().to_vec();
    let total = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            let total = total.clone();
            let (public, sig) = (&public, &sig);
            s.spawn(move || {
                let pk = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public);
                let mut n = 0u64;
                while Instant::now() < deadline {
                    for _ in 0..64 {
                        if pk.verify(&msg, sig).is_ok() {
                            n += 1;
                        }
                    }
                }
                total.fetch_add(n, Ordering::Relaxed);
            });
        }
    });
    #[allow(clippy::cast_precision_loss)]
    Ok(total.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

/// Runs the load and reports.
pub fn run(cfg: &LoadConfig) -> Result<LoadReport, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let api = ApiClient::new(&cfg.url, Some(&cfg.key)).with_cbor(cfg.cbor);
    // Register every client's device first (not timed).
    let rp = rp_id(&api)?;
    let batch = cfg.batch.max(1);
    let mut clients = Vec::new();
    for i in 0..cfg.clients.max(1) {
        let mut devices = Vec::with_capacity(batch);
        for j in 0..batch {
            let mut d = FastDevice::new(&dir.path().join(format!("d{i}-{j}")), &rp)?;
            let c = api.registration_challenge(format!("load-account-{i}-{j}").as_bytes())?;
            let att = d.register(&c)?;
            let r = api.register(&att)?;
            if r.status != 200 {
                return Err(format!("registration failed: HTTP {} {}", r.status, r.body));
            }
            devices.push(d);
        }
        clients.push(devices);
    }
    let (prepopulated, prepopulate_seconds) =
        match (&cfg.store, clients.first().and_then(|d| d.first())) {
            (Some(location), Some(d)) if cfg.prepopulate > 0 => {
                let registered = clients.iter().map(Vec::len).sum::<usize>();
                prepopulate(
                    location,
                    d.credential_id(),
                    cfg.prepopulate,
                    u64::try_from(registered).unwrap_or(u64::MAX),
                )?
            }
            (None, _) if cfg.prepopulate > 0 => {
                return Err("--prepopulate needs the server's --data-dir or --database-url".into())
            }
            _ => (0, 0.0),
        };
    let accepted = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + cfg.duration;
    let commits0 = commit_counters(&api);
    let shards0 = shard_operations(&api);
    let client_cpu0 = process_cpu_secs("self").unwrap_or(0.0);
    let server_cpu0 = cpu_of(&cfg.server_pids);
    let database_cpu0 = cpu_of(&cfg.database_pids);
    let started = Instant::now();
    let mut latencies: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(i, mut devices)| {
                let api = api.clone();
                let (accepted, failed) = (accepted.clone(), failed.clone());
                let max = cfg.max_payments;
                s.spawn(move || {
                    let mut lat = Vec::new();
                    let mut n = 0u64;
                    while Instant::now() < deadline && accepted.load(Ordering::Relaxed) < max {
                        n += 1;
                        let t = Instant::now();
                        let (ok, bad) = if let [d] = devices.as_mut_slice() {
                            match pay_one(&api, d, &format!("load-{i}-{n}")) {
                                Ok(true) => (1, 0),
                                _ => (0, 1),
                            }
                        } else {
                            pay_batch(&api, &mut devices, &format!("load-{i}-{n}"))
                                .unwrap_or((0, devices.len() as u64))
                        };
                        accepted.fetch_add(ok, Ordering::Relaxed);
                        failed.fetch_add(bad, Ordering::Relaxed);
                        let elapsed = t.elapsed();
                        lat.extend((0..ok).map(|_| elapsed));
                    }
                    lat
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    let client_cpu = process_cpu_secs("self").unwrap_or(0.0) - client_cpu0;
    let server_cpu = cpu_of(&cfg.server_pids) - server_cpu0;
    let database_cpu = cpu_of(&cfg.database_pids) - database_cpu0;
    #[allow(clippy::cast_precision_loss)]
    let operations_per_commit = match (commits0, commit_counters(&api)) {
        (Some((b0, o0)), Some((b1, o1))) if b1 > b0 => (o1 - o0) as f64 / (b1 - b0) as f64,
        _ => 0.0,
    };
    let shard_operations: Vec<u64> = shard_operations(&api)
        .iter()
        .enumerate()
        .map(|(k, n)| n.saturating_sub(shards0.get(k).copied().unwrap_or(0)))
        .collect();
    latencies.sort();
    let accepted = accepted.load(Ordering::Relaxed);
    #[allow(clippy::cast_precision_loss)]
    let payments_per_sec = accepted as f64 / seconds;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (ecdsa, ring_verify_us) = if cfg.ecdsa_secs > 0.0 {
        let one_core = ecdsa_verifications_per_sec(1, cfg.ecdsa_secs)?;
        (
            ecdsa_verifications_per_sec(threads, cfg.ecdsa_secs)?,
            if one_core > 0.0 { 1e6 / one_core } else { 0.0 },
        )
    } else {
        (0.0, 0.0)
    };
    #[allow(clippy::cast_precision_loss)]
    let per_payment = |cpu: f64| {
        if accepted > 0 {
            cpu * 1e6 / accepted as f64
        } else {
            0.0
        }
    };
    #[allow(clippy::cast_precision_loss)]
    let per_core_ecdsa = ecdsa / threads as f64;
    Ok(LoadReport {
        clients: cfg.clients,
        batch,
        cbor: cfg.cbor,
        prepopulated,
        prepopulate_seconds,
        operations_per_commit,
        shard_operations,
        client_cpu_us_per_payment: per_payment(client_cpu),
        server_cpu_us_per_payment: per_payment(server_cpu),
        database_cpu_us_per_payment: per_payment(database_cpu),
        ring_verify_us,
        server_ratio: if server_cpu > 0.0 && accepted > 0 {
            ring_verify_us / per_payment(server_cpu + database_cpu)
        } else {
            0.0
        },
        server_only_ratio: if server_cpu > 0.0 && per_core_ecdsa > 0.0 {
            #[allow(clippy::cast_precision_loss)]
            let per_server_cpu_sec = accepted as f64 / server_cpu;
            per_server_cpu_sec / per_core_ecdsa
        } else {
            0.0
        },
        accepted,
        failed: failed.load(Ordering::Relaxed),
        seconds,
        payments_per_sec,
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        ecdsa_verifications_per_sec: ecdsa,
        ratio: if ecdsa > 0.0 {
            payments_per_sec / ecdsa
        } else {
            0.0
        },
    })
}

/// One payment through the single-payment endpoints: whether it was accepted.
fn pay_one(api: &ApiClient, d: &mut FastDevice, order: &str) -> Result<bool, String> {
    let r = api.payment_challenge(d.credential_id().as_bytes(), order, 880)?;
    let c = field_bytes(&r, "challenge")?;
    let a = d.authorize(&c)?;
    Ok(api.verify_payment(&a)?.status == 200)
}

/// One payment per device through the batch endpoints: (accepted, failed).
fn pay_batch(
    api: &ApiClient,
    devices: &mut [FastDevice],
    order: &str,
) -> Result<(u64, u64), String> {
    let orders: Vec<String> = (0..devices.len()).map(|j| format!("{order}-{j}")).collect();
    let requests: Vec<(&[u8], &str, u64)> = devices
        .iter()
        .zip(&orders)
        .map(|(d, o)| (d.credential_id().as_bytes(), o.as_str(), 880))
        .collect();
    let r = api.payment_challenge_batch(&requests)?;
    drop(requests);
    let mut assertions = Vec::with_capacity(devices.len());
    for (d, item) in devices.iter_mut().zip(batch_items(&r, orders.len())?) {
        if let Some(c) = item["challenge"]["challenge"].as_str() {
            assertions.push(d.authorize(&unb64(c)?)?);
        }
    }
    let issued = assertions.len();
    let r = api.verify_payment_batch(&assertions)?;
    let ok = batch_items(&r, issued)?
        .iter()
        .filter(|i| i["status"] == 200 && i["payment"]["status"] == "accepted")
        .count();
    Ok((ok as u64, (devices.len() - ok) as u64))
}

/// The server's rp id, read from a fresh registration challenge.
fn rp_id(api: &ApiClient) -> Result<String, String> {
    use biopay_core::messages::Message;
    let c = api.registration_challenge(b"load-probe")?;
    Ok(biopay_core::RegistrationChallenge::from_cbor(&c)
        .map_err(|e| e.to_string())?
        .rp_id)
}
