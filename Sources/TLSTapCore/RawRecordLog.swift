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
            let (kind, fields): (UInt8, [UInt64]) = switch self {
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
        try reader.forEach { records.append(Array($0)); return true }
        return records
    }

    /// Reads a log's records in order, from memory or from a file of any
    /// size (read in pieces of a few MiB, never whole).
    public struct Reader: ~Copyable {
        private let descriptor: Int32
        private var buffer: [UInt8]
        /// Bytes of the log before `buffer`'s first.
        private var consumed = 0

        /// Reads the log in `bytes`.
        public init(_ bytes: [UInt8]) {
            descriptor = -1
            buffer = bytes
        }

        /// Reads the log in the open file `descriptor`, which the caller closes.
        public init(descriptor: Int32) {
            self.descriptor = descriptor
            buffer = []
        }

        /// Calls `body` with each record, valid only during the call, until
        /// the log ends or `body` returns false.
        public mutating func forEach(_ body: (UnsafeRawBufferPointer) -> Bool) throws(ReadError) {
            try fill(atLeast: magic.count)
            guard buffer.count >= magic.count, buffer.starts(with: magic) else { throw .badMagic }
            var position = magic.count
            while true {
                if buffer.count - position < 4 {
                    try refill(keepingFrom: &position, atLeast: 4)
                    if buffer.count == position { return }
                    guard buffer.count - position >= 4 else { throw .truncated(atOffset: consumed + position) }
                }
                let length = buffer.withUnsafeBytes {
                    Int(UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: position, as: UInt32.self)))
                }
                if buffer.count - position - 4 < length {
                    try refill(keepingFrom: &position, atLeast: 4 + length)
                    guard buffer.count - position - 4 >= length else {
                        throw .truncated(atOffset: consumed + position + 4)
                    }
                }
                let start = position + 4
                let goesOn = buffer.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0[start..<start + length])) }
                guard goesOn else { return }
                position = start + length
            }
        }

        /// Drops the bytes before `position` and reads until `count` bytes
        /// follow it, or the file ends.
        private mutating func refill(keepingFrom position: inout Int, atLeast count: Int) throws(ReadError) {
            guard descriptor >= 0 else { return }
            buffer.removeSubrange(..<position)
            consumed += position
            position = 0
            try fill(atLeast: count)
        }

        private static let pieceBytes = 4 << 20

        private mutating func fill(atLeast count: Int) throws(ReadError) {
            guard descriptor >= 0 else { return }
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
