import Foundation
import TestSupport
import Testing

extension EndToEnd {
    /// HTTP exchanges from real traffic: curl against Debian's nginx, over
    /// HTTP/1.1 and HTTP/2 on one run. nginx is not traced; curl is.
    @Suite struct HTTPTests {
        @Test func curlExchangesWithNginxOverHTTP1AndHTTP2() throws {
            let workspace = try Harness.makeWorkspace()
            defer { try? FileManager.default.removeItem(at: workspace) }
            let nginx = try Nginx(workspace: workspace)
            defer { nginx.stop() }
            let body = String(repeating: "0123456789abcdef", count: 64)  // 1 KiB
            try body.write(to: workspace.appendingPathComponent("www/one-k.txt"), atomically: true, encoding: .utf8)
            let cert = workspace.appendingPathComponent("cert.pem").path
            let url = "https://localhost:\(nginx.port)/one-k.txt"
            let script =
                "curl -sS --http1.1 --cacert '\(cert)' '\(url)?v=1' -o /dev/null "
                + "&& curl -sS --http2 --cacert '\(cert)' '\(url)?v=2' '\(url)?v=2b' -o /dev/null -o /dev/null"
            let run = try Harness.run(["--format", "json", "--events", "http", "--", "/bin/sh", "-c", script])
            #expect(run.status == 0, "\(run.standardError)")
            let records = try Harness.records(run.output)
            #expect(records.allSatisfy { $0["event"] as? String == "http" })
            #expect(records.count == 3)
            let h1 = try #require(records.first { $0["path"] as? String == "/one-k.txt?v=1" })
            #expect(h1["protocol"] as? String == "HTTP/1.1")
            #expect(h1["method"] as? String == "GET")
            #expect(h1["scheme"] as? String == "https")
            #expect(h1["authority"] as? String == "localhost:\(nginx.port)")
            #expect(h1["status"] as? Int == 200)
            #expect(h1["resp_body_len"] as? Int == 1024)
            #expect(h1["req_body_len"] as? Int == 0)
            #expect(h1["comm"] as? String == "curl")
            #expect(((h1["latency_ns"] as? Int) ?? 0) > 0)
            let responseHeaders = (h1["resp_headers"] as? [[String]]) ?? []
            #expect(responseHeaders.contains(["Content-Length", "1024"]))
            #expect(responseHeaders.first?.first == "Server")

            let h2 = records.filter { ($0["path"] as? String)?.hasPrefix("/one-k.txt?v=2") == true }
            #expect(h2.count == 2)
            #expect(h2.allSatisfy { $0["protocol"] as? String == "HTTP/2" && $0["status"] as? Int == 200 })
            #expect(
                h2.allSatisfy {
                    $0["resp_body_len"] as? Int == 1024 && $0["authority"] as? String == "localhost:\(nginx.port)"
                })
            #expect(Set(h2.compactMap { $0["stream"] as? Int }) == [1, 3])
            #expect(Set(h2.compactMap { $0["conn"] as? Int }).count == 1, "both requests on one connection")
            let h2Headers = (h2.first?["req_headers"] as? [[String]]) ?? []
            #expect(h2Headers.prefix(4).map { $0[0] } == [":method", ":path", ":scheme", ":authority"])
        }

        /// --bodies keeps bodies, decoded from their Content-Encoding.
        @Test(arguments: ["--http1.1", "--http2"])
        func bodiesAreKeptAndDecodedFromGzip(version: String) throws {
            let workspace = try Harness.makeWorkspace()
            defer { try? FileManager.default.removeItem(at: workspace) }
            let nginx = try Nginx(workspace: workspace)
            defer { nginx.stop() }
            let text = String(repeating: "compressible line of text\n", count: 200)
            try text.write(to: workspace.appendingPathComponent("www/text.txt"), atomically: true, encoding: .utf8)
            let run = try Harness.run([
                "--format", "json", "--events", "http", "--bodies", "--", "/usr/bin/curl", "-sS", version,
                "--compressed", "--cacert", workspace.appendingPathComponent("cert.pem").path, "-o", "/dev/null",
                "https://localhost:\(nginx.port)/text.txt",
            ])
            #expect(run.status == 0, "\(run.standardError)")
            let exchange = try #require(try Harness.records(run.output).first)
            #expect(exchange["resp_body_decoded_from"] as? String == "gzip")
            #expect(((exchange["resp_body_len"] as? Int) ?? 0) < text.utf8.count, "gzip on the wire")
            let body = Data(base64Encoded: exchange["resp_body"] as? String ?? "").map {
                String(decoding: $0, as: UTF8.self)
            }
            #expect(body == text)
        }

