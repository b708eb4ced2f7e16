import CLibbpf
import CTLSTapABI
import CTLSTapBPF
import Glibc
import Logging
import TLSTapCore

/// The outcome of attaching one probe, reported with the file and symbol it was for.
public struct AttachResult: Sendable {
    public var path: String
    public var symbol: String
    public var returnProbe: Bool
    /// nil on success, else what went wrong.
    public var failure: String?
}

/// Owns the loaded BPF programs: the skeleton's lifecycle in its four steps
/// (open, set rodata, load, attach), the probe links, and the ring buffer.
/// `close()` (or deinit) detaches and unloads everything.
public final class Tracer {
    private var skeleton: OpaquePointer?
    private var links: [OpaquePointer] = []
    /// Set by `detach`: from then on `attach` attaches nothing, so the last drain sees every stop.
    private var detached = false
    private var ringBuffer: OpaquePointer?
    private let ringBufferBytes: UInt32
    /// Set once the ring is read in place.
    private var ringDump: UnsafeMutablePointer<CTLSTapBPF_RingDump>?
    private let records: RecordCallbackBox
    private let logger: Logger

    /// Opens, configures and loads the programs; attaches nothing yet.
    /// - Parameters:
    ///   - filters: the kernel-side scope.
    ///   - ringBufferBytes: a power of two, at least one page.
    ///   - onRecord: called on the polling thread with each raw record; the
    ///     bytes are valid only during the call.
    public init(
        filters: TraceFilters, ringBufferBytes: UInt32, logger: Logger,
        onRecord: @escaping (UnsafeRawBufferPointer) -> Void
    ) throws(LoaderError) {
        self.logger = logger
        self.records = RecordCallbackBox(onRecord)
        self.ringBufferBytes = ringBufferBytes
        LibbpfLog.route(to: logger)
        guard ProcFS.exists("/sys/kernel/btf/vmlinux") else {
            throw LoaderError(
                "this kernel exposes no BTF (/sys/kernel/btf/vmlinux); tlstap's CO-RE programs need a kernel "
                    + "built with CONFIG_DEBUG_INFO_BTF")
        }

        guard HostCheck.hasRingBuffer else {
            throw LoaderError("this kernel has no BPF ring buffer (Linux 5.8+); `tlstap check` lists what it has")
        }
        let features = KernelFeatures.current
        for cost in features.costs { logger.notice("this kernel has \(cost)") }

        guard let skeleton = CTLSTapBPF_open() else { throw .system("cannot open the BPF object", errno: errno) }
        self.skeleton = skeleton

        var settings = CTLSTapBPF_Filters(
            own_pid: UInt32(getpid()), filter_pids: !filters.pids.isEmpty, filter_comms: !filters.comms.isEmpty,
            filter_cgroup: filters.cgroupID != nil, filter_ports: !filters.ports.isEmpty,
            filter_hosts: !filters.hosts.isEmpty, capture_plaintext: filters.plaintext,
            follow_children: filters.followChildren, stop_for_attach: filters.followsExecs,
            target_cgroup_id: filters.cgroupID ?? 0)
        var loaderFeatures = features.forLoader
        let configured = CTLSTapBPF_configure(skeleton, &settings, &loaderFeatures, ringBufferBytes)
        guard configured == 0 else { throw .system("cannot size the ring buffer", errno: -configured) }

        let loaded = CTLSTapBPF_load(skeleton)
        guard loaded == 0 else {
            let why = LibbpfLog.takeRejection().map { " (\($0))" } ?? ""
            throw .system(
                "the kernel refused tlstap's BPF programs\(why); run with --verbose for the whole verifier log",
                errno: -loaded)
        }
        try fillFilterMaps(filters)
        var failedProbe: UnsafePointer<CChar>?
        let socketProbes = CTLSTapBPF_attach_socket_probes(skeleton, &failedProbe)
        guard socketProbes == 0 else {
            let name = failedProbe.map { String(cString: $0) } ?? "a raw tracepoint"
            throw .system("cannot attach \(name)", errno: -socketProbes)
        }

        let eventsFD = CTLSTapBPF_map_fd(skeleton, CTLSTapBPF_MAP_EVENTS)
        let context = Unmanaged.passUnretained(records).toOpaque()
        guard let ringBuffer = ring_buffer__new(eventsFD, deliverRecord, context, nil) else {
            throw .system("cannot set up the ring buffer", errno: errno)
        }
        self.ringBuffer = ringBuffer
    }

