/// How the body of an HTTP/1.x message is delimited (RFC 9112 section 6).
enum HTTP1BodyMode: Equatable {
    case none
    case length(Int)
    case chunked
    /// Ends when the connection closes (responses without length).
    case untilClose
    /// The connection stops being HTTP (CONNECT tunnel, 101 upgrade).
    case notHTTP
}

/// A parsed start line and header section.
struct HTTP1Head: Equatable {
    /// Request: method, target, version. Response: version, status, reason.
    var first: String
    var second: String
    var third: String
    var headers: [HTTPHeader]
}

/// Which messages one direction of a connection carries.
enum HTTP1MessageKind: Equatable {
    case requests
    case responses
}

/// What the parser found, in order.
enum HTTP1ParseEvent: Equatable {
    case head(HTTP1Head, time: UInt64)
    case body(ArraySlice<UInt8>)
    case trailers([HTTPHeader])
    case end(time: UInt64)
    /// The rest of the stream is not HTTP/1 (why).
    case stop(String)
    /// The connection switched protocols (a `101` response, a CONNECT
    /// tunnel): the stream goes on in the other protocol from `rest`, the
    /// bytes of this call after the head.
    case switched(rest: ArraySlice<UInt8>)
}

/// Incremental parser of one direction of an HTTP/1.x connection.
///
/// Feed it bytes in any split; it produces the same events. Only a head or
/// chunk-size line being assembled is buffered (capped by
/// `HTTPLimits.maxHeaderBytes`); body bytes pass straight through.
///
/// After bytes were lost (`skipToNextMessage`), it skips what it is given
/// until a line that starts a message of its kind, at the start of a call's
/// bytes or after a line feed, and parses again from there.
struct HTTP1StreamParser {
    private enum State: Equatable {
        case head
        case body(remaining: Int)
        case chunkSize
        case chunkData(remaining: Int)
        case chunkDataEnd
        case trailers
        case untilClose
        /// Bytes were lost: skipping to the next start line of this kind.
        case seeking(HTTP1MessageKind)
        case stopped
    }

    private var state = State.head
    /// A partial line.
    private var buffer: [UInt8] = []
    /// The complete lines of the head or trailer section being assembled.
    private var section: [UInt8] = []
    private var messageStart: UInt64?
    /// While seeking: where in `buffer` a start line may begin (its first
    /// byte, and the first of each call after), with the time of that call.
    private var seekStarts: [(offset: Int, time: UInt64)] = []
    private let limits: HTTPLimits

    init(limits: HTTPLimits) {
        self.limits = limits
    }

    var isStopped: Bool { state == .stopped }

    /// Bytes of this stream were lost: what was being parsed is broken, and
    /// parsing goes on at the next message of `kind`.
    /// - Returns: whether a message whose head was already reported was
    ///   still open (its body or trailers were being read).
    @discardableResult
    mutating func skipToNextMessage(_ kind: HTTP1MessageKind) -> Bool {
        guard state != .stopped else { return false }
        let open: Bool
        switch state {
        case .head, .seeking, .stopped: open = false
        case .body, .chunkSize, .chunkData, .chunkDataEnd, .trailers, .untilClose: open = true
        }
        state = .seeking(kind)
        buffer = []
        seekStarts = []
        section = []
        messageStart = nil
        return open
    }

