import Glibc
import Logging
import TLSTapCore
import TLSTapHTTP
import TLSTapLoader
import TLSTapOutput

/// `tlstap demo`: a TLS conversation on loopback, traced end to end.
///
/// Starts `openssl s_server` with a throwaway certificate and fetches a file
/// from it with curl, both inside a cgroup of their own that is the only
/// thing traced, and renders what the two said to each other.
public struct Demo {
    /// The file curl fetches; its text appears in the captured response.
    public static let greeting = "Hello from the tlstap demo: this line crossed TLS and was read in plaintext.\n"

    /// What the demo saw.
    public struct Outcome {
        public var summary: TraceSummary
        public var clientStatus: Int32
        public var port: UInt16
        /// Whether the client's read of the greeting was captured.
        public var sawGreeting: Bool
    }

    private let logger: Logger

    public init(logger: Logger) {
        self.logger = logger
    }

    /// Runs the demo, rendering events into `sink`.
    /// - Parameters:
    ///   - http: parse HTTP exchanges with these limits; nil to skip parsing.
    ///   - announce: receives one line describing the setup before traffic starts.
    public func run(sink: EventSink, http: HTTPLimits? = nil, announce: (String) -> Void) throws -> Outcome {
        for tool in ["openssl", "curl"] where ChildProcess.resolve(tool) == nil {
            throw LoaderError("the demo needs \(tool); install it (scripts/bootstrap does) and run it again")
        }
        let directory = try makeDirectory()
        defer { _ = try? ChildProcess.run(["rm", "-rf", directory]) }
        try writeFile(directory + "/hello.txt", Self.greeting)
        let keyStatus = try ChildProcess.run([
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", directory + "/key.pem", "-out", directory + "/cert.pem", "-days", "1", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ])
        guard keyStatus == 0 else { throw LoaderError("openssl could not make the demo's certificate") }

        let cgroup = try CommandCgroup()
        let observer = GreetingObserver(sink)
        let session = try TraceSession(
            filters: TraceFilters(cgroupID: cgroup.id), ringBufferBytes: 16 << 20, sink: observer, http: http,
            logger: logger)
        try session.attach(try AttachPlan.make(for: TraceFilters(cgroupID: cgroup.id)))

        let port = try Self.freePort()
        announce("tlstap demo: openssl s_server on 127.0.0.1:\(port) and curl, traced through cgroup \(cgroup.id)")
        let server = try cgroup.spawn(
            [
                "openssl", "s_server", "-quiet", "-accept", "127.0.0.1:\(port)", "-cert", "cert.pem", "-key", "key.pem",
                "-WWW",
            ], workingDirectory: directory, quiet: true)
        defer {
            kill(server, SIGKILL)
            _ = ChildProcess.exitStatusIfEnded(server)
        }
        // Polled meanwhile: the server waits, stopped at exec, until the session has seen it.
        try Self.waitForListener(port: port) { try session.poll(timeoutMilliseconds: 50) }

        let client = try cgroup.spawn(
            [
                "curl", "-sS", "--cacert", directory + "/cert.pem", "-o", "/dev/null",
                "https://localhost:\(port)/hello.txt",
            ])
        var clientStatus: Int32?
        var serverStopped = false
        let deadline = time(nil) + 30
        try session.run {
            if clientStatus == nil { clientStatus = ChildProcess.exitStatusIfEnded(client) }
            if clientStatus != nil && !serverStopped {
                kill(server, SIGTERM)
                serverStopped = true
            }
            return (serverStopped && !cgroup.isPopulated) || time(nil) > deadline
        }
        return Outcome(
            summary: session.summary, clientStatus: clientStatus ?? -1, port: port, sawGreeting: observer.sawGreeting)
    }

    private func makeDirectory() throws(LoaderError) -> String {
        var template = Array("/tmp/tlstap-demo-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw .system("cannot create a temporary directory", errno: errno) }
        return String(cString: made)
    }

    private func writeFile(_ path: String, _ text: String) throws {
        let file = try OutputFile.create(path: path)
        try file.write(text)
        try file.finish()
    }

    /// A loopback port nothing listens on now.
    static func freePort() throws(LoaderError) -> UInt16 {
        let socketFD = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socketFD >= 0 else { throw .system("cannot create a socket", errno: errno) }
        defer { close(socketFD) }
        var address = loopback(port: 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(socketFD, $0, length) == 0 && getsockname(socketFD, $0, &length) == 0
            }
        }
        guard bound else { throw .system("cannot find a free port", errno: errno) }
        return UInt16(bigEndian: address.sin_port)
    }

    /// Waits until something accepts connections on the loopback port.
    static func waitForListener(port: UInt16, waiting: () throws -> Void) throws {
        for _ in 0..<200 {
            let socketFD = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = loopback(port: port)
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(socketFD, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
                }
            }
            close(socketFD)
            if connected { return }
            try waiting()
        }
        throw LoaderError("the demo's TLS server did not start listening on port \(port) within 10 seconds")
    }

    private static func loopback(port: UInt16) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        return address
    }
}

/// Passes events on, noting whether curl's read of the greeting went by.
private final class GreetingObserver: EventSink {
    private let inner: EventSink
    private let greeting = Array(Demo.greeting.utf8)
    private(set) var sawGreeting = false

    init(_ inner: EventSink) {
        self.inner = inner
    }

    func write(_ event: DataEvent) throws(OutputError) {
        if event.comm == "curl", event.direction == .inbound, contains(event.payload, greeting) { sawGreeting = true }
        try inner.write(event)
    }

    func write(_ event: ConnectionEvent) throws(OutputError) {
        try inner.write(event)
    }

    func write(_ record: any ProtocolRecord) throws(OutputError) {
        try inner.write(record)
    }

    func writeLost(_ lost: LostCounts, timeNanoseconds: UInt64) throws(OutputError) {
        try inner.writeLost(lost, timeNanoseconds: timeNanoseconds)
    }

    func flush() throws(OutputError) {
        try inner.flush()
    }

    func finish() throws(OutputError) {
        try inner.finish()
    }

    private func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard needle.count <= haystack.count else { return false }
        return (0...(haystack.count - needle.count)).contains { haystack[$0..<$0 + needle.count].elementsEqual(needle) }
    }
}