        /// h2load: many concurrent streams on a few connections; every stream
        /// becomes exactly one exchange with the right status.
        @Test func h2loadStreamsBecomeOneExchangeEach() throws {
            let workspace = try Harness.makeWorkspace()
            defer { try? FileManager.default.removeItem(at: workspace) }
            let nginx = try Nginx(workspace: workspace)
            defer { nginx.stop() }
            try "small".write(to: workspace.appendingPathComponent("www/small.txt"), atomically: true, encoding: .utf8)
            let load =
                "/usr/bin/h2load -n 200 -c 2 -m 20 https://127.0.0.1:\(nginx.port)/small.txt "
                + "https://127.0.0.1:\(nginx.port)/absent.txt >'\(workspace.path)/h2load.out'"
            let run = try Harness.run(["--format", "json", "--events", "http", "--", "/bin/sh", "-c", load])
            #expect(run.status == 0, "\(run.standardError)")
            let exchanges = try Harness.records(run.output)
            #expect(exchanges.count == 200)
            #expect(exchanges.allSatisfy { $0["protocol"] as? String == "HTTP/2" })
            let small = exchanges.filter { $0["path"] as? String == "/small.txt" }
            let absent = exchanges.filter { $0["path"] as? String == "/absent.txt" }
            #expect(small.count == 100 && absent.count == 100)
            #expect(small.allSatisfy { $0["status"] as? Int == 200 && $0["resp_body_len"] as? Int == 5 })
            #expect(absent.allSatisfy { $0["status"] as? Int == 404 })
            let streams = exchanges.map { "\($0["conn"] as? Int ?? -1)/\($0["stream"] as? Int ?? -1)" }
            #expect(Set(streams).count == 200, "one exchange per stream")
            #expect(Set(exchanges.compactMap { $0["conn"] as? Int }).count == 2)
        }

