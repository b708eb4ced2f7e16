import CTLSTapABI
import Foundation
import TestSupport
import Testing

@testable import TLSTapCore

@Suite struct RecordDecoderTests {
    @Test func decodesEveryHeaderField() throws {
        let bytes = ChunkBuilder.record(
            function: 4, direction: 2, pid: 4242, tid: 4243, callTime: 123_456_789, ssl: 0x5555_0000_1234,
            total: 10, offset: 4, comm: "python3", payload: Array("abcdef".utf8), lostBefore: 70_000)
        let chunk = try bytes.withUnsafeBytes { try RecordDecoder.decode($0) }
        #expect(chunk.function == .sslReadEx)
        #expect(chunk.direction == .inbound)
        #expect(chunk.library == .openssl)
        #expect(chunk.pid == 4242)
        #expect(chunk.tid == 4243)
        #expect(chunk.callTimeNanoseconds == 123_456_789)
        #expect(chunk.ssl == 0x5555_0000_1234)
        #expect(chunk.totalLength == 10)
        #expect(chunk.offset == 4)
        #expect(chunk.comm == "python3")
        #expect(chunk.payload == Array("abcdef".utf8))
        #expect(chunk.lostBefore == 70_000)
    }

    /// Process records: exec, a mapping of code (with the stopped flag), exit;
    /// and the same events as captures saved before them sent them, in
    /// socket records.
    @Test func processRecordsDecodeAndSoDoTheirLegacySocketForm() throws {
        func record(_ event: UInt32, fd: Int32, stopped: Bool) -> tlstap_process_record {
            var raw = tlstap_process_record()
            raw.kind = UInt8(TLSTAP_RECORD_PROCESS.rawValue)
            raw.event = UInt8(event)
            raw.pid = 71
            raw.tid = 72
            raw.fd = fd
            raw.time_ns = 5_000
            raw.flags = stopped ? TLSTAP_PROCESS_STOPPED.rawValue : 0
            withUnsafeMutableBytes(of: &raw.comm) { $0.copyBytes(from: Array("node".utf8)) }
            return raw
        }
        let cases: [(tlstap_process_record, ProcessEvent.Kind, Bool)] = [
            (record(TLSTAP_PROCESS_EXEC.rawValue, fd: -1, stopped: true), .exec, true),
            (record(TLSTAP_PROCESS_MAP.rawValue, fd: 9, stopped: false), .mapCode, false),
            (record(TLSTAP_PROCESS_EXIT.rawValue, fd: -1, stopped: false), .exit, false),
        ]
        for (raw, kind, stopped) in cases {
            var expected = ProcessEvent(
                kind: kind, pid: 71, tid: 72, fd: raw.fd, monotonicNanoseconds: 5_000, comm: "node")
            expected.stoppedForAttach = stopped
            #expect(try withUnsafeBytes(of: raw) { try RecordDecoder.decodeRecord($0) } == .process(expected))
        }
        var unknown = record(9, fd: -1, stopped: false)
        unknown.event = 9
        #expect(throws: RecordDecodingError.unknownValue(field: "process event", value: 9)) {
            try withUnsafeBytes(of: unknown) { try RecordDecoder.decodeRecord($0) }
        }
        // The legacy form: a socket record with event 6 (exec), stopped.
        var legacy = tlstap_socket_record()
        legacy.kind = UInt8(TLSTAP_RECORD_SOCKET.rawValue)
        legacy.event = UInt8(TLSTAP_SOCKET_LEGACY_EXEC.rawValue)
        legacy.pid = 71
        legacy.tid = 72
        legacy.fd = -1
        legacy.time_ns = 5_000
        legacy.flags = TLSTAP_PROCESS_STOPPED.rawValue
        withUnsafeMutableBytes(of: &legacy.comm) { $0.copyBytes(from: Array("node".utf8)) }
        var exec = ProcessEvent(kind: .exec, pid: 71, tid: 72, fd: -1, monotonicNanoseconds: 5_000, comm: "node")
        exec.stoppedForAttach = true
        #expect(try withUnsafeBytes(of: legacy) { try RecordDecoder.decodeRecord($0) } == .process(exec))
    }

    /// A payload handed back lends its memory to the next record's; one
    /// still held elsewhere keeps its bytes, and the next gets new memory.
    @Test func aPayloadHandedBackIsReusedAndAHeldOneIsNeverOverwritten() throws {
        func decode(_ text: String, reusing storage: inout [UInt8]) throws -> DataChunk {
            let bytes = ChunkBuilder.record(total: UInt64(text.utf8.count), payload: Array(text.utf8))
            return try bytes.withUnsafeBytes { try RecordDecoder.decode($0, reusing: &storage) }
        }
        func address(_ bytes: [UInt8]) -> UnsafeRawPointer? { bytes.withUnsafeBytes { $0.baseAddress } }
        var storage = [UInt8](repeating: 0, count: 64)
        let lent = address(storage)
        var first = try decode("first payload", reusing: &storage)
        #expect(storage.isEmpty)
        #expect(first.payload == Array("first payload".utf8))
        #expect(address(first.payload) == lent)

        storage = first.payload
        let held = first.payload
        first.payload = []
        let second = try decode("second", reusing: &storage)
        #expect(held == Array("first payload".utf8))
        #expect(second.payload == Array("second".utf8))
        #expect(address(second.payload) != lent)
    }

    @Test func refusesMalformedRecords() {
        func decode(_ bytes: [UInt8]) -> RecordDecodingError? {
            do {
                _ = try bytes.withUnsafeBytes { try RecordDecoder.decode($0) }
                return nil
            } catch { return error as? RecordDecodingError }
        }
        #expect(decode([1, 2, 3]) == .tooShort(size: 3))
        #expect(decode(ChunkBuilder.record(total: 1, payload: [1], kind: 9)) == .unknownKind(9))
        #expect(
            decode(ChunkBuilder.record(function: 0, total: 1, payload: [1]))
                == .unknownValue(field: "function", value: 0))
        var short = ChunkBuilder.record(total: 4, payload: [1, 2, 3, 4])
        short.removeLast()
        #expect(decode(short) == .lengthMismatch(declared: 4, present: 3))
        #expect(
            decode(ChunkBuilder.record(total: 4, offset: 2, payload: [1, 2, 3]))
                == .chunkOutsideCall(offset: 2, length: 3, total: 4))
        #expect(
            decode(ChunkBuilder.record(total: 4, offset: UInt64.max, payload: [1]))
                == .chunkOutsideCall(offset: UInt64.max, length: 1, total: 4))
    }

    /// A capture recorded with `tlstap --save-raw` from Python's urllib
    /// POSTing 40000 bytes (random.Random(7).randbytes) to a local server.
    @Test func replaysARecordedCapture() throws {
        let url = try #require(Bundle.module.url(forResource: "Fixtures/python-post-40000", withExtension: "tlstapraw"))
        let records = try RawRecordLog.records(in: Array(try Data(contentsOf: url)))
        var assembler = ChunkAssembler(clock: WallClock(offsetNanoseconds: 0))
        var table = ConnectionTable(clock: WallClock(offsetNanoseconds: 0))
        var events: [DataEvent] = []
        var sockets: [SocketEvent] = []
        var processes: [ProcessEvent] = []
        var lifecycle: [ConnectionEvent] = []
        for record in records {
            switch try record.withUnsafeBytes({ try RecordDecoder.decodeRecord($0) }) {
            case .chunk(let chunk):
                for var event in assembler.add(chunk) {
                    if let opened = table.attach(&event) { lifecycle.append(opened) }
                    events.append(event)
                }
            case .socket(let socket):
                sockets.append(socket)
                lifecycle += table.handle(socket).compactMap(\.closed)
            case .process(let process):
                processes.append(process)
                lifecycle += table.processExited(process).compactMap(\.closed)
            case .objectFreed(let freed):
                Issue.record("this capture frees no unbound object: \(freed)")
            }
        }
        #expect(assembler.pendingCalls == 0)
        // connect, request headers, 3 chunks of the body, response headers and body, close, exit
        #expect(records.count == 9)
        #expect(sockets.map(\.kind) == [.connect, .close])
        // Saved before process records had a kind of their own: the exit came as a socket record.
        #expect(processes.map(\.kind) == [.exit])
        #expect(processes.first?.pid == sockets.first?.pid && processes.first?.comm == "python3")
        #expect(events.map(\.function) == [.sslWriteEx, .sslWriteEx, .sslReadEx, .sslReadEx])
        #expect(events.map(\.direction) == [.outbound, .outbound, .inbound, .inbound])
        #expect(events.allSatisfy { $0.comm == "python3" && $0.missingBytes == 0 && $0.fd == sockets[0].fd })
        let request = String(decoding: events[0].payload, as: UTF8.self)
        #expect(request.hasPrefix("POST /upload HTTP/1.1\r\n"))
        #expect(request.contains("Content-Length: 40000\r\n"))
        #expect(events[1].length == 40000)
        #expect(sha256Hex(events[1].payload) == "1807e5036ee223f44da87dcfe9d58e965394b5951ea884328fd0336862ba6ae4")
        #expect(
            String(decoding: events[3].payload, as: UTF8.self)
                == "got 1807e5036ee223f44da87dcfe9d58e965394b5951ea884328fd0336862ba6ae4\n")

        // The connection: the client's side of 127.0.0.1, to the port the Host header names.
        let connect = sockets[0]
        let remote = try #require(connect.remote)
        #expect(connect.role == .client)
        #expect(connect.local?.ip == [127, 0, 0, 1])
        #expect(remote.ip == [127, 0, 0, 1])
        #expect(request.contains("Host: localhost:\(remote.port)\r\n"))
        let connection = try #require(events[0].connection)
        #expect(events.allSatisfy { $0.connection?.id == connection.id })
        guard lifecycle.count == 2, case .opened(let opened, _) = lifecycle[0],
            case .closed(let closed, let traffic, _) = lifecycle[1]
        else {
            Issue.record("expected open then close, got \(lifecycle)")
            return
        }
        #expect(opened.origin == .connect && closed === opened)
        #expect(traffic == ConnectionTraffic(bytesIn: 138 + 69, bytesOut: 189 + 40000))
    }
}
