import Testing

@testable import TLSTapCore

@Suite struct ChunkAssemblerTests {
    let payload: [UInt8] = (0..<50_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
    let clock = WallClock(offsetNanoseconds: 1_000)

    @Test func aWholeCallInOneChunkIsEmittedAtOnce() {
        var assembler = ChunkAssembler(clock: clock)
        let events = assembler.add(ChunkBuilder.chunks(of: Array("hello".utf8), chunkSize: 16)[0])
        #expect(events.count == 1)
        #expect(events[0].payload == Array("hello".utf8))
        #expect(events[0].timeNanoseconds == 6_000)  // call time 5000 + clock offset 1000
        #expect(assembler.pendingCalls == 0)
    }

    @Test(arguments: [3, 4096, 16384, 49_999])
    func chunksInOrderJoinIntoOneEvent(chunkSize: Int) {
        var assembler = ChunkAssembler(clock: clock)
        let chunks = ChunkBuilder.chunks(of: payload, chunkSize: chunkSize)
        var events: [DataEvent] = []
        for chunk in chunks { events += assembler.add(chunk) }
        #expect(events.count == 1)
        #expect(events.first?.payload == payload)
        #expect(events.first?.missingBytes == 0)
    }

    /// Chunks of one call never interleave in practice, but the assembler
    /// must not depend on it: any order gives the same bytes.
    @Test(arguments: [1 as UInt64, 2, 3, 42])
    func chunksInAnyOrderJoinIntoOneEvent(seed: UInt64) {
        var generator = SplitMix(seed: seed)
        var assembler = ChunkAssembler(clock: clock)
        var events: [DataEvent] = []
        for chunk in ChunkBuilder.chunks(of: payload, chunkSize: 3000).shuffled(using: &generator) {
            events += assembler.add(chunk)
        }
        #expect(events.count == 1)
        #expect(events.first?.payload == payload)
    }

    @Test func callsOfDifferentThreadsInterleave() {
        var assembler = ChunkAssembler(clock: clock)
        let first = ChunkBuilder.chunks(of: payload, chunkSize: 16384, tid: 1, callTime: 10)
        let second = ChunkBuilder.chunks(of: Array(payload.reversed()), chunkSize: 16384, tid: 2, callTime: 11)
        var events: [DataEvent] = []
        for (a, b) in zip(first, second) {
            events += assembler.add(a)
            events += assembler.add(b)
        }
        #expect(events.map(\.tid) == [1, 2])
        #expect(events[0].payload == payload)
        #expect(events[1].payload == Array(payload.reversed()))
    }

    /// A chunk lost in the kernel: the call is emitted when the thread's next
    /// call arrives, with the bytes before the gap and the rest counted missing.
    @Test func aCallWithALostChunkIsEmittedWithItsGap() {
        var assembler = ChunkAssembler(clock: clock)
        var chunks = ChunkBuilder.chunks(of: payload, chunkSize: 16384)
        chunks.remove(at: 1)
        var events: [DataEvent] = []
        for chunk in chunks { events += assembler.add(chunk) }
        #expect(events.isEmpty)
        events += assembler.add(ChunkBuilder.chunks(of: [1, 2, 3], chunkSize: 16, callTime: 9_000)[0])
        #expect(events.count == 2)
        #expect(events[0].payload == Array(payload[..<16384]))
        #expect(events[0].length == 50_000)
        #expect(events[0].missingBytes == UInt64(50_000 - 16384))
        #expect(events[1].payload == [1, 2, 3])
    }

    /// The bytes of whole calls lost before a call reach its event, from
    /// whichever of its chunks got through first.
    @Test func bytesLostBeforeACallReachItsEvent() {
        var assembler = ChunkAssembler(clock: clock)
        var events = ChunkBuilder.chunks(of: [1, 2, 3], chunkSize: 16, callTime: 1_000, lostBefore: 4_096)
            .flatMap { assembler.add($0) }
        var chunks = ChunkBuilder.chunks(of: payload, chunkSize: 16384, callTime: 2_000, lostBefore: 777)
        chunks.removeFirst()  // the first chunk was lost too: the second tells the gap
        for chunk in chunks { events += assembler.add(chunk) }
        events += assembler.flush()
        #expect(events.map(\.lostBefore) == [4_096, 777])
        #expect(events[1].payload.isEmpty)
        #expect(events[1].missingBytes == 50_000)
    }

    @Test func flushEmitsWhatIsPending() {
        var assembler = ChunkAssembler(clock: clock)
        let chunks = ChunkBuilder.chunks(of: payload, chunkSize: 16384)
        _ = assembler.add(chunks[0])
        let flushed = assembler.flush()
        #expect(flushed.count == 1)
        #expect(flushed[0].payload == Array(payload[..<16384]))
        #expect(assembler.pendingCalls == 0)
    }
}

/// A small deterministic generator, so shuffled orders repeat across runs.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