        /// tlstap joins nginx (`-p`) in the middle of a python3-h2 client's
        /// HTTP/2 connection, whose encoder indexed :authority, user-agent
        /// and x-trace before: every later request is decoded but for those
        /// three fields, which the note counts; and tshark reads the pcapng
        /// as HTTP/2 without flags (tlstap adds the preface it did not see).
        @Test func joiningAnHTTP2ConnectionMidwayDecodesEveryFieldItCan() throws {
            let workspace = try Harness.makeWorkspace()
            defer { try? FileManager.default.removeItem(at: workspace) }
            let nginx = try Nginx(workspace: workspace)
            defer { nginx.stop() }
            try nginx.serveNumberedFiles()
            let go = workspace.appendingPathComponent("go").path
            let client = try LaunchedProgram([
                Harness.python,
                Harness.packageRoot.appendingPathComponent("Tests/EndToEndTests/Peers/h2_client.py").path,
                "localhost", String(nginx.port), workspace.appendingPathComponent("cert.pem").path, "3", "5", go,
            ])
            defer { client.signal(SIGKILL) }
            for _ in 0..<200 where !String(decoding: client.standardOutputBytes, as: UTF8.self).contains("connected") {
                usleep(50_000)
            }
            let pcapng = workspace.appendingPathComponent("midway.pcapng").path
            let tracer = try LaunchedProgram([
                Harness.tlstap, "--format", "json", "--events", "http", "--pcapng", pcapng, "-p", String(nginx.pid),
            ])
            #expect(tracer.waitForStandardError(containing: "press Ctrl-C"), "\(tracer.standardError)")
            _ = FileManager.default.createFile(atPath: go, contents: nil)
            let finished = client.wait()
            #expect(finished.standardOutput.split(separator: "\n").count == 9, "\(finished.standardError)")
            let run = Harness.stop(tracer)
            #expect(run.status == 0, "\(run.standardError)")
            let exchanges = try Harness.records(run.output)
            #expect(exchanges.map { $0["path"] as? String } == (3..<8).map { "/files/f\($0).txt" })
            #expect(exchanges.allSatisfy { $0["method"] as? String == "GET" && $0["status"] as? Int == 200 })
            #expect(exchanges.map { $0["resp_body_len"] as? Int } == (3..<8).map { 100 * $0 + 1 })
            #expect(exchanges.allSatisfy { $0["protocol"] as? String == "HTTP/2" }, "\(exchanges)")
            #expect(
                exchanges.allSatisfy {
                    $0["note"] as? String
                        == "headers incomplete: 3 fields refer to HPACK table entries tlstap never saw"
                }, "\(exchanges)")
            // In pcapng, the preface tlstap added makes Wireshark read the frames as HTTP/2.
            let frames = try runProgram([
                "/usr/bin/tshark", "-r", pcapng, "-Y", "http2", "-T", "fields", "-e", "http2.type",
                "-E", "occurrence=a", "-E", "aggregator=,",
            ])
            let types = frames.standardOutput.split(whereSeparator: { $0 == "\n" || $0 == "," })
            #expect(types.filter { $0 == "1" }.count == 10, "\(frames.standardOutput)")  // 5 requests, 5 responses
            #expect(types.filter { $0 == "0" }.count == 5, "\(frames.standardOutput)")  // 5 response bodies
            let magic = try runProgram([
                "/usr/bin/tshark", "-r", pcapng, "-Y", "http2.magic", "-T", "fields",
                "-e", "frame.comment",
            ])
            #expect(magic.standardOutput.hasPrefix("added by tlstap: the HTTP/2 connection preface"))
        }

        /// Python's http.client: 100 requests on one keep-alive connection,
        /// 100 exchanges in order with the right paths and body lengths.
        @Test func pythonKeepAliveMakesOneHundredExchangesInOrder() throws {
            let workspace = try Harness.makeWorkspace()
            defer { try? FileManager.default.removeItem(at: workspace) }
            let nginx = try Nginx(workspace: workspace)
            defer { nginx.stop() }
            try nginx.serveNumberedFiles()
            let client = Harness.packageRoot.appendingPathComponent("Tests/EndToEndTests/Peers/keepalive_client.py")
                .path
            let output = workspace.appendingPathComponent("client.out").path
            let script =
                "'\(Harness.python)' '\(client)' localhost \(nginx.port) '\(workspace.path)/cert.pem' 100 >'\(output)'"
            let run = try Harness.run(["--format", "json", "--events", "http", "--", "/bin/sh", "-c", script])
            #expect(run.status == 0, "\(run.standardError)")
            let exchanges = try Harness.records(run.output)
            #expect(exchanges.count == 100)
            #expect(Set(exchanges.compactMap { $0["conn"] as? Int }).count == 1)
            #expect(exchanges.map { $0["path"] as? String ?? "" } == (0..<100).map { "/files/f\($0 % 10).txt" })
            #expect(exchanges.map { $0["resp_body_len"] as? Int ?? -1 } == (0..<100).map { 100 * ($0 % 10) + 1 })
            #expect(exchanges.allSatisfy { $0["protocol"] as? String == "HTTP/1.1" && $0["status"] as? Int == 200 })
            let starts = exchanges.compactMap { $0["start_ns"] as? UInt64 }
            #expect(starts == starts.sorted())
        }

        /// A gRPC-shaped exchange: curl posts two length-prefixed messages
        /// over HTTP/2 to a python3-h2 server that answers with trailers.
        @Test func grpcShapedExchangeReportsServiceStatusAndMessages() throws {
            let workspace = try Harness.makeWorkspace()
            defer { try? FileManager.default.removeItem(at: workspace) }
            let server = try GRPCPeer(workspace: workspace)
            defer { server.stop() }
            let port = server.port
            // Two messages: 3 bytes "abc" and 2 bytes "de".
            let request = workspace.appendingPathComponent("request.bin")
            try Data([0, 0, 0, 0, 3, 0x61, 0x62, 0x63, 0, 0, 0, 0, 2, 0x64, 0x65]).write(to: request)
            let run = try Harness.run([
                "--format", "json", "--events", "http", "--", "/usr/bin/curl", "-sS", "--http2", "--cacert",
                workspace.appendingPathComponent("cert.pem").path, "-H", "content-type: application/grpc",
                "-H", "te: trailers", "--data-binary", "@\(request.path)", "-o", "/dev/null",
                "https://localhost:\(port)/helloworld.Greeter/SayHello",
            ])
            #expect(run.status == 0, "\(run.standardError)")
            let exchange = try #require(try Harness.records(run.output).first)
            #expect(exchange["protocol"] as? String == "HTTP/2")
            #expect(exchange["method"] as? String == "POST")
            #expect(exchange["status"] as? Int == 200)
            let grpc = try #require(exchange["grpc"] as? [String: Any])
            #expect(grpc["service"] as? String == "helloworld.Greeter")
            #expect(grpc["method"] as? String == "SayHello")
            #expect(grpc["status"] as? Int == 0)
            #expect(grpc["message"] as? String == "ok")
            #expect(grpc["req_message_sizes"] as? [Int] == [3, 2])
            #expect(grpc["resp_message_sizes"] as? [Int] == [3, 2])
        }

        /// nginx answers `return 200` (and a 413 for a body over its limit)
        /// before it reads the body, often before curl has sent its HTTP/2
        /// DATA: each exchange counts exactly the body bytes curl's DATA
        /// frames carried, those sent after the response included.
        @Test func anEarlyResponseKeepsTheBodySentAfterIt() throws {
            let workspace = try Harness.makeWorkspace()
            defer { try? FileManager.default.removeItem(at: workspace) }
            let nginx = try Nginx(
                workspace: workspace,
                serverConfig:
                    "location = /early { return 200 \"early\\n\"; } location = /small { client_max_body_size 1; }"
            )
            defer { nginx.stop() }
            let cert = workspace.appendingPathComponent("cert.pem").path
            let curl = "curl -sS --http2 --cacert '\(cert)' --data-binary 'eighteen-byte-body' -o /dev/null"
            let script = (1...10).map { _ in
                "\(curl) https://localhost:\(nginx.port)/early && \(curl) https://localhost:\(nginx.port)/small"
            }.joined(separator: " && ")
            let run = try Harness.run(["--format", "json", "--", "/bin/sh", "-c", script])
            #expect(run.status == 0, "\(run.standardError)")
            let records = try Harness.records(run.output)
            let exchanges = records.filter { $0["event"] as? String == "http" }
            let events = try Harness.dataEvents(run.output)
            #expect(exchanges.count == 20)
            #expect(exchanges.map { $0["path"] as? String } == (1...10).flatMap { _ in ["/early", "/small"] })
            #expect(exchanges.map { $0["status"] as? Int } == (1...10).flatMap { _ in [200, 413] })
            var sentAfterTheResponse = 0
            for exchange in exchanges {
                let connection = exchange["conn"] as? Int
                let ours = events.filter { $0.connection == connection }
                let sent = Self.frames(ours.filter { $0.direction == "out" }, skipping: 24)
                let received = Self.frames(ours.filter { $0.direction == "in" }, skipping: 0)
                let body = sent.filter { $0.type == 0 && $0.stream == 1 }
                #expect(exchange["req_body_len"] as? Int == body.reduce(0) { $0 + $1.length }, "\(exchange)")
                if let answered = received.first(where: { $0.type == 1 && $0.stream == 1 })?.time,
                    body.contains(where: { $0.length > 0 && $0.time > answered })
                {
                    sentAfterTheResponse += 1
                }
            }
            // What this test is about happened (before the fix, each of these counted 0 bytes).
            #expect(sentAfterTheResponse >= 3, "\(sentAfterTheResponse) bodies came after their response")
        }

        /// The HTTP/2 frames in one direction's calls: type, stream, payload
        /// length, and the time of the call their header is in.
        static func frames(_ calls: [DataRecord], skipping preface: Int) -> [(
            type: UInt8, stream: UInt32, length: Int, time: UInt64
        )] {
            let bytes = calls.flatMap(\.payload)
            var callOf: [UInt64] = []
            for call in calls { callOf += Array(repeating: call.timeNanoseconds, count: call.payload.count) }
            var found: [(type: UInt8, stream: UInt32, length: Int, time: UInt64)] = []
            var offset = preface
            while offset + 9 <= bytes.count {
                let length = Int(bytes[offset]) << 16 | Int(bytes[offset + 1]) << 8 | Int(bytes[offset + 2])
                let stream = bytes[(offset + 5)..<(offset + 9)].reduce(UInt32(0)) { $0 << 8 | UInt32($1) } & 0x7fff_ffff
                found.append((bytes[offset + 3], stream, length, callOf[offset]))
                offset += 9 + length
            }
            return found
        }

        /// On a terminal (a pty from script(1)), tlstap's line for an
        /// exchange comes out between the command's own lines, not at the end.
        @Test func onATerminalLinesComeOutAsTheCommandRuns() throws {
            let workspace = try Harness.makeWorkspace()
            defer { try? FileManager.default.removeItem(at: workspace) }
            let nginx = try Nginx(workspace: workspace)
            defer { nginx.stop() }
            try "hello\n".write(to: workspace.appendingPathComponent("www/a.txt"), atomically: true, encoding: .utf8)
            let curl = "curl -sS --http1.1 --cacert \(workspace.path)/cert.pem https://localhost:\(nginx.port)/a.txt"
            let command = "'\(Harness.tlstap)' --format http -- sh -c '\(curl); sleep 1; echo done'"
            let run = try runProgram(["/usr/bin/script", "-q", "-e", "-c", command, "/dev/null"])
            #expect(run.status == 0, "\(run.standardError)")
            let lines = run.standardOutput.split(separator: "\r\n").map(String.init)
            let exchange = lines.firstIndex { $0.contains(" GET https://localhost:\(nginx.port)/a.txt → ") }
            #expect(lines.firstIndex(of: "hello").map { $0 + 1 } == exchange, "\(lines)")
            #expect(exchange.map { $0 + 1 } == lines.firstIndex(of: "done"), "\(lines)")
            #expect(lines.last?.hasPrefix("tlstap: 2 events, ") == true, "\(lines)")
            #expect(lines.contains { $0.contains("\u{1b}[") }, "colours on a terminal")
        }

        /// `--format http`: one line per exchange, no colours into a pipe.
        @Test func httpFormatPrintsOneLinePerExchange() throws {
            let workspace = try Harness.makeWorkspace()
            defer { try? FileManager.default.removeItem(at: workspace) }
            let nginx = try Nginx(workspace: workspace)
            defer { nginx.stop() }
            let cert = workspace.appendingPathComponent("cert.pem").path
            let run = try Harness.run([
                "--format", "http", "--", "/usr/bin/curl", "-sS", "--http1.1", "--cacert", cert, "-o", "/dev/null",
                "https://localhost:\(nginx.port)/missing",
            ])
            #expect(run.status == 0, "\(run.standardError)")
            let text = String(decoding: run.output, as: UTF8.self)
            let lines = text.split(separator: "\n")
            #expect(lines.count == 1)
            #expect(lines.first?.contains(" curl[") == true)
            #expect(lines.first?.contains(" GET https://localhost:\(nginx.port)/missing → 404 Not Found  ") == true)
            #expect(!text.contains("\u{1b}["))
        }
    }
}

