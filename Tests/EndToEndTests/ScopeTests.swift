import Foundation
import TestSupport
import Testing

extension EndToEnd {
    /// Which processes a scope takes in, and from which instruction: the
    /// children a service forks (`-p`), and programs exec'd after tlstap
    /// started, whose probes must be in place before they run.
    @Suite struct ScopeTests {
        /// A Go client exec'd through a shell (`sh -c 'exec …'`, as wrapper
        /// scripts, `go run` and `make run` do) is a program tlstap has not
        /// seen when it starts. The kernel stops it at exec until its
        /// probes are in place, so its first bytes, the HTTP/2 preface, are
        /// captured and every one of its 40 requests is an exchange.
        @Test func aGoProgramExecdThroughAShellIsCapturedFromItsFirstByte() throws {
            let workspace = try Harness.makeWorkspace()
            defer { try? FileManager.default.removeItem(at: workspace) }
            let binary = try Harness.buildGoPeer(in: workspace)
            let cert = workspace.appendingPathComponent("cert.pem").path
            let portFile = workspace.appendingPathComponent("port").path
            let server = try LaunchedProgram([
                binary, "h2server", cert, workspace.appendingPathComponent("key.pem").path,
                portFile,
            ])
            defer {
                server.signal(SIGKILL)
                _ = server.wait()
            }
            let port = try #require(Self.port(in: portFile), "the Go server did not start: \(server.standardError)")
            // A copy: a file of its own, seen for the first time after tlstap started.
            let client = workspace.appendingPathComponent("goclient").path
            try FileManager.default.copyItem(atPath: binary, toPath: client)

            let run = try Harness.run([
                "--format", "json", "--events", "http", "--", "/bin/sh", "-c",
                "exec '\(client)' h2client https://localhost:\(port)/item '\(cert)' 40",
            ])
            #expect(run.status == 0, "\(run.standardError)")
            let exchanges = try Harness.records(run.output)
            #expect(exchanges.count == 40, "\(run.standardError)")
            #expect(exchanges.map { $0["path"] as? String } == (0..<40).map { "/item/\($0)" })
            #expect(
                exchanges.allSatisfy {
                    $0["protocol"] as? String == "HTTP/2" && $0["status"] as? Int == 200
                        && $0["comm"] as? String == "goclient"
                })
        }

        /// `-p` takes several PIDs after one flag, as `-p $(pidof …)` gives
        /// them, or as a comma list; `--quiet` leaves stdout empty, and
        /// `--events` narrows the `--write` file too.
        @Test(arguments: [false, true])
        func pidTakesSeveralProcessesAndQuietWritesOnlyTheFile(commaList: Bool) throws {
            let workspace = try Harness.makeWorkspace()
            defer { try? FileManager.default.removeItem(at: workspace) }
            let (first, firstPort) = try Harness.startPythonServer(in: workspace)
            let (second, secondPort) = try Harness.startPythonServer(in: workspace)
            defer {
                for server in [first, second] {
                    server.signal(SIGKILL)
                    _ = server.wait()
                }
            }
            let pids = [first.process.processIdentifier, second.process.processIdentifier]
            let file = workspace.appendingPathComponent("out.jsonl").path
            let scope = commaList ? ["-p", "\(pids[0]),\(pids[1])"] : ["-p", "\(pids[0])", "\(pids[1])"]
            let tracer = try LaunchedProgram(
                [Harness.tlstap] + scope + ["--no-children", "--quiet", "--write", file, "--events", "http"])
            #expect(tracer.waitForStandardError(containing: "press Ctrl-C"), "\(tracer.standardError)")
            for (port, seed) in [(firstPort, 1), (secondPort, 2)] {
                let client = try runProgram(
                    Harness.pythonClient(port: port, workspace: workspace, size: 300, seed: seed))
                #expect(client.status == 0, "\(client.standardError)")
            }
            _ = first.wait()
            _ = second.wait()
            let run = Harness.stop(tracer)
            #expect(run.status == 0, "\(run.standardError)")
            #expect(run.output.isEmpty, "--quiet: nothing on stdout")
            #expect(run.standardError.contains(", 2 HTTP exchanges"), "\(run.standardError)")
            let records = try Harness.records(Array(try Data(contentsOf: URL(fileURLWithPath: file))))
            #expect(records.map { $0["event"] as? String } == ["http", "http"])
            #expect(Set(records.compactMap { ($0["pid"] as? Int).map(Int32.init) }) == Set(pids))
            #expect(records.allSatisfy { $0["method"] as? String == "POST" && $0["path"] as? String == "/upload" })
        }

