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
public final class OutputFile {
    /// Name used in error messages (`stdout` or the path).
    public let name: String
    /// The file descriptor written to.
    public let descriptor: Int32
    private let ownsDescriptor: Bool
    private var buffer: [UInt8] = []
    private let flushThreshold = 256 * 1024

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
        if let failure {
            throw failure == EPIPE ? .readerClosed : .writeFailed(name: name, errno: failure)
        }
    }
}
