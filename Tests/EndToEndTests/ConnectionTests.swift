import Foundation
import TestSupport
import Testing

extension EndToEnd {
    @Suite struct ConnectionTests {
        /// curl → openssl s_server, both traced: the client's fd and addresses
        /// equal what `ss -tnp` reports for the connection while it is open,
        /// and the server's events carry role server and the mirrored addresses.
        @Test(arguments: ["127.0.0.1", "::1"])
        func eventsNameTheirSocketAsSsDoes(host: String) throws {
            let workspace = try Harness.makeWorkspace()
            defer { try? FileManager.default.removeItem(at: workspace) }
            let urlHost = host.contains(":") ? "[\(host)]" : host
            // The server answers 1.5 s after ss has seen curl's connection (or tried for long enough), so the
            // connection is open when ss looks and lasts over a second, however slowly the machine runs.
            let script = """
                cd "$1"
                (until [ -e ss.done ]; do sleep 0.05; done; sleep 1.5
                 printf 'HTTP/1.1 200 OK\\r\\nContent-Length: 3\\r\\nConnection: close\\r\\n\\r\\nok\\n') \
                  | openssl s_server -naccept 1 -accept '\(urlHost):0' -cert cert.pem -key key.pem >server.out 2>&1 &
                until grep -q ACCEPT server.out; do sleep 0.05; done
                port=$(sed -n 's/^ACCEPT .*:\\([0-9]*\\)$/\\1/p' server.out)
                (for i in $(seq 400); do
                   ss -tnpH state established "( dport = :$port )" >ss.out
                   grep -q '"curl"' ss.out && break
                   sleep 0.05
                 done
                 touch ss.done) &
                curl -sS --cacert cert.pem "https://\(urlHost):$port/named" -o body.out
                wait
                """
            let run = try Harness.run(["--format", "json", "--", "/bin/sh", "-c", script, "sh", workspace.path])
            #expect(run.status == 0, "\(run.standardError)")
            let ss = try String(contentsOf: workspace.appendingPathComponent("ss.out"), encoding: .utf8)
            // Recv-Q Send-Q Local:Port Peer:Port users:(("curl",pid=N,fd=N))
            let fields = ss.split(separator: "\n").first { $0.contains("\"curl\"") }?.split(separator: " ") ?? []
            try #require(fields.count >= 5, "ss said: \(ss)")
            let (ssLocal, ssRemote) = (String(fields[2]), String(fields[3]))
            let ssPID = try #require(fields[4].firstMatch(of: /pid=(\d+)/).flatMap { Int($0.1) })
            let ssFD = try #require(fields[4].firstMatch(of: /fd=(\d+)/).flatMap { Int($0.1) })

            let events = try Harness.dataEvents(run.output)
            let curl = events.filter { $0.comm == "curl" }
            let server = events.filter { $0.comm == "openssl" }
            #expect(!curl.isEmpty && !server.isEmpty)
            for event in curl {
                #expect(event.pid == ssPID)
                #expect(event.fd == ssFD)
                #expect(event.local == ssLocal)
                #expect(event.remote == ssRemote)
                #expect(event.role == "client")
            }
            for event in server {
                #expect(event.local == ssRemote)
                #expect(event.remote == ssLocal)
                #expect(event.role == "server")
            }
            #expect(Set(curl.compactMap(\.connection)).count == 1)
            #expect(Set(server.compactMap(\.connection)).count == 1)
            #expect(curl.first?.connection != server.first?.connection)

            let records = try Harness.records(run.output)
            let opens = records.filter { $0["event"] as? String == "open" }
            let closes = records.filter { $0["event"] as? String == "close" }
            #expect(opens.count == 2 && closes.count == 2)
            let curlClose = try #require(closes.first { $0["comm"] as? String == "curl" })
            #expect(curlClose["seen_from"] as? String == "connect")
            #expect(curlClose["bytes_out"] as? Int == curl.joined(direction: "out").count)
            #expect(curlClose["bytes_in"] as? Int == curl.joined(direction: "in").count)
            #expect((curlClose["duration_ns"] as? Int ?? 0) > 1_000_000_000)  // the server waited 1.5 s to answer
            let serverOpen = try #require(opens.first { $0["comm"] as? String == "openssl" })
            #expect(serverOpen["seen_from"] as? String == "accept")
        }