/// Peers/grpc_server.py: one gRPC-shaped HTTP/2 exchange over TLS on a free loopback port.
final class GRPCPeer {
    let port: Int
    private let process: LaunchedProgram

    /// - Parameter responseHeaders: more response headers, as `name:value`.
    init(workspace: URL, responseHeaders: [String] = []) throws {
        let portFile = workspace.appendingPathComponent("grpc-port").path
        process = try LaunchedProgram(
            [
                Harness.python,
                Harness.packageRoot.appendingPathComponent("Tests/EndToEndTests/Peers/grpc_server.py").path,
                workspace.appendingPathComponent("cert.pem").path, workspace.appendingPathComponent("key.pem").path,
                portFile,
            ] + responseHeaders)
        var port = 0
        for _ in 0..<200 where port == 0 {
            port = (try? String(contentsOfFile: portFile, encoding: .utf8)).flatMap { Int($0) } ?? 0
            if port == 0 { usleep(50_000) }
        }
        self.port = port
        if port == 0 {
            stop()
            Issue.record("the gRPC server did not start: \(process.standardError)")
            throw CancellationError()
        }
    }

    func stop() {
        process.signal(SIGKILL)
        _ = process.wait()
    }
}

/// Debian's nginx with TLS and HTTP/2 on a free loopback port, files from www/.
final class Nginx {
    let port: Int
    private let workspace: URL
    private let process: LaunchedProgram

