#!/usr/bin/env bash
# Generates the Kotlin, Python and Swift bindings and runs their test suites.
# Installs what it needs when missing: the Kotlin compiler (npm package
# kotlin-compiler, with kotlinx-coroutines), JNA (Debian libjna-java),
# tree-sitter-swift, cryptography (PyPI; the Python test keystore signs with
# it), maturin (PyPI, by scripts/package-python.sh) and python3-venv (Debian).
# Then builds the Python wheel and the JVM jar (scripts/package-*.sh) and
# exercises each from a fresh environment.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/bindings
root="$PWD"
mkdir -p "$out"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi; }
# Debian packages, with the package lists refreshed once per run before the first install.
apt_updated=
apt_install() {
  if [ -z "$apt_updated" ]; then
    as_root apt-get -o DPkg::Lock::Timeout=600 update -qq
    apt_updated=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "$@" >/dev/null
}

# --- toolchains -------------------------------------------------------------
kotlin_home="$(npm root -g 2>/dev/null)/kotlin-compiler"
if [ ! -x "$kotlin_home/bin/kotlinc" ]; then
  echo "installing the Kotlin compiler (npm: kotlin-compiler)"
  as_root npm install -g --no-fund --no-audit kotlin-compiler@2 >/dev/null
  kotlin_home="$(npm root -g)/kotlin-compiler"
fi
coroutines="$kotlin_home/lib/kotlinx-coroutines-core-jvm.jar"  # the async API (suspend) needs it
jna=/usr/share/java/jna.jar
if [ ! -f "$jna" ]; then
  echo "installing JNA (Debian: libjna-java)"
  apt_install libjna-java
fi
if ! python3 -c "import tree_sitter, tree_sitter_swift" 2>/dev/null; then
  echo "installing tree-sitter-swift (PyPI)"
  python3 -m pip install --quiet --disable-pip-version-check "tree-sitter>=0.23,<1" "tree-sitter-swift>=0.7,<1"
fi

if ! python3 -c "import cryptography" 2>/dev/null; then
  echo "installing cryptography (PyPI)"
  python3 -m pip install --quiet --disable-pip-version-check "cryptography==48.0.0"
fi

# --- generate ---------------------------------------------------------------
cargo build --locked -p biopay-bindings
target="${CARGO_TARGET_DIR:-target}"
lib="$target/debug/libbiopay_bindings.so"
for lang in kotlin python swift; do
  rm -rf "${out:?}/$lang"
  cargo run --quiet --locked -p uniffi-bindgen -- generate --library "$lib" --no-format --language "$lang" --out-dir "$out/$lang" >/dev/null
done
cp "$lib" "$out/python/"

# --- Kotlin on the JVM ------------------------------------------------------
echo "==> Kotlin: compiling the bindings and the test suite"
rm -f "$out/kotlin-tests.jar"  # a stale jar must not stand in for a failed compilation
"$kotlin_home/bin/kotlinc" -nowarn -cp "$jna:$coroutines" \
  "$out/kotlin/org/biopay/biopay.kt" bindings/tests/kotlin/BiopayTest.kt bindings/tests/kotlin/IosTest.kt \
  -d "$out/kotlin-tests.jar" 2>&1 | grep -v "^warning" || true
[ -f "$out/kotlin-tests.jar" ] || { echo "Kotlin compilation failed" >&2; exit 1; }
java -Djna.library.path="$target/debug" \
  -cp "$out/kotlin-tests.jar:$jna:$coroutines:$kotlin_home/lib/kotlin-stdlib.jar" BiopayTestKt
echo "==> Kotlin: the iOS flow (App Attest on the simulated double)"
java -Djna.library.path="$target/debug" \
  -cp "$out/kotlin-tests.jar:$jna:$coroutines:$kotlin_home/lib/kotlin-stdlib.jar" IosTestKt

echo "==> Kotlin: docs/android.md's code, compiled against the generated bindings and Android stubs"
# The guide's complete Kotlin files (the blocks that start with `package`), type-checked
# against bindings/tests/android-stubs (hand-written Android/androidx signatures).
rm -rf "$out/docs-kotlin"
mkdir -p "$out/docs-kotlin"
python3 - "$out/docs-kotlin" <<'PY'
import re, sys
text = open("docs/android.md", encoding="utf-8").read()
blocks = [b for b in re.findall(r"```kotlin\n(.*?)```", text, re.S) if b.startswith("package ")]
assert len(blocks) >= 3, f"docs/android.md: expected 3 complete Kotlin files, found {len(blocks)}"
for i, b in enumerate(blocks):
    open(f"{sys.argv[1]}/android-md-{i}.kt", "w", encoding="utf-8").write(b)
