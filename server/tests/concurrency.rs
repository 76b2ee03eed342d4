//! Double spend across two server processes on one store, kill -9 while a
//! load runs, a device-model revocation or credential suspension made
//! through one process and obeyed by the other, and batches that answer as
//! their items sent one by one. All run on SQLite and on a real PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

#[macro_use]
mod common;

use biopay_server::{
    audit::AuditEntry,
    store::{postgres::PgStore, sqlite::SqliteStore, AnyStore, ServerStore},
};
use biopay_server_tools::{
    client::{batch_items, field_bytes, unb64, ApiClient},
    demo::{DemoDevice, FastDevice},
};
use common::*;
use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Barrier, Mutex,
    },
    time::{Duration, Instant},
};

fn open_store(data: &std::path::Path, backend: &Backend) -> AnyStore {
    match backend {
        Backend::Sqlite => AnyStore::Sqlite(SqliteStore::open(&data.join("biopay.db")).unwrap()),
        Backend::Postgres(url) => AnyStore::Postgres(PgStore::connect(url, 2).unwrap()),
    }
}

fn all_entries(store: &AnyStore) -> Vec<AuditEntry> {
    store.audit_entries(0, u64::MAX >> 2).unwrap()
}

/// Stored payment challenges consumed plus self-authenticating ones spent
/// (`BIOPAY_TEST_STATELESS=1`): the payments' single-use records.
fn consumed_payment_challenges(data: &std::path::Path, backend: &Backend) -> i64 {
    const Q: &str = "SELECT (SELECT COUNT(*) FROM challenges WHERE kind = 'payment' AND consumed)
        + (SELECT COUNT(*) FROM spent_challenges)";
    match backend {
        Backend::Sqlite => rusqlite::Connection::open(data.join("biopay.db"))
            .unwrap()
            .query_row(Q, [], |r| r.get(0))
            .unwrap(),
        Backend::Postgres(url) => Postgres::client(url).query_one(Q, &[]).unwrap().get(0),
    }
}

const ROUNDS: usize = 6;
const SUBMITTERS: usize = 24;
/// Submissions per round: every fourth submitter sends 3 copies in a batch.
const PER_ROUND: usize = SUBMITTERS + SUBMITTERS / 4 * 2;