    /// Parses `bytes` that arrived at `time` (the bytes of one call).
    /// - Parameter bodyMode: decides, from a complete head and the time its
    ///   message began, how its body ends.
    mutating func feed(
        _ bytes: [UInt8], time: UInt64, bodyMode: (HTTP1Head, UInt64) -> HTTP1BodyMode
    ) -> [HTTP1ParseEvent] {
        guard state != .stopped else { return [] }
        var events: [HTTP1ParseEvent] = []
        var input = bytes[...]
        var callStart = true
        while !input.isEmpty {
            defer { callStart = false }
            switch state {
            case .head:
                if buffer.isEmpty && section.isEmpty {
                    input = input.drop { $0 == 0x0d || $0 == 0x0a }  // blank lines between messages
                    if input.isEmpty { return events }
                }
                if messageStart == nil { messageStart = time }
                guard let head = takeSection(from: &input) else {
                    if buffer.count + section.count > limits.maxHeaderBytes {
                        return events + stop("header section over the limit")
                    }
                    return events
                }
                guard let parsed = Self.parseHead(head) else { return events + stop("malformed start line or header") }
                events.append(.head(parsed, time: messageStart ?? time))
                switch bodyMode(parsed, messageStart ?? time) {
                case .none: events.append(endMessage(time))
                case .length(let count):
                    state = count > 0 ? .body(remaining: count) : .head
                    if count == 0 { events.append(endMessage(time)) }
                case .chunked: state = .chunkSize
                case .untilClose: state = .untilClose
                case .notHTTP:
                    _ = stop("upgrade")
                    return events + [.switched(rest: input)]
                }
            case .body(let remaining):
                let taken = input.prefix(remaining)
                input = input.dropFirst(taken.count)
                events.append(.body(taken))
                if remaining == taken.count {
                    state = .head
                    events.append(endMessage(time))
                } else {
                    state = .body(remaining: remaining - taken.count)
                }
            case .chunkSize:
                guard let line = takeLine(from: &input) else {
                    if buffer.count > limits.maxHeaderBytes { return events + stop("chunk size line over the limit") }
                    return events
                }
                let digits = line.prefix { $0 != UInt8(ascii: ";") }.filter { $0 != 0x20 && $0 != 0x09 }
                guard !digits.isEmpty, digits.count <= 15,
                    let size = Int(String(decoding: digits, as: UTF8.self), radix: 16)
                else { return events + stop("malformed chunk size") }
                state = size == 0 ? .trailers : .chunkData(remaining: size)
            case .chunkData(let remaining):
                let taken = input.prefix(remaining)
                input = input.dropFirst(taken.count)
                events.append(.body(taken))
                state = remaining == taken.count ? .chunkDataEnd : .chunkData(remaining: remaining - taken.count)
            case .chunkDataEnd:
                guard let line = takeLine(from: &input) else {
                    return buffer.count > 1 ? events + stop("chunk data longer than its size") : events
                }
                guard line.isEmpty else { return events + stop("chunk data longer than its size") }
                state = .chunkSize
            case .trailers:
                guard let section = takeSection(from: &input, allowEmpty: true) else {
                    if buffer.count + section.count > limits.maxHeaderBytes {
                        return events + stop("trailer section over the limit")
                    }
                    return events
                }
                guard let trailers = Self.parseTrailers(section) else { return events + stop("malformed trailer") }
                if !trailers.isEmpty { events.append(.trailers(trailers)) }
                state = .head
                events.append(endMessage(time))
            case .untilClose:
                events.append(.body(input))
                input = input.dropFirst(input.count)
            case .seeking(let kind):
                // `buffer` holds the last partial line of earlier bytes, which
                // could start a message at any of `seekStarts` (each call's
                // first byte is one: a start line split over calls after
                // other bytes is still found).
                var starts = seekStarts
                if callStart { starts.append((buffer.count, time)) }
                let candidate = buffer + input
                buffer = []
                seekStarts = []
                input = input.dropFirst(input.count)
                // When the byte at a position arrived: with the call of the last start at or before it.
                let arrival = { (position: Int) in starts.last { $0.offset <= position }?.time ?? time }
                if let start = Self.firstStartLine(in: candidate, lineStarts: starts.map(\.offset), kind: kind) {
                    state = .head
                    input = candidate[start...]
                    messageStart = arrival(start)
                } else {
                    let tail = candidate.lastIndex(of: 0x0a).map { $0 + 1 } ?? (starts.first?.offset ?? candidate.count)
                    if tail < candidate.count, candidate.count - tail <= limits.maxHeaderBytes {
                        buffer = Array(candidate[tail...])
                        let later = starts.filter { $0.offset > tail }.map { (offset: $0.offset - tail, time: $0.time) }
                        seekStarts = [(0, arrival(tail))] + later
                    }
                }
            case .stopped:
                return events
            }
        }
        return events
    }

