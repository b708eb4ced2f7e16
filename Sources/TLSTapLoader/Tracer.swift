import CLibbpf
import CTLSTapABI
import CTLSTapBPF
import Glibc
import Logging
import TLSTapCore

/// Which processes the kernel side traces. Every filter that is set must
/// match; an empty configuration traces the whole host.
public struct TraceFilters: Sendable, Equatable {
    /// Thread group ids (-p).
    public var pids: [Int32] = []
    /// With `pids`: also the processes they fork, from the moment they
    /// fork (`--no-children` turns it off). Their descendants alive at the
    /// start must be among `pids` (`ProcessTree.descendants(of:)`).
    public var followChildren = true
    /// Command names (-c), at most 15 bytes each, as the kernel keeps them.
    public var comms: [String] = []
    /// A cgroup v2 id (`tlstap -- COMMAND`).
    public var cgroupID: UInt64?
    /// Connections with one of these ports, local or remote (--port).
    public var ports: [UInt16] = []
    /// Connections with one of these addresses, local or remote (--host).
    public var hosts: [SocketAddress] = []
    /// Also capture unencrypted TCP payload of the traced processes (--plaintext).
    public var plaintext = false

    /// Whether the scope takes in programs that start later, whose probes
    /// must then be attached as they exec or map code: every scope but -p
    /// without its children.
    public var followsExecs: Bool { pids.isEmpty || followChildren }

