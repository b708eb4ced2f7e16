/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* TLS calls in flight, per thread: shared by the uprobes and the syscall probes. */
#ifndef TLSTAP_CALLS_BPF_H
#define TLSTAP_CALLS_BPF_H

/* The arguments of a TLS call in flight, kept from entry to return. */
struct tls_call {
	__u64 ssl;
	__u64 buffer;
	__u64 length_out; /* size_t * of the _ex forms */
	__u8 function;	  /* enum tlstap_function */
	__u8 library;	  /* enum tlstap_library */
	__u8 pad[2];
	__s32 fd;	  /* the socket the call read or wrote, once a syscall names it */
	__s32 known_fd;	  /* the fd the TLS object used last (ssl_fds) when the call began, or -1 */
	__u8 pad2[4];
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

#endif /* TLSTAP_CALLS_BPF_H */
