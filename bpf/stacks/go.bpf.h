/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Go's crypto/tls, compiled into programs (TLSStack.go; GoBinary finds the functions). */
#ifndef TLSTAP_STACK_GO_BPF_H
#define TLSTAP_STACK_GO_BPF_H

/*
 * Go's crypto/tls, compiled into the program. Go 1.17+ passes arguments in
 * registers (ABIInternal), in RAX, RBX, RCX, RDI...: the receiver first, a
 * slice as its pointer and length; results in RAX (n) and RBX/RCX (error).
 * R14 holds the running goroutine. A goroutine can move to another thread, and the runtime
 * moves its stack, so calls are keyed by goroutine and finished by probes on
 * the function's RET instructions: a uretprobe's return-address trampoline
 * on a goroutine stack would crash the program.
 */
/* Set by user space once a Go program has probes: only then do syscalls look for goroutines. */
volatile __u8 go_probes_attached = 0;

struct go_call_key {
	__u32 tgid;
	__u32 pad;
	__u64 goroutine;
};

/*
 * A Go call in flight. It is never kept by thread, as other libraries' calls
 * are: its thread runs other goroutines while it waits.
 */
struct go_call {
	struct tls_call call;
	__u64 length; /* len(b) */
	__u64 caller; /* the return address it was entered with */
	__u8 sent;    /* a Write already sent: at its start, or when its first record went out */
	__u8 pad[7];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, TLSTAP_MAX_THREADS);
	__type(key, struct go_call_key);
	__type(value, struct go_call);
} go_calls SEC(".maps");

/* Go's record type of application data (crypto/tls recordTypeApplicationData). */
#define TLSTAP_GO_APPLICATION_DATA 23

/* A new call of the running goroutine of process `tgid`: `buffer` and `length` are its slice. */
static __always_inline struct go_call go_call_starting(struct pt_regs *ctx, __u32 tgid, __u8 function, __u64 buffer,
						       __u64 length)
{
	struct go_call pending = {
		.call = {
			.ssl = ctx->ax,
			.buffer = buffer,
			.function = function,
			.library = TLSTAP_LIB_GO,
			.fd = -1,
		},
		.length = length,
	};

	recall_binding(&pending.call, tgid);
	return pending;
}

static __always_inline struct go_call_key go_call_key(struct pt_regs *ctx)
{
	struct go_call_key key = { .tgid = bpf_get_current_pid_tgid() >> 32, .goroutine = ctx->r14 };

	return key;
}

/*
 * crypto/tls.(*Conn).Read(b []byte) (int, error) at its entry: the slice in
 * RBX and RCX.
 */
static __always_inline void go_read_starts(struct pt_regs *ctx)
{
	struct go_call_key key = go_call_key(ctx);
	struct go_call pending;

	if (!tracing_this_process())
		return;
	pending = go_call_starting(ctx, key.tgid, TLSTAP_FUNC_GO_READ, ctx->bx, ctx->cx);
	bpf_map_update_elem(&go_calls, &key, &pending, BPF_ANY);
}

/*
 * A Write's bytes are sent where they start on their way out, before any of
 * them reaches the socket: at the entry of
 * crypto/tls.(*Conn).writeRecordLocked(typ recordType, data []byte), which
 * Write calls (typ in BL, data in RCX and RDI) once its handshake is done
 * and it holds the connection's output lock, so in the order they go out.
 * Sent later, at the write(2) (the socket tracepoints fire once it is done)
 * or at Write's RET, they could follow the peer's answer to them, read by
 * another goroutine: an HTTP/2 client's response read before its request.
 * Handshakes and alerts (other types) pass. A connection whose socket is not
 * known yet has its Write sent at its first record's write(2), which names
 * it (go_write_goes_out). TLS 1.0's CBC split calls it twice: each part is
 * sent by its own call.
 */
static __always_inline void go_write_starts(struct pt_regs *ctx, enum chunk_loop loop)
{
	struct go_call_key key = go_call_key(ctx);
	struct call_socket through;
	struct go_call pending, *entered;
	__u64 caller = 0;

	if ((__u8)ctx->bx != TLSTAP_GO_APPLICATION_DATA || !tracing_this_process())
		return;
	/*
	 * The probe is on the stack bound check's jump (ProbePlacement), which
	 * runs again when the stack grows: the runtime copies the stack and
	 * starts the function over. The same call, from the same return
	 * address and with no syscall made yet, is not a new one (TLS 1.0's
	 * split calls it from another; a Write whose RET went unseen made one).
	 */
	bpf_probe_read_user(&caller, sizeof(caller), (void *)ctx->sp);
	entered = bpf_map_lookup_elem(&go_calls, &key);
	if (entered && entered->call.function == TLSTAP_FUNC_GO_WRITE && entered->caller == caller &&
	    entered->call.ssl == ctx->ax && entered->call.fd < 0)
		return;
	pending = go_call_starting(ctx, key.tgid, TLSTAP_FUNC_GO_WRITE, ctx->cx, ctx->di);
	pending.caller = caller;
	through = call_socket(&pending.call, key.tgid);
	if (through.fd >= 0) {
		pending.sent = 1;
		send_call(&pending.call, TLSTAP_DIR_OUT, pending.length, through, loop);
	}
	bpf_map_update_elem(&go_calls, &key, &pending, BPF_ANY);
}

