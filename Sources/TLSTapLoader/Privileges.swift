import Glibc

/// Whether this process may load BPF programs and attach probes.
///
/// Reads the effective capability set from /proc/self/status, so the answer
/// is the same whether tlstap runs as root or with file capabilities.
public enum Privileges {
    static let capSysAdmin = 21
    static let capPerfmon = 38
    static let capBPF = 39

    /// The missing capability names, empty when tracing is allowed.
    public static func missingForTracing(statusText: String? = nil) -> [String] {
        guard let effective = effectiveCapabilities(statusText: statusText) else { return ["CAP_BPF", "CAP_PERFMON"] }
        func has(_ bit: Int) -> Bool { effective & (1 << UInt64(bit)) != 0 }
        if has(capSysAdmin) { return [] }
        return [(capBPF, "CAP_BPF"), (capPerfmon, "CAP_PERFMON")].filter { !has($0.0) }.map(\.1)
    }

    /// Throws the sentence to show when tracing is not allowed.
    public static func requireTracing() throws(LoaderError) {
        let missing = missingForTracing()
        guard missing.isEmpty else {
            throw LoaderError(
                "tlstap needs root (or the capabilities CAP_BPF and CAP_PERFMON) to load BPF programs; "
                    + "this process lacks \(missing.joined(separator: " and "))")
        }
    }

    static func effectiveCapabilities(statusText: String?) -> UInt64? {
        guard let text = statusText ?? (try? ProcFS.readText("/proc/self/status")) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("CapEff:") {
            return UInt64(line.dropFirst("CapEff:".count).trimmingCharacters(in: " \t"), radix: 16)
        }
        return nil
    }
}

extension Substring {
    func trimmingCharacters(in characters: String) -> Substring {
        var result = self
        while let first = result.first, characters.contains(first) { result = result.dropFirst() }
        while let last = result.last, characters.contains(last) { result = result.dropLast() }
        return result
    }
}
