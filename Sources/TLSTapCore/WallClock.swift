#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Converts CLOCK_MONOTONIC readings (what `bpf_ktime_get_ns` returns) into
/// wall-clock time, using the offset between the two clocks measured once.
public struct WallClock: Sendable, Equatable {
    /// Realtime minus monotonic, in nanoseconds.
    public let offsetNanoseconds: Int64

    /// - Parameter offsetNanoseconds: realtime minus monotonic.
    public init(offsetNanoseconds: Int64) {
        self.offsetNanoseconds = offsetNanoseconds
    }

    /// Measures the offset now.
    public static func measure() -> WallClock {
        WallClock(offsetNanoseconds: nanoseconds(CLOCK_REALTIME) - nanoseconds(CLOCK_MONOTONIC))
    }

    /// The wall-clock time now, in nanoseconds since the Unix epoch.
    public static func nowNanoseconds() -> UInt64 {
        UInt64(clamping: nanoseconds(CLOCK_REALTIME))
    }

    /// CLOCK_MONOTONIC now, in nanoseconds: for intervals.
    public static func monotonicNanoseconds() -> UInt64 {
        UInt64(clamping: nanoseconds(CLOCK_MONOTONIC))
    }

    /// The wall-clock time, in nanoseconds since the Unix epoch, of a monotonic reading.
    public func wallNanoseconds(fromMonotonic monotonic: UInt64) -> UInt64 {
        UInt64(clamping: Int64(clamping: monotonic) &+ offsetNanoseconds)
    }

    private static func nanoseconds(_ clock: clockid_t) -> Int64 {
        var now = timespec()
        clock_gettime(clock, &now)
        return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
    }
}
