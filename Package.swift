// swift-tools-version:6.0
// ksmfs: an in-memory FUSE filesystem with a userspace Kernel Samepage Merging engine.
// Arrows point one way: ksmfs -> KSMFS -> {FUSE, KSM}; FUSE -> CFuse3; KSM -> CKSMSupport.
import PackageDescription

let package = Package(
    name: "ksmfs",
    products: [
        .executable(name: "ksmfs", targets: ["ksmfs"]),
        .executable(name: "ksmfs-bench", targets: ["ksmfs-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        .target(
            name: "CFuse3",
            cSettings: [.define("_FILE_OFFSET_BITS", to: "64")],
            linkerSettings: [.linkedLibrary("fuse3"), .linkedLibrary("pthread")]
        ),
        // A minimal C libfuse filesystem that `ksmfs-bench io` runs next to ksmfs (the baseline
        // of issue 2's targets); nothing else links it.
        .target(
            name: "CReferenceFS",
            cSettings: [.define("_FILE_OFFSET_BITS", to: "64")],
            linkerSettings: [.linkedLibrary("fuse3"), .linkedLibrary("pthread")]
        ),
        .target(
            name: "CKSMSupport",
            path: "Sources/CKSMSupport"
        ),
        .target(name: "FUSE", dependencies: ["CFuse3"]),
        .target(name: "KSM", dependencies: ["CKSMSupport"]),
        .target(name: "KSMFS", dependencies: ["FUSE", "KSM", .product(name: "Logging", package: "swift-log")]),
        .executableTarget(
            name: "ksmfs",
            dependencies: [
                "KSMFS", "FUSE",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "ksmfs-bench",
            dependencies: ["KSM", "KSMFS", "CKSMSupport", "CReferenceFS", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .testTarget(name: "KSMTests", dependencies: ["KSM"]),
        .testTarget(name: "KSMFSTests", dependencies: ["KSMFS", "KSM", "FUSE"]),
    ]
)
