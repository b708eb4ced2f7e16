import Dispatch
import NIOCore
import NIOHPACK
import TLSTapCore
import TLSTapHTTP
import TLSTapOutput

/// Parser throughput: how many MB/s of HTTP/1.1 and HTTP/2 traffic the
/// protocol tracker (HTTP detectors) turns into exchanges, on one core, fed in 16 KiB pieces
/// as TLS reads deliver them. `swift run -c release tlstap-parser-bench`.
@main
struct ParserBenchmark {
    static func main() {
        if CommandLine.arguments.contains("--sink") {
            jsonSink()
            return
        }
        let rounds = 5
        for (name, client, server, expected) in [http1Fixture(), http2Fixture()] {
            var best = 0.0
            for _ in 0..<rounds {
                let start = DispatchTime.now().uptimeNanoseconds
                let tracker = HTTPProtocols.tracker()
                var analysis = ConnectionAnalysis()
                var exchanges = 0
                var time: UInt64 = 0
                // Interleave the two directions the way a conversation does.
                for (clientPiece, serverPiece) in zip(pieces(client), pieces(server)) {
                    time += 1
                    exchanges += tracker.feed(event(.outbound, clientPiece, time), into: &analysis).count
                    exchanges += tracker.feed(event(.inbound, serverPiece, time), into: &analysis).count
                }
                exchanges += tracker.close(analysis, time: time + 1).count
                let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
                precondition(exchanges == expected, "\(name): \(exchanges) exchanges, expected \(expected)")
                best = max(best, Double(client.count + server.count) / seconds / 1e6)
            }
            print(
                "\(name)\t\((best * 10).rounded() / 10) MB/s\t\(expected) exchanges, "
                    + "\((client.count + server.count) / 1024) KiB, best of \(rounds)")
        }
    }

    /// The JSON Lines sink: events of 1 KiB and 64 KiB of random bytes
    /// rendered into /dev/null (the rendering, mostly base64, without the file).
    static func jsonSink() {
        let output = try! OutputFile.create(path: "/dev/null")
        let sink = JSONLinesSink(output: output)
        var random = SystemRandomNumberGenerator()
        for (size, count) in [(1024, 100_000), (65_536, 5_000)] {
            let payload = (0..<size).map { _ in UInt8.random(in: 0...255, using: &random) }
            var event = self.event(.outbound, payload, 0)
            var best = Double.infinity
            for _ in 0..<5 {
                let start = DispatchTime.now().uptimeNanoseconds
                for index in 0..<count {
                    event.timeNanoseconds = 1_795_000_000_000_000_000 + UInt64(index)
                    try! sink.write(event)
                }
                try! sink.flush()
                best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / Double(count))
            }
            print(
                "JSON Lines sink\t\((best / 10).rounded() / 100) µs per \(size / 1024) KiB event "
                    + "(\((Double(size) / best * 1000).rounded()) MB/s of payload)\tbest of 5")
        }
    }

    /// Splits into 16 KiB pieces, padding the shorter side with empty pieces.
    static func pieces(_ bytes: [UInt8]) -> [[UInt8]] {
        stride(from: 0, to: bytes.count, by: 16_384).map { Array(bytes[$0..<min($0 + 16_384, bytes.count)]) }
            + Array(repeating: [], count: 4096)
    }

    static func event(_ direction: Direction, _ bytes: [UInt8], _ time: UInt64) -> DataEvent {
        DataEvent(
            timeNanoseconds: time, pid: 1, tid: 1, comm: "bench", library: .openssl, function: .sslWrite,
            direction: direction, ssl: 1, length: UInt64(bytes.count), payload: bytes, fd: 3,
            connection: Connection(
                id: 1, pid: 1, comm: "bench", fd: 3, local: SocketAddress(ip: [127, 0, 0, 1], port: 1),
                remote: SocketAddress(ip: [127, 0, 0, 1], port: 2), role: .client, origin: .connect,
                openedNanoseconds: 0))
    }

    /// 20,000 keep-alive GETs with 1 KiB responses, half of them chunked.
    static func http1Fixture() -> (String, [UInt8], [UInt8], Int) {
        let count = 20_000
        var client: [UInt8] = []
        var server: [UInt8] = []
        let body = [UInt8](repeating: 0x61, count: 1024)
        for index in 0..<count {
            client += Array(
                "GET /items/\(index) HTTP/1.1\r\nHost: bench.test\r\nUser-Agent: bench/1\r\nAccept: */*\r\n\r\n".utf8)
            if index % 2 == 0 {
                server +=
                    Array("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1024\r\n\r\n".utf8) + body
            } else {
                server +=
                    Array(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n".utf8)
                    + body + Array("\r\n0\r\n\r\n".utf8)
            }
        }
        return ("HTTP/1.1", client, server, count)
    }

    /// 20,000 HTTP/2 streams (HPACK-encoded by NIOHPACK) with 1 KiB DATA each.
    static func http2Fixture() -> (String, [UInt8], [UInt8], Int) {
        let count = 20_000
        var requestEncoder = HPACKEncoder(allocator: ByteBufferAllocator())
        var responseEncoder = HPACKEncoder(allocator: ByteBufferAllocator())
        func frame(_ type: UInt8, _ flags: UInt8, _ stream: UInt32, _ payload: [UInt8]) -> [UInt8] {
            [
                UInt8(payload.count >> 16 & 0xff), UInt8(payload.count >> 8 & 0xff), UInt8(payload.count & 0xff), type,
                flags, UInt8(stream >> 24 & 0x7f), UInt8(stream >> 16 & 0xff), UInt8(stream >> 8 & 0xff),
                UInt8(stream & 0xff),
            ] + payload
        }
        func block(_ encoder: inout HPACKEncoder, _ headers: [(String, String)]) -> [UInt8] {
            var buffer = ByteBuffer()
            try! encoder.encode(headers: HPACKHeaders(headers), to: &buffer)
            return Array(buffer.readableBytesView)
        }
        var client = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + frame(4, 0, 0, [])
        var server = frame(4, 0, 0, [])
        let body = [UInt8](repeating: 0x62, count: 1024)
        for index in 0..<count {
            let stream = UInt32(2 * index + 1)
            client += frame(
                1, 0x5, stream,
                block(
                    &requestEncoder,
                    [
                        (":method", "GET"), (":scheme", "https"), (":authority", "bench.test"),
                        (":path", "/items/\(index)"),
                        ("user-agent", "bench/1"),
                    ]))
            server += frame(
                1, 0x4, stream, block(&responseEncoder, [(":status", "200"), ("content-type", "text/plain")]))
            server += frame(0, 0x1, stream, body)
        }
        return ("HTTP/2", client, server, count)
    }
}
