// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The floor: what any uprobe tracer of OpenSSL pays before it does any work.
 * Two empty programs, attached by floor.c on entry and return of exactly the
 * functions tlstap probes (SSL_write, SSL_read, SSL_write_ex, SSL_read_ex).
 * All the cost measured with them is the trap into the kernel and back.
 *
 * And the floor of what every process on the host pays per syscall while
 * tlstap runs: an empty program on the syscall hook tlstap uses without
 * --plaintext (the raw tracepoint sys_enter, bpf/syscalls.bpf.h), attached
 * by `floor -s`. On Linux 6.3 and later tlstap hooks the socket tracepoints
 * instead (sock_send_length and sock_recv_length): `floor -k` attaches an
 * empty program on each, what every socket call on the host pays for them.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("uprobe")
int floor_enter(struct pt_regs *ctx)
{
	return 0;
}

SEC("uretprobe")
int floor_exit(struct pt_regs *ctx)
{
	return 0;
}

SEC("raw_tracepoint/sys_enter")
int floor_sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	return 0;
}

SEC("tp_btf/sock_send_length")
int floor_sock_send(__u64 *ctx)
{
	return 0;
}

SEC("tp_btf/sock_recv_length")
int floor_sock_receive(__u64 *ctx)
{
	return 0;
}
