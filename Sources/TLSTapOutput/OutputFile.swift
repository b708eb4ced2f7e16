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
/// A regular file is written as a stream: once a few MiB are behind the end,
/// their writeback is started and their pages dropped from the page cache
/// (`posix_fadvise(DONTNEED)`), as `dd oflag=nocache` does. A capture of
/// gigabytes then neither pushes the traced server's files out of the cache
/// nor makes the kernel find fresh memory for every page it writes: on this
/// VM kind, page-cache writes into pages never used before cost several times
/// the CPU of writes into recycled ones (bench: 0.4 against 2.4 s of kernel
/// time for 1.5 GB), and that time was most of tlstap's CPU at 64 KiB.
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

    /// Standard output, not closed by `close()`.
    public static func standardOutput() -> OutputFile {
        OutputFile(descriptor: STDOUT_FILENO, name: "stdout", ownsDescriptor: false)
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
    public init(descriptor: Int32, name: String, ownsDescriptor: Bool) {
        self.descriptor = descriptor
        self.name = name
        self.ownsDescriptor = ownsDescriptor
        buffer.reserveCapacity(flushThreshold + 64 * 1024)
        var info = stat()
        let offset = lseek(descriptor, 0, SEEK_CUR)
        if fstat(descriptor, &info) == 0 && info.st_mode & S_IFMT == S_IFREG && offset >= 0 {
            streamed = (Int(offset), Int(offset), Int(offset))
        }
    }

    deinit {
        if ownsDescriptor { close(descriptor) }
    }

    /// Appends bytes, writing out when the buffer is large.
    public func write<Bytes: Sequence>(_ bytes: Bytes) throws(OutputError) where Bytes.Element == UInt8 {
        buffer.append(contentsOf: bytes)
        if buffer.count >= flushThreshold { try flush() }
    }

    /// Appends a string's UTF-8.
    public func write(_ text: String) throws(OutputError) {
        var text = text
        text.withUTF8 { buffer.append(contentsOf: $0) }
        if buffer.count >= flushThreshold { try flush() }
    }

    /// Lets `render` append to the buffer in place (a record rendered
    /// without an intermediate copy), writing out when the buffer is large.
    public func append(_ render: (inout [UInt8]) -> Void) throws(OutputError) {
        render(&buffer)
        if buffer.count >= flushThreshold { try flush() }
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
