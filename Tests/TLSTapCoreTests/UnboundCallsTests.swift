import CTLSTapABI
import Testing

@testable import TLSTapCore

/// Calls whose TLS object has no socket yet wait for the object's first
/// bound call and take its fd, or come out without one, never with a guess.
@Suite struct UnboundCallsTests {
    static func event(_ time: UInt64, ssl: UInt64 = 0x10, pid: UInt32 = 7, fd: Int32, bytes: String) -> DataEvent {
        DataEvent(
            timeNanoseconds: time, pid: pid, tid: pid, comm: "server", library: .go, function: .goRead,
            direction: .inbound, ssl: ssl, length: UInt64(bytes.utf8.count), payload: Array(bytes.utf8), fd: fd)
    }

    /// What came out, as "time:fd" in order.
    static func passed(_ body: (inout UnboundCalls, (inout DataEvent) -> Void) -> Void) -> [String] {
        var calls = UnboundCalls()
        var out: [String] = []
        body(&calls) { out.append("\($0.timeNanoseconds):\($0.fd)") }
        return out
    }

    @Test func heldCallsTakeTheFdOfTheObjectsFirstBoundCallAndComeBeforeIt() {
        let out = Self.passed { calls, emit in
            var first = Self.event(1, fd: -1, bytes: "PRI * HTTP/2.0")
            var second = Self.event(2, fd: -1, bytes: "settings")
            var other = Self.event(3, ssl: 0x20, fd: 9, bytes: "another object")
            var bound = Self.event(4, fd: 5, bytes: "reply")
            var later = Self.event(5, fd: -1, bytes: "held again")
            calls.take(&first, emit: emit)
            calls.take(&second, emit: emit)
            calls.take(&other, emit: emit)
            calls.take(&bound, emit: emit)
            calls.take(&later, emit: emit)
            #expect(!calls.isEmpty)
        }
        #expect(out == ["3:9", "1:5", "2:5", "4:5"])
    }

    @Test func theSameAddressInAnotherProcessIsAnotherObject() {
        let out = Self.passed { calls, emit in
            var held = Self.event(1, pid: 7, fd: -1, bytes: "a")
            var elsewhere = Self.event(2, pid: 8, fd: 3, bytes: "b")
            calls.take(&held, emit: emit)
            calls.take(&elsewhere, emit: emit)
            calls.releaseAll(emit: emit)
        }
        #expect(out == ["2:3", "1:-1"])
    }

    @Test func aFreedObjectOrAnExitedProcessReleasesItsCallsWithoutAnFd() {
        let out = Self.passed { calls, emit in
            var a = Self.event(1, ssl: 0x10, fd: -1, bytes: "a")
            var b = Self.event(2, ssl: 0x20, fd: -1, bytes: "b")
            var c = Self.event(3, ssl: 0x30, pid: 9, fd: -1, bytes: "c")
            calls.take(&a, emit: emit)
            calls.take(&b, emit: emit)
            calls.take(&c, emit: emit)
            #expect(calls.objects(of: 7).sorted() == [0x10, 0x20])
            calls.release(pid: 7, ssl: 0x10, emit: emit)
            // A new object at the freed address: its fd is not the freed one's.
            var reused = Self.event(4, ssl: 0x10, fd: 6, bytes: "new")
            calls.take(&reused, emit: emit)
            calls.release(pid: 7, emit: emit)
            #expect(calls.objects(of: 7).isEmpty)
            calls.releaseAll(emit: emit)
            #expect(calls.isEmpty)
        }
        #expect(out == ["1:-1", "4:6", "2:-1", "3:-1"])
    }

    @Test func pastTheLimitEverythingHeldComesOutWithoutAnFd() {
        var calls = UnboundCalls(limitBytes: 5)
        var out: [String] = []
        let emit: (inout DataEvent) -> Void = { out.append("\($0.timeNanoseconds):\($0.fd)") }
        var small = Self.event(1, fd: -1, bytes: "abc")
        calls.take(&small, emit: emit)
        #expect(out.isEmpty)
        var large = Self.event(2, ssl: 0x20, fd: -1, bytes: "defg")
        calls.take(&large, emit: emit)
        #expect(out == ["1:-1", "2:-1"])
        #expect(calls.isEmpty)
        // Plaintext events have no TLS object and are never held.
        var plain = Self.event(3, ssl: 0, fd: -1, bytes: "plain")
        calls.take(&plain, emit: emit)
        #expect(out.last == "3:-1")
    }

    @Test func anObjectRecordDecodes() throws {
        var raw = tlstap_object_record()
        raw.kind = UInt8(TLSTAP_RECORD_OBJECT.rawValue)
        raw.event = UInt8(TLSTAP_OBJECT_FREED.rawValue)
        raw.pid = 41
        raw.tid = 42
        raw.ssl = 0x5566_7788
        raw.time_ns = 99
        let bytes = withUnsafeBytes(of: raw) { Array($0) }
        let record = try bytes.withUnsafeBytes { try RecordDecoder.decodeRecord($0) }
        #expect(record == .objectFreed(TLSObjectFreed(pid: 41, tid: 42, ssl: 0x5566_7788, monotonicNanoseconds: 99)))
        var unknown = raw
        unknown.event = 9
        #expect(throws: RecordDecodingError.unknownValue(field: "object event", value: 9)) {
            try withUnsafeBytes(of: unknown) { try RecordDecoder.decodeRecord($0) }
        }
        #expect(MemoryLayout<tlstap_object_record>.size == 32)
        #expect(MemoryLayout<tlstap_object_record>.offset(of: \.ssl) == 16)
    }
}
