import Foundation
import TestSupport
import Testing

extension EndToEnd {
    /// Faults tlstap must survive without losing or leaking anything.
    @Suite struct FaultTests {
        /// A traced client killed with SIGKILL mid-request: its connection is
        /// closed in the output, with what was captured, and tlstap goes on.
        @Test func aTracedProcessKilledMidRequestHasItsConnectionClosed() throws {
            let workspace = try Harness.makeWorkspace()
            defer { try? FileManager.default.removeItem(at: workspace) }
            let script = """
                cd "$1"
                mkfifo hold
                openssl s_server -naccept 1 -accept 127.0.0.1:0 -cert cert.pem -key key.pem <hold >server.out 2>&1 &
                server=$!
                exec 3>hold  # the server's stdin stays open: it never answers
                until grep -q ACCEPT server.out; do sleep 0.05; done
                port=$(sed -n 's/^ACCEPT .*:\\([0-9]*\\)$/\\1/p' server.out)
                curl -sS --cacert cert.pem "https://localhost:$port/never-answered" -o /dev/null &
                client=$!
                until grep -q never-answered server.out; do sleep 0.05; done
                kill -9 $client
                kill $server
                exec 3>&-
                wait
                exit 0
                """
            let run = try Harness.run(["--format", "json", "--", "/bin/sh", "-c", script, "sh", workspace.path])
            #expect(run.status == 0, "\(run.standardError)")
            let records = try Harness.records(run.output)
            let request = try #require(
                records.first { $0["event"] as? String == "data" && $0["comm"] as? String == "curl" })
            let connection = try #require(request["conn"] as? Int)
            let close = records.first { $0["event"] as? String == "close" && $0["conn"] as? Int == connection }
            #expect(close != nil, "curl's connection is closed in the output")
            #expect(close?["bytes_in"] as? Int == 0)
            #expect((close?["bytes_out"] as? Int ?? 0) > 0)
        }

        /// tlstap killed with SIGKILL: the kernel drops its programs and links,
        /// which live only as long as tlstap's file descriptors.
        @Test func tlstapKilledWithSIGKILLLeavesNothingInTheKernel() throws {
            let workspace = try Harness.makeWorkspace()
            defer { try? FileManager.default.removeItem(at: workspace) }
            let (server, _) = try Harness.startPythonServer(in: workspace)
            defer {
                server.signal(SIGKILL)
                _ = server.wait()
            }
            let tracer = try LaunchedProgram([Harness.tlstap, "-p", String(server.process.processIdentifier)])
            #expect(tracer.waitForStandardError(containing: "press Ctrl-C"), "\(tracer.standardError)")
            let programs = Harness.programIDs(heldBy: tracer.process.processIdentifier)
            #expect(programs.count >= 20)
            tracer.signal(SIGKILL)
            _ = tracer.wait()
            #expect(try Harness.linkedPrograms().isDisjoint(with: programs))
            #expect(try Harness.programsLeft(of: programs).isEmpty)
        }
    }
}

