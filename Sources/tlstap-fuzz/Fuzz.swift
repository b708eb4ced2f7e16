import TLSTapCore
import TLSTapHTTP

/// Fuzz targets for everything that parses bytes from the wire or the kernel.
///
/// Built with `scripts/fuzz` (`-sanitize=fuzzer,address`, `-DTLSTAP_FUZZ`),
/// libFuzzer drives `LLVMFuzzerTestOneInput`; TLSTAP_FUZZ_TARGET picks the
/// parser: `http1`, `http2`, `websocket`, `records` or `captures`. Built normally, `main` replays
/// files (a corpus) through the same code, so CI can check the seeds.
enum FuzzTarget: String, CaseIterable {
    case http1
    case http2
    /// Frames after an HTTP/1.1 upgrade to WebSocket, with permessage-deflate
    /// when the first byte's lowest bit is set.
    case websocket
    case records
    /// A capture file for `tlstap replay`: the first byte picks the format
    /// (length-prefixed or ring), the rest follows its magic.
    case captures

    /// Runs one input. The first byte splits it into the client's and the
    /// server's bytes, sets the piece size, and marks some pieces as coming
    /// after lost bytes, so the fuzzer also explores splits and resyncs.
    func run(_ input: [UInt8]) {
        switch self {
        case .http1, .http2, .websocket:
            guard let control = input.first else { return }
            let body = Array(input.dropFirst())
            let cut = body.isEmpty ? 0 : Int(control) * body.count / 256
            let piece = Int(control % 16) + 1
            let (clientStart, serverStart) = Self.openings(self, control: control)
            let client = clientStart + body[..<cut]
            let server = serverStart + body[cut...]
            let tracker = HTTPProtocols.tracker(
                limits: HTTPLimits(maxHeaderBytes: 4096, maxBodyBytes: 64, captureBodies: true))
            var analysis = ConnectionAnalysis()
            var time: UInt64 = 0
            let gapPeriod = Int(control >> 5) + 2  // 2...9 pieces
            for (direction, bytes) in [(Direction.outbound, client), (.inbound, server)] {
                for start in stride(from: 0, to: bytes.count, by: piece) {
                    time += 1
                    var event = Self.event(direction, Array(bytes[start..<min(start + piece, bytes.count)]), time)
                    if control & 0x10 != 0 && (start / piece) % gapPeriod == gapPeriod - 1 { event.lostBefore = 1 }
                    _ = tracker.feed(event, into: &analysis)
                }
            }
            _ = tracker.close(analysis, time: time + 1)
        case .records:
            var assembler = ChunkAssembler(clock: WallClock(offsetNanoseconds: 0))
            var connections = ConnectionTable(clock: WallClock(offsetNanoseconds: 0))
            var offset = 0
            while offset < input.count {
                let length = min(Int(input[offset]) * 4, input.count - offset - 1)
                let record = Array(input[(offset + 1)..<(offset + 1 + length)])
                offset += 1 + length
                switch try? record.withUnsafeBytes({ try RecordDecoder.decodeRecord($0) }) {
                case .chunk(let chunk)?:
                    for var event in assembler.add(chunk) { _ = connections.attach(&event) }
                case .socket(let socket)?:
                    _ = connections.handle(socket)
                case .process(let process)?:
                    if process.kind == .exit { _ = connections.processExited(process) }
                case .objectFreed?, nil:
                    continue
                }
            }
            _ = assembler.flush()
        case .captures:
            guard let control = input.first else { return }
            var reader = RawRecordLog.Reader(
                (control & 1 == 0 ? RawRecordLog.magic : RawRecordLog.ringMagic) + input.dropFirst())
            try? reader.readRecords { record in
                if RawRecordLog.Note.isNote(record) {
                    _ = RawRecordLog.Note(record)
                } else {
                    _ = try? RecordDecoder.decodeRecord(record)
                }
                return true
            }
        }
    }

    /// What the client and the server sent before the fuzzed bytes.
    static func openings(_ target: FuzzTarget, control: UInt8) -> (client: [UInt8], server: [UInt8]) {
        switch target {
        case .http2: (Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8), [])
        case .websocket:
            (
                Array("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n".utf8),
                Array(
                    ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                        + (control & 1 == 1 ? "Sec-WebSocket-Extensions: permessage-deflate\r\n" : "") + "\r\n").utf8)
            )
        default: ([], [])
        }
    }

    static func event(_ direction: Direction, _ bytes: [UInt8], _ time: UInt64) -> DataEvent {
        DataEvent(
            timeNanoseconds: time, pid: 1, tid: 1, comm: "fuzz", library: .openssl, function: .sslWrite,
            direction: direction, ssl: 1, length: UInt64(bytes.count), payload: bytes, fd: 3,
            connection: Connection(
                id: 1, pid: 1, comm: "fuzz", fd: 3, local: SocketAddress(ip: [127, 0, 0, 1], port: 1),
                remote: SocketAddress(ip: [127, 0, 0, 1], port: 2), role: .client, origin: .connect,
                openedNanoseconds: 0))
    }
}

#if TLSTAP_FUZZ
    import Glibc

    private let fuzzTarget: FuzzTarget = {
        let name = getenv("TLSTAP_FUZZ_TARGET").map { String(cString: $0) } ?? "http1"
        return FuzzTarget(rawValue: name) ?? .http1
    }()

    @_cdecl("LLVMFuzzerTestOneInput")
    public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
        fuzzTarget.run(Array(UnsafeBufferPointer(start: data, count: size)))
        return 0
    }

    @_silgen_name("LLVMFuzzerRunDriver")
    func runFuzzerDriver(
        _ argc: UnsafeMutablePointer<Int32>,
        _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
        _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> Int32
    ) -> Int32

    /// SwiftPM names an executable's entry point `<module>_main`; hand control to libFuzzer there.
    @_cdecl("tlstap_fuzz_main")
    public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
        var count = argc
        var arguments = argv
        return runFuzzerDriver(&count, &arguments) { data, size in fuzzOneInput(data, size) }
    }
#else
    import Foundation

    /// `tlstap-fuzz TARGET FILE...`: replays inputs through a fuzz target.
    @main
    struct ReplayCorpus {
        static func main() throws {
            let arguments = CommandLine.arguments.dropFirst()
            guard let name = arguments.first, let target = FuzzTarget(rawValue: name) else {
                print("usage: tlstap-fuzz http1|http2|websocket|records|captures FILE...")
                return
            }
            for path in arguments.dropFirst() {
                target.run(Array(try Data(contentsOf: URL(fileURLWithPath: path))))
            }
            print("replayed \(arguments.count - 1) inputs through \(name)")
        }
    }
#endif
