/// Reading the host's request-key.conf and request-key.d/*.conf for `ctrobj
/// install`, which mirrors every create line with our helper (UpcallInstall).
/// Pure (text in, selectors out) and without imports, so that the fuzz target
/// Fuzz/RequestKeyConf.swift compiles it on its own.
enum RequestKeyConf {
    /// Appends the selector ("create TYPE DESCRIPTION CALLOUT-INFO", the first
    /// four columns) of each create line of `text` not in `selectors` yet, in
    /// the order they come.
    static func addCreateSelectors(of text: String, to selectors: inout [String]) {
        for line in text.split(separator: "\n") {
            let cols = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard cols.count >= 4, cols[0] == "create" else { continue }
            let sel = cols[0...3].joined(separator: " ")
            if !selectors.contains(sel) { selectors.append(sel) }
        }
    }
}
