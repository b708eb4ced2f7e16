import NIOCore
import NIOHPACK
import TLSTapCore
import Testing

@testable import TLSTapHTTP

/// Builds HTTP/2 byte streams the way a client and a server would, with
/// NIOHPACK's encoder (one per direction, as on the wire).
struct HTTP2Writer {
    var encoder = HPACKEncoder(allocator: ByteBufferAllocator())

    static func frame(type: UInt8, flags: UInt8, stream: UInt32, payload: [UInt8]) -> [UInt8] {
        let length = payload.count
        return [
            UInt8(length >> 16 & 0xff), UInt8(length >> 8 & 0xff), UInt8(length & 0xff), type, flags,
            UInt8(stream >> 24 & 0x7f), UInt8(stream >> 16 & 0xff), UInt8(stream >> 8 & 0xff), UInt8(stream & 0xff),
        ]
            + payload
    }

    mutating func block(_ headers: [(String, String)]) -> [UInt8] {
        var buffer = ByteBuffer()
        try! encoder.encode(headers: HPACKHeaders(headers), to: &buffer)
        return Array(buffer.readableBytesView)
    }

    /// HEADERS, split into HEADERS + CONTINUATION frames when `split` is set.
    mutating func headers(
        _ headers: [(String, String)], stream: UInt32, endStream: Bool, split: Bool = false,
        padding: Int = 0
    ) -> [UInt8] {
        let block = self.block(headers)
        let end: UInt8 = endStream ? 0x1 : 0
        if split && block.count > 2 {
            let half = block.count / 2
            return Self.frame(type: 1, flags: end, stream: stream, payload: Array(block[..<half]))
                + Self.frame(type: 9, flags: 0x4, stream: stream, payload: Array(block[half...]))
        }
        if padding > 0 {
            return Self.frame(
                type: 1, flags: end | 0x4 | 0x8, stream: stream,
                payload: [UInt8(padding)] + block + Array(repeating: 0, count: padding))
        }
        return Self.frame(type: 1, flags: end | 0x4, stream: stream, payload: block)
    }

    static func data(_ bytes: [UInt8], stream: UInt32, endStream: Bool, padding: Int = 0) -> [UInt8] {
        if padding > 0 {
            return frame(
                type: 0, flags: (endStream ? 1 : 0) | 0x8, stream: stream,
                payload: [UInt8(padding)] + bytes + Array(repeating: 0, count: padding))
        }
        return frame(type: 0, flags: endStream ? 1 : 0, stream: stream, payload: bytes)
    }

    static let settings = frame(type: 4, flags: 0, stream: 0, payload: [0, 3, 0, 0, 0, 100])
    static let settingsAck = frame(type: 4, flags: 1, stream: 0, payload: [])
}

@Suite struct HTTP2Tests {
    /// A client stream and a server stream with two interleaved requests,
    /// CONTINUATION, padding, a reset, and a gRPC call with trailers.
    static func conversation() -> (client: [UInt8], server: [UInt8]) {
        var client = HTTP2Writer()
        var server = HTTP2Writer()
        let grpcRequest: [UInt8] = [0, 0, 0, 0, 3, 1, 2, 3] + [0, 0, 0, 0, 2, 9, 9]
        let clientBytes =
            HTTP2FrameReader.preface + HTTP2Writer.settings
            + client.headers(
                [
                    (":method", "GET"), (":scheme", "https"), (":authority", "example.test"),
                    (":path", "/index.html"), ("user-agent", "test/1"),
                ], stream: 1, endStream: true)
            + client.headers(
                [
                    (":method", "POST"), (":scheme", "https"), (":authority", "example.test"),
                    (":path", "/upload"), ("content-length", "5"),
                ], stream: 3, endStream: false, split: true)
            + HTTP2Writer.data(Array("hel".utf8), stream: 3, endStream: false, padding: 4)
            + HTTP2Writer.data(Array("lo".utf8), stream: 3, endStream: true)
            + client.headers(
                [
                    (":method", "GET"), (":scheme", "https"), (":authority", "example.test"),
                    (":path", "/slow"),
                ], stream: 5, endStream: true)
            + client.headers(
                [
                    (":method", "POST"), (":scheme", "https"), (":authority", "example.test"),
                    (":path", "/helloworld.Greeter/SayHello"), ("content-type", "application/grpc"),
                    ("te", "trailers"),
                ], stream: 7, endStream: false)
            + HTTP2Writer.data(Array(grpcRequest[..<6]), stream: 7, endStream: false)
            + HTTP2Writer.data(Array(grpcRequest[6...]), stream: 7, endStream: true)
        let serverBytes =
            HTTP2Writer.settings + HTTP2Writer.settingsAck
            + server.headers(
                [(":status", "200"), ("content-type", "text/plain")], stream: 3, endStream: false,
                padding: 3)
            + server.headers([(":status", "200"), ("content-type", "text/html")], stream: 1, endStream: false)
            + HTTP2Writer.data(Array("<html>".utf8), stream: 1, endStream: false)
            + HTTP2Writer.data(Array("ok".utf8), stream: 3, endStream: true)
            + HTTP2Writer.data(Array("</html>".utf8), stream: 1, endStream: true)
            + HTTP2Writer.frame(type: 3, flags: 0, stream: 5, payload: [0, 0, 0, 8])
            + server.headers([(":status", "200"), ("content-type", "application/grpc")], stream: 7, endStream: false)
            + HTTP2Writer.data([0, 0, 0, 0, 4, 7, 7, 7, 7], stream: 7, endStream: false)
            + server.headers([("grpc-status", "5"), ("grpc-message", "not found")], stream: 7, endStream: true)
        return (clientBytes, serverBytes)
    }

