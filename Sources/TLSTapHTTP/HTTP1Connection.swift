import DequeModule
import TLSTapCore

/// Pairs the requests and responses of one HTTP/1.x connection into
/// exchanges: keep-alive, pipelining (responses answer requests in order),
/// 1xx interim responses, bodies that HEAD, 204 and 304 forbid, bodies
/// ended by close, and upgrades (after which parsing stops).
///
/// After a side's bytes were lost (`lost(fromClient:time:)`), its parser
/// resumes at that side's next message. The first response after lost
/// response bytes answers the latest request that began before it (clients
/// wait for each response, as nearly all do; pipelined requests cannot be
/// paired again); the requests before that one end with their response lost.
/// A class: it owns a connection's parsing state, which changes in place as bytes arrive.
final class HTTP1Connection {
    private var requests: HTTP1StreamParser
    private var responses: HTTP1StreamParser
    /// Requests waiting for their response, oldest first (a deque: pipelined
    /// requests leave from the front). Boxed: a Deque changes an element in
    /// place by moving it out and copying it back, every field's reference
    /// count up and down, and an exchange changes several times.
    private var pending = Deque<PendingExchange>()
    /// The response being read belongs to pending[0]; set once its head arrived.
    private var responseStarted = false
    private let template: HTTPExchange
    private let limits: HTTPLimits
    private var stopped = false
    /// Response bytes were lost: the next response may skip requests whose responses were lost.
    private var responsesLost = false
    /// The request whose head or body is being read (it may have been
    /// answered already: a server may respond before a body is all sent).
    private var requestInProgress: PendingExchange?
    /// Set when a response switched the connection to another protocol, until taken.
    private var upgrade: (exchange: HTTPExchange, rest: [UInt8])?

    /// - Parameter joinedMidway: tlstap joined the connection while it was
    ///   in use, so either side's first bytes may be the rest of a message:
    ///   both parsers begin as after lost bytes, at their side's next start
    ///   line (at the start of a call's bytes or after a line feed).
    init(template: HTTPExchange, limits: HTTPLimits, joinedMidway: Bool = false) {
        self.template = template
        self.limits = limits
        requests = HTTP1StreamParser(limits: limits)
        responses = HTTP1StreamParser(limits: limits)
        if joinedMidway {
            requests.skipToNextMessage(.requests)
            responses.skipToNextMessage(.responses)
        }
    }

    /// Bytes the client sent.
    /// - Returns: an exchange answered before its request ended, now that it has.
    func feedRequest(_ bytes: [UInt8], time: UInt64) -> [HTTPExchange] {
        guard !stopped else { return [] }
        var finished: [HTTPExchange] = []
        for event in requests.feed(bytes, time: time, bodyMode: { head, _ in Self.requestBodyMode(head) }) {
            switch event {
            case .head(let head, let start):
                var exchange = template
                exchange.protocolVersion = head.third
                exchange.method = head.first
                exchange.path = head.second
                exchange.requestHeaders = head.headers
                exchange.authority = head.headers.first("host") ?? ""
                exchange.startNanoseconds = start
                exchange.endNanoseconds = start
                if limits.captureBodies { exchange.requestBody = [] }
                let box = PendingExchange(exchange)
                pending.append(box)
                requestInProgress = box
            case .body(let bytes):
                requestInProgress?.exchange?.appendRequestBody(bytes, limit: limits.maxBodyBytes)
            case .trailers(let trailers):
                requestInProgress?.exchange?.requestHeaders += trailers
            case .end(let end):
                guard let box = requestInProgress else { continue }
                requestInProgress = nil
                box.requestEnded = true
                if box.answered {
                    var exchange = box.take()
                    exchange.endNanoseconds = max(exchange.endNanoseconds, end)
                    finished.append(exchange)
                }
            case .stop, .switched:
                continue
            }
        }
        return finished
    }

