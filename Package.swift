// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "hndd",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "hndd", targets: ["hndd"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    ],
    targets: [
        // Native libraries, each behind a thin module map (and, where needed, a shim header).
        .systemLibrary(name: "CHDF5", path: "Sources/CHDF5", pkgConfig: "hdf5-serial",
                       providers: [.apt(["libhdf5-dev"])]),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        // libzmq's .pc file carries -isystem flags SwiftPM rejects: no pkgConfig, link directly.
        .systemLibrary(name: "CZMQ", path: "Sources/CZMQ", providers: [.apt(["libzmq3-dev"])]),
        // sgemm for the explicit permutation check of the significance tests (and `hndd bench-stages`,
        // which shows why Stage I/III stay loops: docs/performance.md). Debian's openblas.pc names a
        // per-variant include directory: no pkgConfig, link directly (cblas.h is on the default path).
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS", providers: [.apt(["libopenblas-dev"])]),

        // Which vector instructions the native code uses (AVX-512, AVX2 or none, chosen once at
        // load), and the vector conversions of half-precision floats (see its header).
        .target(name: "CHNDCPU"),
        // The engine's hot loops in C (AVX-512 and AVX2 kernels on the path CHNDCPU chose, with
        // portable paths) and the candidate arena's memory: see its header.
        .target(name: "CHNDKernels", dependencies: ["CHNDCPU"]),
        // The engine: pure computation, knows nothing of files or sockets.
        .target(name: "HNDEngine", dependencies: ["CHNDKernels", "COpenBLAS"],
                swiftSettings: [.unsafeFlags(["-Ounchecked"], .when(configuration: .release))]),
        // The store: HDF5 dictionary, activations and snapshot files.
        .target(name: "HNDStore", dependencies: ["CHDF5", "HNDEngine"]),
        // The wire: ZeroMQ sockets and the protobuf protocol.
        .target(name: "HNDWire", dependencies: [
            "CZMQ", "CHNDCPU", .product(name: "SwiftProtobuf", package: "swift-protobuf"),
        ]),
        // The daemon: ingest, passes, snapshots, checkpoints; a Service of swift-service-lifecycle.
        .target(name: "HNDDaemon", dependencies: [
            "HNDEngine", "HNDStore", "HNDWire", .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        // The HTML report (its thumbnails compressed by zlib).
        .target(name: "HNDReport", dependencies: ["HNDStore", "HNDEngine", "CZlib"]),
        // The command line: thin, one command a file.
        .executableTarget(name: "hndd", dependencies: [
            "HNDEngine", "HNDStore", "HNDWire", "HNDDaemon", "HNDReport",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),

        // What the test targets share (a seeded random number generator); not part of hndd.
        .target(name: "HNDTestSupport", path: "Tests/HNDTestSupport"),
        .testTarget(name: "HNDEngineTests", dependencies: ["HNDEngine", "CHNDKernels", "CHNDCPU", "HNDTestSupport"]),
        .testTarget(name: "HNDStoreTests", dependencies: ["HNDStore", "HNDEngine", "CHDF5"]),
        .testTarget(name: "HNDWireTests", dependencies: ["HNDWire", "CHNDCPU", "HNDTestSupport"]),
        .testTarget(name: "HNDDaemonTests", dependencies: [
            "HNDDaemon", "HNDEngine", "HNDWire", "HNDStore", .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "HNDReportTests", dependencies: ["HNDReport", "CZlib", "HNDTestSupport"]),
    ]
)
