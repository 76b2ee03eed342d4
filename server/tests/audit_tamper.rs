//! Attacks on the audit log by someone with write access to the database
//! (and, for the key replacement, to the data directory), on SQLite and on
//! PostgreSQL: `biopay-server audit verify` names each one, given the
//! witness file (checkpoints exported with `audit export-checkpoints`)
//! where the database alone cannot tell.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

#[macro_use]
mod common;

use biopay_server::{
    audit::{entry_hash, AuditRecord, GENESIS_HASH},
    store::{postgres::PgStore, sqlite::SqliteStore, AnyStore, ServerStore},
};
use biopay_server_tools::{client::field_bytes, demo::DemoDevice};
use common::*;
use ring::signature::{Ed25519KeyPair, KeyPair};
use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// A config file that keeps the periodic checkpoint out of the way: the
/// checkpoints are exactly the ones each server run signs when it stops.
fn quiet_config(dir: &Path) -> PathBuf {
    let p = dir.join("quiet.toml");
    std::fs::write(&p, "checkpoint_interval_secs = 1000000\n").unwrap();
    p
}

/// A populated log: three server runs of 5, 4 and 4 entries (1 registration,
/// then payments each followed by a replay), so signed checkpoints at
/// entries 5, 9 and 13; the witness file is exported after each run.
struct Log {
    data: PathBuf,
    witness: PathBuf,
    config: PathBuf,
    public_key: String,
    device: DemoDevice,
    credential: Vec<u8>,
    _phone: tempfile::TempDir,
}

fn server_args(log_config: &Path) -> Vec<String> {
    vec![
        "--lock-after-failures".into(),
        "0".into(),
        "--config".into(),
        log_config.display().to_string(),
    ]
}

/// One server run: `payments` payments, each followed by its replay.
fn run(b: &TestBackend, log: &mut Log, payments: usize, register: bool) {
    let args = server_args(&log.config);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let s = b.server(&args);
    let api = s.api();
    if register {
        let c = api.registration_challenge(b"acct").unwrap();
        let r = api.register(&log.device.register(&c).unwrap()).unwrap();
        log.credential =
            biopay_server_tools::client::unb64(r.body["credential_id"].as_str().unwrap()).unwrap();
    }
    for i in 0..payments {
        let c = field_bytes(
            &api.payment_challenge(&log.credential, &format!("o{i}"), 100)
                .unwrap(),
            "challenge",
        )
        .unwrap();
        let a = log.device.authorize(&c).unwrap();
        assert_eq!(api.verify_payment(&a).unwrap().status, 200);
        assert_eq!(api.verify_payment(&a).unwrap().code(), Some("P9"));
    }
    s.stop();
}

fn populated(b: &TestBackend) -> Log {
    let phone = tempfile::tempdir().unwrap();
    let device = DemoDevice::provision(&phone.path().join("p"), RP).unwrap();
    let data = b.dir.path().join("server");
    let mut log = Log {
        witness: b.dir.path().join("witness.jsonl"),
        config: quiet_config(b.dir.path()),
        public_key: String::new(),
        data,
        device,
        credential: Vec::new(),
        _phone: phone,
    };
    run(b, &mut log, 2, true);
    export(b, &log, &[]);
    run(b, &mut log, 2, false);
    export(b, &log, &[]);
    run(b, &mut log, 2, false);
    export(b, &log, &[]);
    log.public_key = public_key_of(&log.data.join("audit-signing-key.pk8"));
    log
}

fn public_key_of(pk8: &Path) -> String {
    let pair = Ed25519KeyPair::from_pkcs8(&std::fs::read(pk8).unwrap()).unwrap();
    hex::encode(pair.public_key().as_ref())
}

