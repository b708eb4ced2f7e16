import Glibc
import TLSTapCore

/// The file of `tlstap record`, in `RawRecordLog`'s ring format: the ring
/// buffer's bytes are written as they lie in the ring's own pages, with
/// direct I/O, so no record is copied by tlstap (the device reads them).
/// The ring's bytes start at an aligned offset, and are handed over in
/// whole blocks; the last partial block goes with the trailer.
public final class RingCaptureFile {
    public let name: String
    private let descriptor: Int32
    private var finished = false

    /// The alignment of the ring's bytes in the file, and of every write.
    public static let block = RawRecordLog.ringBlock

    /// Creates `path`: mode 0600, a regular file.
    public init(path: String) throws(OutputError) {
        name = path
        descriptor = try OutputFile.openPrivate(path: path, allowing: [S_IFREG])
        // Where the file system has no direct I/O, the same writes go through the page cache.
        _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) | OutputFile.directIOFlag)
    }

    /// Writes the first block, with `notes`, before any ring bytes.
    public func start(notes: [RawRecordLog.Note]) throws(OutputError) {
        try writeAligned(RawRecordLog.ringHeader(notes), at: 0)
    }

    deinit {
        close(descriptor)
    }

    /// Writes ring bytes that begin at stream position `position`; both it
    /// and the length are multiples of `block`, and `bytes` starts at a
    /// page of the ring.
    public func write(ring bytes: UnsafeRawBufferPointer, at position: UInt64) throws(OutputError) {
        precondition(
            bytes.count % Self.block == 0 && position % UInt64(Self.block) == 0, "ring writes are whole blocks")
        try writeAll(bytes, at: Self.block + Int(position))
    }

    /// Writes the ring's last bytes, from `position` (a block boundary) to
    /// the stream's end, and the trailer with `notes`; the file then holds
    /// exactly the capture.
    public func finish(tail: UnsafeRawBufferPointer, at position: UInt64, notes: [RawRecordLog.Note])
        throws(OutputError)
    {
        guard !finished else { return }
        finished = true
        let trailer = RawRecordLog.ringTrailer(notes, ringBytes: position + UInt64(tail.count))
        let length = tail.count + trailer.count
        let padded = (length + Self.block - 1) / Self.block * Self.block
        let offset = Self.block + Int(position)
        var aligned: UnsafeMutableRawPointer?
        guard posix_memalign(&aligned, Self.block, max(padded, Self.block)) == 0, let aligned else {
            throw .writeFailed(name: name, errno: ENOMEM)
        }
        defer { free(aligned) }
        aligned.initializeMemory(as: UInt8.self, repeating: 0, count: padded)
        if let base = tail.baseAddress { aligned.copyMemory(from: base, byteCount: tail.count) }
        trailer.withUnsafeBytes { (aligned + tail.count).copyMemory(from: $0.baseAddress!, byteCount: trailer.count) }
        try writeAll(UnsafeRawBufferPointer(start: aligned, count: padded), at: offset)
        guard ftruncate(descriptor, off_t(offset + length)) == 0 else { throw .writeFailed(name: name, errno: errno) }
    }

    /// Writes `bytes` from an aligned copy (the first block).
    private func writeAligned(_ bytes: [UInt8], at offset: Int) throws(OutputError) {
        var aligned: UnsafeMutableRawPointer?
        guard posix_memalign(&aligned, Self.block, bytes.count) == 0, let aligned else {
            throw .writeFailed(name: name, errno: ENOMEM)
        }
        defer { free(aligned) }
        bytes.withUnsafeBytes { aligned.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        try writeAll(UnsafeRawBufferPointer(start: aligned, count: bytes.count), at: offset)
    }

    /// A file system that takes the O_DIRECT flag but refuses direct writes
    /// (overlayfs on tmpfs before Linux 6.6, as in containers) gets the
    /// same writes through the page cache. Returns whether it was direct.
    private func stopsDirectIO() -> Bool {
        let flags = fcntl(descriptor, F_GETFL)
        guard flags >= 0, flags & OutputFile.directIOFlag != 0 else { return false }
        return fcntl(descriptor, F_SETFL, flags & ~OutputFile.directIOFlag) == 0
    }

    private func writeAll(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws(OutputError) {
        var done = 0
        while done < bytes.count {
            let result = pwrite(descriptor, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
            if result < 0 {
                if errno == EINTR || (errno == EINVAL && stopsDirectIO()) { continue }
                throw .writeFailed(name: name, errno: errno)
            }
            done += result
        }
    }
}
