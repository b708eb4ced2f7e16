/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Sending a call's plaintext to user space without truncating it: the buffer
 * is cut into chunks of at most TLSTAP_CHUNK_MAX bytes, each copied into a
 * per-CPU scratch record and handed to the ring buffer with only the bytes
 * copied. What does not fit is counted, never dropped silently.
 */
#ifndef TLSTAP_EMIT_BPF_H
#define TLSTAP_EMIT_BPF_H

/* Sized from user space before load (bpf_map__set_max_entries). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tlstap_lost_counts);
} lost_counts SEC(".maps");

/* A record as it goes into the ring buffer: header, then payload. */
struct chunk_record {
	struct tlstap_chunk_header header;
	__u8 payload[TLSTAP_CHUNK_MAX];
};

/* Too large for the 512-byte BPF stack, so one per CPU in a map. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct chunk_record);
} chunk_scratch SEC(".maps");

/*
 * One contiguous user buffer holding bytes [segment_offset, segment_offset +
 * segment_len) of a call's payload: the whole payload for SSL calls, one
 * iovec for vectored syscalls.
 */
struct emit_state {
	struct tlstap_chunk_header header; /* chunk_len and chunk_offset unset */
	__u64 buffer;			   /* user address of the segment */
	__u64 segment_offset;
	__u64 segment_len;
	__u8 delivered;			   /* a chunk of the call got through */
	__u8 cut;			   /* a chunk of the call was lost */
	__u8 pad[6];
};

/*
 * Loss marks: a call none of whose chunks got through leaves a gap in its
 * socket's stream. The socket counts the gap's bytes, per direction, and
 * the next record that gets through for it carries them (lost_before), so
 * user space knows exactly where a stream has a hole. `lost` is the
 * socket's counter for the call's direction, or NULL when the socket is
 * unknown. The count saturates: a u32 that says "at least".
 */
static __always_inline void begin_loss_mark(struct emit_state *state, __u32 *lost)
{
	state->header.lost_before = lost ? *lost : 0;
	state->delivered = 0;
	state->cut = 0;
}

static __always_inline void end_loss_mark(struct emit_state *state, __u32 *lost)
{
	__u64 gap;

	if (!lost)
		return;
	if (state->delivered) {
		if (*lost)
			*lost = 0;
		return;
	}
	gap = (__u64)*lost + state->header.total_len;
	*lost = gap > 0xffffffffULL ? 0xffffffff : (__u32)gap;
}

/* A chunk got through: only the first one of the call tells the gap before it. */
static __always_inline void chunk_delivered(struct emit_state *state)
{
	state->header.lost_before = 0;
	state->delivered = 1;
}

/*
 * Waking the reader for every record costs more than the copy (measured in
 * BENCHMARKS.md: most of the return probe's time). Records go in without a
 * wakeup; user space polls every few milliseconds, and BPF wakes it at once
 * when the bytes waiting reach this many, and again at each further
 * multiple: once per threshold's worth of records, not at every record
 * while a reader that is busy writing (`tlstap record`, whose bytes stay
 * in the ring until they are on the disk) leaves more than that waiting.
 * User space sets it from the ring buffer's size (an eighth, at most 1
 * MiB; never 0, which would mean never), so that a small ring buffer is
 * drained as it fills, not only at the next poll. A crossing can go
 * unsignalled (two CPUs submitting at once, the reader moving between a
 * record's reservation and the check, discarded records); the next
 * multiple, or the reader's poll, makes up for it.
 */
const volatile __u64 wakeup_threshold = 1 << 20;

/* The room a record of `bytes` bytes takes in the ring: its 8-byte header, and padding to 8. */
static __always_inline __u64 ring_room(__u64 bytes)
{
	return (bytes + BPF_RINGBUF_HDR_SZ + 7) & ~7ULL;
}

/* The flags for a record of `bytes` bytes, with which `waiting` bytes are in the ring. */
static __always_inline __u64 wakeup_flags_with(__u64 waiting, __u64 bytes)
{
	__u64 room = ring_room(bytes);
	__u64 before = waiting > room ? waiting - room : 0;

	return waiting / wakeup_threshold > before / wakeup_threshold ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

/* The flags to submit a reserved record of `bytes` bytes with (the ring counts it already). */
static __always_inline __u64 wakeup_flags(__u64 bytes)
{
	return wakeup_flags_with(bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA), bytes);
}

/* The same for bpf_ringbuf_output, which reserves the room itself: the ring does not count the record yet. */
static __always_inline __u64 wakeup_flags_for_output(__u64 bytes)
{
	return wakeup_flags_with(bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) + ring_room(bytes), bytes);
}

