import Foundation
import TestSupport
import Testing

extension EndToEnd {
    /// TLS stacks other than OpenSSL's libssl.
    @Suite struct StackTests {
        /// wget uses GnuTLS: gnutls_record_send/recv, request and response byte-exact.
        @Test func wgetThroughGnuTLSIsCapturedByteExact() throws {
            let workspace = try Harness.makeWorkspace()
            defer { try? FileManager.default.removeItem(at: workspace) }
            let (server, port) = try Harness.startPythonServer(in: workspace)
            let output = workspace.appendingPathComponent("wget.out").path
            let run = try Harness.run([
                "--format", "json", "--", "/usr/bin/wget", "-q", "--ca-certificate",
                workspace.appendingPathComponent("cert.pem").path, "-O", output, "https://localhost:\(port)/via-gnutls",
            ])
            _ = server.wait()
            #expect(run.status == 0, "\(run.standardError)")
            let events = try Harness.dataEvents(run.output)
            #expect(!events.isEmpty)
            #expect(events.allSatisfy { $0.lib == "gnutls" && $0.comm == "wget" })
            #expect(Set(events.map(\.function)) == ["gnutls_record_send", "gnutls_record_recv"])
            #expect(events.allSatisfy { $0.remote == "127.0.0.1:\(port)" && $0.role == "client" })
            let request = String(decoding: events.joined(direction: "out"), as: UTF8.self)
            #expect(request.hasPrefix("GET /via-gnutls HTTP/1.1\r\n"))
            #expect(request.contains("\r\nHost: localhost:\(port)\r\n"))
            #expect(request.hasSuffix("\r\n\r\n"))
            let body = try String(contentsOfFile: output, encoding: .utf8)
            // The SHA-256 of nothing.
            #expect(body == "got e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n")
            #expect(String(decoding: events.joined(direction: "in"), as: UTF8.self).hasSuffix("\r\n\r\n" + body))
        }
    }
}

extension EndToEnd.StackTests {
    /// NSS's own test client (tstclnt, from Debian's libnss3-tools) moves
    /// plaintext with NSPR's PR_Send/PR_Recv on its SSL-layered socket, and
    /// its stdin and stdout with PR_Read/PR_Write on plain fds: only the
    /// socket's bytes are captured, byte-exact, with the connection.
    @Test func tstclntThroughNSSIsCapturedAndItsPlainFdsAreNot() throws {
        let workspace = try Harness.makeWorkspace()
        defer { try? FileManager.default.removeItem(at: workspace) }
        let database = "sql:" + workspace.appendingPathComponent("nssdb").path
        try FileManager.default.createDirectory(
            at: workspace.appendingPathComponent("nssdb"), withIntermediateDirectories: false)
        for arguments in [
            ["-N", "-d", database, "--empty-password"],
            [
                "-A", "-d", database, "-n", "localhost", "-t", "CT,,", "-i",
                workspace.appendingPathComponent("cert.pem").path,
            ],
        ] {
            let made = try runProgram(["/usr/bin/certutil"] + arguments)
            try #require(made.status == 0, "certutil: \(made.standardError)")
        }
        let (server, port) = try Harness.startPythonServer(in: workspace)
        let request = "GET /via-nss HTTP/1.1\r\nHost: localhost:\(port)\r\nConnection: close\r\n\r\n"
        let requestFile = workspace.appendingPathComponent("request.txt")
        try Data(request.utf8).write(to: requestFile)
        let script =
            "/usr/bin/tstclnt -d '\(database)' -4 -h localhost -p \(port) -A '\(requestFile.path)' "
            + "</dev/null >'\(workspace.path)/tstclnt.out'"
        let run = try Harness.run(["--format", "json", "--", "/bin/sh", "-c", script])
        _ = server.wait()
        #expect(run.status == 0, "\(run.standardError)")
        let events = try Harness.dataEvents(run.output)
        #expect(events.allSatisfy { $0.lib == "nss" && $0.comm == "tstclnt" })
        #expect(Set(events.map(\.function)) == ["PR_Send", "PR_Recv"], "stdin and stdout are not TLS")
        #expect(events.allSatisfy { $0.remote == "127.0.0.1:\(port)" && $0.role == "client" })
        #expect(events.joined(direction: "out") == Array(request.utf8))
        let printed = try String(contentsOfFile: workspace.appendingPathComponent("tstclnt.out").path, encoding: .utf8)
        #expect(printed.hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(printed.hasSuffix("\r\n\r\ngot e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"))
        #expect(events.joined(direction: "in") == Array(printed.utf8))
    }

