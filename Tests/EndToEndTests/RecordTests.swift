import Foundation
import TestSupport
import Testing

extension EndToEnd {
    /// `tlstap record` saves the kernel's records undecoded; `tlstap replay`
    /// renders them later exactly as a live run would have.
    @Suite struct RecordTests {
        /// A live run's outputs and the replay of its `--save-raw` file are
        /// the same bytes: JSON Lines (data, connections, HTTP exchanges),
        /// pcapng and HAR, times included. Replayed with --redact, none
        /// holds the credential the raw file keeps.
        @Test func replayRendersWhatTheLiveRunRendered() throws {
            let secret = "s3cr3t-Replay-24680"
            let capture = try FileTests.Capture(curlArguments: "-H 'Authorization: Bearer \(secret)'", savesRaw: true)
            defer { capture.close() }
            #expect(capture.run.status == 0, "\(capture.run.standardError)")
            let file = { (name: String) in capture.workspace.appendingPathComponent(name).path }
            let replay = try Harness.run([
                "replay", capture.raw, "--format", "json", "--pcapng", file("replay.pcapng"), "--har",
                file("replay.har"),
            ])
            #expect(replay.status == 0, "\(replay.standardError)")
            let live = try Data(contentsOf: URL(fileURLWithPath: capture.jsonl))
            #expect(Data(replay.output) == live)
            #expect(try Harness.records(replay.output).filter { $0["event"] as? String == "http" }.count == 2)
            for (replayed, original) in [("replay.pcapng", capture.pcapng), ("replay.har", capture.har)] {
                #expect(
                    try Data(contentsOf: URL(fileURLWithPath: file(replayed)))
                        == Data(contentsOf: URL(fileURLWithPath: original)), "\(replayed)")
            }
            // The live summary counts what the replay counts.
            #expect(Self.summary(replay.standardError) == Self.summary(capture.run.standardError))

