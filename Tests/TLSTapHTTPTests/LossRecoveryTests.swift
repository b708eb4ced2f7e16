import TLSTapCore
import Testing

@testable import TLSTapHTTP

/// When the ring buffer is full, whole calls of a stream are lost (the next
/// call that gets through says how many bytes: `lostBefore`), or chunks of
/// one call (`missingBytes`). The parsers resume at the next message.
@Suite struct LossRecoveryTests {
    /// A server's connection (it accepted): inbound bytes are the client's requests.
    static func request(_ text: String, at time: UInt64, lostBefore: UInt64 = 0) -> DataEvent {
        TrackerEvents.event(1, .inbound, Array(text.utf8), time: time, role: .server, lostBefore: lostBefore)
    }

    static func response(_ text: String, at time: UInt64, lostBefore: UInt64 = 0, length: Int? = nil) -> DataEvent {
        TrackerEvents.event(
            1, .outbound, Array(text.utf8), time: time, role: .server, length: length,
            lostBefore: lostBefore)
    }

    static func run(_ events: [DataEvent], closeAt: UInt64 = 99) -> [HTTPExchange] {
        var tracker = ExchangeTracker()
        return events.flatMap { tracker.feed($0) } + tracker.close(connection: 1, time: closeAt)
    }

    @Test func aLostResponseEndsItsExchangeAndTheNextResponseAnswersTheNextRequest() {
        let result = Self.run([
            Self.request("GET /1 HTTP/1.1\r\nHost: h\r\n\r\n", at: 10),
            Self.response("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", at: 20),
            Self.request("GET /2 HTTP/1.1\r\nHost: h\r\n\r\n", at: 30),
            // The response to /2 (60 bytes) was lost.
            Self.request("GET /3 HTTP/1.1\r\nHost: h\r\n\r\n", at: 50),
            Self.response("HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nnop", at: 60, lostBefore: 60),
        ])
        #expect(result.map(\.path) == ["/1", "/2", "/3"])
        #expect(result.map(\.status) == [200, nil, 404])
        #expect(result.map(\.note) == [nil, "response lost", nil])
        #expect(result.map(\.responseBodyLength) == [5, 0, 3])
        #expect(result.map(\.latencyNanoseconds) == [10, 30, 10])
    }

    @Test func aResponseCutInItsBodyEndsMarkedAndTheNextOneIsParsed() {
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
        let result = Self.run([
            Self.request("GET /big HTTP/1.1\r\n\r\n", at: 10),
            Self.response(head + String(repeating: "a", count: 30), at: 20),
            // 40 bytes of the body were lost; the last 30 arrive, with a line that is not a status line.
            Self.response(
                String(repeating: "b", count: 10) + "\nHTTP/1.1 2000 no\n" + String(repeating: "c", count: 3),
                at: 30, lostBefore: 40),
            Self.request("GET /next HTTP/1.1\r\n\r\n", at: 40),
            Self.response("HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok", at: 50),
        ])
        #expect(result.map(\.path) == ["/big", "/next"])
        #expect(result.map(\.status) == [200, 201])
        #expect(result.map(\.note) == ["response bytes lost", nil])
        #expect(result.map(\.responseBodyLength) == [30, 2])
        #expect(result.map(\.endNanoseconds) == [30, 50])
    }

    /// A call that delivered only its first chunks leaves a gap after its bytes.
    @Test func chunksMissingFromACallAreAGapAfterIt() {
        let result = Self.run([
            Self.request("GET /a HTTP/1.1\r\n\r\n", at: 10),
            Self.response("HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n0123456789", at: 20, length: 88),
            Self.request("GET /b HTTP/1.1\r\n\r\n", at: 30),
            Self.response("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n!", at: 40),
        ])
        #expect(result.map(\.path) == ["/a", "/b"])
        #expect(result.map(\.note) == ["response bytes lost", nil])
        #expect(result.map(\.responseBodyLength) == [10, 1])
    }

