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

: "${ANDROID_NDK_HOME:?set ANDROID_NDK_HOME to the Android NDK (r26 or newer)}"
command -v cargo-ndk >/dev/null || cargo install --locked cargo-ndk
rustup target add aarch64-linux-android armv7-linux-androideabi x86_64-linux-android i686-linux-android

cd "$root"
# 1. The native library for each ABI, laid out as jniLibs/<abi>/libbiopay_bindings.so.
# API 28 (Android 9) is the first with BiometricPrompt.
cargo ndk --platform 28 \
  -t arm64-v8a -t armeabi-v7a -t x86_64 -t x86 \
  -o "$module/src/main/jniLibs" \
  build --locked --release -p biopay-bindings

# 2. The Kotlin bindings, generated from the arm64 library's metadata.
rm -rf "$module/src/main/java/org/biopay/biopay.kt"
cargo run --locked -p uniffi-bindgen -- generate --no-format \
  --library target/aarch64-linux-android/release/libbiopay_bindings.so \
  --language kotlin --out-dir "$module/src/main/java"

# 3. The AAR.
cd "$here"
if [ -x ./gradlew ]; then ./gradlew :biopay:assembleRelease; else gradle :biopay:assembleRelease; fi
ls -l "$module/build/outputs/aar/"
