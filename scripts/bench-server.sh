#!/usr/bin/env bash
# Interleaved server load measurements (docs/PERFORMANCE.md, "Server").
#
#   scripts/bench-server.sh [options] [BINARY...]
#
# For each round, for each credential count, for each BINARY (default:
# target/release/biopay-server, built if missing), for each batch size, body
# type and verification mode: start a fresh server on an empty store, fill it
# with the credentials and warm up for 1 s (`load --prepopulate`), run
# `biopay-server-tools load` with the server's and (PostgreSQL) the database's
# processes measured apart, print one summary line, stop the server.
# Interleaving the variants round by round is what makes their figures
# comparable on a shared, noisy machine.
#
# Each line: payments/s, p50/p99 latency, server CPU µs per accepted payment,
# database CPU µs per payment (PostgreSQL's processes; 0 on SQLite), one ring
# ECDSA-P256 verification on one core in µs (measured in the same run, after
# the payments), the server ratio = ring µs ÷ (server + database µs per
# payment, the load generator excluded), store operations per commit, and
# for reference the load generator's CPU µs per payment, the fill (filler
# credentials/seconds) and the load average.
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
#   --credentials "N1 N2..."  credentials in the store per run (default "0":
#                       only the clients' own); more are written straight into
#                       the store before the warm-up (`load --prepopulate`),
#                       e.g. "1000 100000 1000000"
#   --bodies "json cbor"  request body types to try (default "json"; cbor sends
#                       the payment requests as application/cbor, `load --cbor`)
#   --inline "off on"   verification modes to try (default "off"; on starts the
#                       server with --inline-verify)
#   --ecdsa-seconds S   raw ECDSA baseline per run (default 3, once on one core
#                       and once on all)
#   --shards "1 2"      with --postgres: shard counts to try, each shard its own
#                       PostgreSQL instance started here (--shard-url per shard;
#                       database CPU is every instance's)
#   --server-args "A B"  extra arguments for every server (e.g.
#                       "--lock-after-failures 0" to measure without rate limiting)
#   --loader BINARY     the binary whose `load` drives every run (default:
#                       target/release/biopay-server-tools, built), so that
#                       builds without the batch endpoints or `--batch` can be
#                       compared; a biopay-server from before the tools moved
#                       to biopay-server-tools also has `load`; it
#                       must know `load --prepopulate` and `--db-pid`
#
# Loopback only; every run is bounded by --seconds.
set -euo pipefail

