/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The syscalls tlstap hooks, through one raw tracepoint (sys_enter) for
 * all of them, and with --plaintext a second (sys_exit). sys_enter passes
 * the syscalls tlstap has a handler for to it by a tail call, indexed by
 * syscall number (user space fills the table after load), and ends at once
 * for the others: a process tlstap does not trace pays for a missed tail
 * call on most syscalls, and for the scope check that each handler makes
 * first on the rest. sys_exit is a BTF tracepoint, which reads the
 * syscall's return without a helper call. How sockets opened comes from
 * TCP's state changes instead of connect() and accept() returning (see
 * socket_origins): the return of every syscall of every process cost
 * about as much again as its entry.
 *
 * A tracepoint per syscall (syscalls/sys_enter_write, ...) cost every
 * process on the host about 250 ns per syscall, since the kernel builds a
 * perf record for each before BPF sees it, and detaching each waited for an
 * RCU grace period under a global mutex: two seconds to stop.
 *
 * A handler is tail-called with the raw tracepoint's context: args[0] is the
 * user registers the syscall was entered with, args[1] the syscall number.
 *
 * Where the kernel has them (Linux 6.3+), tracepoints of the socket layer,
 * TCP and the memory map replace sys_enter, unless --plaintext asks for
 * every read and write: enabling any syscall tracepoint sends every
 * syscall of every process through the kernel's slow path (about 105 ns
 * per syscall here with an empty program on sys_enter, 220 ns with
 * tlstap's). sock_send_length and sock_recv_length fire once per socket
 * send or receive, after it, never for a file or a pipe; the same
 * handlers then run with the user registers of the syscall the socket
 * call is made in (bpf_task_pt_regs). A tracked socket's close is seen in
 * TCP's state change or destruction inside close() (socket_closing), and
 * an mmap where the kernel picks the address (on_map_area).
 */
#ifndef TLSTAP_SYSCALLS_BPF_H
#define TLSTAP_SYSCALLS_BPF_H

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

/* Syscall numbers tlstap may hook are below this (x86-64 numbers stay under 512). */
#define TLSTAP_SYSCALL_SLOTS 512

/* The x86-64 numbers of the syscalls the socket tracepoints' handlers tell apart. */
enum syscall_number {
	TLSTAP_NR_READ = 0,
	TLSTAP_NR_WRITE = 1,
	TLSTAP_NR_CLOSE = 3,
	TLSTAP_NR_MMAP = 9,
	TLSTAP_NR_READV = 19,
	TLSTAP_NR_WRITEV = 20,
	TLSTAP_NR_SENDTO = 44,
	TLSTAP_NR_RECVFROM = 45,
	TLSTAP_NR_SENDMSG = 46,
	TLSTAP_NR_RECVMSG = 47,
};

struct syscall_handlers {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, TLSTAP_SYSCALL_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
};

struct syscall_handlers syscall_enters SEC(".maps");

static __always_inline struct pt_regs *syscall_regs(struct bpf_raw_tracepoint_args *ctx)
{
	return (struct pt_regs *)ctx->args[0];
}

/*
 * The user registers of the syscall the current task is in, from a BTF
 * tracepoint (Linux 5.15+). In softirq, those of the task it interrupted.
 */
static __always_inline struct pt_regs *current_syscall_regs(void)
{
	return (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
}

#define TLSTAP_PF_IO_WORKER 0x00000010
#define TLSTAP_PF_KTHREAD 0x00200000

/*
 * The number of the syscall the current task entered with `regs`, or -1:
 * interrupted in user space, or a kernel thread or io_uring worker (a
 * socket call of NFS, or one io_uring punted), which entered none and
 * whose registers are zeros, the number of read.
 */
static __always_inline long syscall_number(struct pt_regs *regs)
{
	if (bpf_get_current_task_btf()->flags & (TLSTAP_PF_KTHREAD | TLSTAP_PF_IO_WORKER))
		return -1;
	return BPF_CORE_READ(regs, orig_ax);
}

/* A syscall's arguments, read from the user registers it was entered with (a handler reads only those it uses). */
#define SYSCALL_ARG1(regs) PT_REGS_PARM1_CORE_SYSCALL(regs)
#define SYSCALL_ARG2(regs) PT_REGS_PARM2_CORE_SYSCALL(regs)
#define SYSCALL_ARG3(regs) PT_REGS_PARM3_CORE_SYSCALL(regs)
#define SYSCALL_ARG4(regs) PT_REGS_PARM4_CORE_SYSCALL(regs)
#define SYSCALL_ARG5(regs) PT_REGS_PARM5_CORE_SYSCALL(regs)

SEC("raw_tracepoint/sys_enter")
int on_sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	bpf_tail_call(ctx, &syscall_enters, (__u32)ctx->args[1]);
	return 0;
}

#endif /* TLSTAP_SYSCALLS_BPF_H */
