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
/// (`O_DIRECT`): whole 4 KiB blocks go from an aligned buffer to the disk,
/// bypassing the page cache. On this VM kind, writing through the page cache
/// cost 1.7 s of kernel time per GB (copying, allocating and reclaiming
/// pages, writeback), most of tlstap's CPU at 64 KiB responses; direct
/// writes cost 0.06 s per GB. At each `flush()` the last partial block is
/// written through the page cache as well, so a reader (`tail -f`) sees
/// every complete record; the next direct write covers it again.
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
    private var buffer: [UInt8] = []
    private let flushThreshold = 256 * 1024
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

    /// The O_DIRECT flag of this architecture.
    static let directIOFlag = O_DIRECT

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
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw .openFailed(name: path, errno: errno) }
        // An existing file keeps its mode through O_CREAT: make it private too.
        // A FIFO or a device (a live reader such as wireshark -k -i FIFO, or
        // /dev/null) is written as it is.
        var info = stat()
        guard fstat(descriptor, &info) == 0 else {
            let code = errno
            close(descriptor)
            throw .openFailed(name: path, errno: code)
        }
        switch info.st_mode & S_IFMT {
        case S_IFREG:
            guard fchmod(descriptor, 0o600) == 0 else {
                let code = errno
                close(descriptor)
                throw .openFailed(name: path, errno: code)
            }
        case S_IFIFO, S_IFCHR:
            break
        default:
            close(descriptor)
            throw .openFailed(name: path, errno: EISDIR)
        }
        return OutputFile(descriptor: descriptor, name: path, ownsDescriptor: true)
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
        buffer.reserveCapacity(flushThreshold + 64 * 1024)
        var info = stat()
        let offset = lseek(descriptor, 0, SEEK_CUR)
        if fstat(descriptor, &info) == 0 && info.st_mode & S_IFMT == S_IFREG && offset >= 0 {
            direct = directIO ? DirectWriter(descriptor: descriptor, offset: Int(offset), file: info) : nil
            if direct == nil { streamed = (Int(offset), Int(offset), Int(offset)) }
        }
    }

    deinit {
        try? direct?.finish()
        if ownsDescriptor { close(descriptor) }
    }

    /// Appends bytes, writing out when the buffer is large.
    public func write<Bytes: Sequence>(_ bytes: Bytes) throws(OutputError) where Bytes.Element == UInt8 {
        buffer.append(contentsOf: bytes)
        if buffer.count >= flushThreshold { try writeOut(partialBlock: false) }
    }

    /// Appends a string's UTF-8.
    public func write(_ text: String) throws(OutputError) {
        var text = text
        text.withUTF8 { buffer.append(contentsOf: $0) }
        if buffer.count >= flushThreshold { try writeOut(partialBlock: false) }
    }

    /// Lets `render` append to the buffer in place (a record rendered
    /// without an intermediate copy), writing out when the buffer is large.
    public func append(_ render: (inout [UInt8]) -> Void) throws(OutputError) {
        render(&buffer)
        if buffer.count >= flushThreshold { try writeOut(partialBlock: false) }
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

    /// Writes out everything buffered.
    public func flush() throws(OutputError) {
        try writeOut(partialBlock: true)
    }

    /// Writes out what is buffered; with direct I/O, the last partial block
    /// only when `partialBlock` is set (a flush a reader should see).
    private func writeOut(partialBlock: Bool) throws(OutputError) {
        if let direct {
            do throws(DirectWriter.Failure) {
                try direct.write(buffer, partialBlock: partialBlock)
                buffer.removeAll(keepingCapacity: true)
                return
            } catch {
                switch error {
                case .unsupported(let offset, let unwritten):
                    // The file system refused direct I/O after all: stream from here.
                    self.direct = nil
                    streamed = (offset, offset, offset)
                    buffer = unwritten
                case .failed(let code):
                    buffer.removeAll(keepingCapacity: true)
                    throw .writeFailed(name: name, errno: code)
                }
            }
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
private let O_DIRECT: Int32 = 0o40000
#elseif arch(arm64)
private let O_DIRECT: Int32 = 0o200000
#endif

/// Writes a regular file with direct I/O: whole blocks from an aligned
/// buffer at aligned offsets, with `pwrite`, so the descriptor's own offset
/// is set to the logical end after each write for whoever uses it next.
private final class DirectWriter {
    enum Failure: Error {
        /// The file system refused direct I/O (EINVAL): `unwritten` belongs at `offset`.
        case unsupported(offset: Int, unwritten: [UInt8])
        case failed(errno: Int32)
    }

    /// The alignment of buffer, offsets and lengths: the largest logical block size of Linux's block devices.
    static let block = 4096
    /// Bytes gathered before a direct write: large enough that a write
    /// costs little per byte, small enough to count little in tlstap's RSS.
    static let capacity = 2 << 20

    private let descriptor: Int32
    private let flags: Int32
    private let staging: UnsafeMutableRawPointer
    /// Bytes in `staging`, from `offset` in the file on.
    private var count = 0
    private var offset: Int

    /// nil when the file is not one to write this way: not at an aligned
    /// offset, opened for appending, shared with standard error (`> file
    /// 2>&1`: its writes would land where this one's go), or on a file system
    /// without direct I/O.
    init?(descriptor: Int32, offset: Int, file: stat) {
        var errors = stat()
        let flags = fcntl(descriptor, F_GETFL)
        guard offset % Self.block == 0, flags >= 0, flags & O_APPEND == 0 else { return nil }
        if descriptor != STDERR_FILENO, fstat(STDERR_FILENO, &errors) == 0,
            errors.st_dev == file.st_dev && errors.st_ino == file.st_ino
        {
            return nil
        }
        // Direct I/O is switched on only around each direct write, so that the
        // descriptor is as it was whenever another writer might use it.
        guard fcntl(descriptor, F_SETFL, flags | O_DIRECT) == 0 else { return nil }
        _ = fcntl(descriptor, F_SETFL, flags)
        self.descriptor = descriptor
        self.flags = flags
        self.offset = offset
        staging = UnsafeMutableRawPointer.allocate(byteCount: Self.capacity, alignment: Self.block)
    }

    deinit {
        staging.deallocate()
    }

    /// Gathers `bytes`, writes the whole blocks once the buffer is full, and
    /// with `partialBlock` everything (the last partial block through the page cache).
    func write(_ bytes: [UInt8], partialBlock: Bool) throws(Failure) {
        var rest = bytes[...]
        while !rest.isEmpty {
            let taken = min(rest.count, Self.capacity - count)
            rest.withUnsafeBytes { (staging + count).copyMemory(from: $0.baseAddress!, byteCount: taken) }
            count += taken
            rest = rest.dropFirst(taken)
            if count == Self.capacity {
                do throws(Failure) { try writeBlocks() } catch {
                    guard case .unsupported(let offset, let unwritten) = error else { throw error }
                    throw .unsupported(offset: offset, unwritten: unwritten + rest)
                }
            }
        }
        if partialBlock {
            try writeBlocks()
            try writePartialBlock()
        }
    }

    /// Writes what is gathered.
    func finish() throws(Failure) {
        try writeBlocks()
        try writePartialBlock()
    }

    /// Writes the whole blocks gathered and keeps the rest at the start of the buffer.
    private func writeBlocks() throws(Failure) {
        let whole = count / Self.block * Self.block
        guard whole > 0 else { return }
        _ = fcntl(descriptor, F_SETFL, flags | O_DIRECT)
        defer { _ = fcntl(descriptor, F_SETFL, flags) }
        try pwriteAll(length: whole)
        offset += whole
        count -= whole
        if count > 0 { staging.copyMemory(from: staging + whole, byteCount: count) }
    }

    /// Writes the last partial block through the page cache; it stays in
    /// the buffer, and the next direct write covers it again.
    private func writePartialBlock() throws(Failure) {
        guard count > 0 else { return }
        try pwriteAll(length: count)
    }

    private func pwriteAll(length: Int) throws(Failure) {
        var written = 0
        while written < length {
            let result = pwrite(descriptor, staging + written, length - written, off_t(offset + written))
            if result < 0 {
                if errno == EINTR { continue }
                if errno == EINVAL && written == 0 {
                    throw .unsupported(offset: offset, unwritten: Array(UnsafeRawBufferPointer(start: staging, count: count)))
                }
                throw .failed(errno: errno)
            }
            written += result
        }
        lseek(descriptor, off_t(offset + length), SEEK_SET)
    }
}
