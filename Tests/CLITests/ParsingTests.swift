import ArgumentParser
import Glibc
import TLSTapHTTP
import TLSTapOutput
import Testing

@testable import tlstap

/// Every flag combination `--help` promises or refuses, parsed as tlstap
/// parses its command line (no tracing: nothing here needs root).
@Suite struct ParsingTests {
    /// The subcommand tlstap would run for `arguments`.
    static func parse(_ arguments: [String]) throws -> ParsableCommand {
        try TLSTapCommand.parseAsRoot(arguments)
    }

    /// The one line tlstap prints for refused `arguments`, and whether it
    /// exits 2 (bad input); nil when they parse.
    static func refusal(_ arguments: [String]) -> (message: String, badInput: Bool)? {
        do {
            _ = try parse(arguments)
            return nil
        } catch {
            return (TLSTapCommand.message(for: error), TLSTapCommand.exitCode(for: error) == .validationFailure)
        }
    }

    @Test func noArgumentsTraceTheHostAsText() throws {
        let trace = try #require(try Self.parse([]) as? TraceCommand)
        #expect(trace.scope.pids.isEmpty && trace.scope.command.isEmpty && trace.scope.comms.isEmpty)
        #expect(trace.output.format == .text)
        #expect(trace.scope.captureScope.ringBufferBytes == 32 << 20)
        #expect(trace.output.httpLimits?.captureBodies == false)  // text shows other protocols' records
    }

    @Test func pidsComeSpacedCommaSeparatedOrRepeated() throws {
        let me = getpid()
        let trace = try #require(try Self.parse(["-p", "\(me)", "1,\(me)", "--pid", "1"]) as? TraceCommand)
        #expect(trace.scope.pids == [me, 1, me, 1])
    }

    /// What the CLI hands the library: the scope of `Capture`, field by field.
    @Test func theOptionsBecomeTheLibrarysScope() throws {
        let me = getpid()
        let arguments = [
            "-p", "\(me)", "--no-children", "--port", "443", "--port", "8443", "--host", "::1", "--host", "10.0.0.5",
            "--plaintext", "--ring-buffer-mib", "64",
        ]
        let scope = try #require(try Self.parse(arguments) as? TraceCommand).scope.captureScope
        #expect(scope.pids == [me] && !scope.followsChildren && scope.command.isEmpty)
        #expect(scope.ports == [443, 8443])
        #expect(scope.hosts.map(\.description) == ["::1", "10.0.0.5"])
        #expect(scope.plaintext && scope.ringBufferBytes == 64 << 20)
        let named = try #require(try Self.parse(["record", "-o", "x", "-c", "nginx", "-c", "curl"]) as? RecordCommand)
        #expect(named.scope.captureScope.comms == ["nginx", "curl"] && named.scope.captureScope.followsChildren)
    }

    @Test func aCommandAfterTheTerminatorIsTheScope() throws {
        let trace = try #require(
            try Self.parse(["--format", "json", "--", "/bin/true", "-x", "--format"]) as? TraceCommand)
        #expect(trace.scope.command == ["/bin/true", "-x", "--format"])
        #expect(trace.output.format == .json)
    }

    @Test func outputOptionsDecideWhatIsAnalysed() throws {
        func limits(_ arguments: [String]) throws -> HTTPLimits? {
            try #require(try Self.parse(arguments) as? TraceCommand).output.httpLimits
        }
        #expect(try limits(["--events", "data"]) == nil)
        #expect(try limits(["--events", "data", "--events", "lost"]) == nil)
        #expect(try limits(["--events", "websocket"]) != nil)
        #expect(try limits(["--events", "data", "--write", "/dev/null"]) != nil)  // --write gets every kind
        #expect(try limits(["--quiet"]) == nil)
        #expect(try limits(["--quiet", "--har", "/dev/null"])?.captureBodies == true)  // HAR keeps bodies
        #expect(try limits(["--pcapng", "-"]) == nil)
        let bodies = try limits(["--format", "http", "--bodies", "--max-body", "10"])
        #expect(bodies?.captureBodies == true && bodies?.maxBodyBytes == 10)
    }

    @Test func subcommandsParseTheirOwnOptions() throws {
        let record = try #require(try Self.parse(["record", "-o", "cap.tlstap", "-c", "nginx"]) as? RecordCommand)
        #expect(record.output == "cap.tlstap" && record.scope.comms == ["nginx"])
        let replay = try #require(try Self.parse(["replay", "cap.tlstap", "--format", "http"]) as? ReplayCommand)
        #expect(replay.file == "cap.tlstap" && replay.output.format == .http)
        #expect(try Self.parse(["check"]) is CheckCommand)
        #expect(try Self.parse(["demo", "--format", "json"]) is DemoCommand)
        #expect(Self.refusal(["record", "-p", "1"])?.message.contains("--output") == true)  // -o is required
    }

    /// Each refusal is one line that names the real problem, with exit 2.
    @Test(arguments: [
        (["-p", "abc"], "'abc' is not a PID: -p takes process numbers (-p 12 34 or -p 12,34)"),
        (["-p", "0"], "'0' is not a valid PID"),
        (["-p", "2147483000"], "no process with PID 2147483000 exists"),
        (
            ["-c", "a-name-of-16-byt"],
            "command name 'a-name-of-16-byt' must be 1 to 15 bytes long, as the kernel keeps it"
        ),
        (["--port", "0"], "--port must be from 1 to 65535"),
        (["--host", "example.org"], "--host 'example.org' is not an IPv4 or IPv6 address"),
        (["--ring-buffer-mib", "3"], "--ring-buffer-mib must be a power of two from 1 to 1024"),
        (["--ring-buffer-mib", "2048"], "--ring-buffer-mib must be a power of two from 1 to 1024"),
        (["--no-children"], "--no-children narrows -p/--pid; give the processes with -p"),
        (["-p", "1", "--", "/bin/true"], "-p/--pid and -- COMMAND cannot be combined: the command is the scope"),
        (["-c", "curl", "--", "/bin/true"], "-c/--comm and -- COMMAND cannot be combined: the command is the scope"),
        (["--max-body", "-1"], "--max-body must be 0 or more bytes"),
        (["--quiet", "--pcapng", "-"], "--quiet and --pcapng - cannot be combined: both are about stdout"),
        (
            ["--save-raw", "x", "--redact"],
            "--save-raw keeps every byte, credentials included, so it cannot be combined with --redact; "
                + "save the raw capture alone and redact when replaying it (tlstap replay --redact)"
        ),
        (
            ["--format", "yaml"],
            "The value 'yaml' is invalid for '--format <format>'. Please provide one of 'text', 'hex', 'json' or 'http'."
        ),
    ])
    func badInputIsRefusedInOneLine(arguments: [String], message: String) throws {
        let refusal = try #require(Self.refusal(arguments))
        #expect(refusal.message == message)
        #expect(refusal.badInput)
        #expect(!refusal.message.contains("\n"))
    }

    @Test func aCommandThatCannotRunIsRefusedBeforeAnythingIsLoaded() throws {
        let refusal = try #require(Self.refusal(["--", "/nonexistent/program"]))
        #expect(refusal.message.hasPrefix("cannot run '/nonexistent/program': "))
        #expect(refusal.badInput)
    }

    @Test func everyEventKindIsAccepted() throws {
        for kind in EventKind.allCases {
            let trace = try #require(try Self.parse(["--events", kind.rawValue]) as? TraceCommand)
            #expect(trace.output.events == [kind])
        }
        #expect(Self.refusal(["--events", "smtp"])?.badInput == true)
    }
}
