import CTLSTapABI

/// Address families as the kernel numbers them (the same on every Linux architecture).
let addressFamilyIPv4: Int32 = 2
let addressFamilyIPv6: Int32 = 10

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
    /// The socket, -1 when unknown.
    public var fd: Int32
    /// Bytes of whole calls on this socket, in this direction, that were
    /// lost (ring buffer full) since the last record that got through for it.
    public var lostBefore: UInt32

    public init(
        library: TLSLibrary, function: TLSFunction, direction: Direction, pid: UInt32, tid: UInt32,
        callTimeNanoseconds: UInt64, ssl: UInt64, totalLength: UInt64, offset: UInt64, comm: String,
        payload: [UInt8], fd: Int32 = -1, lostBefore: UInt32 = 0
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
        self.fd = fd
        self.lostBefore = lostBefore
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

/// One decoded ring buffer record.
public enum Record: Sendable, Equatable {
    case chunk(DataChunk)
    case socket(SocketEvent)
    case process(ProcessEvent)
    /// A TLS object that moved data with no known socket was freed.
    case objectFreed(TLSObjectFreed)
}

/// A TLS object freed (SSL_free, gnutls_deinit) after it moved data while
/// its socket was unknown: that data will never have a socket.
public struct TLSObjectFreed: Sendable, Equatable {
    public var pid: UInt32
    public var tid: UInt32
    /// The object's address in the process.
    public var ssl: UInt64
    /// CLOCK_MONOTONIC of the free.
    public var monotonicNanoseconds: UInt64

    public init(pid: UInt32, tid: UInt32, ssl: UInt64, monotonicNanoseconds: UInt64) {
        self.pid = pid
        self.tid = tid
        self.ssl = ssl
        self.monotonicNanoseconds = monotonicNanoseconds
    }
}

/// Turns raw ring buffer records into `DataChunk`s and `SocketEvent`s.
///
/// The header layout is `struct tlstap_chunk_header` from CTLSTapABI, the same
/// definition the BPF programs compile against; nothing is decoded by hand.
public enum RecordDecoder {
    /// Size of the fixed header in front of every payload.
    public static let headerSize = MemoryLayout<tlstap_chunk_header>.size

    /// Size of a socket record.
    public static let socketRecordSize = MemoryLayout<tlstap_socket_record>.size

    /// Size of a process record.
    public static let processRecordSize = MemoryLayout<tlstap_process_record>.size

    /// The most payload one record carries: BPF cuts larger calls into chunks of this size.
    public static let maxChunkPayload = Int(TLSTAP_CHUNK_MAX)

    /// Decodes one record of either kind.
    public static func decodeRecord(_ record: UnsafeRawBufferPointer) throws(RecordDecodingError) -> Record {
        var storage: [UInt8] = []
        return try decodeRecord(record, reusing: &storage)
    }

    /// Decodes one record of either kind, a data record's payload into
    /// `storage`'s memory when nothing else holds it (`decode(_:reusing:)`).
    public static func decodeRecord(
        _ record: UnsafeRawBufferPointer, reusing storage: inout [UInt8]
    ) throws(RecordDecodingError) -> Record {
        guard let kind = record.first else { throw .tooShort(size: 0) }
        switch UInt32(kind) {
        case TLSTAP_RECORD_DATA.rawValue: return .chunk(try decode(record, reusing: &storage))
        case TLSTAP_RECORD_SOCKET.rawValue:
            if let legacy = try legacyProcessEvent(record) { return .process(legacy) }
            return .socket(try decodeSocket(record))
        case TLSTAP_RECORD_PROCESS.rawValue: return .process(try decodeProcess(record))
        case TLSTAP_RECORD_OBJECT.rawValue: return .objectFreed(try decodeObject(record))
        default: throw .unknownKind(kind)
        }
    }

    /// What a data record carries, read without decoding it: whether it is
    /// its call's first chunk, and its payload's size. nil for any other
    /// record, or one too short to be a data record.
    public static func peekData(_ record: UnsafeRawBufferPointer) -> (startsCall: Bool, payloadBytes: UInt32)? {
        guard record.count >= headerSize, record[0] == UInt8(TLSTAP_RECORD_DATA.rawValue) else { return nil }
        let header = record.loadUnaligned(as: tlstap_chunk_header.self)
        return (header.chunk_offset == 0, header.chunk_len)
    }

    /// Decodes a TLS object record.
    public static func decodeObject(_ record: UnsafeRawBufferPointer) throws(RecordDecodingError) -> TLSObjectFreed {
        guard record.count == MemoryLayout<tlstap_object_record>.size else { throw .tooShort(size: record.count) }
        let raw = record.loadUnaligned(as: tlstap_object_record.self)
        guard raw.event == UInt8(TLSTAP_OBJECT_FREED.rawValue) else {
            throw .unknownValue(field: "object event", value: raw.event)
        }
        return TLSObjectFreed(pid: raw.pid, tid: raw.tid, ssl: raw.ssl, monotonicNanoseconds: raw.time_ns)
    }

    /// Decodes a process record.
    public static func decodeProcess(_ record: UnsafeRawBufferPointer) throws(RecordDecodingError) -> ProcessEvent {
        guard record.count == processRecordSize else { throw .tooShort(size: record.count) }
        let raw = record.loadUnaligned(as: tlstap_process_record.self)
        guard raw.kind == UInt8(TLSTAP_RECORD_PROCESS.rawValue) else { throw .unknownKind(raw.kind) }
        guard let kind = ProcessEvent.Kind(rawValue: raw.event) else {
            throw .unknownValue(field: "process event", value: raw.event)
        }
        return processEvent(kind, raw.pid, raw.tid, raw.fd, raw.time_ns, raw.comm, flags: raw.flags)
    }

    /// A process's exit, exec or mapping of code as captures saved before
    /// process records had a kind of their own sent it: a socket record
    /// (`TLSTAP_SOCKET_LEGACY_*`). nil for any other socket record.
    static func legacyProcessEvent(_ record: UnsafeRawBufferPointer) throws(RecordDecodingError) -> ProcessEvent? {
        guard record.count == socketRecordSize else { throw .tooShort(size: record.count) }
        let raw = record.loadUnaligned(as: tlstap_socket_record.self)
        let kind: ProcessEvent.Kind
        switch UInt32(raw.event) {
        case TLSTAP_SOCKET_LEGACY_EXIT.rawValue: kind = .exit
        case TLSTAP_SOCKET_LEGACY_EXEC.rawValue: kind = .exec
        case TLSTAP_SOCKET_LEGACY_MAP.rawValue: kind = .mapCode
        default: return nil
        }
        return processEvent(kind, raw.pid, raw.tid, raw.fd, raw.time_ns, raw.comm, flags: raw.flags)
    }

    /// A process event from a record's fields (either record's: they share the stopped flag's bit).
    private static func processEvent(
        _ kind: ProcessEvent.Kind, _ pid: UInt32, _ tid: UInt32, _ fd: Int32, _ time: UInt64,
        _ comm: (
            CChar, CChar, CChar, CChar, CChar, CChar, CChar, CChar, CChar, CChar, CChar, CChar, CChar, CChar, CChar,
            CChar
        ),
        flags: UInt32
    ) -> ProcessEvent {
        var event = ProcessEvent(
            kind: kind, pid: pid, tid: tid, fd: fd, monotonicNanoseconds: time, comm: commString(comm))
        event.stoppedForAttach = flags & TLSTAP_PROCESS_STOPPED.rawValue != 0
        return event
    }

    /// Decodes a socket record.
    public static func decodeSocket(_ record: UnsafeRawBufferPointer) throws(RecordDecodingError) -> SocketEvent {
        guard record.count == socketRecordSize else { throw .tooShort(size: record.count) }
        let raw = record.loadUnaligned(as: tlstap_socket_record.self)
        guard raw.kind == UInt8(TLSTAP_RECORD_SOCKET.rawValue) else { throw .unknownKind(raw.kind) }
        guard let kind = SocketEvent.Kind(rawValue: raw.event) else {
            throw .unknownValue(field: "socket event", value: raw.event)
        }
        let addressLength: Int
        switch Int32(raw.family) {
        case addressFamilyIPv4: addressLength = 4
        case addressFamilyIPv6: addressLength = 16
        default: addressLength = 0
        }
        func address(
            _ bytes: (
                UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                UInt8, UInt8, UInt8, UInt8
            ), port: UInt16
        ) -> SocketAddress? {
            guard addressLength > 0 else { return nil }
            return withUnsafeBytes(of: bytes) { SocketAddress(ip: Array($0.prefix(addressLength)), port: port) }
        }
        let role: ConnectionRole
        switch UInt32(raw.role) {
        case TLSTAP_ROLE_CLIENT.rawValue: role = .client
        case TLSTAP_ROLE_SERVER.rawValue: role = .server
        default: role = .unknown
        }
        return SocketEvent(
            kind: kind, pid: raw.pid, tid: raw.tid, fd: raw.fd, monotonicNanoseconds: raw.time_ns,
            local: address(raw.local_addr, port: raw.local_port),
            remote: address(raw.remote_addr, port: raw.remote_port),
            role: role, comm: commString(raw.comm))
    }

    /// Decodes a data record.
    /// - Parameter record: the bytes as the ring buffer delivered them.
    /// - Returns: the chunk, with its payload copied out of `record`.
    public static func decode(_ record: UnsafeRawBufferPointer) throws(RecordDecodingError) -> DataChunk {
        var storage: [UInt8] = []
        return try decode(record, reusing: &storage)
    }

    /// Decodes a data record, copying its payload into the memory of
    /// `storage` (left empty) when nothing else holds it: a reader that
    /// hands each payload back once done allocates none per record.
    /// - Parameter record: the bytes as the ring buffer delivered them.
    /// - Returns: the chunk, with its payload copied out of `record`.
    public static func decode(
        _ record: UnsafeRawBufferPointer, reusing storage: inout [UInt8]
    ) throws(RecordDecodingError) -> DataChunk {
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
        var payload: [UInt8] = []
        swap(&payload, &storage)
        payload.removeAll(keepingCapacity: true)
        payload.append(contentsOf: UnsafeRawBufferPointer(rebasing: record[headerSize...]))
        return DataChunk(
            library: library, function: function, direction: direction, pid: header.pid, tid: header.tid,
            callTimeNanoseconds: header.call_time_ns, ssl: header.ssl, totalLength: header.total_len,
            offset: header.chunk_offset, comm: commString(header.comm), payload: payload, fd: header.fd,
            lostBefore: header.lost_before)
    }

    /// The comm up to its first NUL, as UTF-8 with invalid bytes replaced.
    private static func commString(
        _ comm: (
            CChar, CChar, CChar, CChar, CChar, CChar, CChar, CChar,
            CChar, CChar, CChar, CChar, CChar, CChar, CChar, CChar
        )
    ) -> String {
        withUnsafeBytes(of: comm) { bytes in
            let end = bytes.firstIndex(of: 0) ?? bytes.count
            return String(decoding: bytes[..<end], as: UTF8.self)
        }
    }
}
