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

/*
 * -p's set of processes: a byte per PID, TLSTAP_PIDS_PER_BLOCK to an entry
 * of an array map that user space maps into its memory (filter.bpf.h), for
 * every PID Linux can give (PID_MAX_LIMIT on 64-bit).
 */
#define TLSTAP_PID_LIMIT (1u << 22)
#define TLSTAP_PIDS_PER_BLOCK 64

/* Sockets tracked per process, and SSL objects bound to their fds. */
#define TLSTAP_MAX_SOCKETS 65536

/* Distinct executable files remembered as already looked at. */
#define TLSTAP_MAX_MAPPED_FILES 8192

/* What a ring buffer record is; the first byte of every record. */
enum tlstap_record_kind {
	TLSTAP_RECORD_DATA = 1,   /* struct tlstap_chunk_header + payload */
	TLSTAP_RECORD_SOCKET = 2, /* struct tlstap_socket_record */
	TLSTAP_RECORD_OBJECT = 3, /* struct tlstap_object_record */
	TLSTAP_RECORD_PROCESS = 4, /* struct tlstap_process_record */
};

/* The library (or syscall layer) whose function produced a data record. */
enum tlstap_library {
	TLSTAP_LIB_OPENSSL = 1,
	TLSTAP_LIB_SOCKET = 2, /* plaintext TCP through syscalls (--plaintext) */
	TLSTAP_LIB_GNUTLS = 3,
	TLSTAP_LIB_BORINGSSL = 4, /* OpenSSL-compatible API, often with prefixed symbols */
	TLSTAP_LIB_GO = 5,	  /* Go's crypto/tls */
	TLSTAP_LIB_NSS = 6,	  /* NSS, through NSPR's I/O functions on SSL-layered fds */
};

/*
 * The attach cookie of the probes that go into the inner function
 * SSL_write and SSL_write_ex (or SSL_read and SSL_read_ex) both call
 * (ProbePlacement.swift), on kernels with cookies (5.15+): bits 0-7, the
 * library (enum tlstap_library); bits 8-15, which argument of the inner
 * function is its size_t *count (4, or 5 where a flags argument comes
 * first); bit 16, set when bits 20-31 hold the page offset (address & 0xfff)
 * of the instruction after SSL_write's (SSL_read's) call of it, which tells
 * its calls from the _ex form's.
 */
#define TLSTAP_COOKIE_LIBRARY_MASK 0xffULL
#define TLSTAP_COOKIE_COUNT_ARG_SHIFT 8
#define TLSTAP_COOKIE_PLAIN_SITE_KNOWN (1ULL << 16)
#define TLSTAP_COOKIE_PLAIN_SITE_SHIFT 20

/* The probed function. */
enum tlstap_function {
	TLSTAP_FUNC_SSL_WRITE = 1,
	TLSTAP_FUNC_SSL_READ = 2,
	TLSTAP_FUNC_SSL_WRITE_EX = 3,
	TLSTAP_FUNC_SSL_READ_EX = 4,
	TLSTAP_FUNC_GNUTLS_RECORD_SEND = 5,
	TLSTAP_FUNC_GNUTLS_RECORD_RECV = 6,
	TLSTAP_FUNC_GO_WRITE = 7, /* crypto/tls.(*Conn).Write */
	TLSTAP_FUNC_GO_READ = 8,  /* crypto/tls.(*Conn).Read */
	TLSTAP_FUNC_SSL_HANDSHAKE = 9, /* SSL_do_handshake, Go's client/serverHandshake: names the fd, no data */
	TLSTAP_FUNC_PR_WRITE = 20, /* NSPR */
	TLSTAP_FUNC_PR_READ = 21,
	TLSTAP_FUNC_PR_SEND = 22,
	TLSTAP_FUNC_PR_RECV = 23,
	TLSTAP_FUNC_SYS_WRITE = 10,
	TLSTAP_FUNC_SYS_READ = 11,
	TLSTAP_FUNC_SYS_SENDTO = 12,
	TLSTAP_FUNC_SYS_RECVFROM = 13,
	TLSTAP_FUNC_SYS_WRITEV = 14,
	TLSTAP_FUNC_SYS_READV = 15,
	TLSTAP_FUNC_SYS_SENDMSG = 16,
	TLSTAP_FUNC_SYS_RECVMSG = 17,
};

/* Vectored syscalls: how many iovecs --plaintext copies; bytes beyond count as lost. */
#define TLSTAP_MAX_IOVECS 8

/* What happened to a socket. */
enum tlstap_socket_event {
	TLSTAP_SOCKET_CONNECT = 1, /* first use of a socket whose connect() tlstap saw send the SYN */
	TLSTAP_SOCKET_ACCEPT = 2,  /* first use of a socket whose passive open tlstap saw complete */
	TLSTAP_SOCKET_MID = 3,	   /* first seen in use: opened before tlstap, or inherited */
	TLSTAP_SOCKET_CLOSE = 4,   /* close() of a tracked fd */
	/*
	 * 5, 6 and 7 were a process's exit, exec and mapping of code, sent as
	 * socket records before process records (TLSTAP_RECORD_PROCESS) had a
	 * kind of their own. Captures saved then still hold them: user space
	 * reads them as process events.
	 */
	TLSTAP_SOCKET_LEGACY_EXIT = 5,
	TLSTAP_SOCKET_LEGACY_EXEC = 6,
	TLSTAP_SOCKET_LEGACY_MAP = 7,
	TLSTAP_SOCKET_UNPROBED_TLS = 8, /* fd carries TLS records sent by code no probe covers */
};

