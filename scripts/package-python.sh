#!/usr/bin/env bash
# Builds the Python package `biopay` into dist/biopay-<version>-<tags>.whl: the
# uniffi bindings of biopay-bindings built by maturin (bindings/pyproject.toml;
# module biopay._native re-exported by bindings/python/biopay, typed: py.typed).
# The wheel is for this machine's platform (Linux x86-64 here); build it on each
# platform (or with maturin --target / --zig) for the others.
# Usage: scripts/package-python.sh [--dev]   (--dev: debug build, for the tests)
# Installs maturin (PyPI) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=(--release)
if [ "${1:-}" = --dev ]; then profile=(--profile dev); fi
# Run as `python3 -m maturin`: a pip install as a user may put the script off PATH.
if ! python3 -m maturin --version 2>/dev/null | grep -q '^maturin 1\.'; then
  echo "installing maturin (PyPI)"
  python3 -m pip install --quiet --disable-pip-version-check "maturin>=1.9,<2"
fi
# maturin generates the Python module with the `uniffi-bindgen` it finds on PATH:
# give it ours, pinned to the crate's uniffi version (bindings/uniffi-bindgen).
cargo build --locked --quiet -p uniffi-bindgen
bindgen_dir="$(mktemp -d)"
trap 'rm -rf "$bindgen_dir"' EXIT
target_dir="${CARGO_TARGET_DIR:-target}"
case "$target_dir" in /*) ;; *) target_dir="$PWD/$target_dir" ;; esac
ln -s "$target_dir/debug/biopay-uniffi-bindgen" "$bindgen_dir/uniffi-bindgen"
export PATH="$bindgen_dir:$PATH"
mkdir -p dist
rm -f dist/biopay-*.whl
python3 -m maturin build --locked "${profile[@]}" -m "$PWD/bindings/Cargo.toml" --out dist
ls dist/biopay-*.whl
