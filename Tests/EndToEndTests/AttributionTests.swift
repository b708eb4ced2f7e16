import Foundation
import TestSupport
import Testing

extension EndToEnd {
    /// Which connection plaintext belongs to, in programs that drive OpenSSL
    /// through memory BIOs from one event-loop thread for many connections
    /// (node, Python's asyncio). There SSL_write and SSL_read never touch a
    /// socket: the loop moves each connection's ciphertext afterwards, in
    /// its own order, and SSL objects are freed and their addresses reused
    /// as connections come and go. A guess such as "the socket of the
    /// thread's next TLS record write" puts one client's requests on another
    /// client's connection, or on none. These tests check every exchange
    /// against the connection its client really used.
    @Suite struct AttributionTests {
        /// An HTTPS server that serves all its connections from one thread.
        enum EventLoopServer: String, CaseIterable, Sendable, CustomTestStringConvertible {
            /// node's https module (OpenSSL linked into node), HTTP/1.1.
            case node
            /// node's http2 module with allowHTTP1, answering curl's HTTP/2.
            case nodeHTTP2
            /// Python's asyncio.start_server with an SSL context (sslproto,
            /// SSLObject on memory BIOs; Debian's libssl).
            case asyncio
            /// Go's net/http over TLS with HTTP/2 on, full and stripped: its
            /// first reads are served from the buffer its handshake filled,
            /// with no syscall that names the socket, and hold the preface.
            case go
            case goStripped

            var testDescription: String {
                switch self {
                case .node: "node https"
                case .nodeHTTP2: "node http2"
                case .asyncio: "python asyncio"
                case .go: "go net/http"
                case .goStripped: "go net/http, stripped"
                }
            }

            func arguments(workspace: URL, portFile: String) throws -> [String] {
                let peers = Harness.packageRoot.appendingPathComponent("Tests/EndToEndTests/Peers")
                let tail = [
                    workspace.appendingPathComponent("cert.pem").path,
                    workspace.appendingPathComponent("key.pem").path, portFile,
                ]
                switch self {
                case .node:
                    return [AttributionTests.node, peers.appendingPathComponent("event_loop_https.js").path] + tail
                case .nodeHTTP2:
                    return [AttributionTests.node, peers.appendingPathComponent("event_loop_https.js").path] + tail
                        + ["--h2"]
                case .asyncio:
                    return [Harness.python, peers.appendingPathComponent("asyncio_https.py").path] + tail
                case .go, .goStripped:
                    return [try Harness.buildGoPeer(in: workspace, stripped: self == .goStripped), "h2server"] + tail
                }
            }

            /// What curl speaks to it, and what tlstap should call it.
            var curlVersion: String { [.node, .asyncio].contains(self) ? "--http1.1" : "--http2" }
            var httpProtocol: String { [.node, .asyncio].contains(self) ? "HTTP/1.1" : "HTTP/2" }
        }

        /// Debian's node, which carries OpenSSL in its executable.
        static let node = "/usr/bin/node"

        /// 3 rounds of 8 curl clients at once against an event-loop server
        /// started untraced, then traced with `-p`. Each curl makes 2 requests on
        /// one keep-alive connection, with paths of its own
        /// (/r{round}/c{client}/{n}), and reports its local port. Every
        /// `http` record must sit on the connection of the curl whose paths
        /// it carries (its remote port is that curl's; a later round may get
        /// the same port, so the k-th connection from a port is the k-th
        /// curl that used it); every request must
        /// appear exactly once, with its path; every data event must name
        /// its connection. A tracer that pairs TLS objects with sockets by
        /// guessing from the order of the loop's socket writes put a sixth
        /// to a third of these exchanges on other clients' connections, and
        /// left some on none.
        /// node's http2 server (with allowHTTP1) gets the same load over
        /// HTTP/2: two streams on each curl's connection.
        @Test(arguments: EventLoopServer.allCases)
        func parallelKeepAliveClientsOfAnEventLoopServerStayOnTheirConnections(server kind: EventLoopServer) throws {
            let workspace = try Harness.makeWorkspace()
            defer { try? FileManager.default.removeItem(at: workspace) }
            let portFile = workspace.appendingPathComponent("port").path
            let (server, port) = try Self.startServer(
                try kind.arguments(workspace: workspace, portFile: portFile),
                portFile: portFile)
            // SIGKILL: children of the test runner start with every signal blocked.
            defer {
                server.signal(SIGKILL)
                _ = server.wait()
            }
            let tracer = try LaunchedProgram([
                Harness.tlstap, "--format", "json", "-p",
                String(server.process.processIdentifier),
            ])
            #expect(tracer.waitForStandardError(containing: "press Ctrl-C"), "\(tracer.standardError)")

            var clientsByPort: [Int: [String]] = [:]  // curl's local port → its curls in order, "r0/c2", "r2/c5"
            var requested = Set<String>()
            for round in 0..<3 {
                let clients = try (0..<8).map { client in
                    let paths = (0..<2).map { "/r\(round)/c\(client)/\($0)" }
                    requested.formUnion(paths)
                    let curl = try LaunchedProgram(
                        [
                            "/usr/bin/curl", "-sk", kind.curlVersion, "--max-time", "10",
                            "-w", "%{local_port} %{http_code}\n", "-o", "/dev/null", "-o", "/dev/null",
                        ]
                            + paths.map { "https://127.0.0.1:\(port)\($0)" })
                    return (name: "r\(round)/c\(client)", curl: curl)
                }
                for (name, curl) in clients {
                    let result = curl.wait()
                    #expect(result.status == 0, "curl \(name): \(result.standardError)")
                    let lines = result.standardOutput.split(separator: "\n").map { $0.split(separator: " ") }
                    #expect(
                        lines.count == 2 && lines.allSatisfy { $0.last == "200" },
                        "curl \(name): \(result.standardOutput)")
                    let ports = Set(lines.compactMap { $0.first.flatMap { Int($0) } })
                    #expect(ports.count == 1, "curl \(name) made both requests on one connection: \(ports)")
                    for clientPort in ports { clientsByPort[clientPort, default: []].append(name) }
                }
            }
            let run = Harness.stop(tracer)
            #expect(run.status == 0, "\(run.standardError)")
            // Kept with `swift test --attachments-path DIR` (the kernel matrix keeps them).
            Attachment.record(run.output, named: "tlstap-\(kind.rawValue).jsonl")
            Attachment.record(run.standardError, named: "tlstap-\(kind.rawValue).stderr")

