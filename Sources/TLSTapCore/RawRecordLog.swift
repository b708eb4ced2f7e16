#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A file of raw ring buffer records exactly as BPF sent them: what
/// `tlstap record` writes and `tlstap replay` renders later, and what tests
/// replay without a kernel (`Tests/*/Fixtures/*.tlstapraw`).
///
/// Format: the 8 magic bytes `TLSTAPR1`, then for each record its length as a
/// little-endian UInt32 followed by its bytes. Besides the kernel's records
/// (kinds `TLSTAP_RECORD_*`), tlstap writes a few notes of its own, told
/// apart by a first byte of 0x80 or more (`Note`).
public enum RawRecordLog {
    public static let magic: [UInt8] = Array("TLSTAPR1".utf8)

    /// Why a record log could not be read.
    public enum ReadError: Error, Equatable, CustomStringConvertible {
        case badMagic
        case truncated(atOffset: Int)
        case unreadable(errno: Int32)

        public var description: String {
            switch self {
            case .badMagic: "not a tlstap record file (it does not begin with TLSTAPR1)"
            case .truncated(let offset): "the file ends inside a record that begins before byte \(offset)"
            case .unreadable(let code): "cannot read it: \(String(cString: strerror(code)))"
            }
        }
    }

    /// What tlstap itself notes in a log, beside the kernel's records: what
    /// a replay needs to render the capture as it was seen live.
    public enum Note: Sendable, Equatable {
        /// The clocks at the start: records carry CLOCK_MONOTONIC times.
        case clock(WallClock)
        /// The kernel's loss counters, as they stood at `timeNanoseconds` (wall clock).
        case lost(LostCounts, timeNanoseconds: UInt64)
        /// The capture stopped then (wall clock).
        case stop(timeNanoseconds: UInt64)

        /// Note kinds: above every kernel record kind.
        static let clockKind: UInt8 = 0x80
        static let lostKind: UInt8 = 0x81
        static let stopKind: UInt8 = 0x82

        /// A note is its kind, 7 zero bytes, then little-endian 64-bit fields.
        public init?(_ record: UnsafeRawBufferPointer) {
            func field(_ index: Int) -> UInt64? {
                let offset = 8 * (index + 1)
                guard record.count >= offset + 8 else { return nil }
                return UInt64(littleEndian: record.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
            }
            switch record.first {
            case Self.clockKind?:
                guard let offset = field(0) else { return nil }
                self = .clock(WallClock(offsetNanoseconds: Int64(bitPattern: offset)))
            case Self.lostKind?:
                guard let records = field(0), let bytes = field(1), let time = field(2) else { return nil }
                self = .lost(LostCounts(records: records, bytes: bytes), timeNanoseconds: time)
            case Self.stopKind?:
                guard let time = field(0) else { return nil }
                self = .stop(timeNanoseconds: time)
            default:
                return nil
            }
        }

        /// Whether `record` is a note rather than a kernel record.
        public static func isNote(_ record: UnsafeRawBufferPointer) -> Bool {
            (record.first ?? 0) >= clockKind
        }

        /// The note's bytes, as a record of the log.
        public var bytes: [UInt8] {
            let (kind, fields): (UInt8, [UInt64]) =
                switch self {
                case .clock(let clock): (Self.clockKind, [UInt64(bitPattern: clock.offsetNanoseconds)])
                case .lost(let counts, let time): (Self.lostKind, [counts.records, counts.bytes, time])
                case .stop(let time): (Self.stopKind, [time])
                }
            var bytes: [UInt8] = [kind] + Array(repeating: 0, count: 7)
            for field in fields { withUnsafeBytes(of: field.littleEndian) { bytes.append(contentsOf: $0) } }
            return bytes
        }
    }

    /// Appends one record in the log's framing.
    public static func append(_ record: UnsafeRawBufferPointer, to log: inout [UInt8]) {
        withUnsafeBytes(of: UInt32(record.count).littleEndian) { log.append(contentsOf: $0) }
        log.append(contentsOf: record)
    }

