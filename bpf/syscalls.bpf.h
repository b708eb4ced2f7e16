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
 */
#ifndef TLSTAP_SYSCALLS_BPF_H
#define TLSTAP_SYSCALLS_BPF_H

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

/* Syscall numbers tlstap may hook are below this (x86-64 numbers stay under 512). */
#define TLSTAP_SYSCALL_SLOTS 512

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

/* The syscall's arguments, read from the user registers (a handler reads only those it uses). */
#define SYSCALL_ARG1(ctx) PT_REGS_PARM1_CORE_SYSCALL(syscall_regs(ctx))
#define SYSCALL_ARG2(ctx) PT_REGS_PARM2_CORE_SYSCALL(syscall_regs(ctx))
#define SYSCALL_ARG3(ctx) PT_REGS_PARM3_CORE_SYSCALL(syscall_regs(ctx))
#define SYSCALL_ARG5(ctx) PT_REGS_PARM5_CORE_SYSCALL(syscall_regs(ctx))

SEC("raw_tracepoint/sys_enter")
int on_sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	bpf_tail_call(ctx, &syscall_enters, (__u32)ctx->args[1]);
	return 0;
}

#endif /* TLSTAP_SYSCALLS_BPF_H */