            let records = try Harness.records(run.output)
            let connections = Self.connections(in: records)
            let clientOfConnection = Self.clients(of: connections, byPort: clientsByPort)
            let data = records.filter { $0["event"] as? String == "data" }
            #expect(!data.isEmpty)
            let unnamed = data.filter { $0["conn"] as? Int == nil }
            #expect(
                unnamed.isEmpty,
                "\(unnamed.count) of \(data.count) data events name no connection: \(unnamed.map(Self.summary))")

            let exchanges = records.filter { $0["event"] as? String == "http" }
            let paths = exchanges.map { $0["path"] as? String ?? "" }
            #expect(paths.allSatisfy { !$0.isEmpty }, "\(paths.filter(\.isEmpty).count) exchanges without a path")
            #expect(
                exchanges.allSatisfy {
                    $0["protocol"] as? String == kind.httpProtocol && $0["status"] as? Int == 200
                })
            var misplaced: [String] = []
            for exchange in exchanges {
                let path = exchange["path"] as? String ?? ""
                let connection = exchange["conn"] as? Int
                let remote = connection.flatMap { connections[$0]?.remote }
                let owner = connection.flatMap { clientOfConnection[$0] }
                let client = path.split(separator: "/").prefix(2).joined(separator: "/")
                if owner != client {
                    misplaced.append(
                        "\(path) on conn \(connection.map(String.init) ?? "none") "
                            + "from \(remote ?? "nowhere") (\(owner ?? "no curl of ours"))")
                }
            }
            #expect(
                misplaced.isEmpty,
                "\(misplaced.count) of \(exchanges.count) exchanges on another client's connection: \(misplaced)")
            let missing = requested.subtracting(paths).sorted()
            let unexpected = Set(paths).subtracting(requested).sorted()
            #expect(Set(paths) == requested, "missing \(missing), unexpected \(unexpected)")
            #expect(paths.count == requested.count, "each request once")
            let perConnection = Dictionary(grouping: exchanges) { $0["conn"] as? Int ?? -1 }.mapValues(\.count)
            #expect(
                perConnection.count == clientsByPort.values.map(\.count).reduce(0, +)
                    && perConnection.values.allSatisfy { $0 == 2 },
                "one connection per curl, its two requests on it: \(perConnection)")
        }

        /// Go multiplexes goroutines onto threads, so the thread a Go TLS call
        /// started on runs other goroutines while it waits. Here, on each of
        /// 12 connections, two goroutines Read at once: the second parks on
        /// the connection's lock before any syscall, while a third goroutine
        /// on the same thread (GOMAXPROCS 1) writes to a plain TCP socket.
        /// A tracer that names a Go call's socket by the thread's syscalls put
        /// some Reads on that plain socket (2 of 16 seen). Every Read must
        /// be on its own TLS connection, once, byte-exact. With --plaintext,
        /// the plain write is not inside any TLS call, whatever waits on its
        /// thread: each must be shown, on the plain connection.
        @Test func goReadsThatParkBeforeTheirSyscallKeepTheirConnection() throws {
            let workspace = try Harness.makeWorkspace()
            defer { try? FileManager.default.removeItem(at: workspace) }
            let count = 12
            let goPeer = try Harness.buildGoPeer(in: workspace)
            let portFile = workspace.appendingPathComponent("port").path
            let (server, port) = try Self.startServer(
                [
                    goPeer, "parkedreads", workspace.appendingPathComponent("cert.pem").path,
                    workspace.appendingPathComponent("key.pem").path, portFile, String(count),
                ], portFile: portFile)
            defer {
                server.signal(SIGKILL)
                _ = server.wait()
            }
            let tracer = try LaunchedProgram([
                Harness.tlstap, "--format", "json", "--plaintext", "-p", String(server.process.processIdentifier),
            ])
            #expect(tracer.waitForStandardError(containing: "press Ctrl-C"), "\(tracer.standardError)")
            let client = try LaunchedProgram([goPeer, "parkedclient", String(port), String(count)]).wait()
            #expect(client.status == 0, "\(client.standardError)")
            let run = Harness.stop(tracer)
            #expect(run.status == 0, "\(run.standardError)")
            Attachment.record(run.output, named: "tlstap-parkedreads.jsonl")

            let events = try Harness.dataEvents(run.output)
            let reads = events.filter { $0.lib == "go" }
            let plain = events.filter { $0.lib == "socket" && $0.direction == "out" }
            #expect(
                plain.map { String(decoding: $0.payload, as: UTF8.self) } == Array(repeating: "not TLS", count: count)
                    && Set(plain.map(\.connection)).count == 1 && plain.allSatisfy { $0.remote != nil },
                "\(plain.map { "\($0.payload) on \($0.remote ?? "none")" })")
            let sent = (0..<count).flatMap { ["c\($0)-one", "c\($0)-two"] }
            #expect(reads.map { String(decoding: $0.payload, as: UTF8.self) }.sorted() == sent.sorted())
            let elsewhere = reads.filter { $0.local != "127.0.0.1:\(port)" }.map {
                "\(String(decoding: $0.payload, as: UTF8.self)) on \($0.local ?? "none")"
            }
            #expect(
                elsewhere.isEmpty, "\(elsewhere.count) of \(reads.count) Reads not on the TLS connection: \(elsewhere)")
            // Both Reads of a connection on one connection, each connection's own.
            let byConnection = Dictionary(grouping: reads) { $0.connection ?? -1 }
            #expect(byConnection.count == count && !byConnection.keys.contains(-1))
            for (connection, its) in byConnection {
                let clients = Set(its.map { $0.payload.prefix { $0 != UInt8(ascii: "-") } })
                #expect(its.count == 2 && clients.count == 1, "conn \(connection): \(its.map(\.payload))")
            }
        }

        /// One node process that is an HTTPS server and its keep-alive
        /// client, then an HTTP/2 server and its client session (6 requests
        /// each, all on node's one thread), traced with `-- COMMAND`. Both
        /// ends of every exchange are in the trace: each request must appear
        /// once on the server's connection and once on the client's, with
        /// its path and status, the two being the two ends of one TCP
        /// connection; no connection may carry both HTTP/1 and HTTP/2. The
        /// second phase's SSL objects may reuse the addresses of the first
        /// phase's, and its sockets the same fds: state kept from the first
        /// connection pair must not leak into the second.
        @Test func oneNodeProcessAsServerAndClientOverHTTP1ThenHTTP2() throws {
            let workspace = try Harness.makeWorkspace()
            defer { try? FileManager.default.removeItem(at: workspace) }
            let count = 6
            let peer = Harness.packageRoot.appendingPathComponent("Tests/EndToEndTests/Peers/node_mixed.js").path
            let printedFile = workspace.appendingPathComponent("node_mixed.out").path
            // node is the command itself, not exec'd by a shell: a program
            // exec'd later is probed asynchronously, and this one may be
            // done before its probes are in place. Its report goes to a file,
            // away from tlstap's output on the shared stdout.
            let run = try Harness.run([
                "--format", "json", "--", Self.node, peer, workspace.appendingPathComponent("cert.pem").path,
                workspace.appendingPathComponent("key.pem").path, String(count), "--out", printedFile,
            ])
            #expect(run.status == 0, "\(run.standardError)")
            let printed = (try? String(contentsOfFile: printedFile, encoding: .utf8)) ?? ""
            #expect(printed.hasSuffix("done\n"), "node_mixed.js said: \(printed)")

            let records = try Harness.records(run.output)
            let connections = Self.connections(in: records)
            let data = records.filter { $0["event"] as? String == "data" }
            let unnamed = data.filter { $0["conn"] as? Int == nil }
            #expect(
                unnamed.isEmpty,
                "\(unnamed.count) of \(data.count) data events name no connection: \(unnamed.map(Self.summary))")
            let exchanges = records.filter { $0["event"] as? String == "http" }
            func role(of exchange: [String: Any]) -> String? {
                (exchange["conn"] as? Int).flatMap { connections[$0]?.role }
            }

            for (prefix, httpProtocol) in [("h1", "HTTP/1.1"), ("h2", "HTTP/2")] {
                for index in 0..<count {
                    let path = "/\(prefix)/\(index)"
                    let matching = exchanges.filter { $0["path"] as? String == path }
                    let server = matching.filter { role(of: $0) == "server" }
                    let client = matching.filter { role(of: $0) == "client" }
                    let counts = "\(server.count) on a server connection, \(client.count) on a client one"
                    #expect(
                        server.count == 1 && client.count == 1 && matching.count == 2,
                        "\(path): \(counts), \(matching.count) in all")
                    for exchange in matching {
                        #expect(exchange["status"] as? Int == 200, "\(path)")
                        #expect(exchange["protocol"] as? String == httpProtocol, "\(path)")
                    }
                    if let serverSide = server.first.flatMap({ ($0["conn"] as? Int).flatMap { connections[$0] } }),
                        let clientSide = client.first.flatMap({ ($0["conn"] as? Int).flatMap { connections[$0] } })
                    {
                        #expect(
                            serverSide.remote != nil && serverSide.remote == clientSide.local,
                            "\(path): both ends of one TCP connection")
                        #expect(
                            serverSide.local != nil && serverSide.local == clientSide.remote,
                            "\(path): both ends of one TCP connection")
                    }
                }
            }
            let protocolsByConnection = Dictionary(grouping: exchanges) { $0["conn"] as? Int ?? -1 }
                .mapValues { Set($0.map { $0["protocol"] as? String ?? "none" }) }
            #expect(
                protocolsByConnection.values.allSatisfy { $0.count == 1 },
                "no connection carries both HTTP/1 and HTTP/2: \(protocolsByConnection)")
            #expect(protocolsByConnection.count == 4, "an HTTP/1 and an HTTP/2 connection, each seen from both ends")
            #expect(exchanges.count == 4 * count)
        }
    }
}