PY
"$kotlin_home/bin/kotlinc" -nowarn -cp "$jna:$coroutines" "$out/kotlin/org/biopay/biopay.kt" \
  bindings/tests/android-stubs/*.kt "$out"/docs-kotlin/*.kt -d "$out/docs-kotlin/classes" 2>&1 | grep -v "^warning" || true
[ -f "$out/docs-kotlin/classes/com/example/pay/biopay/AndroidKeystorePlatformKeystore.class" ] \
  || { echo "docs/android.md: its Kotlin does not compile" >&2; exit 1; }

# --- Python -----------------------------------------------------------------
echo "==> Python: unittest"
PYTHONPATH="$out/python" python3 bindings/tests/python/test_biopay.py
echo "==> Python: the iOS flow (App Attest on the simulated double)"
PYTHONPATH="$out/python" python3 bindings/tests/python/test_ios.py

# --- The packages: installed into fresh environments ----------------------
# (debug builds, to keep the suite quick; the scripts build release by default)
echo "==> Python package: scripts/package-python.sh (maturin wheel), pip-installed into a new venv"
scripts/package-python.sh --dev
pkg_tmp="$(mktemp -d)"
trap 'rm -rf "$pkg_tmp"' EXIT
if ! python3 -m venv "$pkg_tmp/venv" 2>/dev/null; then
  echo "installing python3-venv (Debian)"
  apt_install python3-venv
  rm -rf "$pkg_tmp/venv"
  python3 -m venv "$pkg_tmp/venv"
fi
"$pkg_tmp/venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-index dist/biopay-*.whl
# From a directory without the sources, so `import biopay` can only be the wheel.
(cd "$pkg_tmp" && "$pkg_tmp/venv/bin/python" "$root/bindings/tests/packages/verify_payment.py" "$root/README.md")

echo "==> JVM package: scripts/package-jvm.sh (jar with the native library, POM), a Java program on java -cp"
scripts/package-jvm.sh --dev
classpath="$(printf '%s:' "$PWD"/dist/biopay-*.jar "$PWD"/dist/jna-*.jar "$PWD"/dist/kotlin-stdlib-*.jar "$PWD"/dist/kotlinx-coroutines-core-jvm-*.jar)"
(cd "$pkg_tmp" && java -cp "${classpath%:}" "$root/bindings/tests/packages/VerifyPayment.java")

# --- Packaging scripts (their toolchains are not here: lint what we can) ----
echo "==> packaging scripts: shellcheck (the Android NDK, Gradle and Xcode builds are NOT RUN here)"
if ! command -v shellcheck >/dev/null; then
  apt_install shellcheck
fi
shellcheck bindings/android/build-aar.sh bindings/ios/build-xcframework.sh scripts/test-bindings.sh \
  scripts/package-python.sh scripts/package-jvm.sh

# --- Swift ------------------------------------------------------------------
echo "==> Swift: syntax check of the generated bindings and the XCTest suite (tree-sitter-swift)"
# The guide's Swift code blocks too (docs/ios.md), one file each.
rm -rf "$out/docs-swift"
mkdir -p "$out/docs-swift"
python3 - "$out/docs-swift" <<'PY'
import re, sys
blocks = re.findall(r"```swift\n(.*?)```", open("docs/ios.md", encoding="utf-8").read(), re.S)
assert blocks, "docs/ios.md has no Swift code block"
for i, b in enumerate(blocks):
    open(f"{sys.argv[1]}/ios-md-{i}.swift", "w", encoding="utf-8").write(b)
PY
python3 scripts/swift_syntax_check.py "$out/swift/Biopay.swift" bindings/tests/swift/BiopayTests.swift bindings/ios/Package.swift "$out"/docs-swift/*.swift
if command -v swift >/dev/null; then
  echo "Swift toolchain found: see bindings/swift/README.md to run the XCTest suite"
else
  echo "NOTE: no Swift toolchain on this machine: the Swift XCTest suite was NOT RUN (only syntax-checked)."
fi
