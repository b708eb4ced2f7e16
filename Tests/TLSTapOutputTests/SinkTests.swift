import Foundation
import TLSTapCore
import TLSTapHTTP
import Testing

@testable import TLSTapOutput

/// Golden files under Golden/ hold the exact rendering of `sampleEvents`.
/// Re-record them with TLSTAP_RECORD_GOLDEN=1 swift test; never edit by hand.
@Suite struct SinkTests {
    static let sampleConnection = Connection(
        id: 7, pid: 1234, comm: "curl", fd: 5, local: SocketAddress(ip: [127, 0, 0, 1], port: 50412),
        remote: SocketAddress(ip: [127, 0, 0, 1], port: 8443), role: .client, origin: .connect,
        openedNanoseconds: 1_700_000_000_100_000_000)

    static let sampleEvents = [
        DataEvent(
            timeNanoseconds: 1_700_000_000_123_456_789, pid: 1234, tid: 1235, comm: "curl", library: .openssl,
            function: .sslWrite, direction: .outbound, ssl: 0x5581_0000_beef, length: 83,
            payload: Array(
                "GET /hello.txt HTTP/1.1\r\nHost: localhost:8443\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n".utf8
            ),
            fd: 5, connection: sampleConnection),
        DataEvent(
            timeNanoseconds: 1_700_000_000_200_000_001, pid: 1234, tid: 1235, comm: "we\"ird\\\u{1}", library: .openssl,
            function: .sslReadEx, direction: .inbound, ssl: 0x10, length: 41,
            payload: Array("HTTP/1.0 200 ok\r\n\r\n\u{1b}[31mred\ttab\rcr".utf8) + [0x00, 0xff, 0x80]),
        DataEvent(
            timeNanoseconds: 1_700_000_000_300_000_000, pid: 9, tid: 9, comm: "lossy", library: .openssl,
            function: .sslRead, direction: .inbound, ssl: 0x20, length: 20_000,
            payload: Array(repeating: 0x41, count: 18),
            lostBefore: 65_536),
    ]

    static let sampleExchanges: [HTTPExchange] = {
        var h1 = HTTPExchange(connection: 7, pid: 1234, comm: "curl", protocolVersion: "HTTP/1.1")
        h1.method = "GET"
        h1.scheme = "https"
        h1.authority = "localhost:8443"
        h1.path = "/api/items?q=\"x\""
        h1.status = 200
        h1.reason = "OK"
        h1.requestHeaders = [HTTPHeader("Host", "localhost:8443"), HTTPHeader("Accept", "*/*")]
        h1.responseHeaders = [HTTPHeader("Content-Length", "5")]
        h1.responseBodyLength = 5
        h1.responseBody = Array("hello".utf8)
        h1.startNanoseconds = 1_700_000_000_123_456_789
        h1.endNanoseconds = 1_700_000_000_125_556_789
        var grpc = HTTPExchange(connection: 8, pid: 77, comm: "client", protocolVersion: "HTTP/2")
        grpc.stream = 3
        grpc.method = "POST"
        grpc.scheme = "https"
        grpc.authority = "api.test"
        grpc.path = "/helloworld.Greeter/SayHello"
        grpc.status = 200
        grpc.requestHeaders = [HTTPHeader(":method", "POST"), HTTPHeader("content-type", "application/grpc")]
        grpc.responseHeaders = [HTTPHeader(":status", "200"), HTTPHeader("grpc-status", "5")]
        grpc.requestBodyLength = 12
        grpc.responseBodyLength = 0
        grpc.startNanoseconds = 1_700_000_000_200_000_000
        grpc.endNanoseconds = 1_700_000_000_201_000_000
        grpc.grpc = GRPCCall(service: "helloworld.Greeter", method: "SayHello")
        grpc.grpc?.status = 5
        grpc.grpc?.message = "not found"
        grpc.grpc?.requestMessageSizes = [7]
        var reset = HTTPExchange(connection: 8, pid: 77, comm: "client", protocolVersion: "HTTP/2")
        reset.stream = 5
        reset.method = "GET"
        reset.path = "/slow"
        reset.note = "reset"
        return [h1, grpc, reset]
    }()

