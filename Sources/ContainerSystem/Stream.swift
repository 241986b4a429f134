import CShim

public enum Stream {
    /// Copy until EOF (or `limit` bytes, the rest drained); returns bytes written.
    /// By splice where the kernel can (a pipe straight into the file; a socket,
    /// core_pattern socket mode, through a pipe of our own), so a core's pages
    /// are moved by the kernel, not copied through us; else read/write.
    @discardableResult
    public static func copy(from src: CInt, to dst: CInt?, limit: UInt64 = .max) throws -> UInt64 {
        var written: UInt64 = 0
        if ccs_copy_stream(src, dst ?? -1, limit, &written) < 0 { throw ContainerError.sys("copy core") }
        return written
    }
}
