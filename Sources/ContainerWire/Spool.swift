import CShim
import ContainerSystem
#if canImport(Glibc)
import Glibc
#endif

/// Cores that arrived while ctrobjd was down:
///   <spool>/<name>.core   the core, written first
///   <spool>/<name>.meta   the CoreFacts fields, renamed into place last,
///                         so a .meta always has its whole .core beside it
public enum Spool {
    public static func store(dir: String, facts: CoreFacts, from fd: CInt) throws -> String {
        try Sys.mkdirs(dir, 0o700)
        let name = "core-\(facts.time)-\(facts.pid)-\(Sys.monotonicNanos() % 1_000_000_007)"
        let core = try Sys.open("\(dir)/\(name).core", O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600)
        _ = try Stream.copy(from: fd, to: core.raw)
        _ = fsync(core.raw)
        try Sys.writeFileAtomically("\(dir)/\(name).meta", String(decoding: Message(Op.Upcall.core, facts.fields).encoded(), as: UTF8.self),
                                    durable: true)
        return name
    }

    /// Spooled cores, oldest first: (name, facts).
    public static func pending(dir: String) -> [(String, CoreFacts)] {
        Sys.listDirectory(dir).filter { $0.hasSuffix(".meta") }.sorted().compactMap { entry in
            let name = String(entry.dropLast(5))
            guard let text = try? Sys.readFile("\(dir)/\(entry)"), let m = try? Message.decode(Array(text.utf8)),
                  let facts = try? CoreFacts(fields: m), Sys.exists("\(dir)/\(name).core") else { return nil }
            return (name, facts)
        }
    }

    public static func remove(dir: String, name: String) {
        unlink("\(dir)/\(name).meta")
        unlink("\(dir)/\(name).core")
    }
}
