import Glibc

/// Small readers for /proc and /sys files, which report a size of 0 and must
/// be read until EOF.
enum ProcFS {
    static func readBytes(_ path: String) throws(LoaderError) -> [UInt8] {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw .system("cannot open \(path)", errno: errno) }
        defer { close(descriptor) }
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw .system("cannot read \(path)", errno: errno)
            }
            if count == 0 { return result }
            result.append(contentsOf: chunk[..<count])
        }
    }

    static func readText(_ path: String) throws(LoaderError) -> String {
        String(decoding: try readBytes(path), as: UTF8.self)
    }

    /// Where a filesystem of `type` (e.g. "cgroup2") is mounted,
    /// from /proc/self/mountinfo: `id parent dev root mountpoint ... - type source ...`.
    static func mountPoint(ofType type: String) -> String? {
        guard let mounts = try? readText("/proc/self/mountinfo") else { return nil }
        for line in mounts.split(separator: "\n") {
            let halves = line.split(separator: " - ", maxSplits: 1)
            guard halves.count == 2, halves[1].hasPrefix(type + " ") else { continue }
            let fields = halves[0].split(separator: " ")
            if fields.count > 4 { return String(fields[4]) }
        }
        return nil
    }

    /// The names in a directory, without "." and "..".
    static func directoryEntries(_ path: String) throws(LoaderError) -> [String] {
        guard let directory = opendir(path) else { throw .system("cannot list \(path)", errno: errno) }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    static func exists(_ path: String) -> Bool {
        access(path, F_OK) == 0
    }

    /// Device and inode of a file, which name it whatever path reaches it.
    static func fileIdentity(_ path: String) -> FileIdentity? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return FileIdentity(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
    }
}

/// A file named by device and inode: uprobes attach to inodes, so two paths
/// to one file must be attached once.
public struct FileIdentity: Hashable, Sendable {
    public var device: UInt64
    public var inode: UInt64
}

/// Path questions the session asks about processes.
public enum ProcFSPaths {
    /// Whether two paths name the same file (device and inode).
    public static func sameFile(_ first: String, _ second: String) -> Bool {
        guard let a = ProcFS.fileIdentity(first), let b = ProcFS.fileIdentity(second) else { return false }
        return a == b
    }
}

/// Parent and child links between the processes running now, from /proc.
public enum ProcessTree {
    /// Every process `pid` started that is still running, and theirs, and
    /// so on (not `pid` itself).
    public static func descendants(of pid: Int32) -> [Int32] {
        var children: [Int32: [Int32]] = [:]
        for process in LibraryDiscovery.allProcesses() {
            if let parent = parent(of: process) { children[parent, default: []].append(process) }
        }
        var found: [Int32] = []
        var waiting = children[pid] ?? []
        while let next = waiting.popLast() {
            found.append(next)
            waiting += children[next] ?? []
        }
        return found.sorted()
    }

    /// The parent PID of `pid` (field 4 of /proc/PID/stat, after the
    /// command name, which may hold spaces and parentheses), or nil.
    static func parent(of pid: Int32) -> Int32? {
        guard let stat = try? ProcFS.readText("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else {
            return nil
        }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > 1 ? Int32(fields[1]) : nil
    }
}
