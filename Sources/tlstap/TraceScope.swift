import ArgumentParser
import Glibc
import Logging
import TLSTapCore
import TLSTapLoader
import TLSTapSession

/// What to trace, and how a run goes: shared by `trace` and `record`.
struct TraceScope: ParsableArguments {
    @Option(
        name: [.short, .customLong("pid")], parsing: .upToNextOption,
        help: ArgumentHelp(
            "Trace these processes and the processes they fork (-p 12 34, -p 12,34, or -p again).", valueName: "pid"))
    var pidArguments: [String] = []

    /// The PIDs of -p, each argument a number or a comma-separated list (checked in `validate`).
    var pids: [Int32] { pidArguments.flatMap { $0.split(separator: ",").compactMap { Int32($0) } } }

    @Flag(name: .customLong("no-children"), help: "With -p: only the given processes, not their children.")
    var noChildren = false

    @Option(name: [.short, .customLong("comm")], help: "Trace processes with this command name (repeatable).")
    var comms: [String] = []

    @Option(name: .customLong("port"), help: "Only connections with this local or remote TCP port (repeatable).")
    var ports: [UInt16] = []

    @Option(name: .customLong("host"), help: "Only connections with this local or remote IP address (repeatable).")
    var hosts: [String] = []

    @Flag(help: "Also capture unencrypted TCP payload (lib \"socket\"); TLS sockets' ciphertext is never shown.")
    var plaintext = false

    @Option(
        name: .customLong("ring-buffer-mib"), parsing: .unconditional,
        help: "Ring buffer size in MiB, a power of two; tlstap holds up to 8 times that while rendering is behind.")
    var ringBufferMiB: Int = 32

    @Argument(parsing: .postTerminator, help: "A command to run and trace, with every process it forks.")
    var command: [String] = []

    func validate() throws {
        for argument in pidArguments {
            for word in argument.split(separator: ",", omittingEmptySubsequences: false) {
                guard Int32(word) != nil else {
                    throw ValidationError("'\(word)' is not a PID: -p takes process numbers (-p 12 34 or -p 12,34)")
                }
            }
        }
        for pid in pids {
            guard pid > 0 else { throw ValidationError("'\(pid)' is not a valid PID") }
            guard kill(pid, 0) == 0 || errno == EPERM else {
                throw ValidationError("no process with PID \(pid) exists")
            }
        }
        for comm in comms {
            guard !comm.isEmpty, comm.utf8.count <= 15 else {
                throw ValidationError("command name '\(comm)' must be 1 to 15 bytes long, as the kernel keeps it")
            }
        }
        if ports.contains(0) { throw ValidationError("--port must be from 1 to 65535") }
        for host in hosts where SocketAddress(host: host) == nil {
            throw ValidationError("--host '\(host)' is not an IPv4 or IPv6 address")
        }
        guard (1...1024).contains(ringBufferMiB), ringBufferMiB & (ringBufferMiB - 1) == 0 else {
            throw ValidationError("--ring-buffer-mib must be a power of two from 1 to 1024")
        }
        if noChildren && pids.isEmpty {
            throw ValidationError("--no-children narrows -p/--pid; give the processes with -p")
        }
        if !command.isEmpty && !pids.isEmpty {
            throw ValidationError("-p/--pid and -- COMMAND cannot be combined: the command is the scope")
        }
        if !command.isEmpty && !comms.isEmpty {
            throw ValidationError("-c/--comm and -- COMMAND cannot be combined: the command is the scope")
        }
        if let program = command.first, ChildProcess.resolve(program) == nil {
            throw ValidationError("cannot run '\(program)': \(ChildProcess.whyNotRunnable(program))")
        }
    }

    var ringBufferBytes: UInt32 { UInt32(ringBufferMiB) << 20 }

    /// Traces the scope until Ctrl-C, or until the command and all it
    /// started have exited, with the session `makeSession` loads for the
    /// scope's filters (it is told whether tlstap runs a command, which then
    /// shares tlstap's standard output).
    func trace(logger: Logger, makeSession: (TraceFilters, _ runsCommand: Bool) throws -> TraceSession) throws {
        try Privileges.requireTracing()
        StopSignals.holdUntilCaught()

        var filters = TraceFilters(
            pids: pids, comms: comms, ports: ports, hosts: hosts.compactMap { SocketAddress(host: $0) })
        filters.plaintext = plaintext
        filters.followChildren = !noChildren
        let cgroup = command.isEmpty ? nil : try CommandCgroup()
        filters.cgroupID = cgroup?.id

        let session = try makeSession(filters, !command.isEmpty)
        if filters.followChildren && !pids.isEmpty {
            // Forks are followed in the kernel from now on; the children already there are found here.
            let descendants = Set(pids.flatMap(ProcessTree.descendants)).subtracting(pids).sorted()
            try session.trace(pids: descendants)
            filters.pids += descendants
        }
        try session.attach(try AttachPlan.make(for: filters))
        if let program = command.first.flatMap(ChildProcess.resolve) { session.attachLinkedTLS(path: program) }
        do {
            let kept = try Privileges.dropAfterAttach(attachingLater: session.followsExecs)
            logger.info("probes attached; capabilities dropped but \(kept.joined(separator: ", "))")
        } catch {
            logger.warning("\(error)")
        }
        let signals = StopSignals()

        // Started only now, with every probe in place, so its first call is seen.
        let traced = try cgroup.map { cgroup throws(LoaderError) in try TracedCommand(command, in: cgroup) }
        if traced == nil {
            FileHandleOutput.standardError("tlstap: tracing; press Ctrl-C to stop\n")
        }
        var signalsForwarded = 0
        try session.run {
            guard let traced else { return signals.count > 0 }
            if signals.count > signalsForwarded {
                signalsForwarded = signals.count
                traced.forward(signals.last)
            }
            // A second signal stops tlstap even if the command ignores the first.
            return traced.isFinished || signals.count > 1
        }
        FileHandleOutput.standardError(session.summary.line + "\n")
        if session.summary.lost.records > 0 {
            FileHandleOutput.standardError(
                "tlstap: the \(ringBufferMiB) MiB ring buffer filled faster than tlstap emptied it; "
                    + "--ring-buffer-mib \(min(ringBufferMiB * 4, 1024)) would absorb longer stalls\n")
        }
        if let status = traced?.exitStatus, status != 0 {
            throw ExitCode(status)
        }
    }
}
