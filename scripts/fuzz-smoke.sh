#!/usr/bin/env bash
# Bounded fuzz smoke run of every target in fuzz/ (cbor, cose, messages,
# x509_chain, verify_payment, android_attestation, apple_app_attest).
#
# By default the target bodies (biopay_fuzz::<target>) run as a plain stable
# binary over a deterministic corpus: the valid seeds of each target, then
# seeded pseudo-random and mutated-valid inputs (fuzz/src/bin/smoke.rs). This
# is what CI runs: `cargo fuzz` needs nightly, and this machine has stable only.
#
# BIOPAY_FUZZ_LIBFUZZER=1 runs each target under libFuzzer instead, coverage
# guided, for FUZZ_SMOKE_SECS seconds from the seed corpus in fuzz/corpus/:
# with `cargo +nightly fuzz` when nightly and cargo-fuzz are installed, else on
# stable with SanitizerCoverage flags (no AddressSanitizer, which needs
# nightly). The instrumented build takes ~10 minutes on 2 cores the first time.
#
# Usage: scripts/fuzz-smoke.sh [TARGET...]
#   FUZZ_SMOKE_ITERS  inputs per target, stable driver (default 200000)
#   FUZZ_SMOKE_SECS   time bound per target in seconds (default 20)
#   FUZZ_SMOKE_SEED   generator seed (default fixed; set it to explore further)
# A crashing input is saved to fuzz/artifacts/<target>/ and the script fails.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

# fuzz/ is its own workspace with its own Cargo.lock. Build with it as
# committed; when a dependency of biopay-core changed and the lock file lags,
# say so and let cargo resolve anew rather than fail.
locked=--locked
if ! cargo metadata --locked --format-version 1 >/dev/null 2>&1; then
  echo "warning: fuzz/Cargo.lock is out of date; run 'cargo update -p biopay-core' in fuzz/ and commit it" >&2
  locked=
fi

export FUZZ_SMOKE_ITERS="${FUZZ_SMOKE_ITERS:-200000}"
export FUZZ_SMOKE_SECS="${FUZZ_SMOKE_SECS:-20}"

if [[ "${BIOPAY_FUZZ_LIBFUZZER:-0}" == 1 ]]; then
  targets=("$@")
  if [[ ${#targets[@]} -eq 0 ]]; then
    mapfile -t targets < <(cargo run --quiet --release ${locked:+"$locked"} --bin smoke -- --list)
  fi
  cargo run --quiet --release ${locked:+"$locked"} --bin smoke -- --write-corpus corpus
  if cargo +nightly fuzz --version >/dev/null 2>&1; then
    for t in "${targets[@]}"; do
      echo "==> cargo +nightly fuzz run $t (${FUZZ_SMOKE_SECS} s)"
      cargo +nightly fuzz run --features libfuzzer "$t" "corpus/$t" -- \
        -max_total_time="$FUZZ_SMOKE_SECS" -seed=1
    done
    exit 0
  fi
  # Stable: what cargo-fuzz passes minus -Zsanitizer. --target keeps the flags
  # off build scripts and proc macros (they are not linked with libFuzzer).
  host=$(rustc -vV | sed -n 's/^host: //p')
  bins=()
  for t in "${targets[@]}"; do bins+=(--bin "$t"); done
  echo "==> building the libFuzzer targets with SanitizerCoverage on stable ($host)"
  RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions" \
    cargo build --release ${locked:+"$locked"} --features libfuzzer --target "$host" "${bins[@]}"
  for t in "${targets[@]}"; do
    echo "==> libFuzzer $t (${FUZZ_SMOKE_SECS} s)"
    mkdir -p "artifacts/$t"
    "${CARGO_TARGET_DIR:-target}/$host/release/$t" "corpus/$t" -max_total_time="$FUZZ_SMOKE_SECS" -seed=1 \
      -artifact_prefix="artifacts/$t/"
  done
  exit 0
fi

echo "running the fuzz target bodies on stable ($(rustc --version)); BIOPAY_FUZZ_LIBFUZZER=1 for libFuzzer"
cargo run --quiet --release ${locked:+"$locked"} --bin smoke -- "$@"
