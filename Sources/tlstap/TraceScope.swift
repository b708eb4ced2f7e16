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

    @Option(
        name: [.short, .customLong("comm")],
        help: "Trace threads with this command name, as they are named now (repeatable).")
    var comms: [String] = []

    @Option(name: .customLong("port"), help: "Only connections with this local or remote TCP port (repeatable).")
    var ports: [UInt16] = []

    @Option(name: .customLong("host"), help: "Only connections with this local or remote IP address (repeatable).")
    var hosts: [String] = []

    @Flag(help: "Also capture unencrypted TCP payload (lib \"socket\"); TLS sockets' ciphertext is never shown.")
    var plaintext = false

    @Option(
        name: .customLong("ring-buffer-mib"), parsing: .unconditional,
        help: "Ring buffer size in MiB, a power of two; tlstap holds up to 8 times that while output is behind.")
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

    /// The scope as the library takes it.
    var captureScope: Capture.Scope {
        var scope = Capture.Scope()
        scope.pids = pids
        scope.followsChildren = !noChildren
        scope.comms = comms
        scope.command = command
        scope.ports = ports
        scope.hosts = hosts.compactMap { SocketAddress(host: $0) }
        scope.plaintext = plaintext
        scope.ringBufferBytes = UInt32(ringBufferMiB) << 20
        return scope
    }

    /// Runs the capture `makeCapture` sets up for this scope (once tracing
    /// is known to be allowed, so that no output file is made in vain),
    /// with the lines tlstap prints around it, and exits as the command did.
    func run(logger: Logger, makeCapture: (Capture.Scope) throws -> Capture) throws {
        try Privileges.requireTracing()
        let capture = try makeCapture(captureScope)
        let outcome = try capture.run(ready: {
            if command.isEmpty { FileHandleOutput.standardError("tlstap: tracing; press Ctrl-C to stop\n") }
        })
        FileHandleOutput.standardError(outcome.summary.line + "\n")
        if outcome.summary.lost.records > 0 {
            FileHandleOutput.standardError(
                "tlstap: the \(ringBufferMiB) MiB ring buffer filled faster than tlstap emptied it; "
                    + "--ring-buffer-mib \(min(ringBufferMiB * 4, 1024)) would absorb longer stalls\n")
        }
        if let status = outcome.commandExitStatus, status != 0 {
            throw ExitCode(status)
        }
    }
}
