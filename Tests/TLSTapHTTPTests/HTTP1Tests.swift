import TLSTapCore
import Testing

@testable import TLSTapHTTP

/// One side's bytes at one time.
struct Segment {
    var fromClient: Bool
    var text: String
    var time: UInt64
}

/// Feeds a conversation to an HTTP/1 connection, each segment cut into
/// pieces of `piece` bytes (0: whole), and returns the exchanges.
func exchanges(_ segments: [Segment], piece: Int = 0, closeAt: UInt64? = nil, bodies: Bool = false) -> [HTTPExchange] {
    let connection = HTTP1Connection(
        template: HTTPExchange(connection: 1, pid: 2, comm: "c", protocolVersion: ""),
        limits: HTTPLimits(maxBodyBytes: 8, captureBodies: bodies))
    var result: [HTTPExchange] = []
    for segment in segments {
        let bytes = Array(segment.text.utf8)
        let size = piece == 0 ? max(bytes.count, 1) : piece
        for start in stride(from: 0, to: bytes.count, by: size) {
            let part = Array(bytes[start..<min(start + size, bytes.count)])
            result +=
                segment.fromClient
                ? connection.feedRequest(part, time: segment.time) : connection.feedResponse(part, time: segment.time)
        }
    }
    if let closeAt { result += connection.close(time: closeAt) }
    return result
}

@Suite struct HTTP1Tests {
    static let pieces = [0, 1, 2, 3, 7, 64]

