import Foundation
import TestSupport
import Testing

extension EndToEnd {
    @Suite struct LifecycleTests {
        /// `-p --no-children` traces one running process; SIGINT stops
        /// tlstap cleanly, and afterwards none of its programs or links
        /// remain in the kernel. With nothing left to attach, tlstap runs
        /// without CAP_SYS_ADMIN and CAP_PERFMON (all its threads).
        @Test func pidModeTracesOnlyThatProcessAndSIGINTDetachesEverything() throws {
            let workspace = try Harness.makeWorkspace()
            defer { try? FileManager.default.removeItem(at: workspace) }
            let (server, port) = try Harness.startPythonServer(in: workspace)
            let serverPID = Int(server.process.processIdentifier)
            let tracer = try LaunchedProgram([
                Harness.tlstap, "--format", "json", "-p", String(serverPID), "--no-children",
            ])
            #expect(tracer.waitForStandardError(containing: "press Ctrl-C"), "\(tracer.standardError)")
            let ourPrograms = Harness.programIDs(heldBy: tracer.process.processIdentifier)
            #expect(ourPrograms.count >= 20)  // the uprobe programs, the raw tracepoints and their syscall handlers
            #expect(ourPrograms.isSubset(of: try Harness.loadedPrograms()))
            #expect(!ourPrograms.isDisjoint(with: try Harness.linkedPrograms()))
            let capabilities = Harness.effectiveCapabilities(ofThreadsOf: tracer.process.processIdentifier)
            let kept: UInt64 = 1 << 39 | 1 << 19 | 1 << 2  // CAP_BPF, CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH
            #expect(
                capabilities.count > 1 && capabilities.allSatisfy { UInt64($0, radix: 16) == kept }, "\(capabilities)")

            let client = try runProgram(Harness.pythonClient(port: port, workspace: workspace, size: 500, seed: 5))
            #expect(client.status == 0)
            _ = server.wait()
            let run = Harness.stop(tracer)
            #expect(run.status == 0, "\(run.standardError)")
            #expect(run.standardError.contains("tlstap: "), "a summary line")

            let events = try Harness.dataEvents(run.output)
            #expect(!events.isEmpty)
            #expect(events.allSatisfy { $0.pid == serverPID })
            let request = String(decoding: events.joined(direction: "in"), as: UTF8.self)
            #expect(request.hasPrefix("POST /upload HTTP/1.1\r\n"))
            let sentDigest = client.standardOutput.split(separator: "\n").first.map(String.init) ?? ""
            #expect(String(decoding: events.joined(direction: "out"), as: UTF8.self).hasSuffix("got \(sentDigest)\n"))

            // Detached when tlstap ends; the kernel frees the programs a grace period later.
            #expect(try Harness.linkedPrograms().isDisjoint(with: ourPrograms))
            #expect(try Harness.programsLeft(of: ourPrograms).isEmpty)
        }

