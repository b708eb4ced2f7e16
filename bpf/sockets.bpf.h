/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Tying TLS calls to TCP sockets. Sockets of traced processes are tracked
 * from their first use to close, keyed by (tgid, fd); their addresses are
 * read from the kernel's struct sock with CO-RE at that moment, so a
 * connection that closes before user space looks is still named. Whether it
 * was connected, accepted, or opened before tlstap looked (MID: or
 * inherited) comes from TCP's state changes (socket_origins).
 */
#ifndef TLSTAP_SOCKETS_BPF_H
#define TLSTAP_SOCKETS_BPF_H

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

/* Macros vmlinux.h cannot carry. */
#define TLSTAP_AF_INET 2
#define TLSTAP_AF_INET6 10
#define TLSTAP_SOCK_STREAM 1
#define TLSTAP_IPPROTO_TCP 6
#define TLSTAP_S_IFMT 00170000
#define TLSTAP_S_IFSOCK 0140000
#define TLSTAP_S_IFREG 0100000

/* Kernel-side connection filters (--port, --host). */
const volatile bool filter_ports = false;
const volatile bool filter_hosts = false;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TLSTAP_MAX_FILTER_ENTRIES);
	__type(key, __u16);
	__type(value, __u8);
} traced_ports SEC(".maps");

/* Addresses as 16 bytes: IPv6, or IPv4 in the first 4 bytes and zeros. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TLSTAP_MAX_FILTER_ENTRIES);
	__type(key, __u8[16]);
	__type(value, __u8);
} traced_hosts SEC(".maps");

/* What BPF keeps about a tracked socket. */
struct socket_state {
	__u64 file;   /* the open file behind the fd, to notice the fd reused for another socket */
	__u64 sock;   /* its struct sock, to know its close (socket_closing) */
	__u8 wanted;  /* passes --port/--host */
	__u8 is_tls;  /* carries TLS records: its syscalls are never plaintext */
	__u8 probed;  /* a probed TLS call used it */
	__u8 unprobed_writes; /* application-data records sent outside probed calls (see note_unprobed_tls) */
	/* Bytes of whole calls lost per direction (index direction - 1), not yet told (lost_before). */
	__u32 lost[2];
	__u32 pad2;
};

/* The socket's count of lost bytes for `direction`, or NULL without a socket. */
static __always_inline __u32 *socket_lost(struct socket_state *socket, __u8 direction)
{
	if (!socket)
		return NULL;
	return direction == TLSTAP_DIR_IN ? &socket->lost[1] : &socket->lost[0];
}

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, TLSTAP_MAX_SOCKETS);
	__type(key, __u64); /* tgid << 32 | fd */
	__type(value, struct socket_state);
} sockets SEC(".maps");

/*
 * How a socket opened (TLSTAP_SOCKET_CONNECT or _ACCEPT), by its struct
 * sock, until a traced process first uses it (track_socket). Filled from
 * TCP's state changes (on_tcp_state), not from connect() and accept()
 * returning: hooking the return of every syscall made every process on the
 * host pay for it. Passive opens complete in softirq, for any listener on
 * the host: the LRU keeps the map bounded, and a socket it dropped is named
 * as MID, never with a wrong origin.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, TLSTAP_MAX_SOCKETS);
	__type(key, __u64);
	__type(value, __u8);
} socket_origins SEC(".maps");


/* The open file behind the current task's fd, or NULL. */
static __always_inline struct file *file_of_fd(int fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *table = BPF_CORE_READ(task, files, fdt);
	struct file **files = BPF_CORE_READ(table, fd);
	unsigned int max_fds = BPF_CORE_READ(table, max_fds);
	struct file *file = NULL;

	if (fd < 0 || (unsigned int)fd >= max_fds)
		return NULL;
	bpf_core_read(&file, sizeof(file), &files[fd]);
	return file;
}

/* The TCP socket behind an open file, or NULL. */
static __always_inline struct sock *tcp_sock_of_file(struct file *file)
{
	struct socket *socket;
	struct sock *sk;

	if (!file || (BPF_CORE_READ(file, f_inode, i_mode) & TLSTAP_S_IFMT) != TLSTAP_S_IFSOCK)
		return NULL;
	socket = BPF_CORE_READ(file, private_data);
	sk = BPF_CORE_READ(socket, sk);
	if (!sk || BPF_CORE_READ(sk, sk_type) != TLSTAP_SOCK_STREAM ||
	    BPF_CORE_READ(sk, sk_protocol) != TLSTAP_IPPROTO_TCP)
		return NULL;
	return sk;
}

/* The TCP socket behind the current task's fd, or NULL. */
static __always_inline struct sock *tcp_sock_of_fd(int fd)
{
	return tcp_sock_of_file(file_of_fd(fd));
}

