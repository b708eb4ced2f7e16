import Glibc

/// Reads the function symbols of an ELF64 little-endian file (.dynsym and
/// .symtab), to find TLS libraries linked statically into executables or
/// other shared objects. Reads only headers and symbol tables, with pread.
public enum ELFSymbols {
    /// The OpenSSL-compatible library linked into the file at `path`: looks in
    /// the exported symbols (.dynsym, small) first and in .symtab only if
    /// that finds nothing, so a large executable is examined quickly.
    public static func embeddedOpenSSL(inFile path: String) -> (prefix: String, boringSSL: Bool)? {
        // Only names that can matter are kept: a large binary exports tens of thousands.
        let relevant = { (name: Substring) in name.contains("SSL_") }
        if let exported = functionNames(path, tables: [11], keeping: relevant),
            let found = embeddedOpenSSL(in: exported)
        {
            return found
        }
        return functionNames(path, tables: [2], keeping: relevant).flatMap(embeddedOpenSSL(in:))
    }

    /// Defined function names of the file at `path`, or nil if it is not a
    /// readable ELF64 file.
    /// - Parameter tables: section types to read: 2 (.symtab), 11 (.dynsym).
    /// - Parameter keeping: which names to collect.
    public static func functionNames(
        _ path: String, tables: Set<UInt32> = [2, 11], keeping: (Substring) -> Bool = { _ in true }
    ) -> Set<String>? {
        guard let file = ELFFile(path: path) else { return nil }
        var names = Set<String>()
        file.forEachFunction(in: tables) { name, _, _ in
            if keeping(name) { names.insert(String(name)) }
        }
        return names
    }

    /// The OpenSSL-compatible TLS library in a file's symbols, if any: its
    /// symbol prefix (empty for OpenSSL's own names; BoringSSL as vendored by
    /// swift-nio-ssl prefixes every symbol) and whether it is BoringSSL.
    public static func embeddedOpenSSL(in names: Set<String>) -> (prefix: String, boringSSL: Bool)? {
        for name in names where name.hasSuffix("SSL_write") {
            let prefix = String(name.dropLast("SSL_write".count))
            guard prefix.isEmpty || prefix.hasSuffix("_"), names.contains(prefix + "SSL_read") else { continue }
            let boring =
                names.contains(prefix + "SSL_CTX_set_grease_enabled") || names.contains(prefix + "BORINGSSL_self_test")
            return (prefix, boring)
        }
        return nil
    }
}

extension ELFSymbols {
    /// A function symbol's place in the file.
    public struct Function: Equatable, Sendable {
        public var address: UInt64
        public var size: UInt64
        /// Where its first byte is in the file (address translated through PT_LOAD).
        public var fileOffset: UInt64
    }

    /// The named function symbols of the file at `path` (.symtab and .dynsym).
    public static func functions(_ path: String, named wanted: Set<String>) -> [String: Function]? {
        guard let file = ELFFile(path: path) else { return nil }
        var found: [String: Function] = [:]
        file.forEachFunction(in: [2, 11]) { name, address, size in
            guard wanted.contains(String(name)), let offset = file.fileOffset(ofAddress: address) else { return }
            found[String(name)] = Function(address: address, size: size, fileOffset: offset)
        }
        return found
    }

    /// The named functions of a Go executable, from its function table
    /// (.gopclntab), which the runtime needs and so stays in stripped
    /// binaries. Go 1.18 and later (magic 0xfffffff0 or 0xfffffff1); nil for
    /// other files. A function's size runs to the next function's entry.
    public static func goFunctions(_ path: String, named wanted: Set<String>) -> [String: Function]? {
        // Position-independent executables keep it in the relocation read-only data.
        guard let file = ELFFile(path: path),
            let table = file.section(named: ".gopclntab") ?? file.section(named: ".data.rel.ro.gopclntab"),
            let bytes = file.bytes(at: table.offset, count: Int(table.size)), bytes.count >= 72,
            [0xffff_fff0, 0xffff_fff1].contains(bytes.uint32(0)), bytes[7] == 8
        else { return nil }
        let count = Int(clamping: bytes.uint64(8))
        // Function entries are offsets from runtime.text, the start of .text
        // (the header's copy of that address is 0 in position-independent files).
        let textStart = bytes.uint64(24) != 0 ? bytes.uint64(24) : file.section(named: ".text")?.address ?? 0
        let names = Int(clamping: bytes.uint64(32))
        let functionTable = Int(clamping: bytes.uint64(64))
        guard count > 0, functionTable < bytes.count, functionTable + (count + 1) * 8 <= bytes.count else { return nil }
        var found: [String: Function] = [:]
        for index in 0..<count {
            let entry = functionTable + index * 8
            let function = functionTable + Int(bytes.uint32(entry + 4))
            guard function + 8 <= bytes.count else { continue }
            let nameStart = names + Int(Int32(bitPattern: bytes.uint32(function + 4)))
            guard nameStart >= 0, nameStart < bytes.count, let nameEnd = bytes[nameStart...].firstIndex(of: 0) else {
                continue
            }
            let name = String(decoding: bytes[nameStart..<nameEnd], as: UTF8.self)
            guard wanted.contains(name) else { continue }
            let start = UInt64(bytes.uint32(entry))
            let end = UInt64(bytes.uint32(entry + 8))
            guard end > start, let offset = file.fileOffset(ofAddress: textStart + start) else { continue }
            found[name] = Function(address: textStart + start, size: end - start, fileOffset: offset)
        }
        return found
    }

