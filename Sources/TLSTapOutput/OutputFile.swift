import Glibc

/// Why output could not be written.
public enum OutputError: Error, Equatable, CustomStringConvertible {
    /// The reader went away (EPIPE): not a failure, the user closed the pipe.
    case readerClosed
    /// Writing to `name` failed with `errno`.
    case writeFailed(name: String, errno: Int32)
    /// Creating or opening `name` failed with `errno`.
    case openFailed(name: String, errno: Int32)

    public var description: String {
        switch self {
        case .readerClosed: "the reader closed the output"
        case .writeFailed(let name, let code): "cannot write to \(name): \(String(cString: strerror(code)))"
        case .openFailed(let name, let code): "cannot create \(name): \(String(cString: strerror(code)))"
        }
    }
}

/// A buffered writer that owns (or borrows) a file descriptor.
///
/// Events are rendered into an in-memory buffer and written in large pieces;
/// `flush()` pushes out what is buffered. A closed pipe is reported as
/// `OutputError.readerClosed` so that `tlstap … | head` ends cleanly.
///
/// A regular file tlstap has to itself is written with direct I/O
/// (`O_DIRECT`): records are rendered into aligned buffers, whose whole
/// 4 KiB blocks go to the disk as they are, bypassing the page cache, on a
/// thread of their own (a direct write returns once the device has the
/// bytes). On this VM kind, writing through the page cache cost 1.7 s of
/// kernel time per GB (copying, allocating and reclaiming pages,
/// writeback), most of tlstap's CPU at 64 KiB responses; direct writes
/// cost 0.06 s per GB. At each `flush()`
/// the last partial block is written through the page cache as well, so a
/// reader (`tail -f`) sees every complete record moments later; the next
/// direct write covers it again. `finish()` waits until all is written.
///
/// Other regular files (opened for appending, shared with stderr or with a
/// command tlstap runs, or on a file system without direct I/O) are
/// written as a stream: once a few MiB
/// are behind the end, their writeback is started and their pages dropped
/// from the page cache (`posix_fadvise(DONTNEED)`), as `dd oflag=nocache`
/// does. A capture of gigabytes pushes neither way the traced server's
/// files out of the cache.
public final class OutputFile {
    /// Name used in error messages (`stdout` or the path).
    public let name: String
    /// The file descriptor written to.
    public let descriptor: Int32
    private let ownsDescriptor: Bool
    /// Rendered bytes not written yet, from `start` on (with direct I/O,
    /// the bytes before `start` only align it). Touched per record, from
    /// one thread, and `render` never reaches back into this file: the
    /// runtime's exclusivity check is skipped.
    @exclusivity(unchecked) private var buffer: [UInt8] = []
    @exclusivity(unchecked) private var start = 0
    /// Bytes gathered before a write.
    private let flushThreshold: Int
    /// For a regular file: the offset the next write goes to, and where the
    /// part not yet handed to writeback starts. nil for pipes and devices.
    private var streamed: (end: Int, writebackFrom: Int, start: Int)?
    /// How much is handed to writeback at a time; pages are dropped two
    /// windows later, when their writeback has had time to finish.
    private static let streamWindow = 8 << 20
    /// Direct I/O state, for a regular file written that way.
    private var direct: DirectWriter?

    /// Whether the file is written with direct I/O.
    var isDirect: Bool { direct != nil }

    /// Set by `finish()`: how many times whole blocks meant for a direct
    /// write went through the page cache instead.
    private(set) var blocksThroughPageCache = 0

    /// The O_DIRECT flag of this architecture.
    static let directIOFlag = directIO

    /// Standard output, not closed by `close()`.
    /// - Parameter sharedWithCommand: a command tlstap runs writes to the
    ///   same open file (it inherits it), so the file is written through
    ///   the page cache, where each side's writes land after the other's.
    public static func standardOutput(sharedWithCommand: Bool = false) -> OutputFile {
        OutputFile(descriptor: STDOUT_FILENO, name: "stdout", ownsDescriptor: false, directIO: !sharedWithCommand)
    }

    /// Creates `path` for writing: mode 0600, never through a symlink, and
    /// never over an existing file that is not a regular file.
    public static func create(path: String) throws(OutputError) -> OutputFile {
        let descriptor = try openPrivate(path: path, allowing: [S_IFREG, S_IFIFO, S_IFCHR])
        return OutputFile(descriptor: descriptor, name: path, ownsDescriptor: true)
    }