    /// A WebSocket text message with a line break and an escape sequence in
    /// it, and a close frame, on the sample connection.
    static let sampleMessages: [WebSocketMessage] = {
        var text = WebSocketMessage(connection: 7, pid: 1234, comm: "curl", fromClient: true, opcode: 1)
        text.complete = true
        text.frames = 2
        text.masked = true
        text.compressed = true
        text.wireLength = 9
        text.payload = Array("héllo\n\u{1b}[2J".utf8)
        text.length = text.payload.count
        text.startNanoseconds = 1_700_000_000_126_000_000
        text.endNanoseconds = 1_700_000_000_127_000_000
        var close = WebSocketMessage(connection: 7, pid: 1234, comm: "curl", fromClient: false, opcode: 8)
        close.frames = 1
        close.payload = [0x03, 0xe9] + Array("going".utf8)
        close.length = close.payload.count
        close.closeCode = 1001
        close.closeReason = "going"
        close.note = "bytes lost"
        close.startNanoseconds = 1_700_000_000_128_000_000
        close.endNanoseconds = 1_700_000_000_128_000_000
        return [text, close]
    }()

    static func render(_ format: OutputFormat) throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "tlstap-sink-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let output = try OutputFile.create(path: directory.appendingPathComponent("out").path)
        let diagnostics = try OutputFile.create(path: directory.appendingPathComponent("err").path)
        let sink = format.makeSink(output: output, diagnostics: diagnostics, timestamps: .utc)
        try sink.write(.opened(sampleConnection, timeNanoseconds: 1_700_000_000_123_456_789))
        for event in sampleEvents { try sink.write(event) }
        let v6 = Connection(
            id: 8, pid: 77, comm: "python3", fd: 9,
            local: SocketAddress(ip: Array(repeating: 0, count: 15) + [1], port: 443),
            remote: SocketAddress(ip: Array(repeating: 0, count: 15) + [1], port: 40000), role: .server, origin: .mid,
            openedNanoseconds: 1_700_000_000_000_000_000)
        for exchange in sampleExchanges { try sink.write(exchange) }
        for message in sampleMessages { try sink.write(message) }
        try sink.write(
            .closed(sampleConnection, ConnectionTraffic(bytesOut: 83), timeNanoseconds: 1_700_000_000_102_150_000))
        try sink.write(.closed(v6, ConnectionTraffic(bytesIn: 10), timeNanoseconds: 1_700_000_001_000_000_000))
        try sink.writeLost(LostCounts(records: 3, bytes: 49152), timeNanoseconds: 1_700_000_000_400_000_000)
        try sink.finish()
        try diagnostics.finish()
        let out = try String(contentsOf: directory.appendingPathComponent("out"), encoding: .utf8)
        let err = try String(contentsOf: directory.appendingPathComponent("err"), encoding: .utf8)
        return out + (err.isEmpty ? "" : "--- stderr ---\n" + err)
    }

    @Test(arguments: OutputFormat.allCases)
    func renderingMatchesTheGoldenFile(format: OutputFormat) throws {
        let rendered = try Self.render(format)
        let name = "sample.\(format.rawValue)"
        let golden = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
            "Golden/\(name)")
        if ProcessInfo.processInfo.environment["TLSTAP_RECORD_GOLDEN"] == "1" {
            try rendered.write(to: golden, atomically: true, encoding: .utf8)
        }
        #expect(rendered == (try String(contentsOf: golden, encoding: .utf8)))
    }

    /// Every JSON line parses, with the keys spelled as documented.
    @Test func jsonLinesParseWithTheDocumentedKeys() throws {
        let lines = try Self.render(.json).split(separator: "\n")
        #expect(lines.count == 12)
        var objects = try lines.map {
            try #require(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
        let open = objects.removeFirst()
        #expect(open["event"] as? String == "open")
        #expect(open["conn"] as? Int == 7)
        #expect(open["local"] as? String == "127.0.0.1:50412")
        #expect(open["remote"] as? String == "127.0.0.1:8443")
        #expect(open["role"] as? String == "client")
        #expect(open["seen_from"] as? String == "connect")
        let first = objects[0]
        #expect(first["fd"] as? Int == 5)
        #expect(first["conn"] as? Int == 7)
        #expect(first["local"] as? String == "127.0.0.1:50412")
        #expect(first["remote"] as? String == "127.0.0.1:8443")
        #expect(first["role"] as? String == "client")
        #expect(objects[1]["conn"] == nil)
        #expect(first["event"] as? String == "data")
        #expect(first["time_ns"] as? UInt64 == 1_700_000_000_123_456_789)
        #expect(first["pid"] as? Int == 1234)
        #expect(first["tid"] as? Int == 1235)
        #expect(first["comm"] as? String == "curl")
        #expect(first["lib"] as? String == "openssl")
        #expect(first["func"] as? String == "SSL_write")
        #expect(first["dir"] as? String == "out")
        #expect(first["ssl"] as? String == "0x55810000beef")
        #expect(first["len"] as? Int == 83)
        #expect(Data(base64Encoded: first["data"] as? String ?? "") == Data(Self.sampleEvents[0].payload))
        #expect(objects[1]["comm"] as? String == "we\"ird\\\u{1}")
        #expect(Data(base64Encoded: objects[1]["data"] as? String ?? "") == Data(Self.sampleEvents[1].payload))
        #expect(objects[2]["lost_bytes"] as? Int == 19_982)
        #expect(objects[2]["lost_before"] as? Int == 65_536)
        #expect(objects[0]["lost_before"] == nil)
        let exchanges = objects.filter { $0["event"] as? String == "http" }
        objects.removeAll { $0["event"] as? String == "http" }
        #expect(objects.filter { $0["event"] as? String == "websocket" }.count == 2)  // aRecordOfAnyProtocolIs…
        objects.removeAll { $0["event"] as? String == "websocket" }
        #expect(exchanges.count == 3)
        #expect(exchanges[0]["path"] as? String == "/api/items?q=\"x\"")
        #expect(exchanges[0]["status"] as? Int == 200)
        #expect(exchanges[0]["latency_ns"] as? Int == 2_100_000)
        #expect(exchanges[0]["req_headers"] as? [[String]] == [["Host", "localhost:8443"], ["Accept", "*/*"]])
        #expect(exchanges[0]["resp_body"] as? String == "aGVsbG8=")
        #expect(exchanges[0]["stream"] == nil)
        let grpc = try #require(exchanges[1]["grpc"] as? [String: Any])
        #expect(grpc["service"] as? String == "helloworld.Greeter" && grpc["status"] as? Int == 5)
        #expect(grpc["req_message_sizes"] as? [Int] == [7])
        #expect(exchanges[1]["stream"] as? Int == 3)
        #expect(exchanges[2]["status"] is NSNull && exchanges[2]["note"] as? String == "reset")
        #expect(objects[3]["event"] as? String == "close")
        #expect(objects[3]["bytes_out"] as? Int == 83)
        #expect(objects[3]["duration_ns"] as? Int == 2_150_000)
        #expect(objects[4]["local"] as? String == "[::1]:443")
        #expect(objects[4]["seen_from"] as? String == "mid")
        #expect(objects[5]["event"] as? String == "lost")
        #expect(objects[5]["records"] as? Int == 3)
        #expect(objects[5]["bytes"] as? Int == 49152)
    }

    /// The JSON objects a JSON Lines sink writes to a file of its own.
    static func jsonObjects(writtenBy write: (JSONLinesSink) throws -> Void) throws -> [[String: Any]] {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "tlstap-sink-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("out").path
        let sink = JSONLinesSink(output: try OutputFile.create(path: path))
        try write(sink)
        try sink.finish()
        return try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map { line in
            try #require(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        }
    }

    /// An exchange whose request tlstap did not see (it joined mid-request):
    /// it starts at its first response byte, 3 ms before its last.
    static let exchangeWithoutRequest: HTTPExchange = {
        var exchange = HTTPExchange(connection: 9, pid: 1234, comm: "curl", protocolVersion: "HTTP/1.1")
        exchange.scheme = "https"
        exchange.status = 200
        exchange.reason = "OK"
        exchange.responseHeaders = [HTTPHeader("Content-Length", "5")]
        exchange.responseBodyLength = 5
        exchange.requestCaptured = false
        exchange.startNanoseconds = 1_700_000_000_500_000_000
        exchange.endNanoseconds = 1_700_000_000_503_000_000
        return exchange
    }()

    /// JSON: dated by its first response byte, `latency_ns` null, and the note.
    @Test func anExchangeWithoutItsRequestHasANullLatencyInJSON() throws {
        var reset = Self.exchangeWithoutRequest
        reset.note = "reset"
        let objects = try Self.jsonObjects { sink in
            try sink.write(Self.exchangeWithoutRequest)
            try sink.write(reset)
        }
        try #require(objects.count == 2)
        #expect(objects[0]["start_ns"] as? UInt64 == 1_700_000_000_500_000_000)
        #expect(objects[0]["time_ns"] as? UInt64 == 1_700_000_000_503_000_000)
        #expect(objects[0]["latency_ns"] is NSNull)
        #expect(objects[0]["note"] as? String == "request not captured")
        #expect(objects[0]["status"] as? Int == 200)
        #expect(objects[1]["note"] as? String == "request not captured; reset")
    }

    /// `--format http`: its own time, `? ms` for the latency, and the note.
    @Test func anExchangeWithoutItsRequestHasNoLatencyInTheHTTPLine() throws {
        let sink = HTTPLineSink(
            output: try OutputFile.create(path: "/dev/null"), diagnostics: try OutputFile.create(path: "/dev/null"),
            timestamps: .utc, colors: false)
        #expect(
            sink.line(for: Self.exchangeWithoutRequest)
                == "22:13:20.500000 curl[1234]  https:// → 200 OK  ? ms  req 0 B  resp 5 B  (request not captured)")
    }

    /// HAR 1.2: `startedDateTime` is the first response byte; `send` and
    /// `wait` are unknown but required and non-negative, so 0 with a
    /// comment; `receive` and `time` are the 3 ms seen; the request's body
    /// size is -1, "not available".
    @Test func anExchangeWithoutItsRequestIsAValidHAREntry() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tlstap-har-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("out.har").path
        let sink = try HARSink(file: try OutputFile.create(path: path), version: "test")
        try sink.write(Self.exchangeWithoutRequest)
        try sink.finish()
        let har = try JSONSerialization.jsonObject(with: try Data(contentsOf: URL(fileURLWithPath: path)))
        let entries = try #require(((har as? [String: Any])?["log"] as? [String: Any])?["entries"] as? [[String: Any]])
        let entry = try #require(entries.first)
        #expect(entry["startedDateTime"] as? String == "2023-11-14T22:13:20.500Z")
        let timings = try #require(entry["timings"] as? [String: Any])
        #expect(timings["send"] as? Double == 0 && timings["wait"] as? Double == 0)
        #expect(timings["receive"] as? Double == 3)
        #expect(timings["comment"] as? String == "request not captured: send and wait unknown, written 0")
        #expect(entry["time"] as? Double == 3)
        #expect(entry["comment"] as? String == "request not captured")
        #expect((entry["request"] as? [String: Any])?["bodySize"] as? Int == -1)
        #expect((entry["response"] as? [String: Any])?["status"] as? Int == 200)
    }

    /// The lib, func and dir of a data line come from a table rendered
    /// once for every combination: each one names its own.
    @Test func everyLibraryFunctionAndDirectionIsNamedInJSON() throws {
        var expected: [[String]] = []
        let objects = try Self.jsonObjects { sink in
            for library in TLSLibrary.allCases {
                for function in TLSFunction.allCases {
                    for direction in Direction.allCases {
                        try sink.write(
                            DataEvent(
                                timeNanoseconds: 1, pid: 2, tid: 3, comm: "c", library: library, function: function,
                                direction: direction, ssl: 4, length: 1, payload: [0x61]))
                        expected.append([library.name, function.name, direction.name])
                    }
                }
            }
        }
        #expect(objects.map { object in ["lib", "func", "dir"].map { object[$0] as? String ?? "" } } == expected)
    }

    /// A connection's fields are rendered once into a store that starts
    /// over when it is full: lines before and after name their own
    /// connections, and closing one drops only its own fields.
    @Test func connectionFieldsStayRightWhenTheirStoreStartsOver() throws {
        // About 70 bytes of fields each: the store (2 MiB) starts over once.
        let count = 40_000
        func connection(_ id: Int) -> Connection {
            Connection(
                id: UInt64(id), pid: 1, comm: "c", fd: 3,
                local: SocketAddress(ip: [10, 0, UInt8(id >> 8 & 0xff), UInt8(id & 0xff)], port: 443),
                remote: SocketAddress(ip: [10, 1, 0, 1], port: UInt16(id % 60_000 + 1024)), role: .server,
                origin: .accept, openedNanoseconds: 0)
        }
        let objects = try Self.jsonObjects { sink in
            for round in 0..<2 {
                for id in 1...count where round == 0 || id % 1000 == 0 {
                    if round == 1 {
                        try sink.write(.closed(connection(id - 1), ConnectionTraffic(), timeNanoseconds: 1))
                    }
                    try sink.write(
                        DataEvent(
                            timeNanoseconds: 1, pid: 1, tid: 1, comm: "c", library: .openssl, function: .sslRead,
                            direction: .inbound, ssl: 1, length: 1, payload: [0x61], fd: 3, connection: connection(id)))
                }
            }
        }
        var checked = 0
        for object in objects {
            guard object["event"] as? String == "data", let id = object["conn"] as? Int else { continue }
            let expected = connection(id)
            #expect(object["local"] as? String == expected.local.description)
            #expect(object["remote"] as? String == expected.remote.description)
            #expect(object["role"] as? String == "server")
            checked += 1
        }
        #expect(checked == count + count / 1000)
    }

    @Test func escapedTextNeverPassesControlBytes() {
        var text = ""
        PayloadText.appendEscaped([0x1b, 0x5b, 0x32, 0x4a, 0x0d, 0x0a, 0x07, 0xc3, 0xa9], to: &text)
        #expect(text == "\\x1b[2J\n\\x07\\xc3\\xa9\n")
    }

    /// A record's line keeps letters of any script, and shows control and
    /// format characters (a bidirectional override too) as bytes.
    @Test func recordLinesKeepTextButNoControlCharacters() {
        #expect(
            PayloadText.escapedLine("→ héllo\r\n\u{1b}[2J \u{202e}x") == "→ héllo\\x0d\\x0a\\x1b[2J \\xe2\\x80\\xaex")
    }

    /// Any protocol's record: its details, in order, after the common fields.
    @Test func aRecordOfAnyProtocolIsAJSONLineOfItsDetails() throws {
        let objects = try Self.jsonObjects { sink in
            for message in Self.sampleMessages { try sink.write(message) }
        }
        try #require(objects.count == 2)
        #expect(objects[0]["event"] as? String == "websocket")
        #expect(objects[0]["time_ns"] as? UInt64 == 1_700_000_000_127_000_000)
        #expect(objects[0]["start_ns"] as? UInt64 == 1_700_000_000_126_000_000)
        #expect(objects[0]["conn"] as? Int == 7)
        #expect(objects[0]["text"] as? String == "héllo\n\u{1b}[2J")
        #expect(objects[0]["compressed"] as? String == "permessage-deflate")
        #expect(objects[0]["fin"] as? Bool == true)
        #expect(objects[1]["close_code"] as? Int == 1001)
        #expect(objects[1]["close_reason"] as? String == "going")
        #expect(objects[1]["note"] as? String == "bytes lost")
        #expect(objects[1]["from"] as? String == "server")
        #expect(
            Set(objects[1].keys) == [
                "event", "time_ns", "conn", "pid", "comm", "start_ns", "from", "opcode", "fin", "frames", "masked",
                "length", "close_code", "close_reason", "note",
            ])
    }

    @Test func timestampsUseTheGivenOffset() {
        #expect(TimestampStyle.utc.format(1_700_000_000_000_000_042) == "22:13:20.000000042")
        #expect(TimestampStyle(utcOffsetSeconds: 3600).format(1_700_000_000_000_000_042) == "23:13:20.000000042")
    }

    /// Live readers: a FIFO (wireshark -k -i FIFO) or a device is written as it is; a directory is refused.
    @Test func fifosAndDevicesAreWritableTargets() throws {
        _ = try OutputFile.create(path: "/dev/null")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "tlstap-fifo-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        #expect(throws: OutputError.openFailed(name: directory.path, errno: EISDIR)) {
            try OutputFile.create(path: directory.path)
        }
    }

    @Test func outputFilesAreCreatedPrivateAndRefuseSymlinks() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "tlstap-files-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("capture.jsonl").path
        _ = try OutputFile.create(path: path)
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        let link = directory.appendingPathComponent("link").path
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: path)
        #expect(throws: OutputError.openFailed(name: link, errno: ELOOP)) { try OutputFile.create(path: link) }
    }

    /// A regular file is written as a stream (its pages released behind the
    /// end, several windows over here); every byte still lands in order, after
    /// what the file already held (`>> file`).
    @Test func aStreamedFileKeepsEveryByteAfterWhatWasThere() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("tlstap-stream-\(UUID().uuidString)")
            .path
        defer { unlink(path) }
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        try #require(descriptor >= 0)
        let head = Array("already there\n".utf8)
        #expect(Glibc.write(descriptor, head, head.count) == head.count)
        let output = OutputFile(descriptor: descriptor, name: path, ownsDescriptor: true)
        #expect(!output.isDirect, "an offset inside a block is written through the page cache")
        var expected = head
        for record in 0..<10_000 {
            let bytes = (0..<4099).map { UInt8(truncatingIfNeeded: $0 &+ record &* 7) }
            try output.append { $0.append(contentsOf: bytes) }
            expected += bytes
        }
        try output.flush()
        #expect(expected.count > 4 * (8 << 20))
        let written = try #require(FileManager.default.contents(atPath: path))
        #expect(written.count == expected.count)
        #expect(written == Data(expected))
    }

    /// A file of tlstap's own goes to the disk with direct I/O, in whole
    /// blocks; every flush still leaves every byte so far in the file (the
    /// last partial block written through the page cache, then again
    /// directly), and the descriptor's offset at the end of what was written.
    @Test func aFileOfItsOwnIsWrittenDirectlyAndWholeAtEveryFlush() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("tlstap-direct-\(UUID().uuidString)")
            .path
        defer { unlink(path) }
        let output = try OutputFile.create(path: path)
        if !output.isDirect {
            print(
                "SinkTests: \(FileManager.default.temporaryDirectory.path) has no direct I/O; checked through the page cache"
            )
        }
        var expected: [UInt8] = []
        var state: UInt64 = 7
        for record in 0..<3_000 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            // 0..<16384: records across block and buffer edges; now and then
            // 600,000..<731,072, larger than a buffer's room past its capacity.
            let large = record % 199 == 198
            let size = large ? 600_000 + Int(state >> 47) : Int(state >> 50)
            let bytes =
                large
                ? [UInt8](repeating: UInt8(truncatingIfNeeded: record), count: size)
                : (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ record) }
            try output.append { $0.append(contentsOf: bytes) }
            expected += bytes
            if record % 500 == 499 {
                // Written by the writing thread: shortly after the flush, every byte so far is in the file.
                try output.flush()
                var seen = FileManager.default.contents(atPath: path)
                for _ in 0..<200 where seen != Data(expected) {
                    usleep(10_000)
                    seen = FileManager.default.contents(atPath: path)
                }
                #expect(seen == Data(expected), "after record \(record)")
            }
        }
        try output.finish()
        #expect(output.blocksThroughPageCache == 0, "every direct write went from an aligned address")
        #expect(expected.count > 4 * (1 << 20))
        #expect(FileManager.default.contents(atPath: path) == Data(expected))
        #expect(lseek(output.descriptor, 0, SEEK_CUR) == off_t(expected.count))
        #expect(fcntl(output.descriptor, F_GETFL) & OutputFile.directIOFlag == 0, "O_DIRECT is off between writes")
    }

    @Test func aFileOpenedForAppendingIsNotWrittenDirectly() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("tlstap-append-\(UUID().uuidString)")
            .path
        defer { unlink(path) }
        let descriptor = open(path, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        try #require(descriptor >= 0)
        let output = OutputFile(descriptor: descriptor, name: path, ownsDescriptor: true)
        #expect(!output.isDirect)
        try output.write(Array("one line\n".utf8))
        try output.flush()
        #expect(FileManager.default.contents(atPath: path) == Data("one line\n".utf8))
    }
}

