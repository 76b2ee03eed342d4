//! A small Prometheus registry: request counters, decision counters and a
//! verification latency histogram, rendered in the text exposition format.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex, PoisonError,
    },
    time::Duration,
};

const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The registry.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    decisions: Mutex<BTreeMap<(String, String, String), u64>>,
    buckets: [AtomicU64; 12],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
}

impl Metrics {
    /// Counts a request by route and status.
    pub fn request(&self, route: &str, status: u16) {
        *self
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((route.to_owned(), status))
            .or_default() += 1;
    }

    /// Counts a decision.
    pub fn decision(&self, kind: &str, outcome: &str, step: &str) {
        *self
            .decisions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((kind.to_owned(), outcome.to_owned(), step.to_owned()))
            .or_default() += 1;
    }

    /// Observes one verification's latency.
    pub fn verify_latency(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                if let Some(c) = self.buckets.get(i) {
                    c.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.latency_sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The text exposition.
    pub fn render(&self, backend: &str, commits: (u64, u64, u64)) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP biopay_info Server build and backend.");
        let _ = writeln!(out, "# TYPE biopay_info gauge");
        let _ = writeln!(
            out,
            "biopay_info{{version=\"{}\",backend=\"{backend}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        let _ = writeln!(
            out,
            "# HELP biopay_http_requests_total HTTP requests by route and status."
        );
        let _ = writeln!(out, "# TYPE biopay_http_requests_total counter");
        for ((route, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(
                out,
                "biopay_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP biopay_decisions_total Verification decisions by kind, outcome and step."
        );
        let _ = writeln!(out, "# TYPE biopay_decisions_total counter");
        for ((kind, outcome, step), n) in self
            .decisions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(
                out,
                "biopay_decisions_total{{kind=\"{kind}\",outcome=\"{outcome}\",step=\"{step}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP biopay_verify_seconds Time to verify and commit a statement."
        );
        let _ = writeln!(out, "# TYPE biopay_verify_seconds histogram");
        for (b, c) in BUCKETS.iter().zip(self.buckets.iter()) {
            let _ = writeln!(
                out,
                "biopay_verify_seconds_bucket{{le=\"{b}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(out, "biopay_verify_seconds_bucket{{le=\"+Inf\"}} {count}");
        let sum = Duration::from_micros(self.latency_sum_micros.load(Ordering::Relaxed));
        let _ = writeln!(out, "biopay_verify_seconds_sum {}", sum.as_secs_f64());
        let _ = writeln!(out, "biopay_verify_seconds_count {count}");
        let _ = writeln!(
            out,
            "# HELP biopay_store_commits_total Write transactions (group commits) of this process."
        );
        let _ = writeln!(out, "# TYPE biopay_store_commits_total counter");
        let _ = writeln!(out, "biopay_store_commits_total {}", commits.0);
        let _ = writeln!(
            out,
            "# HELP biopay_store_commit_operations_total Write operations in those transactions."
        );
        let _ = writeln!(out, "# TYPE biopay_store_commit_operations_total counter");
        let _ = writeln!(out, "biopay_store_commit_operations_total {}", commits.1);
        let _ = writeln!(
            out,
            "# HELP biopay_store_commit_reruns_total Transactions rolled back and run again with a savepoint per operation because one failed."
        );
        let _ = writeln!(out, "# TYPE biopay_store_commit_reruns_total counter");
        let _ = writeln!(out, "biopay_store_commit_reruns_total {}", commits.2);
        out
    }
}

/// The per-shard lines of the exposition: store operations served by each
/// shard in this process (a request touches one shard: one of these moves),
/// and whether each shard's store is open.
pub fn render_shards(operations: &[u64], down: &[u32]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP biopay_shard_store_operations_total Store operations served by each shard in this process."
    );
    let _ = writeln!(out, "# TYPE biopay_shard_store_operations_total counter");
    for (k, n) in operations.iter().enumerate() {
        let _ = writeln!(
            out,
            "biopay_shard_store_operations_total{{shard=\"{k}\"}} {n}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP biopay_shard_up 1 once the shard's store is open and migrated; 0 while it has not been reachable since startup (requests routed to it get 503). /healthz probes every shard."
    );
    let _ = writeln!(out, "# TYPE biopay_shard_up gauge");
    for k in 0..operations.len() {
        let up = u32::try_from(k).map_or(0, |k| u8::from(!down.contains(&k)));
        let _ = writeln!(out, "biopay_shard_up{{shard=\"{k}\"}} {up}");
    }
    out
}