    /// Appends a note in the log's framing.
    public static func append(_ note: Note, to log: inout [UInt8]) {
        note.bytes.withUnsafeBytes { append($0, to: &log) }
    }

    /// Splits a log into its records.
    public static func records(in log: [UInt8]) throws(ReadError) -> [[UInt8]] {
        var records: [[UInt8]] = []
        var reader = Reader(log)
        try reader.readRecords {
            records.append(Array($0))
            return true
        }
        return records
    }

    /// The ring format (`tlstap record`), which starts with these 8 bytes
    /// instead: a block of `ringBlock` bytes holding the magic and notes in
    /// the framing above (up to a zero length), then the ring buffer's bytes
    /// as the kernel laid them out (each record behind an 8-byte header of
    /// its length, two flag bits and a page offset, padded to 8 bytes;
    /// discarded records are skipped), then notes in the framing above,
    /// then the ring bytes' length as a little-endian UInt64 and
    /// `ringEndMagic`. A file without that end was cut short (tlstap was
    /// killed): its ring bytes run to its end.
    public static let ringMagic: [UInt8] = Array("TLSTAPR2".utf8)
    public static let ringEndMagic: [UInt8] = Array("TLSTAPE2".utf8)
    /// The size of the first block, and the alignment of the ring bytes in
    /// the file: what direct I/O needs.
    public static let ringBlock = 4096

    /// The first block of a ring-format file, holding `notes`.
    public static func ringHeader(_ notes: [Note]) -> [UInt8] {
        var block = ringMagic
        for note in notes { append(note, to: &block) }
        precondition(block.count + 4 <= ringBlock, "notes of a ring file's first block must fit in it")
        return block + Array(repeating: 0, count: ringBlock - block.count)
    }

    /// What follows the ring bytes of a ring-format file: `notes`, then the
    /// end that says how many ring bytes there were.
    public static func ringTrailer(_ notes: [Note], ringBytes: UInt64) -> [UInt8] {
        var trailer: [UInt8] = []
        for note in notes { append(note, to: &trailer) }
        withUnsafeBytes(of: ringBytes.littleEndian) { trailer.append(contentsOf: $0) }
        return trailer + ringEndMagic
    }

    /// Reads a log's records in order, in either format, from memory or
    /// from a file of any size (read in pieces of a few MiB, never whole).
    public struct Reader: ~Copyable {
        private let descriptor: Int32
        private var buffer: [UInt8]
        /// The offset in the log of `buffer`'s first byte.
        private var consumed = 0
        /// The log's size, when known (not for a pipe): a record longer than
        /// what is left is cut short, found without reading up to its length.
        private var size = Int.max

        /// Reads the log in `bytes`.
        public init(_ bytes: [UInt8]) {
            descriptor = -1
            buffer = bytes
            size = bytes.count
        }

        /// Reads the log in the open file `descriptor`, which the caller closes.
        public init(descriptor: Int32) {
            self.descriptor = descriptor
            buffer = []
            var info = stat()
            if fstat(descriptor, &info) == 0 && info.st_mode & S_IFMT == S_IFREG { size = Int(info.st_size) }
        }

        /// Calls `body` with each record, valid only during the call, until
        /// the log ends or `body` returns false.
        public mutating func readRecords(_ body: (UnsafeRawBufferPointer) -> Bool) throws(ReadError) {
            guard try have(0, magic.count) else { throw .badMagic }
            let start = Array(buffer[0..<magic.count])
            if start == magic {
                _ = try records(from: magic.count, to: nil, body)
                return
            }
            guard start == ringMagic else { throw .badMagic }
            let (ringEnd, trailerEnd) = try ringExtent()
            guard try records(from: ringMagic.count, to: ringBlock, stoppingAtEmpty: true, body),
                try records(from: ringBlock, to: ringEnd, ring: true, body)
            else { return }
            _ = try records(from: ringEnd, to: trailerEnd, body)
        }