/* Who opened the connection. */
enum tlstap_role {
	TLSTAP_ROLE_UNKNOWN = 0,
	TLSTAP_ROLE_CLIENT = 1, /* the process connected */
	TLSTAP_ROLE_SERVER = 2, /* the process accepted */
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
	__s32 fd;	    /* the socket the bytes went through, -1 if unknown */
	/*
	 * Bytes of whole calls on this socket, in this direction, that the ring
	 * buffer could not carry since the last record it carried for them:
	 * the stream has a gap right before this record's call. Saturates at
	 * UINT32_MAX. Bytes missing inside a call show as its absent chunks.
	 */
	__u32 lost_before;
};

/*
 * A TCP socket of a traced process opened, first seen, or closed. Addresses
 * are in network byte order, IPv4 in the first 4 bytes; ports in host order.
 * CLOSE and EXIT carry no addresses (EXIT no fd either).
 */
struct tlstap_socket_record {
	__u8 kind;   /* TLSTAP_RECORD_SOCKET */
	__u8 event;  /* enum tlstap_socket_event */
	__u8 family; /* AF_INET or AF_INET6; 0 for CLOSE and EXIT */
	__u8 role;   /* enum tlstap_role */
	__u32 pid;
	__u32 tid;
	__s32 fd;
	__u64 time_ns; /* CLOSE/EXIT: when; others: when connect/accept returned, or first use */
	__u8 local_addr[16];
	__u8 remote_addr[16];
	__u16 local_port;
	__u16 remote_port;
	__u32 flags; /* enum tlstap_socket_flags */
	char comm[TLSTAP_COMM_LEN];
};

/* What happened to a traced process. */
enum tlstap_process_event {
	TLSTAP_PROCESS_EXEC = 1, /* it exec'd a program not seen before (fd -1): look for TLS in it */
	TLSTAP_PROCESS_MAP = 2,	 /* it maps code from fd, a file no traced process mapped yet */
	TLSTAP_PROCESS_EXIT = 3, /* it exited: its fds and TLS objects are gone (fd -1) */
};

enum tlstap_process_flags {
	/*
	 * EXEC and MAP: BPF stopped the process (SIGSTOP) before it could run
	 * the new code, so that its probes are in place first. User space
	 * attaches them and then sends SIGCONT. (The same bit in a legacy
	 * socket record's flags.)
	 */
	TLSTAP_PROCESS_STOPPED = 1,
};

struct tlstap_process_record {
	__u8 kind;  /* TLSTAP_RECORD_PROCESS */
	__u8 event; /* enum tlstap_process_event */
	__u8 pad[2];
	__u32 pid;
	__u32 tid;
	__s32 fd;
	__u64 time_ns; /* CLOCK_MONOTONIC */
	__u32 flags;   /* enum tlstap_process_flags */
	__u32 pad2;
	char comm[TLSTAP_COMM_LEN];
};

/* What happened to a TLS object. */
enum tlstap_object_event {
	/*
	 * Freed (SSL_free) after it moved data while its socket was unknown:
	 * user space holds such data until the socket is known, and now it
	 * never will be.
	 */
	TLSTAP_OBJECT_FREED = 1,
};

struct tlstap_object_record {
	__u8 kind;  /* TLSTAP_RECORD_OBJECT */
	__u8 event; /* enum tlstap_object_event */
	__u8 pad[2];
	__u32 pid;
	__u32 tid;
	__u32 pad2;
	__u64 ssl;     /* the object's address in the process */
	__u64 time_ns; /* CLOCK_MONOTONIC */
};

/* Keys of the `sockets` map: (tgid, fd). */
static inline __u64 tlstap_socket_key(__u32 tgid, int fd)
{
	return (__u64)tgid << 32 | (__u32)fd;
}

/* Keys of the `ssl_fds` map: a TLS object of a process. */
struct tlstap_ssl_key {
	__u32 tgid;
	__u32 pad;
	__u64 ssl;
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

TLSTAP_STATIC_ASSERT(sizeof(struct tlstap_chunk_header) == 72, "chunk header size");
TLSTAP_STATIC_ASSERT(__builtin_offsetof(struct tlstap_chunk_header, fd) == 64, "fd offset");
TLSTAP_STATIC_ASSERT(sizeof(struct tlstap_socket_record) == 80, "socket record size");
TLSTAP_STATIC_ASSERT(__builtin_offsetof(struct tlstap_socket_record, local_addr) == 24, "local_addr offset");
TLSTAP_STATIC_ASSERT(__builtin_offsetof(struct tlstap_socket_record, comm) == 64, "socket comm offset");
TLSTAP_STATIC_ASSERT(__builtin_offsetof(struct tlstap_chunk_header, call_time_ns) == 16,
		     "call_time_ns offset");
TLSTAP_STATIC_ASSERT(__builtin_offsetof(struct tlstap_chunk_header, comm) == 48, "comm offset");
TLSTAP_STATIC_ASSERT(sizeof(struct tlstap_lost_counts) == 16, "lost counts size");
TLSTAP_STATIC_ASSERT(sizeof(struct tlstap_object_record) == 32, "object record size");
TLSTAP_STATIC_ASSERT(__builtin_offsetof(struct tlstap_object_record, ssl) == 16, "object ssl offset");
TLSTAP_STATIC_ASSERT(sizeof(struct tlstap_process_record) == 48, "process record size");
TLSTAP_STATIC_ASSERT(__builtin_offsetof(struct tlstap_process_record, time_ns) == 16, "process time offset");
TLSTAP_STATIC_ASSERT(__builtin_offsetof(struct tlstap_process_record, comm) == 32, "process comm offset");
TLSTAP_STATIC_ASSERT(sizeof(struct tlstap_comm_key) == TLSTAP_COMM_LEN, "comm key size");
TLSTAP_STATIC_ASSERT(sizeof(struct tlstap_ssl_key) == 16, "ssl key size");

#endif /* TLSTAP_ABI_H */
