import ContainerSystem
import ContainerWire
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Stream.copy moves cores by splice where it can; the bytes, the limit and
/// the draining must be the same as a plain read/write loop's.
@Suite("core stream copy")
struct StreamTests {
    /// 300 000 bytes of a pattern written into `fd` from another thread, then closed.
    static func feed(_ fd: CInt) -> [UInt8] {
        let data = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 8) }
        let copy = data
        _ = startDetachedThread {
            var off = 0
            while off < copy.count {
                let n = copy.withUnsafeBytes { write(fd, $0.baseAddress! + off, min(4096, copy.count - off)) }
                if n <= 0 { break }
                off += n
            }
            close(fd)
        }
        return data
    }

    static func tempFile() throws -> (OwnedFD, String) {
        let path = "/tmp/ctrobj-stream-\(getpid())-\(Sys.monotonicNanos())"
        return (try Sys.open(path, O_RDWR | O_CREAT | O_EXCL, 0o600), path)
    }

    func check(source: (CInt, CInt), limit: UInt64, expect: Int) throws {
        let (out, path) = try Self.tempFile()
        defer { unlink(path) }
        let data = Self.feed(source.1)
        let n = try Stream.copy(from: source.0, to: out.raw, limit: limit)
        close(source.0)
        #expect(n == UInt64(expect))
        let got = try Sys.readBytes(path, limit: 1 << 20)
        #expect(got.count == expect && Array(data.prefix(expect)) == got)
    }

    @Test("from a pipe and from a socket: every byte, in order; a limit keeps the head and drains the rest")
    func copies() throws {
        for limit in [UInt64.max, 50_000] {
            var p: [CInt] = [-1, -1]
            #expect(pipe(&p) == 0)
            try check(source: (p[0], p[1]), limit: limit, expect: limit == .max ? 300_000 : 50_000)
            var s: [CInt] = [-1, -1]
            #expect(socketpair(AF_UNIX, CInt(SOCK_STREAM.rawValue), 0, &s) == 0)
            try check(source: (s[0], s[1]), limit: limit, expect: limit == .max ? 300_000 : 50_000)
        }
    }

    @Test("into nothing: the stream is read to its end")
    func drains() throws {
        var s: [CInt] = [-1, -1]
        #expect(socketpair(AF_UNIX, CInt(SOCK_STREAM.rawValue), 0, &s) == 0)
        _ = Self.feed(s[1])
        #expect(try Stream.copy(from: s[0], to: nil) == 0)
        var b: UInt8 = 0
        #expect(read(s[0], &b, 1) == 0, "at EOF")
        close(s[0])
    }
}
