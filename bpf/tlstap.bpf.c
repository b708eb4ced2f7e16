// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * tlstap's kernel side: uprobes on the TLS libraries' read and write
 * functions. The entry probe remembers the arguments of the call per thread;
 * the return probe learns how many bytes really went through and sends them.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "tlstap_abi.h"
#include "filter.bpf.h"
#include "emit.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* The arguments of a TLS call in flight, kept from entry to return. */
struct tls_call {
	__u64 ssl;
	__u64 buffer;
	__u64 length_out; /* size_t * of the _ex forms */
	__u8 function;	  /* enum tlstap_function */
	__u8 pad[7];
};

/*
 * One call in flight per thread. LRU, so a return probe that never fires
 * (the thread died inside the call) cannot fill the map for good.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, TLSTAP_MAX_THREADS);
	__type(key, __u64);
	__type(value, struct tls_call);
} tls_calls SEC(".maps");

static __always_inline void remember_call(struct pt_regs *ctx, __u8 function, __u64 length_out)
{
	__u64 thread = bpf_get_current_pid_tgid();
	struct tls_call call = {
		.ssl = PT_REGS_PARM1(ctx),
		.buffer = PT_REGS_PARM2(ctx),
		.length_out = length_out,
		.function = function,
	};

	/* An inner probed call replaces the outer one, so bytes go out once. */
	bpf_map_update_elem(&tls_calls, &thread, &call, BPF_ANY);
}

static __always_inline void finish_call(struct pt_regs *ctx, __u8 direction)
{
	__u64 thread = bpf_get_current_pid_tgid();
	struct tls_call *call = bpf_map_lookup_elem(&tls_calls, &thread);
	struct emit_state state = {};
	long ret = PT_REGS_RC(ctx);
	__u64 moved = 0;

	if (!call)
		return;
	if (call->function == TLSTAP_FUNC_SSL_WRITE_EX || call->function == TLSTAP_FUNC_SSL_READ_EX) {
		/* SSL_{read,write}_ex return 1 and store the count through a pointer. */
		if ((int)ret == 1)
			bpf_probe_read_user(&moved, sizeof(moved), (void *)call->length_out);
	} else if ((int)ret > 0) {
		moved = (int)ret;
	}

	state.header.kind = TLSTAP_RECORD_DATA;
	state.header.library = TLSTAP_LIB_OPENSSL;
	state.header.function = call->function;
	state.header.direction = direction;
	state.header.pid = thread >> 32;
	state.header.tid = (__u32)thread;
	state.header.call_time_ns = bpf_ktime_get_ns();
	state.header.ssl = call->ssl;
	state.header.total_len = moved;
	state.buffer = call->buffer;
	bpf_map_delete_elem(&tls_calls, &thread);

	if (!moved)
		return;
	bpf_get_current_comm(state.header.comm, sizeof(state.header.comm));
	emit_payload(&state);
}

/* SSL_write(ssl, buf, num): the buffer is still plaintext on entry. */
SEC("uprobe")
int probe_ssl_write_enter(struct pt_regs *ctx)
{
	if (tracing_this_process())
		remember_call(ctx, TLSTAP_FUNC_SSL_WRITE, 0);
	return 0;
}

/* SSL_read(ssl, buf, num): the buffer holds plaintext once it returns. */
SEC("uprobe")
int probe_ssl_read_enter(struct pt_regs *ctx)
{
	if (tracing_this_process())
		remember_call(ctx, TLSTAP_FUNC_SSL_READ, 0);
	return 0;
}

/* SSL_write_ex(ssl, buf, num, size_t *written) */
SEC("uprobe")
int probe_ssl_write_ex_enter(struct pt_regs *ctx)
{
	if (tracing_this_process())
		remember_call(ctx, TLSTAP_FUNC_SSL_WRITE_EX, PT_REGS_PARM4(ctx));
	return 0;
}

/* SSL_read_ex(ssl, buf, num, size_t *readbytes) */
SEC("uprobe")
int probe_ssl_read_ex_enter(struct pt_regs *ctx)
{
	if (tracing_this_process())
		remember_call(ctx, TLSTAP_FUNC_SSL_READ_EX, PT_REGS_PARM4(ctx));
	return 0;
}

/* One return probe per direction: the entry already named the function. */
SEC("uretprobe")
int probe_ssl_write_exit(struct pt_regs *ctx)
{
	finish_call(ctx, TLSTAP_DIR_OUT);
	return 0;
}

SEC("uretprobe")
int probe_ssl_read_exit(struct pt_regs *ctx)
{
	finish_call(ctx, TLSTAP_DIR_IN);
	return 0;
}