/*
 * Zeroes a socket or process record and fills the fields both begin with:
 * its kind and event, the current task, when, and which fd. A macro: the
 * two record types share these field names, not a type.
 */
#define fill_task_record(record, record_kind, record_event, record_fd)                 \
	do {                                                                           \
		__u64 task_ids = bpf_get_current_pid_tgid();                           \
                                                                                       \
		__builtin_memset((record), 0, sizeof(*(record)));                      \
		(record)->kind = (record_kind);                                        \
		(record)->event = (record_event);                                      \
		(record)->pid = task_ids >> 32;                                        \
		(record)->tid = (__u32)task_ids;                                       \
		(record)->fd = (record_fd);                                            \
		(record)->time_ns = bpf_ktime_get_ns();                                \
		bpf_get_current_comm((record)->comm, sizeof((record)->comm));          \
	} while (0)

/* `records` records of `bytes` bytes in all did not fit in the ring buffer. */
static __always_inline void count_lost_records(__u64 records, __u64 bytes)
{
	__u32 zero = 0;
	struct tlstap_lost_counts *lost = bpf_map_lookup_elem(&lost_counts, &zero);

	if (!lost)
		return;
	lost->records += records;
	lost->bytes += bytes;
}

static __always_inline void count_lost(__u64 bytes)
{
	count_lost_records(1, bytes);
}

/*
 * A chunk that could not be sent cuts its call: user space keeps a call's
 * bytes up to its first gap (a record has no way to say where later bytes
 * would go), so the chunks after it are counted as lost too instead of
 * taking ring buffer room only to be dropped, and the kernel's count is
 * exactly what the call misses.
 */
static __always_inline void chunk_lost(struct emit_state *state, __u32 len)
{
	state->cut = 1;
	count_lost(len);
}

/*
 * Linux 6.16 added this kfunc: it copies user memory straight into a
 * dynptr, so a chunk is copied once, into its ring buffer slot of exactly
 * its size. Declared weak: on older kernels libbpf leaves it NULL, and
 * chunks go through the per-CPU scratch record (two copies) instead.
 */
extern int bpf_probe_read_user_dynptr(struct bpf_dynptr *dst, __u32 offset, __u32 size,
				      const void *unsafe_ptr__ign) __weak __ksym;

/* Sends one chunk with a single copy, through a dynptr into the ring buffer; false if it was lost. */
static __always_inline bool emit_chunk_in_place(struct emit_state *state, __u64 offset, __u32 len)
{
	struct tlstap_chunk_header header = state->header;
	struct bpf_dynptr slot;

	header.chunk_len = len;
	header.chunk_offset = state->segment_offset + offset;
	if (bpf_ringbuf_reserve_dynptr(&events, sizeof(header) + len, 0, &slot)) {
		bpf_ringbuf_discard_dynptr(&slot, 0); /* the verifier wants even a failed slot released */
		return false;
	}
	if (bpf_dynptr_write(&slot, 0, &header, sizeof(header), 0) ||
	    bpf_probe_read_user_dynptr(&slot, sizeof(header), len, (void *)(state->buffer + offset))) {
		bpf_ringbuf_discard_dynptr(&slot, 0);
		return false;
	}
	bpf_ringbuf_submit_dynptr(&slot, wakeup_flags(sizeof(header) + len));
	return true;
}

/* Sends one chunk through the per-CPU scratch record (two copies); false if it was lost. */
static __always_inline bool emit_chunk_copied(struct emit_state *state, __u64 offset, __u32 len)
{
	struct chunk_record *record;
	__u32 zero = 0;

	record = bpf_map_lookup_elem(&chunk_scratch, &zero);
	if (!record)
		return false;
	record->header = state->header;
	record->header.chunk_len = len;
	record->header.chunk_offset = state->segment_offset + offset;
	return !bpf_probe_read_user(record->payload, len, (void *)(state->buffer + offset)) &&
	       !bpf_ringbuf_output(&events, record, sizeof(record->header) + len,
				   wakeup_flags_for_output(sizeof(record->header) + len));
}

/*
 * How a call's chunks are walked. bpf_loop (Linux 5.17+) takes any number.
 * Older kernels have only loops the verifier walks to their end, so there a
 * call's first TLSTAP_BOUNDED_CHUNKS chunks (4 MiB) are sent and the rest
 * is counted as lost, like chunks a full ring buffer refused. Every program
 * that sends payloads comes twice, the second named `..._bounded`; user
 * space loads the pair member this kernel takes (tlstap_bpf.c).
 */
