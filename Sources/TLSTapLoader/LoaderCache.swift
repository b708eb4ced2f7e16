/// Reads the dynamic loader's cache (/etc/ld.so.cache, written by ldconfig)
/// to find where the loader would take a library from, without running
/// ldconfig or hard-coding a path.
///
/// Format (glibc 2.32+, "new format"): the 20-byte magic
/// `glibc-ld.so.cache1.1`, then UInt32 entry count, UInt32 string table size,
/// a flags byte, 3 padding bytes, UInt32 extension offset, 3 unused UInt32;
/// then 24-byte entries (Int32 flags, UInt32 key, UInt32 value, UInt32 OS
/// version, UInt64 hwcap) whose key and value are offsets of NUL-terminated
/// strings from the start of the new-format header. Older files begin with the old
/// format (`ld.so-1.7.0`) and carry the new one after it.
public enum LoaderCache {
    /// One library the cache knows: its soname and the file it resolves to.
    public struct Entry: Equatable, Sendable {
        public var name: String
        public var path: String
    }

    static let newMagic = Array("glibc-ld.so.cache1.1".utf8)
    static let oldMagic = Array("ld.so-1.7.0".utf8)

    /// The entries of a cache file; empty if the bytes are not a cache.
    public static func entries(_ bytes: [UInt8]) -> [Entry] {
        guard let start = newFormatStart(bytes) else { return [] }
        let headerSize = 48
        let entrySize = 24
        guard let count = readUInt32(bytes, start + 20) else { return [] }
        var entries: [Entry] = []
        for index in 0..<Int(count) {
            let entry = start + headerSize + index * entrySize
            guard let key = readUInt32(bytes, entry + 4), let value = readUInt32(bytes, entry + 8),
                let name = string(bytes, at: start + Int(key)), let path = string(bytes, at: start + Int(value))
            else { break }
            entries.append(Entry(name: name, path: path))
        }
        return entries
    }

    private static func newFormatStart(_ bytes: [UInt8]) -> Int? {
        if bytes.starts(with: newMagic) { return 0 }
        guard bytes.starts(with: oldMagic), let count = readUInt32(bytes, 12) else { return nil }
        // Old header (16 bytes) and 12-byte entries, then the new format, aligned to 8.
        let start = (16 + Int(count) * 12 + 7) & ~7
        return bytes.count > start && bytes[start...].starts(with: newMagic) ? start : nil
    }

    private static func readUInt32(_ bytes: [UInt8], _ offset: Int) -> UInt32? {
        guard offset >= 0, offset + 4 <= bytes.count else { return nil }
        return (0..<4).reduce(0) { $0 | UInt32(bytes[offset + $1]) << (8 * UInt32($1)) }
    }

    private static func string(_ bytes: [UInt8], at offset: Int) -> String? {
        guard offset >= 0, offset < bytes.count, let end = bytes[offset...].firstIndex(of: 0) else { return nil }
        return String(decoding: bytes[offset..<end], as: UTF8.self)
    }
}
