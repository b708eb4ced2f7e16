import Glibc
import TLSTapCore

/// Writes a regular file with direct I/O, on a thread of its own, so that
/// tlstap goes on rendering while the disk writes (direct writes return only
/// once the device has the bytes).
///
/// Records are rendered straight into an array whose bytes from `start` on
/// begin at an aligned address (`prepare`), so its whole blocks go to the
/// disk with `pwrite` at aligned offsets as they are, without a copy; only
/// the rest of the last block moves to the front of the next array. Two
/// arrays can be on their way to the disk while a third fills; when none is
/// free, `write` waits for one.
///
/// The thread starts when the first array fills, not before: tlstap drops
/// its capabilities after attaching, which only works while it has one
/// thread, and threads started later inherit what it kept. Until then
/// (a file format's header, written at start) writes run on the caller's
/// thread.
final class DirectWriter: @unchecked Sendable {
    /// An array on its way to the disk, or free to be filled again. Only the
    /// thread that has the block from the queue or the free list touches it.
    private final class Block {
        var bytes: [UInt8] = []
    }

    /// What the writing thread does, in order.
    private enum Job {
        /// `length` bytes of whole blocks from `start` on, with direct I/O;
        /// the block then goes back to the free list.
        case blocks(Block, start: Int, length: Int, offset: Int)
        /// The last partial block, through the page cache, so that a reader sees it.
        case partialBlock([UInt8], offset: Int)
        case stop
    }

    /// The alignment of buffers, offsets and lengths: the largest logical block size of Linux's block devices.
    static let block = 4096
    /// Bytes gathered before a direct write: large enough that a write
    /// costs little per byte, small enough to count little in tlstap's RSS.
    static let capacity = 1 << 20
    /// Room past `capacity` for the record that crosses it. A larger record
    /// makes its array grow; that array's blocks are copied once into an
    /// aligned one.
    private static let slack = 256 << 10
    private static let buffers = 3

    private let descriptor: Int32
    private let flags: Int32
    // The caller's thread only.
    /// Where the bytes from the filling array's `start` on go in the file.
    private var offset: Int
    private var thread: pthread_t?
    // Shared with the writing thread, under `mutex`.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let changed = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var jobs: [Job] = []
    private var free: [Block]
    private var failure: Int32?
    /// Set when a direct write was refused (EINVAL): writes go through the
    /// page cache from then on.
    private var refused = false
    /// Whole blocks handed over but written through the page cache (direct
    /// writes refused, or a buffer not aligned). The writing thread's; read
    /// after `finish`.
    private(set) var blocksThroughPageCache = 0

    /// nil when the file is not one to write this way: not at an aligned
    /// offset, opened for appending, shared with standard error (`> file
    /// 2>&1`: its writes would land where this one's go), or on a file system
    /// without direct I/O.
    init?(descriptor: Int32, offset: Int, file: stat) {
        var errors = stat()
        let flags = fcntl(descriptor, F_GETFL)
        // Standard error carries diagnostics, which are few, and every process tlstap runs writes to it too.
        guard descriptor != STDERR_FILENO, offset % Self.block == 0, flags >= 0, flags & O_APPEND == 0 else {
            return nil
        }
        if fstat(STDERR_FILENO, &errors) == 0,
            errors.st_dev == file.st_dev && errors.st_ino == file.st_ino
        {
            return nil
        }
        // Direct I/O is switched on only around each direct write, so that the
        // descriptor is as it was whenever another writer might use it.
        guard fcntl(descriptor, F_SETFL, flags | OutputFile.directIOFlag) == 0 else { return nil }
        _ = fcntl(descriptor, F_SETFL, flags)
        self.descriptor = descriptor
        self.flags = flags
        self.offset = offset
        free = (1..<Self.buffers).map { _ in Block() }
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(changed, nil)
    }

    deinit {
        pthread_cond_destroy(changed)
        pthread_mutex_destroy(mutex)
        changed.deallocate()
        mutex.deallocate()
    }

    /// Empties `buffer` for filling and fills it up to its first aligned
    /// address: the bytes appended after that can go to the disk as they
    /// are, as long as they fit in `room` (beyond it, the array moves).
    /// - Returns: where the file's bytes begin in `buffer`.
    static func prepare(_ buffer: inout [UInt8], room: Int = capacity + slack) -> Int {
        if buffer.capacity > 2 * (block + max(room, capacity + slack)) {
            buffer = []  // grown for a large record: give the memory back
        } else {
            buffer.removeAll(keepingCapacity: true)
        }
        buffer.reserveCapacity(block + room)
        buffer.append(contentsOf: repeatElement(0, count: block))
        let address = buffer.withUnsafeBytes { Int(bitPattern: $0.baseAddress!) }
        let start = (block - address % block) % block
        buffer.removeLast(block - start)
        return start
    }

