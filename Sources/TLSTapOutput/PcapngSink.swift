import TLSTapCore
import TLSTapHTTP

/// `--pcapng FILE`: the decrypted streams as a pcapng capture that Wireshark
/// and tshark dissect as ordinary TCP.
///
/// Each connection becomes a synthetic TCP flow between its real addresses
/// and ports (Ethernet + IPv4/IPv6 + TCP, checksums computed): a three-way
/// handshake from the side that connected (or a comment that the capture
/// joined mid-stream), data segments with consistent sequence and
/// acknowledgement numbers so TCP reassembly follows the stream, and FINs at
/// close. Timestamps have nanosecond resolution (if_tsresol = 9); every
/// packet carries a comment naming pid, comm and library. Blocks are
/// written as they happen and flushed at least every second.
public final class PcapngSink: EventSink {
    private struct Flow {
        var localSeq: UInt32
        var remoteSeq: UInt32
    }

    private let file: OutputFile
    private var flows: [UInt64: Flow] = [:]
    private var lastFlush: UInt64 = 0
    /// Largest TCP payload per segment: what an IPv4 packet of 65535 bytes carries.
    static let maxSegment = 65_535 - 20 - 20

    /// Starts the file with its section header and interface description.
    public init(file: OutputFile, version: String) throws(OutputError) {
        self.file = file
        try file.write(Self.sectionHeader(application: "tlstap \(version)"))
        try file.write(Self.interfaceDescription())
        try file.flush()
    }

    public func write(_ event: DataEvent) throws(OutputError) {
        guard let connection = event.connection, !event.payload.isEmpty else { return }
        var flow = try flowStarting(connection, time: event.timeNanoseconds)
        let outbound = event.direction == .outbound
        let comment = "pid=\(event.pid) comm=\(event.comm) lib=\(event.library.name) func=\(event.function.name)"
        var offset = 0
        while offset < event.payload.count {
            let segment = Array(event.payload[offset..<min(offset + Self.maxSegment, event.payload.count)])
            let (seq, ack) = outbound ? (flow.localSeq, flow.remoteSeq) : (flow.remoteSeq, flow.localSeq)
            try packet(connection, fromLocal: outbound, seq: seq, ack: ack, flags: [.psh, .ack], payload: segment,
                       time: event.timeNanoseconds, comment: comment)
            if outbound { flow.localSeq &+= UInt32(segment.count) } else { flow.remoteSeq &+= UInt32(segment.count) }
            offset += segment.count
        }
        flows[connection.id] = flow
        try flushEverySecond(event.timeNanoseconds)
    }

    public func write(_ event: ConnectionEvent) throws(OutputError) {
        guard case .closed(let connection, let time) = event, var flow = flows.removeValue(forKey: connection.id) else {
            return
        }
        let comment = "pid=\(connection.pid) comm=\(connection.comm) connection closed"
        try packet(connection, fromLocal: true, seq: flow.localSeq, ack: flow.remoteSeq, flags: [.fin, .ack],
                   payload: [], time: time, comment: comment)
        flow.localSeq &+= 1
        try packet(connection, fromLocal: false, seq: flow.remoteSeq, ack: flow.localSeq, flags: [.fin, .ack],
                   payload: [], time: time, comment: comment)
        flow.remoteSeq &+= 1
        try packet(connection, fromLocal: true, seq: flow.localSeq, ack: flow.remoteSeq, flags: [.ack], payload: [],
                   time: time, comment: comment)
        try flushEverySecond(time)
    }

    public func write(_ exchange: HTTPExchange) throws(OutputError) {}

    public func writeLost(_ lost: LostCounts, timeNanoseconds: UInt64) throws(OutputError) {}

    public func flush() throws(OutputError) {
        try file.flush()
    }

