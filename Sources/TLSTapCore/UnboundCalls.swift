/// Calls whose TLS object had no known socket yet, held until it has one.
///
/// A TLS object is bound to its socket by evidence only (bpf/bindings.bpf.h):
/// a syscall inside one of its calls, or its records followed to the socket
/// that sends them. Until then its calls come with no fd: a Go server's first
/// reads, served from the buffer a handshake that ran before tlstap started
/// filled, or the requests a memory-BIO server read before its first write
/// since tlstap started. One
/// object speaks through one socket for its whole life, so its held calls
/// belong to the socket its first bound call names. They are released with
/// that fd, before that call; or without one, as unknown, when that can no
/// longer happen: the object is freed, its process exits, the capture stops,
/// or more than `limitBytes` are held.
public struct UnboundCalls {
    private struct Key: Hashable {
        var pid: UInt32
        var ssl: UInt64
    }

    private var held: [Key: [DataEvent]] = [:]
    private var heldBytes = 0
    /// The most payload bytes held at once, over all objects.
    public let limitBytes: Int

    public init(limitBytes: Int = 64 << 20) {
        self.limitBytes = limitBytes
    }

    /// Whether any call is held.
    public var isEmpty: Bool { held.isEmpty }

    /// The TLS objects of process `pid` with calls held.
    public func objects(of pid: UInt32) -> [UInt64] {
        held.keys.filter { $0.pid == pid }.map(\.ssl)
    }

    /// Takes a finished call: holds it if its object has no socket yet, else
    /// passes on the object's held calls (now with its fd) and then it.
    /// Calls with no TLS object (plaintext sockets) pass straight on.
    /// - Parameter emit: receives each event to pass on, in order.
    public mutating func take(_ event: inout DataEvent, emit: (inout DataEvent) -> Void) {
        guard event.ssl != 0 else { return emit(&event) }
        let key = Key(pid: event.pid, ssl: event.ssl)
        guard event.fd >= 0 else {
            heldBytes += event.payload.count
            held[key, default: []].append(event)
            if heldBytes > limitBytes { releaseAll(emit: emit) }
            return
        }
        if !held.isEmpty, var earlier = held.removeValue(forKey: key) {
            for index in earlier.indices {
                heldBytes -= earlier[index].payload.count
                earlier[index].fd = event.fd
                emit(&earlier[index])
            }
        }
        emit(&event)
    }

    /// Passes on, without a socket, the calls of an object that will never
    /// have one (it was freed).
    public mutating func release(pid: UInt32, ssl: UInt64, emit: (inout DataEvent) -> Void) {
        guard var calls = held.removeValue(forKey: Key(pid: pid, ssl: ssl)) else { return }
        heldBytes -= calls.reduce(0) { $0 + $1.payload.count }
        for index in calls.indices { emit(&calls[index]) }
    }

    /// Passes on, without a socket, every call of process `pid` (it exited).
    public mutating func release(pid: UInt32, emit: (inout DataEvent) -> Void) {
        for ssl in objects(of: pid).sorted() { release(pid: pid, ssl: ssl, emit: emit) }
    }

    /// Passes on, without a socket, every call held, oldest first.
    public mutating func releaseAll(emit: (inout DataEvent) -> Void) {
        var calls = held.values.flatMap { $0 }.sorted { $0.timeNanoseconds < $1.timeNanoseconds }
        held.removeAll()
        heldBytes = 0
        for index in calls.indices { emit(&calls[index]) }
    }
}
