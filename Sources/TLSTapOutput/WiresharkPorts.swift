import TLSTapCore
import TLSTapHTTP

/// The ports a connection shows in `--pcapng`, so that Wireshark and tshark
/// dissect its plaintext with no "Decode As": Wireshark picks a dissector
/// by port before it tries heuristics, and a connection's real server port
/// is often one it reads as TLS (443, 993, …) or one it knows nothing of
/// (Wireshark 4.0 has no HTTP/2 heuristic over TCP).
///
/// - HTTP (an HTTP/1 request or status line, the HTTP/2 preface, or HTTP/2
///   frames, in the connection's first bytes) shows its server port as 80:
///   there Wireshark's HTTP dissector reads HTTP/1.x and, from the
///   preface, HTTP/2 and gRPC. HTTP/2 joined midway gets the preface
///   tlstap did not see added in front (`addsPreface`), in a packet whose
///   comment says so.
/// - Other plaintext on a port Wireshark reads as TLS shows the port its
///   protocol has without TLS (993 → 143 IMAP, 5671 → 5672 AMQP, …).
/// - Anything else keeps its real ports.
///
/// The client's port and both addresses are never changed, and where the
/// server's port is, every packet's comment names the real one.
struct WiresharkPorts {
    /// The addresses the packets carry.
    private(set) var local: SocketAddress
    private(set) var remote: SocketAddress
    /// The real server port, when another is shown.
    private(set) var realServerPort: UInt16?
    /// The server port the packets carry.
    private(set) var shownServerPort: UInt16
    /// Whether the HTTP/2 preface must be added in front of the client's
    /// bytes, and from which side: true if the local side is the client.
    private(set) var prefaceFromLocal: Bool?

    /// Plaintext ports of protocols whose TLS port Wireshark reads as TLS.
    static let plaintextPorts: [UInt16: UInt16] = [
        443: 80, 465: 25, 636: 389, 853: 53, 993: 143, 995: 110, 5061: 5060, 5671: 5672, 8883: 1883,
    ]

    /// - Parameters:
    ///   - firstPayload: the first bytes tlstap saw on the connection.
    ///   - outbound: whether the local side sent them.
    init(connection: Connection, firstPayload: [UInt8], outbound: Bool) {
        local = connection.local
        remote = connection.remote
        let start = HTTPStreamStart(firstPayload)
        // Which side serves: the role if known, else what the first bytes say, else the lower port.
        var senderIsClient: Bool?
        switch start {
        case .http1Request, .http2Preface: senderIsClient = true
        case .http1Response: senderIsClient = false
        case .http2Frames(let fromClient): senderIsClient = fromClient
        case nil: senderIsClient = nil
        }
        let localServes: Bool
        switch connection.role {
        case .client: localServes = false
        case .server: localServes = true
        case .unknown: localServes = senderIsClient.map { $0 != outbound } ?? (local.port < remote.port)
        }
        let serverPort = localServes ? local.port : remote.port
        let shown = start == nil ? Self.plaintextPorts[serverPort] ?? serverPort : 80
        shownServerPort = shown
        if case .http2Frames = start { prefaceFromLocal = !localServes }
        guard shown != serverPort else { return }
        realServerPort = serverPort
        if localServes {
            local = SocketAddress(ip: local.ip, port: shown)
        } else {
            remote = SocketAddress(ip: remote.ip, port: shown)
        }
    }
}
