/// Joins data events to the TCP connections that socket events describe.
///
/// Connections are keyed by (pid, fd). A connection is announced (`opened`)
/// when its first data event arrives, so untouched sockets of a traced
/// process stay out of the output; it ends at close, at its process's exit,
/// or when the fd is reused for a new socket. Everything about a connection
/// is dropped when it ends, so memory follows the open connections only.
public struct ConnectionTracker {
    private struct Key: Hashable {
        var pid: UInt32
        var fd: Int32
    }

    private struct Entry {
        var connection: Connection
        var announced = false
    }

    private var entries: [Key: Entry] = [:]
    private var nextID: UInt64 = 1
    private let clock: WallClock
    private let roleOfMidConnection: (SocketEvent) -> ConnectionRole

    /// - Parameters:
    ///   - clock: converts the kernel's monotonic times.
    ///   - roleOfMidConnection: decides the role of a connection first seen
    ///     mid-stream, where no connect or accept told it.
    public init(clock: WallClock, roleOfMidConnection: @escaping (SocketEvent) -> ConnectionRole = { _ in .unknown }) {
        self.clock = clock
        self.roleOfMidConnection = roleOfMidConnection
    }

    /// Connections currently known.
    public var count: Int { entries.count }

    /// The fds of the sockets known for process `pid`.
    public func fds(of pid: UInt32) -> [Int32] {
        entries.keys.filter { $0.pid == pid }.map(\.fd)
    }

    /// Takes a socket event.
    /// - Returns: the connections it ended that had been announced.
    public mutating func handle(_ socket: SocketEvent) -> [ConnectionEvent] {
        let time = clock.wallNanoseconds(fromMonotonic: socket.monotonicNanoseconds)
        let key = Key(pid: socket.pid, fd: socket.fd)
        switch socket.kind {
        case .connect, .accept, .mid:
            var ended: [ConnectionEvent] = []
            if let previous = entries.removeValue(forKey: key), previous.announced {
                ended.append(.closed(previous.connection, timeNanoseconds: time))
            }
            guard let local = socket.local, let remote = socket.remote else { return ended }
            let origin: ConnectionOrigin = socket.kind == .connect ? .connect : socket.kind == .accept ? .accept : .mid
            let role = socket.kind == .mid ? roleOfMidConnection(socket) : socket.role
            entries[key] = Entry(
                connection: Connection(
                    id: nextID, pid: socket.pid, comm: socket.comm, fd: socket.fd, local: local, remote: remote,
                    role: role, origin: origin, openedNanoseconds: time))
            nextID += 1
            return ended
        case .close:
            guard let entry = entries.removeValue(forKey: key), entry.announced else { return [] }
            return [.closed(entry.connection, timeNanoseconds: time)]
        case .unprobedTLS:
            return []
        }
    }

    /// A traced process exited: every socket it had is gone (exit closes
    /// them without close()).
    /// - Returns: the connections it ended that had been announced.
    public mutating func processExited(_ process: ProcessEvent) -> [ConnectionEvent] {
        let time = clock.wallNanoseconds(fromMonotonic: process.monotonicNanoseconds)
        let gone = entries.filter { $0.key.pid == process.pid }
        for key in gone.keys { entries[key] = nil }
        return gone.values.filter(\.announced).sorted { $0.connection.id < $1.connection.id }
            .map { .closed($0.connection, timeNanoseconds: time) }
    }

    /// The connection of a socket on which no data event was captured yet,
    /// or nil if it is not tracked or data was captured on it.
    public func silentConnection(pid: UInt32, fd: Int32) -> Connection? {
        guard let entry = entries[Key(pid: pid, fd: fd)], !entry.announced else { return nil }
        return entry.connection
    }

    /// Names the connection of a data event and counts its bytes.
    /// - Returns: `opened` if this is the connection's first data.
    public mutating func attach(_ event: inout DataEvent) -> ConnectionEvent? {
        guard event.fd >= 0, let index = entries.index(forKey: Key(pid: event.pid, fd: event.fd)) else { return nil }
        // Changed where it is stored: one lookup, and no copy of the entry per event.
        let wasAnnounced = Self.update(&entries.values[index], with: event)
        event.connection = entries.values[index].connection
        return wasAnnounced ? nil : .opened(entries.values[index].connection, timeNanoseconds: event.timeNanoseconds)
    }

    /// Counts `event`'s bytes into `entry` and marks it announced.
    /// - Returns: whether it was announced before.
    private static func update(_ entry: inout Entry, with event: DataEvent) -> Bool {
        // What the program moved: the call's bytes, captured or not, and whole calls lost right before it.
        switch event.direction {
        case .inbound: entry.connection.bytesIn += event.length + event.lostBefore
        case .outbound: entry.connection.bytesOut += event.length + event.lostBefore
        }
        if entry.connection.comm != event.comm { entry.connection.comm = event.comm }
        defer { entry.announced = true }
        return entry.announced
    }

    /// Ends every announced connection (tlstap is stopping); they are not
    /// reported as closed, since they are not.
    public mutating func removeAll() {
        entries.removeAll()
    }
}
