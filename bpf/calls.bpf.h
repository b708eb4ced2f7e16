/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* TLS calls in flight, per thread: shared by the uprobes and the syscall probes. */
#ifndef TLSTAP_CALLS_BPF_H
#define TLSTAP_CALLS_BPF_H

/* The arguments of a TLS call in flight, kept from entry to return. */
struct tls_call {
	__u64 ssl;
	__u64 buffer;
	__u64 length_out; /* size_t * of the _ex forms and their inner function, else 0 */
	__u8 function;	  /* enum tlstap_function */
	__u8 library;	  /* enum tlstap_library */
	__u8 pad[2];
	__s32 fd;	  /* the socket the call read or wrote, once a syscall names it */
	__s32 known_fd;	  /* the fd the TLS object is bound to (ssl_fds) when the call began, or -1 */
	__u8 pad2[4];
	__u64 known_ino;  /* the inode of the socket it was bound to */
};

/*
 * One entry per thread, holding its call in flight. A thread's entry is
 * reused from call to call: a finished call only marks it idle (function 0),
 * because an LRU update allocates a node and a delete frees one, which cost
 * more than the rest of an entry probe. The entry is deleted when the thread
 * exits; LRU, so one whose exit was missed cannot fill the map for good.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, TLSTAP_MAX_THREADS);
	__type(key, __u64);
	__type(value, struct tls_call);
} tls_calls SEC(".maps");

/* The call `thread` is inside, or NULL. */
static __always_inline struct tls_call *call_in_flight(__u64 thread)
{
	struct tls_call *call = bpf_map_lookup_elem(&tls_calls, &thread);

	return call && call->function ? call : NULL;
}

/* Records the call `thread` enters, in its entry if it has one already. */
static __always_inline void start_call(__u64 thread, const struct tls_call *call)
{
	struct tls_call *entry = bpf_map_lookup_elem(&tls_calls, &thread);

	if (entry)
		*entry = *call;
	else
		bpf_map_update_elem(&tls_calls, &thread, call, BPF_ANY);
}

static __always_inline void end_call(struct tls_call *call)
{
	call->function = 0;
}

#endif /* TLSTAP_CALLS_BPF_H */
