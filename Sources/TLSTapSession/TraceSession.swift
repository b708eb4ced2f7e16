import Glibc
import Logging
import Synchronization
import TLSTapCore
import TLSTapHTTP
import TLSTapLoader
import TLSTapOutput

/// What a trace run captured, for the exit summary.
public struct TraceSummary: Sendable, Equatable {
    public var events: UInt64 = 0
    public var payloadBytes: UInt64 = 0
    public var lost: LostCounts = .zero
    /// HTTP exchanges completed (when parsing).
    public var exchanges: UInt64 = 0
    /// Records that could not be decoded (a bug, reported rather than hidden).
    public var malformedRecords: UInt64 = 0
    /// Events whose connection tlstap could not know: shown without one,
    /// never with a guessed one.
    public var eventsWithoutConnection: UInt64 = 0
    /// Processes that sent TLS records from code tlstap cannot probe (`comm[pid]`).
    public var unprobedTLS: [String] = []

    /// `tlstap: 12 events, 3456 bytes captured, 0 records lost (0 bytes)`
    public var line: String {
        var text =
            "tlstap: \(events) events, \(payloadBytes) bytes captured, \(lost.records) records lost "
            + "(\(lost.bytes) bytes)"
        if exchanges > 0 { text += ", \(exchanges) HTTP exchange\(exchanges == 1 ? "" : "s")" }
        if eventsWithoutConnection > 0 {
            text +=
                ", \(eventsWithoutConnection) event\(eventsWithoutConnection == 1 ? "" : "s") without a known connection"
        }
        if malformedRecords > 0 { text += ", \(malformedRecords) malformed record\(malformedRecords == 1 ? "" : "s")" }
        if !unprobedTLS.isEmpty {
            text += "; not captured: TLS from code tlstap cannot probe in \(unprobedTLS.joined(separator: ", "))"
        }
        return text
    }
}

/// A saved capture that could not be read to its end.
public struct ReplayError: Error, CustomStringConvertible {
    public let path: String
    public let reason: RawRecordLog.ReadError
    /// What the records before the failure held, if any were read.
    public var summary: TraceSummary?

    public var description: String { "\(path): \(reason)" }
}

/// One tracing run, wired end to end: BPF tracer → record decoding → chunk
/// assembly → sink. Everything happens on the thread that calls `run`, so a
/// slow reader of the output slows the draining of the ring buffer, and the
/// overflow is counted in the kernel and reported, instead of piling up in
/// tlstap's memory.
public final class TraceSession {
    private var tracer: Tracer?
    private let sink: EventSink
    private let logger: Logger
    // The state every record touches is marked `@exclusivity(unchecked)`:
    // the runtime's check of each access cost about 5% of a busy capture's
    // CPU. It is safe because everything runs on the thread in `run`, and
    // the only access that runs code while it lasts, `assembler.add`'s
    // `emit`, never touches the assembler.
    @exclusivity(unchecked) private var assembler: ChunkAssembler
    @exclusivity(unchecked) private var connections: ConnectionTracker
    /// Calls whose TLS object's socket is not known yet.
    private var unbound = UnboundCalls()
    /// Protocol analysis (HTTP, WebSocket), when an output shows its records.
    @exclusivity(unchecked) private var protocols: ProtocolTracker?
    /// Where every raw record is also saved (`--save-raw`, `tlstap record`).
    /// A constant, so that a record reaches it without a retain.
    private let rawLog: OutputFile?
    /// Where the ring buffer's bytes go as they lie (`tlstap record`):
    /// data records are then only counted, never decoded.
    private let recording: RingCaptureFile?
    /// The stream position up to which the ring's bytes are in `recording`.
    private var recorded: UInt64 = 0
    /// When a replayed capture stopped, from its note.
    private var stoppedAtNanoseconds: UInt64?
    private var finished = false
    @exclusivity(unchecked) private var outputError: OutputError?
    /// The last event's payload, once written: its memory takes the next
    /// record's payload when nothing kept it (no allocation per record).
    /// Kept only up to about one record's most (the allocator rounds up):
    /// a larger call's memory would be held, oversized, by a chunk waiting
    /// in the assembler.
    @exclusivity(unchecked) private var spentPayload: [UInt8] = []
    private var reportedLost = LostCounts.zero
    /// While `run` renders: the records the draining thread copied out of
    /// the ring. Set and cleared on the rendering thread, around the
    /// draining thread's life.
    private var spool: RecordSpool?
    /// How much the draining thread may hold while rendering is behind:
    /// eight times the ring buffer, so `--ring-buffer-mib` sizes both.
    private var spoolLimitBytes = 256 << 20
    /// Tells the draining thread to end.
    private let drainingStops = Atomic<Bool>(false)
    /// Files with probes, so a program exec'd again is not attached twice.
    private var attachedFiles = Set<FileIdentity>()
    /// Whether programs exec'd later are examined for linked-in TLS, and
    /// probes attached to them (all scopes but -p, whose probes are bound to
    /// the given processes).
    public private(set) var followsExecs = false
    /// The TLS objects each live process used, to delete their kernel-side
    /// state when it exits.
    @exclusivity(unchecked) private var tlsObjects: [UInt32: Set<UInt64>] = [:]
    @exclusivity(unchecked) public private(set) var summary = TraceSummary()