extension EndToEnd.FaultTests {
    /// Traced programs behave as they do untraced: same output on stdout
    /// and stderr, same exit status (curl, Python and a Go program).
    @Test func tracedProgramsPrintAndExitAsTheyDoUntraced() throws {
        let workspace = try Harness.makeWorkspace()
        defer { try? FileManager.default.removeItem(at: workspace) }
        let (server, port) = try Harness.startPythonServer(in: workspace, requests: 6)
        defer {
            server.signal(SIGKILL)
            _ = server.wait()
        }
        let cert = workspace.appendingPathComponent("cert.pem").path
        let programs: [[String]] = [
            ["/usr/bin/curl", "-sS", "--cacert", cert, "-d", "same bytes", "https://localhost:\(port)/curl"],
            Harness.pythonClient(port: port, workspace: workspace, size: 5000, seed: 12),
            [try Harness.buildGoPeer(in: workspace), "client", "https://localhost:\(port)/go", cert, "same bytes"],
        ]
        for program in programs {
            let untraced = try runProgram(program)
            // Traced through --write so that tlstap's own stdout stays out of the comparison.
            let traced = try runProgram(
                [
                    Harness.tlstap, "--write", workspace.appendingPathComponent("events.jsonl").path, "--format",
                    "http",
                    "--",
                ] + program)
            #expect(untraced.status == 0)
            #expect(traced.status == untraced.status, "\(program[0])")
            let tracedOutput = traced.standardOutput.split(separator: "\n").filter { !$0.contains(" → ") }
                .joined(separator: "\n")
            #expect(
                tracedOutput == untraced.standardOutput.split(separator: "\n").joined(separator: "\n"),
                "\(program[0]) prints the same")
            let tracedErrors = traced.standardError.split(separator: "\n", omittingEmptySubsequences: false)
                .filter { !$0.hasPrefix("tlstap: ") }
            #expect(
                tracedErrors == untraced.standardError.split(separator: "\n", omittingEmptySubsequences: false),
                "\(program[0]) prints the same errors")
            let events = try Harness.dataEvents(
                Array(try Data(contentsOf: workspace.appendingPathComponent("events.jsonl"))))
            #expect(!events.isEmpty, "\(program[0]) was traced")
        }
        // A failing program fails the same way.
        let failing = ["/usr/bin/curl", "-sS", "--cacert", cert, "https://localhost:1/nothing-listens"]
        let untraced = try runProgram(failing)
        let traced = try runProgram([Harness.tlstap, "--format", "http", "--"] + failing)
        #expect(untraced.status == 7 && traced.status == 7)
    }
}

extension EndToEnd.FaultTests {
    /// The output's reader stalls (a pipe nobody reads for 3 s, then reads
    /// again): tlstap's rendering blocks on its output while its draining
    /// thread keeps emptying the ring into memory (at most 256 MiB, then it
    /// waits too), whatever could not wait is counted as lost, and
    /// everything ends normally once the reader is back.
    @Test func aStalledReaderCostsCountedLossNotMemoryOrADeadlock() throws {
        let workspace = try Harness.makeWorkspace()
        defer { try? FileManager.default.removeItem(at: workspace) }
        let (server, port) = try Harness.startPythonServer(in: workspace)
        let size = 16 << 20
        let client = Harness.pythonClientScript(port: port, workspace: workspace, size: size, seed: 21)
        let output = workspace.appendingPathComponent("stalled.jsonl").path
        let script =
            "'\(Harness.tlstap)' --format json --ring-buffer-mib 1 -- /bin/sh -c \"\(client)\" "
            + "| (sleep 3; cat >'\(output)'); echo \"status=${PIPESTATUS[0]}\""
        let start = Date()
        let run = try runProgram(["/bin/bash", "-c", script])
        _ = server.wait()
        #expect(run.standardOutput == "status=0\n", "\(run.standardError)")
        #expect(Date().timeIntervalSince(start) < 60)
        let records = try Harness.records(Array(try Data(contentsOf: URL(fileURLWithPath: output))))
        let body = try #require(records.first { $0["len"] as? Int == size })
        let captured = Data(base64Encoded: body["data"] as? String ?? "")?.count ?? -1
        let missing = body["lost_bytes"] as? Int ?? 0
        #expect(captured + missing == size)
        // What the body lost, the kernel counted (it may have counted other records too).
        let counted = records.filter { $0["event"] as? String == "lost" }.compactMap { $0["bytes"] as? Int }.reduce(
            0, +)
        #expect(counted >= missing)
        let summary = try #require(
            run.standardError.split(separator: "\n").last { $0.hasPrefix("tlstap: ") && $0.contains(" events, ") })
        #expect(summary.contains(" records lost (\(counted) bytes)"))
    }
}

