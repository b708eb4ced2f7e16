import Foundation
import TLSTapCore
import Testing

@testable import TLSTapHTTP

/// WebSocket after an HTTP/1.1 upgrade, through the protocol tracker as a
/// capture feeds it: frames built here by RFC 6455's rules, compressed
/// messages by Python's zlib (an independent DEFLATE).
@Suite struct WebSocketTests {
    static let upgradeRequest = Array(
        ("GET /chat HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").utf8)

    static func upgradeResponse(extensions: String? = nil) -> [UInt8] {
        var head =
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
        if let extensions { head += "Sec-WebSocket-Extensions: \(extensions)\r\n" }
        return Array((head + "\r\n").utf8)
    }

    /// One frame: FIN and RSV1 as given, masked with `mask` when there is one.
    static func frame(
        _ opcode: UInt8, _ payload: [UInt8], fin: Bool = true, mask: [UInt8]? = nil, rsv1: Bool = false
    ) -> [UInt8] {
        var bytes: [UInt8] = [(fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | opcode]
        let maskBit: UInt8 = mask == nil ? 0 : 0x80
        switch payload.count {
        case ..<126: bytes.append(maskBit | UInt8(payload.count))
        case ..<65_536: bytes += [maskBit | 126, UInt8(payload.count >> 8), UInt8(payload.count & 0xff)]
        default:
            bytes.append(maskBit | 127)
            bytes += (0..<8).reversed().map { UInt8((payload.count >> ($0 * 8)) & 0xff) }
        }
        guard let mask else { return bytes + payload }
        return bytes + mask + payload.enumerated().map { $0.element ^ mask[$0.offset % 4] }
    }

    static let key: [UInt8] = [0x37, 0xfa, 0x21, 0x3d]

    /// Feeds the upgrade, then each side's bytes cut into pieces of `piece`
    /// bytes (0: whole), then closes the connection.
    static func run(
        client: [UInt8], server: [UInt8], serverFirst: [UInt8] = [], extensions: String? = nil, piece: Int = 0,
        lostBeforeServerByte: Int? = nil
    ) -> [any ProtocolRecord] {
        var tracker = TrackedConnections(HTTPProtocols.tracker(limits: HTTPLimits(maxBodyBytes: 64)))
        var records = tracker.feed(TrackerEvents.event(1, .outbound, upgradeRequest, time: 1))
        // The server's first frame may come in the 101's own write.
        records += tracker.feed(
            TrackerEvents.event(1, .inbound, upgradeResponse(extensions: extensions) + serverFirst, time: 2))
        var time: UInt64 = 3
        for (direction, bytes) in [(Direction.outbound, client), (.inbound, server)] {
            let size = piece == 0 ? max(bytes.count, 1) : piece
            for start in stride(from: 0, to: bytes.count, by: size) {
                time += 1
                let lost =
                    direction == .inbound && lostBeforeServerByte.map { (start..<start + size).contains($0) } == true
                records += tracker.feed(
                    TrackerEvents.event(
                        1, direction, Array(bytes[start..<min(start + size, bytes.count)]), time: time,
                        lostBefore: lost ? 10 : 0))
            }
        }
        return records + tracker.close(connection: 1, time: 100)
    }

    static func messages(_ records: [any ProtocolRecord]) -> [WebSocketMessage] {
        records.compactMap { $0 as? WebSocketMessage }
    }

    @Test(arguments: [0, 1, 2, 7, 64])
    func framesBecomeMessagesAtEverySplit(piece: Int) throws {
        let client =
            Self.frame(1, Array("hel".utf8), fin: false, mask: Self.key)
            + Self.frame(9, Array("ping!".utf8), mask: Self.key)  // between a message's frames
            + Self.frame(0, Array("lo, wor".utf8), fin: false, mask: Self.key)
            + Self.frame(0, Array("ld".utf8), mask: Self.key)
            + Self.frame(2, Array(0..<200), mask: Self.key)  // over 125: a 16-bit length; kept up to 64
            + Self.frame(8, [0x03, 0xe8] + Array("bye".utf8), mask: Self.key)
        let server = Self.frame(10, Array("ping!".utf8)) + Self.frame(8, [0x03, 0xe8])
        let records = Self.run(
            client: client, server: server, serverFirst: Self.frame(1, Array("welcome".utf8)), piece: piece)
        let exchange = try #require(records.first as? HTTPExchange)
        #expect(exchange.status == 101)
        #expect(exchange.note == "upgrade")
        let messages = Self.messages(records)
        #expect(messages.map(\.fromClient) == [false, true, true, true, true, false, false])
        #expect(messages.map(\.opcodeName) == ["text", "ping", "text", "binary", "close", "pong", "close"])
        #expect(messages.map(\.text) == ["welcome", nil, "hello, world", nil, nil, nil, nil])
        #expect(messages.map(\.frames) == [1, 1, 3, 1, 1, 1, 1])
        #expect(messages.map(\.masked) == [false, true, true, true, true, false, false])
        #expect(messages.map(\.length) == [7, 5, 12, 200, 5, 5, 2])
        #expect(messages.allSatisfy { $0.complete })
        #expect(messages.allSatisfy { $0.note == nil })
        #expect(messages[1].payload == Array("ping!".utf8))
        #expect(messages[3].payload == Array(0..<64))  // the rest is counted
        #expect(messages.map(\.closeCode) == [nil, nil, nil, nil, 1000, nil, 1000])
        #expect(messages[4].closeReason == "bye")
        #expect(messages[6].closeReason == "")
        #expect(messages.allSatisfy { $0.connection == 1 && $0.comm == "c" })
        #expect(messages[2].summary == "websocket client → server text \"hello, world\" (12 B, 3 frames, masked)")
    }

    @Test func aMessageCutByTheConnectionsEndIsMarked() {
        let client = Self.frame(1, Array("half".utf8), fin: false, mask: Self.key)
        let messages = Self.messages(Self.run(client: client, server: []))
        #expect(messages.count == 1)
        #expect(messages.first?.complete == false)
        #expect(messages.first?.note == "connection closed")
        #expect(messages.first?.text == "half")
    }

    @Test func afterLostBytesASideIsNotReadAnyFurther() {
        let server = Self.frame(1, Array("first".utf8)) + Self.frame(1, Array("second".utf8))
        // Bytes were lost before the second frame's: where frames begin is no longer known.
        let messages = Self.messages(
            Self.run(client: [], server: server, piece: 7, lostBeforeServerByte: 7))
        #expect(messages.map(\.text) == ["first"])
    }

    @Test func framesThatBreakTheRulesEndTheSide() {
        let client = Self.frame(0, Array("orphan".utf8), mask: Self.key)  // a continuation of nothing
        let server = Self.frame(1, Array("fine".utf8))
        let messages = Self.messages(Self.run(client: client, server: server))
        #expect(messages.map(\.text) == ["fine"])
    }

    /// Two messages compressed with one DEFLATE context (permessage-deflate's
    /// default): the second refers to the first's bytes.
    static func deflated(_ messages: [String], keepContext: Bool) throws -> [[UInt8]] {
        let script = """
            import sys, zlib
            c = zlib.compressobj(wbits=-15)
            for m in sys.argv[1:]:
                if not \(keepContext ? "True" : "False"):
                    c = zlib.compressobj(wbits=-15)
                b = c.compress(m.encode()) + c.flush(zlib.Z_SYNC_FLUSH)
                assert b.endswith(b"\\x00\\x00\\xff\\xff")
                sys.stdout.write(b[:-4].hex() + "\\n")
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = ["-c", script] + messages
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return text.split(separator: "\n").map { line in
            stride(from: 0, to: line.count, by: 2).map { offset in
                let start = line.index(line.startIndex, offsetBy: offset)
                return UInt8(line[start..<line.index(start, offsetBy: 2)], radix: 16)!
            }
        }
    }

    @Test(arguments: [0, 1, 5])
    func compressedMessagesAreInflatedWithTheirContext(piece: Int) throws {
        let texts = ["tlstap reads WebSocket", "tlstap reads WebSocket, compressed too"]
        let client = try Self.deflated(texts, keepContext: true)
        let server = try Self.deflated(texts, keepContext: false)
        // The first message in two frames (RSV1 on the first only).
        let clientBytes =
            Self.frame(1, Array(client[0].prefix(5)), fin: false, mask: Self.key, rsv1: true)
            + Self.frame(0, Array(client[0].dropFirst(5)), mask: Self.key)
            + Self.frame(1, client[1], mask: Self.key, rsv1: true)
        let serverBytes = server.map { Self.frame(1, $0, rsv1: true) }.reduce([], +)
        let messages = Self.messages(
            Self.run(
                client: clientBytes, server: serverBytes,
                extensions: "permessage-deflate; server_no_context_takeover", piece: piece))
        #expect(messages.map(\.text) == texts + texts)
        #expect(messages.allSatisfy { $0.compressed })
        #expect(messages.map(\.wireLength) == (client + server).map(\.count))
        #expect(messages.map(\.length) == (texts + texts).map(\.utf8.count))
        #expect(messages.allSatisfy { $0.note == nil })
    }

    @Test func extensionsParametersAreRead() {
        #expect(PerMessageDeflate(extensions: nil) == nil)
        #expect(PerMessageDeflate(extensions: "x-webkit-deflate-frame") == nil)
        let both = PerMessageDeflate(
            extensions: "foo, permessage-deflate; client_no_context_takeover ;Server_No_Context_Takeover")
        #expect(both?.clientNoContextTakeover == true)
        #expect(both?.serverNoContextTakeover == true)
        #expect(PerMessageDeflate(extensions: "permessage-deflate")?.clientNoContextTakeover == false)
    }

    @Test func anUpgradeToAnUnknownProtocolEndsAnalysis() {
        var tracker = TrackedConnections(HTTPProtocols.tracker())
        let request = Array("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n".utf8)
        let response = Array("HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n".utf8)
        var records = tracker.feed(TrackerEvents.event(1, .outbound, request, time: 1))
        records += tracker.feed(TrackerEvents.event(1, .inbound, response + Self.frame(1, [0x61]), time: 2))
        records += tracker.feed(TrackerEvents.event(1, .outbound, Self.frame(1, [0x61], mask: Self.key), time: 3))
        records += tracker.close(connection: 1, time: 4)
        #expect(records.count == 1)
        #expect((records.first as? HTTPExchange)?.note == "upgrade")
    }
}
