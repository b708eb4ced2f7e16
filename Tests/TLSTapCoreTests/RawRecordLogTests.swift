import Foundation
import TLSTapCore
import Testing

@Test func rawRecordLogRoundTrips() throws {
    var log = RawRecordLog.magic
    let records: [[UInt8]] = [[1, 2, 3], [], Array(repeating: 9, count: 300)]
    for record in records { record.withUnsafeBytes { RawRecordLog.append($0, to: &log) } }
    #expect(try RawRecordLog.records(in: log) == records)
    #expect(throws: RawRecordLog.ReadError.badMagic) { try RawRecordLog.records(in: [1, 2, 3]) }
    #expect(throws: RawRecordLog.ReadError.truncated(atOffset: 12)) {
        try RawRecordLog.records(in: Array(log.dropLast(1)).prefix(12 + 2).map { $0 })
    }
}

@Test func notesRoundTripAndAreToldFromKernelRecords() throws {
    let notes: [RawRecordLog.Note] = [
        .clock(WallClock(offsetNanoseconds: -1_764_590_000_123_456_789)),
        .clock(WallClock(offsetNanoseconds: 1_764_590_000_123_456_789)),
        .lost(LostCounts(records: 3, bytes: 0x1_0000_0001), timeNanoseconds: 1_764_590_000_000_000_007),
        .stop(timeNanoseconds: UInt64.max),
    ]
    var log = RawRecordLog.magic
    for note in notes { RawRecordLog.append(note, to: &log) }
    let read = try RawRecordLog.records(in: log)
    #expect(read.map(\.count) == [16, 16, 32, 16])
    #expect(read.map { $0.withUnsafeBytes { RawRecordLog.Note($0) } } == notes)
    #expect(read.allSatisfy { $0.withUnsafeBytes { RawRecordLog.Note.isNote($0) } })
    // The stop note's time, little-endian after the kind and its padding.
    #expect(read[3] == [0x82, 0, 0, 0, 0, 0, 0, 0] + Array(repeating: 0xff, count: 8))
    // Kernel records are not notes, and a note cut short is not read as one.
    let data = try #require(Bundle.module.url(forResource: "Fixtures/python-post-40000", withExtension: "tlstapraw"))
    let kernel = try RawRecordLog.records(in: Array(try Data(contentsOf: data)))
    #expect(!kernel.isEmpty)
    #expect(kernel.allSatisfy { !$0.withUnsafeBytes { RawRecordLog.Note.isNote($0) } })
    #expect(read[2].prefix(24).withUnsafeBytes { RawRecordLog.Note($0) } == nil)
}

/// Records larger than the reader's piece, and records across pieces, come
/// out whole from a file; a file cut inside a record gives every record
/// before the cut, then the error.
@Test func aFileIsReadInPiecesWithRecordsWhole() throws {
    let records: [[UInt8]] =
        [
            [7], Array(repeating: 1, count: 3 << 20), Array(repeating: 2, count: 5 << 20), [],
            (0..<200).map { UInt8($0) },
            Array(repeating: 3, count: (4 << 20) - 3),
        ] + (0..<1000).map { Array(repeating: UInt8($0 & 0xff), count: $0 * 7) }
    var log = RawRecordLog.magic
    for record in records { record.withUnsafeBytes { RawRecordLog.append($0, to: &log) } }
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("tlstap-log-\(UUID().uuidString)").path
    defer { unlink(path) }

    /// The records read from `bytes` in a file, up to `limit`; those read before an error, and the error.
    func read(_ bytes: [UInt8], stoppingAfter limit: Int = .max) throws -> ([[UInt8]], RawRecordLog.ReadError?) {
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let descriptor = open(path, O_RDONLY)
        defer { close(descriptor) }
        var reader = RawRecordLog.Reader(descriptor: descriptor)
        var read: [[UInt8]] = []
        do {
            try reader.readRecords { record in
                read.append(Array(record))
                return read.count < limit
            }
        } catch {
            return (read, error)
        }
        return (read, nil)
    }
    let whole = try read(log)
    #expect(whole.0 == records && whole.1 == nil)
    let first = try read(log, stoppingAfter: 3)
    #expect(first.0 == Array(records.prefix(3)) && first.1 == nil)
    // Cut inside the 5 MiB record: the two before it, then where it began.
    let cut = try read(Array(log.prefix(8 + (4 + 1) + (4 + (3 << 20)) + 4 + 1000)))
    #expect(cut.1 == .truncated(atOffset: 8 + 5 + 4 + (3 << 20) + 4))
    #expect(cut.0 == Array(records.prefix(2)))
    // A length of 4 GiB at the end of a small file is found cut short at
    // once, from the file's size, not after reading (and allocating) up to it.
    let huge = try read(RawRecordLog.magic + [0xff, 0xff, 0xff, 0xff, 1, 2, 3])
    #expect(huge.0.isEmpty && huge.1 == .truncated(atOffset: 12))
}

