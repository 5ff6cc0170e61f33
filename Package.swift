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
    ],
    targets: [
        // Native libraries, each behind a thin module map (and, where needed, a shim header).
        .systemLibrary(name: "CHDF5", path: "Sources/CHDF5", pkgConfig: "hdf5-serial",
                       providers: [.apt(["libhdf5-dev"])]),
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        // libzmq's .pc file carries -isystem flags SwiftPM rejects: no pkgConfig, link directly.
        .systemLibrary(name: "CZMQ", path: "Sources/CZMQ", providers: [.apt(["libzmq3-dev"])]),

        // Which vector instructions the native code uses (AVX-512, AVX2 or none, chosen once at
        // load), and the vector conversions of half-precision floats (see its header).
        .target(name: "CHNDCPU"),
        // The engine's hottest loops in AVX-512 and AVX2, on the path CHNDCPU chose (see its header).
        .target(name: "CHNDKernels", dependencies: ["CHNDCPU"]),
        // The engine: pure computation, knows nothing of files or sockets.
        .target(name: "HNDEngine", dependencies: ["COpenBLAS", "CHNDKernels"],
                swiftSettings: [.unsafeFlags(["-Ounchecked"], .when(configuration: .release))]),
        // The store: HDF5 dictionary, activations and snapshot files.
        .target(name: "HNDStore", dependencies: ["CHDF5", "HNDEngine"]),
        // The wire: ZeroMQ sockets and the protobuf protocol.
        .target(name: "HNDWire", dependencies: [
            "CZMQ", "CHNDCPU", .product(name: "SwiftProtobuf", package: "swift-protobuf"),
        ]),
        // The daemon: ingest, passes, snapshots, checkpoints.
        .target(name: "HNDDaemon", dependencies: [
            "HNDEngine", "HNDStore", "HNDWire", .product(name: "Logging", package: "swift-log"),
        ]),
        // The HTML report.
        .target(name: "HNDReport", dependencies: ["HNDStore", "HNDEngine"]),
        // The command line: thin, one command a file.
        .executableTarget(name: "hndd", dependencies: [
            "HNDEngine", "HNDStore", "HNDWire", "HNDDaemon", "HNDReport",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),

        .testTarget(name: "HNDEngineTests", dependencies: ["HNDEngine", "CHNDKernels", "CHNDCPU"]),
        .testTarget(name: "HNDStoreTests", dependencies: ["HNDStore", "HNDEngine"]),
        .testTarget(name: "HNDWireTests", dependencies: ["HNDWire", "CHNDCPU"]),
        .testTarget(name: "HNDDaemonTests", dependencies: ["HNDDaemon", "HNDEngine"]),
    ]
)