        /// `-p` with the PID a service started as (PostgreSQL's postmaster)
        /// traces the backends it forks per connection, which do the TLS:
        /// the query is seen where the server decrypts it. With
        /// `--no-children`, only the postmaster is traced, and it moves no
        /// plaintext.
        @Test(arguments: [false, true])
        func pidFollowsTheBackendsPostgreSQLForks(noChildren: Bool) throws {
            let workspace = try Harness.makeWorkspace()
            defer { try? FileManager.default.removeItem(at: workspace) }
            let postgres = try PostgreSQL(workspace: workspace)
            defer { postgres.stop() }
            let tracer = try LaunchedProgram(
                [Harness.tlstap, "--format", "json", "-p", String(postgres.postmaster)]
                    + (noChildren ? ["--no-children"] : []))
            #expect(tracer.waitForStandardError(containing: "press Ctrl-C"), "\(tracer.standardError)")
            let marker = "tlstap-marker-\(UInt32.random(in: 0...UInt32.max))"
            let query = try postgres.query("SELECT '\(marker)' AS seen")
            #expect(query.status == 0, "psql: \(query.standardError)")
            #expect(query.standardOutput == "\(marker)\n")
            let run = Harness.stop(tracer)
            #expect(run.status == 0, "\(run.standardError)")

            let events = try Harness.dataEvents(run.output)
            if noChildren {
                #expect(events.isEmpty, "\(events.map(\.text))")
                return
            }
            let backend = try #require(
                events.first { $0.direction == "in" && $0.text.contains(marker) },
                "\(events.count) events: \(events.map(\.text))")
            #expect(backend.comm == "postgres" && backend.lib == "openssl" && backend.role == "server")
            #expect(backend.pid != Int(postgres.postmaster), "a backend, not the postmaster")
            // The simple query protocol: 'Q', length, the text, NUL.
            #expect(backend.payload.first == UInt8(ascii: "Q"))
            #expect(backend.text.contains("SELECT '\(marker)' AS seen\u{0}"))
            #expect(events.contains { $0.direction == "out" && $0.pid == backend.pid && $0.text.contains(marker) })
        }

        /// `-p` takes in the children already running when tlstap starts, and
        /// what they exec later: here a child that was forked before tlstap
        /// and execs curl afterwards.
        @Test func pidTakesInChildrenAliveAtTheStartAndWhatTheyExec() throws {
            let workspace = try Harness.makeWorkspace()
            defer { try? FileManager.default.removeItem(at: workspace) }
            let (server, port) = try Harness.startPythonServer(in: workspace)
            defer {
                server.signal(SIGKILL)
                _ = server.wait()
            }
            let go = workspace.appendingPathComponent("go").path
            let cert = workspace.appendingPathComponent("cert.pem").path
            // The parent forks a child that waits for the file, then runs curl; the parent waits for it.
            let script = """
                import os, sys, time
                child = os.fork()
                if child == 0:
                    while not os.path.exists(sys.argv[1]):
                        time.sleep(0.05)
                    os.execv("/usr/bin/curl", ["curl", "-sS", "--cacert", sys.argv[2], sys.argv[3], "-o", "/dev/null"])
                sys.exit(os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]))
                """
            let parent = try LaunchedProgram([
                Harness.python, "-c", script, go, cert, "https://localhost:\(port)/from-a-grandchild",
            ])
            defer {
                parent.signal(SIGKILL)
                _ = parent.wait()
            }
            usleep(300_000)  // the child is forked
            let tracer = try LaunchedProgram([
                Harness.tlstap, "--format", "json", "-p",
                String(parent.process.processIdentifier),
            ])
            #expect(tracer.waitForStandardError(containing: "press Ctrl-C"), "\(tracer.standardError)")
            #expect(FileManager.default.createFile(atPath: go, contents: nil))
            let finished = parent.wait()
            #expect(finished.status == 0, "\(finished.standardError)")
            let run = Harness.stop(tracer)
            #expect(run.status == 0, "\(run.standardError)")
            let events = try Harness.dataEvents(run.output)
            #expect(
                events.first { $0.direction == "out" }?.text.hasPrefix("GET /from-a-grandchild HTTP/1.1\r\n") == true,
                "\(events.map(\.text))")
            #expect(events.allSatisfy { $0.comm == "curl" })
        }

        static func port(in file: String) -> Int? {
            for _ in 0..<200 {
                if let text = try? String(contentsOfFile: file, encoding: .utf8), let port = Int(text) { return port }
                usleep(50_000)
            }
            return nil
        }
    }
}