    /// Hands the whole blocks of `buffer` after `start` to the writing thread
    /// and leaves the rest at the start of a prepared array; with
    /// `partialBlock`, also writes that rest (a flush a reader should see).
    /// - Returns: the errno of a write that failed since the last call, if any.
    func write(_ buffer: inout [UInt8], start: inout Int, partialBlock: Bool) -> Int32? {
        let whole = (buffer.count - start) / Self.block * Self.block
        if whole > 0 {
            let block = takeFreeBlock()
            var next = block.bytes
            block.bytes = []
            let nextStart = Self.prepare(&next)
            next.append(contentsOf: buffer[(start + whole)...])
            var blocksStart = start
            if buffer.withUnsafeBytes({ Int(bitPattern: $0.baseAddress! + start) % Self.block == 0 }) {
                block.bytes = buffer
            } else {
                // The array grew and moved for a large record: copy its blocks once.
                blocksStart = Self.prepare(&block.bytes, room: whole)
                block.bytes.append(contentsOf: buffer[start..<(start + whole)])
            }
            buffer = next
            submit(.blocks(block, start: blocksStart, length: whole, offset: offset), mayStartThread: !partialBlock)
            start = nextStart
            offset += whole
        }
        if partialBlock && buffer.count > start {
            submit(.partialBlock(Array(buffer[start...]), offset: offset))
        }
        return locked { failure }
    }

    /// Waits for the disk, ends the thread and leaves the descriptor's
    /// offset at the end of what was written.
    /// - Parameter pending: bytes after the last whole block handed over,
    ///   already written through the page cache by a `write` with `partialBlock`.
    /// - Returns: the errno of a write that failed, if any.
    @discardableResult
    func finish(pending: Int) -> Int32? {
        if let thread {
            submit(.stop)
            pthread_join(thread, nil)
            self.thread = nil
        }
        lseek(descriptor, off_t(offset + pending), SEEK_SET)
        return locked { failure }
    }

    private func takeFreeBlock() -> Block {
        locked {
            while free.isEmpty { pthread_cond_wait(changed, mutex) }
            return free.removeLast()
        }
    }

    /// Queues `job` for the writing thread, or runs it here while there is none.
    private func submit(_ job: Job, mayStartThread: Bool = false) {
        if thread == nil && !(mayStartThread && startThread()) {
            perform(job)
            return
        }
        locked {
            jobs.append(job)
            pthread_cond_broadcast(changed)
        }
    }

    /// Starts the writing thread; false if it could not be started.
    private func startThread() -> Bool {
        // The thread holds the writer until it has written everything.
        guard let thread = PosixThread.start({ [self] in run() }) else { return false }
        self.thread = thread
        return true
    }

    private func locked<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return body()
    }

    /// The writing thread: runs the jobs in order until `.stop`.
    private func run() {
        while true {
            let job: Job = locked {
                while jobs.isEmpty { pthread_cond_wait(changed, mutex) }
                return jobs.removeFirst()
            }
            if case .stop = job { return }
            perform(job)
        }
    }

    /// Writes what `job` says; gives its block back and notes a failure.
    private func perform(_ job: Job) {
        var error: Int32?
        var used: Block?
        switch job {
        case .stop:
            return
        case .blocks(let block, let start, let length, let offset):
            error = block.bytes.withUnsafeBytes { writeDirect($0.baseAddress! + start, length: length, offset: offset) }
            used = block
        case .partialBlock(let bytes, let offset):
            error = bytes.withUnsafeBytes { pwriteAll($0.baseAddress!, length: bytes.count, offset: offset) }
        }
        locked {
            if let used { free.append(used) }
            if failure == nil { failure = error }
            pthread_cond_broadcast(changed)
        }
    }

    private func writeDirect(_ bytes: UnsafeRawPointer, length: Int, offset: Int) -> Int32? {
        // Buffers are aligned by construction; were one not, it alone goes through the page cache.
        if !refused && Int(bitPattern: bytes) % Self.block == 0 {
            _ = fcntl(descriptor, F_SETFL, flags | OutputFile.directIOFlag)
            let error = pwriteAll(bytes, length: length, offset: offset)
            _ = fcntl(descriptor, F_SETFL, flags)
            guard error == EINVAL else { return error }
            refused = true  // not this device's alignment after all
        }
        blocksThroughPageCache += 1
        return pwriteAll(bytes, length: length, offset: offset)
    }

    private func pwriteAll(_ bytes: UnsafeRawPointer, length: Int, offset: Int) -> Int32? {
        var written = 0
        while written < length {
            let result = pwrite(descriptor, bytes + written, length - written, off_t(offset + written))
            if result < 0 {
                if errno == EINTR { continue }
                return errno
            }
            written += result
        }
        return nil
    }
}