    /// Bytes the server sent.
    func feedResponse(_ bytes: [UInt8], time: UInt64) -> [HTTPExchange] {
        guard !stopped else { return [] }
        var finished: [HTTPExchange] = []
        // The parser asks for each head's body mode while it parses, before the
        // events below move the queue on: count the final heads of this feed.
        let methods = pending.map { $0.exchange!.method }
        let starts = pending.map { $0.exchange!.startNanoseconds }
        var answering = responseStarted ? 1 : 0
        // Per final head of this feed: how many pending requests lost their responses before it.
        var skips: [Int] = []
        var afterGap = responsesLost
        let bodyMode = { (head: HTTP1Head, start: UInt64) -> HTTP1BodyMode in
            let status = Int(head.second) ?? 0
            guard !(100...199).contains(status) || status == 101 else {
                return Self.responseBodyMode(head, requestMethod: nil)  // interim: the real one follows
            }
            var skipping = 0
            if afterGap, let latest = starts.lastIndex(where: { $0 <= start }), latest > answering {
                skipping = latest - answering
                answering = latest
            }
            afterGap = false
            skips.append(skipping)
            let method = answering < methods.count ? methods[answering] : nil
            answering += 1
            return Self.responseBodyMode(head, requestMethod: method)
        }
        var heads = 0
        for event in responses.feed(bytes, time: time, bodyMode: bodyMode) {
            switch event {
            case .head(let head, let start):
                let status = Int(head.second) ?? 0
                if (100...199).contains(status) && status != 101 { continue }  // interim: the real one follows
                for _ in 0..<min(heads < skips.count ? skips[heads] : 0, pending.count) {
                    var unanswered = pending.removeFirst().take()
                    unanswered.endNanoseconds = start
                    unanswered.note = "response lost"
                    finished.append(unanswered)
                }
                heads += 1
                responsesLost = false
                if pending.isEmpty { pending.append(PendingExchange(exchangeWithoutRequest(respondedAt: start))) }
                pending[0].exchange!.takeResponseHead(head, status: status, capturingBody: limits.captureBodies)
                responseStarted = true
            case .body(let bytes):
                guard responseStarted else { continue }
                pending[0].exchange!.appendResponseBody(bytes, limit: limits.maxBodyBytes)
            case .trailers(let trailers):
                if responseStarted { pending[0].exchange!.responseHeaders += trailers }
            case .end(let end):
                guard responseStarted else { continue }
                responseStarted = false
                let box = pending.removeFirst()
                box.exchange?.endNanoseconds = end
                if box.requestEnded || box !== requestInProgress {
                    finished.append(box.take())
                } else {
                    box.answered = true  // it ends when its request does
                }
            case .stop(let reason):
                if let exchange = stopResponse(time: time, note: reason) { finished.append(exchange) }
            case .switched(let rest):
                if let exchange = stopResponse(time: time, note: "upgrade") {
                    finished.append(exchange)
                    upgrade = (exchange, Array(rest))
                }
            }
        }
        return finished
    }

    /// The response parser stopped at `time`: its exchange, if one was open, ends with `note`.
    private func stopResponse(time: UInt64, note: String) -> HTTPExchange? {
        stopped = true
        guard responseStarted else { return nil }
        var exchange = pending.removeFirst().take()
        exchange.endNanoseconds = time
        exchange.note = note
        responseStarted = false
        return exchange
    }

    /// The exchange after which the connection switched protocols, and the
    /// server's bytes after its response head; taken once.
    func takeUpgrade() -> (exchange: HTTPExchange, rest: [UInt8])? {
        defer { upgrade = nil }
        return upgrade
    }

    /// The exchange of a response whose request tlstap did not see (it
    /// joined the connection, or lost the request's bytes): it starts at
    /// the response's first byte.
    private func exchangeWithoutRequest(respondedAt start: UInt64) -> HTTPExchange {
        var exchange = template
        exchange.requestCaptured = false
        exchange.startNanoseconds = start
        exchange.endNanoseconds = start
        return exchange
    }

