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

/// Where a run's records come from, and what a live run does beyond
/// rendering them. Three sources feed one `RecordPipeline` (decoding,
/// reassembly, connections, protocols, the sink): the live ring buffer
/// (emptied by a thread of its own into a bounded spool while this one
/// renders), a recording (`tlstap record`: the ring's pages go to a file,
/// data records are only counted), and a saved capture (`replay`). A live
/// run also attaches probes to new code as processes exec or map it,
/// deletes the kernel-side state of processes that exit, saves the raw log
/// (`--save-raw`) and reports the kernel's loss counters. When rendering
/// falls behind, the spool fills, then the ring: the overflow is counted in
/// the kernel and reported, instead of piling up in tlstap's memory.
public final class TraceSession {
    private var tracer: Tracer?
    private let logger: Logger
    /// The stages every record goes through, to the sink.
    private let pipeline: RecordPipeline
    /// Where every raw record is also saved (`--save-raw`, `tlstap record`).
    /// A constant, so that a record reaches it without a retain.
    private let rawLog: OutputFile?
    /// Where the ring buffer's bytes go as they lie (`tlstap record`):
    /// data records are then only counted, never decoded.
    private let recording: RingCaptureFile?
    /// What moves the ring's bytes to `recording`.
    private var recorder: RingRecorder?
    /// When a replayed capture stopped, from its note.
    private var stoppedAtNanoseconds: UInt64?
    private var finished = false
    /// While `run` renders: the records the draining thread copied out of
    /// the ring. Set and cleared on the rendering thread, around the
    /// draining thread's life.
    private var spool: RecordSpool?
    /// How much the draining thread may hold while rendering is behind, or
    /// `recorder` while the disk is: eight times the ring buffer, so
    /// `--ring-buffer-mib` sizes both.
    private var spoolLimitBytes = 256 << 20
    /// Tells the draining thread to end.
    private let drainingStops = Atomic<Bool>(false)
    /// While the draining thread runs: where it hands the processes that
    /// are about to run new code, so that it never waits for an attach.
    private var newCodeThread: NewCodeThread?
    /// Files with probes, so a program exec'd again is not attached twice.
    private var attachedFiles = Set<FileIdentity>()
    /// Whether programs exec'd later are examined for linked-in TLS, and
    /// probes attached to them (all scopes but -p, whose probes are bound to
    /// the given processes).
    public private(set) var followsExecs = false
    /// What the run captured so far.
    public var summary: TraceSummary { pipeline.summary }

    /// What every session starts from; a live one adds its tracer.
    /// - Parameter live: records come from this host now, so the role of a
    ///   connection opened before the capture is guessed from the sockets
    ///   listening here (not in a replay, whose host may be another).
    private init(
        sink: EventSink?, http: HTTPLimits?, clock: WallClock, live: Bool, rawLog: OutputFile? = nil,
        recording: RingCaptureFile? = nil, logger: Logger
    ) {
        self.rawLog = rawLog
        self.logger = logger
        self.recording = recording
        pipeline = RecordPipeline(sink: sink, protocols: http, clock: clock, live: live, logger: logger)
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
        rawLog: OutputFile? = nil, logger: Logger
    ) throws(LoaderError) {
        try self.init(
            filters: filters, ringBufferBytes: ringBufferBytes, sink: sink, http: http, rawLog: rawLog,
            recording: nil, logger: logger)
    }

    /// Loads the programs with `filters` for `tlstap record`: the ring
    /// buffer's bytes go to `recording` as they lie, and nothing is
    /// rendered (`tlstap replay` renders them later). Attach with `attach(_:)`.
    public convenience init(
        filters: TraceFilters, ringBufferBytes: UInt32, recordingTo recording: RingCaptureFile, logger: Logger
    ) throws(LoaderError) {
        try self.init(
            filters: filters, ringBufferBytes: ringBufferBytes, sink: nil, http: nil, rawLog: nil,
            recording: recording, logger: logger)
    }

