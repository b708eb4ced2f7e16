import TLSTapCore
import TLSTapHTTP

/// `--pcapng FILE`: the decrypted streams as a pcapng capture that Wireshark
/// and tshark dissect as ordinary TCP.
///
/// Each connection becomes a synthetic TCP flow between its real addresses
/// (Ethernet + IPv4/IPv6 + TCP, checksums computed), on ports that make
/// Wireshark dissect the plaintext without "Decode As" (`WiresharkPorts`:
/// HTTP shows its server port as 80, the real one in the comments): a three-way
/// handshake from the side that connected (or a comment that the capture
/// joined mid-stream), data segments with consistent sequence and
/// acknowledgement numbers so TCP reassembly follows the stream (bytes the
/// ring buffer lost are skipped in the sequence space, so a hole shows as
/// one), and FINs at close. Timestamps have nanosecond resolution (if_tsresol = 9); every
/// packet carries a comment naming pid, comm and library. Blocks are
/// written as they happen and flushed at least every second.
public final class PcapngSink: EventSink {
    private struct Flow {
        var ports: WiresharkPorts
        var localSeq: UInt32
        var remoteSeq: UInt32

        /// Moves the sender's sequence number on by `bytes`.
        mutating func advance(outbound: Bool, by bytes: Int) {
            let count = UInt32(truncatingIfNeeded: bytes)
            if outbound { localSeq &+= count } else { remoteSeq &+= count }
        }
    }