extension EndToEnd.FaultTests {
    /// A libssl that traced programs load from their own directory is
    /// replaced on disk while tlstap runs, as a package upgrade does (a new
    /// file renamed over the old one). The program already running keeps
    /// the old file and its probes; the program started afterwards maps the
    /// new file, which tlstap notices when it is mapped and probes too,
    /// after it has dropped, in all its threads, every capability but the
    /// five it needs for that (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN: this
    /// kernel wants it for a uprobe; CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH).
    @Test func aLibraryReplacedOnDiskIsProbedAgainForNewProcesses() throws {
        let workspace = try Harness.makeWorkspace()
        defer { try? FileManager.default.removeItem(at: workspace) }
        let files = FileManager.default
        let libraries = workspace.appendingPathComponent("lib")
        try files.createDirectory(at: libraries, withIntermediateDirectories: false)
        let libssl = libraries.appendingPathComponent("libssl.so.3").path
        let systemLibssl = try #require(LibraryLookup.system("libssl.so.3"))
        try files.copyItem(atPath: systemLibssl, toPath: libssl)
        // A program name of this test's own, so that -c traces nothing else.
        let program = workspace.appendingPathComponent("tlsreplaced").path
        try files.copyItem(atPath: "/usr/bin/openssl", toPath: program)
        let (server, port) = try Harness.startPythonServer(in: workspace, requests: 2)
        defer {
            server.signal(SIGKILL)
            _ = server.wait()
        }
        let tracer = try LaunchedProgram([Harness.tlstap, "--verbose", "--format", "json", "-c", "tlsreplaced"])
        #expect(tracer.waitForStandardError(containing: "press Ctrl-C"), "\(tracer.standardError)")
        let capabilities = Harness.effectiveCapabilities(ofThreadsOf: tracer.process.processIdentifier)
        // BPF, PERFMON, SYS_ADMIN, SYS_PTRACE, KILL, DAC_READ_SEARCH
        let kept: UInt64 = 1 << 39 | 1 << 38 | 1 << 21 | 1 << 19 | 1 << 5 | 1 << 2
        #expect(capabilities.count > 1 && capabilities.allSatisfy { UInt64($0, radix: 16) == kept }, "\(capabilities)")

        /// A client that maps the libssl in `lib`, connects and waits for its request on a FIFO.
        func startClient(_ name: String) throws -> (LaunchedProgram, URL) {
            let fifo = workspace.appendingPathComponent(name + ".fifo")
            #expect(mkfifo(fifo.path, 0o600) == 0)
            let client = try LaunchedProgram([
                "/bin/sh", "-c",
                "LD_LIBRARY_PATH='\(libraries.path)' exec '\(program)' s_client -quiet "
                    + "-connect 127.0.0.1:\(port) 0<>'\(fifo.path)'",
            ])
            let marker = "process \(client.process.processIdentifier) maps \(libssl)"
            #expect(tracer.waitForStandardError(containing: marker), "\(tracer.standardError)")
            return (client, fifo)
        }
        let (before, beforeFIFO) = try startClient("before")
        let replacement = libraries.appendingPathComponent("libssl.so.3.new").path
        try files.copyItem(atPath: systemLibssl, toPath: replacement)
        #expect(rename(replacement, libssl) == 0)
        let (after, afterFIFO) = try startClient("after")

        // Both requests before waiting for either: the server takes the connections in the order they came.
        for (fifo, path) in [(beforeFIFO, "/before"), (afterFIFO, "/after")] {
            let request = "GET \(path) HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
            let handle = try FileHandle(forWritingTo: fifo)
            try handle.write(contentsOf: Data(request.utf8))
            try handle.close()
        }
        // s_client ends (status 1) when the server closes without a close_notify.
        for client in [before, after] { _ = client.wait() }
        tracer.signal(SIGINT)
        let run = tracer.waitForBytes()
        #expect(run.status == 0, "\(run.standardError)")
        let events = try Harness.dataEvents(run.output)
        for (client, path) in [(before, "/before"), (after, "/after")] {
            let own = events.filter { $0.pid == Int(client.process.processIdentifier) }
            #expect(
                String(decoding: own.joined(direction: "out"), as: UTF8.self)
                    == "GET \(path) HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            #expect(
                String(decoding: own.joined(direction: "in"), as: UTF8.self).hasSuffix(
                    "\r\n\r\ngot e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"))
        }
    }
}

