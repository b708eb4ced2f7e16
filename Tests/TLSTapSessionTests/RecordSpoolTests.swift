import Glibc
import Synchronization
import TLSTapCore
import Testing

@testable import TLSTapSession

/// `RecordSpool` between a drainer thread and the renderer.
@Suite struct RecordSpoolTests {
    /// The records of a batch, by their first byte.
    static func firstBytes(_ batch: [UInt8]) -> [UInt8] {
        var found: [UInt8] = []
        RecordSpool.forEach(in: batch) { found.append($0[0]) }
        return found
    }

    /// What the renderer holds counts toward the limit: with 4 MiB allowed
    /// and a 3 MiB batch being rendered, the drainer publishes one more MiB
    /// and then waits until the renderer takes again (it used to go on to 4
    /// MiB more); every record comes out once, in order.
    @Test func theBatchBeingRenderedCountsTowardTheLimit() throws {
        let spool = RecordSpool(limitBytes: 4 << 20)
        // With its 4-byte length, a record of a MiB: each publishes at once.
        let record = [UInt8](repeating: 0, count: (1 << 20) - 4)
        let add = { (first: UInt8) in
            var bytes = record
            bytes[0] = first
            bytes.withUnsafeBytes { spool.add($0) }
        }
        for first: UInt8 in 0..<3 { add(first) }
        var batch: [UInt8] = []
        spool.take(waitingMilliseconds: 0, into: &batch)
        #expect(Self.firstBytes(batch) == [0, 1, 2])

        let published = Atomic<Int>(0)
        let drainer = try #require(
            PosixThread.start {
                for first: UInt8 in 3..<5 {
                    add(first)
                    published.add(1, ordering: .releasing)
                }
            })
        usleep(300_000)
        #expect(published.load(ordering: .acquiring) == 1, "the second MiB waits while 3 MiB are being rendered")
        spool.take(waitingMilliseconds: 0, into: &batch)
        #expect(Self.firstBytes(batch) == [3])
        pthread_join(drainer, nil)
        #expect(published.load(ordering: .acquiring) == 2)
        spool.take(waitingMilliseconds: 0, into: &batch)
        #expect(Self.firstBytes(batch) == [4])
    }

    /// A batch of a burst gives its memory back once rendered: the arrays
    /// the renderer and the drainer pass between them keep at most
    /// `keptCapacity` each, not the burst's size.
    @Test func aBurstsMemoryIsGivenBack() {
        let spool = RecordSpool(limitBytes: 64 << 20)
        let record = [UInt8](repeating: 1, count: 64 << 10)
        for _ in 0..<256 { record.withUnsafeBytes { spool.add($0) } }
        spool.publish()
        var batch: [UInt8] = []
        spool.take(waitingMilliseconds: 0, into: &batch)
        #expect(batch.count == 256 * (4 + (64 << 10)))
        // Both arrays come back to the renderer in turn.
        for _ in 0..<2 {
            spool.take(waitingMilliseconds: 0, into: &batch)
            #expect(batch.isEmpty && batch.capacity <= RecordSpool.keptCapacity, "capacity \(batch.capacity)")
        }
    }
}