        /// 50 threads of one process, 50 connections at once, each with its
        /// own random body: every byte lands on the right connection.
        @Test func concurrentConnectionsOfOneProcessKeepTheirBytesApart() throws {
            let workspace = try Harness.makeWorkspace()
            defer { try? FileManager.default.removeItem(at: workspace) }
            let count = 50
            let (server, port) = try Harness.startPythonServer(in: workspace, requests: count)
            let output = workspace.appendingPathComponent("threads.out").path
            let client =
                [
                    Harness.python, Harness.peer, "threads", "https://localhost:\(port)/t",
                    workspace.appendingPathComponent("cert.pem").path, String(count), "20000",
                ]
                .map { "'\($0)'" }.joined(separator: " ") + " >'\(output)'"
            let run = try Harness.run(["--format", "json", "--", "/bin/sh", "-c", client])
            _ = server.wait()
            #expect(run.status == 0, "\(run.standardError)")
            let sent = Set(
                try String(contentsOfFile: output, encoding: .utf8).split(separator: "\n")
                    .compactMap { $0.split(separator: " ").last.map(String.init) })
            #expect(sent.count == count)

            let events = try Harness.dataEvents(run.output)
            let byConnection = Dictionary(grouping: events) { $0.connection ?? -1 }
            #expect(byConnection[-1] == nil, "every event is on a connection")
            #expect(byConnection.count == count)
            var captured = Set<String>()
            for (_, connectionEvents) in byConnection {
                let out = connectionEvents.joined(direction: "out")
                let headerEnd = try #require(out.firstRange(of: Array("\r\n\r\n".utf8)))
                let digest = sha256Hex(Array(out[headerEnd.upperBound...]))
                captured.insert(digest)
                // The answer on this connection is about this connection's body.
                #expect(
                    String(decoding: connectionEvents.joined(direction: "in"), as: UTF8.self)
                        .hasSuffix("got \(digest)\n"))
                #expect(Set(connectionEvents.map(\.remote)) == ["127.0.0.1:\(port)"])
            }
            #expect(captured == sent)
        }

        /// A connection's close is told when its process closes it, however
        /// the connection ended: after the server reset it, after a
        /// shutdown(SHUT_WR), while still open; and at exit for the last.
        /// Each close event comes within 0.2 s of the time the client
        /// printed right before its close(), not later (at the next use of
        /// the fd number, 0.6 s on).
        @Test func eachCloseIsToldWhenItHappens() throws {
            let workspace = try Harness.makeWorkspace()
            defer { try? FileManager.default.removeItem(at: workspace) }
            let (server, port) = try Harness.startPythonServer(in: workspace, requests: 4)
            let output = workspace.appendingPathComponent("closes.out").path
            let client =
                [
                    Harness.python, Harness.peer, "closes", "https://localhost:\(port)/",
                    workspace.appendingPathComponent("cert.pem").path,
                ]
                .map { "'\($0)'" }.joined(separator: " ") + " >'\(output)'"
            let run = try Harness.run(["--format", "json", "--", "/bin/sh", "-c", client])
            _ = server.wait()
            #expect(run.status == 0, "\(run.standardError)")
            let printed = try String(contentsOfFile: output, encoding: .utf8).split(separator: "\n")
            #expect(printed.filter { $0.hasPrefix("got ") }.count == 4, "\(printed)")
            let closedAt = Dictionary(
                printed.compactMap { line -> (String, Int)? in
                    let fields = line.split(separator: " ")
                    guard fields.count == 3, fields[0] == "closed", let time = Int(fields[2]) else { return nil }
                    return (String(fields[1]), time)
                }, uniquingKeysWith: { first, _ in first })
            #expect(closedAt.keys.sorted() == ["/close", "/reset", "/shutdown"])

            let requests = try Harness.dataEvents(run.output).filter { $0.direction == "out" }
            let pathOf = Dictionary(
                requests.compactMap { event -> (Int, String)? in
                    let words = String(decoding: event.payload, as: UTF8.self).split(separator: " ")
                    guard let connection = event.connection, words.first == "GET", words.count > 1 else { return nil }
                    return (connection, String(words[1]))
                }, uniquingKeysWith: { first, _ in first })
            #expect(Set(pathOf.values) == ["/reset", "/shutdown", "/close", "/exit"], "\(pathOf)")
            let records = try Harness.records(run.output)
            for (connection, path) in pathOf {
                let close = records.first { $0["event"] as? String == "close" && $0["conn"] as? Int == connection }
                let told = close?["time_ns"] as? Int
                #expect(told != nil, "\(path): no close event")
                if let told, let closed = closedAt[path] {
                    #expect(abs(told - closed) < 200_000_000, "\(path): closed at \(closed), told at \(told)")
                }
            }
        }

