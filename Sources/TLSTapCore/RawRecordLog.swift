/// A file of raw ring buffer records exactly as BPF sent them, for replaying a
/// capture in tests without a kernel (`Tests/*/Fixtures/*.tlstapraw`).
///
/// Format: the 8 magic bytes `TLSTAPR1`, then for each record its length as a
/// little-endian UInt32 followed by its bytes.
public enum RawRecordLog {
    public static let magic: [UInt8] = Array("TLSTAPR1".utf8)

    /// Why a record log could not be read.
    public enum ReadError: Error, Equatable {
        case badMagic
        case truncated(atOffset: Int)
    }

    /// Appends one record in the log's framing.
    public static func append(_ record: UnsafeRawBufferPointer, to log: inout [UInt8]) {
        withUnsafeBytes(of: UInt32(record.count).littleEndian) { log.append(contentsOf: $0) }
        log.append(contentsOf: record)
    }

    /// Splits a log into its records.
    public static func records(in log: [UInt8]) throws(ReadError) -> [[UInt8]] {
        guard log.starts(with: magic) else { throw .badMagic }
        var records: [[UInt8]] = []
        var offset = magic.count
        while offset < log.count {
            guard offset + 4 <= log.count else { throw .truncated(atOffset: offset) }
            let length = log[offset..<offset + 4].reversed().reduce(0) { ($0 << 8) | Int($1) }
            offset += 4
            guard offset + length <= log.count else { throw .truncated(atOffset: offset) }
            records.append(Array(log[offset..<offset + length]))
            offset += length
        }
        return records
    }
}
