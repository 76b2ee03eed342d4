// swift-tools-version:5.9
// The biopay SDK as a Swift package: the generated Swift bindings on top of
// the Rust library shipped as a binary XCFramework (build it with
// build-xcframework.sh; a release would use `url:` + `checksum:` instead of `path:`).
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
            path: "Sources/Biopay"
        ),
        .testTarget(
            name: "BiopayTests",
            dependencies: ["Biopay"],
            path: "../tests/swift"
        ),
    ]
)