    deinit {
        close()
    }

    /// Attaches the library's entry and return probes in one file.
    /// - Parameters:
    ///   - target: the file.
    ///   - pid: only this process, or -1 for every process that maps the file.
    /// - Returns: one result per probe tried.
    public func attach(_ target: LibraryTarget, pid: Int32 = -1) -> [AttachResult] {
        guard let skeleton, !detached else { return [] }
        // The syscall programs look for Go's sockets only once Go is probed somewhere.
        if target.library == .go { CTLSTapBPF_set_go_probes_attached(skeleton) }
        var results: [AttachResult] = []
        for point in ProbeLayout.attachPoints(for: target) {
            let path = point.path ?? target.path
            for probe in Self.probes(at: point) {
                // By file offset where it is known (an uprobe_multi link takes nothing else), else libbpf finds it.
                let link = CTLSTapBPF_attach_uprobe(
                    CTLSTapBPF_program(skeleton, probe.program), probe.uretprobe, pid, path,
                    probe.offset == nil ? point.symbol : nil, probe.offset ?? 0, point.cookie)
                if let link {
                    links.append(link)
                    results.append(AttachResult(path: path, symbol: probe.label, returnProbe: probe.isReturn))
                    continue
                }
                let reason = String(cString: strerror(errno))
                results.append(
                    AttachResult(path: path, symbol: probe.label, returnProbe: probe.isReturn, failure: reason))
                if !point.optional { logger.warning("cannot attach to \(probe.label) in \(path): \(reason)") }
                if !probe.isReturn { break }  // no return probe without its entry probe
            }
        }
        return results
    }

    /// The uprobes of one attach point: its entry, then its exit as a
    /// uretprobe or at each RET instruction.
    private static func probes(at point: ProbeLayout.AttachPoint)
        -> [(program: CTLSTapBPF_Program, offset: UInt64?, uretprobe: Bool, isReturn: Bool, label: String)]
    {
        let entry = point.offset ?? point.symbolOffset
        let enter = (program: point.enter, offset: entry, uretprobe: false, isReturn: false, label: point.label)
        guard let exit = point.exit else { return [enter] }
        guard let returns = point.returnInstructions else {
            return [enter, (exit, entry, true, true, point.label)]
        }
        return [enter] + returns.map { (exit, $0, false, true, point.label + " RET at 0x" + String($0, radix: 16)) }
    }

    /// Number of probes attached so far.
    public var attachedProbes: Int { links.count }

    /// Waits up to `timeoutMilliseconds` for a wakeup, then delivers every
    /// record that is ready to `onRecord`. BPF adds most records without a
    /// wakeup, so the records are consumed whether or not one came.
    /// - Returns: how many records were delivered.
    @discardableResult
    public func poll(timeoutMilliseconds: Int32) throws(LoaderError) -> Int {
        guard let ringBuffer else { return 0 }
        let woken = ring_buffer__poll(ringBuffer, timeoutMilliseconds)
        if woken < 0 && woken != -EINTR { throw .system("cannot read the ring buffer", errno: -woken) }
        return max(0, Int(woken)) + (try drain())
    }

    /// Delivers every record already in the ring buffer, without waiting.
    @discardableResult
    public func drain() throws(LoaderError) -> Int {
        guard let ringBuffer else { return 0 }
        let count = ring_buffer__consume(ringBuffer)
        if count < 0 && count != -EINTR { throw .system("cannot read the ring buffer", errno: -count) }
        return max(0, Int(count))
    }

