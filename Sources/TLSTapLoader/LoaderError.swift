import Glibc

/// Why tracing cannot start, as one sentence a user can act on.
public struct LoaderError: Error, CustomStringConvertible, Equatable {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }

    /// An error naming a failed system call or libbpf call and its errno.
    public static func system(_ what: String, errno code: Int32) -> LoaderError {
        LoaderError("\(what): \(String(cString: strerror(code)))")
    }
}