        /// Which syscalls tlstap hooks. Where the kernel has the socket
        /// tracepoints (6.3+), none: socket calls, the closes of tracked
        /// sockets and mmaps come from the socket layer, TCP and the memory
        /// map, so a process tlstap does not trace pays nothing on a
        /// syscall that is not a socket call. Without them (or hidden, as
        /// on 6.1), sys_enter for all. Only --plaintext hooks the return of
        /// every syscall (sys_exit), and it takes sys_enter everywhere.
        @Test(arguments: [(false, false), (true, false), (false, true)])
        func syscallsAreHookedOnlyWhereTheKernelOffersNothingNarrower(plaintext: Bool, hideSocketTracepoints: Bool)
            throws
        {
            let sleeper = try LaunchedProgram(["/bin/sleep", "60"])
            defer {
                sleeper.signal(SIGKILL)
                _ = sleeper.wait()
            }
            var environment = ProcessInfo.processInfo.environment
            if hideSocketTracepoints { environment["TLSTAP_KERNEL_WITHOUT"] = "socket_tracepoints" }
            let check = String(decoding: try Harness.run(["check"]).output, as: UTF8.self)
            let tracer = try LaunchedProgram(
                [Harness.tlstap, "-p", String(sleeper.process.processIdentifier)] + (plaintext ? ["--plaintext"] : []),
                environment: environment)
            #expect(tracer.waitForStandardError(containing: "press Ctrl-C"), "\(tracer.standardError)")
            let names = try Harness.programNames(heldBy: tracer.process.processIdentifier)
            let run = Harness.stop(tracer)
            #expect(run.status == 0, "\(run.standardError)")
            let socketHooks = [
                "on_socket_send", "on_socket_receive", "on_tcp_state_in_close", "on_tcp_destroy_in_close",
                "on_map_area",
            ]
            let fromSockets = check.contains("  yes  sock tracepoints ") && !plaintext && !hideSocketTracepoints
            #expect(names.contains("on_tcp_state"), "\(names.sorted())")
            if fromSockets {
                #expect(names.isSuperset(of: socketHooks), "\(names.sorted())")
                #expect(!names.contains { $0.hasPrefix("on_sys_") || $0 == "probe_read_enter" }, "\(names.sorted())")
            } else {
                #expect(
                    names.isSuperset(of: ["on_sys_enter", "probe_read_enter", "probe_close_enter"]), "\(names.sorted())"
                )
                #expect(names.isDisjoint(with: socketHooks), "\(names.sorted())")
            }
            #expect(names.contains { $0.hasPrefix("on_sys_exit") } == plaintext, "\(names.sorted())")
        }

        @Test(arguments: [
            (["-p", "999999"], "tlstap: no process with PID 999999 exists\n"),
            (["-p", "0"], "tlstap: '0' is not a valid PID\n"),
            (["-p", "abc"], "tlstap: 'abc' is not a PID: -p takes process numbers (-p 12 34 or -p 12,34)\n"),
            (["-p", "1,x"], "tlstap: 'x' is not a PID: -p takes process numbers (-p 12 34 or -p 12,34)\n"),
            (["-p", "1", "999999"], "tlstap: no process with PID 999999 exists\n"),
            (["-p", "1,999999"], "tlstap: no process with PID 999999 exists\n"),
            (["--max-body", "-5"], "tlstap: --max-body must be 0 or more bytes\n"),
            (["--ring-buffer-mib", "-1"], "tlstap: --ring-buffer-mib must be a power of two from 1 to 1024\n"),
            (
                ["--quiet", "--pcapng", "-"],
                "tlstap: --quiet and --pcapng - cannot be combined: both are about stdout\n"
            ),
            (
                ["-c", "curl", "--", "/bin/true"],
                "tlstap: -c/--comm and -- COMMAND cannot be combined: the command is the scope\n"
            ),
            (
                ["--", "/no/such/tlstap-program"],
                "tlstap: cannot run '/no/such/tlstap-program': no such file or directory\n"
            ),
            (["--", "/etc/passwd"], "tlstap: cannot run '/etc/passwd': it is not executable\n"),
            (["--", "/tmp"], "tlstap: cannot run '/tmp': it is a directory\n"),
            (
                ["--format", "xml"],
                "tlstap: The value 'xml' is invalid for '--format <format>'. Please provide one of 'text', 'hex', 'json' or 'http'.\n"
            ),
            (["--ring-buffer-mib", "3"], "tlstap: --ring-buffer-mib must be a power of two from 1 to 1024\n"),
            (
                ["-c", "a-name-longer-than-15"],
                "tlstap: command name 'a-name-longer-than-15' must be 1 to 15 bytes long, as the kernel keeps it\n"
            ),
            (
                ["--save-raw", "/tmp/tlstap-never-written", "--redact", "--", "/bin/true"],
                "tlstap: --save-raw keeps every byte, credentials included, so it cannot be combined with --redact; "
                    + "save the raw capture alone and redact when replaying it (tlstap replay --redact)\n"
            ),
            (
                ["--", "no-such-program-tlstap"],
                "tlstap: cannot run 'no-such-program-tlstap': no such command in PATH\n"
            ),
        ])
        func badInputIsRefusedWithOneLineAndExitCode2(arguments: [String], message: String) throws {
            let run = try Harness.run(arguments)
            #expect(run.status == 2)
            #expect(run.standardError == message)
            #expect(run.output.isEmpty)
        }

        /// The README's first command.
        @Test func demoShowsTheRequestAndTheResponse() throws {
            let run = try Harness.run(["demo"])
            #expect(run.status == 0, "\(run.standardError)")
            let text = String(decoding: run.output, as: UTF8.self)
            #expect(text.contains("curl["))
            #expect(text.contains("GET /hello.txt HTTP/1.1\n"))
            #expect(text.contains("HTTP/1.0 200 ok\n"))
            #expect(text.contains("Hello from the tlstap demo: this line crossed TLS and was read in plaintext.\n"))
            #expect(run.standardError.contains("captured the request and the response in plaintext"))
        }

        /// The demo parses HTTP as `trace` does: both ends of its one exchange,
        /// whose HTTP/1.0 response ends when the server closes.
        @Test func demoRecordsTheExchangeFromBothEnds() throws {
            let run = try Harness.run(["demo", "--format", "json", "--events", "http"])
            #expect(run.status == 0, "\(run.standardError)")
            let exchanges = try Harness.records(run.output)
            #expect(exchanges.compactMap { $0["comm"] as? String }.sorted() == ["curl", "openssl"])
            for exchange in exchanges {
                #expect(exchange["event"] as? String == "http")
                #expect(exchange["method"] as? String == "GET")
                #expect(exchange["path"] as? String == "/hello.txt")
                #expect(exchange["status"] as? Int == 200)
                let greeting = "Hello from the tlstap demo: this line crossed TLS and was read in plaintext.\n"
                #expect(exchange["resp_body_len"] as? Int == greeting.utf8.count)
            }
        }

        /// Without attach cookies (before Linux 5.15), OpenSSL's probes stay
        /// on its API, which `openssl s_server` passes by with an SSL BIO:
        /// curl's end is captured, and the server's is named as TLS tlstap
        /// cannot probe, as README says, never silently missing.
        @Test func withoutAttachCookiesTheDemoServersSSLBIOIsNamedNotCaptured() throws {
            var environment = ProcessInfo.processInfo.environment
            environment["TLSTAP_KERNEL_WITHOUT"] = "attach_cookies"
            let run = try LaunchedProgram(
                [Harness.tlstap, "demo", "--format", "json", "--events", "http"], environment: environment
            ).waitForBytes()
            #expect(run.status == 0, "\(run.standardError)")
            let exchanges = try Harness.records(run.output)
            #expect(exchanges.compactMap { $0["comm"] as? String } == ["curl"])
            #expect(exchanges.first?["status"] as? Int == 200)
            #expect(run.standardError.contains(" from code tlstap cannot probe: not captured\n"))
            #expect(run.standardError.contains("not captured: TLS from code tlstap cannot probe in openssl["))
        }

        /// `tlstap … | head -c 100`: the closed pipe ends tlstap quietly.
        @Test func aClosedOutputPipeEndsTheRunCleanly() throws {
            let workspace = try Harness.makeWorkspace()
            defer { try? FileManager.default.removeItem(at: workspace) }
            let (server, port) = try Harness.startPythonServer(in: workspace)
            let client = Harness.pythonClientScript(port: port, workspace: workspace, size: 200_000, seed: 9)
            let script =
                "set -o pipefail; '\(Harness.tlstap)' --format hex -- /bin/sh -c \"\(client)\" | head -c 100 >/dev/null; "
                + "echo \"status=${PIPESTATUS[0]}\""
            let run = try runProgram(["/bin/bash", "-c", script])
            _ = server.wait()
            #expect(run.standardOutput == "status=0\n")
            #expect(!run.standardError.contains("Fatal error"))
        }

        @Test func checkReportsTheKernelFeaturesAndTheSystemLibssl() throws {
            let run = try Harness.run(["check"])
            let text = String(decoding: run.output, as: UTF8.self)
            #expect(run.status == 0, "\(text)\(run.standardError)")
            for feature in [
                "BTF", "ring buffer", "bpf_loop", "attach cookies", "uprobe", "uretprobe", "raw tracepoint",
            ] {
                #expect(text.contains("  yes  \(feature.padding(toLength: 16, withPad: " ", startingAt: 0)) "))
            }
            for feature in ["kprobe", "fentry"] {
                #expect(text.contains(" \(feature.padding(toLength: 16, withPad: " ", startingAt: 0)) "))
            }
            #expect(
                text.contains(
                    "  openssl  /lib/x86_64-linux-gnu/libssl.so.3  (the dynamic loader's cache names it for libssl.so.3)"
                ))
            #expect(
                text.contains(
                    "  gnutls  /lib/x86_64-linux-gnu/libgnutls.so.30  (the dynamic loader's cache names it for libgnutls.so.30)"
                ))
            #expect(text.hasSuffix("tlstap can trace TLS on this host.\n"))
            // The socket tracepoints came in Linux 6.3: only their absence may cost something here.
            let socketHooks = text.contains("  yes  sock tracepoints ")
            #expect(socketHooks || text.contains("  no   sock tracepoints "), "\(text)")
            #expect(text.contains("missing features cost") == !socketHooks, "\(text)")

            // On a kernel without bpf_loop and attach cookies (5.10), it says what their absence costs.
            var environment = ProcessInfo.processInfo.environment
            environment["TLSTAP_KERNEL_WITHOUT"] = "bpf_loop,attach_cookies"
            let old = try LaunchedProgram([Harness.tlstap, "check"], environment: environment).waitForBytes()
            let oldText = String(decoding: old.output, as: UTF8.self)
            #expect(old.status == 0)
            #expect(oldText.contains("  no   bpf_loop         hidden by TLSTAP_KERNEL_WITHOUT\n"))
            #expect(
                oldText.contains(
                    "What this kernel's missing features cost:\n  no bpf_loop (Linux 5.17+): the bytes of one call "
                        + "past the first 4 MiB are not captured and are counted as lost\n  no attach cookies "))
        }

        /// `-c NAME` traces a process by its command name. The client runs
        /// through a symlink with a name nothing else on the host has.
        @Test func commFilterTracesOnlyThatName() throws {
            let workspace = try Harness.makeWorkspace()
            defer { try? FileManager.default.removeItem(at: workspace) }
            let alias = workspace.appendingPathComponent("tlstappeer").path
            try FileManager.default.createSymbolicLink(atPath: alias, withDestinationPath: Harness.python)
            let (server, port) = try Harness.startPythonServer(in: workspace)
            let tracer = try LaunchedProgram([Harness.tlstap, "--format", "json", "-c", "tlstappeer"])
            #expect(tracer.waitForStandardError(containing: "press Ctrl-C"), "\(tracer.standardError)")
            let client = try runProgram(
                Harness.pythonClient(port: port, workspace: workspace, size: 700, seed: 2, program: alias))
            #expect(client.status == 0, "\(client.standardError)")
            _ = server.wait()
            let run = Harness.stop(tracer, with: SIGTERM)
            #expect(run.status == 0, "\(run.standardError)")
            let events = try Harness.dataEvents(run.output)
            #expect(events.allSatisfy { $0.comm == "tlstappeer" })
            let sentDigest = client.standardOutput.split(separator: "\n").first.map(String.init) ?? ""
            #expect(String(decoding: events.joined(direction: "in"), as: UTF8.self).hasSuffix("got \(sentDigest)\n"))
        }

        /// `-c NAME` follows a thread's name as it changes: through
        /// PR_SET_NAME and /proc/self/comm, into the name and out of it,
        /// and into a new thread, which inherits it. Only the GETs made
        /// under the name are captured, each whole.
        @Test func commFilterFollowsRenames() throws {
            let workspace = try Harness.makeWorkspace()
            defer { try? FileManager.default.removeItem(at: workspace) }
            let (server, port) = try Harness.startPythonServer(in: workspace, requests: 5)
            let tracer = try LaunchedProgram([Harness.tlstap, "--format", "json", "-c", "tlstaprenamed"])
            #expect(tracer.waitForStandardError(containing: "press Ctrl-C"), "\(tracer.standardError)")
            let client = try runProgram([
                Harness.python, Harness.peer, "renames", "https://localhost:\(port)/",
                workspace.appendingPathComponent("cert.pem").path,
            ])
            #expect(client.status == 0, "\(client.standardError)")
            _ = server.wait()
            let run = Harness.stop(tracer)
            #expect(run.status == 0, "\(run.standardError)")
            let events = try Harness.dataEvents(run.output)
            #expect(events.allSatisfy { $0.comm == "tlstaprenamed" }, "\(events.map(\.comm))")
            let answer = "got \(sha256Hex([]))\n"
            let connections = Dictionary(grouping: events) { $0.connection ?? -1 }
            let paths = connections.values.map { own in
                String(decoding: own.joined(direction: "out"), as: UTF8.self).split(separator: " ").dropFirst().first
                    .map(String.init) ?? ""
            }
            #expect(paths.sorted() == ["/in-a-thread", "/renamed", "/written"], "\(events.map(\.text))")
            for own in connections.values {
                #expect(String(decoding: own.joined(direction: "in"), as: UTF8.self).hasSuffix(answer))
            }
        }

        /// `tlstap -- COMMAND` traces what is in the command's cgroup: a
        /// process that moves out of it, once it has been traced, is not
        /// traced any more.
        @Test func commandScopeLetsGoOfAProcessThatLeavesItsCgroup() throws {
            let workspace = try Harness.makeWorkspace()
            defer { try? FileManager.default.removeItem(at: workspace) }
            let (server, port) = try Harness.startPythonServer(in: workspace, requests: 2)
            let client = [
                Harness.python, Harness.peer, "moves", "https://localhost:\(port)/",
                workspace.appendingPathComponent("cert.pem").path,
            ].map { "'\($0)'" }.joined(separator: " ")
            let run = try Harness.run(["--format", "json", "--", "/bin/sh", "-c", "exec \(client) >/dev/null"])
            _ = server.wait()
            #expect(run.status == 0, "\(run.standardError)")
            let events = try Harness.dataEvents(run.output)
            let sent = String(decoding: events.joined(direction: "out"), as: UTF8.self)
            #expect(sent.hasPrefix("GET /before-the-move HTTP/1.1\r\n"), "\(sent)")
            #expect(!sent.contains("after-the-move"), "\(sent)")
            #expect(String(decoding: events.joined(direction: "in"), as: UTF8.self).hasSuffix("got \(sha256Hex([]))\n"))
        }

        /// The traced command starts as it would from a shell: no signal
        /// blocked or ignored by tlstap leaks into it (SIGPIPE ends `yes`).
        @Test func theTracedCommandSeesDefaultSignals() throws {
            let run = try Harness.run(["--", "/bin/sh", "-c", "yes | head -n 2; grep SigBlk /proc/self/status"])
            #expect(run.status == 0)
            #expect(String(decoding: run.output, as: UTF8.self) == "y\ny\nSigBlk:\t0000000000000000\n")
            #expect(!run.standardError.contains("Broken pipe"), "\(run.standardError)")
        }

        /// Foundation's full library brings its internationalization and
        /// ICU with it: about 6 MiB of resident memory in every run (the
        /// release build at rest went from 95.0 to 88.6 MiB without them).
        /// tlstap needs FoundationEssentials only. Checked on the release
        /// build users run; the debug build links more than it uses.
        @Test func theReleaseBuildLoadsNeitherFoundationNorICU() throws {
            let tlstap = try #require(
                Harness.releaseTlstap, "make test builds it: swift build -c release --product tlstap")
            let linked = try runProgram(["/usr/bin/ldd", tlstap])
            try #require(linked.status == 0, "ldd: \(linked.standardError)")
            #expect(linked.standardOutput.contains("libswiftCore.so"))  // a real list
            #expect(!linked.standardOutput.contains("libFoundation.so"), "\(linked.standardOutput)")
            #expect(!linked.standardOutput.contains("ICU"), "\(linked.standardOutput)")
        }
    }
}
