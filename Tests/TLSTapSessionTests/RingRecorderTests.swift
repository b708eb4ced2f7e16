import Foundation
import TLSTapCore
import TLSTapOutput
import Testing

@testable import TLSTapSession

/// `RingRecorder` against a ring whose released bytes are reused at once
/// and a file whose first write stalls until the test lets it go.
@Suite struct RingRecorderTests {
    static let block = RingCaptureFile.block

    /// A stream of ring bytes laid out flat (positions are indexes); a
    /// release scribbles over what it gives back, as the programs would.
    final class FakeRing: RecordedRing, @unchecked Sendable {
        var stream: [UInt8]
        let storage: UnsafeMutableRawBufferPointer
        private(set) var released: UInt64 = 0

        init(bytes: Int) {
            stream = (0..<bytes).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 12) }
            storage = .allocate(byteCount: bytes, alignment: RingRecorderTests.block)
            storage.copyBytes(from: stream)
        }

        deinit { storage.deallocate() }

        func ringBytes(at position: UInt64) -> UnsafeRawPointer? {
            UnsafeRawPointer(storage.baseAddress! + Int(position))
        }

        func releaseRing(through position: UInt64) {
            for index in Int(released)..<Int(position) { storage[index] = 0xEE }
            released = position
        }
    }

    /// The file: what was written where, in order; the first write can be held.
    final class FakeFile: RingWriting, @unchecked Sendable {
        var contents: [UInt8] = []
        var writes: [Range<Int>] = []
        var notes: [RawRecordLog.Note] = []
        let lock = NSLock()
        let stallFirst: Bool
        let entered = DispatchSemaphore(value: 0)
        let letGo = DispatchSemaphore(value: 0)

        init(stallFirst: Bool) {
            self.stallFirst = stallFirst
        }

        func write(ring bytes: UnsafeRawBufferPointer, at position: UInt64) throws(OutputError) {
            let first = lock.withLock { writes.isEmpty }
            if first && stallFirst {
                entered.signal()
                letGo.wait()
            }
            store(bytes, at: Int(position))
        }

        func finish(tail: UnsafeRawBufferPointer, at position: UInt64, notes: [RawRecordLog.Note])
            throws(OutputError)
        {
            store(tail, at: Int(position))
            lock.withLock { self.notes = notes }
        }

        /// The bytes as they are when the write reads them.
        private func store(_ bytes: UnsafeRawBufferPointer, at offset: Int) {
            lock.withLock {
                let end = offset + bytes.count
                if contents.count < end { contents += [UInt8](repeating: 0, count: end - contents.count) }
                contents.replaceSubrange(offset..<end, with: bytes)
                writes.append(offset..<end)
            }
        }
    }

    /// The write under way when the ring is given back reads reused bytes:
    /// they are written again from the copy after it, so the file ends as
    /// the stream was.
    @Test func bytesGivenBackDuringAStalledWriteAreWrittenAgain() throws {
        let ringBytes = 16 * Self.block
        let ring = FakeRing(bytes: 28 * Self.block + 100)
        let file = FakeFile(stallFirst: true)
        let recorder = RingRecorder(ring: ring, file: file, ringBytes: ringBytes, copyLimitBytes: 8 * ringBytes)
        #expect(recorder.startWriting())

        #expect(recorder.take(through: UInt64(4 * Self.block)) == 4 * Self.block)
        file.entered.wait()  // the writer is in its first write, of blocks 0..<4
        // 12 more blocks: 16 wait, more than half the ring: all are copied out, and the ring given back.
        #expect(recorder.take(through: UInt64(16 * Self.block)) == 12 * Self.block)
        #expect(ring.released == UInt64(16 * Self.block))
        #expect(recorder.copyOuts == 1 && recorder.copiedOutBytes == UInt64(16 * Self.block))
        file.letGo.signal()
        #expect(recorder.take(through: UInt64(28 * Self.block)) == 12 * Self.block)
        recorder.finish(through: UInt64(ring.stream.count), trailer: [.stop(timeNanoseconds: 5)])

        #expect(recorder.writeFailure == nil)
        #expect(file.contents == ring.stream)
        #expect(file.notes == [.stop(timeNanoseconds: 5)])
        #expect(ring.released == UInt64(ring.stream.count))
        // Blocks 0..<4 twice: from the ring (reused meanwhile), then from the copy.
        #expect(file.writes.filter { $0 == 0..<(4 * Self.block) }.count == 2)
    }

    /// Without room for copies, nothing is copied and the ring is held: the
    /// kernel counts what it cannot put in, and the file stays exact.
    @Test func withoutRoomForCopiesTheRingIsHeld() throws {
        let ringBytes = 16 * Self.block
        let ring = FakeRing(bytes: 16 * Self.block)
        let file = FakeFile(stallFirst: true)
        let recorder = RingRecorder(ring: ring, file: file, ringBytes: ringBytes, copyLimitBytes: 8 * Self.block)
        #expect(recorder.startWriting())
        _ = recorder.take(through: UInt64(4 * Self.block))
        file.entered.wait()
        _ = recorder.take(through: UInt64(16 * Self.block))
        #expect(ring.released == 0)
        #expect(recorder.copyOuts == 0)
        file.letGo.signal()
        recorder.finish(through: UInt64(ring.stream.count), trailer: [])
        #expect(file.contents == ring.stream)
        // The two ring writes, then the trailer's (no tail: the stream ends on a block).
        let (four, sixteen) = (4 * Self.block, 16 * Self.block)
        #expect(file.writes == [0..<four, four..<sixteen, sixteen..<sixteen])
    }

    /// Before the writer's thread starts, each take is written at once.
    @Test func withoutTheThreadWritesAreMadeAsTheyCome() throws {
        let ring = FakeRing(bytes: 8 * Self.block + 10)
        let file = FakeFile(stallFirst: false)
        let recorder = RingRecorder(ring: ring, file: file, ringBytes: 16 * Self.block, copyLimitBytes: 0)
        #expect(recorder.take(through: UInt64(2 * Self.block)) == 2 * Self.block)
        #expect(file.writes == [0..<(2 * Self.block)] && ring.released == UInt64(2 * Self.block))
        #expect(recorder.take(through: UInt64(2 * Self.block)) == 0)
        #expect(recorder.take(through: UInt64(8 * Self.block)) == 6 * Self.block)
        recorder.finish(through: UInt64(ring.stream.count), trailer: [])
        #expect(file.contents == ring.stream)
        #expect(file.writes.count == 3)
    }
}
