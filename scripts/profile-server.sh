#!/usr/bin/env bash
# scripts/profile-server.sh SERVER_BIN LOADER [server args...]
#
# Where the server's CPU goes (docs/PERFORMANCE.md, "Round 5"): starts SERVER_BIN on a fresh
# SQLite store, drives it with `LOADER load` (16 clients, one payment per request, 9 s), records
# `perf record -F 1999` on the server over 5 s of that load, and prints payments/s, the server's
# CPU µs per payment and the samples grouped by what they are (ring, kernel, SQLite, HTTP, ...).
# BATCH=N (default 1) pays N per request through the batch endpoints.
# Needs perf (Debian: linux-perf). Loopback only.
set -euo pipefail
bin=$1 loader=$2; shift 2
d=$(mktemp -d); port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" --danger-demo-trust --danger-demo-keys --listen 127.0.0.1:"$port" --data-dir "$d" "$@" > "$d/log" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -sf http://127.0.0.1:"$port"/healthz >/dev/null && break; sleep 0.1; done
"$loader" load --url http://127.0.0.1:"$port" --clients 16 --batch "${BATCH:-1}" --seconds 9 --ecdsa-seconds 0 --server-pid "$pid" > "$d/r.json" &
lp=$!
sleep 2
perf record -F 1999 -o "$d/perf.data" -p "$pid" -- sleep 5 2>/dev/null >/dev/null
wait $lp
kill "$pid"; wait "$pid" 2>/dev/null || true
python3 -c "import json;d=json.load(open('$d/r.json'));print('payments/s',round(d['payments_per_sec']),'server_us',round(d['server_cpu_us_per_payment']))"
perf report -i "$d/perf.data" --no-children --sort dso,symbol --stdio 2>/dev/null | grep -E "^ +[0-9]" > "$d/rep.txt"
python3 - "$d/rep.txt" <<'EOF'
import sys,re,collections
g=collections.Counter()
rules=[('ECDSA verify (ring P-256)',r'nistz256|p256|ecp_|ring_core.*(mont|point|scalar|limbs)|LIMBS|bn_'),
('SHA-256 / HMAC (ring)',r'sha256|sha512|hmac'),
('kernel: network, scheduling, syscalls',r'\[kernel|\[k\]'),
('allocator (mimalloc, memcpy)',r'mi_|_mi_|malloc|free|memmove|memcpy|memset|memcmp'),
('SQLite',r'sqlite|pcache|wal|vdbe|btree|pager'),
('JSON (serde_json) and base64',r'serde_json|base64|serde'),
('CBOR/COSE (biopay_core::cbor, coset, ciborium)',r'cbor|cose|ciborium'),
('HTTP (hyper, axum, tokio)',r'hyper|axum|tokio|h1|http|mio'),
('threads, locks, futex',r'pthread|futex|syscall|parking|crossbeam|Mutex|Condvar'),
]
tot=0
for line in open(sys.argv[1]):
    m=re.match(r'\s+([0-9.]+)%\s+(\S+)\s+\[(.)\]\s+(.*)',line)
    if not m: continue
    p=float(m.group(1)); dso=m.group(2); kind=m.group(3); sym=m.group(4)
    tot+=p
    key='other (biopay code, std)'
    s=('[k] ' if kind=='k' else '')+dso+' '+sym
    for name,rx in rules:
        if re.search(rx,s,re.I): key=name; break
    g[key]+=p
for k,v in g.most_common(): print(f"  {v:5.1f}%  {k}")
EOF
rm -rf "$d"