    /// Reads the ring buffer in place from now on (`tlstap record`): `poll`
    /// and `drain` no longer deliver records; `scanRing` does, and the
    /// caller writes the ring's bytes out itself (`ringBytes(at:)`) and
    /// gives them back (`releaseRing(through:)`).
    public func startRingDump() throws(LoaderError) {
        guard let skeleton, ringDump == nil else { return }
        // libbpf's reader is not needed any more: both mappings at once would count in RSS twice over.
        if let ringBuffer { ring_buffer__free(ringBuffer) }
        ringBuffer = nil
        let dump = UnsafeMutablePointer<CTLSTapBPF_RingDump>.allocate(capacity: 1)
        dump.initialize(to: CTLSTapBPF_RingDump())
        let mapped = CTLSTapBPF_ring_dump_open(
            dump, CTLSTapBPF_map_fd(skeleton, CTLSTapBPF_MAP_EVENTS), ringBufferBytes)
        guard mapped == 0 else {
            dump.deallocate()
            throw .system("cannot map the ring buffer", errno: -mapped)
        }

        ringDump = dump
    }

    /// Waits up to `timeoutMilliseconds` for BPF to wake the reader (it does
    /// when the bytes waiting cross a multiple of an eighth of the ring, at
    /// most 1 MiB), consuming nothing.
    public func waitForRecords(timeoutMilliseconds: Int32) {
        guard let ringDump else { return }
        CTLSTapBPF_ring_dump_wait(ringDump, timeoutMilliseconds)
    }

    /// Hands `onRecord` every record committed since the last scan.
    /// - Returns: the stream position up to which every record is committed.
    public func scanRing() -> UInt64 {
        guard let ringDump else { return 0 }
        return CTLSTapBPF_ring_dump_scan(ringDump, visitRecord, Unmanaged.passUnretained(records).toOpaque())
    }

    /// The ring's bytes from stream position `position` on: the ring's
    /// size of them lie in a row.
    public func ringBytes(at position: UInt64) -> UnsafeRawPointer? {
        ringDump.map { CTLSTapBPF_ring_dump_bytes($0, position) }
    }

    /// Gives the ring's bytes before `position` back to the programs.
    public func releaseRing(through position: UInt64) {
        guard let ringDump else { return }
        CTLSTapBPF_ring_dump_release(ringDump, position)
    }

    /// Records and bytes the kernel side could not put into the ring buffer
    /// since load, summed over CPUs.
    public func lostCounts() -> LostCounts {
        guard let skeleton else { return .zero }
        let cpus = Int(libbpf_num_possible_cpus())
        guard cpus > 0 else { return .zero }
        var perCPU = [tlstap_lost_counts](repeating: tlstap_lost_counts(), count: cpus)
        var key: UInt32 = 0
        let found = bpf_map_lookup_elem(CTLSTapBPF_map_fd(skeleton, CTLSTapBPF_MAP_LOST_COUNTS), &key, &perCPU)
        guard found == 0 else { return .zero }
        return perCPU.reduce(.zero) { LostCounts(records: $0.records + $1.records, bytes: $0.bytes + $1.bytes) }
    }

    /// Deletes the kernel-side state of an exited process that BPF cannot
    /// delete itself (sockets it never closed, its TLS objects' fds).
    public func forgetProcess(_ pid: UInt32, fds: [Int32], tlsObjects: [UInt64]) {
        guard let skeleton else { return }
        CTLSTapBPF_forget_process(skeleton, pid, fds, fds.count, tlsObjects, tlsObjects.count)
    }

    /// Detaches every probe and tracepoint; the ring buffer and the maps
    /// stay, so what the programs sent can still be read (`drain`). When it
    /// returns no program runs any more, so none stops another process for
    /// its probes: a drain after it continues every process stopped so far.
    /// Nothing is attached afterwards.
    public func detach() {
        guard let skeleton, !detached else { return }
        detached = true
        let probes: [OpaquePointer?] = links
        CTLSTapBPF_detach(skeleton, probes, probes.count)
        links.removeAll()
    }

