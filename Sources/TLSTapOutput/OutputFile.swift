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
