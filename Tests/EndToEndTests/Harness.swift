import Foundation
import TestSupport
import Testing

/// The end-to-end suites, nested here so that they run one at a time: each
/// loads real BPF programs and counts what is left in the kernel afterwards.
@Suite(.serialized, .enabled(if: Harness.unavailableReason == nil, "\(Harness.unavailableReason ?? "")"))
struct EndToEnd {}

/// Running the real tlstap binary against real TLS peers. Every test traces
/// only processes it starts itself: through `tlstap -- COMMAND` (a cgroup of
/// their own) or `-p` with the PID of a peer it launched.
enum Harness {
    /// The tlstap executable under test: `TLSTAP_TEST_TLSTAP` if set (the
    /// kernel matrix's guests run the release build, as users do, and
    /// faster than the debug one under emulation), else the one built next
    /// to this test bundle.
    static let tlstap: String = {
        if let chosen = ProcessInfo.processInfo.environment["TLSTAP_TEST_TLSTAP"], !chosen.isEmpty {
            return chosen
        }
        return builtBeside("tlstap")
    }()

    /// An executable of this package, from the build that made this test bundle.
    static func builtBeside(_ name: String) -> String {
        let beside = Bundle.main.executableURL?.deletingLastPathComponent().appendingPathComponent(name).path
        if let beside, FileManager.default.isExecutableFile(atPath: beside) { return beside }
        return packageRoot.appendingPathComponent(".build/debug/\(name)").path
    }

    /// The release build (`make test` builds it), for tests of throughput, or nil.
    static let releaseTlstap: String? = {
        let path = packageRoot.appendingPathComponent(".build/release/tlstap").path
        return FileManager.default.isExecutableFile(atPath: path) ? path : nil
    }()

    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    static let peer = packageRoot.appendingPathComponent("Tests/EndToEndTests/Peers/tls_peer.py").path

    /// Debian's Python, which links the system libssl.
    static let python = "/usr/bin/python3"

