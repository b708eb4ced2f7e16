import Glibc
import TLSTapCore
import TLSTapLoader
import TLSTapOutput

/// The ring buffer as `RingRecorder` reads it: its bytes by stream
/// position, any ring's size of them in a row, and the consumer position
/// that gives them back to the programs.
protocol RecordedRing: AnyObject {
    func ringBytes(at position: UInt64) -> UnsafeRawPointer?
    func releaseRing(through position: UInt64)
}

/// Where `RingRecorder` writes: `RingCaptureFile`.
protocol RingWriting: AnyObject {
    func write(ring bytes: UnsafeRawBufferPointer, at position: UInt64) throws(OutputError)
    func finish(tail: UnsafeRawBufferPointer, at position: UInt64, notes: [RawRecordLog.Note]) throws(OutputError)
}

extension Tracer: RecordedRing {}
extension RingCaptureFile: RingWriting {}

/// Moves the ring's bytes to the file of `tlstap record` without holding
/// the ring while the disk is slow.
///
/// The ring's pages are written as they lie, by a thread of their own, and
/// given back to the programs once on the disk: no byte copied. But a write
/// can stall for as long as the file system makes it (a journal commit
/// after a large file was deleted took half a second here), and the pages
/// it writes, and every page after them, stay out of the programs' reach
/// meanwhile: a 32 MiB ring filled in 0.1 s at 300 MB/s. So once more than
/// half the ring waits, the bytes still in it are copied out (those of the
/// write under way too, written again after it: the kernel may reuse them
/// while it runs) and the ring is given back at once; copies wait for the
/// disk, up to a limit, beyond which the ring fills and the kernel counts
/// what it drops.
///
/// Before `startWriting`, and if its thread cannot start, writes are made
/// on the caller's thread as they come.
final class RingRecorder: @unchecked Sendable {
    /// Bytes of the stream to write: from the ring itself, or from a copy.
    private struct Piece {
        let start: UInt64
        let end: UInt64
        /// Aligned for direct I/O; nil while the bytes are the ring's.
        let copy: UnsafeMutableRawPointer?
    }

    private let ring: RecordedRing
    private let file: RingWriting
    /// Waiting ring bytes past which they are copied out.
    private let pressureBytes: UInt64
    /// The most the copies may hold.
    private let copyLimitBytes: Int

    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    /// Signalled when bytes are handed over, the run ends, or a write ends.
    private let changed = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var writer: pthread_t?
    // Guarded by `mutex` while the writer runs:
    /// The end of the bytes handed over: whole blocks before it.
    private var handed: UInt64 = 0
    /// Bytes before it are on the disk or in `copies`; from it to `handed`, only in the ring.
    private var ringStart: UInt64 = 0
    /// The consumer position: the ring's bytes before it are the programs' again.
    private var released: UInt64 = 0
    /// Copies to write, oldest first.
    private var copies: [Piece] = []
    private var copiedBytes = 0
    /// The ring's bytes the writer is writing now, if those.
    private var writingRing: Range<UInt64>?
    /// Whether those were copied out meanwhile (and given back).
    private var overtaken = false
    private var closed = false
    /// The first write that failed; nothing is written after it.
    private var failure: OutputError?
    /// How often bytes were copied out, and how many.
    private(set) var copyOuts = 0
    private(set) var copiedOutBytes: UInt64 = 0

    init(ring: RecordedRing, file: RingWriting, ringBytes: Int, copyLimitBytes: Int) {
        self.ring = ring
        self.file = file
        pressureBytes = UInt64(ringBytes / 2)
        self.copyLimitBytes = copyLimitBytes
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(changed, nil)
    }

    deinit {
        stopWriting()  // the writer frees every copy before it ends
        pthread_cond_destroy(changed)
        pthread_mutex_destroy(mutex)
        changed.deallocate()
        mutex.deallocate()
    }

    /// Why a write failed, if one did: nothing is written after it.
    var writeFailure: OutputError? { locked { failure } }

    /// Writes from a thread of its own from now on.
    /// - Returns: false if the thread could not be started (writes stay on the caller's).
    func startWriting() -> Bool {
        guard writer == nil else { return true }
        // `stopWriting` joins the thread before this object goes.
        writer = PosixThread.start { [unowned(unsafe) self] in writeUntilClosed() }
        return writer != nil
    }