/// Where the dynamic loader finds a library on this machine.
enum LibraryLookup {
    static func system(_ soname: String) -> String? {
        ["/usr/lib/x86_64-linux-gnu/", "/lib/x86_64-linux-gnu/", "/usr/lib64/", "/usr/lib/"].map { $0 + soname }
            .first { FileManager.default.fileExists(atPath: $0) }
    }
}

extension EndToEnd.FaultTests {
    /// Ten thousand short-lived TLS processes (`Peers/tls_get.c` on the
    /// system libssl, two at a time, exec'd by a shell): every request is
    /// captured, and once they have exited tlstap holds no more probes or
    /// fds than after the first thousand, its kernel maps hold nothing of
    /// them, and its memory has not grown with them. (A C client, not curl:
    /// curl spent most of its 6.5 ms loading its forty libraries, and this
    /// test was two fifths of the suite's time.) Under emulation
    /// (`TLSTAP_TEST_TIME_SCALE`), where a process takes a hundred times
    /// longer, three thousand: still two thousand after the first thousand.
    @Test func anExecStormLeavesNoGrowthBehind() throws {
        let clang = try #require(ChildProcessPath.resolve("clang"), "clang comes with the Swift toolchain")
        let workspace = try Harness.makeWorkspace()
        defer { try? FileManager.default.removeItem(at: workspace) }
        let client = workspace.appendingPathComponent("tls_get").path
        let source = Harness.packageRoot.appendingPathComponent("Tests/EndToEndTests/Peers/tls_get.c").path
        let built = try runProgram([clang, "-O2", "-o", client, source, "-lssl", "-lcrypto"])
        try #require(built.status == 0, "clang: \(built.standardError)")
        let total = TestTiming.scale > 1 ? 3_000 : 10_000
        let server = try LaunchedProgram([
            "/usr/bin/openssl", "s_server", "-www", "-accept", "127.0.0.1:0", "-naccept", String(total),
            "-cert", workspace.appendingPathComponent("cert.pem").path,
            "-key", workspace.appendingPathComponent("key.pem").path,
        ])
        defer {
            server.signal(SIGKILL)
            _ = server.wait()
        }
        var port = 0
        for _ in 0..<100 where port == 0 {
            let printed = String(decoding: server.standardOutputBytes, as: UTF8.self)
            port =
                printed.split(separator: "\n").first { $0.hasPrefix("ACCEPT ") }
                .flatMap { $0.split(separator: ":").last }.flatMap { Int($0) } ?? 0
            usleep(50_000)
        }
        try #require(port != 0, "s_server did not start: \(server.standardError)")
        // Two loops of clients at a time; marker files hand over to the test between phases.
        let script = """
            cd "$1"
            storm() { i=$1; while [ $i -lt $2 ]; do
                ./tls_get cert.pem "$3" "/storm-$i" || echo "client $i failed" >&2
                i=$((i + 1)); done; }
            storm 0 500 "$2" & storm 500 1000 "$2" & wait
            touch warm; while [ ! -e measured ]; do sleep 0.1; done
            storm 1000 $(($3 / 2 + 500)) "$2" & storm $(($3 / 2 + 500)) "$3" "$2" & wait
            touch stormed; while [ ! -e done ]; do sleep 0.1; done
            """
        let tracer = try LaunchedProgram([
            Harness.tlstap, "--format", "json", "--", "/bin/sh", "-c", script, "sh",
            workspace.path, String(port), String(total),
        ])
        // Ten minutes per phase (a phase takes about two here), stretched under emulation.
        func waitFor(_ marker: String) -> Bool {
            for _ in 0..<Int(6000 * TestTiming.scale) {
                if FileManager.default.fileExists(atPath: workspace.appendingPathComponent(marker).path) { return true }
                usleep(100_000)
            }
            return false
        }
        let pid = tracer.process.processIdentifier
        try #require(waitFor("warm"), "\(tracer.standardError)")
        usleep(300_000)  // the last exits reach tlstap
        let warm = (
            footprint: Harness.footprint(of: pid), links: Harness.fdinfoValues("link_id", heldBy: pid).count,
            maps: try Harness.hashMapEntries(heldBy: pid)
        )
        try Data().write(to: workspace.appendingPathComponent("measured"))
        try #require(waitFor("stormed"), "\(tracer.standardError)")
        usleep(300_000)
        let stormed = (
            footprint: Harness.footprint(of: pid), links: Harness.fdinfoValues("link_id", heldBy: pid).count,
            maps: try Harness.hashMapEntries(heldBy: pid)
        )
        try Data().write(to: workspace.appendingPathComponent("done"))
        let run = tracer.waitForBytes()
        #expect(run.status == 0)
        #expect(!run.standardError.contains("failed"), "\(run.standardError)")

        let requests = try Harness.dataEvents(run.output).filter { $0.direction == "out" }
            .compactMap { String(decoding: $0.payload, as: UTF8.self).split(separator: " ").dropFirst().first }
        #expect(Set(requests).count == total, "every client's request is captured")
        #expect(
            stormed.links == warm.links && stormed.footprint.fds == warm.footprint.fds,
            "links \(warm.links) → \(stormed.links), fds \(warm.footprint.fds) → \(stormed.footprint.fds)")
        // State of processes that are gone: none left (a shell or two may be mid-call).
        for name in ["sockets", "ssl_fds", "tls_calls", "go_calls", "socket_origins", "plain_calls"] {
            #expect(
                (stormed.maps[name] ?? -1) >= 0 && (stormed.maps[name] ?? 0) <= 4,
                "\(name): \(warm.maps[name] ?? -1) entries after 1,000, \(stormed.maps[name] ?? -1) after \(total)")
        }
        #expect(stormed.maps["mapped_files"] == warm.maps["mapped_files"])
        let grownKiB = stormed.footprint.anonymousKiB - warm.footprint.anonymousKiB
        #expect(grownKiB < 4096, "anonymous memory grew by \(grownKiB) KiB over \(total - 1_000) processes")
        print(
            "exec storm: RssAnon \(warm.footprint.anonymousKiB) → \(stormed.footprint.anonymousKiB) KiB, "
                + "RSS \(warm.footprint.rssKiB) → \(stormed.footprint.rssKiB) KiB, maps \(warm.maps) → \(stormed.maps)")
    }
}