/// A PostgreSQL server of the test's own, with TLS, on a port of its own
/// on 127.0.0.1: Debian's postgresql package, run as the postgres user
/// (initdb and postgres refuse to run as root).
struct PostgreSQL {
    static let binaries = "/usr/lib/postgresql/15/bin"
    let directory: URL
    let port: Int
    let postmaster: Int32
    /// runuser, whose child is the postmaster.
    let server: LaunchedProgram

    init(workspace: URL) throws {
        directory = workspace.appendingPathComponent("postgres")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        for name in ["cert.pem", "key.pem"] {
            try FileManager.default.copyItem(
                at: workspace.appendingPathComponent(name),
                to: directory.appendingPathComponent(name))
        }
        try FileManager.default.setAttributes(
            [.posixPermissions: 0o600],
            ofItemAtPath: directory.appendingPathComponent("key.pem").path)
        // The postgres user must reach the workspace: make its path traversable.
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: workspace.path)
        let chown = try runProgram(["/bin/chown", "-R", "postgres:postgres", directory.path])
        try #require(chown.status == 0, "chown: \(chown.standardError)")
        let data = directory.appendingPathComponent("data").path
        let initdb = try Self.asPostgres("\(Self.binaries)/initdb -D '\(data)' -A trust -U postgres")
        try #require(initdb.status == 0, "initdb: \(initdb.standardError)")
        // A port below the kernel's ephemeral range (32768 on): a random one in it was once a client's already.
        // Another process may still hold the one picked: then postgres exits at once, and another is tried.
        var started: (port: Int, postmaster: Int32, server: LaunchedProgram)?
        var failures: [String] = []
        for _ in 0..<5 where started == nil {
            let port = Int.random(in: 20_000...32_000)
            let server = try LaunchedProgram([
                "/usr/sbin/runuser", "-u", "postgres", "--", "\(Self.binaries)/postgres", "-D", data, "-k",
                directory.path, "-p", String(port), "-c", "listen_addresses=127.0.0.1", "-c", "ssl=on",
                "-c", "ssl_cert_file=\(directory.path)/cert.pem", "-c", "ssl_key_file=\(directory.path)/key.pem",
            ])
            for _ in 0..<100 where server.process.isRunning {
                let ready = try runProgram(["\(Self.binaries)/pg_isready", "-h", "127.0.0.1", "-p", String(port)])
                if ready.status == 0, let text = try? String(contentsOfFile: "\(data)/postmaster.pid", encoding: .utf8),
                    let pid = text.split(separator: "\n").first.flatMap({ Int32($0) })
                {
                    started = (port, pid, server)
                    break
                }
                usleep(100_000)
            }
            if started == nil {
                failures.append(server.standardError)
                server.signal(SIGKILL)
                _ = server.wait()
            }
        }
        let running = try #require(started, "PostgreSQL did not start: \(failures.joined(separator: "\n---\n"))")
        (port, postmaster, server) = running
    }

    /// Runs `psql` over TLS (sslmode=require) with one query, unaligned and without headers.
    func query(_ sql: String) throws -> ProgramResult {
        try runProgram([
            "/usr/bin/psql", "host=127.0.0.1 port=\(port) sslmode=require user=postgres dbname=postgres", "-Atc", sql,
        ])
    }

    func stop() {
        kill(postmaster, SIGTERM)  // a smart shutdown: the sessions are over
        _ = server.wait()
    }

    static func asPostgres(_ command: String) throws -> ProgramResult {
        try runProgram(["/usr/sbin/runuser", "-u", "postgres", "--", "/bin/sh", "-c", command])
    }
}
