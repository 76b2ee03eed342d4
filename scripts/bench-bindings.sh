#!/usr/bin/env bash
# Measures the Kotlin bindings' overhead: authorize and verify through Kotlin
# versus the same calls in Rust, interleaved in one JVM process (release build).
# Usage: scripts/bench-bindings.sh [iterations-per-round] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/bindings-bench
mkdir -p "$out"
kotlin_home="$(npm root -g)/kotlin-compiler"
jna=/usr/share/java/jna.jar
coroutines="$kotlin_home/lib/kotlinx-coroutines-core-jvm.jar"
if [ ! -x "$kotlin_home/bin/kotlinc" ] || [ ! -f "$jna" ]; then
  echo "run scripts/test-bindings.sh first (it installs kotlinc and JNA)" >&2
  exit 1
fi
cargo build --locked --release -p biopay-bindings
cargo run --quiet --locked -p uniffi-bindgen -- generate --no-format \
  --library target/release/libbiopay_bindings.so --language kotlin --out-dir "$out/kotlin" >/dev/null
"$kotlin_home/bin/kotlinc" -nowarn -cp "$jna:$coroutines" "$out/kotlin/org/biopay/biopay.kt" bindings/tests/kotlin-bench/Overhead.kt \
  -d "$out/overhead.jar" 2>&1 | grep -v "^warning" || true
java -Djna.library.path=target/release -cp "$out/overhead.jar:$jna:$coroutines:$kotlin_home/lib/kotlin-stdlib.jar" OverheadKt "$@"