extension EndToEnd.FaultTests {
    /// The ring buffer overflows in the middle of a keep-alive connection
    /// (tlstap's reader stalls while 40 responses of 256 KiB go by, with a
    /// 1 MiB ring buffer). Every byte each side moved is accounted for, per
    /// connection and direction: captured, lost inside a call (`lost_bytes`)
    /// or lost as whole calls right before a record (`lost_before`). The
    /// HTTP/1 parsers resume at the next message: the exchange after the
    /// gap is whole and right, and no exchange pairs a request with another
    /// one's response. The pcapng leaves the lost bytes as holes that tshark
    /// reports as segments not captured.
    @Test func aGapInAStreamIsMarkedAndHTTPParsingResumesAfterIt() throws {
        let workspace = try Harness.makeWorkspace()
        defer { try? FileManager.default.removeItem(at: workspace) }
        let (count, size) = (40, 256 << 10)
        let file = { (name: String) in workspace.appendingPathComponent(name).path }
        let peer = Harness.packageRoot.appendingPathComponent("Tests/EndToEndTests/Peers/lossy_keepalive.py").path
        let command = [
            "'\(Harness.python)'", "'\(peer)'", "'\(file("cert.pem"))'", "'\(file("key.pem"))'",
            String(count), String(size), "'\(file("paused"))'", "'\(file("go"))'",
        ].joined(separator: " ")
        let script =
            "'\(Harness.tlstap)' --format json --ring-buffer-mib 1 --pcapng '\(file("gap.pcapng"))' -- "
            + "/bin/sh -c \"\(command) >'\(file("peer.out"))'\" "
            + "| (until [ -e '\(file("paused"))' ]; do sleep 0.05; done; touch '\(file("go"))'; cat >'\(file("gap.jsonl"))'); "
            + "echo \"status=${PIPESTATUS[0]}\""
        let run = try runProgram(["/bin/bash", "-c", script])
        #expect(run.standardOutput == "status=0\n", "\(run.standardError)")
        let totals = try String(contentsOfFile: file("peer.out"), encoding: .utf8).split(separator: " ")
        try #require(totals.count == 4, "peer printed: \(totals)")
        let (requestBytes, responseBytes) = (Int(totals[1]) ?? -1, Int(totals[3].dropLast()) ?? -1)
        let records = try Harness.records(Array(try Data(contentsOf: URL(fileURLWithPath: file("gap.jsonl")))))
        let data = records.filter { $0["event"] as? String == "data" }
        let gaps = data.compactMap { $0["lost_before"] as? Int }
        try #require(!gaps.isEmpty, "the reader's stall lost no whole call: \(run.standardError)")

        // Per connection (the client's and the server's) and direction.
        let roles = Dictionary(
            data.compactMap { record -> (Int, String)? in
                guard let id = record["conn"] as? Int, let role = record["role"] as? String else { return nil }
                return (id, role)
            }, uniquingKeysWith: { first, _ in first })
        #expect(Set(roles.values) == ["client", "server"])
        for (id, role) in roles {
            for direction in ["out", "in"] {
                let own = data.filter { $0["conn"] as? Int == id && $0["dir"] as? String == direction }
                let length = own.compactMap { $0["len"] as? Int }.reduce(0, +)
                let before = own.compactMap { $0["lost_before"] as? Int }.reduce(0, +)
                let inside = own.compactMap { $0["lost_bytes"] as? Int }.reduce(0, +)
                let captured = own.map { Data(base64Encoded: $0["data"] as? String ?? "")?.count ?? -1 }.reduce(0, +)
                let expected = (role == "client") == (direction == "out") ? requestBytes : responseBytes
                #expect(length + before == expected, "\(role) \(direction): \(length) + \(before)")
                #expect(captured + inside == length, "\(role) \(direction)")
            }
        }

        let exchanges = records.filter { $0["event"] as? String == "http" }
        for id in roles.keys {
            let own = exchanges.filter { $0["conn"] as? Int == id }
            let final = own.filter { $0["path"] as? String == "/final" }
            #expect(final.count == 1, "connection \(id): \(own.map { $0["path"] ?? "" })")
            #expect(final.first?["status"] as? Int == 200)
            #expect(final.first?["resp_body_len"] as? Int == 1000)
            #expect(final.first?["note"] == nil)
            // Whole exchanges answer their own request; the rest say what they lost.
            for exchange in own where exchange["note"] == nil {
                let path = exchange["path"] as? String ?? ""
                #expect(path.hasPrefix("/big/") || path == "/final", "\(exchange)")
                #expect(exchange["resp_body_len"] as? Int == (path == "/final" ? 1000 : size), "\(exchange)")
            }
            let notes = Set(own.compactMap { $0["note"] as? String })
            // A request lost whole leaves its response without one.
            let allowed: Set = ["response lost", "response bytes lost", "request bytes lost", "request not captured"]
            #expect(notes.isSubset(of: allowed), "\(notes)")
        }

        let holes = try runProgram([
            "/usr/bin/tshark", "-r", file("gap.pcapng"), "-Y", "tcp.analysis.lost_segment",
            "-T", "fields", "-e", "tcp.stream",
        ])
        #expect(!holes.standardOutput.isEmpty, "tshark saw no hole: \(holes.standardError)")
    }
}