static __always_inline void go_finish(struct pt_regs *ctx, __u8 direction, enum chunk_loop loop)
{
	struct go_call_key key = go_call_key(ctx);
	struct go_call *pending = bpf_map_lookup_elem(&go_calls, &key);
	long n = ctx->ax;
	struct tls_call call;

	if (!pending || pending->call.function == TLSTAP_FUNC_SSL_HANDSHAKE)
		return;
	call = pending->call; /* its fd, if its goroutine's syscall named it, on whatever thread */
	if (pending->sent) /* by go_write_starts or go_write_goes_out */
		n = 0;
	if (n > (long)pending->length) /* Write's count covers both parts of TLS 1.0's CBC split */
		n = pending->length;
	bpf_map_delete_elem(&go_calls, &key);
	send_call(&call, direction, n > 0 ? n : 0, call_socket(&call, key.tgid), loop);
}

/* Entry of writeRecordLocked, Write's start; twice, for kernels with and without bpf_loop. */
SEC("uprobe")
int probe_go_write_enter(struct pt_regs *ctx)
{
	go_write_starts(ctx, CHUNKS_IN_BPF_LOOP);
	return 0;
}

SEC("uprobe")
int probe_go_write_enter_bounded(struct pt_regs *ctx)
{
	go_write_starts(ctx, CHUNKS_IN_BOUNDED_LOOP);
	return 0;
}

/* crypto/tls.(*Conn).Read(b []byte) (int, error): entry. */
SEC("uprobe")
int probe_go_read_enter(struct pt_regs *ctx)
{
	go_read_starts(ctx);
	return 0;
}

/*
 * crypto/tls.(*Conn).clientHandshake and serverHandshake(ctx): entry and
 * each RET. The handshake's own syscalls name the connection's socket, so a
 * client's first Write is sent with it, before its first byte goes out
 * (go_write_starts). A handshake run inside a Read already has its call,
 * which the syscalls name: it is left as it is.
 */
SEC("uprobe")
int probe_go_handshake_enter(struct pt_regs *ctx)
{
	struct go_call_key key = go_call_key(ctx);
	struct go_call pending;

	if (!tracing_this_process())
		return 0;
	pending = go_call_starting(ctx, key.tgid, TLSTAP_FUNC_SSL_HANDSHAKE, 0, 0);
	bpf_map_update_elem(&go_calls, &key, &pending, BPF_NOEXIST);
	return 0;
}

SEC("uprobe")
int probe_go_handshake_return(struct pt_regs *ctx)
{
	struct go_call_key key = go_call_key(ctx);
	struct go_call *pending = bpf_map_lookup_elem(&go_calls, &key);
	struct tls_call call;

	if (!pending || pending->call.function != TLSTAP_FUNC_SSL_HANDSHAKE)
		return 0;
	call = pending->call;
	bpf_map_delete_elem(&go_calls, &key);
	call_socket(&call, key.tgid); /* binds the connection to the socket its syscalls named */
	return 0;
}

/* Each RET of (*Conn).Write; twice, for kernels with and without bpf_loop. */
SEC("uprobe")
int probe_go_write_return(struct pt_regs *ctx)
{
	go_finish(ctx, TLSTAP_DIR_OUT, CHUNKS_IN_BPF_LOOP);
	return 0;
}

SEC("uprobe")
int probe_go_write_return_bounded(struct pt_regs *ctx)
{
	go_finish(ctx, TLSTAP_DIR_OUT, CHUNKS_IN_BOUNDED_LOOP);
	return 0;
}

/* Each RET of (*Conn).Read. */
SEC("uprobe")
int probe_go_read_return(struct pt_regs *ctx)
{
	go_finish(ctx, TLSTAP_DIR_IN, CHUNKS_IN_BPF_LOOP);
	return 0;
}

SEC("uprobe")
int probe_go_read_return_bounded(struct pt_regs *ctx)
{
	go_finish(ctx, TLSTAP_DIR_IN, CHUNKS_IN_BOUNDED_LOOP);
	return 0;
}

#endif