        /// A connection opened before tlstap started is named when first used,
        /// each end with its role, though both ends are gone when tlstap
        /// renders it (the server's listener with them).
        @Test func aConnectionOpenedBeforeTlstapIsNamedMidStream() throws {
            let workspace = try Harness.makeWorkspace()
            defer { try? FileManager.default.removeItem(at: workspace) }
            let (server, port) = try Harness.startPythonServer(in: workspace)
            let go = workspace.appendingPathComponent("go").path
            let client = try LaunchedProgram([
                Harness.python, Harness.peer, "late", "https://localhost:\(port)/late",
                workspace.appendingPathComponent("cert.pem").path, go,
            ])
            for _ in 0..<200 where !String(decoding: client.standardOutputBytes, as: UTF8.self).contains("connected") {
                usleep(50_000)
            }
            let tracer = try LaunchedProgram([
                Harness.tlstap, "--format", "json", "-p",
                String(client.process.processIdentifier), String(server.process.processIdentifier),
            ])
            #expect(tracer.waitForStandardError(containing: "press Ctrl-C"), "\(tracer.standardError)")
            _ = FileManager.default.createFile(atPath: go, contents: nil)
            let finished = client.wait()
            _ = server.wait()
            #expect(finished.standardOutput.hasPrefix("connected\ngot "))
            let run = Harness.stop(tracer)
            #expect(run.status == 0, "\(run.standardError)")
            let records = try Harness.records(run.output)
            let opens = records.filter { $0["event"] as? String == "open" }
            let clientOpen = try #require(opens.first { $0["pid"] as? Int == Int(client.process.processIdentifier) })
            let serverOpen = try #require(opens.first { $0["pid"] as? Int == Int(server.process.processIdentifier) })
            #expect(opens.count == 2, "\(opens)")
            #expect(clientOpen["seen_from"] as? String == "mid" && serverOpen["seen_from"] as? String == "mid")
            #expect(clientOpen["role"] as? String == "client")
            #expect(clientOpen["remote"] as? String == "127.0.0.1:\(port)")
            #expect(serverOpen["role"] as? String == "server")
            #expect(serverOpen["local"] as? String == "127.0.0.1:\(port)")
            // The server's read of the request was under way when tlstap
            // started, so only its answer can be seen; the client's whole call.
            let events = try Harness.dataEvents(run.output)
            let clientEvents = events.filter { $0.connection == clientOpen["conn"] as? Int }
            let serverEvents = events.filter { $0.connection == serverOpen["conn"] as? Int }
            #expect(clientEvents.count + serverEvents.count == events.count)
            #expect(
                String(decoding: clientEvents.joined(direction: "out"), as: UTF8.self).hasPrefix(
                    "GET /late HTTP/1.1\r\n"))
            let answer = serverEvents.joined(direction: "out")
            #expect(String(decoding: answer, as: UTF8.self).hasPrefix("HTTP/1.1 200 OK\r\n"))
            #expect(answer == clientEvents.joined(direction: "in"))
        }

        /// --port keeps only the connections with that port, decided in the kernel.
        @Test func portFilterKeepsOnlyThatPort() throws {
            let workspace = try Harness.makeWorkspace()
            defer { try? FileManager.default.removeItem(at: workspace) }
            let (first, firstPort) = try Harness.startPythonServer(in: workspace)
            let (second, secondPort) = try Harness.startPythonServer(in: workspace)
            let script = [firstPort, secondPort].map { port in
                Harness.pythonClient(port: port, workspace: workspace, size: 100, seed: port)
                    .map { "'\($0)'" }.joined(separator: " ") + " >/dev/null"
            }.joined(separator: "; ")
            let run = try Harness.run(["--format", "json", "--port", String(secondPort), "--", "/bin/sh", "-c", script])
            _ = first.wait()
            _ = second.wait()
            #expect(run.status == 0, "\(run.standardError)")
            let events = try Harness.dataEvents(run.output)
            #expect(!events.isEmpty)
            #expect(events.allSatisfy { $0.remote == "127.0.0.1:\(secondPort)" })
        }
    }
}