    @Test(arguments: pieces)
    func keepAliveCarriesManyExchanges(piece: Int) {
        let result = exchanges(
            [
                Segment(fromClient: true, text: "GET /a HTTP/1.1\r\nHost: example.test\r\n\r\n", time: 10),
                Segment(fromClient: false, text: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", time: 20),
                Segment(
                    fromClient: true,
                    text: "POST /b?x=1 HTTP/1.1\r\nHost: example.test\r\nContent-Length: 3\r\n\r\nabc", time: 30),
                Segment(fromClient: false, text: "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n", time: 45),
            ], piece: piece)
        #expect(result.count == 2)
        #expect(result.map(\.method) == ["GET", "POST"])
        #expect(result.map(\.path) == ["/a", "/b?x=1"])
        #expect(result.map(\.status) == [200, 201])
        #expect(result.map(\.reason) == ["OK", "Created"])
        #expect(result.map(\.authority) == ["example.test", "example.test"])
        #expect(result.map(\.protocolVersion) == ["HTTP/1.1", "HTTP/1.1"])
        #expect(result.map(\.requestBodyLength) == [0, 3])
        #expect(result.map(\.responseBodyLength) == [5, 0])
        #expect(result.map(\.latencyNanoseconds) == [10, 15])
        #expect(result[0].requestHeaders == [HTTPHeader("Host", "example.test")])
        #expect(result[0].responseHeaders == [HTTPHeader("Content-Length", "5")])
    }

    /// A 1.1 request answered in HTTP/1.0 (openssl s_server -WWW does):
    /// each half keeps its own version.
    @Test(arguments: pieces)
    func aResponseKeepsItsOwnVersion(piece: Int) {
        let result = exchanges(
            [
                Segment(fromClient: true, text: "GET /a HTTP/1.1\r\nHost: example.test\r\n\r\n", time: 10),
                Segment(fromClient: false, text: "HTTP/1.0 200 ok\r\nContent-type: text/plain\r\n\r\nhi", time: 20),
            ], piece: piece, closeAt: 30)
        #expect(result.map(\.protocolVersion) == ["HTTP/1.1"])
        #expect(result.map(\.responseVersion) == ["HTTP/1.0"])
        #expect(result.map(\.responseBodyLength) == [2])
    }

    @Test(arguments: pieces)
    func chunkedBodiesWithTrailers(piece: Int) {
        let result = exchanges(
            [
                Segment(
                    fromClient: true,
                    text: "POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", time: 1),
                Segment(
                    fromClient: false,
                    text: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                        + "4;ext=1\r\nwiki\r\n5\r\npedia\r\n0\r\nX-Checksum: 42\r\n\r\n", time: 2),
            ], piece: piece, bodies: true)
        #expect(result.count == 1)
        #expect(result.first?.requestBodyLength == 3)
        #expect(result.first?.requestBody == Array("abc".utf8))
        #expect(result.first?.responseBodyLength == 9)
        #expect(result.first?.responseBody == Array("wikipedi".utf8))  // capped at 8 bytes
        #expect(result.first?.responseHeaders.last == HTTPHeader("X-Checksum", "42"))
    }

    /// Pipelined requests are answered in order.
    @Test(arguments: pieces)
    func pipelinedRequestsPairInOrder(piece: Int) {
        let result = exchanges(
            [
                Segment(
                    fromClient: true, text: "GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nHEAD /3 HTTP/1.1\r\n\r\n",
                    time: 1),
                Segment(
                    fromClient: false,
                    text: "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"
                        + "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno"
                        + "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", time: 2),
            ], piece: piece)
        #expect(result.map(\.path) == ["/1", "/2", "/3"])
        #expect(result.map(\.status) == [200, 404, 200])
        #expect(result.map(\.responseBodyLength) == [1, 2, 0])  // HEAD: no body whatever Content-Length says
    }

    @Test(arguments: pieces)
    func interimResponsesAndBodilessStatuses(piece: Int) {
        let result = exchanges(
            [
                Segment(
                    fromClient: true, text: "PUT /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
                    time: 1),
                Segment(fromClient: false, text: "HTTP/1.1 100 Continue\r\n\r\n", time: 2),
                Segment(fromClient: true, text: "hi", time: 3),
                Segment(fromClient: false, text: "HTTP/1.1 204 No Content\r\n\r\n", time: 4),
                Segment(fromClient: true, text: "GET /y HTTP/1.1\r\nIf-None-Match: \"a\"\r\n\r\n", time: 5),
                Segment(fromClient: false, text: "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", time: 6),
            ], piece: piece)
        #expect(result.map(\.status) == [204, 304])
        #expect(result.map(\.requestBodyLength) == [2, 0])
        #expect(result.map(\.responseBodyLength) == [0, 0])
    }

    @Test(arguments: pieces)
    func aBodyEndedByCloseEndsAtClose(piece: Int) {
        let result = exchanges(
            [
                Segment(fromClient: true, text: "GET / HTTP/1.0\r\n\r\n", time: 1),
                Segment(fromClient: false, text: "HTTP/1.0 200 OK\r\n\r\nall of it", time: 2),
            ], piece: piece, closeAt: 9)
        #expect(result.count == 1)
        #expect(result.first?.protocolVersion == "HTTP/1.0")
        #expect(result.first?.responseBodyLength == 9)
        #expect(result.first?.endNanoseconds == 9)
        #expect(result.first?.note == nil)
    }

    @Test(arguments: pieces)
    func upgradeStopsParsing(piece: Int) {
        let result = exchanges(
            [
                Segment(
                    fromClient: true, text: "GET /ws HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
                    time: 1),
                Segment(
                    fromClient: false,
                    text: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\u{81}\u{5}hello", time: 2),
                Segment(fromClient: true, text: "GET /not-http HTTP/1.1\r\n\r\n", time: 3),
            ], piece: piece, closeAt: 4)
        #expect(result.count == 1)
        #expect(result.first?.status == 101)
        #expect(result.first?.note == "upgrade")
    }

    /// tlstap joined while a request was under way: the first bytes are its
    /// response. That exchange starts at the response's first byte, has no
    /// latency and says its request was not captured; the next one is whole.
    @Test(arguments: pieces)
    func aResponseWithoutItsRequestStartsAtItsFirstByte(piece: Int) throws {
        let result = exchanges(
            [
                Segment(fromClient: false, text: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", time: 1_000),
                Segment(fromClient: false, text: "lo", time: 1_400),
                Segment(fromClient: true, text: "GET /next HTTP/1.1\r\n\r\n", time: 2_000),
                Segment(fromClient: false, text: "HTTP/1.1 204 No Content\r\n\r\n", time: 2_500),
            ], piece: piece)
        try #require(result.count == 2)
        #expect(result.map(\.requestCaptured) == [false, true])
        #expect(result.map(\.startNanoseconds) == [1_000, 2_000])
        #expect(result.map(\.endNanoseconds) == [1_400, 2_500])
        #expect(result.map(\.latencyNanoseconds) == [nil, 500])
        #expect(result.map(\.noteText) == ["request not captured", nil])
        #expect(result.map(\.note) == [nil, nil])
        #expect(result.map(\.path) == ["", "/next"])
        #expect(result.map(\.status) == [200, 204])
        #expect(result.map(\.protocolVersion) == ["HTTP/1.1", "HTTP/1.1"])
        #expect(result[0].responseBodyLength == 5 && result[0].requestHeaders.isEmpty)
    }

    /// The same through the tracker, which keeps a connection's first bytes
    /// until the client's request line tells it HTTP/1, then replays them:
    /// the response that came first must not start in 1970.
    @Test func theTrackerDatesAResponseThatCameFirstByItsOwnBytes() {
        var tracker = ExchangeTracker()
        let events = [
            TrackerEvents.event(
                1, .inbound, Array("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".utf8),
                time: 1_700_000_000_000_000_000),
            TrackerEvents.event(
                1, .outbound, Array("GET /b HTTP/1.1\r\nHost: h\r\n\r\n".utf8),
                time: 1_700_000_000_100_000_000),
            TrackerEvents.event(
                1, .inbound, Array("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".utf8),
                time: 1_700_000_000_300_000_000),
        ]
        let result = events.flatMap { tracker.feed($0) }
        #expect(result.map(\.startNanoseconds) == [1_700_000_000_000_000_000, 1_700_000_000_100_000_000])
        #expect(result.map(\.latencyNanoseconds) == [nil, 200_000_000])
        #expect(result.map(\.requestCaptured) == [false, true])
    }

    @Test func aRequestWithoutResponseEndsAtClose() {
        let result = exchanges([Segment(fromClient: true, text: "GET /slow HTTP/1.1\r\n\r\n", time: 1)], closeAt: 5)
        #expect(result.count == 1)
        #expect(result.first?.status == nil)
        #expect(result.first?.note == "connection closed")
    }

    @Test(arguments: [
        "\u{0}\u{1}\u{2}garbage\r\n\r\n", "HTTP/1.1 200 OK\r\nbad header line\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ])
    func malformedResponsesStopParsingWithoutATrap(text: String) {
        let result = exchanges(
            [
                Segment(fromClient: true, text: "GET / HTTP/1.1\r\n\r\n", time: 1),
                Segment(fromClient: false, text: text, time: 2),
            ], closeAt: 3)
        #expect(result.count == 1)
    }

    @Test func oversizedHeadersAreRefusedWithBoundedMemory() {
        var parser = HTTP1StreamParser(limits: HTTPLimits(maxHeaderBytes: 100))
        let events = parser.feed(Array(("GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: 500)).utf8), time: 1) {
            _, _ in .none
        }
        #expect(events == [.stop("header section over the limit")])
        #expect(parser.isStopped)
    }

    /// Header names match whatever their case; Transfer-Encoding is a
    /// comma list in which `chunked` is a whole name, in any case.
    @Test func headerNamesAndCodingsIgnoreCase() {
        let headers = [HTTPHeader("Content-LENGTH", "12"), HTTPHeader("content-length", "99"), HTTPHeader("X-1", "a")]
        #expect(headers.first("content-length") == "12")
        #expect(headers.first("CONTENT-Length") == "12")
        #expect(headers.first("content-lengt") == nil)
        #expect(headers.first("x-1") == "a")
        #expect(headers.first("X-\u{11}") == nil)
        #expect(HTTP1Connection.isChunked("chunked"))
        #expect(HTTP1Connection.isChunked("gzip, Chunked"))
        #expect(HTTP1Connection.isChunked(" CHUNKED\t"))
        #expect(!HTTP1Connection.isChunked("gzip"))
        #expect(!HTTP1Connection.isChunked("chunkedx"))
        #expect(!HTTP1Connection.isChunked("x-chunked"))
        #expect(!HTTP1Connection.isChunked(nil))
    }
}

extension HTTP1Tests {
    /// A server that answers before the request's body arrives: the body
    /// sent after the response still counts, and the exchange comes out
    /// once the request has ended too.
    @Test func anEarlyResponseWaitsForTheRestOfTheRequest() {
        var tracker = ExchangeTracker()
        var result = tracker.feed(
            TrackerEvents.event(
                1, .outbound, Array("POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: 18\r\n\r\n".utf8),
                time: 1))
        result += tracker.feed(
            TrackerEvents.event(1, .inbound, Array("HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\n".utf8), time: 2)
        )
        result += tracker.feed(TrackerEvents.event(1, .outbound, Array(repeating: 0x61, count: 18), time: 3))
        result += tracker.feed(
            TrackerEvents.event(1, .outbound, Array("GET /next HTTP/1.1\r\nHost: h\r\n\r\n".utf8), time: 4))
        result += tracker.feed(
            TrackerEvents.event(1, .inbound, Array("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".utf8), time: 5))
        #expect(result.map(\.path) == ["/u", "/next"])
        #expect(result.map(\.status) == [413, 200])
        #expect(result.map(\.requestBodyLength) == [18, 0])
        #expect(result.map(\.endNanoseconds) == [3, 5])
    }
}