/// The byte-level pieces the JSON Lines writer is made of.
@Suite struct JSONBytesTests {
    static func text(_ build: (inout [UInt8]) -> Void) -> String {
        var bytes: [UInt8] = []
        build(&bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    @Test func integersInDecimalAndHex() {
        #expect(Self.text { $0.append(decimal: UInt64(0)) } == "0")
        #expect(Self.text { $0.append(decimal: UInt64.max) } == "18446744073709551615")
        #expect(Self.text { $0.append(decimal: Int32(-1)) } == "-1")
        #expect(Self.text { $0.append(decimal: Int32.min) } == "-2147483648")
        #expect(Self.text { $0.append(decimal: Int.min) } == "-9223372036854775808")
        #expect(Self.text { $0.append(decimal: UInt32(4_000_000_000)) } == "4000000000")
        for digits in 1...19 {
            let power = (1..<digits).reduce(UInt64(1)) { product, _ in product * 10 }
            #expect(Self.text { $0.append(decimal: power) } == "1" + String(repeating: "0", count: digits - 1))
            #expect(
                Self.text { $0.append(decimal: power - 1) }
                    == (digits == 1 ? "0" : String(repeating: "9", count: digits - 1)))
        }
        #expect(Self.text { $0.append(hex: 0) } == "0")
        #expect(Self.text { $0.append(hex: 0x5581_0000_beef) } == "55810000beef")
        #expect(Self.text { $0.append(hex: UInt64.max) } == "ffffffffffffffff")
        #expect(Self.text { $0.append(hex: 0x1_0000_0000) } == "100000000")
    }

    /// A data line is written into room reserved for it beforehand; the
    /// largest numbers and a comm that escapes every byte still fit, exactly.
    @Test func aDataLineWithEveryFieldAtItsLargestFitsItsRoom() {
        let event = DataEvent(
            timeNanoseconds: .max, pid: .max, tid: .max, comm: String(repeating: "\u{1}", count: 15), library: .openssl,
            function: .sslWriteEx, direction: .outbound, ssl: .max, length: .max, payload: [0xfb, 0xff], fd: .max,
            lostBefore: .max)
        let (callFields, connectionFields) = (Array(",\"lib\":\"x\"".utf8), Array(",\"conn\":1".utf8))
        let line = Self.text { line in
            callFields.withUnsafeBytes { call in
                connectionFields.withUnsafeBytes {
                    JSONLinesSink.append(event, callFields: call, connectionFields: $0, to: &line)
                }
            }
        }
        let comm = String(repeating: "\\u0001", count: 15)
        #expect(
            line == """
                {"event":"data","time_ns":18446744073709551615,"pid":4294967295,"tid":4294967295,"comm":"\(comm)",\
                "lib":"x","ssl":"0xffffffffffffffff","len":18446744073709551615,"fd":2147483647,"conn":1,\
                "lost_before":18446744073709551615,"lost_bytes":18446744073709551613,"data":"+/8="}

                """)
    }

