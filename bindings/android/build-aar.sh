#!/usr/bin/env bash
# Builds the biopay Android library (AAR): the Rust library for each Android
# ABI (cargo-ndk), the Kotlin bindings (uniffi-bindgen), and the Gradle module.
#
# Needs: the Android SDK + NDK (ANDROID_HOME, ANDROID_NDK_HOME), rustup, and a
# JDK 17. Output: bindings/android/biopay/build/outputs/aar/biopay-release.aar
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
module="$here/biopay"

: "${ANDROID_NDK_HOME:?set ANDROID_NDK_HOME to the Android NDK (r28 or newer: 16 KB pages by default)}"
command -v cargo-ndk >/dev/null || cargo install --locked cargo-ndk
rustup target add aarch64-linux-android armv7-linux-androideabi x86_64-linux-android i686-linux-android

cd "$root"
# 1. The native library for each ABI, laid out as jniLibs/<abi>/libbiopay_bindings.so.
# API 28 (Android 9): StrongBox (BiometricPrompt itself is API 23+ through androidx).
# 16 KB pages: Android 15+ devices may use them, and Google Play requires apps that
# target Android 15+ to support them. NDK r28+ links 16 KB-aligned by default; the
# flag makes older NDKs do the same for the 64-bit ABIs. Checked after the build.
export CARGO_TARGET_AARCH64_LINUX_ANDROID_RUSTFLAGS="-C link-arg=-Wl,-z,max-page-size=16384"
export CARGO_TARGET_X86_64_LINUX_ANDROID_RUSTFLAGS="-C link-arg=-Wl,-z,max-page-size=16384"
cargo ndk --platform 28 \
  -t arm64-v8a -t armeabi-v7a -t x86_64 -t x86 \
  -o "$module/src/main/jniLibs" \
  build --locked --release -p biopay-bindings

# Every LOAD segment of the 64-bit libraries must be aligned to 16 KB or more,
# or the library does not load on a 16 KB-page device.
readelf=""
for candidate in "$ANDROID_NDK_HOME"/toolchains/llvm/prebuilt/*/bin/llvm-readelf; do
  readelf="$candidate"
done
[ -x "$readelf" ] || { echo "llvm-readelf not found in the NDK" >&2; exit 1; }
for abi in arm64-v8a x86_64; do
  for so in "$module/src/main/jniLibs/$abi/"*.so; do
    loads=0
    while read -r align; do
      loads=$((loads + 1))
      if (( align < 16384 )); then
        echo "$so: a LOAD segment is aligned to $align bytes, not 16 KB" >&2
        exit 1
      fi
    done < <("$readelf" -lW "$so" | awk '$1 == "LOAD" { print $NF }')
    (( loads > 0 )) || { echo "$so: no LOAD segment read" >&2; exit 1; }
  done
done
echo "16 KB page alignment: ok (arm64-v8a, x86_64)"

# 2. The Kotlin bindings, generated from the arm64 library's metadata.
rm -rf "$module/src/main/java/org/biopay/biopay.kt"
cargo run --locked -p uniffi-bindgen -- generate --no-format \
  --library target/aarch64-linux-android/release/libbiopay_bindings.so \
  --language kotlin --out-dir "$module/src/main/java"

# 3. The AAR.
cd "$here"
if [ -x ./gradlew ]; then ./gradlew :biopay:assembleRelease; else gradle :biopay:assembleRelease; fi
ls -l "$module/build/outputs/aar/"