rounds=3 seconds=8 clients=16 batches="1" ecdsa=3 postgres=0 loader='' server_args=()
credentials="0" bodies="json" inlines="off" shard_counts="1"
bins=()
while [ $# -gt 0 ]; do
    case "$1" in
        --postgres) postgres=1 ;;
        --rounds) rounds=$2; shift ;;
        --seconds) seconds=$2; shift ;;
        --clients) clients=$2; shift ;;
        --batch) batches=$2; shift ;;
        --credentials) credentials=$2; shift ;;
        --bodies) bodies=$2; shift ;;
        --inline) inlines=$2; shift ;;
        --shards) shard_counts=$2; shift ;;
        --ecdsa-seconds) ecdsa=$2; shift ;;
        --loader) loader=$2; shift ;;
        --server-args) read -r -a server_args <<< "$2"; shift ;;
        -h|--help) sed -n '2,54p' "$0"; exit 0 ;;
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
pg_bin='' pg_datas=() pg_ports=()
cleanup() {
    if [ -n "${server_pid:-}" ]; then kill "$server_pid" 2>/dev/null || true; fi
    for d in "${pg_datas[@]}"; do
        as_pg "$pg_bin/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1 || true
    done
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
    max_shards=1
    for n in $shard_counts; do [ "$n" -gt "$max_shards" ] && max_shards=$n; done
    # One PostgreSQL instance per shard (a shard is a primary of its own).
    for k in $(seq 0 $((max_shards - 1))); do
        d="$work/pg$k"
        as_pg "$pg_bin/initdb" -A trust -U postgres -E UTF8 -D "$d" >/dev/null
        port=$(free_port)
        as_pg "$pg_bin/pg_ctl" -D "$d" -w -l "$work/pg$k.log" \
            -o "-h 127.0.0.1 -p $port -k $work -c max_connections=200 -c shared_buffers=128MB" start >/dev/null
        pg_datas+=("$d") pg_ports+=("$port")
    done
elif [ "$shard_counts" != 1 ]; then
    echo "--shards needs --postgres" >&2; exit 2
fi

run_one() { # binary batch credentials body inline shards
    local bin=$1 batch=$2 creds=$3 body=$4 inline=$5 shards=$6 data args=() store=() pids=() load_args=() url
    data=$(mktemp -d "$work/d.XXXX")
    store=(--data-dir "$data")
    if [ "$postgres" = 1 ]; then
        for k in $(seq 0 $((shards - 1))); do
            PGOPTIONS="-c client_min_messages=warning" as_pg "$pg_bin/psql" -h 127.0.0.1 -p "${pg_ports[$k]}" -U postgres -qc "DROP DATABASE IF EXISTS bench" -c "CREATE DATABASE bench" postgres >/dev/null
            args+=(--shard-url "postgres://postgres@127.0.0.1:${pg_ports[$k]}/bench")
        done
        # --prepopulate fills shard 0's store (a single store holds them all when shards=1).
        store=(--database-url "postgres://postgres@127.0.0.1:${pg_ports[0]}/bench")
    fi
    if [ "$inline" = on ]; then args+=(--inline-verify); fi
    if [ "$body" = cbor ]; then load_args+=(--cbor); fi
    local port; port=$(free_port)
    "$bin" --danger-demo-trust --danger-demo-keys --listen "127.0.0.1:$port" --data-dir "$data" "${args[@]}" "${server_args[@]}" \
        >"$data/log" 2>&1 &
    server_pid=$!
    url="http://127.0.0.1:$port"
    for _ in $(seq 100); do curl -sf "$url/healthz" >/dev/null && break; sleep 0.1; done
    # Fill the store, then warm up (neither measured).
    "$loader" load --url "$url" --clients "$clients" --batch "$batch" --seconds 1 --ecdsa-seconds 0 \
        --prepopulate "$creds" "${store[@]}" "${load_args[@]}" > "$data/warmup.json"
    pids=(--server-pid "$server_pid")
    if [ "$postgres" = 1 ]; then
        for p in $(pgrep -u postgres -x postgres); do pids+=(--db-pid "$p"); done
    fi
    "$loader" load --url "$url" --clients "$clients" --batch "$batch" --seconds "$seconds" \
        --ecdsa-seconds "$ecdsa" "${pids[@]}" "${load_args[@]}" > "$data/report.json"
    kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
    server_pid=
    python3 - "$data/report.json" "$data/warmup.json" "$bin" "$creds" "$body" "$inline" "$(cut -d' ' -f1 /proc/loadavg)" "$shards" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
w = json.load(open(sys.argv[2]))
bin_, creds, body, inline, load, shards = sys.argv[3:9]
print(f"{bin_:<40} shards={shards} creds={creds:<7} batch={d['batch']:<3} body={body:<4} inline={inline:<3} "
      f"payments/s={d['payments_per_sec']:7.0f} p50={d['p50_ms']:5.1f}ms p99={d['p99_ms']:5.1f}ms "
      f"server_us={d['server_cpu_us_per_payment']:4.0f} db_us={d['database_cpu_us_per_payment']:4.0f} "
      f"ring_us={d['ring_verify_us']:5.1f} server_ratio={d['server_ratio']:.3f} "
      f"ops/commit={d['operations_per_commit']:.1f} client_us={d['client_cpu_us_per_payment']:3.0f} "
      f"fill={w['prepopulated']}/{w['prepopulate_seconds']:.1f}s load={load}")
EOF
    rm -rf "$data"
}

echo "store=$([ "$postgres" = 1 ] && echo postgresql || echo sqlite) clients=$clients seconds=$seconds $(date -u +%FT%TZ)"
for _ in $(seq "$rounds"); do
    for creds in $credentials; do
        for bin in "${bins[@]}"; do
            for batch in $batches; do
                for body in $bodies; do
                    for inline in $inlines; do
                        for shards in $shard_counts; do
                            run_one "$bin" "$batch" "$creds" "$body" "$inline" "$shards"
                        done
                    done
                done
            done
        done
    done
done