    /// Hands over the ring's bytes up to stream position `end` (a block
    /// boundary).
    /// - Returns: how many bytes that added.
    func take(through end: UInt64) -> Int {
        guard writer != nil else {
            guard end > handed, failure == nil else { return 0 }
            let added = Int(end - handed)
            failure = write(Piece(start: handed, end: end, copy: nil))
            handed = end
            ringStart = end
            release(through: end)
            return added
        }
        return locked {
            guard end > handed, failure == nil else { return 0 }
            let added = Int(end - handed)
            handed = end
            if end - released > pressureBytes { copyOut(through: end) }
            pthread_cond_broadcast(changed)
            return added
        }
    }

    /// Writes what was handed over, then the bytes from there to `end`
    /// (the ring's last, committed) and the file's `trailer`; gives the
    /// ring back through `end`.
    func finish(through end: UInt64, trailer: [RawRecordLog.Note]) {
        stopWriting()
        guard failure == nil, let start = ring.ringBytes(at: handed) else { return }
        do {
            try file.finish(
                tail: UnsafeRawBufferPointer(start: start, count: Int(end - handed)), at: handed, notes: trailer)
        } catch {
            failure = error
            return
        }
        handed = end
        release(through: end)
    }

    /// Writes everything handed over, then ends the writer's thread.
    private func stopWriting() {
        guard let thread = writer else { return }
        locked {
            closed = true
            pthread_cond_broadcast(changed)
        }
        pthread_join(thread, nil)
        writer = nil
    }

    /// Copies out every byte the ring holds for the file up to `end`,
    /// those being written included, and gives the ring back; under the
    /// lock. Without room for the copies, the ring is left to fill.
    private func copyOut(through end: UInt64) {
        let waiting = Int(end - released)
        guard copiedBytes + waiting <= copyLimitBytes else { return }
        let written = overtaken ? nil : writingRing
        var pieces: [Piece] = []
        for range in [written, ringStart..<end].compactMap({ $0 }) where !range.isEmpty {
            guard let piece = copied(range) else {
                for piece in pieces { free(piece.copy) }
                return
            }
            pieces.append(piece)
        }
        copies += pieces
        copiedBytes += waiting
        overtaken = overtaken || written != nil
        ringStart = end
        copyOuts += 1
        copiedOutBytes += UInt64(waiting)
        release(through: end)
    }

    /// A copy of the ring's bytes in `range`; nil without the memory.
    private func copied(_ range: Range<UInt64>) -> Piece? {
        let count = Int(range.upperBound - range.lowerBound)
        var aligned: UnsafeMutableRawPointer?
        guard posix_memalign(&aligned, RingCaptureFile.block, count) == 0, let aligned else { return nil }
        guard let bytes = ring.ringBytes(at: range.lowerBound) else {
            free(aligned)
            return nil
        }
        aligned.copyMemory(from: bytes, byteCount: count)
        return Piece(start: range.lowerBound, end: range.upperBound, copy: aligned)
    }

    /// The writer's thread: the ring's bytes first (the programs wait for
    /// them), then copies, until closed and done.
    private func writeUntilClosed() {
        pthread_mutex_lock(mutex)
        while true {
            if ringStart < handed {
                let piece = Piece(start: ringStart, end: handed, copy: nil)
                let failed = failure != nil
                ringStart = handed
                writingRing = piece.start..<piece.end
                pthread_mutex_unlock(mutex)
                let error = failed ? nil : write(piece)
                pthread_mutex_lock(mutex)
                failure = failure ?? error
                if !overtaken { release(through: piece.end) }
                writingRing = nil
                overtaken = false
            } else if !copies.isEmpty {
                let piece = copies.removeFirst()
                let failed = failure != nil
                pthread_mutex_unlock(mutex)
                let error = failed ? nil : write(piece)
                free(piece.copy)
                pthread_mutex_lock(mutex)
                failure = failure ?? error
                copiedBytes -= Int(piece.end - piece.start)
            } else if closed {
                break
            } else {
                pthread_cond_wait(changed, mutex)
            }
        }
        pthread_mutex_unlock(mutex)
    }

    /// Writes one piece.
    /// - Returns: why it could not be written, if it could not.
    private func write(_ piece: Piece) -> OutputError? {
        guard let bytes = piece.copy.map({ UnsafeRawPointer($0) }) ?? ring.ringBytes(at: piece.start) else {
            return nil
        }
        do {
            try file.write(
                ring: UnsafeRawBufferPointer(start: bytes, count: Int(piece.end - piece.start)), at: piece.start)
        } catch {
            return error
        }
        return nil
    }

    private func release(through position: UInt64) {
        guard position > released else { return }
        released = position
        ring.releaseRing(through: position)
    }

    private func locked<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return body()
    }
}