    /// Why the end-to-end tests cannot run here, or nil. CI always runs
    /// them: there, a missing feature is a failure, not a skip.
    static let unavailableReason: String? = {
        if ProcessInfo.processInfo.environment["CI"] != nil { return nil }
        guard FileManager.default.fileExists(atPath: "/sys/kernel/btf/vmlinux") else {
            return "the kernel has no BTF (/sys/kernel/btf/vmlinux)"
        }
        guard FileManager.default.fileExists(atPath: "/sys/bus/event_source/devices/uprobe/type") else {
            return "the kernel has no uprobe PMU"
        }
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("CapEff:") }),
            let caps = UInt64(line.dropFirst(7).trimmingCharacters(in: .whitespaces), radix: 16),
            caps & (1 << 21) != 0 || caps & (3 << 38) == 3 << 38
        else { return "loading BPF programs needs root or CAP_BPF+CAP_PERFMON" }
        return nil
    }()

    /// A fresh directory with a throwaway certificate for localhost.
    static func makeWorkspace() throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tlstap-e2e-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let made = try runProgram([
            "/usr/bin/openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", directory.appendingPathComponent("key.pem").path,
            "-out", directory.appendingPathComponent("cert.pem").path, "-days", "1", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1",
        ])
        #expect(made.status == 0, "openssl req: \(made.standardError)")
        return directory
    }

    /// Starts the Python HTTPS peer (not traced unless a test says so) and waits for its port.
    static func startPythonServer(in workspace: URL, requests: Int = 1) throws -> (LaunchedProgram, Int) {
        let portFile = workspace.appendingPathComponent("port-\(UUID().uuidString)").path
        let server = try LaunchedProgram([
            python, peer, "server", workspace.appendingPathComponent("cert.pem").path,
            workspace.appendingPathComponent("key.pem").path, portFile, "--count", String(requests),
        ])
        for _ in 0..<200 {
            if let text = try? String(contentsOfFile: portFile, encoding: .utf8), let port = Int(text) {
                return (server, port)
            }
            usleep(50_000)
        }
        Issue.record("the Python TLS server did not start: \(server.standardError)")
        throw CancellationError()
    }

    /// The arguments of the Python client posting `size` bytes seeded with
    /// `seed`; it also saves the body as body.bin in the workspace.
    static func pythonClient(port: Int, workspace: URL, size: Int, seed: Int = 1, program: String = python)
        -> [String]
    {
        [
            program, peer, "client", "https://localhost:\(port)/upload",
            workspace.appendingPathComponent("cert.pem").path,
            String(size), String(seed), workspace.appendingPathComponent("body.bin").path,
        ]
    }

    /// The Python client as a shell command whose output goes to client.out
    /// in the workspace, away from tlstap's output on the shared stdout.
    static func pythonClientScript(port: Int, workspace: URL, size: Int, seed: Int = 1) -> String {
        pythonClient(port: port, workspace: workspace, size: size, seed: seed).map { "'\($0)'" }.joined(separator: " ")
            + " >'\(workspace.appendingPathComponent("client.out").path)'"
    }

    /// Builds the Go HTTPS peer (Peers/gotls, crypto/tls compiled in) with
    /// Debian's Go into the workspace as `gotls`; returns its path.
    ///
    /// A build is kept in `.build/tlstap-test-peers`, named by a SHA-256 of the
    /// source, the flags and the Go toolchain (its path and date), and
    /// copied from there when it is: later tests skip the compile, and so
    /// do the kernel matrix's guests, which see the host's `.build` (their
    /// writes end with them) and would compile ten times slower.
    /// - Parameter stripped: without symbol table and DWARF (`-ldflags=-s -w`).
    static func buildGoPeer(in workspace: URL, stripped: Bool = false) throws -> String {
        let binary = workspace.appendingPathComponent("gotls").path
        let source = packageRoot.appendingPathComponent("Tests/EndToEndTests/Peers/gotls/main.go").path
        let go = URL(fileURLWithPath: "/usr/bin/go").resolvingSymlinksInPath().path
        let goDate = (try? FileManager.default.attributesOfItem(atPath: go))?[.modificationDate] as? Date
        let flags = stripped ? ["-ldflags=-s -w"] : []
        let inputs = flags + [go, "\(goDate?.timeIntervalSince1970 ?? 0)"]
        let key = try sha256Hex(
            Array(Data(contentsOf: URL(fileURLWithPath: source))) + Array(inputs.joined(separator: "\0").utf8))
        let kept = packageRoot.appendingPathComponent(".build/tlstap-test-peers/gotls-\(key.prefix(16))").path
        if (try? FileManager.default.copyItem(atPath: kept, toPath: binary)) != nil { return binary }

        var environment = ProcessInfo.processInfo.environment
        environment["GO111MODULE"] = "off"
        environment["GOCACHE"] = FileManager.default.temporaryDirectory.appendingPathComponent("tlstap-go-cache").path
        let built = try runProgram(
            ["/usr/bin/go", "build"] + flags + ["-o", binary, source], environment: environment)
        try #require(built.status == 0, "go build: \(built.standardError)")
        // Kept whole or not at all: copied beside, then renamed. Where .build is read-only, nothing is.
        let partial = kept + ".\(getpid())"
        try? FileManager.default.createDirectory(
            atPath: (kept as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        if (try? FileManager.default.copyItem(atPath: binary, toPath: partial)) != nil, rename(partial, kept) != 0 {
            unlink(partial)
        }
        return binary
    }

    /// Stops a running tlstap with `signal` once the traced programs' last
    /// records have had time to reach it (300 ms), and collects its output.
    static func stop(_ tracer: LaunchedProgram, with signal: Int32 = SIGINT)
        -> (status: Int32, output: [UInt8], standardError: String)
    {
        usleep(300_000)
        tracer.signal(signal)
        return tracer.waitForBytes()
    }

    /// Runs tlstap to its end.
    static func run(_ arguments: [String]) throws -> (status: Int32, output: [UInt8], standardError: String) {
        try LaunchedProgram([tlstap] + arguments).waitForBytes()
    }

    /// The JSON objects of tlstap's JSON Lines output.
    static func records(_ output: [UInt8]) throws -> [[String: Any]] {
        try output.split(separator: UInt8(ascii: "\n")).map { line in
            try #require(try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any])
        }
    }

    /// The data events among the records.
    static func dataEvents(_ output: [UInt8]) throws -> [DataRecord] {
        try records(output).filter { $0["event"] as? String == "data" }.map(DataRecord.init)
    }

    /// IDs of the BPF programs a process holds, from its fds' fdinfo:
    /// other tracers running at the same time do not count.
    static func programIDs(heldBy pid: Int32) -> Set<Int> {
        Set(fdinfoValues("prog_id", heldBy: pid))
    }

    /// Names of the BPF programs a process holds (the kernel keeps 15 characters of each).
    static func programNames(heldBy pid: Int32) throws -> Set<String> {
        let held = programIDs(heldBy: pid)
        return Set(
            try shownPrograms().filter { held.contains($0["id"] as? Int ?? -1) }.compactMap { $0["name"] as? String })
    }

    /// The values of one field (`prog_id`, `map_id`, `link_id`) in the
    /// fdinfo of every fd process `pid` holds, one per fd that has it.
    static func fdinfoValues(_ field: String, heldBy pid: Int32) -> [Int] {
        let directory = "/proc/\(pid)/fdinfo"
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        var values: [Int] = []
        for fd in fds {
            guard let info = try? String(contentsOfFile: "\(directory)/\(fd)", encoding: .utf8) else { continue }
            for line in info.split(separator: "\n") where line.hasPrefix(field + ":") {
                if let value = Int(line.dropFirst(field.count + 1).trimmingCharacters(in: .whitespaces)) {
                    values.append(value)
                }
            }
        }
        return values
    }

    /// Entries now in each hash map process `pid` holds, by map name.
    static func hashMapEntries(heldBy pid: Int32) throws -> [String: Int] {
        var entries: [String: Int] = [:]
        for id in Set(fdinfoValues("map_id", heldBy: pid)) {
            let shown = try runProgram(["/usr/sbin/bpftool", "-j", "map", "show", "id", String(id)])
            guard let map = try JSONSerialization.jsonObject(with: Data(shown.standardOutput.utf8)) as? [String: Any],
                let name = map["name"] as? String, let type = map["type"] as? String, type.hasSuffix("hash")
            else { continue }
            let dumped = try runProgram(["/usr/sbin/bpftool", "-j", "map", "dump", "id", String(id)])
            entries[name] = (try JSONSerialization.jsonObject(with: Data(dumped.standardOutput.utf8)) as? [Any])?.count
        }
        return entries
    }

    /// The effective capability set (CapEff, hex) of each thread of process `pid`.
    static func effectiveCapabilities(ofThreadsOf pid: Int32) -> [String] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        return tasks.compactMap { task in
            let status = try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/status", encoding: .utf8)
            return status?.split(separator: "\n").first { $0.hasPrefix("CapEff:") }
                .map { $0.dropFirst("CapEff:".count).trimmingCharacters(in: .whitespaces) }
        }
    }

    /// A process's resident memory and open fds, from /proc.
    static func footprint(of pid: Int32) -> (rssKiB: Int, anonymousKiB: Int, fds: Int) {
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        func kib(_ field: String) -> Int {
            let line = status.split(separator: "\n").first { $0.hasPrefix(field + ":") } ?? ""
            return Int(line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first ?? "") ?? -1
        }
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd"))?.count ?? -1
        return (kib("VmRSS"), kib("RssAnon"), fds)
    }

    /// IDs of every BPF program loaded in the kernel.
    static func loadedPrograms() throws -> Set<Int> {
        Set(try shownPrograms().compactMap { $0["id"] as? Int })
    }

    /// Every BPF program loaded in the kernel, as `bpftool -j prog show` describes it.
    static func shownPrograms() throws -> [[String: Any]] {
        let result = try runProgram(["/usr/sbin/bpftool", "-j", "prog", "show"])
        return try JSONSerialization.jsonObject(with: Data(result.standardOutput.utf8)) as? [[String: Any]] ?? []
    }

    /// Which of `programs` the kernel still holds after waiting up to 5 s:
    /// it frees a program a grace period after its last link is detached
    /// (raw tracepoint and uprobe_multi links) or its last fd is closed.
    static func programsLeft(of programs: Set<Int>) throws -> Set<Int> {
        var remaining = programs
        for _ in 0..<100 where !remaining.isEmpty {
            remaining = programs.intersection(try loadedPrograms())
            if !remaining.isEmpty { usleep(50_000) }
        }
        return remaining
    }

    /// Program IDs that BPF links in the kernel point at.
    static func linkedPrograms() throws -> Set<Int> {
        let result = try runProgram(["/usr/sbin/bpftool", "-j", "link", "show"])
        let links = try JSONSerialization.jsonObject(with: Data(result.standardOutput.utf8)) as? [[String: Any]]
        return Set((links ?? []).compactMap { $0["prog_id"] as? Int })
    }
}

