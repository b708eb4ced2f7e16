import TLSTapCore
import Testing

@testable import TLSTapHTTP

/// tlstap joined connections already in use (`seen_from: mid`): no HTTP/2
/// preface, and either side's first bytes may be the rest of a message.
@Suite struct MidwayJoinTests {
    /// One call's bytes on connection 1, which tlstap joined midway.
    struct Call {
        var outbound: Bool
        var bytes: [UInt8]
        var time: UInt64
    }

    /// Bytes from a seeded generator (a 64-bit LCG, as in LossRecoveryTests).
    struct SeededBytes {
        var state: UInt64

        mutating func next(_ count: Int) -> [UInt8] {
            (0..<count).map { _ in
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                return UInt8(truncatingIfNeeded: state >> 56)
            }
        }
    }

    /// Feeds `calls` to a tracker, each call cut at `cut` (when inside it)
    /// and its parts into pieces of `piece` bytes, each a call of its own.
    static func run(
        _ calls: [Call], role: ConnectionRole = .client, cut: Int = 0, piece: Int = .max
    ) -> [HTTPExchange] {
        var tracker = ExchangeTracker()
        var result: [HTTPExchange] = []
        for call in calls {
            let parts =
                cut > 0 && cut < call.bytes.count ? [call.bytes[..<cut], call.bytes[cut...]] : [call.bytes[...]]
            for part in parts {
                for start in stride(from: part.startIndex, to: part.endIndex, by: piece) {
                    let bytes = Array(part[start..<(start + min(piece, part.endIndex - start))])
                    result += tracker.feed(
                        TrackerEvents.event(
                            1, call.outbound ? .outbound : .inbound, bytes, time: call.time, role: role, origin: .mid))
                }
            }
        }
        return result + tracker.close(connection: 1, time: 999)
    }

    /// An HTTP/2 connection joined midway, from the client's side: its
    /// first bytes are the rest of a request body (inside a DATA frame),
    /// the server's the end of stream 1's response (whose HEADERS came
    /// before the join) and stream 3's, whose request went out before the
    /// join. Streams 5 and 7 open after it; stream 5's request and response
    /// refer to table entries from before the join, stream 7's do not.
    static func http2Conversation() -> [Call] {
        var client = HTTP2Writer()
        var server = HTTP2Writer()
        _ = client.block([(":authority", "earlier.test"), ("user-agent", "t/1")])  // before the join
        _ = server.block([("server", "earlier")])
        var random = SeededBytes(state: 0x5eed)
        let requestBodyRest = random.next(100)
        let response1End = HTTP2Writer.data(Array("tail".utf8), stream: 1, endStream: true)
        let response3 = server.headers(
            [(":status", "200"), ("content-type", "text/plain")], stream: 3, endStream: false)
        let request5 = client.headers(
            [
                (":method", "GET"), (":scheme", "https"), (":authority", "earlier.test"), (":path", "/five"),
                ("user-agent", "t/1"),
            ], stream: 5, endStream: true)
        let request7 = client.headers(
            [(":method", "GET"), (":scheme", "https"), (":path", "/seven"), ("x-seven", "1")], stream: 7,
            endStream: true)
        let response5 = server.headers([(":status", "404"), ("server", "earlier")], stream: 5, endStream: true)
        let response7 = server.headers([(":status", "200")], stream: 7, endStream: false)
        return [
            Call(outbound: true, bytes: requestBodyRest, time: 10),
            Call(outbound: false, bytes: response1End + response3, time: 20),
            Call(outbound: false, bytes: HTTP2Writer.data(Array("abc".utf8), stream: 3, endStream: true), time: 30),
            Call(outbound: true, bytes: request5, time: 40),
            Call(outbound: true, bytes: request7, time: 50),
            Call(outbound: false, bytes: response5, time: 60),
            Call(outbound: false, bytes: response7 + HTTP2Writer.data([1, 2], stream: 7, endStream: true), time: 70),
        ]
    }

