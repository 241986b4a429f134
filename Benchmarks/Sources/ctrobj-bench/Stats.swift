#if canImport(Glibc)
import Glibc
#endif

/// Samples of one variant, in nanoseconds.
struct Samples {
    var values: [UInt64] = []
    var failures = 0

    mutating func add(_ ns: UInt64) { values.append(ns) }

    func percentile(_ p: Double) -> Double {
        guard !values.isEmpty else { return .nan }
        let s = values.sorted()
        // Nearest rank on the sorted samples; p50 of an even count averages the middle two.
        if p == 50 && s.count % 2 == 0 { return Double(s[s.count / 2 - 1] + s[s.count / 2]) / 2 }
        let rank = Int((p / 100 * Double(s.count)).rounded(.up)) - 1
        return Double(s[max(0, min(s.count - 1, rank))])
    }

    var median: Double { percentile(50) }
    var p90: Double { percentile(90) }
}

func ms(_ ns: Double) -> String { ns.isNaN ? "n/a" : fixed(ns / 1e6, 3) }
func us(_ ns: Double) -> String { ns.isNaN ? "n/a" : fixed(ns / 1e3, 0) }

func fixed(_ v: Double, _ digits: Int) -> String {
    var buf = [CChar](repeating: 0, count: 64)
    _ = withVaList([v]) { vsnprintf(&buf, buf.count, "%.\(digits)f", $0) }
    return String(cString: buf)
}

func now() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}