extension EndToEnd.ConnectionTests {
    /// --plaintext: a plain HTTP exchange is captured from the socket
    /// syscalls, while a TLS connection in the same run shows no ciphertext.
    @Test func plaintextCapturesPlainSocketsAndNeverCiphertext() throws {
        let workspace = try Harness.makeWorkspace()
        defer { try? FileManager.default.removeItem(at: workspace) }
        try "plain hello\n".write(to: workspace.appendingPathComponent("hello.txt"), atomically: true, encoding: .utf8)
        let plainServer = try LaunchedProgram([
            Harness.python, "-u", "-m", "http.server", "--bind", "127.0.0.1", "--directory", workspace.path, "0",
        ])
        // SIGKILL: children of the test runner start with every signal blocked.
        defer {
            plainServer.signal(SIGKILL)
            _ = plainServer.wait()
        }
        var plainPort = 0
        for _ in 0..<200 where plainPort == 0 {
            let text = String(decoding: plainServer.standardOutputBytes, as: UTF8.self)
            plainPort = text.firstMatch(of: /port (\d+)/).flatMap { Int($0.1) } ?? 0
            usleep(50_000)
        }
        try #require(plainPort != 0, "http.server did not start")
        let (tlsServer, tlsPort) = try Harness.startPythonServer(in: workspace)
        let script =
            "curl -sS http://127.0.0.1:\(plainPort)/hello.txt -o /dev/null; "
            + Harness.pythonClientScript(port: tlsPort, workspace: workspace, size: 300, seed: 4)
        let run = try Harness.run(["--format", "json", "--plaintext", "--", "/bin/sh", "-c", script])
        _ = tlsServer.wait()
        #expect(run.status == 0, "\(run.standardError)")
        let events = try Harness.dataEvents(run.output)
        let plain = events.filter { $0.remote == "127.0.0.1:\(plainPort)" }
        let tls = events.filter { $0.remote == "127.0.0.1:\(tlsPort)" }
        #expect(plain.allSatisfy { $0.lib == "socket" && $0.comm == "curl" })
        #expect(
            String(decoding: plain.joined(direction: "out"), as: UTF8.self)
                == "GET /hello.txt HTTP/1.1\r\nHost: 127.0.0.1:\(plainPort)\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n"
        )
        let response = String(decoding: plain.joined(direction: "in"), as: UTF8.self)
        #expect(response.hasPrefix("HTTP/1.0 200 OK\r\n"))
        #expect(response.hasSuffix("\r\n\r\nplain hello\n"))
        #expect(!tls.isEmpty)
        #expect(tls.allSatisfy { $0.lib == "openssl" }, "no ciphertext from the TLS socket's syscalls")
        #expect(events.count == plain.count + tls.count)
    }
}