    /// node carries OpenSSL inside its executable: tlstap finds SSL_write and
    /// SSL_read in its symbols and attaches there before the command starts.
    /// node feeds OpenSSL through memory BIOs and writes the socket itself,
    /// after each call: the connection is still named on every event.
    @Test func nodeWithOpenSSLInsideItsExecutableIsCaptured() throws {
        let node = try #require(ChildProcessPath.resolve("node"), "node is part of this machine's image")
        let workspace = try Harness.makeWorkspace()
        defer { try? FileManager.default.removeItem(at: workspace) }
        let (server, port) = try Harness.startPythonServer(in: workspace)
        let script =
            "require('https').get({host: 'localhost', port: \(port), "
            + "path: '/from-node', ca: require('fs').readFileSync('\(workspace.path)/cert.pem')}, "
            + "r => { let body = ''; r.on('data', d => body += d); r.on('end', () => require('fs').writeFileSync('\(workspace.path)/node.out', body)) })"
        let run = try Harness.run(["--format", "json", "--", node, "-e", script])
        _ = server.wait()
        #expect(run.status == 0, "\(run.standardError)")
        let events = try Harness.dataEvents(run.output)
        #expect(events.allSatisfy { $0.lib == "openssl" && $0.comm == "node" })
        #expect(
            events.allSatisfy { $0.remote == "127.0.0.1:\(port)" && $0.role == "client" && $0.fd >= 0 },
            "\(events.map { "\($0.function) fd=\($0.fd) \($0.remote ?? "-")" })")
        #expect(
            String(decoding: events.joined(direction: "out"), as: UTF8.self).hasPrefix("GET /from-node HTTP/1.1\r\n"))
        let body = try String(contentsOfFile: workspace.appendingPathComponent("node.out").path, encoding: .utf8)
        #expect(body.hasPrefix("got "))
        #expect(String(decoding: events.joined(direction: "in"), as: UTF8.self).hasSuffix(body))
    }
}

/// PATH lookup for the tests.
enum ChildProcessPath {
    static func resolve(_ program: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/\(program)" }.first {
            FileManager.default.isExecutableFile(atPath: $0)
        }
    }
}

