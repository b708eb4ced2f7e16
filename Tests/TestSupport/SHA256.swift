import Foundation

/// SHA-256 through coreutils' sha256sum: the tests compare captured bytes
/// with what peers report sending, and pulling in a crypto package only for
/// that would cost every CI run a minute of building.
public func sha256Hex(_ bytes: [UInt8]) -> String {
    let file = FileManager.default.temporaryDirectory.appendingPathComponent("tlstap-sha-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: file) }
    do {
        try Data(bytes).write(to: file)
        let result = try runProgram(["/usr/bin/sha256sum", file.path])
        return String(result.standardOutput.prefix(64))
    } catch {
        return "sha256sum failed: \(error)"
    }
}

/// What a finished program printed and how it ended.
public struct ProgramResult: Sendable {
    public var status: Int32
    public var standardOutput: String
    public var standardError: String
}

/// Runs a program to its end, with its output captured in temporary files
/// (pipes could fill up and stall a chatty program).
public func runProgram(_ arguments: [String], environment: [String: String]? = nil) throws -> ProgramResult {
    let process = try LaunchedProgram(arguments, environment: environment)
    return process.wait()
}

/// How much longer than on this machine the tests may wait for a program:
/// `TLSTAP_TEST_TIME_SCALE` (scripts/kernel-matrix sets it in its guests,
/// where software emulation runs everything about ten times slower), else 1.
public enum TestTiming {
    public static let scale: Double =
        ProcessInfo.processInfo.environment["TLSTAP_TEST_TIME_SCALE"].flatMap(Double.init).map { max($0, 1) } ?? 1
}

/// A program started in the background, its output going to temporary files.
public final class LaunchedProgram: @unchecked Sendable {
    public let process = Process()
    private let outputFile: URL
    private let errorFile: URL

    public init(_ arguments: [String], environment: [String: String]? = nil) throws {
        let directory = FileManager.default.temporaryDirectory
        outputFile = directory.appendingPathComponent("tlstap-test-out-\(UUID().uuidString)")
        errorFile = directory.appendingPathComponent("tlstap-test-err-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: outputFile.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errorFile.path, contents: nil)
        process.executableURL = URL(fileURLWithPath: arguments[0])
        process.arguments = Array(arguments.dropFirst())
        if let environment { process.environment = environment }
        process.standardOutput = try FileHandle(forWritingTo: outputFile)
        process.standardError = try FileHandle(forWritingTo: errorFile)
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    /// The output so far.
    public var standardOutputBytes: [UInt8] { Array((try? Data(contentsOf: outputFile)) ?? Data()) }
    public var standardError: String { String(decoding: (try? Data(contentsOf: errorFile)) ?? Data(), as: UTF8.self) }

    /// Waits until stderr contains `marker`, or `seconds` (times
    /// `TestTiming.scale`) pass.
    public func waitForStandardError(containing marker: String, seconds: Double = 30) -> Bool {
        let deadline = Date().addingTimeInterval(seconds * TestTiming.scale)
        while Date() < deadline {
            if standardError.contains(marker) { return true }
            if !process.isRunning { return standardError.contains(marker) }
            usleep(50_000)
        }
        return false
    }

    /// Sends a signal.
    public func signal(_ number: Int32) {
        kill(process.processIdentifier, number)
    }

    /// Waits for the end and collects the output; removes the files.
    public func wait() -> ProgramResult {
        waitQuietly()
        let result = ProgramResult(
            status: process.terminationReason == .uncaughtSignal
                ? 128 + process.terminationStatus
                : process.terminationStatus,
            standardOutput: String(decoding: standardOutputBytes, as: UTF8.self), standardError: standardError)
        try? FileManager.default.removeItem(at: outputFile)
        try? FileManager.default.removeItem(at: errorFile)
        return result
    }

    /// Waits for the program's end without spinning: Foundation's
    /// waitUntilExit runs the run loop flat out, a whole core taken from
    /// the programs under test on this 2-core machine.
    private func waitQuietly() {
        while process.isRunning { usleep(5_000) }
        process.waitUntilExit()
    }

    /// Waits and returns stdout as raw bytes (for large outputs), then removes the files.
    public func waitForBytes() -> (status: Int32, output: [UInt8], standardError: String) {
        waitQuietly()
        let result = (process.terminationStatus, standardOutputBytes, standardError)
        try? FileManager.default.removeItem(at: outputFile)
        try? FileManager.default.removeItem(at: errorFile)
        return result
    }
}