    /// The flow of a connection, starting it with a handshake (or a mid-stream note) when new.
    private func flowStarting(_ connection: Connection, time: UInt64) throws(OutputError) -> Flow {
        if let flow = flows[connection.id] { return flow }
        // Initial sequence numbers: any value works; these differ per connection and side.
        let localISN = UInt32(truncatingIfNeeded: connection.id &* 2_654_435_761) | 1
        let remoteISN = localISN ^ 0x5555_5555
        let comment = "pid=\(connection.pid) comm=\(connection.comm) fd=\(connection.fd) role=\(connection.role.rawValue)"
        switch connection.role {
        case .client, .server:
            let localConnected = connection.role == .client
            let (firstISN, secondISN) = localConnected ? (localISN, remoteISN) : (remoteISN, localISN)
            try packet(connection, fromLocal: localConnected, seq: firstISN, ack: 0, flags: [.syn], payload: [],
                       time: time, comment: comment)
            try packet(connection, fromLocal: !localConnected, seq: secondISN, ack: firstISN &+ 1, flags: [.syn, .ack],
                       payload: [], time: time, comment: comment)
            try packet(connection, fromLocal: localConnected, seq: firstISN &+ 1, ack: secondISN &+ 1, flags: [.ack],
                       payload: [], time: time, comment: comment)
            let flow = Flow(localSeq: localISN &+ 1, remoteSeq: remoteISN &+ 1)
            flows[connection.id] = flow
            return flow
        case .unknown:
            let flow = Flow(localSeq: localISN, remoteSeq: remoteISN)
            try packet(connection, fromLocal: true, seq: localISN, ack: remoteISN, flags: [.ack], payload: [],
                       time: time, comment: comment + " (tlstap joined this connection mid-stream)")
            flows[connection.id] = flow
            return flow
        }
    }

    private func flushEverySecond(_ time: UInt64) throws(OutputError) {
        if time >= lastFlush + 1_000_000_000 {
            lastFlush = time
            try file.flush()
        }
    }

    private func packet(
        _ connection: Connection, fromLocal: Bool, seq: UInt32, ack: UInt32, flags: TCPFlags, payload: [UInt8],
        time: UInt64, comment: String
    ) throws(OutputError) {
        let (source, destination) = fromLocal ? (connection.local, connection.remote) : (connection.remote, connection.local)
        let frame = SyntheticFrame.tcp(from: source, to: destination, seq: seq, ack: ack, flags: flags, payload: payload)
        try file.write(Self.enhancedPacket(frame, time: time, comment: comment))
    }

    // MARK: pcapng blocks (https://www.ietf.org/archive/id/draft-ietf-opsawg-pcapng-02.html)

    static func sectionHeader(application: String) -> [UInt8] {
        var body = PcapngBytes()
        body.uint32(0x1A2B_3C4D)  // byte-order magic
        body.uint16(1)
        body.uint16(0)
        body.uint64(UInt64.max)  // section length: unknown
        body.option(4, Array(application.utf8))  // shb_userappl
        body.endOfOptions()
        return PcapngBytes.block(type: 0x0A0D_0D0A, body: body.bytes)
    }

    static func interfaceDescription() -> [UInt8] {
        var body = PcapngBytes()
        body.uint16(1)  // LINKTYPE_ETHERNET
        body.uint16(0)
        body.uint32(0)  // no snap length limit
        body.option(2, Array("tlstap".utf8))  // if_name
        body.option(3, Array("TLS plaintext captured by tlstap".utf8))  // if_description
        body.option(9, [9])  // if_tsresol: 10^-9 s
        body.endOfOptions()
        return PcapngBytes.block(type: 1, body: body.bytes)
    }

    static func enhancedPacket(_ frame: [UInt8], time: UInt64, comment: String) -> [UInt8] {
        var body = PcapngBytes()
        body.uint32(0)  // interface 0
        body.uint32(UInt32(truncatingIfNeeded: time >> 32))
        body.uint32(UInt32(truncatingIfNeeded: time))
        body.uint32(UInt32(frame.count))
        body.uint32(UInt32(frame.count))
        body.padded(frame)
        body.option(1, Array(comment.utf8))  // opt_comment
        body.endOfOptions()
        return PcapngBytes.block(type: 6, body: body.bytes)
    }
}

