/// One file-backed mapping from /proc/PID/maps.
public struct MappedFile: Equatable, Sendable {
    /// The path as the process sees it (in its own mount namespace).
    public var path: String
    public var inode: UInt64
}

/// Parses /proc/PID/maps.
public enum ProcessMaps {
    /// The distinct files a process maps, in first-seen order.
    /// - Parameter text: the contents of /proc/PID/maps.
    public static func mappedFiles(_ text: String) -> [MappedFile] {
        var seen = Set<String>()
        var files: [MappedFile] = []
        for line in text.split(separator: "\n") {
            // address perms offset dev inode path; the path may contain spaces.
            let fields = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
            guard fields.count == 6, let inode = UInt64(fields[4]), inode != 0 else { continue }
            var path = String(fields[5].trimmingCharacters(in: " "))
            guard path.hasPrefix("/") else { continue }
            if path.hasSuffix(" (deleted)") { path.removeLast(" (deleted)".count) }
            if seen.insert(path).inserted { files.append(MappedFile(path: path, inode: inode)) }
        }
        return files
    }
}