    /// Every control character, quote, backslash and DEL is escaped; other
    /// UTF-8 passes as it is, and Foundation reads back the same string.
    @Test func stringsAreEscapedAsRFC8259Asks() throws {
        let every = String(decoding: (0...0x7f).map { UInt8($0) }, as: UTF8.self) + "é🙂"
        let json = Self.text { $0.append(jsonString: every) }
        #expect(json.hasPrefix(#""\u0000\u0001\u0002\u0003\u0004\u0005\u0006\u0007\u0008\t\n\u000b\u000c\r\u000e"#))
        #expect(json.hasSuffix(#"XYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~\u007fé🙂""#))
        #expect(json.contains(##" !\"#$%"##))
        let parsed = try JSONSerialization.jsonObject(with: Data("[\(json)]".utf8)) as? [String]
        #expect(parsed == [every])
        #expect(Self.text { $0.append(jsonString: "plain text") } == "\"plain text\"")
    }

    /// The check that lets a string pass unescaped, 8 bytes at a time:
    /// every byte value, at every position of strings of 1 to 17 bytes,
    /// against the plain byte-by-byte rule.
    @Test(arguments: [0, 1, 2, 3, 4, 1024, 1025])
    func base64MatchesFoundation(length: Int) {
        let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
        #expect(Self.text { $0.append(base64: bytes) } == Data(bytes).base64EncodedString())
    }
}

