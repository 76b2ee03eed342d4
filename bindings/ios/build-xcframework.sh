#!/usr/bin/env bash
# Builds Biopay.xcframework and the Swift package in bindings/ios/:
#   BiopayFFI.xcframework  the static Rust library for iOS devices and the
#                          simulator (arm64 + x86_64), with the C header and modulemap
#   Sources/Biopay/Biopay.swift  the generated Swift bindings
# Needs: macOS with Xcode, rustup. Then add the package (Package.swift) to an app.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

rustup target add aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios
for t in aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios; do
  cargo build --locked --release -p biopay-bindings --target "$t"
done

gen="$here/build/generated"
rm -rf "$here/build" "$here/BiopayFFI.xcframework"
mkdir -p "$gen" "$here/build/sim" "$here/Sources/Biopay"
cargo run --locked -p uniffi-bindgen -- generate --no-format \
  --library target/aarch64-apple-ios/release/libbiopay_bindings.a \
  --language swift --out-dir "$gen"

# Headers for the XCFramework: the C header and a module map named module.modulemap.
mkdir -p "$here/build/headers"
cp "$gen/BiopayFFI.h" "$here/build/headers/"
cp "$gen/BiopayFFI.modulemap" "$here/build/headers/module.modulemap"
cp "$gen/Biopay.swift" "$here/Sources/Biopay/Biopay.swift"
# The XCTest suite, inside the package root (SwiftPM refuses paths outside it).
mkdir -p "$here/Tests/BiopayTests"
cp "$root/bindings/tests/swift/BiopayTests.swift" "$here/Tests/BiopayTests/BiopayTests.swift"

# One fat library for the two simulator architectures.
lipo -create \
  target/aarch64-apple-ios-sim/release/libbiopay_bindings.a \
  target/x86_64-apple-ios/release/libbiopay_bindings.a \
  -output "$here/build/sim/libbiopay_bindings.a"

xcodebuild -create-xcframework \
  -library target/aarch64-apple-ios/release/libbiopay_bindings.a -headers "$here/build/headers" \
  -library "$here/build/sim/libbiopay_bindings.a" -headers "$here/build/headers" \
  -output "$here/BiopayFFI.xcframework"
echo "built $here/BiopayFFI.xcframework; the Swift package is $here/Package.swift"
echo "tests: cd $here && xcodebuild test -scheme Biopay -destination 'platform=iOS Simulator,name=iPhone 16'"
