import Glibc

/// Starting and reaping the programs tlstap runs (the traced command, the
/// demo's server and client) with posix_spawn, which is safe to call from a
/// multithreaded Swift process where fork is not.
public enum ChildProcess {
    /// Starts `arguments[0]` (a path) with the rest as its arguments.
    /// - Parameter quiet: send its stdout and stderr to /dev/null.
    /// - Returns: its PID.
    public static func spawn(_ arguments: [String], quiet: Bool = false) throws(LoaderError) -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if quiet {
            posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0)
            posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0)
        }
        // The child starts as if from a shell: no signal blocked, and the
        // ones tlstap catches or ignores (SIGINT, SIGTERM, SIGPIPE) at their defaults.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var emptyMask = sigset_t()
        sigemptyset(&emptyMask)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGINT, SIGTERM, SIGPIPE, SIGQUIT, SIGHUP] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigmask(&attributes, &emptyMask)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for argument in argv { free(argument) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, arguments[0], &actions, &attributes, &argv, environ)
        guard result == 0 else { throw .system("cannot start \(arguments[0])", errno: result) }
        return pid
    }

    /// Runs a program to its end.
    /// - Returns: its exit status as a shell reports it.
    public static func run(_ arguments: [String], quiet: Bool = true) throws(LoaderError) -> Int32 {
        guard let program = arguments.first, let path = resolve(program) else {
            throw LoaderError("cannot run '\(arguments.first ?? "")': no such command in PATH")
        }
        let pid = try spawn([path] + arguments.dropFirst(), quiet: quiet)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return shellExitStatus(status)
    }

    /// Reaps `pid` if it has ended.
    /// - Returns: its exit status as a shell reports it, or nil while it runs.
    public static func exitStatusIfEnded(_ pid: pid_t) -> Int32? {
        var status: Int32 = 0
        let result = waitpid(pid, &status, WNOHANG)
        return result == pid ? shellExitStatus(status) : nil
    }

    /// The full path of `program`, searched in PATH when it has no slash.
    public static func resolve(_ program: String) -> String? {
        if program.contains("/") {
            var info = stat()
            return stat(program, &info) == 0 && info.st_mode & S_IFMT == S_IFREG && access(program, X_OK) == 0
                ? program : nil
        }
        let searchPath = getenv("PATH").map { String(cString: $0) } ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in searchPath.split(separator: ":") {
            let candidate = "\(directory)/\(program)"
            var info = stat()
            if stat(candidate, &info) == 0, info.st_mode & S_IFMT == S_IFREG, access(candidate, X_OK) == 0 {
                return candidate
            }
        }
        return nil
    }

    /// Why `program`, which `resolve` did not find, cannot run.
    public static func whyNotRunnable(_ program: String) -> String {
        guard program.contains("/") else { return "no such command in PATH" }
        var info = stat()
        guard stat(program, &info) == 0 else { return String(cString: strerror(errno)).lowercased() }
        if info.st_mode & S_IFMT == S_IFDIR { return "it is a directory" }
        return "it is not executable"
    }
}

/// Exit status of a child, the way a shell reports it: the exit code, or
/// 128 + the signal number when a signal ended it.
public func shellExitStatus(_ waitStatus: Int32) -> Int32 {
    let signal = waitStatus & 0x7f
    return signal == 0 ? (waitStatus >> 8) & 0xff : 128 + signal
}
