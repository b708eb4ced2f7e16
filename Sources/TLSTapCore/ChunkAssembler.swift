/// Joins the chunks of each TLS call back into one `DataEvent`.
///
/// BPF cuts a large buffer into chunks and sends them one after another from
/// the thread that made the call, so the chunks of one call never interleave
/// with a later call of the same thread. The assembler still accepts them in
/// any order and at any split. A call whose chunks were lost in the kernel is
/// emitted with what arrived as soon as the same thread's next call shows up,
/// or at `flush()`; its `missingBytes` says how much is absent. The call's
/// first chunk to arrive tells the bytes of whole calls lost before it.
public struct ChunkAssembler {
    private struct PartialCall {
        var first: DataChunk
        /// The chunks that arrived, by offset: memory follows what arrived,
        /// whatever total length a (possibly corrupt) header claims.
        var chunks: [UInt64: [UInt8]] = [:]
        var received: UInt64 = 0
    }

    private var pending: [UInt32: PartialCall] = [:]
    /// Threads with a call in flight at most; beyond, the oldest is emitted as it is.
    private let maxPendingCalls = 4096
    private let clock: WallClock

    /// - Parameter clock: converts the kernel's monotonic call times to wall-clock times.
    public init(clock: WallClock) {
        self.clock = clock
    }

    /// Calls still waiting for chunks.
    public var pendingCalls: Int { pending.count }

    /// Adds one chunk and hands `emit` the calls it completed, oldest first:
    /// an incomplete earlier call of the same thread, then this one if it is whole.
    /// `emit` may change the event where it lies (the session names its
    /// connection): a large struct handed on as owned was copied first.
    public mutating func add(_ chunk: DataChunk, emit: (inout DataEvent) -> Void) {
        // With nothing pending, the common case, there is nothing to look up.
        if !pending.isEmpty, let partial = pending[chunk.tid],
            partial.first.callTimeNanoseconds != chunk.callTimeNanoseconds
        {
            pending[chunk.tid] = nil
            var earlier = incompleteEvent(partial)
            emit(&earlier)
        }
        if chunk.offset == 0 && UInt64(chunk.payload.count) == chunk.totalLength {
            var whole = event(chunk, payload: chunk.payload)
            emit(&whole)
            return
        }
        var partial = pending[chunk.tid] ?? PartialCall(first: chunk)
        if partial.chunks.updateValue(chunk.payload, forKey: chunk.offset) == nil {
            partial.received += UInt64(chunk.payload.count)
        }
        if partial.received == chunk.totalLength {
            pending[chunk.tid] = nil
            var joined = event(partial.first, payload: Self.contiguousPrefix(partial))
            emit(&joined)
        } else {
            pending[chunk.tid] = partial
            if pending.count > maxPendingCalls,
                let oldest = pending.min(by: {
                    $0.value.first.callTimeNanoseconds < $1.value.first.callTimeNanoseconds
                })
            {
                pending[oldest.key] = nil
                var evicted = incompleteEvent(oldest.value)
                emit(&evicted)
            }
        }
    }

    /// Adds one chunk.
    /// - Returns: the calls this chunk completed, as `add(_:emit:)` hands them on.
    public mutating func add(_ chunk: DataChunk) -> [DataEvent] {
        var finished: [DataEvent] = []
        add(chunk) { finished.append($0) }
        return finished
    }

    /// Emits every call still waiting, with the bytes that arrived.
    public mutating func flush() -> [DataEvent] {
        let calls = pending.values.sorted { $0.first.callTimeNanoseconds < $1.first.callTimeNanoseconds }
        pending.removeAll()
        return calls.map(incompleteEvent)
    }

    /// An incomplete call keeps the bytes that arrived in order, up to the first gap.
    private func incompleteEvent(_ partial: PartialCall) -> DataEvent {
        event(partial.first, payload: Self.contiguousPrefix(partial))
    }

    /// The chunks joined from offset 0 up to the first gap (all of them when complete).
    private static func contiguousPrefix(_ partial: PartialCall) -> [UInt8] {
        var joined: [UInt8] = []
        joined.reserveCapacity(Int(clamping: partial.received))
        while let chunk = partial.chunks[UInt64(joined.count)], !chunk.isEmpty {
            joined += chunk
        }
        return joined
    }

    private func event(_ chunk: DataChunk, payload: [UInt8]) -> DataEvent {
        DataEvent(
            timeNanoseconds: clock.wallNanoseconds(fromMonotonic: chunk.callTimeNanoseconds), pid: chunk.pid,
            tid: chunk.tid, comm: chunk.comm, library: chunk.library, function: chunk.function,
            direction: chunk.direction, ssl: chunk.ssl, length: chunk.totalLength, payload: payload, fd: chunk.fd,
            lostBefore: UInt64(chunk.lostBefore))
    }
}
