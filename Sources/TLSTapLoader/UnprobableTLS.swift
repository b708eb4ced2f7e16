import Glibc
import Synchronization

/// TLS stacks tlstap can see in a process but cannot probe: TLS written in
/// Java (JSSE), and TLS libraries built into a file without the symbols
/// tlstap attaches to (grpcio's wheels embed BoringSSL so). What
/// `tlstap check -p` names, and what a live run names when a process sends
/// TLS records from code no probe covers.
public enum UnprobableTLS {
    /// One stack found: what it is, and the file it is in.
    public struct Finding: Equatable, Sendable {
        public var stack: String
        public var path: String
    }

    /// Per file read, the stack found in it (nil: none).
    private static let cache = Mutex<[FileIdentity: String?]>([:])

    /// The stacks process `pid` maps that tlstap cannot probe, leaving out
    /// the files in `probed`; empty if there are none or its maps are gone.
    public static func findings(in pid: Int32, probed: Set<String> = []) -> [Finding] {
        guard let maps = try? ProcFS.readText("/proc/\(pid)/maps") else { return [] }
        return ProcessMaps.mappedFiles(maps).compactMap { file in
            let path = "/proc/\(pid)/root" + file.path
            guard !probed.contains(path), let stack = stack(inFile: path, named: file.path) else { return nil }
            return Finding(stack: stack, path: file.path)
        }
    }

    /// A sentence for what `pid` speaks TLS with: `seen` (found when it
    /// mapped the file), the stacks it maps, or the one its command name
    /// suggests (the process may be gone already).
    public static func likelyStack(of pid: Int32, comm: String, seen: String? = nil) -> String? {
        if let seen { return seen }
        let found = findings(
            in: pid,
            probed: Set(LibraryDiscovery.distinct((try? LibraryDiscovery.tlsLibraries(of: pid)) ?? []).map(\.path)))
        if let first = found.first { return first.stack }
        return comm == "java" ? javaStack : nil
    }

    static let javaStack = "Java's own TLS, JSSE"

    /// The stack in one file a process maps (`name` is its path as the
    /// process sees it, `path` one that reaches it from here), read once
    /// per file; nil if none.
    public static func stack(inFile path: String, named name: String) -> String? {
        let fileName = name.split(separator: "/").last.map(String.init) ?? name
        if fileName == "libjvm.so" { return javaStack }
        guard fileName != "libssl.so.3", !fileName.hasPrefix("libc.so"), let identity = ProcFS.fileIdentity(path) else {
            return nil
        }
        if let known = cache.withLock({ $0[identity] }) { return known }
        let found = fileContains(path, "BoringSSL") ? "BoringSSL built into \(fileName) without symbols" : nil
        cache.withLock { $0[identity] = found }
        return found
    }

    /// Whether `text` occurs in the file at `path`, mapped for the search:
    /// memchr finds each candidate first byte, memcmp checks the rest (a
    /// 17 MB library in milliseconds).
    private static func fileContains(_ path: String, _ text: String) -> Bool {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var status = stat()
        let needle = Array(text.utf8)
        guard fstat(fd, &status) == 0, status.st_size >= needle.count else { return false }
        let size = Int(status.st_size)
        guard let mapped = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), mapped != MAP_FAILED else { return false }
        defer { munmap(mapped, size) }
        let base = UnsafeRawPointer(mapped)
        var offset = 0
        let last = size - needle.count
        while offset <= last {
            guard let found = memchr(base + offset, Int32(needle[0]), last - offset + 1) else { return false }
            offset = base.distance(to: UnsafeRawPointer(found))
            if memcmp(base + offset, needle, needle.count) == 0 { return true }
            offset += 1
        }
        return false
    }
}
