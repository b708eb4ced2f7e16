import CTLSTapABI

/// One ring buffer record as BPF sent it: part (or all) of one call's payload.
public struct DataChunk: Sendable, Equatable {
    public var library: TLSLibrary
    public var function: TLSFunction
    public var direction: Direction
    public var pid: UInt32
    public var tid: UInt32
    /// CLOCK_MONOTONIC at the call's return; with `tid`, names the call.
    public var callTimeNanoseconds: UInt64
    public var ssl: UInt64
    /// Bytes the whole call moved.
    public var totalLength: UInt64
    /// Where `payload` starts within the call's bytes.
    public var offset: UInt64
    public var comm: String
    public var payload: [UInt8]

    public init(
        library: TLSLibrary, function: TLSFunction, direction: Direction, pid: UInt32, tid: UInt32,
        callTimeNanoseconds: UInt64, ssl: UInt64, totalLength: UInt64, offset: UInt64, comm: String,
        payload: [UInt8]
    ) {
        self.library = library
        self.function = function
        self.direction = direction
        self.pid = pid
        self.tid = tid
        self.callTimeNanoseconds = callTimeNanoseconds
        self.ssl = ssl
        self.totalLength = totalLength
        self.offset = offset
        self.comm = comm
        self.payload = payload
    }
}

/// Why a ring buffer record could not be decoded.
public enum RecordDecodingError: Error, Equatable, CustomStringConvertible {
    case tooShort(size: Int)
    case unknownKind(UInt8)
    case unknownValue(field: String, value: UInt8)
    case lengthMismatch(declared: UInt32, present: Int)
    case chunkOutsideCall(offset: UInt64, length: UInt32, total: UInt64)

    public var description: String {
        switch self {
        case .tooShort(let size): "record of \(size) bytes is shorter than a chunk header"
        case .unknownKind(let kind): "unknown record kind \(kind)"
        case .unknownValue(let field, let value): "unknown \(field) \(value)"
        case .lengthMismatch(let declared, let present):
            "header declares \(declared) payload bytes but the record holds \(present)"
        case .chunkOutsideCall(let offset, let length, let total):
            "chunk of \(length) bytes at \(offset) lies outside a call of \(total) bytes"
        }
    }
}

/// Turns raw ring buffer records into `DataChunk`s.
///
/// The header layout is `struct tlstap_chunk_header` from CTLSTapABI, the same
/// definition the BPF programs compile against; nothing is decoded by hand.
public enum RecordDecoder {
    /// Size of the fixed header in front of every payload.
    public static let headerSize = MemoryLayout<tlstap_chunk_header>.size

    /// Decodes one record.
    /// - Parameter record: the bytes as the ring buffer delivered them.
    /// - Returns: the chunk, with its payload copied out of `record`.
    public static func decode(_ record: UnsafeRawBufferPointer) throws(RecordDecodingError) -> DataChunk {
        guard record.count >= headerSize else { throw .tooShort(size: record.count) }
        let header = record.loadUnaligned(as: tlstap_chunk_header.self)
        guard header.kind == UInt8(TLSTAP_RECORD_DATA.rawValue) else { throw .unknownKind(header.kind) }
        guard let library = TLSLibrary(rawValue: header.library) else {
            throw .unknownValue(field: "library", value: header.library)
        }
        guard let function = TLSFunction(rawValue: header.function) else {
            throw .unknownValue(field: "function", value: header.function)
        }
        guard let direction = Direction(rawValue: header.direction) else {
            throw .unknownValue(field: "direction", value: header.direction)
        }
        let present = record.count - headerSize
        guard Int(header.chunk_len) == present else {
            throw .lengthMismatch(declared: header.chunk_len, present: present)
        }
        let (end, overflow) = header.chunk_offset.addingReportingOverflow(UInt64(header.chunk_len))
        guard !overflow, end <= header.total_len else {
            throw .chunkOutsideCall(offset: header.chunk_offset, length: header.chunk_len, total: header.total_len)
        }
        return DataChunk(
            library: library, function: function, direction: direction, pid: header.pid, tid: header.tid,
            callTimeNanoseconds: header.call_time_ns, ssl: header.ssl, totalLength: header.total_len,
            offset: header.chunk_offset, comm: commString(header.comm),
            payload: Array(UnsafeRawBufferPointer(rebasing: record[headerSize...])))
    }

    /// The comm up to its first NUL, as UTF-8 with invalid bytes replaced.
    private static func commString(_ comm: (CChar, CChar, CChar, CChar, CChar, CChar, CChar, CChar,
                                            CChar, CChar, CChar, CChar, CChar, CChar, CChar, CChar)) -> String {
        withUnsafeBytes(of: comm) { bytes in
            let end = bytes.firstIndex(of: 0) ?? bytes.count
            return String(decoding: bytes[..<end], as: UTF8.self)
        }
    }
}