extension EndToEnd.StackTests {
    /// A Go client and server (crypto/tls compiled in, built here with
    /// Debian's Go), traced by command name: tlstap finds the running
    /// server's executable and probes it for every process, so the client
    /// started afterwards from the same file is traced from its first
    /// instruction. Both directions byte-exact, with connection addresses,
    /// and both Go programs exit normally. A stripped executable (no
    /// symbol table) is found through Go's own function table.
    @Test(arguments: [false, true])
    func goClientAndServerAreCapturedAtReturnSites(stripped: Bool) throws {
        let workspace = try Harness.makeWorkspace()
        defer { try? FileManager.default.removeItem(at: workspace) }
        let binary = try Harness.buildGoPeer(in: workspace, stripped: stripped)
        if stripped {
            let symbols = try runProgram(["/usr/bin/readelf", "-S", "-W", binary])
            try #require(symbols.status == 0 && !symbols.standardOutput.contains(".symtab"), "the build is stripped")
        }

        let portFile = workspace.appendingPathComponent("go-port").path
        let server = try LaunchedProgram([
            binary, "server", workspace.appendingPathComponent("cert.pem").path,
            workspace.appendingPathComponent("key.pem").path, portFile,
        ])
        var port = 0
        for _ in 0..<200 where port == 0 {
            port = (try? String(contentsOfFile: portFile, encoding: .utf8)).flatMap { Int($0) } ?? 0
            usleep(50_000)
        }
        try #require(port != 0, "the Go server did not start: \(server.standardError)")
        // "gotls" is this test's own program name: nothing else on the host has it.
        let tracer = try LaunchedProgram([Harness.tlstap, "--format", "json", "-c", "gotls"])
        #expect(tracer.waitForStandardError(containing: "press Ctrl-C"), "\(tracer.standardError)")
        let launched = try LaunchedProgram([
            binary, "client", "https://localhost:\(port)/go-path",
            workspace.appendingPathComponent("cert.pem").path, "hello from go",
        ])
        let clientPID = Int(launched.process.processIdentifier)
        let client = launched.wait()
        let serverResult = server.wait()
        let run = Harness.stop(tracer)

        #expect(run.status == 0, "\(run.standardError)")
        #expect(client.status == 0, "the client exits normally: \(client.standardError)")
        #expect(serverResult.status == 0, "the server exits normally: \(serverResult.standardError)")
        #expect(client.standardError == "go got POST /go-path 13\n")
        let events = try Harness.dataEvents(run.output)
        let serverPID = Int(server.process.processIdentifier)
        // By PID: the name alone is this test's, but the same test may run beside it.
        let clientEvents = events.filter { $0.pid == clientPID }
        let serverEvents = events.filter { $0.pid == serverPID }
        for events in [clientEvents, serverEvents] {
            #expect(!events.isEmpty)
            #expect(events.allSatisfy { $0.lib == "go" && $0.comm == "gotls" })
        }
        // The request as the server read it, byte-exact.
        let request = String(decoding: serverEvents.joined(direction: "in"), as: UTF8.self)
        #expect(request.hasPrefix("POST /go-path HTTP/1.1\r\nHost: localhost:\(port)\r\n"))
        #expect(request.hasSuffix("\r\n\r\nhello from go"))
        // The client's request is sent by the transport's writeLoop
        // goroutine, which may never reach Write's RET before main returns:
        // it is captured when its record goes out.
        #expect(clientEvents.joined(direction: "out") == serverEvents.joined(direction: "in"))
        #expect(serverEvents.joined(direction: "out") == clientEvents.joined(direction: "in"))
        #expect(
            String(decoding: clientEvents.joined(direction: "in"), as: UTF8.self).hasSuffix(
                "\r\n\r\ngo got POST /go-path 13\n"))
        #expect(clientEvents.allSatisfy { $0.remote == "127.0.0.1:\(port)" && $0.role == "client" })
        // A Go server's first Read can be served from bytes its handshake
        // already read, so no syscall of the Read names the fd: the
        // handshake's own syscalls did.
        #expect(serverEvents.contains { $0.function == "crypto/tls.(*Conn).Write" })
        #expect(
            serverEvents.allSatisfy { $0.fd >= 0 && $0.local == "127.0.0.1:\(port)" && $0.role == "server" },
            "\(serverEvents.map { "\($0.function) fd=\($0.fd) \($0.local ?? "-") \($0.role ?? "-")" })")
        #expect(Set((clientEvents + serverEvents).compactMap(\.connection)).count == 2)
    }
}

extension EndToEnd.StackTests {
    /// A Go Write is sent where its records start out, before any byte of
    /// it reaches the socket: sent after its bytes went out, it could
    /// follow the peer's answer, read meanwhile by another goroutine (an
    /// HTTP/2 client's response before its request). Through a net.Conn
    /// that waits a second before each socket write, every Write, the
    /// first after the handshake too, is reported on its socket within half
    /// a second of its start, not after the wait.
    @Test func aGoWriteIsSentBeforeItsBytesReachTheSocket() throws {
        let workspace = try Harness.makeWorkspace()
        defer { try? FileManager.default.removeItem(at: workspace) }
        let binary = try Harness.buildGoPeer(in: workspace)
        let portFile = workspace.appendingPathComponent("port").path
        let (server, port) = try EndToEnd.AttributionTests.startServer(
            [
                binary, "sink", workspace.appendingPathComponent("cert.pem").path,
                workspace.appendingPathComponent("key.pem").path, portFile,
            ], portFile: portFile)
        defer {
            server.signal(SIGKILL)
            _ = server.wait()
        }
        let timesFile = workspace.appendingPathComponent("times").path
        let count = 3
        let delay: UInt64 = 1_000_000_000
        let run = try Harness.run([
            "--format", "json", "--", binary, "slowwriter", String(port), String(count), String(delay / 1_000_000),
            timesFile,
        ])
        #expect(run.status == 0, "\(run.standardError)")
        let times = try String(contentsOfFile: timesFile, encoding: .utf8).split(separator: "\n").map {
            $0.split(separator: " ").compactMap { UInt64($0) }
        }
        try #require(times.count == count && times.allSatisfy { $0.count == 2 }, "\(times)")

        let writes = try Harness.dataEvents(run.output).filter { $0.direction == "out" }
        #expect(writes.map { String(decoding: $0.payload, as: UTF8.self) } == (0..<count).map { "slow-write-\($0)" })
        #expect(
            writes.allSatisfy {
                $0.lib == "go" && $0.function == "crypto/tls.(*Conn).Write" && $0.remote == "127.0.0.1:\(port)"
            }, "\(writes.map { "\($0.function) on \($0.remote ?? "no socket")" })")
        for (write, span) in zip(writes, times) {
            let (start, end) = (span[0], span[1])
            #expect(end - start >= delay, "the connection waited before writing")
            // 50 ms of slack for tlstap's mapping of boot time to wall time.
            #expect(
                write.timeNanoseconds + 50_000_000 >= start && write.timeNanoseconds < start + delay / 2,
                "sent \(Int64(write.timeNanoseconds) - Int64(start)) ns after the Write started")
        }
    }
}

