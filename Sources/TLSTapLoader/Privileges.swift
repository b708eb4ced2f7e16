import CLibcap
import Glibc

/// Whether this process may load BPF programs and attach probes.
///
/// Reads the effective capability set from /proc/self/status, so the answer
/// is the same whether tlstap runs as root or with file capabilities.
public enum Privileges {
    static let capSysAdmin = Int(CAP_SYS_ADMIN)
    static let capPerfmon = Int(CAP_PERFMON)
    static let capBPF = Int(CAP_BPF)

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

    /// What tlstap still needs once its programs are loaded and attached:
    /// CAP_BPF for its maps, CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH to read
    /// traced processes' /proc entries and files.
    static let keptAfterAttach: [(value: cap_value_t, name: String)] = [
        (CAP_BPF, "CAP_BPF"), (CAP_SYS_PTRACE, "CAP_SYS_PTRACE"), (CAP_DAC_READ_SEARCH, "CAP_DAC_READ_SEARCH"),
    ]

    /// Also kept when probes may still be attached later (programs started
    /// after tlstap): on Linux 6.18, perf_event_open refuses a uprobe
    /// without CAP_SYS_ADMIN (EACCES) even with CAP_PERFMON, which is
    /// enough for other perf events; CAP_KILL continues a process of
    /// another user that BPF stopped until its probes were in place.
    static let keptForLaterAttaches: [(value: cap_value_t, name: String)] = [
        (CAP_PERFMON, "CAP_PERFMON"), (CAP_SYS_ADMIN, "CAP_SYS_ADMIN"), (CAP_KILL, "CAP_KILL"),
    ]

    /// Gives up, for good, every capability tlstap no longer needs, so
    /// that what reads untrusted bytes from here on cannot use root's other
    /// powers. The bounding set stays, so a command tlstap starts
    /// afterwards runs with the privileges it would have untraced.
    ///
    /// Capabilities belong to threads: call this while the calling thread
    /// is the process's only one, so that every later thread inherits the
    /// smaller set.
    /// - Parameter attachingLater: whether probes will be attached after
    ///   this (to programs started later).
    /// - Returns: the capabilities kept.
    public static func dropAfterAttach(attachingLater: Bool) throws(LoaderError) -> [String] {
        let threads = (try? ProcFS.directoryEntries("/proc/self/task").count) ?? 0
        guard threads == 1 else {
            throw LoaderError(
                "cannot drop capabilities: \(threads) threads already run, and capabilities are per thread")
        }
        guard let current = cap_get_proc() else {
            throw .system("cannot read this process's capabilities", errno: errno)
        }
        defer { cap_free(UnsafeMutableRawPointer(current)) }
        var kept = (keptAfterAttach + (attachingLater ? keptForLaterAttaches : [])).filter { capability in
            var value = CAP_CLEAR
            return cap_get_flag(current, capability.value, CAP_PERMITTED, &value) == 0 && value == CAP_SET
        }
        guard let reduced = cap_init() else { throw .system("cannot drop capabilities", errno: errno) }
        defer { cap_free(UnsafeMutableRawPointer(reduced)) }
        var values = kept.map(\.value)
        for flag in [CAP_PERMITTED, CAP_EFFECTIVE] {
            guard cap_set_flag(reduced, flag, Int32(values.count), &values, CAP_SET) == 0 else {
                throw .system("cannot drop capabilities", errno: errno)
            }
        }
        guard cap_set_proc(reduced) == 0 else { throw .system("cannot drop capabilities", errno: errno) }
        kept.sort { $0.value < $1.value }
        return kept.map(\.name)
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
