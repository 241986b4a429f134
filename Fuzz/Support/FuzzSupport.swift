// Shared by every Swift fuzz target (compiled into each; not a target itself).
// A failed check prints what failed and aborts, which libFuzzer reports as a
// crash and saves the input under the artifact prefix.
#if canImport(Glibc)
import Glibc
#endif

func fuzzFail(_ message: String) -> Never {
    fputs("fuzz check failed: \(message)\n", stderr)
    abort()
}

@inline(__always)
func fuzzCheck(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fuzzFail(message()) }
}
