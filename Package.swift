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
        // The messages and connections between the library, the upcall
        // helpers and ctrobjd (one definition, both sides), and nothing else.
        .target(name: "ContainerWire", dependencies: ["ContainerSystem", "CShim"]),
        .target(name: "ContainerObject", dependencies: ["ContainerWire", "ContainerSystem", "CShim"]),
        .target(name: "ContainerObjectC", dependencies: ["ContainerObject", "ContainerABI", "ContainerWire", "ContainerSystem", "CShim"]),
        .target(name: "Broker", dependencies: [
            "ContainerWire", "ContainerSystem", "CShim", "CUdev",
            .product(name: "Logging", package: "swift-log"),
        ]),
        // What the kernel execs per upcall (the pipe, key and modprobe
        // helpers' Swift side, the core server): imported only by ctrobj-upcall.
        .target(name: "UpcallHelper", dependencies: ["ContainerWire", "ContainerSystem", "CShim"]),
        // `ctrobj install`: registering the broker with the kernel. Not in the
        // public library: only the CLI (and the tests, the benchmarks) use it.
        .target(name: "UpcallInstall", dependencies: ["ContainerWire", "ContainerSystem"]),
        .executableTarget(name: "ctrobjd", dependencies: [
            "Broker", "ContainerSystem",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // The helper the kernel runs: the upcall helper on the wire and system
        // floors only, so it starts fast. Statically linked Swift runtime: the
        // kernel execs it for every upcall, and dynamic loading of the runtime
        // was most of its startup.
        .executableTarget(name: "ctrobj-upcall", dependencies: ["UpcallHelper", "ContainerWire", "ContainerSystem", "CShim"],
                          linkerSettings: [.unsafeFlags(["-static-executable"])]),
        // The per-upcall C helpers (ctrobj-upcall-pipe, ctrobj-upcall-key) are
        // not SwiftPM targets: scripts/build-c-helpers.sh builds them static
        // against musl, without the Swift runtime SwiftPM would link in.
        .executableTarget(name: "ctrobj", dependencies: [
            "ContainerObject", "UpcallInstall", "ContainerWire", "ContainerSystem", "CShim",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "ctrobj-bench", dependencies: ["ContainerObject", "UpcallInstall", "ContainerSystem", "ContainerWire", "CShim"],
                          path: "Benchmarks/Sources/ctrobj-bench"),
        // The hostile client the adversarial suite runs as an unprivileged user.
        .executableTarget(name: "ctrobj-attack", dependencies: ["ContainerObject", "ContainerWire", "ContainerSystem", "CShim"],
                          path: "Tests/ctrobj-attack"),
        // ctrobj-oci, the OCI runtime whose containers are container objects
        // (docs/oci.md): the child side of its init and exec in C (libseccomp
        // compiles profiles in the parent), the logic in OCIRuntime, a thin CLI.
        .target(name: "COCIChild", dependencies: ["CShim"], cSettings: cSettings,
                linkerSettings: [.linkedLibrary("seccomp")]),
        .target(name: "OCIRuntime", dependencies: ["ContainerObject", "ContainerSystem", "ContainerWire", "CShim", "COCIChild"]),
        // Swift's runtime linked in: conmon and the containerd shim exec it
        // for every command, and loading the shared runtime was a quarter
        // of a `run` of /bin/true.
        .executableTarget(name: "ctrobj-oci", dependencies: ["OCIRuntime"],
                          linkerSettings: [.unsafeFlags(["-static-stdlib", "-Xlinker", "-l_FoundationCollections", "-Xlinker", "-l_FoundationCShims", "-Xlinker", "-lswiftSynchronization"])]),
        .testTarget(name: "ContainerSystemTests", dependencies: ["ContainerSystem", "ContainerWire", "CShim"]),
        // The executables and libcontainerobject.so the tests run are found
        // beside the test bundle (`swift build --build-tests` builds them).
        .testTarget(name: "ContainerObjectTests", dependencies: [
            "ContainerObject", "UpcallInstall", "ContainerWire", "ContainerSystem", "CShim",
        ]),
    ],
    swiftLanguageModes: [.v6]
)