fn cli(b: &TestBackend, log: &Log, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(bin());
    cmd.args(args).arg("--data-dir").arg(&log.data);
    if let Backend::Postgres(url) = &b.backend {
        cmd.args(["--database-url", url]);
    }
    let out = cmd
        .env_remove("BIOPAY_DATABASE_URL")
        .env_remove("BIOPAY_CONFIG")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Appends the new checkpoints to the witness file.
fn export(b: &TestBackend, log: &Log, extra: &[&str]) {
    let w = log.witness.display().to_string();
    let mut args = vec!["audit", "export-checkpoints", "--out", &w];
    args.extend_from_slice(extra);
    let (ok, out) = cli(b, log, &args);
    assert!(ok, "{out}");
}

/// `audit verify` trusting the server's public key, from the database alone.
fn verify(b: &TestBackend, log: &Log) -> (bool, String) {
    cli(
        b,
        log,
        &["audit", "verify", "--audit-public-key", &log.public_key],
    )
}

/// `audit verify` trusting the server's public key, with the witness file.
fn verify_witnessed(b: &TestBackend, log: &Log) -> (bool, String) {
    let w = log.witness.display().to_string();
    cli(
        b,
        log,
        &[
            "audit",
            "verify",
            "--audit-public-key",
            &log.public_key,
            "--witness",
            &w,
        ],
    )
}

/// Runs SQL on the backend's database as the attacker.
fn sql(b: &TestBackend, log: &Log, statements: &str) {
    match &b.backend {
        Backend::Sqlite => rusqlite::Connection::open(log.data.join("biopay.db"))
            .unwrap()
            .execute_batch(statements)
            .unwrap(),
        Backend::Postgres(url) => Postgres::client(url).batch_execute(statements).unwrap(),
    }
}

fn open_store(b: &TestBackend, log: &Log) -> AnyStore {
    match &b.backend {
        Backend::Sqlite => {
            AnyStore::Sqlite(SqliteStore::open(&log.data.join("biopay.db")).unwrap())
        }
        Backend::Postgres(url) => AnyStore::Postgres(PgStore::connect(url, 2).unwrap()),
    }
}

fn refused(r: (bool, String), needle: &str) {
    let (ok, out) = r;
    assert!(!ok, "verify passed, expected {needle:?}: {out}");
    assert!(out.contains("audit log BROKEN"), "{out}");
    assert!(out.contains(needle), "expected {needle:?} in: {out}");
}

// ---------------------------------------------------------------------------
// The attacks

fn intact_log_verifies_with_and_without_the_witness(b: &TestBackend) {
    let log = populated(b);
    let (ok, out) = verify(b, &log);
    assert!(ok, "{out}");
    assert!(out.contains("13 entries"), "{out}");
    assert!(out.contains("3 signed checkpoints"), "{out}");
    let (ok, out) = verify_witnessed(b, &log);
    assert!(ok, "{out}");
    assert!(out.contains("3 witness checkpoints agree"), "{out}");
    // Re-exporting appends nothing: the file holds each checkpoint once.
    export(b, &log, &[]);
    let lines = std::fs::read_to_string(&log.witness).unwrap();
    assert_eq!(lines.lines().count(), 3, "{lines}");
}

/// The attack of issue #10: the newest entries, the checkpoints that
/// covered them and the head row are all rewound. The database is then a
/// consistent shorter log; only the witness can tell.
fn tail_cut_with_its_checkpoints_and_head_row_is_caught_by_the_witness(b: &TestBackend) {
    let log = populated(b);
    sql(
        b,
        &log,
        "DELETE FROM audit_log WHERE seq > 9;
         DELETE FROM audit_checkpoints WHERE seq > 9;
         UPDATE audit_head SET seq = 9, hash = (SELECT hash FROM audit_log WHERE seq = 9);",
    );
    let (ok, out) = verify(b, &log);
    assert!(ok, "the database alone cannot tell: {out}");
    assert!(out.contains("9 entries"), "{out}");
    refused(
        verify_witnessed(b, &log),
        "the log has 9 entries but the witness holds a signed checkpoint at entry 13",
    );
}

fn tail_cut_with_its_checkpoints_but_not_the_head_row_is_named(b: &TestBackend) {
    let log = populated(b);
    sql(
        b,
        &log,
        "DELETE FROM audit_log WHERE seq > 9; DELETE FROM audit_checkpoints WHERE seq > 9;",
    );
    refused(
        verify(b, &log),
        "the head row says the log has 13 entries but it ends at entry 9",
    );
}

fn tail_cut_below_its_checkpoint_is_named(b: &TestBackend) {
    let log = populated(b);
    sql(
        b,
        &log,
        "DELETE FROM audit_log WHERE seq > 10;
         UPDATE audit_head SET seq = 10, hash = (SELECT hash FROM audit_log WHERE seq = 10);",
    );
    refused(
        verify(b, &log),
        "entries after 10 were removed: a signed checkpoint covers entry 13",
    );
}

fn removed_checkpoint_breaks_the_checkpoint_chain(b: &TestBackend) {
    let log = populated(b);
    sql(b, &log, "DELETE FROM audit_checkpoints WHERE seq = 9");
    refused(
        verify(b, &log),
        "the checkpoint chain is broken at entry 13: it does not follow the checkpoint at entry 5",
    );
    sql(b, &log, "DELETE FROM audit_checkpoints WHERE seq = 5");
    refused(
        verify(b, &log),
        "the checkpoint chain is broken at entry 13: it names a previous checkpoint, but none precedes it",
    );
}

fn removed_checkpoints_at_the_end_are_named_by_the_witness(b: &TestBackend) {
    let log = populated(b);
    sql(b, &log, "DELETE FROM audit_checkpoints WHERE seq > 5");
    let (ok, out) = verify(b, &log);
    assert!(ok, "the entries are all there: {out}");
    refused(
        verify_witnessed(b, &log),
        "the database has no checkpoint at entry 9, but the witness holds one",
    );
}

fn rewritten_tail_disagrees_with_the_witness(b: &TestBackend) {
    let mut log = populated(b);
    sql(
        b,
        &log,
        "DELETE FROM audit_log WHERE seq > 9;
         DELETE FROM audit_checkpoints WHERE seq > 9;
         UPDATE audit_head SET seq = 9, hash = (SELECT hash FROM audit_log WHERE seq = 9);",
    );
    // The server carries on: a new, different entry 10..13, signed by the real key.
    run(b, &mut log, 2, false);
    let (ok, out) = verify(b, &log);
    assert!(ok, "the database alone cannot tell: {out}");
    refused(
        verify_witnessed(b, &log),
        "entry 13 does not match the witness's signed checkpoint",
    );
    // The next export notices too, and writes nothing.
    run(b, &mut log, 1, false);
    let before = std::fs::read_to_string(&log.witness).unwrap();
    let w = log.witness.display().to_string();
    let (ok, out) = cli(b, &log, &["audit", "export-checkpoints", "--out", &w]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("the database's checkpoint at entry 15 does not follow the witness's last checkpoint (entry 13)"),
        "{out}"
    );
    assert_eq!(std::fs::read_to_string(&log.witness).unwrap(), before);
}

fn altered_entry_is_named(b: &TestBackend) {
    let log = populated(b);
    sql(
        b,
        &log,
        "UPDATE audit_log SET outcome = 'accepted', reason = '' WHERE seq = 5",
    );
    refused(verify(b, &log), "entry 5 was altered");
}

fn removed_entry_is_named(b: &TestBackend) {
    let log = populated(b);
    sql(b, &log, "DELETE FROM audit_log WHERE seq = 7");
    refused(verify(b, &log), "entry 7 was removed");
}

fn removed_and_renumbered_entry_is_named(b: &TestBackend) {
    let log = populated(b);
    // One row at a time (a primary key may be checked per row).
    let mut s = String::from("DELETE FROM audit_log WHERE seq = 4;");
    for seq in 5..=13 {
        s.push_str(&format!(
            "UPDATE audit_log SET seq = {} WHERE seq = {seq};",
            seq - 1
        ));
    }
    sql(b, &log, &s);
    refused(verify(b, &log), "entry 4 is out of order");
}

fn reordered_entries_are_named(b: &TestBackend) {
    let log = populated(b);
    sql(
        b,
        &log,
        "UPDATE audit_log SET seq = 1000 WHERE seq = 8;
         UPDATE audit_log SET seq = 8 WHERE seq = 9;
         UPDATE audit_log SET seq = 9 WHERE seq = 1000;",
    );
    refused(verify(b, &log), "entry 8 is out of order");
}

fn forged_checkpoint_is_named(b: &TestBackend) {
    let log = populated(b);
    sql(
        b,
        &log,
        "UPDATE audit_checkpoints SET hash = (SELECT hash FROM audit_log WHERE seq = 3)
         WHERE seq = 13",
    );
    refused(
        verify(b, &log),
        "checkpoint at entry 13 has an invalid signature",
    );
}

/// The v2 checkpoint message, written here from docs/PROTOCOL.md §9 (the
/// attacker's own signer, independent of the server's code).
fn checkpoint_message(seq: u64, entry_hash: &str, at: u64, prev: &str) -> Vec<u8> {
    let mut m = Vec::new();
    let mut put = |b: &[u8]| {
        m.extend_from_slice(&u32::try_from(b.len()).unwrap().to_be_bytes());
        m.extend_from_slice(b);
    };
    put(b"biopay-audit-checkpoint-v2");
    put(&seq.to_be_bytes());
    put(entry_hash.as_bytes());
    put(&at.to_be_bytes());
    put(prev.as_bytes());
    m
}

/// The attacker rewrites entry 5, re-chains every entry after it, signs a
/// new checkpoint chain with a key of their own and puts that key in the
/// data directory.
fn replaced_signing_key_is_named(b: &TestBackend) {
    let log = populated(b);
    let entries = open_store(b, &log).audit_entries(0, 1000).unwrap();
    let rng = ring::rand::SystemRandom::new();
    let pk8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let evil = Ed25519KeyPair::from_pkcs8(pk8.as_ref()).unwrap();
    let evil_hex = hex::encode(evil.public_key().as_ref());
    let mut prev = GENESIS_HASH;
    let mut s = String::from("DELETE FROM audit_checkpoints;");
    let mut hashes = Vec::new();
    for e in &entries {
        let mut record: AuditRecord = e.record.clone();
        if e.seq == 5 {
            record.outcome = "accepted".into();
            record.reason = String::new();
        }
        let h = entry_hash(&prev, &record);
        s.push_str(&format!(
            "UPDATE audit_log SET outcome = '{}', reason = '{}', prev_hash = '{}', hash = '{}'
             WHERE seq = {};",
            record.outcome,
            record.reason.replace('\'', "''"),
            hex::encode(prev),
            hex::encode(h),
            e.seq
        ));
        prev = h;
        hashes.push(hex::encode(h));
    }
    s.push_str(&format!(
        "UPDATE audit_head SET seq = 13, hash = '{}';",
        hex::encode(prev)
    ));
    let mut prev_cp = "0".repeat(64);
    for seq in [5u64, 9, 13] {
        let h = &hashes[usize::try_from(seq).unwrap() - 1];
        let m = checkpoint_message(seq, h, 1, &prev_cp);
        s.push_str(&format!(
            "INSERT INTO audit_checkpoints (seq, hash, at, public_key, signature, version, prev_hash)
             VALUES ({seq}, '{h}', 1, '{evil_hex}', '{}', 2, '{prev_cp}');",
            hex::encode(evil.sign(&m).as_ref())
        ));
        prev_cp = hex::encode(biopay_core::crypto::sha256(&m));
    }
    sql(b, &log, &s);
    std::fs::write(log.data.join("audit-signing-key.pk8"), pk8.as_ref()).unwrap();

    refused(
        verify(b, &log),
        &format!("checkpoint at entry 5 is signed by key {evil_hex}, which is not a trusted checkpoint key"),
    );
    // Trusting whatever key file the data directory holds, the database
    // alone is fooled; the witness is not.
    let (ok, out) = cli(b, &log, &["audit", "verify"]);
    assert!(ok, "{out}");
    let w = log.witness.display().to_string();
    refused(
        cli(b, &log, &["audit", "verify", "--witness", &w]),
        &format!(
            "witness checkpoint at entry 5 is signed by key {}, which is not a trusted checkpoint key",
            log.public_key
        ),
    );
}

/// The signing key lives outside the data directory; `audit verify` needs
/// only the public key and never creates a key.
fn signing_key_outside_the_data_directory(b: &TestBackend) {
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("audit.pk8");
    let key_arg = key.display().to_string();
    let config = quiet_config(b.dir.path());
    let mut args = server_args(&config);
    args.extend(["--audit-key".to_owned(), key_arg.clone()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let s = b.server(&args);
    let c = s.api().registration_challenge(b"acct").unwrap();
    let phone = tempfile::tempdir().unwrap();
    let mut d = DemoDevice::provision(&phone.path().join("p"), RP).unwrap();
    assert_eq!(
        s.api().register(&d.register(&c).unwrap()).unwrap().status,
        200
    );
    s.stop();
    let data = b.dir.path().join("server");
    assert!(!data.join("audit-signing-key.pk8").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let log = Log {
        data: data.clone(),
        witness: b.dir.path().join("w.jsonl"),
        config,
        public_key: public_key_of(&key),
        device: d,
        credential: Vec::new(),
        _phone: phone,
    };
    let (ok, out) = verify(b, &log);
    assert!(ok, "{out}");
    let (ok, out) = cli(b, &log, &["audit", "verify", "--audit-key", &key_arg]);
    assert!(ok, "{out}");
    assert!(out.contains("1 signed checkpoints"), "{out}");
    // No key given and none in the data directory: refused, nothing created.
    let (ok, out) = cli(b, &log, &["audit", "verify"]);
    assert!(!ok, "{out}");
    assert!(out.contains("no checkpoint key"), "{out}");
    let missing = keys.path().join("missing.pk8");
    let (ok, out) = cli(
        b,
        &log,
        &[
            "audit",
            "verify",
            "--audit-key",
            &missing.display().to_string(),
        ],
    );
    assert!(!ok, "{out}");
    assert!(!missing.exists() && !data.join("audit-signing-key.pk8").exists());
}

/// `GET /v1/admin/audit/checkpoints?since=N` serves the lines
/// `audit export-checkpoints` writes, to the admin only.
fn checkpoint_export_over_http_matches_the_cli(b: &TestBackend) {
    let log = populated(b);
    let witness: Vec<serde_json::Value> = std::fs::read_to_string(&log.witness)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(witness.len(), 3);
    for w in &witness {
        for field in [
            "version",
            "seq",
            "entry_hash",
            "at",
            "prev_checkpoint_hash",
            "public_key",
            "signature",
        ] {
            assert!(!w[field].is_null(), "{field} missing from {w}");
        }
    }
    let s = b.server(&["--config", &log.config.display().to_string()]);
    let all = s
        .admin()
        .get("/v1/admin/audit/checkpoints?since=0")
        .unwrap();
    assert_eq!(all.status, 200, "{:?}", all.body);
    assert_eq!(all.body["checkpoints"].as_array().unwrap(), &witness);
    let tail = s
        .admin()
        .get("/v1/admin/audit/checkpoints?since=5")
        .unwrap();
    assert_eq!(tail.body["checkpoints"].as_array().unwrap(), &witness[1..]);
    assert_eq!(
        s.api().get("/v1/admin/audit/checkpoints").unwrap().status,
        403
    );
    for bad in [
        "since=x",
        "since=-1",
        "since=18446744073709551615",
        "limit=0",
        "limit=1001",
    ] {
        let r = s
            .admin()
            .get(&format!("/v1/admin/audit/checkpoints?{bad}"))
            .unwrap();
        assert_eq!(r.status, 400, "{bad}: {:?}", r.body);
    }
    let one = s
        .admin()
        .get("/v1/admin/audit/checkpoints?since=0&limit=1")
        .unwrap();
    assert_eq!(one.body["checkpoints"].as_array().unwrap(), &witness[..1]);
    s.stop();
}

/// A database written before checkpoints were chained (schema 2, version 1
/// checkpoints signed over seq and hash only) migrates and still verifies;
/// the chain starts at the first chained checkpoint.
fn database_from_before_the_chain_migrates_and_verifies(b: &TestBackend) {
    let mut log = populated(b);
    // Downgrade: re-sign the checkpoints in the version 1 format and drop
    // what migrations 4 and later added (5: the App Attest keys; 6: the
    // spent payment challenges).
    let key =
        Ed25519KeyPair::from_pkcs8(&std::fs::read(log.data.join("audit-signing-key.pk8")).unwrap())
            .unwrap();
    let cps = open_store(b, &log).checkpoints(0, 1000).unwrap();
    let mut s = String::new();
    for c in &cps {
        let mut m = Vec::new();
        let mut put = |b: &[u8]| {
            m.extend_from_slice(&u32::try_from(b.len()).unwrap().to_be_bytes());
            m.extend_from_slice(b);
        };
        put(b"biopay-audit-checkpoint-v1");
        put(&c.seq.to_be_bytes());
        put(c.entry_hash.as_bytes());
        s.push_str(&format!(
            "UPDATE audit_checkpoints SET signature = '{}' WHERE seq = {};",
            hex::encode(key.sign(&m).as_ref()),
            c.seq
        ));
    }
    s.push_str(
        "DROP INDEX audit_checkpoints_chain;
         ALTER TABLE audit_checkpoints DROP COLUMN version;
         ALTER TABLE audit_checkpoints DROP COLUMN prev_hash;
         DROP TABLE app_attest_keys;
         DROP TABLE spent_challenges;
         DELETE FROM schema_migrations WHERE version >= 4;",
    );
    sql(b, &log, &s);
    run(b, &mut log, 1, false);
    let (ok, out) = verify(b, &log);
    assert!(ok, "{out}");
    assert!(out.contains("15 entries"), "{out}");
    assert!(out.contains("4 signed checkpoints (3 unchained"), "{out}");
    // What the chain cannot show: the removal of an unchained checkpoint
    // (docs/PROTOCOL.md §9.4). A witness that holds it still does.
    log.witness = b.dir.path().join("witness-after-migration.jsonl");
    export(b, &log, &[]);
    assert!(verify_witnessed(b, &log).0);
    sql(b, &log, "DELETE FROM audit_checkpoints WHERE seq = 9");
    let (ok, out) = verify(b, &log);
    assert!(ok, "unchained checkpoints cannot show a removal: {out}");
    refused(
        verify_witnessed(b, &log),
        "the database has no checkpoint at entry 9, but the witness holds one",
    );
}

/// Two processes on one store sign checkpoints every second while both
/// take payments: the chain never forks (each checkpoint is stored only if
/// it extends the chain, in the write transaction).
fn two_processes_extend_one_checkpoint_chain(b: &TestBackend) {
    let cfg = b.dir.path().join("fast.toml");
    std::fs::write(&cfg, "checkpoint_interval_secs = 1\n").unwrap();
    let cfg = cfg.display().to_string();
    let args = ["--lock-after-failures", "0", "--config", &cfg];
    let (s1, s2) = (b.server(&args), b.server(&args));
    let phone = tempfile::tempdir().unwrap();
    let mut d = DemoDevice::provision(&phone.path().join("p"), RP).unwrap();
    let c = s1.api().registration_challenge(b"acct").unwrap();
    let r = s1.api().register(&d.register(&c).unwrap()).unwrap();
    let id = biopay_server_tools::client::unb64(r.body["credential_id"].as_str().unwrap()).unwrap();
    let start = std::time::Instant::now();
    let mut i = 0u64;
    loop {
        let n = s1.admin().get("/v1/admin/audit/checkpoints").unwrap().body["checkpoints"]
            .as_array()
            .unwrap()
            .len();
        if n >= 6 {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "only {n} checkpoints after 60 s"
        );
        let s = if i % 2 == 0 { &s1 } else { &s2 };
        let c = field_bytes(
            &s.api()
                .payment_challenge(&id, &format!("o{i}"), 100)
                .unwrap(),
            "challenge",
        )
        .unwrap();
        assert_eq!(
            s.api()
                .verify_payment(&d.authorize(&c).unwrap())
                .unwrap()
                .status,
            200
        );
        i += 1;
    }
    s1.stop();
    s2.stop();
    let data = b.dir.path().join("server");
    let log = Log {
        public_key: public_key_of(&data.join("audit-signing-key.pk8")),
        data,
        witness: b.dir.path().join("w.jsonl"),
        config: b.dir.path().join("fast.toml"),
        device: d,
        credential: id,
        _phone: phone,
    };
    let (ok, out) = verify(b, &log);
    assert!(ok, "{out}");
    let n: u64 = out
        .split(" signed checkpoints")
        .next()
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no checkpoint count in {out}"));
    assert!(n >= 6, "{out}");
}

/// A process that read the chain before another extended it signs a
/// checkpoint naming a stale predecessor: the store refuses it instead of
/// forking the chain (what the two-process run above would otherwise hit
/// only by timing).
fn stale_checkpoint_does_not_fork_the_chain(b: &TestBackend) {
    let data = b.dir.path().join("server");
    std::fs::create_dir_all(&data).unwrap();
    let store = match &b.backend {
        Backend::Sqlite => AnyStore::Sqlite(SqliteStore::open(&data.join("biopay.db")).unwrap()),
        Backend::Postgres(url) => AnyStore::Postgres(PgStore::connect(url, 2).unwrap()),
    };
    let key = biopay_server::audit::SigningKey::load_or_create(&data.join("k.pk8")).unwrap();
    let record = |i: u64| AuditRecord {
        at: i,
        kind: "admin".into(),
        outcome: "x".into(),
        step: "ADMIN".into(),
        credential: String::new(),
        statement_hash: String::new(),
        reason: String::new(),
    };
    let genesis = "0".repeat(64);
    store.append_audit(&record(1)).unwrap();
    let (s1, h1) = store.audit_head().unwrap();
    let a = key.checkpoint(s1, &h1, 1, &genesis);
    store.append_audit(&record(2)).unwrap();
    let (s2, h2) = store.audit_head().unwrap();
    let stale = key.checkpoint(s2, &h2, 2, &genesis);
    assert!(store.insert_checkpoint(&a).unwrap());
    assert!(
        !store.insert_checkpoint(&stale).unwrap(),
        "a fork was stored"
    );
    assert!(
        !store.insert_checkpoint(&a).unwrap(),
        "a duplicate was stored"
    );
    let behind = key.checkpoint(s1, &h1, 3, &a.checkpoint_hash());
    assert!(
        !store.insert_checkpoint(&behind).unwrap(),
        "a checkpoint behind the last was stored"
    );
    let next = key.checkpoint(s2, &h2, 2, &a.checkpoint_hash());
    assert!(store.insert_checkpoint(&next).unwrap());
    assert_eq!(store.checkpoints(0, 10).unwrap(), vec![a, next]);
}

suite!(
    intact_log_verifies_with_and_without_the_witness,
    tail_cut_with_its_checkpoints_and_head_row_is_caught_by_the_witness,
    tail_cut_with_its_checkpoints_but_not_the_head_row_is_named,
    tail_cut_below_its_checkpoint_is_named,
    removed_checkpoint_breaks_the_checkpoint_chain,
    removed_checkpoints_at_the_end_are_named_by_the_witness,
    rewritten_tail_disagrees_with_the_witness,
    altered_entry_is_named,
    removed_entry_is_named,
    removed_and_renumbered_entry_is_named,
    reordered_entries_are_named,
    forged_checkpoint_is_named,
    replaced_signing_key_is_named,
    signing_key_outside_the_data_directory,
    checkpoint_export_over_http_matches_the_cli,
    database_from_before_the_chain_migrates_and_verifies,
    two_processes_extend_one_checkpoint_chain,
    stale_checkpoint_does_not_fork_the_chain,
);
