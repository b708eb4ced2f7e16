import Glibc

/// How the human-readable formats show a wall-clock time: `HH:MM:SS.nnnnnnnnn`
/// in a fixed offset from UTC (the local zone when tlstap starts).
public struct TimestampStyle: Sendable {
    /// Seconds east of UTC.
    public let utcOffsetSeconds: Int

    public init(utcOffsetSeconds: Int) {
        self.utcOffsetSeconds = utcOffsetSeconds
    }

    public static let utc = TimestampStyle(utcOffsetSeconds: 0)

    /// The local zone's offset now.
    public static func local() -> TimestampStyle {
        var now = time(nil)
        var parts = tm()
        localtime_r(&now, &parts)
        return TimestampStyle(utcOffsetSeconds: parts.tm_gmtoff)
    }

    /// Formats nanoseconds since the Unix epoch.
    public func format(_ nanoseconds: UInt64) -> String {
        let seconds = Int(nanoseconds / 1_000_000_000) + utcOffsetSeconds
        let secondOfDay = ((seconds % 86_400) + 86_400) % 86_400
        let fraction = String(nanoseconds % 1_000_000_000)
        return twoDigits(secondOfDay / 3600) + ":" + twoDigits(secondOfDay / 60 % 60) + ":"
            + twoDigits(secondOfDay % 60) + "." + String(repeating: "0", count: 9 - fraction.count) + fraction
    }

    private func twoDigits(_ value: Int) -> String {
        value < 10 ? "0\(value)" : "\(value)"
    }
}
