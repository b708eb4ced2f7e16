/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Which socket a TLS object speaks through: a binding made only from
 * evidence, never from a guess.
 *
 * - A socket syscall the thread makes inside a TLS call (SSL_set_fd, socket
 *   BIOs) names the call's fd (note_call_fd in tlstap.bpf.c).
 * - Programs that feed OpenSSL through memory BIOs from an event loop (node,
 *   Python's asyncio) make no syscall inside the call. There the ciphertext
 *   is followed: every record the TLS library hands its write BIO inside a
 *   call (BIO_write) leaves a fingerprint, 16 bytes of the record after its
 *   header (ciphertext, or a hello's random); the write syscall that later
 *   sends a buffer starting with that record binds the object to its socket.
 *   Two records share 16 such bytes with a chance of 2^-128 (ciphertext) or
 *   2^-80 (a hello: 10 bytes of its random).
 *
 * A binding remembers the socket's inode, so an fd closed and reused for
 * another socket is noticed at the next use, and the binding dropped instead
 * of followed. It is forgotten when the object is freed (SSL_free), so a new
 * object at the same address starts unbound.
 */
#ifndef TLSTAP_BINDINGS_BPF_H
#define TLSTAP_BINDINGS_BPF_H

/* A TLS object's socket: its fd, and the socket's inode when it was bound. */
struct tls_binding {
	__s32 fd;
	__u32 pad;
	__u64 socket_ino;
};

/*
 * Bindings per (tgid, TLS object). BPF deletes one when the object is freed
 * or its fd no longer holds the socket; user space deletes those of a
 * process that exits.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, TLSTAP_MAX_SOCKETS);
	__type(key, struct tlstap_ssl_key);
	__type(value, struct tls_binding);
} ssl_fds SEC(".maps");

/* The inode of the socket that is open file `file`, or 0. */
static __always_inline __u64 socket_ino_of_file(struct file *file)
{
	struct inode *inode = file ? BPF_CORE_READ(file, f_inode) : NULL;

	if (!inode || (BPF_CORE_READ(inode, i_mode) & TLSTAP_S_IFMT) != TLSTAP_S_IFSOCK)
		return 0;
	return BPF_CORE_READ(inode, i_ino);
}

/* The inode of the socket behind the current task's fd, or 0. */
static __always_inline __u64 socket_ino_of_fd(int fd)
{
	return socket_ino_of_file(file_of_fd(fd));
}

/* The binding of `ssl` in process `tgid`, if any. */
static __always_inline struct tls_binding *binding_of(__u32 tgid, __u64 ssl)
{
	struct tlstap_ssl_key key = { .tgid = tgid, .ssl = ssl };

	return bpf_map_lookup_elem(&ssl_fds, &key);
}

/* Binds `ssl` of `tgid` to the socket now behind `fd`. */
static __always_inline void bind_object(__u32 tgid, __u64 ssl, int fd, __u64 socket_ino)
{
	struct tlstap_ssl_key key = { .tgid = tgid, .ssl = ssl };
	struct tls_binding binding = { .fd = fd, .socket_ino = socket_ino };

	bpf_map_update_elem(&ssl_fds, &key, &binding, BPF_ANY);
}

static __always_inline void unbind_object(__u32 tgid, __u64 ssl)
{
	struct tlstap_ssl_key key = { .tgid = tgid, .ssl = ssl };

	bpf_map_delete_elem(&ssl_fds, &key);
}

/*
 * The objects of traced processes that sent data while unbound: user space
 * holds such calls until the object's socket is known, and must hear when
 * that can no longer happen (the object is freed).
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, TLSTAP_MAX_SOCKETS);
	__type(key, struct tlstap_ssl_key);
	__type(value, __u8);
} unbound_objects SEC(".maps");

static __always_inline void note_unbound(__u32 tgid, __u64 ssl)
{
	struct tlstap_ssl_key key = { .tgid = tgid, .ssl = ssl };
	__u8 yes = 1;

	bpf_map_update_elem(&unbound_objects, &key, &yes, BPF_NOEXIST);
}

/* Tells user space that `ssl`, which sent data while unbound, is freed. */
static __always_inline void object_freed(__u64 ssl)
{
	__u64 thread = bpf_get_current_pid_tgid();
	struct tlstap_ssl_key key = { .tgid = thread >> 32, .ssl = ssl };
	struct tlstap_object_record *record;

	unbind_object(key.tgid, ssl);
	if (bpf_map_delete_elem(&unbound_objects, &key))
		return;
	record = bpf_ringbuf_reserve(&events, sizeof(*record), 0);
	if (!record) {
		count_lost(0);
		return;
	}
	__builtin_memset(record, 0, sizeof(*record));
	record->kind = TLSTAP_RECORD_OBJECT;
	record->event = TLSTAP_OBJECT_FREED;
	record->pid = key.tgid;
	record->tid = (__u32)thread;
	record->ssl = ssl;
	record->time_ns = bpf_ktime_get_ns();
	bpf_ringbuf_submit(record, wakeup_flags(sizeof(*record)));
}

/* Where a fingerprint starts: past the 5-byte record header. */
#define TLSTAP_FINGERPRINT_OFFSET 5
#define TLSTAP_FINGERPRINT_LEN 16

struct fingerprint_key {
	__u32 tgid;
	__u32 pad;
	__u8 bytes[TLSTAP_FINGERPRINT_LEN];
};

/* Records handed to a write BIO by an unbound object, not yet seen sent. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, TLSTAP_MAX_THREADS);
	__type(key, struct fingerprint_key);
	__type(value, __u64); /* the TLS object */
} record_fingerprints SEC(".maps");

/* Set once a fingerprint was left: until then write syscalls skip the lookup. */
volatile __u8 fingerprints_used = 0;

/*
 * Reads the fingerprint of the TLS record at `record` in user memory.
 * Returns false if the bytes there are not a record long enough to carry one.
 */
static __always_inline bool read_fingerprint(struct fingerprint_key *key, __u64 record, __u64 length)
{
	if (length < TLSTAP_FINGERPRINT_OFFSET + TLSTAP_FINGERPRINT_LEN || !tls_record_type(record))
		return false;
	return bpf_probe_read_user(key->bytes, sizeof(key->bytes), (void *)(record + TLSTAP_FINGERPRINT_OFFSET)) == 0;
}

/* The TLS library hands `length` bytes of records at `data` to a BIO inside the call of `ssl`. */
static __always_inline void leave_fingerprint(__u64 ssl, __u64 data, __u64 length)
{
	struct fingerprint_key key = { .tgid = bpf_get_current_pid_tgid() >> 32 };

	if (!read_fingerprint(&key, data, length))
		return;
	bpf_map_update_elem(&record_fingerprints, &key, &ssl, BPF_ANY);
	if (!fingerprints_used)
		fingerprints_used = 1;
}

/*
 * A write syscall outside TLS calls sends `length` bytes at `buffer` on
 * `fd`: if they begin with a record an unbound object produced, that object
 * speaks through this socket (and true is returned).
 */
static __always_inline bool match_fingerprint(int fd, __u64 buffer, __u64 length)
{
	struct fingerprint_key key = { .tgid = bpf_get_current_pid_tgid() >> 32 };
	__u64 socket_ino, *ssl;

	if (!fingerprints_used || !read_fingerprint(&key, buffer, length))
		return false;
	ssl = bpf_map_lookup_elem(&record_fingerprints, &key);
	if (!ssl)
		return false;
	socket_ino = socket_ino_of_fd(fd);
	if (socket_ino && tcp_sock_of_fd(fd))
		bind_object(key.tgid, *ssl, fd, socket_ino);
	bpf_map_delete_elem(&record_fingerprints, &key);
	return true;
}

#endif /* TLSTAP_BINDINGS_BPF_H */
