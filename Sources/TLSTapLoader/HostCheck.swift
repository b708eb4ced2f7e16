import CLibbpf
import CTLSTapBPF
import Glibc

/// What this kernel and host allow, probed rather than assumed, for
/// `tlstap check` and for clear errors at start.
public struct HostCheck: Sendable {
    /// One probed capability.
    public struct Feature: Sendable {
        public var name: String
        public var available: Bool
        /// How it was decided, or why it is missing.
        public var detail: String
    }

    public var features: [Feature]
    /// OpenSSL libraries the dynamic loader's cache names.
    public var libraries: [LibraryTarget]

    /// Whether everything tlstap needs to trace OpenSSL is there.
    public var canTrace: Bool {
        let needed = Set(["BTF", "ring buffer", "uprobe", "uretprobe", "raw tracepoint"] + Self.helpers.map(\.name))
        return features.allSatisfy { !needed.contains($0.name) || $0.available }
    }

    /// The BPF helpers tlstap's programs call that not every kernel with
    /// BTF has, and the Linux version that added each.
    static let helpers: [(id: bpf_func_id, name: String, since: String)] = [
        (BPF_FUNC_loop, "bpf_loop", "5.17"),
        (BPF_FUNC_get_attach_cookie, "attach cookies", "5.15"),
        (BPF_FUNC_task_pt_regs, "task_pt_regs", "5.15"),
        (BPF_FUNC_get_current_task_btf, "current_task_btf", "5.11"),
    ]

    /// The helpers of `helpers` this kernel does not know, as
    /// "bpf_loop (Linux 5.17+)"; empty when all are there or could not be
    /// probed (the load then says what is wrong).
    public static func missingHelpers() -> [String] {
        helpers.filter { libbpf_probe_bpf_helper(BPF_PROG_TYPE_KPROBE, $0.id, nil) == 0 }
            .map { "\($0.name) (Linux \($0.since)+)" }
    }

    /// Probes the host. Loads (and unloads) tiny test programs, so it needs
    /// the same privileges as tracing for the BPF answers to be meaningful.
    public static func run() -> HostCheck {
        var features: [Feature] = []
        let btf = ProcFS.exists("/sys/kernel/btf/vmlinux")
        features.append(
            Feature(
                name: "BTF", available: btf,
                detail: "/sys/kernel/btf/vmlinux"
                    + (btf ? "" : " is missing: the kernel was built without CONFIG_DEBUG_INFO_BTF")))
        features.append(mapType(BPF_MAP_TYPE_RINGBUF, name: "ring buffer"))
        features += helpers.map { helper($0.id, name: $0.name, since: $0.since) }
        features.append(pmu("uprobe", name: "uprobe"))
        features.append(pmuFormat("uprobe", field: "retprobe", name: "uretprobe"))
        features.append(pmu("kprobe", name: "kprobe"))
        features.append(progType(BPF_PROG_TYPE_RAW_TRACEPOINT, name: "raw tracepoint"))
        let fentry = CTLSTapBPF_probe_fentry()
        features.append(
            Feature(
                name: "fentry", available: fentry == 0,
                detail: fentry == 0
                    ? "a test program attached to do_nanosleep loaded"
                    : "the kernel refused a test program: \(String(cString: strerror(-fentry)))"))
        return HostCheck(features: features, libraries: LibraryDiscovery.distinct(LibraryDiscovery.systemLibraries()))
    }

    private static func mapType(_ type: bpf_map_type, name: String) -> Feature {
        let result = libbpf_probe_bpf_map_type(type, nil)
        return Feature(name: name, available: result == 1, detail: describe(result, "map type"))
    }

    private static func progType(_ type: bpf_prog_type, name: String) -> Feature {
        let result = libbpf_probe_bpf_prog_type(type, nil)
        return Feature(name: name, available: result == 1, detail: describe(result, "program type"))
    }

    private static func helper(_ helper: bpf_func_id, name: String, since: String) -> Feature {
        let result = libbpf_probe_bpf_helper(BPF_PROG_TYPE_KPROBE, helper, nil)
        return Feature(name: name, available: result == 1, detail: describe(result, "helper (Linux \(since)+)"))
    }

    private static func describe(_ result: Int32, _ what: String) -> String {
        switch result {
        case 1: "the kernel accepts this \(what)"
        case 0: "the kernel does not know this \(what)"
        default: "could not probe: \(String(cString: strerror(-result)))"
        }
    }

    private static func pmu(_ pmu: String, name: String) -> Feature {
        let path = "/sys/bus/event_source/devices/\(pmu)/type"
        let present = ProcFS.exists(path)
        return Feature(
            name: name, available: present,
            detail: present ? "perf PMU \(pmu) present" : "\(path) is missing: not built into this kernel")
    }

    private static func pmuFormat(_ pmu: String, field: String, name: String) -> Feature {
        let path = "/sys/bus/event_source/devices/\(pmu)/format/\(field)"
        let present = ProcFS.exists(path)
        return Feature(
            name: name, available: present,
            detail: present ? "perf PMU \(pmu) has \(field)" : "\(path) is missing")
    }
}