    /// What every session starts from; a live one adds its tracer.
    /// - Parameter live: records come from this host now, so the role of a
    ///   connection opened before the capture is guessed from the sockets
    ///   listening here (not in a replay, whose host may be another).
    private init(
        sink: EventSink, http: HTTPLimits?, clock: WallClock, live: Bool, rawLog: OutputFile? = nil,
        recording: RingCaptureFile? = nil, logger: Logger
    ) {
        self.sink = sink
        self.rawLog = rawLog
        self.logger = logger
        self.recording = recording
        assembler = ChunkAssembler(clock: clock)
        connections =
            live
            ? ConnectionTracker(clock: clock, roleOfMidConnection: ListeningPorts.role)
            : ConnectionTracker(clock: clock)
        protocols = http.map { HTTPProtocols.tracker(limits: $0) }
    }

    /// Loads the programs with `filters`; attach with `attach(_:)`.
    /// - Parameters:
    ///   - http: parse HTTP exchanges with these limits; nil to skip parsing.
    ///   - rawLog: also save every raw record there (`RawRecordLog`
    ///     format), with the notes `replay` needs; a new, empty file.
    ///   - recording: write the ring buffer's bytes there as they lie, and
    ///     render nothing (`tlstap record`; `tlstap replay` renders them
    ///     later): no record is copied or decoded by tlstap. Socket records
    ///     are still read, to follow processes; the TLS objects of a process
    ///     that exits are left to the kernel's LRU map, since finding them
    ///     would take decoding every record.
    public convenience init(
        filters: TraceFilters, ringBufferBytes: UInt32, sink: EventSink, http: HTTPLimits? = nil,
        rawLog: OutputFile? = nil, recording: RingCaptureFile? = nil, logger: Logger
    ) throws(LoaderError) {
        let clock = WallClock.measure()
        do {
            try rawLog?.write(RawRecordLog.magic)
            try recording?.start(notes: [.clock(clock)])
        } catch { throw LoaderError("\(error)") }
        self.init(
            sink: sink, http: recording == nil ? http : nil, clock: clock, live: true, rawLog: rawLog,
            recording: recording, logger: logger)
        save(.clock(clock))
        spoolLimitBytes = 8 * Int(ringBufferBytes)
        // The handler runs inside `tracer.poll`, on this object's thread, so
        // only while this object, which owns the tracer, exists: it is
        // reached without a retain per record.
        let session = Unmanaged.passUnretained(self)
        let handle: (UnsafeRawBufferPointer) -> Void =
            recording == nil
            ? { record in session._withUnsafeGuaranteedRef { $0.received(record) } }
            : { record in session._withUnsafeGuaranteedRef { $0.count(record) } }
        tracer = try Tracer(filters: filters, ringBufferBytes: ringBufferBytes, logger: logger, onRecord: handle)
        if recording != nil { try tracer?.startRingDump() }
    }

