import Testing
import TLSTapCore

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