        /// Where a ring-format file's ring bytes end, and its trailer's notes.
        private mutating func ringExtent() throws(ReadError) -> (ring: Int, trailer: Int) {
            var end = [UInt8](repeating: 0, count: 16)
            guard size < Int.max else { throw .unreadable(errno: ESPIPE) }  // found from the end: a file, not a pipe
            if descriptor >= 0 {
                if size >= ringBlock + 16 {
                    let got = end.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, 16, off_t(size - 16)) }
                    guard got == 16 else { throw .unreadable(errno: got < 0 ? errno : EIO) }
                }
            } else if size >= ringBlock + 16 {
                end = Array(buffer[(size - 16)...])
            }
            guard size >= ringBlock else { throw .truncated(atOffset: size) }
            guard end[8...].elementsEqual(ringEndMagic) else { return (size, size) }  // cut short
            let ringBytes = end.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
            guard ringBytes <= UInt64(size - 16 - ringBlock) else { throw .truncated(atOffset: size - 16) }
            return (ringBlock + Int(ringBytes), size - 16)
        }

        /// Hands `body` the records from offset `start` to `end` (the log's
        /// end if nil): length-prefixed, or behind the ring's headers.
        /// - Returns: false if `body` asked to stop.
        private mutating func records(
            from start: Int, to end: Int?, ring: Bool = false, stoppingAtEmpty: Bool = false,
            _ body: (UnsafeRawBufferPointer) -> Bool
        ) throws(ReadError) -> Bool {
            let headerSize = ring ? 8 : 4
            var offset = start
            while end.map({ offset < $0 }) ?? true {
                guard try have(offset, headerSize), end.map({ offset + headerSize <= $0 }) ?? true else {
                    let bytesLeft = try have(offset, 1)
                    if (end == nil && !bytesLeft) || stoppingAtEmpty { return true }  // the log ends between records
                    throw .truncated(atOffset: offset)
                }
                let word = buffer.withUnsafeBytes {
                    UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: offset - consumed, as: UInt32.self))
                }
                let busy: UInt32 = 1 << 31
                let discarded: UInt32 = 1 << 30
                let length = Int(ring ? word & ~(busy | discarded) : word)
                if stoppingAtEmpty && length == 0 { return true }
                if ring && word & busy != 0 { throw .truncated(atOffset: offset) }
                let first = offset + headerSize
                guard first + length <= min(end ?? size, size), try have(first, length) else {
                    throw .truncated(atOffset: first)
                }
                if !ring || word & discarded == 0 {
                    let goesOn = buffer.withUnsafeBytes {
                        body(UnsafeRawBufferPointer(rebasing: $0[(first - consumed)..<(first - consumed + length)]))
                    }
                    guard goesOn else { return false }
                }
                offset = ring ? (first + length + 7) & ~7 : first + length
            }
            return true
        }

        /// Whether the log holds `count` bytes from `offset` on, which the
        /// buffer then holds (a file's bytes before `offset` are dropped).
        private mutating func have(_ offset: Int, _ count: Int) throws(ReadError) -> Bool {
            if offset + count <= consumed + buffer.count { return true }
            guard descriptor >= 0 else { return false }
            buffer.removeSubrange(..<min(offset - consumed, buffer.count))
            consumed = offset
            try fill(atLeast: count)
            return buffer.count >= count
        }

        private static let pieceBytes = 4 << 20

        /// Reads until the buffer holds `count` bytes, or the file ends.
        private mutating func fill(atLeast count: Int) throws(ReadError) {
            while buffer.count < count {
                let room = max(Self.pieceBytes, count - buffer.count)
                let old = buffer.count
                buffer.append(contentsOf: repeatElement(0, count: room))
                let got = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress! + old, room) }
                let code = errno
                buffer.removeSubrange((old + max(got, 0))...)
                if got < 0 {
                    if code == EINTR { continue }
                    throw .unreadable(errno: code)
                }
                if got == 0 { return }
            }
        }
    }
}