enum chunk_loop {
	CHUNKS_IN_BPF_LOOP,
	CHUNKS_IN_BOUNDED_LOOP,
};

#define TLSTAP_BOUNDED_CHUNKS 256

/*
 * Sends chunk `index` of the segment; false if there is none or it was
 * lost (and counted), which ends the call's chunks.
 */
static __always_inline bool emit_chunk_at(struct emit_state *state, __u32 index, bool in_place)
{
	__u64 offset = (__u64)index * TLSTAP_CHUNK_MAX;
	__u32 len;
	bool sent;

	if (offset >= state->segment_len)
		return false;
	len = state->segment_len - offset > TLSTAP_CHUNK_MAX ? TLSTAP_CHUNK_MAX
							      : state->segment_len - offset;
	if (len > TLSTAP_CHUNK_MAX) /* tells the verifier the bound */
		return false;
	sent = in_place ? emit_chunk_in_place(state, offset, len) : emit_chunk_copied(state, offset, len);
	if (!sent) {
		chunk_lost(state, len);
		return false;
	}
	chunk_delivered(state);
	return true;
}

/*
 * bpf_loop callback: sends chunk `index`, or counts it lost and stops the
 * loop (returns 1). It reads nothing the loop's earlier calls wrote: kernels
 * before 6.7 verified a callback once, from the state before the loop, and
 * removed as dead the branches that state ruled out (a check of `cut` was,
 * so a cut call went on sending on Debian 12's 6.1).
 */
static long emit_chunk(__u32 index, void *data)
{
	return emit_chunk_at(data, index, bpf_probe_read_user_dynptr) ? 0 : 1;
}

/* Kernels without bpf_loop: the segment being sent, for emit_chunks_bounded. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct emit_state);
} bounded_segment SEC(".maps");

/*
 * The bounded loop over the segment in bounded_segment, counting as
 * bpf_loop does: the chunks tried, the lost one included. Only on kernels
 * before 5.17, which lack the dynptr kfunc too. A global function, which
 * the verifier checks once, on its own: inlined or static, it was walked
 * again at every call, and --plaintext's loop over iovecs went past the
 * verifier's million instructions. Linux 5.10's global functions take only
 * numbers, so the state goes through a per-CPU slot.
 */
__noinline int emit_chunks_bounded(__u64 chunks)
{
	__u32 zero = 0;
	struct emit_state *state = bpf_map_lookup_elem(&bounded_segment, &zero);
	__u32 i;

	if (!state)
		return 0;
	for (i = 0; i < TLSTAP_BOUNDED_CHUNKS && i < chunks; i++)
		if (!emit_chunk_at(state, i, false))
			return i + 1;
	return i;
}

/* emit_chunks_bounded on `state`: the chunks tried, or 0 if none could be. */
static __always_inline long emit_segment_bounded(struct emit_state *state, __u64 chunks)
{
	__u32 zero = 0;
	struct emit_state *slot = bpf_map_lookup_elem(&bounded_segment, &zero);
	long done;

	if (!slot)
		return 0;
	*slot = *state;
	done = emit_chunks_bounded(chunks);
	*state = *slot; /* what the chunks changed: delivered, cut, lost_before */
	return done;
}

/*
 * Sends the segment's bytes, chunk by chunk, up to the first that is lost
 * or the bounded loop's end; those after it are counted lost. A segment
 * after a cut one (the next iovec) is counted lost whole.
 */
static __always_inline void emit_segment(struct emit_state *state, enum chunk_loop loop)
{
	__u64 chunks = (state->segment_len + TLSTAP_CHUNK_MAX - 1) / TLSTAP_CHUNK_MAX;
	long done;

	if (state->cut) {
		count_lost_records(chunks, state->segment_len);
		return;
	}
	done = loop == CHUNKS_IN_BPF_LOOP ? bpf_loop(chunks, emit_chunk, state, 0) : emit_segment_bounded(state, chunks);
	if (done < 0)
		done = 0; /* bpf_loop refused to start */
	/* Stopped early: the chunk `done - 1` was lost (and counted) or the last sent, the rest were not tried. */
	if (done < chunks) {
		state->cut = 1;
		count_lost_records(chunks - done, state->segment_len - done * TLSTAP_CHUNK_MAX);
	}
}

/* Sends a whole call's `total_len` bytes at user address `buffer`. */
static __always_inline void emit_payload(struct emit_state *state, enum chunk_loop loop)
{
	state->segment_offset = 0;
	state->segment_len = state->header.total_len;
	emit_segment(state, loop);
}

#endif /* TLSTAP_EMIT_BPF_H */