    static func run(piece: Int) -> [HTTPExchange] {
        let (client, server) = conversation()
        let connection = HTTP2Connection(
            template: HTTPExchange(connection: 1, pid: 2, comm: "c", protocolVersion: ""), limits: HTTPLimits())
        var result: [HTTPExchange] = []
        for start in stride(from: 0, to: client.count, by: piece) {
            result += connection.feed(
                fromClient: true, Array(client[start..<min(start + piece, client.count)]), time: 10)
        }
        for start in stride(from: 0, to: server.count, by: piece) {
            result += connection.feed(
                fromClient: false, Array(server[start..<min(start + piece, server.count)]), time: 20)
        }
        return result + connection.close(time: 30)
    }

    @Test(arguments: [1, 2, 5, 9, 100, 100_000])
    func framesHeadersAndStreamsAtAnySplit(piece: Int) throws {
        let result = Self.run(piece: piece)
        #expect(result.map(\.stream) == [3, 1, 5, 7])
        #expect(result.allSatisfy { $0.protocolVersion == "HTTP/2" && $0.note != "headers incomplete" })
        let post = try #require(result.first { $0.stream == 3 })
        #expect(post.method == "POST" && post.path == "/upload" && post.authority == "example.test")
        #expect(post.scheme == "https")
        #expect(post.status == 200)
        #expect(post.requestBodyLength == 5)
        #expect(post.responseBodyLength == 2)
        #expect(post.requestHeaders.first("content-length") == "5")
        #expect(post.latencyNanoseconds == 10)
        let get = try #require(result.first { $0.stream == 1 })
        #expect(get.path == "/index.html" && get.responseBodyLength == 13)
        #expect(get.requestHeaders.map(\.name) == [":method", ":scheme", ":authority", ":path", "user-agent"])
        #expect(get.responseHeaders == [HTTPHeader(":status", "200"), HTTPHeader("content-type", "text/html")])
        let reset = try #require(result.first { $0.stream == 5 })
        #expect(reset.note == "reset" && reset.status == nil)
        let grpc = try #require(result.first { $0.stream == 7 }?.grpc)
        #expect(grpc.service == "helloworld.Greeter" && grpc.method == "SayHello")
        #expect(grpc.status == 5 && grpc.message == "not found")
        #expect(grpc.requestMessageSizes == [3, 2])
        #expect(grpc.responseMessageSizes == [4])
    }

    /// A header block that does not decode (as when tlstap joins a
    /// connection whose dynamic table it never saw) marks the headers
    /// incomplete instead of inventing them. A later block that refers only
    /// to the static table and to entries added since decodes.
    @Test func anUnknownDynamicTableMarksHeadersIncomplete() {
        var writer = HTTP2Writer()
        _ = writer.block([("x-custom", "value")])  // an entry in the encoder's table we never see
        let client =
            HTTP2FrameReader.preface
            + writer.headers([(":method", "GET"), (":path", "/"), ("x-custom", "value")], stream: 1, endStream: true)
            + writer.headers([(":method", "GET"), (":path", "/later"), ("x-new", "1")], stream: 3, endStream: true)
            + writer.headers([(":method", "GET"), (":path", "/later"), ("x-new", "1")], stream: 5, endStream: true)
        let connection = HTTP2Connection(
            template: HTTPExchange(connection: 1, pid: 2, comm: "c", protocolVersion: ""), limits: HTTPLimits())
        _ = connection.feed(fromClient: true, client, time: 1)
        let result = connection.close(time: 2)
        #expect(result.map(\.stream) == [1, 3, 5])
        #expect(result.map(\.note) == ["headers incomplete", "connection closed", "connection closed"])
        #expect(result.map(\.path) == ["", "/later", "/later"])  // stream 5's refer to the entries stream 3's added
        #expect(result.last?.requestHeaders.first("x-new") == "1")
    }