    /// Opens `path` for writing, truncated: mode 0600 (also when it
    /// existed), never through a symlink. A FIFO or a device (a live reader
    /// such as wireshark -k -i FIFO, or /dev/null) is written as it is.
    /// - Parameter types: the file types (`S_IFREG`, …) accepted.
    static func openPrivate(path: String, allowing types: [mode_t]) throws(OutputError) -> Int32 {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw .openFailed(name: path, errno: errno) }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else {
            let code = errno
            close(descriptor)
            throw .openFailed(name: path, errno: code)
        }
        let type = info.st_mode & S_IFMT
        guard types.contains(type) else {
            close(descriptor)
            throw .openFailed(name: path, errno: type == S_IFDIR ? EISDIR : EINVAL)
        }
        // An existing file keeps its mode through O_CREAT: make it private too.
        if type == S_IFREG && fchmod(descriptor, 0o600) != 0 {
            let code = errno
            close(descriptor)
            throw .openFailed(name: path, errno: code)
        }
        return descriptor
    }

    /// - Parameters:
    ///   - descriptor: where the bytes go.
    ///   - name: for error messages.
    ///   - ownsDescriptor: whether `close()` closes it.
    ///   - directIO: whether a regular file may be written with direct I/O
    ///     (not when another process writes to the same open file).
    public init(descriptor: Int32, name: String, ownsDescriptor: Bool, directIO: Bool = true) {
        self.descriptor = descriptor
        self.name = name
        self.ownsDescriptor = ownsDescriptor
        var info = stat()
        let offset = lseek(descriptor, 0, SEEK_CUR)
        if fstat(descriptor, &info) == 0 && info.st_mode & S_IFMT == S_IFREG && offset >= 0 {
            direct = directIO ? DirectWriter(descriptor: descriptor, offset: Int(offset), file: info) : nil
            if direct == nil { streamed = (Int(offset), Int(offset), Int(offset)) }
        }
        if direct != nil {
            flushThreshold = DirectWriter.capacity
            start = DirectWriter.prepare(&buffer)
        } else {
            flushThreshold = 256 * 1024
            buffer.reserveCapacity(flushThreshold + 64 * 1024)
        }
    }

    deinit {
        if let direct {
            _ = direct.write(&buffer, start: &start, partialBlock: true)
            direct.finish(pending: buffer.count - start)
        }
        if ownsDescriptor { close(descriptor) }
    }

    /// Appends bytes, writing out when the buffer is large.
    public func write<Bytes: Sequence>(_ bytes: Bytes) throws(OutputError) where Bytes.Element == UInt8 {
        buffer.append(contentsOf: bytes)
        if buffer.count - start >= flushThreshold { try writeOut(partialBlock: false) }
    }

    /// Appends a string's UTF-8.
    public func write(_ text: String) throws(OutputError) {
        var text = text
        text.withUTF8 { buffer.append(contentsOf: $0) }
        if buffer.count - start >= flushThreshold { try writeOut(partialBlock: false) }
    }

    /// Lets `render` append to the buffer in place (a record rendered
    /// without an intermediate copy), writing out when the buffer is large.
    public func append(_ render: (inout [UInt8]) -> Void) throws(OutputError) {
        render(&buffer)
        if buffer.count - start >= flushThreshold { try writeOut(partialBlock: false) }
    }

    /// Starts writeback of each full window behind the end of a regular
    /// file, and drops the pages of the window two before it (written back
    /// by now; pages still dirty are left alone by the kernel).
    private func releaseWrittenPages(after written: Int) {
        guard var file = streamed else { return }
        file.end += written
        let window = Self.streamWindow
        while file.end - file.writebackFrom >= window {
            // DONTNEED on dirty pages starts their writeback (mm/fadvise.c).
            posix_fadvise(descriptor, off_t(file.writebackFrom), off_t(window), POSIX_FADV_DONTNEED)
            if file.writebackFrom - file.start >= 2 * window {
                posix_fadvise(descriptor, off_t(file.writebackFrom - 2 * window), off_t(window), POSIX_FADV_DONTNEED)
            }
            file.writebackFrom += window
        }
        streamed = file
    }

    /// Writes out everything buffered. With direct I/O, the file holds it
    /// all once the writing thread is done; `finish()` waits for that.
    public func flush() throws(OutputError) {
        try writeOut(partialBlock: true)
    }

    /// Writes out everything buffered and waits until it is in the file;
    /// called once, last (later writes go through the page cache).
    public func finish() throws(OutputError) {
        try writeOut(partialBlock: true)
        guard let direct else { return }
        self.direct = nil
        let failure = direct.finish(pending: buffer.count - start)
        blocksThroughPageCache = direct.blocksThroughPageCache
        buffer = []
        start = 0
        let end = Int(lseek(descriptor, 0, SEEK_CUR))
        streamed = (end, end, end)
        if let failure { throw .writeFailed(name: name, errno: failure) }
    }

    /// Writes out what is buffered; with direct I/O, the last partial block
    /// only when `partialBlock` is set (a flush a reader should see).
    private func writeOut(partialBlock: Bool) throws(OutputError) {
        if let direct {
            if let code = direct.write(&buffer, start: &start, partialBlock: partialBlock) {
                throw .writeFailed(name: name, errno: code)
            }
            return
        }
        var written = 0
        let total = buffer.count
        let failure: Int32? = buffer.withUnsafeBytes { bytes in
            while written < total {
                let result = Glibc.write(descriptor, bytes.baseAddress! + written, total - written)
                if result < 0 {
                    if errno == EINTR { continue }
                    return errno
                }
                written += result
            }
            return nil
        }
        buffer.removeAll(keepingCapacity: true)
        releaseWrittenPages(after: written)
        if let failure {
            throw failure == EPIPE ? .readerClosed : .writeFailed(name: name, errno: failure)
        }
    }
}

/// O_DIRECT, which Glibc's module leaves out (it needs _GNU_SOURCE).
#if arch(x86_64)
    private let directIO: Int32 = 0o40000
#elseif arch(arm64)
    private let directIO: Int32 = 0o200000
#endif

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
private final class DirectWriter: @unchecked Sendable {
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
        guard fcntl(descriptor, F_SETFL, flags | directIO) == 0 else { return nil }
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
        var thread = pthread_t()
        let started = pthread_create(
            &thread, nil,
            { context in
                Unmanaged<DirectWriter>.fromOpaque(context!).takeRetainedValue().run()
                return nil
            }, Unmanaged.passRetained(self).toOpaque())
        guard started == 0 else {
            Unmanaged.passUnretained(self).release()
            return false
        }
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
            _ = fcntl(descriptor, F_SETFL, flags | directIO)
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
