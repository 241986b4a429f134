#if canImport(Glibc)
import Glibc
#endif

/// Network interface names, as the caller's (or a socket's) network namespace sees them.
public enum NetInterfaces {
    /// The interfaces of the caller's network namespace.
    public static func names() -> [String] {
        guard let list = if_nameindex() else { return [] }
        defer { if_freenameindex(list) }
        var out: [String] = []
        var p = list
        while p.pointee.if_index != 0 {
            out.append(String(cString: p.pointee.if_name))
            p += 1
        }
        return out
    }

    /// Whether `name` exists in the network namespace of socket `sock` (SIOCGIFINDEX).
    public static func exists(_ name: String, via sock: Int32) -> Bool {
        var req = ifreq()
        withUnsafeMutableBytes(of: &req.ifr_ifrn.ifrn_name) { raw in
            for (i, b) in name.utf8.prefix(15).enumerated() { raw[i] = b }
        }
        return ioctl(sock, UInt(0x8933), &req) == 0
    }
}