    /// The connection closed: a body delimited by close ends here.
    mutating func finish(time: UInt64) -> [HTTP1ParseEvent] {
        defer { state = .stopped }
        return state == .untilClose ? [endMessage(time)] : []
    }

    private mutating func endMessage(_ time: UInt64) -> HTTP1ParseEvent {
        messageStart = nil
        return .end(time: time)
    }

    private mutating func stop(_ reason: String) -> [HTTP1ParseEvent] {
        state = .stopped
        buffer = []
        section = []
        return [.stop(reason)]
    }

    /// Takes lines up to the blank one that ends a header section.
    /// - Returns: the section's lines as they came, each ending in LF (CRLF
    ///   or LF; `forEachLine` takes the CR off), or nil while incomplete.
    private mutating func takeSection(from input: inout ArraySlice<UInt8>, allowEmpty: Bool = false) -> [UInt8]? {
        // A whole section in one call, the common case, is taken in one copy.
        if buffer.isEmpty && section.isEmpty, let end = Self.sectionEnd(in: input, allowEmpty: allowEmpty),
            end.lines - input.startIndex <= limits.maxHeaderBytes
        {
            defer { input = input[end.next...] }
            return Array(input[..<end.lines])
        }
        while section.count + buffer.count <= limits.maxHeaderBytes, let line = takeLine(from: &input) {
            if line.isEmpty {
                if section.isEmpty && !allowEmpty { continue }
                defer { section = [] }
                return section
            }
            section.append(contentsOf: line)
            section.append(contentsOf: [0x0d, 0x0a])
        }
        return nil
    }

    /// Where the blank line that ends the header section at the start of
    /// `input` begins (`lines`) and what follows it (`next`); nil when
    /// `input` does not hold it, or when it holds blank lines first and
    /// `allowEmpty` is not set.
    private static func sectionEnd(in input: ArraySlice<UInt8>, allowEmpty: Bool) -> (lines: Int, next: Int)? {
        var lineStart = input.startIndex
        while let newline = input[lineStart...].firstIndex(of: 0x0a) {
            if newline == lineStart || (newline == lineStart + 1 && input[lineStart] == 0x0d) {
                guard lineStart > input.startIndex || allowEmpty else { return nil }
                return (lineStart, newline + 1)
            }
            lineStart = newline + 1
        }
        return nil
    }

    /// Takes one line (without its CRLF or LF) from buffer + input, or nil.
    private mutating func takeLine(from input: inout ArraySlice<UInt8>) -> [UInt8]? {
        guard let newline = input.firstIndex(of: 0x0a) else {
            buffer += input
            input = input.dropFirst(input.count)
            return nil
        }
        var line = buffer + input[input.startIndex..<newline]
        buffer = []
        input = input[(newline + 1)...]
        if line.last == 0x0d { line.removeLast() }
        return line
    }

    /// Where the first complete line of `bytes` that starts a message of
    /// `kind` begins. Lines begin at `lineStarts` and after each line feed.
    static func firstStartLine(in bytes: [UInt8], lineStarts: [Int], kind: HTTP1MessageKind) -> Int? {
        var start = lineStarts.first ?? bytes.firstIndex(of: 0x0a).map { $0 + 1 } ?? bytes.count
        var explicit = lineStarts.dropFirst()
        while start < bytes.count, let newline = bytes[start...].firstIndex(of: 0x0a) {
            var line = bytes[start..<newline]
            if line.last == 0x0d { line = line.dropLast() }
            if isStartLine(line, kind: kind) { return start }
            if let next = explicit.first, next > start, next <= newline {
                start = next
                explicit = explicit.dropFirst()
            } else {
                start = newline + 1
            }
        }
        return nil
    }

