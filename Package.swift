// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "tlstap",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "tlstap", targets: ["tlstap"]),
        .library(name: "TLSTapCore", targets: ["TLSTapCore"]),
        .library(name: "TLSTapLoader", targets: ["TLSTapLoader"]),
        .library(name: "TLSTapOutput", targets: ["TLSTapOutput"]),
        .library(name: "TLSTapSession", targets: ["TLSTapSession"]),
        .library(name: "TLSTap", targets: ["TLSTap"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.82.0"),
        .package(url: "https://github.com/apple/swift-nio-http2", from: "1.46.0"),
        .package(url: "https://github.com/adam-fowler/compress-nio", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.1.0"),
        .package(url: "https://github.com/swift-extras/swift-extras-base64", from: "1.2.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CLibbpf",
            pkgConfig: "libbpf",
            providers: [.apt(["libbpf-dev"])]
        ),
        .target(name: "CTLSTapABI"),
        .target(name: "CTLSTapSIMD"),
        .target(name: "CTLSTapBPF", dependencies: ["CLibbpf", "CTLSTapABI"]),
        .target(name: "TLSTapCore", dependencies: ["CTLSTapABI"]),
        .target(
            name: "TLSTapLoader",
            dependencies: [
                "CLibbpf", "CTLSTapABI", "CTLSTapBPF", "TLSTapCore", "CCapstone", "CLibcap",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "TLSTapOutput",
            dependencies: [
                "TLSTapCore", "TLSTapHTTP", "CTLSTapSIMD",
                .product(name: "ExtrasBase64", package: "swift-extras-base64"),
            ]
        ),
        .systemLibrary(name: "CCapstone", pkgConfig: "capstone", providers: [.apt(["libcapstone-dev"])]),
        .systemLibrary(name: "CBrotli", pkgConfig: "libbrotlidec", providers: [.apt(["libbrotli-dev"])]),
        .systemLibrary(name: "CLibcap", pkgConfig: "libcap", providers: [.apt(["libcap-dev"])]),
        .target(
            name: "TLSTapHTTP",
            dependencies: [
                "TLSTapCore", "CBrotli",
                .product(name: "CompressNIO", package: "compress-nio"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
            ]
        ),
        .target(
            name: "TLSTapSession",
            dependencies: [
                "TLSTapCore", "TLSTapLoader", "TLSTapOutput", "TLSTapHTTP",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "tlstap",
            dependencies: [
                "TLSTapCore", "TLSTapLoader", "TLSTapOutput", "TLSTapSession", "TLSTapHTTP",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "TLSTap", dependencies: ["TLSTapCore", "TLSTapHTTP", "TLSTapLoader", "TLSTapOutput", "TLSTapSession"]),
        // README.md's example program, built and run by the end-to-end tests.
        .executableTarget(
            name: "tlstap-example",
            dependencies: ["TLSTap", .product(name: "Logging", package: "swift-log")],
            path: "Examples/capture"),
        .executableTarget(name: "tlstap-fuzz", dependencies: ["TLSTapCore", "TLSTapHTTP"]),
        .executableTarget(
            name: "tlstap-parser-bench",
            dependencies: [
                "TLSTapCore", "TLSTapHTTP", "TLSTapOutput",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
            ],
            path: "bench/parsers",
            exclude: ["run"]
        ),
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(
            name: "TLSTapCoreTests", dependencies: ["TLSTapCore", "CTLSTapABI", "TestSupport"],
            resources: [.copy("Fixtures")]),
        .testTarget(
            name: "TLSTapOutputTests",
            dependencies: [
                "TLSTapOutput", "TLSTapCore", "TLSTapHTTP", "CTLSTapSIMD",
                .product(name: "ExtrasBase64", package: "swift-extras-base64"),
            ],
            exclude: ["Golden"]),
        .testTarget(
            name: "TLSTapHTTPTests",
            dependencies: [
                "TLSTapHTTP", "TLSTapCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
            ]
        ),
        .testTarget(name: "TLSTapLoaderTests", dependencies: ["TLSTapLoader", "TestSupport"]),
        .testTarget(
            name: "CLITests",
            dependencies: [
                "tlstap", "TLSTapOutput", "TLSTapHTTP",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .testTarget(
            name: "TLSTapSessionTests",
            dependencies: ["TLSTapSession", "TLSTapOutput", "TLSTapHTTP", "TLSTapCore", "TestSupport"]),
        .testTarget(name: "EndToEndTests", dependencies: ["TestSupport"], exclude: ["Peers"]),
    ]
)
