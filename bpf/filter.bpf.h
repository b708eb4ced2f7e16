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

/*
 * The processes -p traces (thread group ids), and unless --no-children
 * those they fork: a byte per PID, set to 1 for a traced process, in
 * blocks of TLSTAP_PIDS_PER_BLOCK, one per array entry (sized by user space
 * before load: TLSTAP_PID_LIMIT PIDs with -p, a block without). Every socket
 * call on the host reads it: an array entry is found without a helper call
 * (1 ns here, against 58 ns for a hash lookup of the PID). Bytes, not bits:
 * the fork and exit programs and user space, which writes through its
 * mapping of the array, each store their own byte, so no update undoes
 * another without atomic instructions (Linux 5.10 has only add).
 */
struct traced_pid_block {
	__u8 traced[TLSTAP_PIDS_PER_BLOCK];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct traced_pid_block);
} traced_pids SEC(".maps");

/* The byte of `id` in a map of traced_pid_block, or NULL if the map has none for it. */
static __always_inline __u8 *pid_byte(void *blocks, __u32 id)
{
	__u32 block = id / TLSTAP_PIDS_PER_BLOCK;
	struct traced_pid_block *found = bpf_map_lookup_elem(blocks, &block);

	return found ? &found->traced[id & (TLSTAP_PIDS_PER_BLOCK - 1)] : NULL;
}

/* The byte of `pid` in the traced set, or NULL if the set has none for it. */
static __always_inline __u8 *traced_pid(__u32 pid)
{
	return pid_byte(&traced_pids, pid);
}

/* Command names given with -c, zero-padded to TLSTAP_COMM_LEN. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TLSTAP_MAX_FILTER_ENTRIES);
	__type(key, struct tlstap_comm_key);
	__type(value, __u8);
} traced_comms SEC(".maps");

/*
 * The verdicts of the scope that has to be asked (-c, or `--`'s cgroup; the
 * two cannot be combined), kept as for traced_pids so that the question
 * is asked once, not at every socket call on the host: a thread's name (by
 * thread id) read and looked up costs ~110 ns here, a process's cgroup (by
 * PID) ~40, a byte 1. A verdict is asked at the first call that needs it
 * and kept until what it depends on changes: a name only through
 * __set_task_comm (exec, PR_SET_NAME, a write to /proc/TID/comm), whose
 * tracepoint gives the new name's verdict; a process's cgroup only by a
 * migration, whose tracepoint forgets it; a new thread or process asks
 * afresh.
 */
#define TLSTAP_VERDICT_UNASKED 0
#define TLSTAP_VERDICT_TRACED 1
#define TLSTAP_VERDICT_UNTRACED 2

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct traced_pid_block);
} verdicts SEC(".maps");

/* Whether the current thread's name is one of -c's, asked of the names. */
static __always_inline bool comm_matches(void)
{
	struct tlstap_comm_key key = {};

	bpf_get_current_comm(key.comm, sizeof(key.comm));
	return bpf_map_lookup_elem(&traced_comms, &key) != NULL;
}

/* Whether the current thread passes -c or `--`, whichever is on, asked once and kept. */
static __always_inline bool verdict_traced(__u64 pid_tgid)
{
	__u32 id = filter_comms ? (__u32)pid_tgid : pid_tgid >> 32;
	__u32 block = id / TLSTAP_PIDS_PER_BLOCK;
	struct traced_pid_block *kept = bpf_map_lookup_elem(&verdicts, &block);
	__u8 *verdict = NULL;
	bool traced;

	if (kept) { /* checked apart: the verifier refuses arithmetic on a pointer that may be NULL */
		verdict = &kept->traced[id & (TLSTAP_PIDS_PER_BLOCK - 1)];
		if (*verdict != TLSTAP_VERDICT_UNASKED)
			return *verdict == TLSTAP_VERDICT_TRACED;
	}
	traced = filter_comms ? comm_matches() : bpf_get_current_cgroup_id() == target_cgroup_id;
	if (kept)
		*verdict = traced ? TLSTAP_VERDICT_TRACED : TLSTAP_VERDICT_UNTRACED;
	return traced;
}

/*
 * Thread or process `id` is new, or moved to another cgroup: its verdict is
 * asked again (ids are reused; an exec from a thread other than the leader
 * gives the leader's id away without an exit).
 */
static __always_inline void forget_verdict(__u32 id)
{
	__u8 *verdict = filter_comms || filter_cgroup ? pid_byte(&verdicts, id) : NULL;

	if (verdict)
		*verdict = TLSTAP_VERDICT_UNASKED;
}

static __always_inline bool tracing_this_process(void)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 pid = pid_tgid >> 32;

	if (pid == own_pid)
		return false;
	if (filter_pids) {
		__u8 *traced = traced_pid(pid);

		if (!traced || !*traced)
			return false;
	}
	if ((filter_comms || filter_cgroup) && !verdict_traced(pid_tgid))
		return false;
	return true;
}

/*
 * A traced process forked a child (with -p): the child is traced from its
 * first instruction, before it can make a TLS call (a PostgreSQL backend, an
 * nginx worker). Threads share their process's tgid and need nothing.
 * With -c or `--`, a new thread or process has its verdict asked afresh.
 */
static __always_inline void follow_fork(struct task_struct *parent, struct task_struct *child)
{
	__u32 child_pid = BPF_CORE_READ(child, pid);
	__u8 *parent_traced, *child_traced;

	forget_verdict(child_pid);
	if (!filter_pids || !follow_children || BPF_CORE_READ(child, tgid) != child_pid)
		return;
	parent_traced = traced_pid(BPF_CORE_READ(parent, tgid));
	child_traced = traced_pid(child_pid);
	if (parent_traced && *parent_traced && child_traced)
		*child_traced = 1;
}

/* A process is gone: its PID, free for reuse, no longer names a traced process. */
static __always_inline void forget_traced_pid(__u32 tgid)
{
	__u8 *traced = filter_pids ? traced_pid(tgid) : NULL;

	if (traced)
		*traced = 0;
}

#endif /* TLSTAP_FILTER_BPF_H */
