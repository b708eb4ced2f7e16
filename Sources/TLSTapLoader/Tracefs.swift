import Glibc

/// tracefs, where tracepoint ids live. A fresh machine may not have it
/// mounted; tlstap mounts it at the standard place when it needs it.
public enum Tracefs {
    static let standardPath = "/sys/kernel/tracing"

    /// Where tracefs is mounted, from /proc/self/mountinfo.
    public static func mountPoint() -> String? {
        ProcFS.mountPoint(ofType: "tracefs")
    }

    /// Mounts tracefs at /sys/kernel/tracing unless it is mounted already.
    /// - Returns: the mount point.
    @discardableResult
    public static func ensureMounted() throws(LoaderError) -> String {
        if let existing = mountPoint() { return existing }
        guard mount("nodev", standardPath, "tracefs", 0, nil) == 0 else {
            throw .system("cannot mount tracefs at \(standardPath)", errno: errno)
        }
        return standardPath
    }
}
