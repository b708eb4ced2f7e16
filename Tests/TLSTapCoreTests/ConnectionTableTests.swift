import Testing

@testable import TLSTapCore

@Suite struct ConnectionTableTests {
    let clock = WallClock(offsetNanoseconds: 0)
    let local = SocketAddress(ip: [127, 0, 0, 1], port: 50000)
    let server = SocketAddress(ip: [127, 0, 0, 1], port: 8443)

    func socket(
        _ kind: SocketEvent.Kind, pid: UInt32 = 10, fd: Int32 = 5, at time: UInt64 = 100,
        local: SocketAddress? = nil, remote: SocketAddress? = nil, role: ConnectionRole = .client
    ) -> SocketEvent {
        SocketEvent(
            kind: kind, pid: pid, tid: pid, fd: fd, monotonicNanoseconds: time, local: local, remote: remote,
            role: role, comm: "client")
    }

    func data(pid: UInt32 = 10, fd: Int32 = 5, direction: Direction = .outbound, bytes: Int = 10, at time: UInt64 = 200)
        -> DataEvent
    {
        DataEvent(
            timeNanoseconds: time, pid: pid, tid: pid, comm: "client", library: .openssl, function: .sslWrite,
            direction: direction, ssl: 1, length: UInt64(bytes), payload: Array(repeating: 0x61, count: bytes),
            fd: fd)
    }

    @Test func aConnectionOpensWithItsFirstDataAndClosesWithItsCounts() {
        var table = ConnectionTable(clock: clock)
        #expect(table.handle(socket(.connect, local: local, remote: server)).isEmpty)
        var first = data(bytes: 30)
        guard case .opened(let opened, let at)? = table.attach(&first) else {
            Issue.record("no open event")
            return
        }
        #expect(at == 200)
        #expect(opened.local == local && opened.remote == server && opened.role == .client && opened.origin == .connect)
        #expect(first.connection?.id == opened.id)
        var reply = data(direction: .inbound, bytes: 12, at: 300)
        #expect(table.attach(&reply) == nil)
        #expect(reply.connection?.id == opened.id)
        #expect(first.connection === reply.connection)  // one object, referred to
        let closed = table.handle(socket(.close, at: 400))
        guard case .closed(let connection, let traffic, let time)? = closed.first?.closed else {
            Issue.record("no close event")
            return
        }
        #expect(time == 400)
        #expect(connection === opened)
        #expect(traffic == ConnectionTraffic(bytesIn: 12, bytesOut: 30))
        #expect(table.count == 0)
    }

    /// The same fd, closed and reused for another connection, is a new connection.
    @Test func anFdReusedAfterCloseIsANewConnection() {
        var table = ConnectionTable(clock: clock)
        _ = table.handle(socket(.connect, local: local, remote: server))
        var first = data()
        _ = table.attach(&first)
        _ = table.handle(socket(.close))
        let other = SocketAddress(ip: [10, 0, 0, 2], port: 443)
        _ = table.handle(socket(.connect, at: 500, local: local, remote: other))
        var second = data(at: 600)
        guard case .opened(let reopened, _)? = table.attach(&second) else {
            Issue.record("no open for the reused fd")
            return
        }
        #expect(reopened.id != first.connection?.id)
        #expect(reopened.remote == other)
    }

    /// A connect on an fd still tracked (its close was not seen) ends the old connection.
    @Test func anFdReusedWithoutASeenCloseEndsTheOldConnection() {
        var table = ConnectionTable(clock: clock)
        _ = table.handle(socket(.connect, local: local, remote: server))
        var first = data()
        _ = table.attach(&first)
        let ended = table.handle(socket(.accept, at: 700, local: server, remote: local, role: .server))
        #expect(ended.count == 1 && ended.first?.closed != nil)
        var next = data(at: 800)
        guard case .opened(let connection, _)? = table.attach(&next) else {
            Issue.record("no open")
            return
        }
        #expect(connection.role == .server && connection.origin == .accept)
    }

    /// A process that exits closes its connections, so a new process with the
    /// same PID starts afresh.
    @Test func processExitEndsItsConnectionsAndPIDReuseStartsAfresh() {
        var table = ConnectionTable(clock: clock)
        _ = table.handle(socket(.connect, fd: 5, local: local, remote: server))
        _ = table.handle(socket(.connect, fd: 6, local: local, remote: server))
        _ = table.handle(socket(.connect, pid: 11, fd: 5, local: local, remote: server))
        var a = data(fd: 5)
        var b = data(fd: 6)
        var other = data(pid: 11, fd: 5)
        _ = table.attach(&a)
        _ = table.attach(&b)
        _ = table.attach(&other)
        let ended = table.processExited(
            ProcessEvent(kind: .exit, pid: 10, tid: 10, fd: -1, monotonicNanoseconds: 900, comm: "client"))
        #expect(ended.compactMap(\.closed).count == 2)
        #expect(table.count == 1)
        var reused = data(fd: 5, at: 1000)
        #expect(table.attach(&reused) == nil)
        #expect(reused.connection == nil)  // the new process's fd 5 is unknown until its own socket event
    }

    /// A connection first seen mid-stream: user space guesses its role (here:
    /// the server's on port 8443) only where the kernel could not tell it.
    /// Where it told, the guess would say the opposite.
    @Test(arguments: [
        (ConnectionRole.unknown, UInt16(8443), ConnectionRole.server), (.server, 50000, .server),
        (.client, 8443, .client),
    ])
    func midConnectionsAskForTheirRoleOnlyIfTheKernelDidNotTell(
        told: ConnectionRole, port: UInt16, reported: ConnectionRole
    ) {
        var table = ConnectionTable(clock: clock) { event in event.local?.port == 8443 ? .server : .client }
        let near = port == server.port ? server : local
        _ = table.handle(socket(.mid, local: near, remote: near == server ? local : server, role: told))
        var event = data()
        guard case .opened(let connection, _)? = table.attach(&event) else {
            Issue.record("no open")
            return
        }
        #expect(connection.origin == .mid && connection.role == reported)
    }

    @Test func addressesReadAsUsersWriteThem() {
        #expect(SocketAddress(ip: [192, 168, 1, 20], port: 443).description == "192.168.1.20:443")
        #expect(SocketAddress(ip: Array(repeating: 0, count: 15) + [1], port: 8443).description == "[::1]:8443")
        #expect(SocketAddress(host: "::1")?.ip == Array(repeating: 0, count: 15) + [1])
        #expect(SocketAddress(host: "10.1.2.3")?.ip == [10, 1, 2, 3])
        #expect(SocketAddress(host: "nonsense") == nil)
    }
}