static __always_inline bool address_wanted(struct tlstap_socket_record *record)
{
	__u16 local = record->local_port, remote = record->remote_port;

	if (filter_ports && !bpf_map_lookup_elem(&traced_ports, &local) &&
	    !bpf_map_lookup_elem(&traced_ports, &remote))
		return false;
	if (filter_hosts && !bpf_map_lookup_elem(&traced_hosts, record->remote_addr) &&
	    !bpf_map_lookup_elem(&traced_hosts, record->local_addr))
		return false;
	return true;
}

/*
 * Starts tracking `fd` of the current process, at its first use, and tells
 * user space how it opened: connected or accepted since tlstap started
 * (socket_origins), else MID. Returns the new state, or NULL if the fd is
 * not an IPv4/IPv6 TCP socket.
 */
static __always_inline struct socket_state *track_socket(int fd)
{
	struct file *file = file_of_fd(fd);
	struct sock *sk = tcp_sock_of_file(file);
	struct tlstap_socket_record *record;
	struct socket_state state = {};
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 key = tlstap_socket_key(pid_tgid >> 32, fd);
	__u64 sk_key = (__u64)sk;
	__u8 *origin, event = TLSTAP_SOCKET_MID, role = TLSTAP_ROLE_UNKNOWN;
	__u16 family;

	if (!sk)
		return NULL;
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != TLSTAP_AF_INET && family != TLSTAP_AF_INET6)
		return NULL;
	origin = bpf_map_lookup_elem(&socket_origins, &sk_key);
	if (origin) {
		event = *origin;
		role = event == TLSTAP_SOCKET_CONNECT ? TLSTAP_ROLE_CLIENT : TLSTAP_ROLE_SERVER;
		bpf_map_delete_elem(&socket_origins, &sk_key);
	} else if (BPF_CORE_READ(sk, sk_max_ack_backlog) > 0) {
		/*
		 * Opened before tlstap looked, but accepted: an accepted socket is
		 * a copy of its listener (sk_clone_lock), listen()'s backlog
		 * included, and a connected one never listened. A listener with
		 * backlog 0 leaves this unknown, for user space to guess.
		 */
		role = TLSTAP_ROLE_SERVER;
	}

	record = bpf_ringbuf_reserve(&events, sizeof(*record), 0);
	if (!record) {
		count_lost(0);
		return NULL;
	}
	fill_task_record(record, TLSTAP_RECORD_SOCKET, event, fd);
	record->family = family;
	record->role = role;
	/* Explicit sizes: the destinations are byte arrays, the sources are not. */
	if (family == TLSTAP_AF_INET) {
		bpf_core_read(record->local_addr, sizeof(__be32), &sk->__sk_common.skc_rcv_saddr);
		bpf_core_read(record->remote_addr, sizeof(__be32), &sk->__sk_common.skc_daddr);
	} else {
		bpf_core_read(record->local_addr, sizeof(struct in6_addr), &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(record->remote_addr, sizeof(struct in6_addr), &sk->__sk_common.skc_v6_daddr);
	}
	record->local_port = BPF_CORE_READ(sk, __sk_common.skc_num);
	record->remote_port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	state.file = (__u64)file;
	state.sock = sk_key;
	state.wanted = address_wanted(record);
	bpf_ringbuf_submit(record, wakeup_flags(sizeof(*record)));

	bpf_map_update_elem(&sockets, &key, &state, BPF_ANY);
	return bpf_map_lookup_elem(&sockets, &key);
}

/* The state of `fd`, whose open file is `file`, tracking it now if it is new or was reused. */
static __always_inline struct socket_state *socket_of_file(int fd, struct file *file)
{
	__u64 key = tlstap_socket_key(bpf_get_current_pid_tgid() >> 32, fd);
	struct socket_state *state = bpf_map_lookup_elem(&sockets, &key);

	/* The same open file: five reads, against eleven to check the socket again. */
	if (state && state->file == (__u64)file)
		return state;
	return track_socket(fd);
}

/* The state of `fd`, tracking it now if it is new or was reused. */
static __always_inline struct socket_state *socket_in_use(int fd)
{
	return socket_of_file(fd, file_of_fd(fd));
}

/*
 * The content type of the TLS record header at `buffer` in user memory
 * (20-23, handshake 22, application data 23), or 0 if it is not one:
 * a content type, then protocol version 3.x.
 */
static __always_inline __u8 tls_record_type(__u64 buffer)
{
	__u8 first[2] = {};

	bpf_probe_read_user(first, sizeof(first), (void *)buffer);
	return first[0] >= 20 && first[0] <= 23 && first[1] == 3 ? first[0] : 0;
}

/* Sends a record without addresses: CLOSE, UNPROBED_TLS. */
static __always_inline void send_socket_end(__u8 event, int fd)
{
	struct tlstap_socket_record *record = bpf_ringbuf_reserve(&events, sizeof(*record), 0);

	if (!record) {
		count_lost(0);
		return;
	}
	fill_task_record(record, TLSTAP_RECORD_SOCKET, event, fd);
	bpf_ringbuf_submit(record, wakeup_flags(sizeof(*record)));
}

#endif /* TLSTAP_SOCKETS_BPF_H */