    /// Without the resync, the next request line would be read as the rest of the lost body.
    @Test func aRequestBodyCutShortDoesNotSwallowTheNextRequest() {
        let result = Self.run([
            Self.request(
                "POST /up HTTP/1.1\r\nContent-Length: 100\r\n\r\n" + String(repeating: "x", count: 20), at: 10),
            Self.response("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", at: 20),
            Self.request("GET /after HTTP/1.1\r\nHost: h\r\n\r\n", at: 30, lostBefore: 80),
            Self.response("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone", at: 40),
        ])
        #expect(result.map(\.method) == ["POST", "GET"])
        #expect(result.map(\.path) == ["/up", "/after"])
        #expect(result.map(\.requestBodyLength) == [20, 0])
        #expect(result.map(\.responseBodyLength) == [0, 4])
        // Answered before its body was all sent, the POST waited for the rest, which was lost.
        #expect(result.map(\.note) == ["request bytes lost", nil])
    }

    /// After a gap the parser looks for a start line at the start of a
    /// call's bytes or after a line feed, also one split across calls.
    @Test func theParserResumesAtAStartLineSplitAcrossCalls() {
        var parser = HTTP1StreamParser(limits: HTTPLimits())
        parser.skipToNextMessage(.responses)
        #expect(parser.feed(Array("end of a lost body\r\nHTTP/1.1 20".utf8), time: 1) { _, _ in .none }.isEmpty)
        let events = parser.feed(Array("4 No Content\r\nServer: t\r\n\r\n".utf8), time: 2) { _, _ in .none }
        #expect(
            events == [
                .head(
                    HTTP1Head(
                        first: "HTTP/1.1", second: "204", third: "No Content", headers: [HTTPHeader("Server", "t")]),
                    time: 1),
                .end(time: 2),
            ])
        for line in ["HTTP/1.1 2000 x", "HTTP/2 200 OK", "GET / HTTP/1.1", "xHTTP/1.1 200 OK"] {
            #expect(!HTTP1StreamParser.isStartLine(Array(line.utf8)[...], kind: .responses), "\(line)")
        }
        for line in ["GET / HTTP/1.1", "M-SEARCH * HTTP/1.1", "DELETE /x?y HTTP/1.0"] {
            #expect(HTTP1StreamParser.isStartLine(Array(line.utf8)[...], kind: .requests), "\(line)")
        }
        for line in ["get / HTTP/1.1", "GET / HTTP/1.2", "GET /", "GET  HTTP/1.1"] {
            #expect(!HTTP1StreamParser.isStartLine(Array(line.utf8)[...], kind: .requests), "\(line)")
        }
    }

    /// A start line that begins a call is found however that call is cut
    /// (each piece a call of its own), also after other bytes on its line;
    /// its message starts when its first piece came.
    @Test(arguments: [1, 2, 5, 100])
    func theParserResumesAtACallsStartCutInPieces(piece: Int) {
        var parser = HTTP1StreamParser(limits: HTTPLimits())
        parser.skipToNextMessage(.responses)
        var events = parser.feed(Array("end of a lost body\nand no line end".utf8), time: 1) { _, _ in .none }
        let next = Array("HTTP/1.1 204 No Content\r\n\r\n".utf8)
        var time: UInt64 = 1
        for start in stride(from: 0, to: next.count, by: piece) {
            time += 1
            events += parser.feed(Array(next[start..<min(start + piece, next.count)]), time: time) { _, _ in .none }
        }
        #expect(
            events == [
                .head(HTTP1Head(first: "HTTP/1.1", second: "204", third: "No Content", headers: []), time: 2),
                .end(time: time),
            ])
    }

    /// HTTP/2: whole calls hold whole frames, so frames go on after a gap;
    /// streams open at the gap are marked, and that side's header table
    /// holds only entries added after it.
    @Test func http2GoesOnAfterLostFramesWithOpenStreamsMarked() {
        var client = HTTP2Writer()
        var server = HTTP2Writer()
        let request = { (writer: inout HTTP2Writer, stream: UInt32) in
            writer.headers(
                [(":method", "GET"), (":scheme", "https"), (":path", "/s\(stream)"), (":authority", "h")],
                stream: stream, endStream: true)
        }
        var events = [
            TrackerEvents.event(
                1, .outbound, HTTP2FrameReader.preface + HTTP2Writer.settings + request(&client, 1), time: 1),
            TrackerEvents.event(
                1, .inbound,
                HTTP2Writer.settings + server.headers([(":status", "200")], stream: 1, endStream: false)
                    + HTTP2Writer.data(Array("one".utf8), stream: 1, endStream: true), time: 2),
            TrackerEvents.event(1, .outbound, request(&client, 3), time: 3),
            TrackerEvents.event(
                1, .inbound, server.headers([(":status", "200")], stream: 3, endStream: false), time: 4),
        ]
        // A DATA frame of stream 3 was lost; the next call holds its last one.
        let lost = HTTP2Writer.data(Array("lost".utf8), stream: 3, endStream: false)
        events.append(
            TrackerEvents.event(
                1, .inbound, HTTP2Writer.data(Array("end".utf8), stream: 3, endStream: true),
                time: 6, lostBefore: UInt64(lost.count)))
        events.append(TrackerEvents.event(1, .outbound, request(&client, 5), time: 7))
        events.append(
            TrackerEvents.event(1, .inbound, server.headers([(":status", "204")], stream: 5, endStream: true), time: 8))
        var tracker = ExchangeTracker()
        let result = events.flatMap { tracker.feed($0) }
        #expect(result.map(\.stream) == [1, 3, 5])
        #expect(result.map(\.path) == ["/s1", "/s3", "/s5"])
        #expect(result.map(\.status) == [200, 200, 204])  // 204 is in the static table
        #expect(result.map(\.note) == [nil, "bytes lost", nil])
        #expect(result.map(\.responseBodyLength) == [3, 3, 0])
    }

    /// A call after a gap in which no frame begins is skipped; frames resume
    /// at the next call that begins with one.
    @Test func http2SkipsACallAfterAGapInWhichNoFrameBegins() {
        var client = HTTP2Writer()
        var server = HTTP2Writer()
        let request = client.headers([(":method", "GET"), (":path", "/x")], stream: 1, endStream: true)
        var tracker = ExchangeTracker()
        var result = tracker.feed(TrackerEvents.event(1, .outbound, HTTP2FrameReader.preface + request, time: 1))
        result += tracker.feed(
            TrackerEvents.event(1, .inbound, Array(repeating: 0xff, count: 40), time: 2, lostBefore: 7))
        result += tracker.feed(TrackerEvents.event(1, .inbound, HTTP2Writer.settings, time: 3))
        result += tracker.feed(
            TrackerEvents.event(
                1, .inbound, server.headers([(":status", "200")], stream: 1, endStream: true),
                time: 4))
        #expect(result.map(\.stream) == [1])
        #expect(result.map(\.path) == ["/x"])
        #expect(result.map(\.status) == [200])
        #expect(result.map(\.note) == ["bytes lost"])
        #expect(tracker.close(connection: 1, time: 5).isEmpty)
    }

    /// nginx writes HTTP/2 in 16 KiB calls that cut through frames, so the
    /// call after a gap begins inside a frame. Frames resume at the first
    /// frame header after the gap (here every frame is of an open stream),
    /// even when no header begins in the first calls after it or one is cut
    /// in two by a call's end. Every frame wholly before the gap or after
    /// that header counts (`:status 200` is in HPACK's static table, so the
    /// status is known after the gap too); a stream whose last frame was lost
    /// ends when the connection closes. Payloads are random bytes: they must
    /// not pass for a frame header.
    @Test(arguments: [4_033, 9_000, 16_384], 1...11)  // 4,033: headers cut in two after lost calls 9-11
    func http2ResumesAtTheFirstFrameHeaderAfterAGap(callSize: Int, lostCall: Int) {
        var client = HTTP2Writer()
        var server = HTTP2Writer()
        let streams: [UInt32] = [1, 3, 5, 7, 9]
        let requests = streams.flatMap { stream in
            client.headers(
                [(":method", "GET"), (":scheme", "https"), (":path", "/\(stream)"), (":authority", "h")],
                stream: stream, endStream: true)
        }
        var state: UInt64 = 0x9e37_79b9_7f4a_7c15
        var bytes = HTTP2Writer.settings
        var frameStarts: [Int] = []
        var headers: [UInt32: Range<Int>] = [:]
        var dataFrames: [(stream: UInt32, range: Range<Int>, payload: Int, last: Bool)] = []
        for stream in streams {
            frameStarts.append(bytes.count)
            let start = bytes.count
            bytes += server.headers([(":status", "200")], stream: stream, endStream: false)
            headers[stream] = start..<bytes.count
            for (index, size) in [16_384, 16_384, 7_232].enumerated() {
                let payload = (0..<size).map { _ in
                    state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                    return UInt8(truncatingIfNeeded: state >> 56)
                }
                let frame = HTTP2Writer.data(payload, stream: stream, endStream: index == 2)
                frameStarts.append(bytes.count)
                dataFrames.append((stream, bytes.count..<(bytes.count + frame.count), size, index == 2))
                bytes += frame
            }
        }
        let gap = (lostCall * callSize)..<((lostCall + 1) * callSize)
        let resume = frameStarts.first { $0 >= gap.upperBound } ?? bytes.count
        let counted = dataFrames.filter { $0.range.upperBound <= gap.lowerBound || $0.range.lowerBound >= resume }

        var events = [
            TrackerEvents.event(1, .outbound, HTTP2FrameReader.preface + HTTP2Writer.settings + requests, time: 1)
        ]
        for (index, start) in stride(from: 0, to: bytes.count, by: callSize).enumerated() where index != lostCall {
            events.append(
                TrackerEvents.event(
                    1, .inbound, Array(bytes[start..<min(start + callSize, bytes.count)]),
                    time: UInt64(10 + index), lostBefore: index == lostCall + 1 ? UInt64(gap.count) : 0))
        }
        var tracker = ExchangeTracker()
        let finished = events.flatMap { tracker.feed($0) }
        let closed = tracker.close(connection: 1, time: 99)

        #expect(Set(finished.map(\.stream)) == Set(counted.filter(\.last).map(\.stream)))
        #expect(Set(finished.map(\.stream)).union(closed.map(\.stream)) == Set(streams))
        for exchange in finished + closed {
            let stream = exchange.stream ?? 0
            #expect(exchange.path == "/\(stream)")
            #expect(
                exchange.responseBodyLength == counted.filter { $0.stream == stream }.map(\.payload).reduce(0, +),
                "stream \(stream)")
            let headersSeen = headers[stream]!.upperBound <= gap.lowerBound || headers[stream]!.lowerBound >= resume
            #expect(exchange.status == (headersSeen ? 200 : nil), "stream \(stream)")
        }
    }

    /// After a gap in the client's bytes, the request that opens its next
    /// stream is found inside a call that begins in a lost request body.
    /// It refers to a table entry added before the gap, so its headers are
    /// not decoded; the responses' are.
    @Test func http2FindsTheClientsNextStreamAfterAGap() {
        var client = HTTP2Writer()
        var server = HTTP2Writer()
        let opening =
            HTTP2FrameReader.preface + HTTP2Writer.settings
            + client.headers(
                [(":method", "POST"), (":path", "/upload"), ("user-agent", "t/1")], stream: 1, endStream: false)
        let body =
            HTTP2Writer.data(Array(repeating: 0x42, count: 16_384), stream: 1, endStream: false)
            + HTTP2Writer.data(Array(repeating: 0x43, count: 13_616), stream: 1, endStream: true)
        let next = client.headers(
            [(":method", "GET"), (":path", "/next"), ("user-agent", "t/1")], stream: 3, endStream: true)
        let sent = opening + body + next
        let cut = opening.count + 100
        let gap = cut..<(cut + 20_000)
        var tracker = ExchangeTracker()
        var result = tracker.feed(TrackerEvents.event(1, .outbound, Array(sent[..<gap.lowerBound]), time: 1))
        result += tracker.feed(
            TrackerEvents.event(
                1, .outbound, Array(sent[gap.upperBound...]), time: 2,
                lostBefore: UInt64(gap.count)))
        result += tracker.feed(
            TrackerEvents.event(
                1, .inbound,
                HTTP2Writer.settings
                    + server.headers([(":status", "201")], stream: 1, endStream: true)
                    + server.headers([(":status", "200")], stream: 3, endStream: true),
                time: 3))
        #expect(result.map(\.stream) == [1, 3])
        #expect(result.map(\.path) == ["/upload", "/next"])
        #expect(result.map(\.status) == [201, 200])
        // user-agent refers to the request table's entry from before the gap: left out, and counted.
        #expect(result.last?.requestHeaders.first("user-agent") == nil)
        #expect(
            result.map(\.note)
                == ["bytes lost", "headers incomplete: 1 field refers to HPACK table entries tlstap never saw"])
        #expect(result.map(\.requestBodyLength) == [0, 0])
    }
}
