import Glibc

/// Records copied out of the ring buffer by a draining thread of their own,
/// waiting for the thread that renders them.
///
/// Rendering can fall behind for seconds: a large upload turned into text,
/// a pipe whose reader is slow, both cores busy with the traced programs.
/// Had the renderer also drained the ring, the kernel would have dropped
/// records the moment the ring filled. The draining thread only copies each
/// record (memcpy, far faster than any rendering) into pageable memory that
/// grows while the renderer is behind, so the ring is emptied as fast as it
/// fills. Past `limitBytes` waiting or being rendered, the draining thread
/// waits too, and the kernel counts what the ring cannot take, as before.
/// Arrays emptied after a burst keep at most `keptCapacity`: the rest of
/// their memory goes back to the system.
///
/// The drainer gathers a poll's records without a lock and hands them over
/// at once (`publish`): one lock and one wakeup per poll, not per record.
final class RecordSpool: @unchecked Sendable {
    /// Length-prefixed records (a native UInt32, then the bytes), in order.
    private var waiting: [UInt8] = []
    /// The drainer's records not yet published, in the same form; only the drainer touches it.
    private var gathered: [UInt8] = []
    /// The bytes of the batch the renderer took last: still in memory until it takes the next.
    private var rendering = 0
    private var closed = false
    let limitBytes: Int
    /// Gathered bytes past which `add` publishes without waiting for the poll to end
    /// (a poll lasts as long as records keep coming).
    static let publishBytes = 1 << 20
    /// The most memory an emptied array keeps for the next records.
    static let keptCapacity = 8 << 20
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    /// Signalled when records are added (for the renderer) or taken (for the drainer).
    private let changed = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    init(limitBytes: Int) {
        self.limitBytes = limitBytes
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(changed, nil)
    }

    deinit {
        pthread_cond_destroy(changed)
        pthread_mutex_destroy(mutex)
        changed.deallocate()
        mutex.deallocate()
    }

    /// Copies a record in (the drainer); the renderer sees it once published.
    func add(_ record: UnsafeRawBufferPointer) {
        withUnsafeBytes(of: UInt32(record.count)) { gathered.append(contentsOf: $0) }
        gathered.append(contentsOf: record)
        if gathered.count >= Self.publishBytes { publish() }
    }

    /// Hands the gathered records to the renderer (the drainer, after each
    /// poll); waits while `limitBytes` are waiting or being rendered already.
    func publish() {
        guard !gathered.isEmpty else { return }
        locked {
            while waiting.count + rendering >= limitBytes && !closed { pthread_cond_wait(changed, mutex) }
            if waiting.isEmpty {
                swap(&waiting, &gathered)
            } else {
                // Past what an array keeps, room for all it may hold at once, so that a backlog
                // never grows by a copy of itself; untouched, the room takes no memory.
                let needed = waiting.count + gathered.count
                if needed > waiting.capacity && needed > Self.keptCapacity {
                    waiting.reserveCapacity(limitBytes + gathered.count)
                }
                waiting.append(contentsOf: gathered)
            }
            pthread_cond_broadcast(changed)
        }
        gathered.removeAll(keepingCapacity: gathered.capacity <= Self.keptCapacity)
    }

    /// Moves every record waiting into `batch` (emptied first: the renderer
    /// is done with it), after waiting up to `milliseconds` for one.
    func take(waitingMilliseconds milliseconds: Int32, into batch: inout [UInt8]) {
        batch.removeAll(keepingCapacity: batch.capacity <= Self.keptCapacity)
        locked {
            rendering = 0
            if waiting.isEmpty && !closed && milliseconds > 0 {
                var now = timespec()
                clock_gettime(CLOCK_REALTIME, &now)
                let nanoseconds = Int(now.tv_nsec) + Int(milliseconds) * 1_000_000
                var deadline = timespec(
                    tv_sec: now.tv_sec + nanoseconds / 1_000_000_000,
                    tv_nsec: nanoseconds % 1_000_000_000)
                _ = pthread_cond_timedwait(changed, mutex, &deadline)
            }
            swap(&batch, &waiting)
            rendering = batch.count
            pthread_cond_broadcast(changed)
        }
    }

    /// Lets a waiting drainer go (the run is stopping).
    func close() {
        locked {
            closed = true
            pthread_cond_broadcast(changed)
        }
    }

    /// Calls `body` with each record of a batch `take` returned.
    static func forEach(in batch: [UInt8], _ body: (UnsafeRawBufferPointer) -> Void) {
        batch.withUnsafeBytes { bytes in
            var offset = 0
            while offset + 4 <= bytes.count {
                let length = Int(bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
                body(UnsafeRawBufferPointer(rebasing: bytes[(offset + 4)..<(offset + 4 + length)]))
                offset += 4 + length
            }
        }
    }

    private func locked<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return body()
    }
}