extension EndToEnd.StackTests {
    /// A library built for CET (every function begins with endbr64, which
    /// the kernel would single-step on every hit): the probes go on the
    /// instruction after it, and the calls are still captured byte-exact.
    @Test func aCETBuildIsProbedPastEndbr64() throws {
        let clang = try #require(ChildProcessPath.resolve("clang"), "clang comes with the Swift toolchain")
        let workspace = try Harness.makeWorkspace()
        defer { try? FileManager.default.removeItem(at: workspace) }
        let binary = workspace.appendingPathComponent("cet_ssl").path
        let source = Harness.packageRoot.appendingPathComponent("Tests/EndToEndTests/Peers/cet_ssl.c").path
        let built = try runProgram([clang, "-O0", "-fcf-protection=full", "-o", binary, source])
        try #require(built.status == 0, "clang: \(built.standardError)")
        let go = workspace.appendingPathComponent("go").path
        let program = try LaunchedProgram([binary, go])
        try #require(program.waitForStandardError(containing: "ready"), "\(program.standardError)")
        let pid = program.process.processIdentifier

        let check = try runProgram([Harness.tlstap, "check", "-p", "\(pid)"])
        let lines = check.standardOutput.split(separator: "\n")
        for name in ["SSL_write", "SSL_read"] {
            #expect(
                lines.contains {
                    $0.contains("\(name) @ 0x") && $0.hasSuffix("(entry, past its endbr64 and uretprobe)")
                },
                "\(check.standardOutput)")
        }
        let tracer = try LaunchedProgram([Harness.tlstap, "--format", "json", "-p", "\(pid)"])
        #expect(tracer.waitForStandardError(containing: "press Ctrl-C"), "\(tracer.standardError)")
        try #require(FileManager.default.createFile(atPath: go, contents: nil))
        let result = program.wait()
        let run = Harness.stop(tracer)

        #expect(result.status == 0, "\(result.standardError)")
        #expect(run.status == 0, "\(run.standardError)")
        let events = try Harness.dataEvents(run.output)
        #expect(
            events.map { "\($0.function) \($0.direction) \($0.text)" }
                == ["SSL_write out through endbr64", "SSL_read in through endbr64"])
        #expect(events.allSatisfy { $0.lib == "openssl" && $0.fd >= 0 })
    }
}

/// TLS tlstap cannot probe is said, never a silent "0 events": once per
/// process as it happens, in the summary, and by `tlstap check -p`.
extension EndToEnd.StackTests {
    static let grpcioPython = "/opt/tlstap-test-venv/bin/python"  // scripts/bootstrap --test makes it
    static let javaClient = Harness.packageRoot.appendingPathComponent("Tests/EndToEndTests/Peers/JavaClient.java").path
    static let grpcioPeer = Harness.packageRoot.appendingPathComponent("Tests/EndToEndTests/Peers/grpcio_peer.py").path

    /// The lines a run must end its standard error with, for a process that spoke TLS tlstap cannot probe.
    static func unprobedLines(_ process: String, remote: String, stack: String) -> String {
        "tlstap: warning: \(process) speaks TLS to \(remote) from code tlstap cannot probe (\(stack)): not captured\n"
            + "tlstap: 0 events, 0 bytes captured, 0 records lost (0 bytes); "
            + "not captured: TLS from code tlstap cannot probe in \(process)\n"
    }

