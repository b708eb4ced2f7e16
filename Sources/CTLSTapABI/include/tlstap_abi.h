/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The records and settings shared by tlstap's BPF programs and its Swift
 * side. This is the only definition: bpf/tlstap.bpf.c includes it, and Swift
 * imports it as the CTLSTapABI module. Every field has a fixed width, padding
 * is spelled out, and the sizes are asserted below and again in a Swift test.
 */
#ifndef TLSTAP_ABI_H
#define TLSTAP_ABI_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define TLSTAP_COMM_LEN 16

/*
 * Largest payload one ring buffer record carries. A call that moved more
 * bytes is split into chunks of this size in BPF and joined again in Swift.
 * 16 KiB is the largest TLS record, so a read arrives in one chunk; and the
 * per-CPU scratch record (header + chunk) stays under the kernel's 32 KiB
 * limit for per-CPU map values.
 */
#define TLSTAP_CHUNK_MAX (16 * 1024)

/* How many entries the per-thread and filter maps may hold. */
#define TLSTAP_MAX_THREADS 16384
#define TLSTAP_MAX_FILTER_ENTRIES 1024

/* What a ring buffer record is; the first byte of every record. */
enum tlstap_record_kind {
	TLSTAP_RECORD_DATA = 1,
};

/* The TLS library whose function produced a record. */
enum tlstap_library {
	TLSTAP_LIB_OPENSSL = 1,
};

/* The probed function. */
enum tlstap_function {
	TLSTAP_FUNC_SSL_WRITE = 1,
	TLSTAP_FUNC_SSL_READ = 2,
	TLSTAP_FUNC_SSL_WRITE_EX = 3,
	TLSTAP_FUNC_SSL_READ_EX = 4,
};

/* Which way the plaintext went, seen from the traced process. */
enum tlstap_direction {
	TLSTAP_DIR_OUT = 1, /* written: plaintext before encryption */
	TLSTAP_DIR_IN = 2,  /* read: plaintext after decryption */
};

/*
 * One chunk of the plaintext a single TLS call moved. The payload bytes
 * (chunk_len of them) follow the header directly in the ring buffer record.
 *
 * A call is named by (tid, call_time_ns): one thread makes one call at a
 * time, and the monotonic clock never gives one thread the same nanosecond
 * twice. Chunks of a call carry the same name and their offset into the call.
 */
struct tlstap_chunk_header {
	__u8 kind;     /* enum tlstap_record_kind: TLSTAP_RECORD_DATA */
	__u8 library;  /* enum tlstap_library */
	__u8 function; /* enum tlstap_function */
	__u8 direction; /* enum tlstap_direction */
	__u32 pid;     /* thread group id, what users call the PID */
	__u32 tid;
	__u32 chunk_len;    /* payload bytes in this record */
	__u64 call_time_ns; /* CLOCK_MONOTONIC at the call's return */
	__u64 ssl;          /* the SSL object's address in the process */
	__u64 total_len;    /* bytes the call returned: the whole payload */
	__u64 chunk_offset; /* where this chunk starts within the payload */
	char comm[TLSTAP_COMM_LEN];
};

/*
 * What BPF could not deliver because the ring buffer was full, counted per
 * CPU in the tlstap_lost map. User space sums the CPUs.
 */
struct tlstap_lost_counts {
	__u64 records; /* chunks that did not fit */
	__u64 bytes;   /* payload bytes in them */
};

/* Key of the comm filter map: a task's comm, zero-padded. */
struct tlstap_comm_key {
	char comm[TLSTAP_COMM_LEN];
};

#ifdef __cplusplus
#define TLSTAP_STATIC_ASSERT static_assert
#else
#define TLSTAP_STATIC_ASSERT _Static_assert
#endif

TLSTAP_STATIC_ASSERT(sizeof(struct tlstap_chunk_header) == 64, "chunk header size");
TLSTAP_STATIC_ASSERT(__builtin_offsetof(struct tlstap_chunk_header, call_time_ns) == 16,
		     "call_time_ns offset");
TLSTAP_STATIC_ASSERT(__builtin_offsetof(struct tlstap_chunk_header, comm) == 48, "comm offset");
TLSTAP_STATIC_ASSERT(sizeof(struct tlstap_lost_counts) == 16, "lost counts size");
TLSTAP_STATIC_ASSERT(sizeof(struct tlstap_comm_key) == TLSTAP_COMM_LEN, "comm key size");

#endif /* TLSTAP_ABI_H */
