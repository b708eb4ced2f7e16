/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Go's crypto/tls, compiled into programs (TLSStack.go; GoBinary finds the functions). */
#ifndef TLSTAP_STACK_GO_BPF_H
#define TLSTAP_STACK_GO_BPF_H

/*
 * Go's crypto/tls, compiled into the program. Go 1.17+ passes arguments in
 * registers (ABIInternal): the receiver in RAX, a slice's pointer and length
 * in RBX and RCX, results in RAX (n) and RBX/RCX (error). R14 holds the
 * running goroutine. A goroutine can move to another thread, and the runtime
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
	__u8 sent;    /* a Write already sent when its first record went out */
	__u8 pad[7];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, TLSTAP_MAX_THREADS);
	__type(key, struct go_call_key);
	__type(value, struct go_call);
} go_calls SEC(".maps");

static __always_inline void go_remember(struct pt_regs *ctx, __u8 function)
{
	__u64 thread = bpf_get_current_pid_tgid();
	struct go_call_key key = { .tgid = thread >> 32, .goroutine = ctx->r14 };
	struct go_call pending = {
		.call = {
			.ssl = ctx->ax,
			.buffer = ctx->bx,
			.function = function,
			.library = TLSTAP_LIB_GO,
			.fd = -1,
		},
		.length = ctx->cx,
	};

	if (!tracing_this_process())
		return;
	recall_binding(&pending.call, key.tgid);
	bpf_map_update_elem(&go_calls, &key, &pending, BPF_ANY);
}

static __always_inline void go_finish(struct pt_regs *ctx, __u8 direction, enum chunk_loop loop)
{
	__u64 thread = bpf_get_current_pid_tgid();
	struct go_call_key key = { .tgid = thread >> 32, .goroutine = ctx->r14 };
	struct go_call *pending = bpf_map_lookup_elem(&go_calls, &key);
	long n = ctx->ax;
	struct tls_call call;

	if (!pending)
		return;
	call = pending->call; /* its fd, if its goroutine's syscall named it, on whatever thread */
	if (pending->sent) /* by go_write_goes_out */
		n = 0;
	bpf_map_delete_elem(&go_calls, &key);
	send_call(&call, direction, n > 0 ? n : 0, call_socket(&call, thread >> 32), loop);
}

/* crypto/tls.(*Conn).Write(b []byte) (int, error): entry. */
SEC("uprobe")
int probe_go_write_enter(struct pt_regs *ctx)
{
	go_remember(ctx, TLSTAP_FUNC_GO_WRITE);
	return 0;
}

/* crypto/tls.(*Conn).Read(b []byte) (int, error): entry. */
SEC("uprobe")
int probe_go_read_enter(struct pt_regs *ctx)
{
	go_remember(ctx, TLSTAP_FUNC_GO_READ);
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
