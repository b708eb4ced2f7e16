import Glibc
import TLSTapLoader

/// The command of `tlstap -- COMMAND`, started in its own cgroup so that it
/// and everything it forks are traced, and followed until all of them are gone.
public final class TracedCommand: @unchecked Sendable {
    /// The cgroup whose id the BPF filter matches.
    public let cgroup: CommandCgroup
    /// The command's own PID.
    public let pid: pid_t
    private var status: Int32?

    /// Starts `arguments` inside `cgroup`.
    public init(_ arguments: [String], in cgroup: CommandCgroup) throws(LoaderError) {
        self.cgroup = cgroup
        self.pid = try cgroup.spawn(arguments)
    }

    /// The command's exit status (as a shell reports it) once it has ended.
    public var exitStatus: Int32? {
        if status == nil { status = ChildProcess.exitStatusIfEnded(pid) }
        return status
    }

    /// Whether the command has ended and left no process behind in its cgroup.
    public var isFinished: Bool {
        exitStatus != nil && !cgroup.isPopulated
    }

    /// Passes a stop signal on to the command.
    public func forward(_ signal: Int32) {
        kill(pid, signal)
    }
}
