/// The TLS library a captured call went through.
public enum TLSLibrary: UInt8, Sendable, CaseIterable {
    case openssl = 1
    /// Plaintext TCP through syscalls (`--plaintext`).
    case socket = 2
    case gnutls = 3
    case boringssl = 4
    /// Go's crypto/tls.
    case go = 5
    /// NSS, seen through NSPR's I/O functions.
    case nss = 6

    /// The name used in every output (`lib` in JSON).
    public var name: String {
        switch self {
        case .openssl: "openssl"
        case .socket: "socket"
        case .gnutls: "gnutls"
        case .boringssl: "boringssl"
        case .go: "go"
        case .nss: "nss"
        }
    }
}

/// The probed library function.
public enum TLSFunction: UInt8, Sendable, CaseIterable {
    case sslWrite = 1
    case sslRead = 2
    case sslWriteEx = 3
    case sslReadEx = 4
    case gnutlsRecordSend = 5
    case gnutlsRecordRecv = 6
    case goWrite = 7
    case goRead = 8
    case prWrite = 20
    case prRead = 21
    case prSend = 22
    case prRecv = 23
    case write = 10
    case read = 11
    case sendto = 12
    case recvfrom = 13
    case writev = 14
    case readv = 15
    case sendmsg = 16
    case recvmsg = 17

    /// The function's C name (`func` in JSON).
    public var name: String {
        switch self {
        case .sslWrite: "SSL_write"
        case .sslRead: "SSL_read"
        case .sslWriteEx: "SSL_write_ex"
        case .sslReadEx: "SSL_read_ex"
        case .gnutlsRecordSend: "gnutls_record_send"
        case .gnutlsRecordRecv: "gnutls_record_recv"
        case .goWrite: "crypto/tls.(*Conn).Write"
        case .goRead: "crypto/tls.(*Conn).Read"
        case .prWrite: "PR_Write"
        case .prRead: "PR_Read"
        case .prSend: "PR_Send"
        case .prRecv: "PR_Recv"
        case .write: "write"
        case .read: "read"
        case .sendto: "sendto"
        case .recvfrom: "recvfrom"
        case .writev: "writev"
        case .readv: "readv"
        case .sendmsg: "sendmsg"
        case .recvmsg: "recvmsg"
        }
    }
}

/// Which way plaintext went, seen from the traced process.
public enum Direction: UInt8, Sendable, CaseIterable {
    /// Written by the process: plaintext before encryption.
    case outbound = 1
    /// Read by the process: plaintext after decryption.
    case inbound = 2

    /// `out` or `in` (`dir` in JSON).
    public var name: String {
        switch self {
        case .outbound: "out"
        case .inbound: "in"
        }
    }
}

/// The plaintext one TLS call moved, joined from its chunks.
public struct DataEvent: Sendable, Equatable {
    /// Wall-clock time of the call's return, nanoseconds since the Unix epoch.
    public var timeNanoseconds: UInt64
    public var pid: UInt32
    public var tid: UInt32
    public var comm: String
    public var library: TLSLibrary
    public var function: TLSFunction
    public var direction: Direction
    /// The SSL object's address in the traced process.
    public var ssl: UInt64
    /// The byte count the call returned: what really went through.
    public var length: UInt64
    /// The payload. Shorter than `length` only when chunks were lost.
    public var payload: [UInt8]
    /// The socket the bytes went through, -1 when unknown.
    public var fd: Int32
    /// The connection, once the tracker has named it.
    public var connection: Connection?
    /// Bytes of whole calls on this connection, in this direction, lost
    /// (ring buffer full) right before this one: the stream has a gap here.
    public var lostBefore: UInt64

    /// Bytes of this call that the ring buffer could not carry.
    public var missingBytes: UInt64 {
        let present = UInt64(payload.count)
        return length > present ? length - present : 0
    }

    public init(
        timeNanoseconds: UInt64, pid: UInt32, tid: UInt32, comm: String, library: TLSLibrary,
        function: TLSFunction, direction: Direction, ssl: UInt64, length: UInt64, payload: [UInt8], fd: Int32 = -1,
        connection: Connection? = nil, lostBefore: UInt64 = 0
    ) {
        self.timeNanoseconds = timeNanoseconds
        self.pid = pid
        self.tid = tid
        self.comm = comm
        self.library = library
        self.function = function
        self.direction = direction
        self.ssl = ssl
        self.length = length
        self.payload = payload
        self.fd = fd
        self.connection = connection
        self.lostBefore = lostBefore
    }
}

/// What the kernel side could not deliver because the ring buffer was full.
///
/// Loss, end to end (tlstap never hides it, and always says where it was):
/// - BPF (`bpf/emit.bpf.h`): a chunk that finds the ring full is dropped
///   and counted here, per CPU. A whole call lost on a connection is
///   remembered per socket and direction, and the next record that gets
///   through for it carries those bytes (`lost_before`).
/// - `ChunkAssembler`: a call with chunks missing goes out with what
///   arrived; `DataEvent.missingBytes` says how much is absent, and
///   `DataEvent.lostBefore` carries the gap before it.
/// - `ConnectionTable` counts lost bytes into the connection's traffic, as
///   the program moved them; `ProtocolTracker` tells the analyzer
///   (`ProtocolAnalyzer.lost`), which marks what it could not read.
/// - The session reads these counters now and then
///   (`RecordPipeline.report(lost:)`), and each output says what was lost
///   (`EventSink.writeLost`, `lost_before`/`lost_bytes` on data lines) and
///   the summary how much.
public struct LostCounts: Sendable, Equatable {
    /// Chunk records dropped.
    public var records: UInt64
    /// Payload bytes in them.
    public var bytes: UInt64

    public static let zero = LostCounts(records: 0, bytes: 0)

    public init(records: UInt64, bytes: UInt64) {
        self.records = records
        self.bytes = bytes
    }

    /// The counts gained since `earlier`.
    public func since(_ earlier: LostCounts) -> LostCounts {
        LostCounts(records: records - earlier.records, bytes: bytes - earlier.bytes)
    }
}