    /// Detaches every probe and unloads the programs. Safe to call twice.
    public func close() {
        if let ringBuffer { ring_buffer__free(ringBuffer) }
        ringBuffer = nil
        if let ringDump {
            CTLSTapBPF_ring_dump_close(ringDump)
            ringDump.deallocate()
        }
        ringDump = nil
        let detached: [OpaquePointer?] = links
        CTLSTapBPF_destroy(skeleton, detached, detached.count)
        links.removeAll()
        skeleton = nil
    }

    /// Adds processes to the PID filter (-p).
    public func addTracedPIDs(_ pids: [Int32]) throws(LoaderError) {
        guard let skeleton, !pids.isEmpty else { return }
        let result = CTLSTapBPF_trace_pids(skeleton, pids, pids.count)
        guard result == 0 else {
            throw .system(
                "cannot add PIDs \(pids.map(String.init).joined(separator: ", ")) to the filter", errno: -result)
        }
    }

    private func fillFilterMaps(_ filters: TraceFilters) throws(LoaderError) {
        guard let skeleton else { return }
        var present: UInt8 = 1
        try addTracedPIDs(filters.pids)
        let commMap = CTLSTapBPF_map_fd(skeleton, CTLSTapBPF_MAP_TRACED_COMMS)
        for comm in filters.comms {
            var key = tlstap_comm_key()
            withUnsafeMutableBytes(of: &key.comm) { buffer in
                for (index, byte) in comm.utf8.prefix(Int(TLSTAP_COMM_LEN) - 1).enumerated() { buffer[index] = byte }
            }
            guard bpf_map_update_elem(commMap, &key, &present, UInt64(BPF_ANY)) == 0 else {
                throw .system("cannot add command name \(comm) to the filter", errno: errno)
            }
        }
        let portMap = CTLSTapBPF_map_fd(skeleton, CTLSTapBPF_MAP_TRACED_PORTS)
        for port in filters.ports {
            var key = port
            guard bpf_map_update_elem(portMap, &key, &present, UInt64(BPF_ANY)) == 0 else {
                throw .system("cannot add port \(port) to the filter", errno: errno)
            }
        }
        let hostMap = CTLSTapBPF_map_fd(skeleton, CTLSTapBPF_MAP_TRACED_HOSTS)
        for host in filters.hosts {
            var key = [UInt8](repeating: 0, count: 16)
            key.replaceSubrange(0..<host.ip.count, with: host.ip)
            guard bpf_map_update_elem(hostMap, &key, &present, UInt64(BPF_ANY)) == 0 else {
                throw .system("cannot add host \(host.host) to the filter", errno: errno)
            }
        }
    }
}

/// Holds the record handler where libbpf's C callback can reach it.
private final class RecordCallbackBox {
    let handler: (UnsafeRawBufferPointer) -> Void
    init(_ handler: @escaping (UnsafeRawBufferPointer) -> Void) { self.handler = handler }
}

/// libbpf's ring buffer callback: hands the record to the Swift handler.
private func visitRecord(context: UnsafeMutableRawPointer?, sample: UnsafeRawPointer?, length: UInt32) {
    guard let context, let sample else { return }
    // As in deliverRecord: the tracer keeps the box alive while its ring is mapped.
    Unmanaged<RecordCallbackBox>.fromOpaque(context).takeUnretainedValue()
        .handler(UnsafeRawBufferPointer(start: sample, count: Int(length)))
}

private func deliverRecord(context: UnsafeMutableRawPointer?, data: UnsafeMutableRawPointer?, size: Int) -> Int32 {
    guard let context, let data else { return 0 }
    // The tracer keeps the box alive while its ring buffer exists.
    Unmanaged<RecordCallbackBox>.fromOpaque(context).takeUnretainedValue()
        .handler(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
