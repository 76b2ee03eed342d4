#!/usr/bin/env bash
# Builds the JVM package into dist/:
#   biopay-<version>.jar   the compiled Kotlin bindings (org.biopay) and the native
#                          library as the JNA resource linux-x86-64/libbiopay_bindings.so
#                          (JNA extracts and loads it from the jar: no -Djna.library.path)
#   biopay-<version>.pom   its Maven coordinates and dependencies (JNA, the Kotlin
#                          standard library, kotlinx-coroutines for the suspend calls)
#   jna-*.jar, kotlin-stdlib-*.jar, kotlinx-coroutines-core-jvm-*.jar: those dependencies
# Other platforms: build libbiopay_bindings for each target (cargo build --release
# --target aarch64-unknown-linux-gnu, x86_64-apple-darwin -> .dylib,
# x86_64-pc-windows-msvc -> biopay_bindings.dll, ...) and add each under JNA's
# resource prefix for it (linux-aarch64/, darwin-x86-64/, darwin-aarch64/,
# win32-x86-64/): `jar uf dist/biopay-<version>.jar -C <dir> <prefix>/<file>`.
# Usage: scripts/package-jvm.sh [--dev]   (--dev: debug build, for the tests)
# Needs what scripts/test-bindings.sh installs (kotlinc from npm kotlin-compiler,
# JNA from Debian libjna-java) and a JDK (jar).
set -euo pipefail
cd "$(dirname "$0")/.."
profile=release
cargo_profile=(--release)
if [ "${1:-}" = --dev ]; then profile=debug; cargo_profile=(); fi
kotlin_home="$(npm root -g)/kotlin-compiler"
jna=/usr/share/java/jna.jar
coroutines="$kotlin_home/lib/kotlinx-coroutines-core-jvm.jar"
if [ ! -x "$kotlin_home/bin/kotlinc" ] || [ ! -f "$jna" ]; then
  echo "run scripts/test-bindings.sh first (it installs kotlinc and JNA)" >&2
  exit 1
fi
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
kotlin_version=$(cat "$kotlin_home/build.txt")
jar_entry() { python3 -c 'import sys, zipfile; print(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]).decode())' "$1" "$2"; }
coroutines_version=$(jar_entry "$coroutines" META-INF/kotlinx_coroutines_core.version)
jna_version=$(jar_entry "$jna" META-INF/MANIFEST.MF | sed -n 's/^Implementation-Version: \([0-9.]*\).*/\1/p' | tr -d '\r')
[ -n "$jna_version" ] || jna_version=$(dpkg-query -W -f '${Version}' libjna-java | sed 's/-.*//')

cargo build --locked "${cargo_profile[@]}" -p biopay-bindings --lib
lib="${CARGO_TARGET_DIR:-target}/$profile/libbiopay_bindings.so"
work=target/package-jvm
rm -rf "$work"
mkdir -p "$work/classes/linux-x86-64" dist
cargo run --quiet --locked -p uniffi-bindgen -- generate --library "$lib" \
  --no-format --language kotlin --out-dir "$work/kotlin" >/dev/null
"$kotlin_home/bin/kotlinc" -nowarn -cp "$jna:$coroutines" "$work/kotlin/org/biopay/biopay.kt" \
  -d "$work/classes" 2>&1 | grep -v "^warning" || true
[ -f "$work/classes/org/biopay/PaymentVerifier.class" ] || { echo "Kotlin compilation failed" >&2; exit 1; }
cp "$lib" "$work/classes/linux-x86-64/"
strip --strip-debug "$work/classes/linux-x86-64/libbiopay_bindings.so"

rm -f dist/biopay-*.jar dist/biopay-*.pom dist/jna-*.jar dist/kotlin-stdlib-*.jar dist/kotlinx-coroutines-core-jvm-*.jar
jar --create --file "dist/biopay-$version.jar" -C "$work/classes" .
cp "$jna" "dist/jna-$jna_version.jar"
cp "$kotlin_home/lib/kotlin-stdlib.jar" "dist/kotlin-stdlib-$kotlin_version.jar"
cp "$coroutines" "dist/kotlinx-coroutines-core-jvm-$coroutines_version.jar"
cat > "dist/biopay-$version.pom" <<POM
<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0"
         xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
         xsi:schemaLocation="http://maven.apache.org/POM/4.0.0 https://maven.apache.org/xsd/maven-4.0.0.xsd">
  <modelVersion>4.0.0</modelVersion>
  <groupId>org.biopay</groupId>
  <artifactId>biopay</artifactId>
  <version>$version</version>
  <packaging>jar</packaging>
  <name>biopay</name>
  <description>biopay for the JVM: the payment verifier and SDK (Kotlin bindings of the Rust library, Linux x86-64 native library inside)</description>
  <licenses><license><name>Apache-2.0</name></license></licenses>
  <dependencies>
    <dependency>
      <groupId>net.java.dev.jna</groupId>
      <artifactId>jna</artifactId>
      <version>$jna_version</version>
    </dependency>
    <dependency>
      <groupId>org.jetbrains.kotlin</groupId>
      <artifactId>kotlin-stdlib</artifactId>
      <version>$kotlin_version</version>
    </dependency>
    <dependency>
      <groupId>org.jetbrains.kotlinx</groupId>
      <artifactId>kotlinx-coroutines-core-jvm</artifactId>
      <version>$coroutines_version</version>
    </dependency>
  </dependencies>
</project>
POM
ls dist/biopay-"$version".jar dist/biopay-"$version".pom dist/jna-*.jar dist/kotlin-stdlib-*.jar dist/kotlinx-coroutines-core-jvm-*.jar
