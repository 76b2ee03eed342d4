//! The tools' commands against a real server (the biopay-server library run
//! in this process on a loopback port, SQLite in a temporary directory): the
//! `demo-device` and `load` commands of the `biopay-server-tools` binary
//! work as the README and scripts/bench-server.sh use them, and the demo
//! root the server trusts under `--danger-demo-trust` is the simulator's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use biopay_server::{config::Config, demo_trust, DANGER_DEMO_RP_KEY};
use biopay_server_tools::{
    client::{field_bytes, unb64, ApiClient},
    demo,
};
use serde_json::{json, Value};
use std::{
    process::Command,
    time::{Duration, Instant},
};

/// A server on an ephemeral loopback port, stopped (gracefully) on drop.
struct Server {
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().join("data"),
            danger_demo_trust: true,
            danger_demo_keys: true,
            ..Config::default()
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
            rt.block_on(async move {
                let listener =
                    tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
                biopay_server::run(config, listener, async {
                    let _ = rx.await;
                })
                .await
            })
        });
        let s = Self {
            url,
            stop: Some(tx),
            thread: Some(thread),
            _dir: dir,
        };
        // Bounded poll until the server answers.
        let api = ApiClient::new(&s.url, None);
        let start = Instant::now();
        while !api.get("/healthz").is_ok_and(|r| r.status == 200) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "server never became healthy"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    fn api(&self) -> ApiClient {
        ApiClient::new(&self.url, Some(DANGER_DEMO_RP_KEY))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let r = t.join();
            if !std::thread::panicking() {
                assert!(matches!(r, Ok(Ok(()))), "server failed: {r:?}");
            }
        }
    }
}

/// Runs the tools binary; its stdout, trimmed. Fails the test on a non-zero exit.
fn tools(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_biopay-server-tools"))
        .args(args)
        .env_remove("BIOPAY_API_KEY")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "biopay-server-tools {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The server's `--danger-demo-trust` holds the demo root as a constant (it
/// links no simulator); it must be the root the simulated phones chain to,
/// or the demo trusts nothing the demo devices make.
#[test]
fn server_demo_root_is_the_simulators_root() {
    assert_eq!(
        demo_trust::danger_demo_model().unwrap(),
        demo::simulated_demo_model().unwrap()
    );
    assert_eq!(
        demo_trust::danger_demo_root().unwrap(),
        demo::danger_demo_pki().unwrap().trust_anchor()
    );
}

/// The README's flow: `demo-device register` answers a registration
/// challenge, `demo-device pay` a payment challenge; the server accepts the
/// payment once and refuses its replay at P9.
#[test]
fn demo_device_registers_and_pays_through_the_server() {
    let s = Server::start();
    let api = s.api();
    let phone = tempfile::tempdir().unwrap();
    let dir = phone.path().join("phone");
    let dir = dir.to_str().unwrap();

    let r = api
        .post(
            "/v1/registrations/challenge",
            json!({"account": "YWNjb3VudC03", "modalities": ["fingerprint"]}),
        )
        .unwrap();
    let c = r.body["challenge"].as_str().unwrap().to_owned();
    let att = tools(&["demo-device", "register", "--dir", dir, &c]);
    let r = api
        .post("/v1/registrations", json!({ "attestation": att }))
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let id = unb64(r.body["credential_id"].as_str().unwrap()).unwrap();

    let r = api.payment_challenge(&id, "o-1", 8800).unwrap();
    let p = biopay_server::b64::b64(&field_bytes(&r, "challenge").unwrap());
    let a = tools(&["demo-device", "pay", "--dir", dir, &p]);
    let ok = api
        .post("/v1/payments/verify", json!({ "assertion": a }))
        .unwrap();
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body["status"], "accepted", "{}", ok.body);
    assert_eq!(ok.body["counter"], 1);
    let replay = api
        .post("/v1/payments/verify", json!({ "assertion": a }))
        .unwrap();
    assert_eq!(replay.status, 409, "{}", replay.body);
    assert_eq!(replay.body["error"]["code"], "P9", "{}", replay.body);
}

/// `load` as scripts/bench-server.sh runs it, bounded by a payment count:
/// every payment is accepted and the report is the JSON the script reads.
#[test]
fn load_pays_through_the_server_and_reports_json() {
    let s = Server::start();
    for batch in ["1", "3"] {
        let out = tools(&[
            "load",
            "--url",
            &s.url,
            "--clients",
            "2",
            "--batch",
            batch,
            "--seconds",
            "30",
            "--max-payments",
            "12",
            "--ecdsa-seconds",
            "0",
        ]);
        let report: Value = serde_json::from_str(&out).unwrap();
        assert!(
            report["accepted"].as_u64().unwrap() >= 12,
            "batch {batch}: {report}"
        );
        assert_eq!(report["failed"], 0, "batch {batch}: {report}");
        assert_eq!(report["batch"].as_u64().unwrap().to_string(), batch);
        for field in ["payments_per_sec", "p50_ms", "p99_ms", "ratio"] {
            assert!(report[field].is_number(), "no {field}: {report}");
        }
    }
}
