import Glibc

/// A cgroup v2 made for the processes `tlstap -- COMMAND` starts, so that the
/// BPF filter can name them and every process they fork by one cgroup id.
///
/// It is created next to tlstap's own cgroup (so it stays inside whatever
/// delegation tlstap runs in) and removed by `remove()` once empty.
public final class CommandCgroup {
    /// The cgroup's directory.
    public let path: String
    /// The cgroup id BPF sees (`bpf_get_current_cgroup_id`): the directory's inode.
    public let id: UInt64

    /// Creates the cgroup.
    public init() throws(LoaderError) {
        guard let mount = Self.cgroup2MountPoint() else {
            throw LoaderError("`tlstap -- COMMAND` needs the cgroup v2 hierarchy, and none is mounted")
        }
        let own =
            (try? ProcFS.readText("/proc/self/cgroup"))?.split(separator: "\n")
            .first { $0.hasPrefix("0::") }.map { String($0.dropFirst(3)) } ?? "/"
        let parentPath = own.split(separator: "/").dropLast().joined(separator: "/")
        let path = mount + (parentPath.isEmpty ? "" : "/" + parentPath) + "/tlstap-\(getpid())"
        guard mkdir(path, 0o755) == 0 || errno == EEXIST else {
            throw .system("cannot create the cgroup \(path)", errno: errno)
        }
        guard let identity = ProcFS.fileIdentity(path) else { throw .system("cannot stat \(path)", errno: errno) }
        self.path = path
        self.id = identity.inode
    }

    /// Starts `arguments` inside the cgroup. A shell moves itself into the
    /// cgroup and then execs the command, so nothing runs outside it.
    /// - Parameters:
    ///   - arguments: the program (looked up in PATH) and its arguments.
    ///   - workingDirectory: where it starts, or tlstap's own directory.
    ///   - quiet: send its stdout and stderr to /dev/null.
    /// - Returns: its PID.
    public func spawn(_ arguments: [String], workingDirectory: String? = nil, quiet: Bool = false)
        throws(LoaderError) -> pid_t
    {
        guard let program = arguments.first else { throw LoaderError("no command given after --") }
        guard let resolved = ChildProcess.resolve(program) else {
            throw LoaderError("cannot run '\(program)': no such command in PATH")
        }
        let script =
            "echo 0 > \"$0\" || exit 125; " + (workingDirectory == nil ? "" : "cd \"$1\" || exit 125; ")
            + "shift; exec \"$@\""
        let shellArguments =
            ["/bin/sh", "-c", script, path + "/cgroup.procs", workingDirectory ?? "."]
            + [resolved] + arguments.dropFirst()

        return try ChildProcess.spawn(shellArguments, quiet: quiet)
    }

    /// Whether any process is still in the cgroup (cgroup.events `populated`).
    public var isPopulated: Bool {
        guard let events = try? ProcFS.readText(path + "/cgroup.events") else { return false }
        return events.split(separator: "\n").contains("populated 1")
    }

    /// Removes the cgroup; fails quietly while processes remain in it.
    public func remove() {
        rmdir(path)
    }

    deinit {
        remove()
    }

    static func cgroup2MountPoint() -> String? {
        ProcFS.mountPoint(ofType: "cgroup2")
    }
}