    /// `METHOD target HTTP/1.x`, or `HTTP/1.x NNN reason`.
    static func isStartLine(_ line: ArraySlice<UInt8>, kind: HTTP1MessageKind) -> Bool {
        let version = Array("HTTP/1.".utf8)
        func isVersion(_ part: ArraySlice<UInt8>) -> Bool {
            part.count == version.count + 1 && part.starts(with: version) && (part.last == 0x30 || part.last == 0x31)
        }
        switch kind {
        case .requests:
            let parts = line.split(separator: 0x20, maxSplits: 2, omittingEmptySubsequences: false)
            return parts.count == 3 && !parts[0].isEmpty && !parts[1].isEmpty
                && parts[0].allSatisfy { (0x41...0x5a).contains($0) || $0 == 0x2d } && isVersion(parts[2])
        case .responses:
            let parts = line.split(separator: 0x20, maxSplits: 2, omittingEmptySubsequences: false)
            return parts.count >= 2 && isVersion(parts[0]) && parts[1].count == 3
                && parts[1].allSatisfy { (0x30...0x39).contains($0) }
        }
    }

    /// A line of a section, without its CRLF or LF.
    typealias Line = Slice<UnsafeBufferPointer<UInt8>>

    /// Hands `body` each line of a section from `takeSection`, in order,
    /// while it returns true. Lines are read in place: a head is parsed
    /// for every message, and arrays of slices cost more than the parsing.
    /// - Returns: whether `body` took every line.
    static func forEachLine(of section: UnsafeBufferPointer<UInt8>, _ body: (Line) -> Bool) -> Bool {
        var start = 0
        while start < section.count {
            let newline = section[start...].firstIndex(of: 0x0a) ?? section.count
            var end = newline
            if end > start && section[end - 1] == 0x0d { end -= 1 }
            if newline > start, !body(section[start..<end]) { return false }
            start = newline + 1
        }
        return true
    }

    static func parseHead(_ section: [UInt8]) -> HTTP1Head? {
        section.withUnsafeBufferPointer { section in
            var parts: [String] = []
            var headers: [HTTPHeader] = []
            let parsed = forEachLine(of: section) { line in
                if parts.isEmpty {
                    parts = line.split(separator: 0x20, maxSplits: 2, omittingEmptySubsequences: false)
                        .map { String(decoding: $0, as: UTF8.self) }
                    return parts.count >= 2
                }
                if line.first == 0x20 || line.first == 0x09, !headers.isEmpty {  // obsolete line folding
                    headers[headers.count - 1].value += " " + String(decoding: line, as: UTF8.self).trimmed
                    return true
                }
                guard let header = parseHeader(line) else { return false }
                headers.append(header)
                return true
            }
            guard parsed, parts.count >= 2 else { return nil }
            return HTTP1Head(
                first: parts[0], second: parts[1], third: parts.count > 2 ? parts[2] : "", headers: headers)
        }
    }

    /// The fields of a trailer section, or nil when one is malformed.
    static func parseTrailers(_ section: [UInt8]) -> [HTTPHeader]? {
        section.withUnsafeBufferPointer { section in
            var trailers: [HTTPHeader] = []
            let parsed = forEachLine(of: section) { line in
                guard let trailer = parseHeader(line) else { return false }
                trailers.append(trailer)
                return true
            }
            return parsed ? trailers : nil
        }
    }

    static func parseHeader(_ line: Line) -> HTTPHeader? {
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon > line.startIndex else { return nil }
        let name = line[..<colon]
        guard !name.contains(where: { $0 == 0x20 || $0 == 0x09 }) else { return nil }
        var value = line[(colon + 1)...]
        while let first = value.first, first == 0x20 || first == 0x09 { value.removeFirst() }
        while let last = value.last, last == 0x20 || last == 0x09 { value.removeLast() }
        return HTTPHeader(String(decoding: name, as: UTF8.self), String(decoding: value, as: UTF8.self))
    }
}

extension String {
    var trimmed: String {
        var scalars = Substring(self)
        while let first = scalars.first, first == " " || first == "\t" { scalars = scalars.dropFirst() }
        while let last = scalars.last, last == " " || last == "\t" { scalars = scalars.dropLast() }
        return String(scalars)
    }
}