/// The synthetic frames of `--pcapng` carry checksums a receiver accepts.
@Suite struct SyntheticFrameTests {
    /// RFC 1071 the plain way, 16 bits at a time: the reference.
    static func onesComplementSum(_ bytes: [UInt8]) -> UInt16 {
        var sum: UInt32 = 0
        var index = 0
        while index + 1 < bytes.count {
            sum += UInt32(bytes[index]) << 8 | UInt32(bytes[index + 1])
            index += 2
        }
        if index < bytes.count { sum += UInt32(bytes[index]) << 8 }
        while sum >> 16 != 0 { sum = (sum & 0xffff) + (sum >> 16) }
        return UInt16(sum)
    }

    @Test(arguments: [0, 1, 2, 3, 5, 1023, 16_384, 65_495])
    func checksumsVerify(payloadLength: Int) {
        let payload = (0..<payloadLength).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ 7) }
        for (source, destination) in [
            (SocketAddress(ip: [10, 0, 0, 1], port: 443), SocketAddress(ip: [192, 168, 1, 20], port: 51000)),
            (
                SocketAddress(ip: Array(repeating: 0xfe, count: 15) + [1], port: 443),
                SocketAddress(ip: Array(repeating: 0x20, count: 15) + [2], port: 65_535)
            ),
        ] {
            var frame: [UInt8] = [0xaa]  // appended after what is there
            frame.append(atMost: SyntheticFrame.headerCount(ipv6: source.ip.count == 16) + payloadLength) {
                SyntheticFrame.writeTCP(
                    to: &$0, from: source, to: destination, seq: 0xdead_beef, ack: 7,
                    flags: [.psh, .ack], payload: payload[...])
            }
            frame.removeFirst()
            let v6 = source.ip.count == 16
            let ipLength = v6 ? 40 : 20
            let tcp = Array(frame[(14 + ipLength)...])
            #expect(tcp.count == 20 + payloadLength)
            #expect(Array(tcp[20...]) == payload)
            let pseudo =
                source.ip + destination.ip
                + (v6
                    ? [
                        UInt8(tcp.count >> 24), UInt8(tcp.count >> 16 & 0xff), UInt8(tcp.count >> 8 & 0xff),
                        UInt8(tcp.count & 0xff), 0, 0, 0, 6,
                    ]
                    : [0, 6, UInt8(tcp.count >> 8), UInt8(tcp.count & 0xff)])
            #expect(Self.onesComplementSum(pseudo + tcp) == 0xffff)  // a correct checksum sums to all ones
            if !v6 { #expect(Self.onesComplementSum(Array(frame[14..<34])) == 0xffff) }
        }
    }
}

