// swift-tools-version:6.0
import PackageDescription

let cSettings: [CSetting] = [.define("_GNU_SOURCE"), .unsafeFlags(["-Wall"])]

let package = Package(
    name: "ContainerObjects",
    products: [
        .library(name: "ContainerObject", targets: ["ContainerObject"]),
        // libcontainerobject.so: the C ABI declared in container.h.
        .library(name: "containerobject", type: .dynamic, targets: ["ContainerObjectC"]),
        .executable(name: "ctrobjd", targets: ["ctrobjd"]),
        .executable(name: "ctrobj", targets: ["ctrobj"]),
        .executable(name: "ctrobj-upcall", targets: ["ctrobj-upcall"]),
        .executable(name: "ctrobj-oci", targets: ["ctrobj-oci"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
        .target(name: "CShim", cSettings: cSettings),
        // libudev, for ctrobjd's uevent monitor.
        .systemLibrary(name: "CUdev", pkgConfig: "libudev", providers: [.apt(["libudev-dev"])]),
        .target(name: "ContainerABI", dependencies: ["CShim"], cSettings: cSettings),
        .target(name: "ContainerSystem", dependencies: ["CShim"]),
        .target(name: "ContainerWire", dependencies: ["ContainerSystem", "CShim"]),
        .target(name: "ContainerObject", dependencies: ["ContainerWire", "ContainerSystem", "CShim"]),
        .target(name: "ContainerObjectC", dependencies: ["ContainerObject", "ContainerABI", "CShim"]),
        .target(name: "Broker", dependencies: [
            "ContainerWire", "ContainerSystem", "CShim", "CUdev",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "ctrobjd", dependencies: [
            "Broker",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // The helper the kernel runs: only the wire and system floors, so it starts fast.
        // Statically linked Swift runtime: the kernel execs it for every upcall,
        // and dynamic loading of the runtime was most of its startup.
        .executableTarget(name: "ctrobj-upcall", dependencies: ["ContainerWire", "ContainerSystem"],
                          linkerSettings: [.unsafeFlags(["-static-executable"])]),
        // The per-upcall C helpers (ctrobj-upcall-pipe, ctrobj-upcall-key) are
        // not SwiftPM targets: scripts/build-c-helpers.sh builds them static
        // against musl, without the Swift runtime SwiftPM would link in.
        .executableTarget(name: "ctrobj", dependencies: [
            "ContainerObject", "ContainerWire", "ContainerSystem", "CShim",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "ctrobj-bench", dependencies: ["ContainerObject", "ContainerSystem", "ContainerWire", "CShim"],
                          path: "Benchmarks/Sources/ctrobj-bench"),
        // The hostile client the adversarial suite runs as an unprivileged user.
        .executableTarget(name: "ctrobj-attack", dependencies: ["ContainerObject", "ContainerWire", "ContainerSystem", "CShim"],
                          path: "Tests/ctrobj-attack"),
        // ctrobj-oci, the OCI runtime whose containers are container objects
        // (docs/oci.md): the child side of its init and exec in C (libseccomp
        // compiles profiles in the parent), the logic in OCIRuntime, a thin CLI.
        .target(name: "COCIChild", dependencies: ["CShim"], cSettings: cSettings,
                linkerSettings: [.linkedLibrary("seccomp")]),
        .target(name: "OCIRuntime", dependencies: ["ContainerObject", "ContainerSystem", "ContainerWire", "CShim", "COCIChild"],
                swiftSettings: [.swiftLanguageMode(.v6)]),
        // Swift's runtime linked in: conmon and the containerd shim exec it
        // for every command, and loading the shared runtime was a quarter
        // of a `run` of /bin/true.
        .executableTarget(name: "ctrobj-oci", dependencies: ["OCIRuntime"],
                          swiftSettings: [.swiftLanguageMode(.v6)],
                          linkerSettings: [.unsafeFlags(["-static-stdlib", "-Xlinker", "-l_FoundationCollections", "-Xlinker", "-l_FoundationCShims", "-Xlinker", "-lswiftSynchronization"])]),
        .testTarget(name: "ContainerSystemTests", dependencies: ["ContainerSystem", "ContainerWire"]),
        .testTarget(name: "ContainerObjectTests", dependencies: [
            "ContainerObject", "ContainerObjectC", "Broker", "ContainerSystem", "CShim",
        ]),
    ],
    swiftLanguageModes: [.v5]
)