    private let file: OutputFile
    private var flows: [UInt64: Flow] = [:]
    private var lastFlush: UInt64 = 0
    /// The comment of the data event being written.
    private var comment: [UInt8] = []
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
        guard let connection = event.connection, event.length > 0 else { return }
        let outbound = event.direction == .outbound
        var flow = try flowStarting(
            connection, firstPayload: event.payload, outbound: outbound, time: event.timeNanoseconds)
        // Lost bytes keep their place in the sequence space, so Wireshark
        // shows "previous segment not captured" where the stream has a hole.
        flow.advance(outbound: outbound, by: Int(truncatingIfNeeded: event.lostBefore))
        // Rendered into a reused buffer: string interpolation per event showed in profiles.
        comment.removeAll(keepingCapacity: true)
        comment.append("pid=", decimal: event.pid)
        comment.append(literal: " comm=")
        comment.append(contentsOf: event.comm.utf8)
        comment.append(literal: " lib=")
        comment.append(contentsOf: event.library.name.utf8)
        comment.append(literal: " func=")
        comment.append(contentsOf: event.function.name.utf8)
        if let port = flow.ports.realServerPort { comment.append(" server_port=", decimal: port) }
        var offset = 0
        while offset < event.payload.count {
            let segment = event.payload[offset..<min(offset + Self.maxSegment, event.payload.count)]
            let (seq, ack) = outbound ? (flow.localSeq, flow.remoteSeq) : (flow.remoteSeq, flow.localSeq)
            try packet(
                flow.ports, fromLocal: outbound, seq: seq, ack: ack, flags: [.psh, .ack], payload: segment,
                time: event.timeNanoseconds, comment: comment)
            flow.advance(outbound: outbound, by: segment.count)
            offset += segment.count
        }
        flow.advance(outbound: outbound, by: Int(truncatingIfNeeded: event.missingBytes))
        flows[connection.id] = flow
        try flushEverySecond(event.timeNanoseconds)
    }

    public func write(_ event: ConnectionEvent) throws(OutputError) {
        guard case .closed(let connection, _, let time) = event, var flow = flows.removeValue(forKey: connection.id)
        else {
            return
        }
        let comment = "pid=\(connection.pid) comm=\(connection.comm) connection closed"
        try packet(
            flow.ports, fromLocal: true, seq: flow.localSeq, ack: flow.remoteSeq, flags: [.fin, .ack],
            payload: [], time: time, comment: comment)
        flow.localSeq &+= 1
        try packet(
            flow.ports, fromLocal: false, seq: flow.remoteSeq, ack: flow.localSeq, flags: [.fin, .ack],
            payload: [], time: time, comment: comment)
        flow.remoteSeq &+= 1
        try packet(
            flow.ports, fromLocal: true, seq: flow.localSeq, ack: flow.remoteSeq, flags: [.ack], payload: [],
            time: time, comment: comment)
        try flushEverySecond(time)
    }

    public func flush() throws(OutputError) {
        try file.flush()
    }

    public func finish() throws(OutputError) {
        try file.finish()
    }

    /// The flow of a connection, starting it with a handshake (or a
    /// mid-stream note) when new; its ports follow from its first bytes.
    private func flowStarting(_ connection: Connection, firstPayload: [UInt8], outbound: Bool, time: UInt64)
        throws(OutputError) -> Flow
    {
        if let flow = flows[connection.id] { return flow }
        let ports = WiresharkPorts(connection: connection, firstPayload: firstPayload, outbound: outbound)
        // Initial sequence numbers: any value works; these differ per connection and side.
        let localISN = UInt32(truncatingIfNeeded: connection.id &* 2_654_435_761) | 1
        let remoteISN = localISN ^ 0x5555_5555
        var comment =
            "pid=\(connection.pid) comm=\(connection.comm) fd=\(connection.fd) role=\(connection.role.rawValue)"
        if let port = ports.realServerPort {
            comment +=
                " server_port=\(port) (shown as \(ports.shownServerPort), so that Wireshark decodes the plaintext)"
        }
        var flow: Flow
        switch connection.role {
        case .client, .server:
            let localConnected = connection.role == .client
            let (firstISN, secondISN) = localConnected ? (localISN, remoteISN) : (remoteISN, localISN)
            try packet(
                ports, fromLocal: localConnected, seq: firstISN, ack: 0, flags: [.syn], payload: [],
                time: time, comment: comment)
            try packet(
                ports, fromLocal: !localConnected, seq: secondISN, ack: firstISN &+ 1, flags: [.syn, .ack],
                payload: [], time: time, comment: comment)
            try packet(
                ports, fromLocal: localConnected, seq: firstISN &+ 1, ack: secondISN &+ 1, flags: [.ack],
                payload: [], time: time, comment: comment)
            flow = Flow(ports: ports, localSeq: localISN &+ 1, remoteSeq: remoteISN &+ 1)
        case .unknown:
            flow = Flow(ports: ports, localSeq: localISN, remoteSeq: remoteISN)
            try packet(
                ports, fromLocal: true, seq: localISN, ack: remoteISN, flags: [.ack], payload: [],
                time: time, comment: comment + " (tlstap joined this connection mid-stream)")
        }
        if let fromLocal = ports.prefaceFromLocal {
            let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
            let (seq, ack) = fromLocal ? (flow.localSeq, flow.remoteSeq) : (flow.remoteSeq, flow.localSeq)
            try packet(
                ports, fromLocal: fromLocal, seq: seq, ack: ack, flags: [.psh, .ack], payload: preface[...],
                time: time,
                comment: "added by tlstap: the HTTP/2 connection preface, sent before tlstap joined this "
                    + "connection, so that Wireshark reads its frames as HTTP/2")
            flow.advance(outbound: fromLocal, by: preface.count)
        }
        flows[connection.id] = flow
        return flow
    }

    private func flushEverySecond(_ time: UInt64) throws(OutputError) {
        if time >= lastFlush + 1_000_000_000 {
            lastFlush = time
            try file.flush()
        }
    }

    /// Writes one packet's block straight into the output buffer: the
    /// payload is copied once, and its checksum read in the same pass.
    private func packet(
        _ ports: WiresharkPorts, fromLocal: Bool, seq: UInt32, ack: UInt32, flags: TCPFlags,
        payload: ArraySlice<UInt8>, time: UInt64, comment: String
    ) throws(OutputError) {
        try packet(
            ports, fromLocal: fromLocal, seq: seq, ack: ack, flags: flags, payload: payload, time: time,
            comment: Array(comment.utf8))
    }

    private func packet(
        _ ports: WiresharkPorts, fromLocal: Bool, seq: UInt32, ack: UInt32, flags: TCPFlags,
        payload: ArraySlice<UInt8>, time: UInt64, comment: [UInt8]
    ) throws(OutputError) {
        let (source, destination) = fromLocal ? (ports.local, ports.remote) : (ports.remote, ports.local)
        let frameLength = SyntheticFrame.headerCount(ipv6: source.ip.count == 16) + payload.count
        try file.append { bytes in
            Self.appendEnhancedPacket(to: &bytes, time: time, comment: comment, frameLength: frameLength) { frame in
                SyntheticFrame.writeTCP(
                    to: &frame, from: source, to: destination, seq: seq, ack: ack, flags: flags, payload: payload)
            }
        }
    }

    // MARK: pcapng blocks (https://www.ietf.org/archive/id/draft-ietf-opsawg-pcapng-02.html)

    static func sectionHeader(application: String) -> [UInt8] {
        let userApplication = Array(application.utf8)
        return block(type: 0x0A0D_0D0A, bodyCount: 16 + ByteCursor.optionCount(userApplication) + 4) { body in
            body.append(littleEndian: UInt32(0x1A2B_3C4D))  // byte-order magic
            body.append(littleEndian: UInt16(1))
            body.append(littleEndian: UInt16(0))
            body.append(littleEndian: UInt64.max)  // section length: unknown
            body.appendOption(4, userApplication)  // shb_userappl
            body.append(littleEndian: UInt32(0))  // end of options
        }
    }

    static func interfaceDescription() -> [UInt8] {
        let name = Array("tlstap".utf8)
        let description = Array("TLS plaintext captured by tlstap".utf8)
        let options = [name, description, [9]].map(ByteCursor.optionCount).reduce(0, +)
        return block(type: 1, bodyCount: 8 + options + 4) { body in
            body.append(littleEndian: UInt16(1))  // LINKTYPE_ETHERNET
            body.append(littleEndian: UInt16(0))
            body.append(littleEndian: UInt32(0))  // no snap length limit
            body.appendOption(2, name)  // if_name
            body.appendOption(3, description)  // if_description
            body.appendOption(9, [9])  // if_tsresol: 10^-9 s
            body.append(littleEndian: UInt32(0))  // end of options
        }
    }

    /// A block: type, total length, the `bodyCount` bytes `writeBody` writes, total length.
    static func block(type: UInt32, bodyCount: Int, writeBody: (inout ByteCursor) -> Void) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.append(atMost: 12 + bodyCount) { block in
            block.append(littleEndian: type)
            block.append(littleEndian: UInt32(12 + bodyCount))
            let start = block.count
            writeBody(&block)
            precondition(block.count - start == bodyCount, "pcapng: the block body is not the length announced")
            block.append(littleEndian: UInt32(12 + bodyCount))
        }
        return bytes
    }

    /// Appends an enhanced packet block whose frame of `frameLength` bytes
    /// `writeFrame` writes. The block's size is known before it is written,
    /// so it is written in one pass into room reserved once: a packet per
    /// call, built from many small appends, showed in profiles.
    static func appendEnhancedPacket(
        to bytes: inout [UInt8], time: UInt64, comment: [UInt8], frameLength: Int,
        writeFrame: (inout ByteCursor) -> Void
    ) {
        let framePadding = (4 - frameLength % 4) % 4
        // Type, length, interface, time, captured and original length; frame; comment; end of options; length.
        let total = 28 + frameLength + framePadding + ByteCursor.optionCount(comment) + 4 + 4
        bytes.append(atMost: total) { block in
            block.append(littleEndian: UInt32(6))
            block.append(littleEndian: UInt32(total))
            block.append(littleEndian: UInt32(0))  // interface 0
            block.append(littleEndian: UInt32(truncatingIfNeeded: time >> 32))
            block.append(littleEndian: UInt32(truncatingIfNeeded: time))
            block.append(littleEndian: UInt32(frameLength))
            block.append(littleEndian: UInt32(frameLength))
            let frameStart = block.count
            writeFrame(&block)
            precondition(block.count - frameStart == frameLength, "pcapng: the frame is not the length announced")
            block.append(zeros: framePadding)
            block.appendOption(1, comment)  // opt_comment
            block.append(littleEndian: UInt32(0))  // end of options
            block.append(littleEndian: UInt32(total))
        }
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
    /// Bytes of a frame before its payload: Ethernet, IP and TCP headers.
    static func headerCount(ipv6: Bool) -> Int {
        14 + (ipv6 ? 40 : 20) + 20
    }

    /// Writes a frame of `headerCount + payload.count` bytes carrying
    /// `payload` from `source` to `destination`, with the IPv4 header's and
    /// the TCP checksum computed. The checksums are summed from the fields
    /// before they are written, so the frame is written once, front to back.
    static func writeTCP(
        to frame: inout ByteCursor, from source: SocketAddress, to destination: SocketAddress, seq: UInt32,
        ack: UInt32, flags: TCPFlags, payload: ArraySlice<UInt8>
    ) {
        let v6 = source.ip.count == 16
        let tcpLength = 20 + payload.count
        // Ethernet: destination 02:00:00:00:00:02, source 02:00:00:00:00:01, type.
        frame.append(bigEndian: UInt32(0x0200_0000))
        frame.append(bigEndian: UInt32(0x0002_0200))
        frame.append(bigEndian: UInt32(0x0000_0001))
        frame.append(bigEndian: UInt16(v6 ? 0x86dd : 0x0800))
        if v6 {
            frame.append(bigEndian: UInt32(0x6000_0000))  // version 6
            frame.append(bigEndian: UInt16(tcpLength))
            frame.append(bigEndian: UInt16(0x0640))  // next header TCP, hop limit 64
        } else {
            let words: (UInt32, UInt32, UInt32) = (
                0x4500 << 16 | UInt32(20 + tcpLength),  // version 4, header length 5; total length
                0x0000_4000,  // id, don't fragment
                0x4006_0000  // TTL 64, TCP, checksum
            )
            var header = InternetChecksum()
            header.add(word: words.0)
            header.add(word: words.1)
            header.add(word: words.2)
            source.ip.withUnsafeBytes { header.add($0) }
            destination.ip.withUnsafeBytes { header.add($0) }
            frame.append(bigEndian: words.0)
            frame.append(bigEndian: words.1)
            frame.append(bigEndian: words.2 | UInt32(header.value))
        }
        source.ip.withUnsafeBytes { frame.append(bytes: $0) }
        destination.ip.withUnsafeBytes { frame.append(bytes: $0) }

        let words: (UInt32, UInt32, UInt32, UInt32) = (
            UInt32(source.port) << 16 | UInt32(destination.port), seq, ack,
            (0x5000 | UInt32(flags.rawValue)) << 16 | 0xffff  // data offset 5, flags; window
        )
        // The pseudo-header: addresses, protocol and TCP length (RFC 9293 3.1, RFC 8200 8.1).
        var tcp = InternetChecksum()
        source.ip.withUnsafeBytes { tcp.add($0) }
        destination.ip.withUnsafeBytes { tcp.add($0) }
        tcp.add(word: v6 ? UInt32(tcpLength) : 6 << 16 | UInt32(tcpLength))
        if v6 { tcp.add(word: 6) }
        tcp.add(word: words.0)
        tcp.add(word: words.1)
        tcp.add(word: words.2)
        tcp.add(word: words.3)
        payload.withUnsafeBytes { tcp.add($0) }
        frame.append(bigEndian: words.0)
        frame.append(bigEndian: words.1)
        frame.append(bigEndian: words.2)
        frame.append(bigEndian: words.3)
        frame.append(bigEndian: UInt32(tcp.value) << 16)  // checksum, urgent pointer
        payload.withUnsafeBytes { frame.append(bytes: $0) }
    }
}