    /// `count` bytes of the file at `offset`.
    public static func bytes(_ path: String, at offset: UInt64, count: Int) -> [UInt8]? {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        return ELFFile.read(descriptor, offset, count)
    }
}

/// An open ELF64 little-endian file: its section headers and loadable
/// segments, read with pread; symbol tables are read on demand.
private final class ELFFile {
    private let descriptor: Int32
    private let header: [UInt8]
    private let sections: [UInt8]
    private let sectionSize: Int
    private let sectionCount: Int
    /// PT_LOAD segments: how addresses map to file offsets.
    private var segments: [(address: UInt64, size: UInt64, offset: UInt64)] = []

    init?(path: String) {
        descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        guard let header = Self.read(descriptor, 0, 64), header.starts(with: [0x7f, 0x45, 0x4c, 0x46, 2, 1]) else {
            close(descriptor)
            return nil
        }
        self.header = header
        sectionSize = Int(header.uint16(0x3a))
        sectionCount = Int(header.uint16(0x3c))
        guard sectionSize >= 64, sectionCount > 0, sectionCount < 65_536,
            let sections = Self.read(descriptor, header.uint64(0x28), sectionSize * sectionCount)
        else {
            close(descriptor)
            return nil
        }
        self.sections = sections
        let programSize = Int(header.uint16(0x36))
        let programCount = Int(header.uint16(0x38))
        if programSize >= 56, let programs = Self.read(descriptor, header.uint64(0x20), programSize * programCount) {
            for index in 0..<programCount where programs.uint32(index * programSize) == 1 {  // PT_LOAD
                let base = index * programSize
                segments.append(
                    (programs.uint64(base + 0x10), programs.uint64(base + 0x20), programs.uint64(base + 0x08)))
            }
        }
    }

    deinit {
        close(descriptor)
    }

    /// The section called `name`: where it is in the file and in memory.
    func section(named name: String) -> (offset: UInt64, size: UInt64, address: UInt64)? {
        let namesIndex = Int(header.uint16(0x3e))
        guard namesIndex < sectionCount,
            let names = Self.read(
                descriptor, sections.uint64(namesIndex * sectionSize + 0x18),
                Int(sections.uint64(namesIndex * sectionSize + 0x20)))
        else { return nil }
        let wanted = Array(name.utf8) + [0]
        for index in 0..<sectionCount {
            let base = index * sectionSize
            let nameOffset = Int(sections.uint32(base))
            guard nameOffset + wanted.count <= names.count,
                names[nameOffset..<nameOffset + wanted.count].elementsEqual(wanted)
            else { continue }
            return (sections.uint64(base + 0x18), sections.uint64(base + 0x20), sections.uint64(base + 0x10))
        }
        return nil
    }

    /// `count` bytes at `offset`.
    func bytes(at offset: UInt64, count: Int) -> [UInt8]? {
        Self.read(descriptor, offset, count)
    }

    /// Where the byte at virtual address `address` is in the file.
    func fileOffset(ofAddress address: UInt64) -> UInt64? {
        segments.first { address >= $0.address && address < $0.address + $0.size }
            .map { address - $0.address + $0.offset }
    }

    /// Calls `body` with each defined function symbol (name, address, size)
    /// of the symbol tables of the given section types.
    func forEachFunction(in tables: Set<UInt32>, _ body: (Substring, UInt64, UInt64) -> Void) {
        for index in 0..<sectionCount {
            let base = index * sectionSize
            guard tables.contains(sections.uint32(base + 4)) else { continue }  // SHT_SYMTAB 2, SHT_DYNSYM 11
            let link = Int(sections.uint32(base + 0x28))
            guard link < sectionCount,
                let symbols = Self.read(descriptor, sections.uint64(base + 0x18), Int(sections.uint64(base + 0x20))),
                let strings = Self.read(
                    descriptor, sections.uint64(link * sectionSize + 0x18),
                    Int(sections.uint64(link * sectionSize + 0x20)))
            else { continue }
            for offset in stride(from: 0, to: symbols.count - 23, by: 24) {
                // STT_FUNC, and defined (a section index other than 0).
                guard symbols[offset + 4] & 0xf == 2, symbols.uint16(offset + 6) != 0 else { continue }
                let nameOffset = Int(symbols.uint32(offset))
                guard nameOffset < strings.count, let end = strings[nameOffset...].firstIndex(of: 0) else { continue }
                body(
                    Substring(decoding: strings[nameOffset..<end], as: UTF8.self), symbols.uint64(offset + 8),
                    symbols.uint64(offset + 16))
            }
        }
    }

    static func read(_ descriptor: Int32, _ offset: UInt64, _ count: Int) -> [UInt8]? {
        guard count >= 0, count <= 256 << 20 else { return nil }
        var bytes = [UInt8](repeating: 0, count: count)
        let got = bytes.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, count, off_t(offset)) }
        return got == count ? bytes : nil
    }
}

extension Array where Element == UInt8 {
    fileprivate func uint16(_ offset: Int) -> UInt16 {
        guard offset + 2 <= count else { return 0 }
        return UInt16(self[offset]) | UInt16(self[offset + 1]) << 8
    }

    fileprivate func uint32(_ offset: Int) -> UInt32 {
        guard offset + 4 <= count else { return 0 }
        return (0..<4).reduce(0) { $0 | UInt32(self[offset + $1]) << (8 * UInt32($1)) }
    }

    fileprivate func uint64(_ offset: Int) -> UInt64 {
        guard offset + 8 <= count else { return 0 }
        return (0..<8).reduce(0) { $0 | UInt64(self[offset + $1]) << (8 * UInt64($1)) }
    }
}