    /// - Parameter serverConfig: more directives for the server block.
    init(workspace: URL, serverConfig: String = "") throws {
        let www = workspace.appendingPathComponent("www")
        try FileManager.default.createDirectory(at: www, withIntermediateDirectories: true)
        var lastError = ""
        for _ in 0..<5 {
            let port = Int.random(in: 20_000...60_000)
            let config = """
                worker_processes 1;
                daemon off;
                master_process off;
                pid \(workspace.path)/nginx.pid;
                error_log \(workspace.path)/error.log;
                events { worker_connections 64; }
                http {
                    access_log off;
                    gzip on;
                    gzip_types text/plain;
                    gzip_min_length 1;
                    client_body_temp_path \(workspace.path)/tmp;
                    proxy_temp_path \(workspace.path)/tmp;
                    fastcgi_temp_path \(workspace.path)/tmp;
                    uwsgi_temp_path \(workspace.path)/tmp;
                    scgi_temp_path \(workspace.path)/tmp;
                    server {
                        listen 127.0.0.1:\(port) ssl http2;
                        ssl_certificate \(workspace.path)/cert.pem;
                        ssl_certificate_key \(workspace.path)/key.pem;
                        root \(www.path);
                        \(serverConfig)
                    }
                }
                """
            let configPath = workspace.appendingPathComponent("nginx.conf").path
            try config.write(toFile: configPath, atomically: true, encoding: .utf8)
            let process = try LaunchedProgram(["/usr/sbin/nginx", "-c", configPath, "-p", workspace.path])
            for _ in 0..<100 {
                if Nginx.accepts(port: port) {
                    self.port = port
                    self.workspace = workspace
                    self.process = process
                    return
                }
                if !process.process.isRunning { break }
                usleep(50_000)
            }
            process.signal(SIGKILL)
            lastError = process.wait().standardError
        }
        Issue.record("nginx did not start: \(lastError)")
        throw CancellationError()
    }

    /// Ten files, www/files/f0.txt to f9.txt, of 100 × i + 1 bytes each.
    func serveNumberedFiles() throws {
        let files = workspace.appendingPathComponent("www/files")
        try FileManager.default.createDirectory(at: files, withIntermediateDirectories: true)
        for index in 0..<10 {
            try String(repeating: "x", count: 100 * index + 1).write(
                to: files.appendingPathComponent("f\(index).txt"), atomically: true, encoding: .utf8)
        }
    }

    /// nginx's only process (master_process off): the one that serves.
    var pid: Int32 { process.process.processIdentifier }

    func stop() {
        process.signal(SIGKILL)  // children of the test runner start with every signal blocked
        _ = process.wait()
    }

    static func accepts(port: Int) -> Bool {
        let socketFD = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(socketFD) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(socketFD, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }
}