/// One `{"event":"data"}` record, typed.
struct DataRecord {
    var pid: Int
    var tid: Int
    var comm: String
    var lib: String
    var function: String
    var direction: String
    var ssl: String
    var length: Int
    var payload: [UInt8]
    var timeNanoseconds: UInt64
    var fd: Int
    var connection: Int?
    var local: String?
    var remote: String?
    var role: String?

    init(_ object: [String: Any]) throws {
        fd = object["fd"] as? Int ?? -1  // absent when the socket is unknown
        connection = object["conn"] as? Int
        local = object["local"] as? String
        remote = object["remote"] as? String
        role = object["role"] as? String
        pid = try #require(object["pid"] as? Int)
        tid = try #require(object["tid"] as? Int)
        comm = try #require(object["comm"] as? String)
        lib = try #require(object["lib"] as? String)
        function = try #require(object["func"] as? String)
        direction = try #require(object["dir"] as? String)
        ssl = try #require(object["ssl"] as? String)
        length = try #require(object["len"] as? Int)
        let base64 = try #require(object["data"] as? String)
        payload = Array(try #require(Data(base64Encoded: base64)))
        timeNanoseconds = try #require(object["time_ns"] as? UInt64)
    }

    var text: String { String(decoding: payload, as: UTF8.self) }
}

extension Array where Element == DataRecord {
    /// All payload bytes of one direction, in capture order.
    func joined(direction: String) -> [UInt8] {
        filter { $0.direction == direction }.flatMap(\.payload)
    }
}
