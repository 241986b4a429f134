import ContainerSystem
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The C programs of Tests/conformance, written against container.h, built
/// against libcontainerobject.so and run against a ctrobjd of their own.
/// kernel-patch/test.sh runs the same sources against the patched kernel.
let conformancePrograms: [String] = Sys.listDirectory("\(repoRoot)/Tests/conformance")
    .filter { $0.hasSuffix(".c") }.map { String($0.dropLast(2)) }.sorted()

@Suite("C conformance (container.h)", .enabled(if: isRoot, rootOnly))
struct ConformanceTests {
    @Test("conformance program passes against the emulation", arguments: conformancePrograms)
    func program(_ name: String) throws {
        let out = "/tmp/ctrobj-conf-\(name)-\(uniqueSuffix())"
        defer { unlink(out) }
        let (cc, ccOut) = try runProgram([
            "/usr/bin/cc", "-std=gnu11", "-Wall", "-Werror", "-D_GNU_SOURCE",
            "-I", "\(repoRoot)/Sources/ContainerABI/include", "-I", "\(repoRoot)/Tests/conformance",
            "-o", out, "\(repoRoot)/Tests/conformance/\(name).c",
            "-L", buildDir, "-lcontainerobject", "-Wl,-rpath,\(buildDir)",
        ])
        try #require(cc == 0, "\(name).c does not compile against container.h:\n\(ccOut)")
        let d = try TestDaemon()
        defer { d.stop() }
        let env = ["CTROBJ_STATE_DIR=\(d.stateDir)", "CONFORMANCE_IMPL=emulation", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"]
        let (code, text) = try runProgram([out], env: env, timeoutSeconds: 60)
        if code == 77 {
            print("conformance \(name): \(text.trimmingSuffixNewline())")
            return
        }
        #expect(code == 0, "\(text)")
        #expect(text.hasPrefix("PASS \(name)"), "\(text)")
    }
}