    /// What `http2Conversation` must give, however it is cut: no exchange
    /// for stream 1 (its HEADERS were not seen); stream 3 without its
    /// request; stream 5 whole but with no header that refers to an unknown
    /// table entry guessed; stream 7 whole.
    static func expectHTTP2Conversation(_ result: [HTTPExchange], _ comment: Comment) {
        #expect(result.map(\.stream) == [3, 5, 7], comment)
        #expect(result.allSatisfy { $0.protocolVersion == "HTTP/2" }, comment)
        #expect(result.map(\.requestCaptured) == [false, true, true], comment)
        #expect(result.map(\.startNanoseconds) == [20, 40, 50], comment)
        #expect(result.map(\.latencyNanoseconds) == [nil, 20, 20], comment)
        #expect(
            result.map(\.noteText)
                == [
                    "request not captured",
                    "headers incomplete: 3 fields refer to HPACK table entries tlstap never saw",
                    nil,
                ], comment)
        #expect(result.map(\.path) == ["", "/five", "/seven"], comment)
        #expect(result.map(\.status) == [200, 404, 200], comment)
        #expect(result.map(\.responseBodyLength) == [3, 0, 2], comment)
        #expect(result.first?.responseHeaders.first("content-type") == "text/plain", comment)
        #expect(result.last?.requestHeaders.first("x-seven") == "1", comment)
    }

    @Test(arguments: [1, 2, 3, 9, 64, Int.max])
    func http2FramesWithoutAPrefaceAreRecognisedInAnyPieces(piece: Int) {
        Self.expectHTTP2Conversation(Self.run(Self.http2Conversation(), piece: piece), "piece \(piece)")
    }

    @Test func http2FramesWithoutAPrefaceAreRecognisedAtEverySplit() {
        let calls = Self.http2Conversation()
        for cut in 0...(calls.map(\.bytes.count).max() ?? 0) {
            Self.expectHTTP2Conversation(Self.run(calls, cut: cut), "cut \(cut)")
        }
    }

    /// With the role unknown, frames fit either side; the first header
    /// block that opens with `:method` or `:status` tells the client's.
    /// Before it, a SETTINGS frame (which fits both) leaves the role open.
    @Test(arguments: [false, true])
    func theFirstHeaderBlockTellsTheClientWhenTheRoleIsUnknown(responseFirst: Bool) {
        var client = HTTP2Writer()
        var server = HTTP2Writer()
        let response7 = server.headers([(":status", "204")], stream: 7, endStream: true)
        let request9 = client.headers(
            [(":method", "GET"), (":scheme", "https"), (":path", "/x")], stream: 9, endStream: true)
        let response9 = server.headers([(":status", "200")], stream: 9, endStream: true)
        let calls =
            [Call(outbound: false, bytes: HTTP2Writer.settings, time: 0)]
            + (responseFirst ? [Call(outbound: false, bytes: response7, time: 1)] : [])
            + [Call(outbound: true, bytes: request9, time: 2), Call(outbound: false, bytes: response9, time: 3)]
        for piece in [1, 5, Int.max] {
            let result = Self.run(calls, role: .unknown, piece: piece)
            #expect(result.map(\.stream) == (responseFirst ? [7, 9] : [9]), "piece \(piece)")
            #expect(result.map(\.requestCaptured) == (responseFirst ? [false, true] : [true]), "piece \(piece)")
            #expect(result.last?.path == "/x", "piece \(piece)")
            #expect(result.map(\.status) == (responseFirst ? [204, 200] : [200]), "piece \(piece)")
        }
    }

    /// Random bytes (seeded) and TLS records are never taken for frames,
    /// from either side, whatever their length.
    @Test func randomBytesAndTLSRecordsAreNotFrames() {
        var random = SeededBytes(state: 0x0dd_ba11)
        let maxPayload = HTTP2Connection.maxFramePayload(HTTPLimits())
        var taken: [String] = []
        for round in 0..<10_000 {
            let length = 1 + Int(random.next(2).reduce(0) { $0 << 8 | Int($1) }) % 4_096
            var bytes = random.next(length)
            if round % 4 == 0 {  // a TLS record: handshake, alert or application data, TLS 1.0 to 1.3
                bytes = [[0x16, 0x15, 0x17][round % 3], 0x03, UInt8(1 + round % 3)] + bytes
            }
            for fromClient in [true, false]
            where HTTP2FrameRun.verdict(bytes, fromClient: fromClient, maxPayload: maxPayload) == .frames {
                taken.append("round \(round), \(fromClient ? "client" : "server"): \(bytes.prefix(18))")
            }
        }
        #expect(taken.isEmpty)
    }

    /// Through the tracker: random bytes both ways make no exchange, and
    /// the connection is given up (raw) once both sides sent some.
    @Test func aMidwayConnectionOfRandomBytesIsNotHTTP() {
        var random = SeededBytes(state: 42)
        var tracker = ExchangeTracker()
        var result: [HTTPExchange] = []
        for time in 0..<200 {
            let direction: Direction = time % 2 == 0 ? .outbound : .inbound
            let event = TrackerEvents.event(
                1, direction, random.next(300), time: UInt64(time), role: .client, origin: .mid)
            result += tracker.feed(event)
        }
        #expect(result.isEmpty)
        #expect(tracker.close(connection: 1, time: 999).isEmpty)
    }

    /// Frames a server sends before the client's preface arrives (its
    /// SETTINGS) do not make a connection seen from its start "midway":
    /// the preface follows and is read as one.
    @Test func aServersFirstSettingsDoNotHideThePreface() {
        var client = HTTP2Writer()
        var server = HTTP2Writer()
        let request = client.headers([(":method", "GET"), (":path", "/"), ("x-a", "1")], stream: 1, endStream: true)
        let calls = [
            Call(outbound: false, bytes: HTTP2Writer.settings, time: 1),
            Call(outbound: true, bytes: HTTP2FrameReader.preface + HTTP2Writer.settings + request, time: 2),
            Call(outbound: false, bytes: server.headers([(":status", "200")], stream: 1, endStream: true), time: 3),
        ]
        var tracker = ExchangeTracker()
        let result = calls.flatMap { call in
            let direction: Direction = call.outbound ? .outbound : .inbound
            return tracker.feed(TrackerEvents.event(1, direction, call.bytes, time: call.time, origin: .connect))
        }
        #expect(result.map(\.stream) == [1])
        #expect(result.map(\.noteText) == [nil])
        #expect(result.map(\.path) == ["/"])
        #expect(result.map(\.status) == [200])
    }

    /// HTTP/1 joined midway: the client's first bytes are the rest of a
    /// request body, the server's are that request's response; then a
    /// whole exchange. The first starts at its response, without latency.
    @Test(arguments: [1, 2, 7, Int.max])
    func anHTTP1ResponseFirstIsRecognisedAndTheRestOfItsRequestSkipped(piece: Int) {
        let calls = [
            Call(outbound: true, bytes: Array("rest of an upload body\r\nHTTP/1.1 is in it".utf8), time: 10),
            Call(outbound: false, bytes: Array("HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok".utf8), time: 20),
            Call(outbound: true, bytes: Array("GET /next HTTP/1.1\r\nHost: h\r\n\r\n".utf8), time: 30),
            Call(outbound: false, bytes: Array("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n!".utf8), time: 45),
        ]
        let result = Self.run(calls, piece: piece)
        #expect(result.map(\.path) == ["", "/next"])
        #expect(result.map(\.status) == [201, 200])
        #expect(result.map(\.requestCaptured) == [false, true])
        #expect(result.map(\.startNanoseconds) == [20, 30])
        #expect(result.map(\.latencyNanoseconds) == [nil, 15])
        #expect(result.map(\.responseBodyLength) == [2, 1])
    }

    /// HTTP/1 joined midway in a response body: the server's first bytes
    /// are skipped, and the client's next request line tells HTTP/1.
    @Test(arguments: [1, 3, Int.max])
    func theRestOfAResponseIsSkippedWhenTheNextRequestTells(piece: Int) {
        let calls = [
            Call(outbound: false, bytes: Array("<p>the end of a page</p>\n</html>".utf8), time: 10),
            Call(outbound: true, bytes: Array("GET /again HTTP/1.1\r\nHost: h\r\n\r\n".utf8), time: 30),
            Call(outbound: false, bytes: Array("HTTP/1.1 304 Not Modified\r\n\r\n".utf8), time: 35),
        ]
        let result = Self.run(calls, piece: piece)
        #expect(result.map(\.path) == ["/again"])
        #expect(result.map(\.status) == [304])
        #expect(result.map(\.latencyNanoseconds) == [5])
    }
}