            // The raw file keeps the credential; a replay with --redact hides it in every output.
            let forms = try FileTests.secretForms(["Bearer \(secret)"])
            #expect(
                forms.contains {
                    Array(try! Data(contentsOf: URL(fileURLWithPath: capture.raw))).firstRange(of: $0) != nil
                })
            let redacted = try Harness.run([
                "replay", capture.raw, "--redact", "--format", "json", "--pcapng", file("redacted.pcapng"),
                "--har", file("redacted.har"),
            ])
            #expect(redacted.status == 0, "\(redacted.standardError)")
            for (name, bytes) in [
                ("stdout", redacted.output),
                ("--pcapng", Array(try Data(contentsOf: URL(fileURLWithPath: file("redacted.pcapng"))))),
                ("--har", Array(try Data(contentsOf: URL(fileURLWithPath: file("redacted.har"))))),
            ] {
                try FileTests.expectNone(of: forms, in: bytes, name)
            }
        }

        /// `tlstap record -- COMMAND` renders nothing, and its file replays
        /// into the exchanges, the bytes and the counts of the run.
        @Test func recordThenReplayGivesTheExchanges() throws {
            let workspace = try Harness.makeWorkspace()
            let nginx = try Nginx(workspace: workspace)
            defer {
                nginx.stop()
                try? FileManager.default.removeItem(at: workspace)
            }
            let body = String(repeating: "0123456789abcdef", count: 64)
            try body.write(to: workspace.appendingPathComponent("www/one-k.txt"), atomically: true, encoding: .utf8)
            let cert = workspace.appendingPathComponent("cert.pem").path
            let url = "https://localhost:\(nginx.port)/one-k.txt"
            let script =
                "curl -sS --http1.1 --cacert '\(cert)' '\(url)?v=1' -o /dev/null && "
                + "curl -sS --http2 --cacert '\(cert)' '\(url)?v=2' -o /dev/null"
            let saved = workspace.appendingPathComponent("saved.tlstap").path
            let record = try Harness.run(["record", "-o", saved, "--", "/bin/sh", "-c", script])
            #expect(record.status == 0, "\(record.standardError)")
            #expect(record.output.isEmpty)
            let mode = try FileManager.default.attributesOfItem(atPath: saved)[.posixPermissions] as? Int
            #expect(mode == 0o600)

            let replay = try Harness.run(["replay", saved, "--format", "json"])
            #expect(replay.status == 0, "\(replay.standardError)")
            let records = try Harness.records(replay.output)
            let exchanges = records.filter { $0["event"] as? String == "http" }
            #expect(exchanges.map { $0["path"] as? String } == ["/one-k.txt?v=1", "/one-k.txt?v=2"])
            #expect(exchanges.map { $0["status"] as? Int } == [200, 200])
            let events = try Harness.dataEvents(replay.output)
            #expect(Set(events.map(\.comm)) == ["curl"])
            let received = events.filter { $0.direction == "in" }.flatMap(\.payload)
            #expect(received.firstRange(of: Array(body.utf8)) != nil)
            // Every data line has its connection, and times lie within the run.
            #expect(events.allSatisfy { $0.connection != nil && $0.role == "client" })
            let now = UInt64(Date().timeIntervalSince1970 * 1e9)
            #expect(events.allSatisfy { $0.timeNanoseconds < now && now - $0.timeNanoseconds < 120_000_000_000 })
            // Record counts while saving what replay counts while rendering.
            let recorded = try #require(Self.summary(record.standardError))
            #expect(recorded.hasPrefix("tlstap: \(events.count) events, \(events.map(\.length).reduce(0, +)) bytes"))
            #expect(Self.summary(replay.standardError) == recorded + ", 2 HTTP exchanges")
        }

        /// Every output file on a tmpfs (which refuses O_DIRECT before Linux
        /// 6.6, and the overlayfs of containers over it): the recording
        /// replays into the live run's JSON byte for byte, and the pcapng
        /// and HAR are whole.
        @Test func outputFilesOnATmpfsAreWhole() throws {
            let workspace = try Harness.makeWorkspace()
            let nginx = try Nginx(workspace: workspace)
            try "hello\n".write(
                to: workspace.appendingPathComponent("www/hello.txt"), atomically: true, encoding: .utf8)
            let tmpfs = workspace.appendingPathComponent("tmpfs")
            try FileManager.default.createDirectory(at: tmpfs, withIntermediateDirectories: true)
            #expect(try runProgram(["/bin/mount", "-t", "tmpfs", "tmpfs", tmpfs.path]).status == 0)
            defer {
                _ = try? runProgram(["/bin/umount", tmpfs.path])
                nginx.stop()
                try? FileManager.default.removeItem(at: workspace)
            }
            let file = { (name: String) in tmpfs.appendingPathComponent(name).path }
            let cert = workspace.appendingPathComponent("cert.pem").path
            let script =
                "curl -sS --http1.1 --cacert '\(cert)' 'https://localhost:\(nginx.port)/hello.txt?v=1' -o /dev/null && "
                + "curl -sS --http2 --cacert '\(cert)' 'https://localhost:\(nginx.port)/hello.txt?v=2' -o /dev/null"
            let live = try Harness.run([
                "--format", "json", "--write", file("live.jsonl"), "--pcapng", file("live.pcapng"), "--har",
                file("live.har"), "--save-raw", file("live.tlstapraw"), "--", "/bin/sh", "-c", script,
            ])
            #expect(live.status == 0, "\(live.standardError)")
            // With --har, as live: its bodies are kept in the JSON's http records too.
            let replay = try Harness.run([
                "replay", file("live.tlstapraw"), "--format", "json", "--har", file("replay.har"),
            ])
            #expect(replay.status == 0, "\(replay.standardError)")
            let jsonl = try Data(contentsOf: URL(fileURLWithPath: file("live.jsonl")))
            #expect(Data(replay.output) == jsonl)
            let exchanges = try Harness.records(Array(jsonl)).filter { $0["event"] as? String == "http" }
            #expect(exchanges.map { $0["path"] as? String } == ["/hello.txt?v=1", "/hello.txt?v=2"])
            let pcapng = Array(try Data(contentsOf: URL(fileURLWithPath: file("live.pcapng"))))
            #expect(pcapng.prefix(4) == [0x0a, 0x0d, 0x0d, 0x0a], "a section header block first")
            let har = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: file("live.har"))))
            let entries = ((har as? [String: Any])?["log"] as? [String: Any])?["entries"] as? [Any]
            #expect(entries?.count == 2)

            let record = try Harness.run(["record", "-o", file("saved.tlstap"), "--", "/bin/sh", "-c", script])
            #expect(record.status == 0, "\(record.standardError)")
            let replayed = try Harness.run(["replay", file("saved.tlstap"), "--format", "json"])
            #expect(replayed.status == 0, "\(replayed.standardError)")
            let again = try Harness.records(replayed.output).filter { $0["event"] as? String == "http" }
            #expect(again.map { $0["path"] as? String } == ["/hello.txt?v=1", "/hello.txt?v=2"])
            #expect(again.map { $0["status"] as? Int } == [200, 200])
        }

        /// A missing file, a file that is not a capture, and a capture cut
        /// short: one line each and exit status 2; a cut capture's records
        /// before the cut are still rendered.
        @Test func aBadCaptureFailsClearly() throws {
            let workspace = try Harness.makeWorkspace()
            defer { try? FileManager.default.removeItem(at: workspace) }
            let missing = workspace.appendingPathComponent("missing").path
            let run = try Harness.run(["replay", missing])
            #expect(run.status == 2)
            #expect(run.standardError == "tlstap: \(missing): cannot read it: No such file or directory\n")

            let text = workspace.appendingPathComponent("text").path
            try "GET / HTTP/1.1\r\n".write(toFile: text, atomically: true, encoding: .utf8)
            let notCapture = try Harness.run(["replay", text])
            #expect(notCapture.status == 2)
            #expect(
                notCapture.standardError
                    == "tlstap: \(text): not a tlstap record file (it does not begin with TLSTAPR1)\n")

            let fixture = Harness.packageRoot.appendingPathComponent(
                "Tests/TLSTapCoreTests/Fixtures/python-post-40000.tlstapraw")
            let whole = try Harness.run(["replay", fixture.path, "--format", "json", "--events", "data"])
            #expect(whole.status == 0, "\(whole.standardError)")
            let bytes = try Data(contentsOf: fixture)
            let cut = workspace.appendingPathComponent("cut.tlstapraw")
            try bytes.prefix(bytes.count - 5).write(to: cut)
            let partial = try Harness.run(["replay", cut.path, "--format", "json", "--events", "data"])
            #expect(partial.status == 2)
            let lines = partial.standardError.split(separator: "\n")
            #expect(lines.count == 2, "\(partial.standardError)")
            #expect(
                lines.last?.hasPrefix("tlstap: \(cut.path): the file ends inside a record that begins before byte ")
                    == true)
            // Only the last record (the socket's close) was cut: every call is there, byte for byte.
            // (This fixture predates clock notes: both replays take this machine's clock, read apart.)
            let calls = { (output: [UInt8]) in
                try Harness.dataEvents(output).map { "\($0.function) \($0.direction) \($0.payload)" }
            }
            #expect(try calls(partial.output) == calls(whole.output))
            #expect(try calls(whole.output).count == 4)
        }

        /// A large upload recorded through the ring's pages comes back to
        /// the byte; with a ring buffer far smaller than the upload, the
        /// loss the kernel counted is in the file, and the replay reports it.
        @Test func aLargeUploadIsRecordedToTheByteAndLossIsKept() throws {
            let workspace = try Harness.makeWorkspace()
            defer { try? FileManager.default.removeItem(at: workspace) }
            for (size, ringMiB) in [(6 << 20, 32), (16 << 20, 1)] {
                let (server, port) = try Harness.startPythonServer(in: workspace)
                let client = Harness.pythonClientScript(port: port, workspace: workspace, size: size, seed: size)
                let saved = workspace.appendingPathComponent("upload-\(size).tlstap").path
                let record = try Harness.run(
                    ["record", "-o", saved, "--ring-buffer-mib", String(ringMiB), "--", "/bin/sh", "-c", client])
                _ = server.wait()
                #expect(record.status == 0, "\(record.standardError)")
                let file = try Data(contentsOf: URL(fileURLWithPath: saved))
                #expect(file.starts(with: Array("TLSTAPR2".utf8)))

                let replay = try Harness.run(["replay", saved, "--format", "json"])
                #expect(replay.status == 0, "\(replay.standardError)")
                let recorded = try #require(Self.summary(record.standardError))
                #expect(Self.summary(replay.standardError)?.hasPrefix(recorded) == true, "\(replay.standardError)")
                let sent = Array(try Data(contentsOf: workspace.appendingPathComponent("body.bin")))
                let events = try Harness.dataEvents(replay.output)
                let body = try #require(events.first { $0.direction == "out" && $0.length == size })
                let lost = try Harness.records(replay.output).filter { $0["event"] as? String == "lost" }
                let lostRecords = lost.compactMap { $0["records"] as? Int }.reduce(0, +)
                let lostBytes = lost.compactMap { $0["bytes"] as? Int }.reduce(0, +)
                #expect(recorded.contains(" \(lostRecords) records lost (\(lostBytes) bytes)"))
                if ringMiB == 32 {
                    #expect(lostRecords == 0)
                    let same = body.payload == sent  // not diffed element by element if it fails
                    #expect(same)
                } else {
                    #expect(lostRecords > 0 && lostBytes >= size - body.payload.count)
                    #expect(body.payload.count < size && body.payload == Array(sent.prefix(body.payload.count)))
                }
            }
        }

        /// A file system that stops taking writes (frozen with fsfreeze, as
        /// a journal commit or a snapshot stalls them) while 16 uploads of
        /// 1 MiB go through a 4 MiB ring: the bytes waiting are copied out
        /// of the ring instead of held in it, and every upload comes back
        /// to the byte, nothing lost.
        @Test(
            .enabled(
                if: FileManager.default.fileExists(atPath: "/dev/loop-control"),
                "needs loop devices (CONFIG_BLK_DEV_LOOP) for a file system of its own to freeze"))
        func aStalledDiskLosesNothing() throws {
            let workspace = try Harness.makeWorkspace()
            let image = workspace.appendingPathComponent("disk.img").path
            let mount = workspace.appendingPathComponent("disk")
            try FileManager.default.createDirectory(at: mount, withIntermediateDirectories: true)
            #expect(try runProgram(["/usr/bin/truncate", "-s", "256M", image]).status == 0)
            #expect(try runProgram(["/sbin/mkfs.ext4", "-q", "-F", image]).status == 0)
            let mounted = try runProgram(["/bin/mount", "-o", "loop", image, mount.path])
            try #require(mounted.status == 0, "\(mounted.standardError)")
            defer {
                _ = try? runProgram(["/sbin/fsfreeze", "-u", mount.path])
                _ = try? runProgram(["/bin/umount", mount.path])
                try? FileManager.default.removeItem(at: workspace)
            }
            let (size, uploads) = (1 << 20, 16)
            let (server, port) = try Harness.startPythonServer(in: workspace, requests: uploads)
            let client = Harness.pythonClientScript(port: port, workspace: workspace, size: size, seed: 7)
            // Every upload goes while the file system is frozen; the file's writes wait for the thaw.
            let script =
                "/sbin/fsfreeze -f '\(mount.path)' && for i in $(seq \(uploads)); do \(client); done; "
                + "sleep 0.5; /sbin/fsfreeze -u '\(mount.path)'"
            let saved = mount.appendingPathComponent("uploads.tlstap").path
            let record = try Harness.run(
                ["record", "-v", "-o", saved, "--ring-buffer-mib", "4", "--", "/bin/sh", "-c", script])
            _ = server.wait()
            #expect(record.status == 0, "\(record.standardError)")
            #expect(record.standardError.contains("fell behind the ring: "), "\(record.standardError)")
            let recorded = try #require(Self.summary(record.standardError))
            #expect(recorded.hasSuffix(" 0 records lost (0 bytes)"), "\(recorded)")

            let replay = try Harness.run(["replay", saved, "--format", "json", "--events", "data"])
            #expect(replay.status == 0, "\(replay.standardError)")
            let sent = Array(try Data(contentsOf: workspace.appendingPathComponent("body.bin")))
            let bodies = try Harness.dataEvents(replay.output).filter { $0.direction == "out" && $0.length == size }
            // Compared as a whole: a failed comparison of two 1 MiB arrays would be diffed element by element.
            let whole = bodies.map { $0.payload == sent }
            #expect(whole == Array(repeating: true, count: uploads))
        }

        /// The summary line of tlstap's standard error.
        static func summary(_ standardError: String) -> String? {
            standardError.split(separator: "\n").last { $0.hasPrefix("tlstap: ") && $0.contains(" events, ") }
                .map(String.init)
        }
    }
}
