/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Which processes tlstap traces, decided in the kernel so that an untraced
 * process never pays for a payload copy. The settings are rodata: user space
 * sets them between open and load, and the verifier prunes the branches of
 * filters that are off.
 */
#ifndef TLSTAP_FILTER_BPF_H
#define TLSTAP_FILTER_BPF_H

#include <bpf/bpf_core_read.h>

/* tlstap's own PID: never traced, whatever the filters say. */
const volatile __u32 own_pid = 0;
/* Each filter that is on must match; filters that are off match anything. */
const volatile bool filter_pids = false;
const volatile bool filter_comms = false;
const volatile bool filter_cgroup = false;
/* The cgroup v2 id that `tlstap -- COMMAND` put the command into. */
const volatile __u64 target_cgroup_id = 0;
/* -p also traces the processes the given ones fork, now and later (not with --no-children). */
const volatile bool follow_children = false;

/* PIDs (thread group ids) given with -p. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TLSTAP_MAX_FILTER_ENTRIES);
	__type(key, __u32);
	__type(value, __u8);
} traced_pids SEC(".maps");

/* Command names given with -c, zero-padded to TLSTAP_COMM_LEN. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TLSTAP_MAX_FILTER_ENTRIES);
	__type(key, struct tlstap_comm_key);
	__type(value, __u8);
} traced_comms SEC(".maps");

static __always_inline bool tracing_this_process(void)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;

	if (pid == own_pid)
		return false;
	if (filter_cgroup && bpf_get_current_cgroup_id() != target_cgroup_id)
		return false;
	if (filter_pids && !bpf_map_lookup_elem(&traced_pids, &pid))
		return false;
	if (filter_comms) {
		struct tlstap_comm_key key = {};

		bpf_get_current_comm(key.comm, sizeof(key.comm));
		if (!bpf_map_lookup_elem(&traced_comms, &key))
			return false;
	}
	return true;
}

/*
 * A traced process forked a child (with -p): the child is traced from its
 * first instruction, before it can make a TLS call (a PostgreSQL backend, an
 * nginx worker). Threads share their process's tgid and need nothing.
 */
static __always_inline void follow_fork(struct task_struct *parent, struct task_struct *child)
{
	__u32 parent_tgid = BPF_CORE_READ(parent, tgid);
	__u32 child_pid = BPF_CORE_READ(child, pid);
	__u8 traced = 1;

	if (!filter_pids || !follow_children || BPF_CORE_READ(child, tgid) != child_pid)
		return;
	if (bpf_map_lookup_elem(&traced_pids, &parent_tgid))
		bpf_map_update_elem(&traced_pids, &child_pid, &traced, BPF_ANY);
}

/* A process is gone: its PID, free for reuse, no longer names a traced process. */
static __always_inline void forget_traced_pid(__u32 tgid)
{
	if (filter_pids)
		bpf_map_delete_elem(&traced_pids, &tgid);
}

#endif /* TLSTAP_FILTER_BPF_H */