fn double_spend(b: &TestBackend) {
    let data = b.dir.path().join("server");
    let args = ["--lock-after-failures", "0"];
    let s1 = ServerProcess::start(&data, &b.backend, &args);
    let s2 = ServerProcess::start(&data, &b.backend, &args);
    let a1 = s1.api();
    let a2 = a1.at(&s2.url()); // one RP back end: both know its orders
    let phone = tempfile::tempdir().unwrap();
    let mut d = DemoDevice::provision(&phone.path().join("p"), RP).unwrap();
    let r = a1
        .register(
            &d.register(&a1.registration_challenge(b"acct").unwrap())
                .unwrap(),
        )
        .unwrap();
    let id = unb64(r.body["credential_id"].as_str().unwrap()).unwrap();
    let mut accepted_total = 0;
    for round in 0..ROUNDS {
        let c = field_bytes(
            &a2.payment_challenge(&id, &format!("o{round}"), 100)
                .unwrap(),
            "challenge",
        )
        .unwrap();
        let assertion = Arc::new(d.authorize(&c).unwrap());
        let barrier = Arc::new(Barrier::new(SUBMITTERS));
        // Every fourth submitter sends the assertion three times in one
        // batch request: the server runs those copies in order (one
        // credential), so they race only with the other requests.
        let outcomes: Vec<(u16, Option<String>)> = (0..SUBMITTERS)
            .map(|i| {
                let api: ApiClient = if i % 2 == 0 { a1.clone() } else { a2.clone() };
                let (assertion, barrier) = (assertion.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    if i % 4 == 3 {
                        let copies = vec![assertion.to_vec(); 3];
                        let r = api.verify_payment_batch(&copies).unwrap();
                        let items = batch_items(&r, 3).unwrap();
                        // The copies run in order: the second and third
                        // read the challenge consumed, or lost it to
                        // another request, before they run.
                        for item in &items[1..] {
                            assert!(
                                item["status"] == 409
                                    && item["error"]["reason"] == "challenge already used",
                                "{item}"
                            );
                        }
                        items
                            .iter()
                            .map(|item| {
                                let status = u16::try_from(item["status"].as_u64().unwrap());
                                let code = item["error"]["code"].as_str().map(str::to_owned);
                                (status.unwrap(), code)
                            })
                            .collect()
                    } else {
                        let r = api.verify_payment(&assertion).unwrap();
                        vec![(r.status, r.code().map(str::to_owned))]
                    }
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        assert_eq!(outcomes.len(), PER_ROUND);
        let accepted = outcomes.iter().filter(|(s, _)| *s == 200).count();
        assert_eq!(
            accepted, 1,
            "round {round}: exactly one acceptance expected: {outcomes:?}"
        );
        // A copy of an accepted statement is a replay of its challenge:
        // refused at P9 when it reads the challenge consumed, or by the
        // commit that finds it consumed (P20); never as a counter conflict,
        // because the commit consumes the challenge before it moves the counter.
        for (status, code) in outcomes.iter().filter(|(s, _)| *s != 200) {
            assert!(
                *status == 409 && matches!(code.as_deref(), Some("P9" | "P20")),
                "round {round}: a loser must be refused as a replay: {status} {code:?}"
            );
        }
        accepted_total += accepted;
    }
    // Group commits rolled back and rerun with savepoints (a copy lost its
    // race inside one group commit of a process), for the report.
    let reruns: u64 = [&a1, &a2]
        .iter()
        .map(|api| metric(api, "biopay_store_commit_reruns_total"))
        .sum();
    s1.stop();
    s2.stop();
    let store = open_store(&data, &b.backend);
    let entries = all_entries(&store);
    let accepted_payments: Vec<_> = entries
        .iter()
        .filter(|e| e.record.kind == "payment" && e.record.outcome == "accepted")
        .collect();
    assert_eq!(accepted_payments.len(), ROUNDS);
    let hashes: HashSet<_> = accepted_payments
        .iter()
        .map(|e| &e.record.statement_hash)
        .collect();
    assert_eq!(
        hashes.len(),
        ROUNDS,
        "one statement accepted once per round"
    );
    let cred = biopay_core::Store::credential(&store, &biopay_core::CredentialId::new(id).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(cred.counter, u64::try_from(ROUNDS).unwrap());
    assert_eq!(
        consumed_payment_challenges(&data, &b.backend),
        i64::try_from(ROUNDS).unwrap()
    );
    let (ok, out) = audit_verify(&data, &b.backend);
    assert!(ok, "{out}");
    eprintln!(
        "double spend ({:?}): {ROUNDS} runs x {PER_ROUND} concurrent submissions ({SUBMITTERS} requests, every fourth a batch of 3 copies) over 2 processes: {accepted_total} accepted (expected {ROUNDS}), {} refused; {reruns} group commits rerun with savepoints",
        b.backend,
        ROUNDS * PER_ROUND - accepted_total
    );
}

const KILLS: usize = 5;
const CLIENTS: usize = 4;
/// Devices paying through each batch request of the crash test's batch client.
const BATCH: usize = 4;

#[derive(Default)]
struct Tally {
    /// (credential hex, counter, statement hash) of every answer "accepted".
    accepted: Vec<(String, u64, String)>,
    /// Submissions whose answer was lost to a kill, resubmitted after the restart.
    unknown: usize,
    /// Of those, refused as already used: committed before the kill.
    committed_before_kill: usize,
}

/// The crash test's batch client: pays one payment per device per batch
/// request until `stop`; a batch whose answer a kill cut off is resubmitted
/// once the server is back (its committed items then answer P9). Returns
/// how many payments it got answered accepted.
fn batch_payer(
    api: &ApiClient,
    mut devices: Vec<FastDevice>,
    stop: &AtomicBool,
    tally: &Mutex<Tally>,
    deadline: Instant,
) -> usize {
    let mut last_counter = vec![0u64; devices.len()];
    let mut accepted = 0;
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        n += 1;
        let orders: Vec<String> = (0..devices.len()).map(|j| format!("b{n}-{j}")).collect();
        let ids: Vec<Vec<u8>> = devices
            .iter()
            .map(|d| d.credential_id().as_bytes().to_vec())
            .collect();
        let requests: Vec<(&[u8], &str, u64)> = ids
            .iter()
            .zip(&orders)
            .map(|(id, o)| (id.as_slice(), o.as_str(), 100))
            .collect();
        let Ok(r) = api.payment_challenge_batch(&requests) else {
            assert!(wait_up(api, deadline), "server never came back");
            continue;
        };
        let Ok(items) = batch_items(&r, devices.len()) else {
            continue;
        };
        // Devices whose challenge was issued, with their assertions.
        let mut signed = Vec::new();
        for (j, item) in items.iter().enumerate() {
            if let Some(c) = item["challenge"]["challenge"].as_str() {
                signed.push((j, devices[j].authorize(&unb64(c).unwrap()).unwrap()));
            }
        }
        if signed.is_empty() {
            continue;
        }
        let assertions: Vec<Vec<u8>> = signed.iter().map(|(_, a)| a.clone()).collect();
        let reply = match api.verify_payment_batch(&assertions) {
            Ok(r) => r,
            Err(_) => {
                assert!(wait_up(api, deadline), "server never came back");
                let r = api.verify_payment_batch(&assertions).unwrap();
                let mut t = tally.lock().unwrap();
                t.unknown += assertions.len();
                t.committed_before_kill += batch_items(&r, assertions.len())
                    .unwrap()
                    .iter()
                    .filter(|i| i["error"]["code"] == "P9")
                    .count();
                r
            }
        };
        let Ok(items) = batch_items(&reply, assertions.len()) else {
            continue;
        };
        for ((j, a), item) in signed.iter().zip(items) {
            if item["status"] != 200 {
                continue;
            }
            let counter = item["payment"]["counter"].as_u64().unwrap();
            assert!(
                counter > last_counter[*j],
                "counter went backwards: {counter} after {}",
                last_counter[*j]
            );
            last_counter[*j] = counter;
            accepted += 1;
            tally.lock().unwrap().accepted.push((
                devices[*j].credential_id().to_hex(),
                counter,
                hex::encode(biopay_core::crypto::sha256(a)),
            ));
        }
    }
    accepted
}

fn wait_up(api: &ApiClient, stop_at: Instant) -> bool {
    while Instant::now() < stop_at {
        if api.get("/healthz").is_ok_and(|r| r.status == 200) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn crash(b: &TestBackend) {
    let data = b.dir.path().join("server");
    let args = ["--lock-after-failures", "0"];
    let mut server = ServerProcess::start(&data, &b.backend, &args);
    let listen = server.addr.clone();
    let api = ApiClient::new(&server.url(), Some(RP_KEY));
    let devdir = tempfile::tempdir().unwrap();
    let register = |name: String| {
        let mut d = FastDevice::new(&devdir.path().join(&name), RP).unwrap();
        let c = api.registration_challenge(name.as_bytes()).unwrap();
        assert_eq!(api.register(&d.register(&c).unwrap()).unwrap().status, 200);
        d
    };
    let devices: Vec<FastDevice> = (0..CLIENTS).map(|i| register(format!("d{i}"))).collect();
    // One more client pays BATCH devices per request through the batch
    // endpoints.
    let batch_devices: Vec<FastDevice> = (0..BATCH).map(|i| register(format!("b{i}"))).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let deadline = Instant::now() + Duration::from_secs(120);
    let batch_client = {
        let (api, stop, tally) = (api.clone(), stop.clone(), tally.clone());
        std::thread::spawn(move || batch_payer(&api, batch_devices, &stop, &tally, deadline))
    };
    let clients: Vec<_> = devices
        .into_iter()
        .enumerate()
        .map(|(i, mut d)| {
            let (api, stop, tally) = (api.clone(), stop.clone(), tally.clone());
            std::thread::spawn(move || {
                let cred = d.credential_id().to_hex();
                let mut n = 0;
                let mut last_counter = 0;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    n += 1;
                    let Ok(r) = api.payment_challenge(
                        d.credential_id().as_bytes(),
                        &format!("c{i}-{n}"),
                        100,
                    ) else {
                        assert!(wait_up(&api, deadline), "server never came back");
                        continue;
                    };
                    let Ok(c) = field_bytes(&r, "challenge") else {
                        continue;
                    };
                    let a = d.authorize(&c).unwrap();
                    let hash = hex::encode(biopay_core::crypto::sha256(&a));
                    let reply = match api.verify_payment(&a) {
                        Ok(r) => r,
                        Err(_) => {
                            // The answer was lost: resubmit once the server is back.
                            assert!(wait_up(&api, deadline), "server never came back");
                            let r = api.verify_payment(&a).unwrap();
                            let mut t = tally.lock().unwrap();
                            t.unknown += 1;
                            if r.code() == Some("P9") {
                                t.committed_before_kill += 1;
                            }
                            r
                        }
                    };
                    if reply.status == 200 {
                        let counter = reply.body["counter"].as_u64().unwrap();
                        assert!(
                            counter > last_counter,
                            "counter went backwards: {counter} after {last_counter}"
                        );
                        last_counter = counter;
                        tally
                            .lock()
                            .unwrap()
                            .accepted
                            .push((cred.clone(), counter, hash));
                    }
                }
            })
        })
        .collect();

    let mut runs = 0;
    for k in 0..KILLS {
        // Let the load run for a while (bounded), then kill without warning.
        let until = Instant::now() + Duration::from_millis(400 + 150 * u64::try_from(k).unwrap());
        let before = tally.lock().unwrap().accepted.len();
        while Instant::now() < until || tally.lock().unwrap().accepted.len() == before {
            assert!(Instant::now() < deadline, "no progress under load");
            std::thread::sleep(Duration::from_millis(10));
        }
        server.kill9();
        runs += 1;
        server = ServerProcess::start_on(&data, &b.backend, &args, &listen);
        // After each restart the log verifies.
        let (ok, out) = audit_verify(&data, &b.backend);
        assert!(ok, "after kill {k}: {out}");
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let batched = batch_client.join().unwrap();
    assert!(batched > 0, "the batch client never got a payment accepted");
    server.stop();

    let t = tally.lock().unwrap();
    let store = open_store(&data, &b.backend);
    let entries = all_entries(&store);
    let accepted_in_log: HashMap<&str, usize> = entries
        .iter()
        .filter(|e| e.record.kind == "payment" && e.record.outcome == "accepted")
        .fold(HashMap::new(), |mut m, e| {
            *m.entry(e.record.statement_hash.as_str()).or_default() += 1;
            m
        });
    let lost = t
        .accepted
        .iter()
        .filter(|(_, _, h)| !accepted_in_log.contains_key(h.as_str()))
        .count();
    assert_eq!(lost, 0, "answered accepted but missing from the audit log");
    assert!(
        accepted_in_log.values().all(|n| *n == 1),
        "a statement accepted twice"
    );
    let total_in_log: usize = accepted_in_log.values().sum();
    assert_eq!(
        i64::try_from(total_in_log).unwrap(),
        consumed_payment_challenges(&data, &b.backend),
        "every consumed challenge has exactly one accepted decision"
    );
    assert!(total_in_log >= t.accepted.len());
    // Stored counters are at least the highest counter answered accepted.
    let mut max_counter: HashMap<&str, u64> = HashMap::new();
    for (c, n, _) in &t.accepted {
        let m = max_counter.entry(c.as_str()).or_default();
        *m = (*m).max(*n);
    }
    for (c, n) in max_counter {
        let id = biopay_core::CredentialId::new(hex::decode(c).unwrap()).unwrap();
        let stored = biopay_core::Store::credential(&store, &id)
            .unwrap()
            .unwrap()
            .counter;
        assert!(
            stored >= n,
            "counter went backwards in the store: {stored} < {n}"
        );
    }
    let (ok, out) = audit_verify(&data, &b.backend);
    assert!(ok, "{out}");
    eprintln!(
        "crash ({:?}): {runs} kill -9 runs, {} answered accepted ({batched} of them through batch requests of {BATCH}), {} in the log, lost 0; {} answers lost to kills ({} had committed)",
        b.backend,
        t.accepted.len(),
        total_in_log,
        t.unknown,
        t.committed_before_kill
    );
}

#[test]
fn sqlite_double_spend_two_processes() {
    double_spend(&TestBackend::sqlite());
}

#[test]
#[cfg_attr(biopay_skip_postgres, ignore = "BIOPAY_SKIP_POSTGRES=1")]
fn postgres_double_spend_two_processes() {
    double_spend(&TestBackend::postgres());
}

#[test]
fn sqlite_kill_9_under_load() {
    crash(&TestBackend::sqlite());
}

#[test]
#[cfg_attr(biopay_skip_postgres, ignore = "BIOPAY_SKIP_POSTGRES=1")]
fn postgres_kill_9_under_load() {
    crash(&TestBackend::postgres());
}

// ---------------------------------------------------------------------------
// Status changes and batches across processes (docs/PROTOCOL.md §6.1.1, §7.3).

/// A server that does not reload the persisted model statuses by itself
/// during the test (its purge interval is an hour): whatever it accepts after
/// an operator's change made through another process, it accepts on what
/// its own store transaction reads.
fn server_without_reload(b: &TestBackend) -> ServerProcess {
    let config = b.dir.path().join("no-reload.toml");
    std::fs::write(&config, "purge_interval_secs = 3600\n").unwrap();
    let config = config.to_str().unwrap().to_owned();
    b.server(&["--lock-after-failures", "0", "--config", &config])
}

fn register_fast(api: &ApiClient, dir: &std::path::Path, name: &str) -> FastDevice {
    let mut d = FastDevice::new(&dir.join(name), RP).unwrap();
    let c = api.registration_challenge(name.as_bytes()).unwrap();
    let r = api.register(&d.register(&c).unwrap()).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    d
}

/// `n` payment challenges for `d`, answered in order (counters rising by one).
fn signed_payments(api: &ApiClient, d: &mut FastDevice, tag: &str, n: usize) -> Vec<Vec<u8>> {
    let id = d.credential_id().as_bytes().to_vec();
    let challenges: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let r = api.payment_challenge(&id, &format!("{tag}-{i}"), 100);
            field_bytes(&r.unwrap(), "challenge").unwrap()
        })
        .collect();
    challenges.iter().map(|c| d.authorize(c).unwrap()).collect()
}

fn error_reason(v: &serde_json::Value) -> String {
    v["error"]["reason"].as_str().unwrap_or_default().to_owned()
}

fn model_status_path() -> String {
    format!(
        "/v1/admin/models/{}/status",
        biopay_server::demo_trust::DEMO_MODEL
    )
}

/// The attack: an operator marks the device model compromised through
/// process 1; a payment and a registration from that model go to process 2,
/// which has not reloaded the model statuses. Both must be refused, at the
/// model's steps, without any state change.
fn model_compromised_through_one_process_is_refused_by_the_other(b: &TestBackend) {
    let s1 = server_without_reload(b);
    let s2 = server_without_reload(b);
    let (a2, admin1) = (s2.api(), s1.admin());
    let devices = tempfile::tempdir().unwrap();
    let mut d = register_fast(&a2, devices.path(), "victim");
    let payment = signed_payments(&a2, &mut d, "after-revocation", 1).remove(0);
    let mut newcomer = FastDevice::new(&devices.path().join("newcomer"), RP).unwrap();
    let attestation = newcomer
        .register(&a2.registration_challenge(b"newcomer").unwrap())
        .unwrap();

    let r = admin1
        .post(
            &model_status_path(),
            serde_json::json!({"status": "compromised"}),
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);

    let paid = a2.verify_payment(&payment).unwrap();
    assert_eq!(
        (paid.status, paid.code()),
        (422, Some("P7")),
        "process 2 accepted a payment from a compromised model: {}",
        paid.body
    );
    assert!(
        error_reason(&paid.body).contains("Compromised"),
        "{}",
        paid.body
    );
    let registered = a2.register(&attestation).unwrap();
    assert_eq!(
        (registered.status, registered.code()),
        (422, Some("R4")),
        "process 2 registered a credential of a compromised model: {}",
        registered.body
    );

    // The refusals changed nothing: re-activated through process 1, the same
    // statements are accepted by process 2.
    let r = admin1
        .post(
            &model_status_path(),
            serde_json::json!({"status": "active"}),
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let paid = a2.verify_payment(&payment).unwrap();
    assert_eq!(paid.status, 200, "{}", paid.body);
    assert_eq!(paid.body["counter"], 1);
    assert_eq!(a2.register(&attestation).unwrap().status, 200);
    s1.stop();
    s2.stop();
    let (ok, out) = audit_verify(&b.dir.path().join("server"), &b.backend);
    assert!(ok, "{out}");
}

/// The same with a credential suspended through process 1.
fn credential_suspended_through_one_process_is_refused_by_the_other(b: &TestBackend) {
    let s1 = server_without_reload(b);
    let s2 = server_without_reload(b);
    let (a2, admin1) = (s2.api(), s1.admin());
    let devices = tempfile::tempdir().unwrap();
    let mut d = register_fast(&a2, devices.path(), "suspended");
    let payment = signed_payments(&a2, &mut d, "after-suspension", 1).remove(0);
    let suspend = format!(
        "/v1/admin/credentials/{}/suspend",
        biopay_server_tools::client::b64(d.credential_id().as_bytes())
    );
    let r = admin1.post(&suspend, serde_json::json!({})).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let paid = a2.verify_payment(&payment).unwrap();
    assert_eq!(
        (paid.status, paid.code()),
        (422, Some("P6")),
        "process 2 accepted a payment of a suspended credential: {}",
        paid.body
    );
}

/// (status, error code) of each item of a batch reply.
fn batch_outcomes(r: &biopay_server_tools::client::Reply, n: usize) -> Vec<(u64, Option<String>)> {
    batch_items(r, n)
        .unwrap()
        .iter()
        .map(|i| {
            let code = i["error"]["code"].as_str().map(str::to_owned);
            (i["status"].as_u64().unwrap(), code)
        })
        .collect()
}

fn one_by_one(api: &ApiClient, payments: &[Vec<u8>]) -> Vec<(u64, Option<String>)> {
    payments
        .iter()
        .map(|a| {
            let r = api.verify_payment(a).unwrap();
            (u64::from(r.status), r.code().map(str::to_owned))
        })
        .collect()
}

const IN_BATCH: usize = 8;

/// Runs `sql` on the store of `b`'s servers, as someone with write access to
/// the database would.
fn execute_sql(b: &TestBackend, sql: &str) {
    match &b.backend {
        Backend::Sqlite => {
            rusqlite::Connection::open(b.dir.path().join("server").join("biopay.db"))
                .unwrap()
                .execute_batch(sql)
                .unwrap();
        }
        Backend::Postgres(url) => Postgres::client(url).batch_execute(sql).unwrap(),
    }
}

/// A model status that cannot be read as one (a corrupted row): the commit
/// cannot tell whether the model is revoked, so it refuses (503, nothing
/// accepted) until an operator sets the status again.
fn unreadable_model_status_fails_closed(b: &TestBackend) {
    let s = server_without_reload(b);
    let api = s.api();
    let devices = tempfile::tempdir().unwrap();
    let mut d = register_fast(&api, devices.path(), "corrupted");
    let payment = signed_payments(&api, &mut d, "corrupted", 1).remove(0);
    let mut newcomer = FastDevice::new(&devices.path().join("newcomer"), RP).unwrap();
    let attestation = newcomer
        .register(&api.registration_challenge(b"newcomer").unwrap())
        .unwrap();
    execute_sql(
        b,
        &format!(
            "INSERT INTO model_status (model, status) VALUES ('{}', 'withdrawn?')",
            biopay_server::demo_trust::DEMO_MODEL
        ),
    );
    let paid = api.verify_payment(&payment).unwrap();
    assert_eq!(
        (paid.status, paid.code()),
        (503, Some("P20")),
        "a payment was decided on an unreadable model status: {}",
        paid.body
    );
    let registered = api.register(&attestation).unwrap();
    assert_eq!(
        (registered.status, registered.code()),
        (503, Some("R16")),
        "{}",
        registered.body
    );
    let r = s
        .admin()
        .post(
            &model_status_path(),
            serde_json::json!({"status": "active"}),
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(api.verify_payment(&payment).unwrap().status, 200);
    assert_eq!(api.register(&attestation).unwrap().status, 200);
}

/// Eight payments of one credential, signed in order, in one batch: all
/// accepted, as they are when sent one by one.
fn batch_of_one_credentials_payments_in_order_is_all_accepted(b: &TestBackend) {
    let s = server_without_reload(b);
    let api = s.api();
    let devices = tempfile::tempdir().unwrap();
    let mut batched = register_fast(&api, devices.path(), "batched");
    let mut single = register_fast(&api, devices.path(), "single");
    let batch = signed_payments(&api, &mut batched, "batch", IN_BATCH);
    let singles = signed_payments(&api, &mut single, "single", IN_BATCH);
    let r = api.verify_payment_batch(&batch).unwrap();
    let outcomes = batch_outcomes(&r, IN_BATCH);
    assert!(
        outcomes.iter().all(|(s, _)| *s == 200),
        "a batch of one credential's payments in order: {}",
        r.body
    );
    let counters: Vec<u64> = batch_items(&r, IN_BATCH)
        .unwrap()
        .iter()
        .map(|i| i["payment"]["counter"].as_u64().unwrap())
        .collect();
    assert_eq!(counters, (1..=8).collect::<Vec<u64>>());
    assert_eq!(one_by_one(&api, &singles), outcomes);
}

/// The same items in reverse order (counters 8 down to 1), and interleaved
/// with another credential's: a batch answers exactly what the items sent one
/// by one in that order get (reversed: the first accepted, the others
/// superseded at P19, none flagged).
fn batch_answers_as_the_items_sent_one_by_one(b: &TestBackend) {
    let s = server_without_reload(b);
    let api = s.api();
    let devices = tempfile::tempdir().unwrap();
    let mut names = [
        "rev-batch",
        "rev-single",
        "mix-a",
        "mix-b",
        "mix-c",
        "mix-d",
    ]
    .map(|n| register_fast(&api, devices.path(), n));
    let [rb, rs, ma, mb, mc, md] = &mut names;
    let mut reversed_batch = signed_payments(&api, rb, "rb", IN_BATCH);
    let mut reversed_single = signed_payments(&api, rs, "rs", IN_BATCH);
    reversed_batch.reverse();
    reversed_single.reverse();
    let r = api.verify_payment_batch(&reversed_batch).unwrap();
    let batched = batch_outcomes(&r, IN_BATCH);
    let mut expected = vec![(200, None)];
    expected.extend(vec![(409, Some("P19".to_owned())); IN_BATCH - 1]);
    assert_eq!(batched, expected, "{}", r.body);
    for item in &batch_items(&r, IN_BATCH).unwrap()[1..] {
        assert!(error_reason(item).contains("superseded"), "{item}");
    }
    assert_eq!(one_by_one(&api, &reversed_single), batched);
    // Two credentials interleaved, each in order.
    let interleave = |x: Vec<Vec<u8>>, y: Vec<Vec<u8>>| -> Vec<Vec<u8>> {
        x.into_iter().zip(y).flat_map(|(a, b)| [a, b]).collect()
    };
    let mixed_batch = interleave(
        signed_payments(&api, ma, "ma", IN_BATCH / 2),
        signed_payments(&api, mb, "mb", IN_BATCH / 2),
    );
    let mixed_single = interleave(
        signed_payments(&api, mc, "mc", IN_BATCH / 2),
        signed_payments(&api, md, "md", IN_BATCH / 2),
    );
    let r = api.verify_payment_batch(&mixed_batch).unwrap();
    let batched = batch_outcomes(&r, IN_BATCH);
    assert!(batched.iter().all(|(s, _)| *s == 200), "{}", r.body);
    assert_eq!(one_by_one(&api, &mixed_single), batched);
    // Nothing was flagged: the superseded statements are ordinary rejections.
    s.stop();
    let store = open_store(&b.dir.path().join("server"), &b.backend);
    for d in &names {
        let cred = biopay_core::Store::credential(&store, d.credential_id())
            .unwrap()
            .unwrap();
        assert_eq!(cred.status, biopay_core::CredentialStatus::Active);
    }
}

/// Payments of one credential, signed in order, raced over two processes:
/// each is accepted or refused as superseded (`P19 CounterSuperseded`: a
/// later one was accepted first); none is refused as a generic conflict and
/// the credential is not flagged; the highest counter is always accepted.
fn one_credentials_payments_raced_over_two_processes(b: &TestBackend) {
    let s1 = server_without_reload(b);
    let s2 = server_without_reload(b);
    let a1 = s1.api();
    let a2 = a1.at(&s2.url());
    let devices = tempfile::tempdir().unwrap();
    let mut d = register_fast(&a1, devices.path(), "raced");
    const RACED: usize = 16;
    let payments = signed_payments(&a1, &mut d, "raced", RACED);
    let barrier = Arc::new(Barrier::new(RACED));
    let outcomes: Vec<(u16, serde_json::Value)> = payments
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            let api = if i % 2 == 0 { a1.clone() } else { a2.clone() };
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let r = api.verify_payment(&a).unwrap();
                (r.status, r.body)
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    for (status, body) in &outcomes {
        assert!(
            *status == 200
                || (*status == 409
                    && body["error"]["code"] == "P19"
                    && error_reason(body).contains("superseded")),
            "a payment of a raced credential must be accepted or superseded: {status} {body}"
        );
    }
    assert_eq!(
        outcomes.last().unwrap().0,
        200,
        "the highest counter is accepted"
    );
    s1.stop();
    s2.stop();
    let store = open_store(&b.dir.path().join("server"), &b.backend);
    let cred = biopay_core::Store::credential(&store, d.credential_id())
        .unwrap()
        .unwrap();
    assert_eq!(cred.counter, u64::try_from(RACED).unwrap());
    assert_eq!(cred.status, biopay_core::CredentialStatus::Active);
}

suite!(
    model_compromised_through_one_process_is_refused_by_the_other,
    credential_suspended_through_one_process_is_refused_by_the_other,
    unreadable_model_status_fails_closed,
    batch_of_one_credentials_payments_in_order_is_all_accepted,
    batch_answers_as_the_items_sent_one_by_one,
    one_credentials_payments_raced_over_two_processes,
);