    /// Renders a saved capture (`RawRecordLog` format, as `tlstap record`
    /// and `--save-raw` write it) into `sink`, as a live run would have.
    /// - Returns: what the capture held.
    /// - Throws: `ReplayError` when the file cannot be read or ends inside
    ///   a record (after rendering every record before it), and
    ///   `OutputError` when output cannot be written.
    public static func replay(
        path: String, sink: EventSink, http: HTTPLimits? = nil, logger: Logger
    ) throws -> TraceSummary {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw ReplayError(path: path, reason: .unreadable(errno: errno)) }
        defer { close(descriptor) }
        // A capture's first record is its clock note; one saved before notes existed takes this host's clock.
        let session = TraceSession(sink: sink, http: http, clock: .measure(), live: false, logger: logger)
        var reader = RawRecordLog.Reader(descriptor: descriptor)
        var failure: RawRecordLog.ReadError?
        do {
            try reader.readRecords { record in
                session.replay(record)
                return session.outputError == nil
            }
        } catch {
            failure = error
        }
        try session.finish()
        if let failure {
            // Records were read only if the file began as a capture does.
            let readSome = if case .truncated = failure { true } else { false }
            throw ReplayError(path: path, reason: failure, summary: readSome ? session.summary : nil)
        }
        return session.summary
    }

    /// Adds processes to the kernel-side PID filter (the children of -p's
    /// processes that were already running).
    public func trace(pids: [Int32]) throws(LoaderError) {
        try tracer?.addTracedPIDs(pids)
    }

    /// Attaches the probes of `plan`.
    /// - Throws: when not a single probe could be attached.
    public func attach(_ plan: AttachPlan) throws(LoaderError) {
        guard let tracer else { return }
        followsExecs = plan.attachments.allSatisfy { $0.pid == -1 }
        for attachment in plan.attachments {
            attachedFiles.insert(attachment.library.identity)
            let attached = tracer.attach(attachment.library, pid: attachment.pid).filter { $0.failure == nil }.count
            let scope = attachment.pid == -1 ? "all processes" : "PID \(attachment.pid)"
            logger.info(
                "attached \(attached) probes in \(attachment.library.path) for \(scope) (\(attachment.library.reason))")
        }
        if tracer.attachedProbes == 0 && plan.findsLater {
            logger.warning(
                "no TLS library in the given processes yet: probes follow when they or their children load one")
            return
        }
        guard tracer.attachedProbes > 0 else {
            let paths = Set(plan.attachments.map(\.library.path)).sorted()
            throw LoaderError(
                paths.isEmpty
                    ? "no TLS library (libssl, libgnutls, libnspr4, or one linked into the program) found to trace"
                    : "could not attach to the TLS read and write functions in \(paths.joined(separator: ", "))")
        }
    }

    /// How long a poll waits: BPF wakes the reader only when the ring buffer
    /// is filling up, so this is also the longest an event waits to be shown.
    static let pollMilliseconds: Int32 = 20

    /// How often output is flushed while records come: often enough for a
    /// live view, seldom enough that a busy capture to a file does not write
    /// its last partial block through the page cache after every poll (the
    /// next direct write of that block then waits for its writeback).
    /// Zero flushes after every poll that brought records: for a terminal,
    /// where tlstap's lines go between the traced command's own.
    public var flushIntervalNanoseconds: UInt64 = 50_000_000

    /// Handles the records that come within `timeoutMilliseconds`, for a
    /// caller that must wait for something else before `run` (a process
    /// that execs a program tlstap has not seen waits, stopped, until the
    /// session handles its record).
    public func poll(timeoutMilliseconds: Int32) throws {
        guard let tracer else { return }
        _ =
            recording == nil
            ? try tracer.poll(timeoutMilliseconds: timeoutMilliseconds)
            : writeRing(waitingMilliseconds: timeoutMilliseconds)
        reportLoss()  // an output error waits for `run`, which ends on it
    }

    /// Polls and renders until `shouldStop` says so, then drains what is left.
    /// - Parameter shouldStop: asked after every poll (at least every 20 ms).
    /// - Throws: `OutputError.writeFailed` when output cannot be written;
    ///   a closed reader ends the run normally.
    public func run(until shouldStop: () -> Bool) throws {
        guard let tracer else { return }
        let draining = recording == nil ? startDraining() : nil
        var unflushed = false
        var lastFlush: UInt64 = 0
        var batch: [UInt8] = []
        while outputError == nil && !shouldStop() {
            let delivered: Int
            if let spool {
                spool.take(waitingMilliseconds: Self.pollMilliseconds, into: &batch)
                RecordSpool.forEach(in: batch) { handle($0) }
                delivered = batch.count
            } else if recording == nil {
                delivered = try tracer.poll(timeoutMilliseconds: Self.pollMilliseconds)
            } else {
                delivered = writeRing(waitingMilliseconds: Self.pollMilliseconds)
            }
            reportLoss()
            unflushed = unflushed || delivered > 0
            let now = WallClock.monotonicNanoseconds()
            if unflushed && now &- lastFlush >= flushIntervalNanoseconds {
                flushOutput()
                unflushed = false
                lastFlush = now
            }
        }
        if let draining { stopDraining(draining, rendering: &batch) }
        try finish()
    }

    /// Starts the thread that empties the ring into `spool` while this one
    /// renders; nil (and records are rendered as they are read) if it
    /// cannot be started.
    private func startDraining() -> pthread_t? {
        spool = RecordSpool(limitBytes: spoolLimitBytes)
        var thread = pthread_t()
        let started = pthread_create(
            &thread, nil,
            { context in
                Unmanaged<TraceSession>.fromOpaque(context!).takeUnretainedValue().drainUntilStopped()
                return nil
            }, Unmanaged.passUnretained(self).toOpaque())
        guard started == 0 else {
            spool = nil
            logger.warning("cannot start the draining thread: records are rendered as they are read")
            return nil
        }
        return thread
    }

    /// The draining thread: polls the ring until told to stop; the ring
    /// callback (`received`) copies each record into the spool, which hands
    /// a poll's records to the renderer when the poll returns.
    private func drainUntilStopped() {
        while !drainingStops.load(ordering: .acquiring) {
            do { try tracer?.poll(timeoutMilliseconds: Self.pollMilliseconds) } catch {
                logger.error("\(error)")
                spool?.publish()
                return
            }
            spool?.publish()
        }
    }

    /// Ends the draining thread and renders what it left in the spool; from
    /// then on, records are rendered as they are read (`finish` drains).
    private func stopDraining(_ thread: pthread_t, rendering batch: inout [UInt8]) {
        drainingStops.store(true, ordering: .releasing)
        spool?.close()
        pthread_join(thread, nil)
        spool?.take(waitingMilliseconds: 0, into: &batch)
        RecordSpool.forEach(in: batch) { handle($0) }
        spool = nil
    }

    /// A record from the ring buffer: rendered now, or copied into the
    /// spool while a draining thread runs. A process stopped until its new
    /// code has probes is attached and continued here, at once, not when
    /// rendering reaches its record.
    private func received(_ record: UnsafeRawBufferPointer) {
        guard let spool else { return handle(record) }
        // Only process records decode as such; a data record is not even read.
        if record.count == RecordDecoder.processRecordSize, let process = try? RecordDecoder.decodeProcess(record),
            process.kind != .exit
        {
            newCode(process)
        }
        spool.add(record)
    }

    /// Drains the ring buffer, emits incomplete calls, reports loss, flushes
    /// and detaches. Called by `run`; safe to call again.
    public func finish() throws {
        if !finished {
            finished = true
            if recording == nil { try tracer?.drain() } else { _ = writeRing(waitingMilliseconds: 0) }
            for var event in assembler.flush() { unbound.take(&event) { emit(&$0) } }
            unbound.releaseAll { emit(&$0) }
            if var tracker = protocols {
                let now = stoppedAtNanoseconds ?? WallClock.nowNanoseconds()
                for id in tracker.connectionIDs {
                    for record in tracker.close(connection: id, time: now, end: .captureStopped) { emit(record) }
                }
                protocols = tracker
            }
            reportLoss()
            finishRecording()
            tracer?.close()
            tracer = nil
            flushOutput()
            if outputError == nil {
                do { try sink.finish() } catch { outputError = error }
            }
            if let rawLog {
                save(.stop(timeNanoseconds: WallClock.nowNanoseconds()))
                do { try rawLog.finish() } catch { outputError = outputError ?? error }
            }
        }
        switch outputError {
        case nil, .readerClosed?: return
        case let error?: throw error
        }
    }

    /// A record of `tlstap record`, whose bytes go to the file from the
    /// ring itself: a data record is only counted (a call once, by its
    /// first chunk), any other handled as live.
    private func count(_ record: UnsafeRawBufferPointer) {
        guard let data = RecordDecoder.peekData(record) else { return handle(record) }
        if data.startsCall { summary.events += 1 }
        summary.payloadBytes += UInt64(data.payloadBytes)
    }

    private func handle(_ record: UnsafeRawBufferPointer) {
        if rawLog != nil {
            // Reached through the optional, not bound by `if let`: a binding retains.
            do { try rawLog?.append { RawRecordLog.append(record, to: &$0) } } catch { outputError = error }
        }
        do {
            switch try RecordDecoder.decodeRecord(record, reusing: &spentPayload) {
            case .chunk(let chunk):
                assembler.add(chunk) { unbound.take(&$0) { emit(&$0) } }
            case .socket(let socket):
                if socket.kind == .unprobedTLS,
                    let connection = connections.silentConnection(pid: socket.pid, fd: socket.fd)
                {
                    tellUnprobedTLS(connection)
                }
                for ended in connections.handle(socket) { emit(ended) }
            case .process(let process):
                switch process.kind {
                case .exec, .mapCode:
                    // Already done where the draining thread read it.
                    if spool == nil { newCode(process) }
                case .exit:
                    processExited(process)
                }
            case .objectFreed(let freed):
                unbound.release(pid: freed.pid, ssl: freed.ssl) { emit(&$0) }
            }
        } catch {
            summary.malformedRecords += 1
            logger.error("malformed record from the kernel: \(error)")
        }
    }

    /// A traced process is gone: its kernel-side state is deleted, its
    /// calls without a socket go out without one, its connections end.
    private func processExited(_ process: ProcessEvent) {
        unprobableStacks.withLock { _ = $0.removeValue(forKey: process.pid) }
        let objects = (tlsObjects.removeValue(forKey: process.pid) ?? []).union(unbound.objects(of: process.pid))
        tracer?.forgetProcess(process.pid, fds: connections.fds(of: process.pid), tlsObjects: Array(objects))
        unbound.release(pid: process.pid) { emit(&$0) }
        for ended in connections.processExited(process) { emit(ended) }
    }

    private var unprobedTLSProcesses = Set<UInt32>()

    /// A process sends TLS records on `connection` from code no probe
    /// covers: said once per process, and again in the summary.
    private func tellUnprobedTLS(_ connection: Connection) {
        let pid = Int32(bitPattern: connection.pid)
        guard unprobedTLSProcesses.insert(connection.pid).inserted else { return }
        // The process's name: the connection's is its thread's (gRPC's "event_engine").
        let comm = LibraryDiscovery.comm(of: pid) ?? connection.comm
        let process = "\(comm)[\(connection.pid)]"
        summary.unprobedTLS.append(process)
        let seen = unprobableStacks.withLock { $0[connection.pid] }
        let stack = UnprobableTLS.likelyStack(of: pid, comm: comm, seen: seen).map { " (\($0))" } ?? ""
        logger.warning(
            "\(process) speaks TLS to \(connection.remote) from code tlstap cannot probe\(stack): not captured")
    }

    /// Writes the ring's committed bytes to `recording` in whole blocks,
    /// after handing their records to `count`, and gives them back to the
    /// programs; the last partial block waits for more, or for the end.
    /// - Parameter waitingMilliseconds: how long to wait for BPF's wakeup first.
    /// - Returns: the bytes written.
    private func writeRing(waitingMilliseconds: Int32) -> Int {
        guard let tracer, recording != nil, outputError == nil else { return 0 }
        tracer.waitForRecords(timeoutMilliseconds: waitingMilliseconds)
        let block = UInt64(RingCaptureFile.block)
        return record(through: tracer.scanRing() / block * block)
    }

    /// Writes the ring's last committed bytes and the capture's trailer.
    private func finishRecording() {
        guard let tracer, recording != nil else { return }
        let now = WallClock.nowNanoseconds()
        let trailer: [RawRecordLog.Note] = [.lost(summary.lost, timeNanoseconds: now), .stop(timeNanoseconds: now)]
        _ = record(through: tracer.scanRing(), trailer: trailer)
    }

    /// Writes the ring's bytes from `recorded` to `end` (whole blocks, or
    /// the rest and then `trailer`) and gives them back to the programs.
    /// - Returns: the bytes written.
    private func record(through end: UInt64, trailer: [RawRecordLog.Note]? = nil) -> Int {
        guard let tracer, let recording, end > recorded || trailer != nil,
            let start = tracer.ringBytes(at: recorded)
        else { return 0 }
        let bytes = UnsafeRawBufferPointer(start: start, count: Int(end - recorded))
        do {
            if let trailer {
                try recording.finish(tail: bytes, at: recorded, notes: trailer)
            } else {
                try recording.write(ring: bytes, at: recorded)
            }
        } catch {
            outputError = outputError ?? error
            return 0
        }
        tracer.releaseRing(through: end)
        recorded = end
        return bytes.count
    }

    /// A record of a saved capture: a kernel record, or one of tlstap's notes.
    private func replay(_ record: UnsafeRawBufferPointer) {
        guard RawRecordLog.Note.isNote(record) else { return handle(record) }
        switch RawRecordLog.Note(record) {
        case .clock(let clock)?:
            // A log's first record, before any other.
            assembler = ChunkAssembler(clock: clock)
            connections = ConnectionTracker(clock: clock)
        case .lost(let lost, let time)?:
            guard lost != reportedLost else { return }
            write(lost: lost, timeNanoseconds: time)
        case .stop(let time)?:
            stoppedAtNanoseconds = time
        case nil:
            summary.malformedRecords += 1
            logger.error("malformed note of \(record.count) bytes in the capture")
        }
    }

    /// A traced process is about to run code no traced process ran before:
    /// its TLS functions get probes, and if BPF stopped the process for
    /// that, it goes on once they are in place. (Only live: a replayed
    /// record names a process of another time.)
    private func newCode(_ process: ProcessEvent) {
        guard tracer != nil else { return }
        let pid = Int32(bitPattern: process.pid)
        if followsExecs {
            if process.kind == .exec { attachLinkedTLS(pid: pid) } else { attachMappedTLS(pid: pid, fd: process.fd) }
        }
        if process.stoppedForAttach { kill(pid, SIGCONT) }
    }

    /// Saves a note in the raw log, for a replay.
    private func save(_ note: RawRecordLog.Note) {
        guard let rawLog else { return }
        do { try rawLog.append { RawRecordLog.append(note, to: &$0) } } catch { outputError = outputError ?? error }
    }

    /// Attaches to a TLS library linked into the program `pid` now runs, if
    /// there is one and it has no probes yet.
    public func attachLinkedTLS(pid: Int32) {
        guard let exe = LibraryDiscovery.executable(of: pid) else { return }
        // A path that outlives the process: its own if it names the same file here, else through its root.
        let path = ProcFSPaths.sameFile(exe, "/proc/\(pid)/exe") ? exe : "/proc/\(pid)/root" + exe
        attachLinkedTLS(path: path, reason: "process \(pid) exec'd \(exe)")
    }

    /// Attaches to the TLS library process `pid` maps as code from `fd` if
    /// it has no probes yet: a libssl from another directory, one replaced
    /// on disk since, one loaded with dlopen, or a shared object with TLS
    /// linked in. Called when the process maps a file not seen before; the
    /// file is found through its fd, which is open while the mmap runs.
    private func attachMappedTLS(pid: Int32, fd: Int32) {
        let target = LibraryDiscovery.mappedTarget(pid: pid, fd: fd)
        attachOnce(target)
        // Else TLS tlstap cannot probe, named if the process speaks it (it may have exited by then).
        if target == nil, let name = LibraryDiscovery.openFile(of: pid, fd: fd),
            let stack = UnprobableTLS.stack(inFile: "/proc/\(pid)/fd/\(fd)", named: name)
        {
            unprobableStacks.withLock { $0[UInt32(bitPattern: pid)] = stack }
        }
    }

    /// TLS stacks tlstap cannot probe, per process that mapped one: written
    /// where new code is handled (the draining thread), read where records are.
    private let unprobableStacks = Mutex<[UInt32: String]>([:])

    /// Attaches to a TLS library linked into the program at `path` before it
    /// runs (the command of `tlstap -- COMMAND`).
    public func attachLinkedTLS(path: String) {
        attachLinkedTLS(path: path, reason: "the command is \(path)")
    }

    private func attachLinkedTLS(path: String, reason: String) {
        attachOnce(LibraryDiscovery.embeddedTarget(path: path, reason: reason))
    }

    /// Attaches `target`'s probes for all processes, unless its file has them already.
    private func attachOnce(_ target: LibraryTarget?) {
        guard let tracer, let target, attachedFiles.insert(target.identity).inserted else { return }
        let attached = tracer.attach(target).filter { $0.failure == nil }.count
        logger.info("attached \(attached) probes in \(target.path) for all processes (\(target.reason))")
    }

    private func emit(_ event: inout DataEvent) {
        if let opened = connections.attach(&event) {
            // Once per connection: BPF keeps its TLS object's fd only for calls that named a socket.
            if event.ssl != 0 { tlsObjects[event.pid, default: []].insert(event.ssl) }
            emit(opened)
        }
        summary.events += 1
        summary.payloadBytes += UInt64(event.payload.count)
        if event.connection == nil { summary.eventsWithoutConnection += 1 }
        guard outputError == nil else { return }
        do { try sink.write(event) } catch { outputError = error }
        for record in protocols?.feed(event) ?? [] { emit(record) }
        if event.payload.capacity < 2 * RecordDecoder.maxChunkPayload { spentPayload = event.payload }
    }

    private func emit(_ event: ConnectionEvent) {
        if case .closed(let connection, let time) = event {
            for record in protocols?.close(connection: connection.id, time: time) ?? [] { emit(record) }
        }
        guard outputError == nil else { return }
        do { try sink.write(event) } catch { outputError = error }
    }

    private func emit(_ record: any ProtocolRecord) {
        if record is HTTPExchange { summary.exchanges += 1 }
        guard outputError == nil else { return }
        do { try sink.write(record) } catch { outputError = error }
    }

    private func reportLoss() {
        guard let tracer else { return }
        let lost = tracer.lostCounts()
        guard lost != reportedLost else { return }
        let now = WallClock.nowNanoseconds()
        save(.lost(lost, timeNanoseconds: now))
        write(lost: lost, timeNanoseconds: now)
    }

    /// Tells the sink what was lost since the last report: the kernel's
    /// counters now stand at `lost`.
    private func write(lost: LostCounts, timeNanoseconds: UInt64) {
        let gained = lost.since(reportedLost)
        reportedLost = lost
        summary.lost = lost
        guard outputError == nil else { return }
        do {
            try sink.writeLost(gained, timeNanoseconds: timeNanoseconds)
        } catch { outputError = error }
    }

    /// Flushes the sink; the raw log is written in whole blocks and
    /// finished last, since no one reads it live.
    private func flushOutput() {
        guard outputError == nil else { return }
        do { try sink.flush() } catch { outputError = error }
    }
}