extension ByteCursor {
    mutating func append(littleEndian value: some FixedWidthInteger) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(bytes: $0) }
    }

    mutating func append(bigEndian value: some FixedWidthInteger) {
        Swift.withUnsafeBytes(of: value.bigEndian) { append(bytes: $0) }
    }

    mutating func append(zeros count: Int) {
        for _ in 0..<count { append(0) }
    }

    /// Bytes of a pcapng option holding `value`.
    static func optionCount(_ value: [UInt8]) -> Int {
        4 + value.count + (4 - value.count % 4) % 4
    }

    /// A pcapng option: code, length, value padded to 4 bytes.
    mutating func appendOption(_ code: UInt16, _ value: [UInt8]) {
        append(littleEndian: code)
        append(littleEndian: UInt16(value.count))
        value.withUnsafeBytes { append(bytes: $0) }
        append(zeros: (4 - value.count % 4) % 4)
    }
}

/// The Internet checksum (RFC 1071), summed 4 bytes at a time: a
/// ones'-complement sum of 32-bit words folds to the same 16 bits as one of
/// 16-bit words (RFC 1071, section 2 (B)). Every piece added but the last
/// must have an even length.
struct InternetChecksum {
    private var sum: UInt64 = 0

    mutating func add(_ bytes: UnsafeRawBufferPointer) {
        var index = 0
        while index + 4 <= bytes.count {
            sum &+= UInt64(UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: index, as: UInt32.self)))
            index += 4
        }
        if index + 2 <= bytes.count {
            sum &+= UInt64(bytes[index]) << 8 | UInt64(bytes[index + 1])
            index += 2
        }
        if index < bytes.count { sum &+= UInt64(bytes[index]) << 8 }
    }

    /// Adds a 32-bit word, as its 4 big-endian bytes would be added.
    mutating func add(word: UInt32) {
        sum &+= UInt64(word)
    }

    /// The checksum to put in the header.
    var value: UInt16 {
        var folded = sum
        while folded >> 16 != 0 { folded = (folded & 0xffff) + (folded >> 16) }
        return ~UInt16(folded)
    }
}