    public init(
        pids: [Int32] = [], comms: [String] = [], cgroupID: UInt64? = nil, ports: [UInt16] = [],
        hosts: [SocketAddress] = []
    ) {
        self.pids = pids
        self.comms = comms
        self.cgroupID = cgroupID
        self.ports = ports
        self.hosts = hosts
    }
}

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
    private var ringBuffer: OpaquePointer?
    private let ringBufferBytes: UInt32
    /// Set once the ring is read in place.
    private var ringDump: UnsafeMutablePointer<CTLSTapBPF_RingDump>?
    private let records: RecordCallbackBox
    private let logger: Logger

    /// The probes of one TLS library: entry and return programs per symbol.
    struct ProbeSpec {
        var symbol: String
        var enter: CTLSTapBPF_Program
        /// nil for functions whose arguments are all the program needs.
        var exit: CTLSTapBPF_Program?
        /// Absent from older versions (OpenSSL < 1.1.1), so a miss is not an error.
        var optional: Bool
        /// A function that `symbol` only passes its call on to, with the
        /// same first three arguments and the same result, and that other
        /// calls reach directly: probed instead of `symbol`, covering both,
        /// when `symbol`'s entry would single-step and its own would not.
        var passedOnTo: String? = nil
    }

    /// The probes to attach in a file of `library`.
    static func probes(for library: TLSLibrary) -> [ProbeSpec] {
        switch library {
        case .openssl, .boringssl: openSSLProbes
        case .gnutls: gnuTLSProbes
        case .nss: nsprProbes
        case .socket, .go: []
        }
    }

    static let gnuTLSProbes = [
        // gnutls_record_send(s, data, size) is gnutls_record_send2(s, data, size, 0, 0) since GnuTLS 3.6.3.
        ProbeSpec(
            symbol: "gnutls_record_send", enter: CTLSTapBPF_GNUTLS_SEND_ENTER, exit: CTLSTapBPF_SSL_WRITE_EXIT,
            optional: false, passedOnTo: "gnutls_record_send2"),
        ProbeSpec(
            symbol: "gnutls_record_recv", enter: CTLSTapBPF_GNUTLS_RECV_ENTER, exit: CTLSTapBPF_SSL_READ_EXIT,
            optional: false),
        ProbeSpec(symbol: "gnutls_deinit", enter: CTLSTapBPF_OBJECT_FREE_ENTER, exit: nil, optional: true),
    ]

    /// NSPR's I/O functions; the entry programs skip fds without an SSL layer.
    static let nsprProbes = [
        ProbeSpec(
            symbol: "PR_Write", enter: CTLSTapBPF_PR_WRITE_ENTER, exit: CTLSTapBPF_SSL_WRITE_EXIT, optional: false),
        ProbeSpec(symbol: "PR_Send", enter: CTLSTapBPF_PR_SEND_ENTER, exit: CTLSTapBPF_SSL_WRITE_EXIT, optional: false),
        ProbeSpec(symbol: "PR_Read", enter: CTLSTapBPF_PR_READ_ENTER, exit: CTLSTapBPF_SSL_READ_EXIT, optional: false),
        ProbeSpec(symbol: "PR_Recv", enter: CTLSTapBPF_PR_RECV_ENTER, exit: CTLSTapBPF_SSL_READ_EXIT, optional: false),
    ]

    static let openSSLProbes = [
        ProbeSpec(
            symbol: "SSL_write", enter: CTLSTapBPF_SSL_WRITE_ENTER, exit: CTLSTapBPF_SSL_WRITE_EXIT, optional: false),
        ProbeSpec(
            symbol: "SSL_read", enter: CTLSTapBPF_SSL_READ_ENTER, exit: CTLSTapBPF_SSL_READ_EXIT, optional: false),
        ProbeSpec(
            symbol: "SSL_write_ex", enter: CTLSTapBPF_SSL_WRITE_EX_ENTER, exit: CTLSTapBPF_SSL_WRITE_EXIT,
            optional: true),
        ProbeSpec(
            symbol: "SSL_read_ex", enter: CTLSTapBPF_SSL_READ_EX_ENTER, exit: CTLSTapBPF_SSL_READ_EXIT,
            optional: true),
        // Sends no data: names the connection of programs that use memory BIOs (node) before their first write.
        ProbeSpec(
            symbol: "SSL_do_handshake", enter: CTLSTapBPF_SSL_HANDSHAKE_ENTER,
            exit: CTLSTapBPF_SSL_HANDSHAKE_EXIT, optional: true),
        // A freed object's socket is forgotten before its address is reused.
        ProbeSpec(symbol: "SSL_free", enter: CTLSTapBPF_OBJECT_FREE_ENTER, exit: nil, optional: true),
    ]

    /// Where memory-BIO programs' records are followed to their socket
    /// (bpf/bindings.bpf.h): in libcrypto beside libssl, or in the file
    /// that links OpenSSL or BoringSSL in.
    static let bioWriteProbe = ProbeSpec(
        symbol: "BIO_write", enter: CTLSTapBPF_BIO_WRITE_ENTER, exit: nil, optional: false)

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

        guard let skeleton = CTLSTapBPF_open() else { throw .system("cannot open the BPF object", errno: errno) }
        self.skeleton = skeleton

        var settings = CTLSTapBPF_Filters(
            own_pid: UInt32(getpid()), filter_pids: !filters.pids.isEmpty, filter_comms: !filters.comms.isEmpty,
            filter_cgroup: filters.cgroupID != nil, filter_ports: !filters.ports.isEmpty,
            filter_hosts: !filters.hosts.isEmpty, capture_plaintext: filters.plaintext,
            follow_children: filters.followChildren, stop_for_attach: filters.followsExecs,
            target_cgroup_id: filters.cgroupID ?? 0)
        let configured = CTLSTapBPF_configure(skeleton, &settings, ringBufferBytes)
        guard configured == 0 else { throw .system("cannot size the ring buffer", errno: -configured) }

        let loaded = CTLSTapBPF_load(skeleton)
        guard loaded == 0 else {
            throw .system(
                "the kernel refused tlstap's BPF programs (run with --verbose for the verifier log)",
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
        guard let skeleton else { return [] }
        if let go = target.goFunctions { return attachGo(go, in: target, pid: pid) }
        var results: [AttachResult] = []
        for point in Self.attachPoints(for: target) {
            let programs = [(point.enter, false)] + (point.exit.map { [($0, true)] } ?? [])
            for (program, isReturn) in programs {
                // By file offset where it is known (an uprobe_multi link takes nothing else), else libbpf finds it.
                let offset = point.offset ?? point.symbolOffset
                let link = CTLSTapBPF_attach_uprobe(
                    CTLSTapBPF_program(skeleton, program), isReturn, pid, point.path ?? target.path,
                    offset == nil ? point.symbol : nil, offset ?? 0, point.cookie)
                if let link {
                    links.append(link)
                    results.append(
                        AttachResult(
                            path: point.path ?? target.path, symbol: point.symbol,
                            returnProbe: isReturn))
                } else {
                    let reason = String(cString: strerror(errno))
                    results.append(
                        AttachResult(
                            path: point.path ?? target.path, symbol: point.symbol,
                            returnProbe: isReturn, failure: reason))
                    if !point.optional {
                        logger.warning("cannot attach to \(point.symbol) in \(point.path ?? target.path): \(reason)")
                    }
                    break  // no return probe without its entry probe
                }
            }
        }
        return results
    }

    /// One place an entry probe and its return probe go.
    struct AttachPoint: Equatable {
        /// The symbol, or what the point stands for.
        var symbol: String
        /// Another file than the target's (libcrypto, for BIO_write).
        var path: String? = nil
        /// nil: at `symbol`'s address; else at this file offset.
        var offset: UInt64?
        /// Where `symbol` begins in the file, when it is one and was found.
        var symbolOffset: UInt64? = nil
        var enter: CTLSTapBPF_Program
        var exit: CTLSTapBPF_Program?
        /// Read by the OpenSSL-API programs (TLSTAP_COOKIE_* in tlstap_abi.h).
        var cookie: UInt64
        var optional: Bool
    }

    /// Where the probes for the library in `target` go: each function of
    /// `probes(for:)` at its symbol, except OpenSSL's write and read pairs,
    /// which go into the function both call where `ProbePlacement` finds one.
    static func attachPoints(for target: LibraryTarget) -> [AttachPoint] {
        let library = UInt64(target.library.rawValue)
        let specs = probes(for: target.library)
        let symbols = (specs + [bioWriteProbe]).flatMap { [$0.symbol] + ($0.passedOnTo.map { [$0] } ?? []) }
            .map { target.symbolPrefix + $0 }
        let functions = ELFSymbols.functions(target.path, named: Set(symbols)) ?? [:]
        let cheapEntry = { (function: ELFSymbols.Function) in
            ELFSymbols.bytes(target.path, at: function.fileOffset, count: 16)
                .flatMap(ProbePlacement.cheapEntryOffset).map { function.fileOffset + $0 }
        }
        var points = specs.map { probe in
            let symbol = target.symbolPrefix + probe.symbol
            let entry = functions[symbol].flatMap(cheapEntry)
            if entry == nil, let callee = probe.passedOnTo.map({ target.symbolPrefix + $0 }),
                let calleeEntry = functions[callee].flatMap(cheapEntry)
            {
                return AttachPoint(
                    symbol: "\(symbol) and \(callee), in the latter", offset: calleeEntry,
                    enter: probe.enter, exit: probe.exit, cookie: library, optional: probe.optional)
            }
            // Past leading instructions that only set flags (endbr64) when that spares the single step;
            // else at the symbol, found by libbpf.
            let start = functions[symbol]?.fileOffset
            let skip: UInt64? = if let entry, entry != start { entry } else { nil }
            return AttachPoint(
                symbol: symbol, offset: skip, symbolOffset: start, enter: probe.enter, exit: probe.exit,
                cookie: library, optional: probe.optional)
        }
        guard target.library == .openssl || target.library == .boringssl else { return points }
        if let bioWrite = bioWritePoint(for: target, functions: functions, library: library) {
            points.append(bioWrite)
        }
        let pairs = [
            ("SSL_write", CTLSTapBPF_SSL_WRITE_INNER_ENTER, CTLSTapBPF_SSL_WRITE_EXIT),
            ("SSL_read", CTLSTapBPF_SSL_READ_INNER_ENTER, CTLSTapBPF_SSL_READ_EXIT),
        ]
        for (name, enter, exit) in pairs {
            let plain = target.symbolPrefix + name
            let ex = plain + "_ex"
            guard let inner = innerFunction(of: plain, ex, functions, path: target.path) else { continue }
            var cookie = library | UInt64(inner.countArgument) << TLSTAP_COOKIE_COUNT_ARG_SHIFT
            if let site = inner.plainReturnSite {
                cookie |= TLSTAP_COOKIE_PLAIN_SITE_KNOWN | (site & 0xfff) << TLSTAP_COOKIE_PLAIN_SITE_SHIFT
            }
            let covered = inner.coversEx ? [plain, ex] : [plain]
            points.removeAll { covered.contains($0.symbol) }
            points.append(
                AttachPoint(
                    symbol: covered.joined(separator: " and ") + ", in the function they call",
                    offset: inner.callee, enter: enter, exit: exit, cookie: cookie, optional: false))
        }
        return points
    }

    /// BIO_write, in the target if it defines it (`functions`: OpenSSL or
    /// BoringSSL linked in), else in the libcrypto beside libssl; nil if
    /// neither does.
    private static func bioWritePoint(
        for target: LibraryTarget, functions: [String: ELFSymbols.Function], library: UInt64
    ) -> AttachPoint? {
        let symbol = target.symbolPrefix + bioWriteProbe.symbol
        let found: (path: String, function: ELFSymbols.Function)? =
            if let function = functions[symbol] {
                (target.path, function)
            } else if let crypto = LibraryDiscovery.cryptoLibrary(besides: target.path),
                let function = ELFSymbols.functions(crypto, named: [symbol])?[symbol]
            {
                (crypto, function)
            } else {
                nil
            }
        guard let found else { return nil }
        let start = found.function.fileOffset
        let cheapEntry = { (offset: UInt64) in
            ELFSymbols.bytes(found.path, at: offset, count: 16).flatMap(ProbePlacement.cheapEntryOffset).map {
                offset + $0
            }
        }
        let file = found.path == target.path ? nil : found.path
        if let entry = cheapEntry(start) {
            return AttachPoint(
                symbol: symbol, path: file, offset: entry, symbolOffset: start, enter: bioWriteProbe.enter,
                exit: nil, cookie: library, optional: false)
        }
        // OpenSSL 3's BIO_write begins with `sub rsp`, which the kernel would single-step on every record
        // (about 14 µs): the function it passes (bio, data, length) on to (bio_write_intern) is probed instead.
        let code = ELFSymbols.bytes(found.path, at: start, count: Int(min(max(found.function.size, 16), 96)))
        if let call = code.flatMap({ ProbePlacement.innerCall(in: $0, at: start) }), let entry = cheapEntry(call.callee)
        {
            return AttachPoint(
                symbol: "\(symbol), in the function it calls", path: file, offset: entry,
                enter: bioWriteProbe.enter, exit: nil, cookie: library, optional: false)
        }
        return AttachPoint(
            symbol: symbol, path: file, offset: start, symbolOffset: start, enter: bioWriteProbe.enter,
            exit: nil, cookie: library, optional: false)
    }

    /// The inner function to probe for the pair `plain` and `ex`, if `plain`
    /// would single-step and is a wrapper of one whose entry does not.
    private static func innerFunction(
        of plain: String, _ ex: String, _ functions: [String: ELFSymbols.Function], path: String
    ) -> (callee: UInt64, countArgument: Int, plainReturnSite: UInt64?, coversEx: Bool)? {
        let code = { (function: ELFSymbols.Function) in
            ELFSymbols.bytes(path, at: function.fileOffset, count: Int(min(max(function.size, 16), 96)))
        }
        guard let plainFunction = functions[plain], let plainCode = code(plainFunction),
            ProbePlacement.cheapEntryOffset(plainCode) == nil,
            let call = ProbePlacement.innerCall(in: plainCode, at: plainFunction.fileOffset),
            let calleeCode = ELFSymbols.bytes(path, at: call.callee, count: 16),
            let calleeEntry = ProbePlacement.cheapEntryOffset(calleeCode).map({ call.callee + $0 })
        else { return nil }
        let exCall = functions[ex].flatMap { function in
            code(function).flatMap { ProbePlacement.innerCall(in: $0, at: function.fileOffset) }
        }
        guard let exCall, exCall.callee == call.callee, exCall.countArgument == call.countArgument else {
            // SSL_write_ex keeps its own probe; if it calls the inner function too, the inner call replaces it.
            return (calleeEntry, call.countArgument, nil, false)
        }
        // Calls from the two wrappers are told apart by the return address's page offset.
        let distinct = call.returnSite & 0xfff != exCall.returnSite & 0xfff
        return (calleeEntry, call.countArgument, distinct ? call.returnSite : nil, true)
    }

    /// Go: uprobes at each function's entry and at each of its RET
    /// instructions (never uretprobes: they break when Go moves a stack).
    private func attachGo(_ go: GoTLSFunctions, in target: LibraryTarget, pid: Int32) -> [AttachResult] {
        guard let skeleton else { return [] }
        CTLSTapBPF_set_go_probes_attached(skeleton)
        var results: [AttachResult] = []
        for (function, enter, exit) in [
            (go.write, CTLSTapBPF_GO_WRITE_ENTER, CTLSTapBPF_GO_WRITE_RETURN),
            (go.read, CTLSTapBPF_GO_READ_ENTER, CTLSTapBPF_GO_READ_RETURN),
        ] {
            for (program, offset, isReturn) in [(enter, function.entry, false)]
                + function.returns.map({ (exit, $0, true) })
            {
                let link = CTLSTapBPF_attach_uprobe(
                    CTLSTapBPF_program(skeleton, program), false, pid, target.path, nil, offset, 0)
                let symbol = function.name + (isReturn ? " RET at 0x" + String(offset, radix: 16) : "")
                if let link {
                    links.append(link)
                    results.append(AttachResult(path: target.path, symbol: symbol, returnProbe: isReturn))
                } else {
                    let reason = String(cString: strerror(errno))
                    logger.warning("cannot attach to \(symbol) in \(target.path): \(reason)")
                    results.append(
                        AttachResult(path: target.path, symbol: symbol, returnProbe: isReturn, failure: reason))
                }
            }
        }
        return results
    }

    /// Where the probes for `target` go, as `tlstap check` lists them:
    /// `symbol @ 0xFILEOFFSET (entry|return)`.
    public static func probePoints(for target: LibraryTarget) -> [String] {
        if let go = target.goFunctions {
            return [go.write, go.read].flatMap { function in
                ["\(function.name) @ 0x\(String(function.entry, radix: 16)) (entry)"]
                    + function.returns.map { "\(function.name) @ 0x\(String($0, radix: 16)) (RET)" }
            }
        }
        return attachPoints(for: target).map { point in
            guard let offset = point.offset ?? point.symbolOffset else { return "\(point.symbol): not in this file" }
            let path = point.path ?? target.path
            let note = point.symbolOffset.map { skipped(from: $0, to: offset, in: path) } ?? ""
            let file = point.path.map { " in \($0)" } ?? ""
            return "\(point.symbol)\(file) @ 0x\(String(offset, radix: 16)) (entry\(note)"
                + (point.exit == nil ? ")" : " and uretprobe)")
        }
    }

    /// How `tlstap check` says what an entry probe at `offset` skipped of the function at `start`.
    private static func skipped(from start: UInt64, to offset: UInt64, in path: String) -> String {
        guard offset > start, offset - start < 16 else { return "" }
        let code = ELFSymbols.bytes(path, at: start, count: Int(offset - start)) ?? []
        return code == [0xf3, 0x0f, 0x1e, 0xfa]
            ? ", past its endbr64" : ", past \(offset - start) bytes that only set flags"
    }

    /// The entry and return probes of `target` as lines a C libbpf program
    /// can attach from (bench/'s floor and bare consumer):
    /// `FILE OFFSET COOKIE ENTRY-PROGRAM RETURN-PROGRAM`, offsets and cookies
    /// in hex. Go's RET probes are not listed.
    public static func attachPlanLines(for target: LibraryTarget) -> [String] {
        guard target.goFunctions == nil else { return [] }
        return attachPoints(for: target).compactMap { point in
            guard let offset = point.offset ?? point.symbolOffset, let exitProgram = point.exit,
                let enter = CTLSTapBPF_program_name(point.enter), let exit = CTLSTapBPF_program_name(exitProgram)
            else { return nil }
            return "\(target.path) 0x\(String(offset, radix: 16)) 0x\(String(point.cookie, radix: 16)) "
                + "\(String(cString: enter)) \(String(cString: exit))"
        }
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
    /// when an eighth of the ring is waiting), consuming nothing.
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
        guard let skeleton else { return }
        var present: UInt8 = 1
        let pidMap = CTLSTapBPF_map_fd(skeleton, CTLSTapBPF_MAP_TRACED_PIDS)
        for pid in pids {
            var key = UInt32(bitPattern: pid)
            guard bpf_map_update_elem(pidMap, &key, &present, UInt64(BPF_ANY)) == 0 else {
                throw .system("cannot add PID \(pid) to the filter", errno: errno)
            }
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
    Unmanaged<RecordCallbackBox>.fromOpaque(context)._withUnsafeGuaranteedRef {
        $0.handler(UnsafeRawBufferPointer(start: sample, count: Int(length)))
    }
}

private func deliverRecord(context: UnsafeMutableRawPointer?, data: UnsafeMutableRawPointer?, size: Int) -> Int32 {
    guard let context, let data else { return 0 }
    // The tracer keeps the box alive while its ring buffer exists: no retain per record.
    Unmanaged<RecordCallbackBox>.fromOpaque(context)._withUnsafeGuaranteedRef {
        $0.handler(UnsafeRawBufferPointer(start: data, count: size))
    }
    return 0
}
