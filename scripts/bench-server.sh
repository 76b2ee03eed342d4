#!/usr/bin/env bash
# Interleaved server load measurements (docs/PERFORMANCE.md, "Server").
#
#   scripts/bench-server.sh [options] [BINARY...]
#
# For each round, for each server BINARY (default: target/release/biopay-server,
# built), for each batch size: start a fresh server on an empty store, warm up
# for 1 s, run `biopay-server-tools load` with the server's (and for
# PostgreSQL the database's) processes measured, print one summary line, stop
# the server. Interleaving the builds round by round is what makes their
# figures comparable on a shared, noisy machine.
#
# Options:
#   --postgres          use a PostgreSQL started here (initdb into a temporary
#                       directory, loopback port, fsync and synchronous_commit
#                       on) instead of the embedded SQLite store
#   --rounds N          rounds (default 3)
#   --seconds S         payment phase per run (default 8)
#   --clients C         concurrent clients (default 16)
#   --batch "B1 B2..."  payments per request to try (default "1"; >1 uses the
#                       /batch endpoints, each client holding B devices)
#   --ecdsa-seconds S   raw ECDSA baseline per run (default 3)
#   --server-args "A B"  extra arguments for every server (e.g.
#                       "--lock-after-failures 0" to measure without rate limiting)
#   --loader BINARY     the binary whose `load` drives every run (default:
#                       target/release/biopay-server-tools, built), so that
#                       builds without the batch endpoints or `--batch` can be
#                       compared; a biopay-server from before the tools moved
#                       to biopay-server-tools also has `load`
#
# Loopback only; every run is bounded by --seconds.
set -euo pipefail

rounds=3 seconds=8 clients=16 batches="1" ecdsa=3 postgres=0 loader='' server_args=()
bins=()
while [ $# -gt 0 ]; do
    case "$1" in
        --postgres) postgres=1 ;;
        --rounds) rounds=$2; shift ;;
        --seconds) seconds=$2; shift ;;
        --clients) clients=$2; shift ;;
        --batch) batches=$2; shift ;;
        --ecdsa-seconds) ecdsa=$2; shift ;;
        --loader) loader=$2; shift ;;
        --server-args) read -r -a server_args <<< "$2"; shift ;;
        -h|--help) sed -n '2,31p' "$0"; exit 0 ;;
        *) bins+=("$1") ;;
    esac
    shift
done
root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
if [ ${#bins[@]} -eq 0 ]; then
    (cd "$root" && cargo build --release -q -p biopay-server)
    bins=("$target/release/biopay-server")
fi
if [ -z "$loader" ]; then
    (cd "$root" && cargo build --release -q -p biopay-server-tools)
    loader="$target/release/biopay-server-tools"
fi

work=$(mktemp -d)
pg_bin='' pg_data='' pg_port=
cleanup() {
    if [ -n "${server_pid:-}" ]; then kill "$server_pid" 2>/dev/null || true; fi
    if [ -n "$pg_data" ]; then
        as_pg "$pg_bin/pg_ctl" -D "$pg_data" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

as_pg() {
    if [ "$(id -u)" = 0 ]; then setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; else "$@"; fi
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

if [ "$postgres" = 1 ]; then
    pg_bin=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -1)
    [ -x "$pg_bin/initdb" ] || { echo "PostgreSQL not installed (apt-get install postgresql)" >&2; exit 1; }
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$work"
    pg_data="$work/pg"
    as_pg "$pg_bin/initdb" -A trust -U postgres -E UTF8 -D "$pg_data" >/dev/null
    pg_port=$(free_port)
    as_pg "$pg_bin/pg_ctl" -D "$pg_data" -w -l "$work/pg.log" \
        -o "-h 127.0.0.1 -p $pg_port -k $work -c max_connections=200 -c shared_buffers=128MB" start >/dev/null
fi

run_one() { # binary batch
    local bin=$1 batch=$2 data args=() pids url
    data=$(mktemp -d "$work/d.XXXX")
    if [ "$postgres" = 1 ]; then
        as_pg "$pg_bin/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -qc "DROP DATABASE IF EXISTS bench" -c "CREATE DATABASE bench" postgres >/dev/null
        args=(--database-url "postgres://postgres@127.0.0.1:$pg_port/bench")
    fi
    local port; port=$(free_port)
    "$bin" --danger-demo-trust --danger-demo-keys --listen "127.0.0.1:$port" --data-dir "$data" "${args[@]}" "${server_args[@]}" \
        >"$data/log" 2>&1 &
    server_pid=$!
    url="http://127.0.0.1:$port"
    for _ in $(seq 100); do curl -sf "$url/healthz" >/dev/null && break; sleep 0.1; done
    "$loader" load --url "$url" --clients "$clients" --batch "$batch" --seconds 1 --ecdsa-seconds 0 >/dev/null
    pids=(--server-pid "$server_pid")
    if [ "$postgres" = 1 ]; then
        for p in $(pgrep -u postgres -x postgres); do pids+=(--server-pid "$p"); done
    fi
    "$loader" load --url "$url" --clients "$clients" --batch "$batch" --seconds "$seconds" \
        --ecdsa-seconds "$ecdsa" "${pids[@]}" > "$data/report.json"
    kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
    server_pid=
    python3 - "$data/report.json" "$bin" "$(cut -d' ' -f1 /proc/loadavg)" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]:<40} batch={d['batch']:<3} payments/s={d['payments_per_sec']:7.0f} "
      f"p50={d['p50_ms']:5.1f}ms p99={d['p99_ms']:5.1f}ms ecdsa/s={d['ecdsa_verifications_per_sec']:6.0f} "
      f"ratio={d['ratio']:.3f} server_us={d['server_cpu_us_per_payment']:4.0f} "
      f"client_us={d['client_cpu_us_per_payment']:3.0f} server_only={d['server_only_ratio']:.3f} "
      f"ops/commit={d['operations_per_commit']:.1f} load={sys.argv[3]}")
EOF
    rm -rf "$data"
}

echo "store=$([ "$postgres" = 1 ] && echo postgresql || echo sqlite) clients=$clients seconds=$seconds $(date -u +%FT%TZ)"
for _ in $(seq "$rounds"); do
    for bin in "${bins[@]}"; do
        for batch in $batches; do
            run_one "$bin" "$batch"
        done
    done
done
