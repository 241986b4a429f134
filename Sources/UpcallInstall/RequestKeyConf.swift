/// Reading the host's request-key.conf and request-key.d/*.conf for `ctrobj
/// install`, which mirrors every create line with our helper (UpcallInstall).
/// Pure (text in, selectors out) and without imports, so that the fuzz target
/// Fuzz/RequestKeyConf.swift compiles it on its own.
enum RequestKeyConf {
    /// Appends the selector ("create TYPE DESCRIPTION CALLOUT-INFO", the first
    /// four columns) of each create line of `text` not in `selectors` yet, in
    /// the order they come.
    ///
    /// Read as keyutils' request-key reads it (fgets, then isspace(3) in the C
    /// locale), so that the line written back holds the same four columns: a
    /// line ends at "\n" (a "\r" before it is white space) or at a NUL byte;
    /// a line starting with "#" or white space is skipped; columns are
    /// separated by any of " \t\n\v\f\r".
    static func addCreateSelectors(of text: String, to selectors: inout [String]) {
        func isSpace(_ b: UInt8) -> Bool { b == 0x20 || (0x09...0x0D).contains(b) }
        var seen = Set(selectors)
        for raw in text.utf8.split(separator: 0x0A) {
            let line = raw.prefix(while: { $0 != 0 })
            guard let first = line.first, first != UInt8(ascii: "#"), !isSpace(first) else { continue }
            let cols = line.split(whereSeparator: isSpace)
            guard cols.count >= 4, cols[0].elementsEqual("create".utf8) else { continue }
            let sel = cols[0...3].map { String(decoding: $0, as: UTF8.self) }.joined(separator: " ")
            if seen.insert(sel).inserted { selectors.append(sel) }
        }
    }
}
