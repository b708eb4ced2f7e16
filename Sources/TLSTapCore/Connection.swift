#if canImport(Glibc)
    import Glibc
#endif

/// An IP address and port, as users write them: `127.0.0.1:8443`, `[::1]:443`.
public struct SocketAddress: Hashable, Sendable, CustomStringConvertible {
    /// 4 bytes for IPv4, 16 for IPv6, network order.
    public let ip: [UInt8]
    public let port: UInt16
    /// `host:port`, or `[host]:port` for IPv6: made once, since every
    /// event of the connection prints it.
    public let description: String

    public init(ip: [UInt8], port: UInt16) {
        self.ip = ip
        self.port = port
        let host = Self.host(of: ip)
        description = ip.count == 4 ? "\(host):\(port)" : "[\(host)]:\(port)"
    }

    /// Parses an address without a port (for `--host`): IPv4 or IPv6 text.
    public init?(host: String) {
        var v4 = in_addr()
        var v6 = in6_addr()
        if inet_pton(AF_INET, host, &v4) == 1 {
            ip = withUnsafeBytes(of: v4) { Array($0) }
        } else if inet_pton(AF_INET6, host, &v6) == 1 {
            ip = withUnsafeBytes(of: v6) { Array($0) }
        } else {
            return nil
        }
        port = 0
        description = host
    }

    /// The address alone, as inet_ntop writes it.
    public var host: String { Self.host(of: ip) }

    private static func host(of ip: [UInt8]) -> String {
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let family = ip.count == 4 ? AF_INET : AF_INET6
        _ = ip.withUnsafeBytes { inet_ntop(family, $0.baseAddress, &text, socklen_t(text.count)) }
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public static func == (left: SocketAddress, right: SocketAddress) -> Bool {
        left.ip == right.ip && left.port == right.port
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(ip)
        hasher.combine(port)
    }
}

/// Who opened a connection.
public enum ConnectionRole: String, Sendable {
    /// The traced process connected.
    case client
    /// The traced process accepted.
    case server
    /// tlstap joined mid-connection and could not tell.
    case unknown
}

/// How tlstap learned of a connection (`seen_from` in JSON).
public enum ConnectionOrigin: String, Sendable {
    case connect
    case accept
    /// Already open when first seen: before tlstap started, or inherited.
    case mid
}

/// What a socket event from the kernel says.
public struct SocketEvent: Sendable, Equatable {
    public enum Kind: UInt8, Sendable, CaseIterable {
        case connect = 1
        case accept = 2
        case mid = 3
        case close = 4
        /// The socket carries TLS records sent by code no probe covers (BPF
        /// tells this once per socket; see `ConnectionTracker.silentConnection`).
        case unprobedTLS = 8
    }

    public var kind: Kind
    public var pid: UInt32
    public var tid: UInt32
    public var fd: Int32
    /// CLOCK_MONOTONIC of the event.
    public var monotonicNanoseconds: UInt64
    public var local: SocketAddress?
    public var remote: SocketAddress?
    public var role: ConnectionRole
    public var comm: String

    public init(
        kind: Kind, pid: UInt32, tid: UInt32, fd: Int32, monotonicNanoseconds: UInt64, local: SocketAddress? = nil,
        remote: SocketAddress? = nil, role: ConnectionRole = .unknown, comm: String
    ) {
        self.kind = kind
        self.pid = pid
        self.tid = tid
        self.fd = fd
        self.monotonicNanoseconds = monotonicNanoseconds
        self.local = local
        self.remote = remote
        self.role = role
        self.comm = comm
    }
}

/// What a process event from the kernel says: a traced process runs new
/// code (where TLS functions may need probes), or is gone.
public struct ProcessEvent: Sendable, Equatable {
    public enum Kind: UInt8, Sendable, CaseIterable {
        /// It exec'd a program not seen before (fd is -1).
        case exec = 1
        /// It maps code from a file that no traced process mapped before
        /// (fd is that file's): a shared object, perhaps a TLS library.
        case mapCode = 2
        /// It exited: its sockets and TLS objects are gone (fd is -1).
        case exit = 3
    }

    public var kind: Kind
    public var pid: UInt32
    public var tid: UInt32
    public var fd: Int32
    /// CLOCK_MONOTONIC of the event.
    public var monotonicNanoseconds: UInt64
    public var comm: String
    /// `exec` and `mapCode`: the kernel stopped the process before it runs
    /// the new code; it waits for SIGCONT once its probes are in place.
    public var stoppedForAttach = false

    public init(kind: Kind, pid: UInt32, tid: UInt32, fd: Int32, monotonicNanoseconds: UInt64, comm: String) {
        self.kind = kind
        self.pid = pid
        self.tid = tid
        self.fd = fd
        self.monotonicNanoseconds = monotonicNanoseconds
        self.comm = comm
    }
}

/// A TCP connection of a traced process, as the output names it.
///
/// One object per connection, made by the `ConnectionTable` when its first
/// data is captured: every event of the connection refers to it, none
/// copies it. What changes while the connection lives (its byte counts)
/// stays in the table and comes with its `closed` event.
public final class Connection: Sendable, Equatable {
    /// Unique within one tlstap run (`conn` in JSON).
    public let id: UInt64
    public let pid: UInt32
    /// The process's name at the connection's first captured call.
    public let comm: String
    public let fd: Int32
    public let local: SocketAddress
    public let remote: SocketAddress
    public let role: ConnectionRole
    public let origin: ConnectionOrigin
    /// Wall-clock time of connect/accept, or of first sight for `mid`.
    public let openedNanoseconds: UInt64

    public init(
        id: UInt64, pid: UInt32, comm: String, fd: Int32, local: SocketAddress, remote: SocketAddress,
        role: ConnectionRole, origin: ConnectionOrigin, openedNanoseconds: UInt64
    ) {
        self.id = id
        self.pid = pid
        self.comm = comm
        self.fd = fd
        self.local = local
        self.remote = remote
        self.role = role
        self.origin = origin
        self.openedNanoseconds = openedNanoseconds
    }

    /// The same connection under another process name.
    func named(_ comm: String) -> Connection {
        Connection(
            id: id, pid: pid, comm: comm, fd: fd, local: local, remote: remote, role: role, origin: origin,
            openedNanoseconds: openedNanoseconds)
    }

    /// Equal when every field is: two objects describe the same connection.
    public static func == (left: Connection, right: Connection) -> Bool {
        left === right
            || (left.id == right.id && left.pid == right.pid && left.comm == right.comm && left.fd == right.fd
                && left.local == right.local && left.remote == right.remote && left.role == right.role
                && left.origin == right.origin && left.openedNanoseconds == right.openedNanoseconds)
    }
}

/// What a connection carried, as its program moved it: every call's bytes,
/// captured or not, and whole calls lost in between.
public struct ConnectionTraffic: Sendable, Equatable {
    public var bytesIn: UInt64 = 0
    public var bytesOut: UInt64 = 0

    public init(bytesIn: UInt64 = 0, bytesOut: UInt64 = 0) {
        self.bytesIn = bytesIn
        self.bytesOut = bytesOut
    }
}

/// A connection's lifecycle, as the sinks render it.
public enum ConnectionEvent: Sendable, Equatable {
    /// First data seen on it (`{"event":"open"}`).
    case opened(Connection, timeNanoseconds: UInt64)
    /// Closed, or its process exited (`{"event":"close"}`), with what it carried.
    case closed(Connection, ConnectionTraffic, timeNanoseconds: UInt64)
}