/// The ring format of `tlstap record`: the first block's notes, the ring's
/// records as the kernel laid them out (discarded ones skipped, padding
/// stepped over), then the trailer's notes; a file without its end (tlstap
/// killed) gives the records that are whole, then where the cut one began.
@Test func aRingFormatFileGivesItsNotesAndRecords() throws {
    let clock = RawRecordLog.Note.clock(WallClock(offsetNanoseconds: 1_764_590_000_000_000_000))
    let lost = RawRecordLog.Note.lost(LostCounts(records: 2, bytes: 70), timeNanoseconds: 5)
    let stop = RawRecordLog.Note.stop(timeNanoseconds: 6)
    let records: [(bytes: [UInt8], discarded: Bool)] = [
        ([1, 2, 3], false), (Array(repeating: 7, count: 16), true), (Array(repeating: 9, count: 5 << 20), false),
        ([], false), ((0..<13).map { UInt8($0) }, false),
    ]
    var ring: [UInt8] = []
    for (bytes, discarded) in records {
        let word = UInt32(bytes.count) | (discarded ? 1 << 30 : 0)
        withUnsafeBytes(of: word.littleEndian) { ring.append(contentsOf: $0) }
        ring += [0xaa, 0xbb, 0xcc, 0xdd] + bytes  // the page offset the kernel keeps there, then the sample
        ring += Array(repeating: 0xee, count: (8 - ring.count % 8) % 8)
    }
    let header = RawRecordLog.ringHeader([clock])
    #expect(header.count == RawRecordLog.ringBlock && header.starts(with: RawRecordLog.ringMagic))
    let file = header + ring + RawRecordLog.ringTrailer([lost, stop], ringBytes: UInt64(ring.count))
    let expected = [clock.bytes] + records.filter { !$0.discarded }.map(\.bytes) + [lost.bytes, stop.bytes]
    #expect(try RawRecordLog.records(in: file) == expected)

    let path = FileManager.default.temporaryDirectory.appendingPathComponent("tlstap-ring-\(UUID().uuidString)").path
    defer { unlink(path) }
    func read(_ bytes: [UInt8]) throws -> ([[UInt8]], RawRecordLog.ReadError?) {
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let descriptor = open(path, O_RDONLY)
        defer { close(descriptor) }
        var reader = RawRecordLog.Reader(descriptor: descriptor)
        var read: [[UInt8]] = []
        do {
            try reader.readRecords {
                read.append(Array($0))
                return true
            }
        } catch { return (read, error) }
        return (read, nil)
    }
    let whole = try read(file)
    #expect(whole.0 == expected && whole.1 == nil)
    // Killed inside the large record: no trailer, the records before it, then where it began.
    let cut = try read(Array((header + ring).prefix(header.count + 8 + 8 + 8 + 16 + 8 + 1000)))
    #expect(cut.0 == [clock.bytes, [1, 2, 3]])
    #expect(cut.1 == .truncated(atOffset: header.count + 8 + 8 + 8 + 16 + 8))
    // Killed between records: everything, and no error.
    let between = try read(header + ring)
    #expect(between.0 == Array(expected.dropLast(2)) && between.1 == nil)
}
