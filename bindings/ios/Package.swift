// swift-tools-version:5.9
// The biopay SDK as a Swift package: the generated Swift bindings on top of
// the Rust library shipped as a binary XCFramework. Self-contained: every path
// is inside this directory. build-xcframework.sh writes BiopayFFI.xcframework,
// Sources/Biopay/Biopay.swift and Tests/BiopayTests (a copy of
// bindings/tests/swift). A release would use `url:` + `checksum:` instead of
// `path:` for the XCFramework.
//
// The XCFramework holds iOS slices only: run the tests on a simulator,
//   xcodebuild test -scheme Biopay -destination 'platform=iOS Simulator,name=iPhone 16'
// (`swift test` on the Mac host cannot link an iOS-only library).
import PackageDescription

let package = Package(
    name: "Biopay",
    platforms: [.iOS(.v15)],
    products: [
        .library(name: "Biopay", targets: ["Biopay"]),
    ],
    targets: [
        .binaryTarget(name: "BiopayFFI", path: "BiopayFFI.xcframework"),
        .target(
            name: "Biopay",
            dependencies: ["BiopayFFI"],
            path: "Sources/Biopay",
            // The App Store privacy manifest: the Rust library reads file timestamps
            // (std::fs metadata) and the monotonic clock, both required-reason APIs.
            resources: [.copy("PrivacyInfo.xcprivacy")]
        ),
        .testTarget(
            name: "BiopayTests",
            dependencies: ["Biopay"],
            path: "Tests/BiopayTests"
        ),
    ]
)
