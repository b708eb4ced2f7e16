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
        let needed: Set = ["BTF", "ring buffer", "uprobe", "uretprobe", "raw tracepoint"]
        return features.allSatisfy { !needed.contains($0.name) || $0.available }
    }

    /// The BPF helpers tlstap uses where the kernel has them
    /// (`KernelFeatures`), and the Linux version that added each.
    static let optionalHelpers: [(id: bpf_func_id, name: String, since: String, hiddenAs: String)] = [
        (BPF_FUNC_loop, "bpf_loop", "5.17", "bpf_loop"),
        (BPF_FUNC_get_attach_cookie, "attach cookies", "5.15", "attach_cookies"),
    ]

    /// Whether the kernel has BPF ring buffers (Linux 5.8+), which tlstap cannot do without.
    public static var hasRingBuffer: Bool { libbpf_probe_bpf_map_type(BPF_MAP_TYPE_RINGBUF, nil) == 1 }

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
        features += optionalHelpers.map { helper in
            KernelFeatures.hidden.contains(helper.hiddenAs)
                ? Feature(name: helper.name, available: false, detail: "hidden by \(KernelFeatures.hidingVariable)")
                : self.helper(helper.id, name: helper.name, since: helper.since)
        }
        features.append(socketTracepoints())
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

    /// The tracepoints that let tlstap hook socket calls instead of every syscall (`KernelFeatures`).
    private static func socketTracepoints() -> Feature {
        let name = "sock tracepoints"
        if KernelFeatures.hidden.contains("socket_tracepoints") {
            return Feature(name: name, available: false, detail: "hidden by \(KernelFeatures.hidingVariable)")
        }
        let missing = KernelFeatures.socketTracepointNames.filter { !KernelFeatures.hasTracepoints([$0]) }
        if !missing.isEmpty {
            return Feature(
                name: name, available: false,
                detail: "the kernel's BTF has no \(missing.joined(separator: ", ")) (Linux 6.3+)")
        }
        if !KernelFeatures.current.bpfLoop {
            return Feature(
                name: name, available: false, detail: "in the kernel's BTF, but tlstap uses them with bpf_loop only")
        }
        return Feature(
            name: name, available: true,
            detail: KernelFeatures.socketTracepointNames.joined(separator: ", ") + " are in the kernel's BTF")
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
