/// Every TCP connection of the traced processes that tlstap knows of: its
/// identity (the `Connection` every event of it refers to), what it carried,
/// and its protocol analysis. Data events are joined to their connection
/// here, by the socket events the kernel sends.
///
/// Connections are keyed by (pid, fd). A connection is announced (`opened`)
/// when its first data event arrives, so untouched sockets of a traced
/// process stay out of the output; it ends at close, at its process's exit,
/// or when the fd is reused for a new socket. Everything about a connection
/// is dropped when it ends, so memory follows the open connections only.
public struct ConnectionTable {
    private struct Key: Hashable {
        var pid: UInt32
        var fd: Int32
    }

    private struct Entry {
        var connection: Connection
        var announced = false
        var traffic = ConnectionTraffic()
        var analysis = ConnectionAnalysis()
    }

    /// A connection that ended, with its analysis, whose open records end too.
    public struct Ended {
        /// Its `closed` event, or nil if it was never announced (no data).
        public var closed: ConnectionEvent?
        public var analysis: ConnectionAnalysis
    }

    private var entries: [Key: Entry] = [:]
    private var nextID: UInt64 = 1
    private let clock: WallClock
    private let roleOfMidConnection: (SocketEvent) -> ConnectionRole

    /// - Parameters:
    ///   - clock: converts the kernel's monotonic times.
    ///   - roleOfMidConnection: decides the role of a connection first seen
    ///     mid-stream, where no connect or accept told it and the kernel
    ///     could not tell it either.
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
    /// - Returns: the connections it ended.
    public mutating func handle(_ socket: SocketEvent) -> [Ended] {
        let time = clock.wallNanoseconds(fromMonotonic: socket.monotonicNanoseconds)
        let key = Key(pid: socket.pid, fd: socket.fd)
        switch socket.kind {
        case .connect, .accept, .mid:
            let ended = entries.removeValue(forKey: key).map { [Self.ended($0, at: time)] } ?? []
            guard let local = socket.local, let remote = socket.remote else { return ended }
            let origin: ConnectionOrigin = socket.kind == .connect ? .connect : socket.kind == .accept ? .accept : .mid
            let role = socket.kind == .mid && socket.role == .unknown ? roleOfMidConnection(socket) : socket.role
            entries[key] = Entry(
                connection: Connection(
                    id: nextID, pid: socket.pid, comm: socket.comm, fd: socket.fd, local: local, remote: remote,
                    role: role, origin: origin, openedNanoseconds: time))
            nextID += 1
            return ended
        case .close:
            return entries.removeValue(forKey: key).map { [Self.ended($0, at: time)] } ?? []
        case .unprobedTLS:
            return []
        }
    }

    /// A traced process exited: every socket it had is gone (exit closes
    /// them without close()).
    /// - Returns: the connections it ended, oldest first.
    public mutating func processExited(_ process: ProcessEvent) -> [Ended] {
        let time = clock.wallNanoseconds(fromMonotonic: process.monotonicNanoseconds)
        let gone = entries.filter { $0.key.pid == process.pid }
        for key in gone.keys { entries[key] = nil }
        return gone.values.sorted { $0.connection.id < $1.connection.id }.map { Self.ended($0, at: time) }
    }

    /// tlstap is stopping: every connection is dropped, not reported as
    /// closed, since it is not.
    /// - Returns: the analyses of every connection, oldest first.
    public mutating func removeAll() -> [ConnectionAnalysis] {
        defer { entries.removeAll() }
        return entries.values.sorted { $0.connection.id < $1.connection.id }.map(\.analysis)
    }

    /// The connection of a socket on which no data event was captured yet,
    /// or nil if it is not tracked or data was captured on it.
    public func silentConnection(pid: UInt32, fd: Int32) -> Connection? {
        guard let entry = entries[Key(pid: pid, fd: fd)], !entry.announced else { return nil }
        return entry.connection
    }

    /// Names the connection of a data event and counts its bytes, then lets
    /// `analyse` change the connection's analysis with the named event.
    /// - Returns: `opened` if this is the connection's first data.
    public mutating func attach(
        _ event: inout DataEvent, analyse: (DataEvent, inout ConnectionAnalysis) -> Void = { _, _ in }
    ) -> ConnectionEvent? {
        guard event.fd >= 0, let index = entries.index(forKey: Key(pid: event.pid, fd: event.fd)) else { return nil }
        // Changed where it is stored: one lookup, and no copy of the entry per event.
        let opened = Self.update(&entries.values[index], with: event)
        event.connection = entries.values[index].connection
        analyse(event, &entries.values[index].analysis)
        return opened
    }

    /// Counts `event`'s bytes into `entry`, announcing it at its first.
    /// - Returns: `opened` if `event` is its first.
    private static func update(_ entry: inout Entry, with event: DataEvent) -> ConnectionEvent? {
        // What the program moved: the call's bytes, captured or not, and whole calls lost right before it.
        switch event.direction {
        case .inbound: entry.traffic.bytesIn += event.length + event.lostBefore
        case .outbound: entry.traffic.bytesOut += event.length + event.lostBefore
        }
        guard !entry.announced else { return nil }
        entry.announced = true
        // Named as the process is called when it uses the connection (a thread's name, after an exec).
        if entry.connection.comm != event.comm { entry.connection = entry.connection.named(event.comm) }
        return .opened(entry.connection, timeNanoseconds: event.timeNanoseconds)
    }

    private static func ended(_ entry: Entry, at time: UInt64) -> Ended {
        Ended(
            closed: entry.announced ? .closed(entry.connection, entry.traffic, timeNanoseconds: time) : nil,
            analysis: entry.analysis)
    }
}
