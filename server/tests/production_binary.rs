//! The service a bank deploys holds no simulator (issue #13 §3).
//!
//! The attack: a dependency added back to server/Cargo.toml "just for a
//! helper" puts the software TEE in the production binary, and with it the
//! demo vendor PKI whose seed is published, so that anyone can sign what the
//! binary may be configured to trust. The simulated phone, the load
//! generator and the HTTP client are `biopay-server-tools` (server-tools/);
//! the service's normal dependencies must not reach biopay-tee-stub, ureq or
//! tempfile, and its binary must not contain the simulator.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::process::Command;

/// Crates the production server must not link: the simulator, the HTTP
/// client of the tools, and temporary files (the load generator's devices).
const FORBIDDEN: &[&str] = &["biopay-tee-stub", "ureq", "tempfile"];

/// The package names of `biopay-server`'s normal (linked) dependency tree,
/// from `cargo tree`.
fn normal_dependencies() -> Vec<String> {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let out = Command::new(env!("CARGO"))
        .args(["tree", "--locked", "--manifest-path", manifest])
        .args(["-p", "biopay-server", "-e", "normal", "--prefix", "none"])
        .args(["--format", "{p}"])
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn production_server_dependency_tree_has_no_simulator_or_http_client() {
    let names = normal_dependencies();
    // The listing is the real tree, not an empty or failed one.
    for expected in ["biopay-server", "biopay-core", "axum", "rusqlite"] {
        assert!(
            names.iter().any(|n| n == expected),
            "cargo tree does not list {expected}: {names:?}"
        );
    }
    let found: Vec<&str> = FORBIDDEN
        .iter()
        .copied()
        .filter(|f| names.iter().any(|n| n == f))
        .collect();
    assert!(
        found.is_empty(),
        "biopay-server links {found:?}: the simulator, the HTTP client and temporary files \
         belong to biopay-server-tools (server-tools/), never to the service"
    );
}

#[test]
fn production_server_binary_holds_no_simulator_or_demo_seed() {
    let bin = env!("CARGO_BIN_EXE_biopay-server");
    let bytes = std::fs::read(bin).expect("read the server binary");
    // As text, so that the search runs in std's (optimised) string searcher:
    // a debug-build byte-window scan of the binary takes seconds.
    let text = String::from_utf8_lossy(&bytes);
    // The search sees the crates that are linked (symbol names and panic
    // locations name them): otherwise finding nothing would prove nothing.
    assert!(
        text.contains("biopay_core"),
        "{bin} names no biopay_core: stripped? the search below would prove nothing"
    );
    assert!(
        !text.contains("biopay_tee_stub"),
        "{bin} contains code of biopay_tee_stub (the software TEE)"
    );
    // The demo vendor's PKI seed (server-tools/src/demo.rs): whoever has it
    // signs attestations the demo trust accepts.
    assert!(
        !text.contains("biopay danger demo vendor seed"),
        "{bin} contains the demo vendor's PKI seed"
    );
}