    @Test func trackerRecognisesBothProtocolsAndIgnoresRawStreams() {
        var tracker = ExchangeTracker()
        let (client, server) = Self.conversation()
        func event(_ connection: UInt64, _ direction: Direction, _ bytes: [UInt8], role: ConnectionRole = .client)
            -> DataEvent
        {
            TrackerEvents.event(connection, direction, bytes, role: role)
        }
        var result = tracker.feed(event(1, .outbound, client)) + tracker.feed(event(1, .inbound, server))
        // A server-side connection of HTTP/1: inbound is the client's.
        result += tracker.feed(event(2, .inbound, Array("GET /x HTTP/1.1\r\nHost: h\r\n\r\n".utf8), role: .server))
        result += tracker.feed(
            event(2, .outbound, Array("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".utf8), role: .server))
        // Role unknown: the side that sent the request line is the client.
        result += tracker.feed(event(3, .inbound, Array("DELETE /y HTTP/1.1\r\n\r\n".utf8), role: .unknown))
        result += tracker.feed(event(3, .outbound, Array("HTTP/1.1 204 No Content\r\n\r\n".utf8), role: .unknown))
        // Not HTTP at all.
        result += tracker.feed(event(4, .outbound, Array("\u{16}\u{3}\u{1}binary".utf8)))
        result += tracker.close(connection: 1, time: 9) + tracker.close(connection: 4, time: 9)
        #expect(result.filter { $0.connection == 1 }.count == 4)
        #expect(result.filter { $0.connection == 2 }.map(\.path) == ["/x"])
        #expect(result.filter { $0.connection == 3 }.map(\.method) == ["DELETE"])
        #expect(result.filter { $0.connection == 4 }.isEmpty)
        #expect(tracker.count == 2)  // connections 2 and 3 are still open
    }
}

extension HTTP2Tests {
    /// Joined mid-connection: frames without a preface are still HTTP/2, and
    /// every header field is decoded but those that refer to a table entry
    /// tlstap never saw, which are counted in the note.
    @Test func aMidConnectionJoinCountsStreamsWithHeadersIncomplete() {
        var client = HTTP2Writer()
        var server = HTTP2Writer()
        _ = client.block([(":authority", "earlier.test")])  // table entries from before the join
        _ = server.block([("server", "earlier")])
        let clientBytes = client.headers(
            [(":method", "GET"), (":path", "/after-join"), (":authority", "earlier.test")],
            stream: 41, endStream: true)
        let serverBytes =
            server.headers([(":status", "200")], stream: 41, endStream: false)
            + HTTP2Writer.data(Array("abc".utf8), stream: 41, endStream: true)
        var tracker = ExchangeTracker()
        func event(_ direction: Direction, _ bytes: [UInt8]) -> DataEvent {
            TrackerEvents.event(9, direction, bytes, origin: .mid)
        }
        let result = tracker.feed(event(.outbound, clientBytes)) + tracker.feed(event(.inbound, serverBytes))
        #expect(result.count == 1)
        #expect(result.first?.stream == 41)
        // Every field but :authority (a dynamic entry from before the join) is decoded.
        #expect(result.first?.note == "headers incomplete: 1 field refers to HPACK table entries tlstap never saw")
        #expect(result.first?.path == "/after-join")
        #expect(result.first?.method == "GET")
        #expect(result.first?.authority == "")
        #expect(result.first?.requestHeaders.map(\.name) == [":method", ":path"])
        #expect(result.first?.status == 200)  // the server's block refers only to the static table
        #expect(result.first?.responseBodyLength == 3)
    }
}

extension HTTP2Tests {
    /// After a mid-connection join: stream 3's request went out before it,
    /// so its first frames are the server's; stream 5 opens after it.
    static func joinedBeforeAResponse() -> [(fromClient: Bool, bytes: [UInt8], time: UInt64)] {
        var client = HTTP2Writer()
        var server = HTTP2Writer()
        let response3 = server.headers(
            [(":status", "200"), ("content-type", "text/plain")], stream: 3, endStream: false)
        let request5 = client.headers(
            [(":method", "GET"), (":scheme", "https"), (":authority", "h"), (":path", "/after")], stream: 5,
            endStream: true)
        return [
            (false, response3, 100),
            (false, HTTP2Writer.data(Array("abc".utf8), stream: 3, endStream: true), 180),
            (true, request5, 200),
            (false, server.headers([(":status", "204")], stream: 5, endStream: true), 260),
        ]
    }