extension EndToEnd.AttributionTests {
    /// A connection as its open, data and close records name it.
    struct Connection {
        var role: String?
        var local: String?
        var remote: String?
    }

    /// Every connection named in the records, by `conn`.
    static func connections(in records: [[String: Any]]) -> [Int: Connection] {
        var found: [Int: Connection] = [:]
        for record in records where ["open", "data", "close"].contains(record["event"] as? String ?? "") {
            guard let id = record["conn"] as? Int else { continue }
            var connection = found[id] ?? Connection()
            connection.role = connection.role ?? record["role"] as? String
            connection.local = connection.local ?? record["local"] as? String
            connection.remote = connection.remote ?? record["remote"] as? String
            found[id] = connection
        }
        return found
    }

    /// The curl behind each connection (by id): the k-th connection, in
    /// tlstap's order, whose remote port a curl used is the k-th curl that
    /// used that port (`clientsByPort`, in the order they ran).
    static func clients(of connections: [Int: Connection], byPort clientsByPort: [Int: [String]]) -> [Int: String] {
        let byPort = Dictionary(grouping: connections.keys) { id in
            connections[id]?.remote.flatMap { $0.split(separator: ":").last }.flatMap { Int($0) } ?? -1
        }
        var owners: [Int: String] = [:]
        for (port, ids) in byPort {
            for (id, client) in zip(ids.sorted(), clientsByPort[port] ?? []) { owners[id] = client }
        }
        return owners
    }

    /// A data event in a few words, for failure messages.
    static func summary(_ record: [String: Any]) -> String {
        "\(record["func"] as? String ?? "?") \(record["dir"] as? String ?? "?") ssl=\(record["ssl"] as? String ?? "?") "
            + "fd=\(record["fd"] as? Int ?? -1) \(record["len"] as? Int ?? 0) bytes"
    }

    /// Starts a server that writes its port to `portFile` once listening,
    /// and waits for the port (10 s at most).
    static func startServer(_ arguments: [String], portFile: String) throws -> (LaunchedProgram, Int) {
        let server = try LaunchedProgram(arguments)
        for _ in 0..<200 {
            if let text = try? String(contentsOfFile: portFile, encoding: .utf8), let port = Int(text) {
                return (server, port)
            }
            if !server.process.isRunning { break }
            usleep(50_000)
        }
        server.signal(SIGKILL)
        Issue.record("\(arguments.dropFirst().first ?? "the server") did not start: \(server.wait().standardError)")
        throw CancellationError()
    }
}