    /// Bytes one side sent were lost (the ring buffer was full) at `time`,
    /// right before the bytes fed next from that side.
    /// - Returns: an exchange whose response was being read, ended and marked.
    func lost(fromClient: Bool, time: UInt64) -> [HTTPExchange] {
        guard !stopped else { return [] }
        if fromClient {
            guard requests.skipToNextMessage(.requests), let box = requestInProgress else { return [] }
            requestInProgress = nil  // its end will not be seen
            box.exchange?.note = "request bytes lost"
            return box.answered ? [box.take()] : []
        }
        responses.skipToNextMessage(.responses)
        responsesLost = true
        guard responseStarted, !pending.isEmpty else { return [] }
        var exchange = pending.removeFirst().take()
        exchange.endNanoseconds = time
        exchange.note = "response bytes lost"
        responseStarted = false
        return [exchange]
    }

    /// The connection closed (or the capture stopped: `note` says which): a
    /// close-delimited response ends, the rest end unanswered.
    func close(time: UInt64, note: String = ConnectionEnd.closed.note) -> [HTTPExchange] {
        var finished = feedResponseEvents(responses.finish(time: time), note: note)
        if let box = requestInProgress, box.answered {  // answered, its request never ended
            var exchange = box.take()
            exchange.note = note
            finished.append(exchange)
        }
        requestInProgress = nil
        for box in pending {
            var exchange = box.take()
            exchange.endNanoseconds = time
            exchange.note = note
            finished.append(exchange)
        }
        pending.removeAll()
        stopped = true
        return finished
    }

    private func feedResponseEvents(_ events: [HTTP1ParseEvent], note: String) -> [HTTPExchange] {
        guard case .end(let end)? = events.first, responseStarted, !pending.isEmpty else { return [] }
        let box = pending.removeFirst()
        if box === requestInProgress {
            box.exchange?.note = note
            requestInProgress = nil
        }
        var exchange = box.take()
        exchange.endNanoseconds = end
        responseStarted = false
        return [exchange]
    }

    /// Whether a Transfer-Encoding value lists the chunked coding (a comma
    /// list, names case-insensitive: RFC 9112 section 7).
    static func isChunked(_ transferEncoding: String?) -> Bool {
        guard let transferEncoding else { return false }
        let chunked = "chunked".utf8
        return transferEncoding.utf8.split(separator: UInt8(ascii: ",")).contains { coding in
            var name = coding[...]
            while let first = name.first, first == 0x20 || first == 0x09 { name.removeFirst() }
            while let last = name.last, last == 0x20 || last == 0x09 { name.removeLast() }
            return name.elementsEqual(chunked) { $0.asciiLowercased == $1 }
        }
    }

    static func requestBodyMode(_ head: HTTP1Head) -> HTTP1BodyMode {
        if Self.isChunked(head.headers.first("transfer-encoding")) { return .chunked }
        if let length = head.headers.first("content-length").flatMap({ Int($0) }), length >= 0 {
            return .length(length)
        }
        return .none
    }

    static func responseBodyMode(_ head: HTTP1Head, requestMethod: String?) -> HTTP1BodyMode {
        let status = Int(head.second) ?? 0
        if status == 101 || (requestMethod == "CONNECT" && (200...299).contains(status)) { return .notHTTP }
        if requestMethod == "HEAD" || (100...199).contains(status) || status == 204 || status == 304 { return .none }
        if Self.isChunked(head.headers.first("transfer-encoding")) { return .chunked }
        if let length = head.headers.first("content-length").flatMap({ Int($0) }), length >= 0 {
            return .length(length)
        }
        return .untilClose
    }
}

/// An exchange waiting for its response, changed where it lies.
private final class PendingExchange {
    /// nil once taken.
    var exchange: HTTPExchange?
    /// The request's last byte arrived.
    var requestEnded = false
    /// Its response ended before its request did; the request's end ends it.
    var answered = false

    init(_ exchange: HTTPExchange) {
        self.exchange = exchange
    }

    /// Moves the exchange out, without a copy.
    func take() -> HTTPExchange {
        exchange.take()!
    }
}

extension HTTPExchange {
    /// Takes a response's head.
    fileprivate mutating func takeResponseHead(_ head: HTTP1Head, status: Int, capturingBody: Bool) {
        self.status = status
        reason = head.third
        responseHeaders = head.headers
        responseVersion = head.first
        if protocolVersion.isEmpty { protocolVersion = head.first }
        if capturingBody { responseBody = [] }
    }
}
