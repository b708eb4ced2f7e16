import TLSTapCore
import Testing

@testable import TLSTapHTTP

/// The protocol layer itself: a protocol added from outside (here, a toy
/// line protocol) plugs into the tracker next to HTTP's detectors, and
/// records name themselves as OpenTelemetry does.
@Suite struct ProtocolLayerTests {
    /// `PING n` lines answered by `PONG n`: one record per line.
    struct LineRecord: ProtocolRecord {
        var connection: UInt64
        var pid: UInt32 = 1
        var comm = "c"
        var line: String
        var fromClient: Bool
        var startNanoseconds: UInt64
        var endNanoseconds: UInt64
        var protocolName: String { "toyline" }
        var attributes: [ProtocolField] { [ProtocolField("network.protocol.name", .string("toyline"))] }
        var details: [ProtocolField] { [ProtocolField("line", .string(line))] }
        var summary: String { line }
    }

    final class LineAnalyzer: ProtocolAnalyzer {
        let context: ProtocolContext
        var pending: [Bool: [UInt8]] = [:]

        init(_ context: ProtocolContext) {
            self.context = context
        }

        func feed(fromClient: Bool, _ bytes: [UInt8], time: UInt64) -> [any ProtocolRecord] {
            var buffer = pending[fromClient, default: []] + bytes
            var records: [any ProtocolRecord] = []
            while let newline = buffer.firstIndex(of: 0x0a) {
                records.append(
                    LineRecord(
                        connection: context.connection, line: String(decoding: buffer[..<newline], as: UTF8.self),
                        fromClient: fromClient, startNanoseconds: time, endNanoseconds: time))
                buffer.removeFirst(newline + 1)
            }
            pending[fromClient] = buffer
            return records
        }

        func lost(fromClient: Bool, time: UInt64) -> [any ProtocolRecord] { [] }
        func close(time: UInt64, end: ConnectionEnd) -> [any ProtocolRecord] { [] }
    }

    struct LineDetector: ProtocolDetector {
        func detect(_ opening: ConnectionOpening) -> ProtocolDetection {
            for outbound in opening.orientations
            where opening.client(outbound: outbound).starts(with: Array("PING ".utf8)) {
                return .found(clientIsOutbound: outbound, analyzer: LineAnalyzer(opening.context))
            }
            guard let outbound = opening.clientIsOutbound else { return .possible }
            let client = opening.client(outbound: outbound)
            return Array("PING ".utf8).starts(with: client.prefix(5)) ? .possible : .ruledOut
        }
    }

    @Test func aProtocolFromOutsidePlugsInBesideHTTP() {
        var tracker = TrackedConnections(
            ProtocolTracker(
                detectors: HTTPProtocols.detectors(limits: HTTPLimits()) + [LineDetector()], maxOpeningBytes: 1024))
        // Connection 1 speaks the toy protocol, split anyhow; connection 2 HTTP/1.1; connection 3 neither.
        var records = tracker.feed(TrackerEvents.event(1, .outbound, Array("PI".utf8), time: 1))
        records += tracker.feed(TrackerEvents.event(1, .outbound, Array("NG 1\nPING 2\n".utf8), time: 2))
        records += tracker.feed(TrackerEvents.event(1, .inbound, Array("PONG 1\nPONG 2\n".utf8), time: 3))
        records += tracker.feed(TrackerEvents.event(2, .outbound, Array("GET / HTTP/1.1\r\nHost: h\r\n\r\n".utf8)))
        records += tracker.feed(
            TrackerEvents.event(2, .inbound, Array("HTTP/1.1 204 No Content\r\n\r\n".utf8), time: 6))
        records += tracker.feed(TrackerEvents.event(3, .outbound, Array("HELO x\n".utf8)))
        let lines = records.compactMap { $0 as? LineRecord }
        #expect(lines.map(\.line) == ["PING 1", "PING 2", "PONG 1", "PONG 2"])
        #expect(lines.map(\.fromClient) == [true, true, false, false])
        #expect(records.compactMap { ($0 as? HTTPExchange)?.status } == [204])
        #expect(tracker.count == 3)  // connection 3 is left alone, but known until it closes
    }

    @Test func anHTTPExchangeNamesItselfAsOpenTelemetryDoes() {
        var exchange = HTTPExchange(connection: 1, pid: 2, comm: "c", protocolVersion: "HTTP/2")
        exchange.method = "POST"
        exchange.scheme = "https"
        exchange.authority = "api.test"
        exchange.path = "/helloworld.Greeter/SayHello"
        exchange.status = 200
        exchange.grpc = GRPCCall(service: "helloworld.Greeter", method: "SayHello")
        exchange.grpc?.status = 5
        #expect(
            exchange.attributes == [
                ProtocolField("network.protocol.name", .string("http")),
                ProtocolField("network.protocol.version", .string("2")),
                ProtocolField("http.request.method", .string("POST")),
                ProtocolField("url.scheme", .string("https")),
                ProtocolField("server.address", .string("api.test")),
                ProtocolField("url.path", .string("/helloworld.Greeter/SayHello")),
                ProtocolField("http.response.status_code", .integer(200)),
                ProtocolField("rpc.system", .string("grpc")),
                ProtocolField("rpc.service", .string("helloworld.Greeter")),
                ProtocolField("rpc.method", .string("SayHello")),
                ProtocolField("rpc.grpc.status_code", .integer(5)),
            ])
        #expect(exchange.summary == "POST https://api.test/helloworld.Greeter/SayHello → 200")
    }
}