/// Little-endian pcapng block building.
struct PcapngBytes {
    var bytes: [UInt8] = []

    mutating func uint16(_ value: UInt16) { withUnsafeBytes(of: value.littleEndian) { bytes += $0 } }
    mutating func uint32(_ value: UInt32) { withUnsafeBytes(of: value.littleEndian) { bytes += $0 } }
    mutating func uint64(_ value: UInt64) { withUnsafeBytes(of: value.littleEndian) { bytes += $0 } }

    mutating func padded(_ data: [UInt8]) {
        bytes += data
        bytes += [UInt8](repeating: 0, count: (4 - data.count % 4) % 4)
    }

    mutating func option(_ code: UInt16, _ value: [UInt8]) {
        uint16(code)
        uint16(UInt16(value.count))
        padded(value)
    }

    mutating func endOfOptions() {
        uint32(0)
    }

    /// type, total length, body, total length.
    static func block(type: UInt32, body: [UInt8]) -> [UInt8] {
        var block = PcapngBytes()
        let total = UInt32(12 + body.count)
        block.uint32(type)
        block.uint32(total)
        block.bytes += body
        block.uint32(total)
        return block.bytes
    }
}

/// TCP header flags.
struct TCPFlags: OptionSet {
    let rawValue: UInt8
    static let fin = TCPFlags(rawValue: 0x01)
    static let syn = TCPFlags(rawValue: 0x02)
    static let psh = TCPFlags(rawValue: 0x08)
    static let ack = TCPFlags(rawValue: 0x10)
}

/// Ethernet + IPv4/IPv6 + TCP frames built from addresses and payload.
enum SyntheticFrame {
    static func tcp(
        from source: SocketAddress, to destination: SocketAddress, seq: UInt32, ack: UInt32, flags: TCPFlags,
        payload: [UInt8]
    ) -> [UInt8] {
        let v6 = source.ip.count == 16
        var tcp: [UInt8] = []
        tcp += bigEndian(source.port) + bigEndian(destination.port) + bigEndian(seq) + bigEndian(ack)
        tcp += [0x50, flags.rawValue] + bigEndian(UInt16(65_535)) + [0, 0, 0, 0]  // offset 5, window, checksum, urgent
        tcp += payload
        let pseudo = source.ip + destination.ip
            + (v6 ? bigEndian(UInt32(tcp.count)) + [0, 0, 0, 6] : [0, 6] + bigEndian(UInt16(tcp.count)))
        let tcpChecksum = checksum(pseudo + tcp)
        tcp[16] = UInt8(tcpChecksum >> 8)
        tcp[17] = UInt8(tcpChecksum & 0xff)

        var ip: [UInt8]
        if v6 {
            ip = [0x60, 0, 0, 0] + bigEndian(UInt16(tcp.count)) + [6, 64] + source.ip + destination.ip
        } else {
            ip = [0x45, 0] + bigEndian(UInt16(20 + tcp.count)) + [0, 0, 0x40, 0, 64, 6, 0, 0] + source.ip + destination.ip
            let ipChecksum = checksum(ip)
            ip[10] = UInt8(ipChecksum >> 8)
            ip[11] = UInt8(ipChecksum & 0xff)
        }
        let ethernet: [UInt8] = [0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01] + (v6 ? [0x86, 0xdd] : [0x08, 0x00])
        return ethernet + ip + tcp
    }

    /// The Internet checksum (RFC 1071).
    static func checksum(_ bytes: [UInt8]) -> UInt16 {
        var sum: UInt32 = 0
        var index = 0
        while index + 1 < bytes.count {
            sum += UInt32(bytes[index]) << 8 | UInt32(bytes[index + 1])
            index += 2
        }
        if index < bytes.count { sum += UInt32(bytes[index]) << 8 }
        while sum >> 16 != 0 { sum = (sum & 0xffff) + (sum >> 16) }
        return ~UInt16(sum)
    }

    private static func bigEndian<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
        withUnsafeBytes(of: value.bigEndian) { Array($0) }
    }
}