    private convenience init(
        filters: TraceFilters, ringBufferBytes: UInt32, sink: EventSink?, http: HTTPLimits?, rawLog: OutputFile?,
        recording: RingCaptureFile?, logger: Logger
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
        // The handler runs inside `tracer.poll`, only while this object,
        // which owns the tracer, exists: it holds no reference of its own
        // (no retain and release per record).
        let handle: (UnsafeRawBufferPointer) -> Void =
            recording == nil
            ? { [unowned(unsafe) self] record in received(record) }
            : { [unowned(unsafe) self] record in count(record) }
        tracer = try Tracer(filters: filters, ringBufferBytes: ringBufferBytes, logger: logger, onRecord: handle)
        if let recording, let tracer {
            try tracer.startRingDump()
            recorder = RingRecorder(
                ring: tracer, file: recording, ringBytes: Int(ringBufferBytes), copyLimitBytes: spoolLimitBytes)
        }
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
                return session.pipeline.outputError == nil
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
        if let recorder, !recorder.startWriting() {
            logger.warning("cannot start the writing thread: the ring's bytes are written as they are read")
        }
        var unflushed = false
        var lastFlush: UInt64 = 0
        var batch: [UInt8] = []
        while pipeline.outputError == nil && !shouldStop() {
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
                pipeline.flush()
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
        // The session outlives the thread: `stopDraining` ends it.
        newCodeThread = NewCodeThread { [unowned(unsafe) self] process in newCode(process) }
        guard let thread = PosixThread.start({ [unowned(unsafe) self] in drainUntilStopped() }) else {
            newCodeThread?.stop()
            newCodeThread = nil
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
        // Every process stopped for its probes is attached and continued before the session goes on.
        newCodeThread?.stop()
        newCodeThread = nil
        spool?.take(waitingMilliseconds: 0, into: &batch)
        RecordSpool.forEach(in: batch) { handle($0) }
        spool = nil
    }

    /// A record from the ring buffer: rendered now, or copied into the
    /// spool while a draining thread runs. A process stopped until its new
    /// code has probes goes at once to the thread that attaches them
    /// (`NewCodeThread`), not when rendering reaches its record.
    private func received(_ record: UnsafeRawBufferPointer) {
        guard let spool else { return handle(record) }
        // Only process records decode as such; a data record is not even read.
        if record.count == RecordDecoder.processRecordSize, let process = try? RecordDecoder.decodeProcess(record),
            process.kind != .exit
        {
            if let newCodeThread { newCodeThread.submit(process) } else { newCode(process) }
        }
        spool.add(record)
    }

    /// Drains the ring buffer, emits incomplete calls, reports loss, flushes
    /// and detaches. Called by `run`; safe to call again.
    public func finish() throws {
        if !finished {
            finished = true
            // Detached first: a process BPF stopped for its probes after the last read would stay stopped
            // for good. Its record is in the ring once detach returns, and the drain continues it.
            tracer?.detach()
            if recording == nil { try tracer?.drain() } else { _ = writeRing(waitingMilliseconds: 0) }
            pipeline.stop(at: stoppedAtNanoseconds ?? WallClock.nowNanoseconds())
            reportLoss()
            finishRecording()
            tracer?.close()
            tracer = nil
            pipeline.flush()
            pipeline.finishSink()
            if let rawLog {
                save(.stop(timeNanoseconds: WallClock.nowNanoseconds()))
                do { try rawLog.finish() } catch { pipeline.fail(error) }
            }
        }
        switch pipeline.outputError {
        case nil, .readerClosed?: return
        case let error?: throw error
        }
    }

    /// A record of `tlstap record`, whose bytes go to the file from the
    /// ring itself: a data record is only counted, any other handled as live.
    private func count(_ record: UnsafeRawBufferPointer) {
        if !pipeline.count(record) { handle(record) }
    }

    private func handle(_ record: UnsafeRawBufferPointer) {
        if rawLog != nil {
            // Reached through the optional, not bound by `if let`: a binding retains.
            do { try rawLog?.append { RawRecordLog.append(record, to: &$0) } } catch { pipeline.fail(error) }
        }
        switch pipeline.take(record) {
        case nil:
            break
        case .newCode(let process)?:
            // Already done where the draining thread read it.
            if spool == nil { newCode(process) }
        case .exited(let process)?:
            unprobableStacks.withLock { _ = $0.removeValue(forKey: process.pid) }
            let left = pipeline.processExited(process)
            tracer?.forgetProcess(process.pid, fds: left.fds, tlsObjects: left.tlsObjects)
        case .unprobedTLS(let connection)?:
            tellUnprobedTLS(connection)
        }
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
        pipeline.noteUnprobedTLS(process)
        let seen = unprobableStacks.withLock { $0[connection.pid] }
        let stack = UnprobableTLS.likelyStack(of: pid, comm: comm, seen: seen).map { " (\($0))" } ?? ""
        logger.warning(
            "\(process) speaks TLS to \(connection.remote) from code tlstap cannot probe\(stack): not captured")
    }

    /// Hands the ring's committed bytes to `recorder` in whole blocks,
    /// after handing their records to `count`; the last partial block
    /// waits for more, or for the end.
    /// - Parameter waitingMilliseconds: how long to wait for BPF's wakeup first.
    /// - Returns: the bytes handed over.
    private func writeRing(waitingMilliseconds: Int32) -> Int {
        guard let tracer, let recorder, pipeline.outputError == nil else { return 0 }
        tracer.waitForRecords(timeoutMilliseconds: waitingMilliseconds)
        let block = UInt64(RingCaptureFile.block)
        let handed = recorder.take(through: tracer.scanRing() / block * block)
        if let failure = recorder.writeFailure { pipeline.fail(failure) }
        return handed
    }

    /// Writes the ring's last committed bytes and the capture's trailer.
    private func finishRecording() {
        guard let tracer, let recorder else { return }
        let now = WallClock.nowNanoseconds()
        let trailer: [RawRecordLog.Note] = [.lost(summary.lost, timeNanoseconds: now), .stop(timeNanoseconds: now)]
        recorder.finish(through: tracer.scanRing(), trailer: trailer)
        if let failure = recorder.writeFailure { pipeline.fail(failure) }
        if recorder.copyOuts > 0, let name = recording?.name {
            logger.info(
                """
                writes to \(name) fell behind the ring: \(recorder.copiedOutBytes) bytes waited in memory instead \
                (copied out \(recorder.copyOuts) times)
                """)
        }
        self.recorder = nil
    }

    /// A record of a saved capture: a kernel record, or one of tlstap's notes.
    private func replay(_ record: UnsafeRawBufferPointer) {
        guard RawRecordLog.Note.isNote(record) else { return handle(record) }
        switch RawRecordLog.Note(record) {
        case .clock(let clock)?:
            // A log's first record, before any other.
            pipeline.restart(clock: clock)
        case .lost(let lost, let time)?:
            guard lost != pipeline.reportedLost else { return }
            pipeline.report(lost: lost, timeNanoseconds: time)
        case .stop(let time)?:
            stoppedAtNanoseconds = time
        case nil:
            pipeline.noteMalformed()
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
        do { try rawLog.append { RawRecordLog.append(note, to: &$0) } } catch { pipeline.fail(error) }
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
    /// where new code is handled (`NewCodeThread`), read where records are.
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

    private func reportLoss() {
        guard let tracer else { return }
        let lost = tracer.lostCounts()
        guard lost != pipeline.reportedLost else { return }
        let now = WallClock.nowNanoseconds()
        save(.lost(lost, timeNanoseconds: now))
        pipeline.report(lost: lost, timeNanoseconds: now)
    }
}