    /// The exchanges of `joinedBeforeAResponse`, each call's bytes cut at
    /// `cut` (when inside it) and then into pieces of `piece` bytes.
    static func exchangesJoinedBeforeAResponse(cut: Int, piece: Int) -> [HTTPExchange] {
        let connection = HTTP2Connection(
            template: HTTPExchange(connection: 1, pid: 2, comm: "c", protocolVersion: ""), limits: HTTPLimits(),
            start: .midway(clientAtFrame: true, serverAtFrame: true))
        var result: [HTTPExchange] = []
        for call in Self.joinedBeforeAResponse() {
            let halves =
                cut > 0 && cut < call.bytes.count ? [call.bytes[..<cut], call.bytes[cut...]] : [call.bytes[...]]
            for half in halves {
                for start in stride(from: half.startIndex, to: half.endIndex, by: piece) {
                    let bytes = Array(half[start..<min(start + piece, half.endIndex)])
                    result += connection.feed(fromClient: call.fromClient, bytes, time: call.time)
                }
            }
        }
        return result + connection.close(time: 999)
    }

    /// A stream that opens with the server's HEADERS starts at them, has no
    /// latency and says its request was not captured, fed in any split.
    @Test(arguments: [1, 2, 9, 100_000])
    func aStreamThatOpensWithItsResponseHasNoRequest(piece: Int) throws {
        let longest = Self.joinedBeforeAResponse().map(\.bytes.count).max() ?? 0
        for cut in 0...longest {
            let result = Self.exchangesJoinedBeforeAResponse(cut: cut, piece: piece)
            try #require(result.count == 2, "cut \(cut)")
            #expect(result.map(\.stream) == [3, 5])
            #expect(result.map(\.requestCaptured) == [false, true])
            #expect(result.map(\.startNanoseconds) == [100, 200])
            #expect(result.map(\.endNanoseconds) == [180, 260])
            #expect(result.map(\.latencyNanoseconds) == [nil, 60])
            #expect(result.map(\.noteText) == ["request not captured", nil])
            #expect(result.map(\.status) == [200, 204])
            #expect(result.map(\.path) == ["", "/after"])
            #expect(result.map(\.responseBodyLength) == [3, 0])
            #expect(result[0].responseHeaders.first("content-type") == "text/plain" && result[0].requestHeaders.isEmpty)
        }
    }
}

extension HTTP2Tests {
    /// A server that answers before the request's body has all arrived
    /// (nginx's `return 200`, a 413 on an upload): the exchange ends when
    /// both sides have ended their stream, and the body sent after the
    /// response counts; or on RST_STREAM, GOAWAY, or the connection's close.
    @Test func anEarlyResponseWaitsForTheRestOfTheRequest() {
        var client = HTTP2Writer()
        var server = HTTP2Writer()
        let post: [(String, String)] = [(":method", "POST"), (":scheme", "https"), (":path", "/upload")]
        let opening = HTTP2FrameReader.preface + HTTP2Writer.settings
        let connection = HTTP2Connection(
            template: HTTPExchange(connection: 1, pid: 2, comm: "c", protocolVersion: ""), limits: HTTPLimits())
        var result = connection.feed(
            fromClient: true, opening + client.headers(post, stream: 1, endStream: false), time: 1)
        result += connection.feed(
            fromClient: false, server.headers([(":status", "413")], stream: 1, endStream: true),
            time: 2)
        #expect(result.isEmpty)  // the request has not ended
        result += connection.feed(
            fromClient: true,
            HTTP2Writer.data(
                Array(repeating: 0x61, count: 18), stream: 1,
                endStream: true), time: 3)
        #expect(result.map(\.status) == [413])
        #expect(result.map(\.requestBodyLength) == [18])
        #expect(result.map(\.endNanoseconds) == [3])
        #expect(result.map(\.note) == [nil])

        // Stream 3: the client resets instead of sending the rest.
        result = connection.feed(fromClient: true, client.headers(post, stream: 3, endStream: false), time: 4)
        result += connection.feed(
            fromClient: false, server.headers([(":status", "401")], stream: 3, endStream: true),
            time: 5)
        result += connection.feed(
            fromClient: true, HTTP2Writer.frame(type: 3, flags: 0, stream: 3, payload: [0, 0, 0, 8]),
            time: 6)
        #expect(result.map(\.status) == [401])
        #expect(result.map(\.note) == ["reset"])

        // Streams 5 and 7: GOAWAY says the server processes up to 5; 7 ends there, 5 when its response does.
        result = connection.feed(
            fromClient: true,
            client.headers(post, stream: 5, endStream: true)
                + client.headers(post, stream: 7, endStream: true), time: 7)
        result += connection.feed(
            fromClient: false,
            HTTP2Writer.frame(
                type: 7, flags: 0, stream: 0,
                payload: [0, 0, 0, 5, 0, 0, 0, 0]), time: 8)
        #expect(result.map(\.stream) == [7])
        #expect(result.map(\.note) == ["refused (GOAWAY)"])
        result = connection.feed(
            fromClient: false, server.headers([(":status", "200")], stream: 5, endStream: true),
            time: 9)
        #expect(result.map(\.stream) == [5])
        #expect(result.map(\.status) == [200])
    }
}
