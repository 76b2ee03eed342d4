//! A request that outlives `request_timeout_ms` is answered 408 with the
//! JSON error envelope and the stable code `TIMEOUT`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use common::*;
use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

#[test]
fn a_request_that_times_out_gets_a_json_error_with_a_stable_code() {
    let b = TestBackend::sqlite();
    let config = b.dir.path().join("server.toml");
    std::fs::write(&config, "request_timeout_ms = 300\n").unwrap();
    let s = b.server(&["--config", config.to_str().unwrap()]);

    // A client that announces a body and never sends it: the handler waits
    // for the body until the server's limit answers instead.
    let mut conn = TcpStream::connect(&s.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let started = Instant::now();
    write!(
        conn,
        "POST /v1/payments/verify HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {RP_KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"assertion\": \"",
        s.addr
    )
    .unwrap();
    conn.flush().unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    // Read until the body of the answer is complete (it is small).
    loop {
        let n = conn.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer);
        if let Some((_, body)) = text.split_once("\r\n\r\n") {
            if serde_json::from_str::<serde_json::Value>(body).is_ok() {
                break;
            }
        }
    }
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["error"]["code"], "TIMEOUT", "{v}");
    assert!(v["error"]["step"].is_null(), "{v}");
    assert!(v["error"]["reason"].as_str().unwrap().contains("300 ms"));
    assert!(
        elapsed >= Duration::from_millis(300),
        "answered before the limit: {elapsed:?}"
    );

    // The limit is per request: a normal request still succeeds.
    let r = s.api().get("/healthz").unwrap();
    assert_eq!(r.status, 200);
    // And the timeout is counted in the metrics like any other answer.
    let m = s.api().get("/metrics").unwrap();
    let text = m.body.as_str().unwrap_or_default().to_owned();
    assert!(
        text.contains("route=\"/v1/payments/verify\",status=\"408\"} 1"),
        "{text}"
    );
    s.stop();
}