/// The ports `--pcapng` shows, so that Wireshark picks the right dissector.
@Suite struct WiresharkPortsTests {
    static func connection(role: ConnectionRole, local: UInt16, remote: UInt16) -> Connection {
        Connection(
            id: 1, pid: 1, comm: "c", fd: 3, local: SocketAddress(ip: [127, 0, 0, 1], port: local),
            remote: SocketAddress(ip: [127, 0, 0, 2], port: remote), role: role, origin: .connect,
            openedNanoseconds: 0)
    }

    static let request = Array("GET / HTTP/1.1\r\nHost: h\r\n\r\n".utf8)
    static let response = Array("HTTP/1.1 200 OK\r\n\r\n".utf8)
    static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
    /// A server's SETTINGS and a HEADERS frame for stream 1 that opens with :status 200 (static index 8).
    static let serverFrames: [UInt8] = [0, 0, 0, 4, 0, 0, 0, 0, 0] + [0, 0, 1, 1, 4, 0, 0, 0, 1, 0x88]

    @Test func httpShowsItsServerPortAs80AndNamesTheRealOne() {
        // A client's request on 8443: the remote port shows as 80.
        var ports = WiresharkPorts(
            connection: Self.connection(role: .client, local: 40000, remote: 8443), firstPayload: Self.request,
            outbound: true)
        #expect((ports.local.port, ports.remote.port, ports.realServerPort) == (40000, 80, 8443))
        #expect(ports.prefaceFromLocal == nil)
        // A server that sent the HTTP/2 preface's reader: the local port shows as 80.
        ports = WiresharkPorts(
            connection: Self.connection(role: .server, local: 443, remote: 50000), firstPayload: Self.preface,
            outbound: false)
        #expect((ports.local.port, ports.remote.port, ports.realServerPort) == (80, 50000, 443))
        // Role unknown: the side that sent a status line serves.
        ports = WiresharkPorts(
            connection: Self.connection(role: .unknown, local: 30000, remote: 60000), firstPayload: Self.response,
            outbound: false)
        #expect((ports.local.port, ports.remote.port) == (30000, 80))
    }

    @Test func http2JoinedMidwayGetsThePrefaceFromTheClientSide() {
        let ports = WiresharkPorts(
            connection: Self.connection(role: .unknown, local: 443, remote: 50000), firstPayload: Self.serverFrames,
            outbound: true)
        #expect((ports.local.port, ports.remote.port) == (80, 50000))
        #expect(ports.prefaceFromLocal == false)  // the local side sent a response: the remote one is the client
    }

    @Test func otherPlaintextKeepsItsPortOrItsPlaintextTwin() {
        let binary: [UInt8] = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc]
        var ports = WiresharkPorts(
            connection: Self.connection(role: .client, local: 40000, remote: 993),
            firstPayload: Array("a1 LOGIN\r\n".utf8),
            outbound: true)
        #expect((ports.remote.port, ports.realServerPort) == (143, 993))
        ports = WiresharkPorts(
            connection: Self.connection(role: .client, local: 40000, remote: 5432), firstPayload: binary, outbound: true
        )
        #expect((ports.remote.port, ports.realServerPort) == (5432, nil))
    }
}