    /// Java 17's HttpClient (JSSE) against nginx.
    @Test func aJavaProgramsTLSIsNamedAsOneTlstapCannotProbe() throws {
        let workspace = try Harness.makeWorkspace()
        defer { try? FileManager.default.removeItem(at: workspace) }
        let nginx = try Nginx(workspace: workspace)
        defer { nginx.stop() }
        try "hello\n".write(to: workspace.appendingPathComponent("www/a.txt"), atomically: true, encoding: .utf8)
        let url = "https://localhost:\(nginx.port)/a.txt"
        let run = try Harness.run(["--", "/usr/bin/java", Self.javaClient, url])
        #expect(run.status == 0, "\(run.standardError)")
        #expect(String(decoding: run.output, as: UTF8.self) == "200 6\n200 6\n200 6\n")
        let pid = try #require(run.standardError.firstMatch(of: /java\[(\d+)\]/)?.1)
        #expect(
            run.standardError.hasSuffix(
                Self.unprobedLines(
                    "java[\(pid)]", remote: "[::ffff:127.0.0.1]:\(nginx.port)", stack: "Java's own TLS, JSSE")),
            "\(run.standardError)")

        // check -p names it while the program runs.
        let hold = workspace.appendingPathComponent("hold").path
        let java = try LaunchedProgram(["/usr/bin/java", Self.javaClient, url, hold])
        defer {
            java.signal(SIGKILL)
            _ = java.wait()
        }
        for _ in 0..<200 where java.standardOutputBytes.count < 18 { usleep(50_000) }
        let check = try runProgram([Harness.tlstap, "check", "-p", String(java.process.processIdentifier)])
        #expect(
            check.standardOutput.contains(
                "  cannot probe  Java's own TLS, JSSE  /usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so  "
                    + "(TLS through it is not captured)\n"), "\(check.standardOutput)")
        _ = FileManager.default.createFile(atPath: hold, contents: nil)
    }

    /// A grpcio client (its PyPI wheel builds BoringSSL in, without symbols) calling a grpcio server.
    @Test func aGrpcioProgramsTLSIsNamedAsOneTlstapCannotProbe() throws {
        let workspace = try Harness.makeWorkspace()
        defer { try? FileManager.default.removeItem(at: workspace) }
        let portFile = workspace.appendingPathComponent("port").path
        let cert = workspace.appendingPathComponent("cert.pem").path
        let server = try LaunchedProgram([
            Self.grpcioPython, Self.grpcioPeer, "server", cert, workspace.appendingPathComponent("key.pem").path,
            portFile,
        ])
        defer {
            server.signal(SIGKILL)
            _ = server.wait()
        }
        var port = 0
        for _ in 0..<200 where port == 0 {
            port = (try? String(contentsOfFile: portFile, encoding: .utf8)).flatMap { Int($0) } ?? 0
            if port == 0 { usleep(50_000) }
        }
        try #require(port != 0, "the grpcio server did not start: \(server.standardError)")
        let run = try Harness.run(["--", Self.grpcioPython, Self.grpcioPeer, "client", cert, String(port), "3"])
        #expect(run.status == 0, "\(run.standardError)")
        #expect(String(decoding: run.output, as: UTF8.self) == "0 olleh\n1 olleh\n2 olleh\n")
        let pid = try #require(run.standardError.firstMatch(of: /python\[(\d+)\]/)?.1)
        let library = "cygrpc.cpython-311-x86_64-linux-gnu.so"
        #expect(
            run.standardError.hasSuffix(
                Self.unprobedLines(
                    "python[\(pid)]", remote: "[::ffff:127.0.0.1]:\(port)",
                    stack: "BoringSSL built into \(library) without symbols")),
            "\(run.standardError)")

        let check = try runProgram([Harness.tlstap, "check", "-p", String(server.process.processIdentifier)])
        #expect(
            check.standardOutput.contains(
                "  cannot probe  BoringSSL built into \(library) without symbols  "
                    + "/opt/tlstap-test-venv/lib/python3.11/site-packages/grpc/_cython/\(library)  "
                    + "(TLS through it is not captured)\n"), "\(check.standardOutput)")
    }
}
