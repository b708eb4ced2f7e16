// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * tlstap's kernel side: uprobes on the TLS libraries' read and write
 * functions. The entry probe remembers the arguments of the call per thread;
 * the return probe learns how many bytes really went through and sends them.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "tlstap_abi.h"
#include "filter.bpf.h"
#include "emit.bpf.h"
#include "sockets.bpf.h"
#include "calls.bpf.h"
#include "plaintext.bpf.h"
#include "bindings.bpf.h"
#include "syscalls.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Fills the call's known_fd and known_ino from the object's binding. */
static __always_inline void recall_binding(struct tls_call *call, __u32 tgid)
{
	struct tls_binding *binding = binding_of(tgid, call->ssl);

	call->known_fd = binding ? binding->fd : -1;
	call->known_ino = binding ? binding->socket_ino : 0;
}

static __always_inline void remember_call(struct pt_regs *ctx, __u8 library, __u8 function, __u64 length_out)
{
	__u64 thread = bpf_get_current_pid_tgid();
	struct tls_call call = {
		.ssl = PT_REGS_PARM1(ctx),
		.buffer = PT_REGS_PARM2(ctx),
		.length_out = length_out,
		.function = function,
		.library = library,
		.fd = -1,
	};

	recall_binding(&call, thread >> 32);
	/* An inner probed call replaces the outer one, so bytes go out once. */
	start_call(thread, &call);
}

/* The socket a call went through: its fd and open file, or fd -1 if unknown. */
struct call_socket {
	int fd;
	struct file *file;
};

/*
 * The socket behind a call: the one its own syscall named (which binds the
 * object to it), else the one the object is bound to if that fd still holds
 * the same socket (a read served from OpenSSL's buffer makes no syscall, nor
 * does any call through a memory BIO), else fd -1: unknown, never a guess.
 * The fd's file is read once here and used again by send_call.
 */
static __always_inline struct call_socket call_socket(struct tls_call *call, __u32 tgid)
{
	struct call_socket none = { .fd = -1 };
	struct call_socket found = { .fd = call->fd };
	__u64 socket_ino;

	if (call->fd < 0) {
		if (call->known_fd < 0)
			return none;
		found.fd = call->known_fd;
		found.file = file_of_fd(found.fd);
		if (socket_ino_of_file(found.file) == call->known_ino)
			return found;
		/* The fd was closed, or now holds another socket. */
		unbind_object(tgid, call->ssl);
		return none;
	}
	found.file = file_of_fd(found.fd);
	socket_ino = socket_ino_of_file(found.file);
	/* An LRU update takes locks: only when the object is new or changed socket, not on every call. */
	if (call->known_fd != found.fd || call->known_ino != socket_ino)
		bind_object(tgid, call->ssl, found.fd, socket_ino);
	return found;
}

/*
 * Sends the plaintext of a finished call: `call` names the library, function,
 * TLS object and buffer; `moved` is the byte count the call returned, and
 * `through` the socket it went through; `loop` how its chunks are walked.
 */
static __always_inline void send_call(struct tls_call *call, __u8 direction, __u64 moved, struct call_socket through,
				      enum chunk_loop loop)
{
	__u64 thread = bpf_get_current_pid_tgid();
	struct emit_state state = {};
	struct socket_state *socket = NULL;
	int fd = through.fd;

	if (!moved)
		return;
	if (fd >= 0)
		socket = socket_of_file(fd, through.file);
	if (socket ? !socket->wanted : (filter_ports || filter_hosts))
		return;
	if (socket) {
		socket->is_tls = 1; /* its syscalls carry ciphertext from now on */
		socket->probed = 1;
	} else
		note_unbound(thread >> 32, call->ssl);
	state.header.kind = TLSTAP_RECORD_DATA;
	state.header.library = call->library;
	state.header.function = call->function;
	state.header.direction = direction;
	state.header.pid = thread >> 32;
	state.header.tid = (__u32)thread;
	state.header.call_time_ns = bpf_ktime_get_ns();
	state.header.ssl = call->ssl;
	state.header.total_len = moved;
	state.header.fd = socket ? fd : -1;
	state.buffer = call->buffer;
	bpf_get_current_comm(state.header.comm, sizeof(state.header.comm));
	begin_loss_mark(&state, socket_lost(socket, direction));
	emit_payload(&state, loop);
	end_loss_mark(&state, socket_lost(socket, direction));
}

/* The first iovec of a writev or sendmsg (zeros if unreadable). */
static __always_inline struct iovec first_iovec(__u64 iov)
{
	struct iovec first = {};

	bpf_probe_read_user(&first, sizeof(first), (void *)iov);
	return first;
}

static __always_inline struct iovec msg_first_iovec(__u64 msg)
{
	struct user_msghdr header = {};

	bpf_probe_read_user(&header, sizeof(header), (void *)msg);
	return first_iovec((__u64)header.msg_iov);
}

static __always_inline void finish_call(struct pt_regs *ctx, __u8 direction, enum chunk_loop loop)
{
	__u64 thread = bpf_get_current_pid_tgid();
	struct tls_call *pending = call_in_flight(thread);
	long ret = PT_REGS_RC(ctx);
	struct call_socket through;
	struct tls_call call;
	__u64 moved = 0;

	if (!pending)
		return;
	call = *pending;
	if (call.length_out) {
		/* SSL_{read,write}_ex and their inner function return 1 and store the count through a pointer. */
		if ((int)ret > 0)
			bpf_probe_read_user(&moved, sizeof(moved), (void *)call.length_out);
	} else if (call.library == TLSTAP_LIB_GNUTLS) {
		/* gnutls_record_send/recv return ssize_t. */
		if (ret > 0)
			moved = ret;
	} else if ((int)ret > 0) {
		moved = (int)ret;
	}
	through = call_socket(&call, thread >> 32);
	end_call(pending);
	send_call(&call, direction, moved, through, loop);
}


/*
 * SSL_free(ssl), gnutls_deinit(session): the object's binding goes with it,
 * before its address is reused for another.
 */
SEC("uprobe")
int BPF_KPROBE(probe_object_free_enter, void *object)
{
	if (tracing_this_process())
		object_freed((__u64)object);
	return 0;
}

/* Each TLS stack's programs, in a file of its own. */
#include "stacks/openssl.bpf.h"
#include "stacks/gnutls.bpf.h"
#include "stacks/nss.bpf.h"

/*
 * One return probe per direction: the entry already named library and
 * function. Each comes twice, for kernels with and without bpf_loop.
 */
SEC("uretprobe")
int probe_ssl_write_exit(struct pt_regs *ctx)
{
	finish_call(ctx, TLSTAP_DIR_OUT, CHUNKS_IN_BPF_LOOP);
	return 0;
}

SEC("uretprobe")
int probe_ssl_write_exit_bounded(struct pt_regs *ctx)
{
	finish_call(ctx, TLSTAP_DIR_OUT, CHUNKS_IN_BOUNDED_LOOP);
	return 0;
}

SEC("uretprobe")
int probe_ssl_read_exit(struct pt_regs *ctx)
{
	finish_call(ctx, TLSTAP_DIR_IN, CHUNKS_IN_BPF_LOOP);
	return 0;
}

SEC("uretprobe")
int probe_ssl_read_exit_bounded(struct pt_regs *ctx)
{
	finish_call(ctx, TLSTAP_DIR_IN, CHUNKS_IN_BOUNDED_LOOP);
	return 0;
}

#include "stacks/go.bpf.h"

/*
 * The Go call of the goroutine making this syscall, if Go programs have
 * probes: a goroutine that parked inside (*Conn).Read or Write may make its
 * socket syscall on another thread, so it is found by the goroutine in R14
 * of the user registers the syscall was entered with (`user_regs`, which
 * sys_enter is given: no helper needed, so Linux 5.10 has it too).
 */
static __always_inline struct go_call *syscall_go_call(struct pt_regs *user_regs)
{
	struct go_call_key key = { .tgid = bpf_get_current_pid_tgid() >> 32 };

	if (!go_probes_attached)
		return NULL;
	key.goroutine = BPF_CORE_READ(user_regs, r14);
	return bpf_map_lookup_elem(&go_calls, &key);
}

/*
 * The TLS call a syscall is made inside, found once per syscall: the
 * thread's (OpenSSL, GnuTLS, NSS), else its goroutine's, else none.
 */
struct enclosing_call {
	struct tls_call *call;
	struct go_call *go;
};

static __always_inline struct enclosing_call enclosing_call(struct pt_regs *user_regs)
{
	struct enclosing_call found = { .call = call_in_flight(bpf_get_current_pid_tgid()) };

	if (!found.call)
		found.go = syscall_go_call(user_regs);
	return found;
}

static __always_inline bool inside_tls_call(struct enclosing_call enclosing)
{
	return enclosing.call || enclosing.go;
}

/*
 * Socket syscalls made inside a TLS call name the call's fd, whether the
 * application used SSL_set_fd or a socket BIO. A Go call is found by its
 * goroutine, never by the thread: the goroutine may have parked (on a
 * mutex, say) before its own syscall, and another goroutine's syscall on
 * that thread names another socket.
 */
static __always_inline void note_call_fd(struct enclosing_call enclosing, int fd)
{
	struct tls_call *call = enclosing.call;
	struct go_call *go = enclosing.go;

	/*
	 * Only a TCP socket: a TLS library may also read a file (its configuration,
	 * say) inside a call. The fd its TLS object used before was checked then.
	 */
	if (call && call->fd < 0 && (fd == call->known_fd || tcp_sock_of_fd(fd)))
		call->fd = fd;
	if (go && go->call.fd < 0 && tcp_sock_of_fd(fd))
		go->call.fd = fd;
}

/*
 * TLS that no probe covers (Java's JSSE, a TLS library linked in without
 * symbols, as grpcio's wheels embed BoringSSL): a traced process sends
 * application-data records on a socket that no probed TLS call has used.
 * The third such send tells user space once (UNPROBED_TLS): a handshake's
 * own sends and session tickets, made outside SSL_read/SSL_write, are at
 * most two. User space names the connection unless data was captured on it.
 */
#define TLSTAP_UNPROBED_WRITES 3

static __always_inline void note_unprobed_tls(int fd, __u64 buffer)
{
	struct socket_state *socket;

	if (tls_record_type(buffer) != 23)
		return;
	socket = socket_in_use(fd);
	if (!socket || !socket->wanted || socket->probed || socket->unprobed_writes >= TLSTAP_UNPROBED_WRITES)
		return;
	if (++socket->unprobed_writes == TLSTAP_UNPROBED_WRITES)
		send_socket_end(TLSTAP_SOCKET_UNPROBED_TLS, fd);
}

/*
 * A send of a traced process outside TLS calls: ciphertext an unbound
 * object produced (bindings.bpf.h), or TLS from code no probe covers.
 */
static __always_inline void match_write(struct enclosing_call enclosing, int fd, __u64 buffer, __u64 length)
{
	if (inside_tls_call(enclosing))
		return;
	if (!match_fingerprint(fd, buffer, length))
		note_unprobed_tls(fd, buffer);
}

/*
 * A Go Write whose connection had no known socket when it started
 * (go_write_starts) is sent when write(2) puts its first application-data
 * record on the socket, not at its RET: the goroutine can be descheduled
 * after that syscall and never reach the RET, because the program exits
 * first (an HTTP client's main returns with the response while the
 * transport's writeLoop is still inside (*Conn).Write). The RET then only
 * cleans up. The payload is the whole of b, which Write writes or fails on.
 */
static __always_inline void go_write_goes_out(struct go_call *go, int fd, __u64 record, enum chunk_loop loop)
{
	struct tls_call call;

	if (!go || go->call.function != TLSTAP_FUNC_GO_WRITE || go->sent)
		return;
	/* Application data (a handshake the Write runs first sends type 22 too). */
	if (tls_record_type(record) != 23 || !socket_in_use(fd))
		return;
	go->sent = 1;
	call = go->call;
	call.fd = fd;
	send_call(&call, TLSTAP_DIR_OUT, go->length, call_socket(&call, bpf_get_current_pid_tgid() >> 32), loop);
}

/*
 * The syscall handlers: tail-called by on_sys_enter (syscalls.bpf.h), or
 * called from the socket tracepoints below, with the user registers the
 * syscall was entered with. Their callers check the scope first: the rest
 * of an untraced process's syscall costs nothing more.
 */
/* read, write, sendto, recvfrom (fd, buffer, length, ...): one buffer. */
static __always_inline void buffer_call(struct pt_regs *regs, __u8 function, __u8 direction, enum chunk_loop loop)
{
	int fd = SYSCALL_ARG1(regs);
	__u64 buffer = SYSCALL_ARG2(regs);
	struct enclosing_call enclosing = enclosing_call(regs);

	note_call_fd(enclosing, fd);
	if (direction == TLSTAP_DIR_OUT) {
		match_write(enclosing, fd, buffer, SYSCALL_ARG3(regs));
		if (function == TLSTAP_FUNC_SYS_WRITE)
			go_write_goes_out(enclosing.go, fd, buffer, loop); /* Go writes with write(2) */
	}
	remember_plain_call(inside_tls_call(enclosing), fd, buffer, 0, function, direction);
}

/* readv, writev (fd, iov, iovcnt). */
static __always_inline void iovec_call(struct pt_regs *regs, __u8 function, __u8 direction)
{
	int fd = SYSCALL_ARG1(regs);
	__u64 iov = SYSCALL_ARG2(regs);
	struct enclosing_call enclosing = enclosing_call(regs);

	note_call_fd(enclosing, fd);
	if (direction == TLSTAP_DIR_OUT) {
		struct iovec first = first_iovec(iov);

		match_write(enclosing, fd, (__u64)first.iov_base, first.iov_len);
	}
	remember_plain_call(inside_tls_call(enclosing), fd, iov, SYSCALL_ARG3(regs), function, direction);
}

/* sendmsg, recvmsg (fd, message, flags). */
static __always_inline void message_call(struct pt_regs *regs, __u8 function, __u8 direction)
{
	int fd = SYSCALL_ARG1(regs);
	__u64 message = SYSCALL_ARG2(regs);
	struct enclosing_call enclosing = enclosing_call(regs);

	note_call_fd(enclosing, fd);
	if (direction == TLSTAP_DIR_OUT) {
		struct iovec first = msg_first_iovec(message);

		match_write(enclosing, fd, (__u64)first.iov_base, first.iov_len);
	}
	remember_plain_msg(inside_tls_call(enclosing), fd, message, function, direction);
}

SEC("raw_tracepoint/sys_enter")
int probe_read_enter(struct bpf_raw_tracepoint_args *ctx)
{
	if (tracing_this_process())
		buffer_call(syscall_regs(ctx), TLSTAP_FUNC_SYS_READ, TLSTAP_DIR_IN, CHUNKS_IN_BPF_LOOP);
	return 0;
}

/* write(2) may send a Go Write's payload: twice, for kernels with and without bpf_loop. */
SEC("raw_tracepoint/sys_enter")
int probe_write_enter(struct bpf_raw_tracepoint_args *ctx)
{
	if (tracing_this_process())
		buffer_call(syscall_regs(ctx), TLSTAP_FUNC_SYS_WRITE, TLSTAP_DIR_OUT, CHUNKS_IN_BPF_LOOP);
	return 0;
}

SEC("raw_tracepoint/sys_enter")
int probe_write_enter_bounded(struct bpf_raw_tracepoint_args *ctx)
{
	if (tracing_this_process())
		buffer_call(syscall_regs(ctx), TLSTAP_FUNC_SYS_WRITE, TLSTAP_DIR_OUT, CHUNKS_IN_BOUNDED_LOOP);
	return 0;
}

SEC("raw_tracepoint/sys_enter")
int probe_sendto_enter(struct bpf_raw_tracepoint_args *ctx)
{
	if (tracing_this_process())
		buffer_call(syscall_regs(ctx), TLSTAP_FUNC_SYS_SENDTO, TLSTAP_DIR_OUT, CHUNKS_IN_BPF_LOOP);
	return 0;
}

SEC("raw_tracepoint/sys_enter")
int probe_recvfrom_enter(struct bpf_raw_tracepoint_args *ctx)
{
	if (tracing_this_process())
		buffer_call(syscall_regs(ctx), TLSTAP_FUNC_SYS_RECVFROM, TLSTAP_DIR_IN, CHUNKS_IN_BPF_LOOP);
	return 0;
}

SEC("raw_tracepoint/sys_enter")
int probe_readv_enter(struct bpf_raw_tracepoint_args *ctx)
{
	if (tracing_this_process())
		iovec_call(syscall_regs(ctx), TLSTAP_FUNC_SYS_READV, TLSTAP_DIR_IN);
	return 0;
}

SEC("raw_tracepoint/sys_enter")
int probe_writev_enter(struct bpf_raw_tracepoint_args *ctx)
{
	if (tracing_this_process())
		iovec_call(syscall_regs(ctx), TLSTAP_FUNC_SYS_WRITEV, TLSTAP_DIR_OUT);
	return 0;
}

SEC("raw_tracepoint/sys_enter")
int probe_sendmsg_enter(struct bpf_raw_tracepoint_args *ctx)
{
	if (tracing_this_process())
		message_call(syscall_regs(ctx), TLSTAP_FUNC_SYS_SENDMSG, TLSTAP_DIR_OUT);
	return 0;
}

SEC("raw_tracepoint/sys_enter")
int probe_recvmsg_enter(struct bpf_raw_tracepoint_args *ctx)
{
	if (tracing_this_process())
		message_call(syscall_regs(ctx), TLSTAP_FUNC_SYS_RECVMSG, TLSTAP_DIR_IN);
	return 0;
}

/*
 * Linux 6.3+ without --plaintext: a socket send or receive of a traced
 * process, once it is done, handled as the syscall it was made in
 * (syscalls.bpf.h). Others (sendfile, io_uring, sendmmsg) were never
 * hooked. Loaded only where bpf_loop is, so no bounded twins.
 */
static __always_inline void socket_call_done(void)
{
	struct pt_regs *regs = current_syscall_regs();

	switch (syscall_number(regs)) {
	case TLSTAP_NR_READ:
		buffer_call(regs, TLSTAP_FUNC_SYS_READ, TLSTAP_DIR_IN, CHUNKS_IN_BPF_LOOP);
		break;
	case TLSTAP_NR_WRITE:
		buffer_call(regs, TLSTAP_FUNC_SYS_WRITE, TLSTAP_DIR_OUT, CHUNKS_IN_BPF_LOOP);
		break;
	case TLSTAP_NR_RECVFROM:
		buffer_call(regs, TLSTAP_FUNC_SYS_RECVFROM, TLSTAP_DIR_IN, CHUNKS_IN_BPF_LOOP);
		break;
	case TLSTAP_NR_SENDTO:
		buffer_call(regs, TLSTAP_FUNC_SYS_SENDTO, TLSTAP_DIR_OUT, CHUNKS_IN_BPF_LOOP);
		break;
	case TLSTAP_NR_READV:
		iovec_call(regs, TLSTAP_FUNC_SYS_READV, TLSTAP_DIR_IN);
		break;
	case TLSTAP_NR_WRITEV:
		iovec_call(regs, TLSTAP_FUNC_SYS_WRITEV, TLSTAP_DIR_OUT);
		break;
	case TLSTAP_NR_RECVMSG:
		message_call(regs, TLSTAP_FUNC_SYS_RECVMSG, TLSTAP_DIR_IN);
		break;
	case TLSTAP_NR_SENDMSG:
		message_call(regs, TLSTAP_FUNC_SYS_SENDMSG, TLSTAP_DIR_OUT);
		break;
	}
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(on_socket_send, struct sock *sk, int ret, int flags)
{
	if (tracing_this_process())
		socket_call_done();
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(on_socket_receive, struct sock *sk, int ret, int flags)
{
	if (tracing_this_process())
		socket_call_done();
	return 0;
}

/*
 * TCP's state changes: how each socket opened, kept until a traced process
 * first uses it (socket_origins, track_socket). A connect() sends the SYN
 * in its caller's context; a passive open completes in softirq. This runs a
 * few times per connection of the host, not on every syscall.
 */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_tcp_state, const struct sock *sk, const int oldstate, const int newstate)
{
	__u64 key = (__u64)sk;
	__u8 origin;

	if (sk->sk_protocol != TLSTAP_IPPROTO_TCP) /* a BTF tracepoint's pointer: read directly */
		return 0;
	if (newstate == TCP_SYN_SENT && tracing_this_process()) {
		origin = TLSTAP_SOCKET_CONNECT;
	} else if (oldstate == TCP_SYN_RECV && newstate == TCP_ESTABLISHED) {
		origin = TLSTAP_SOCKET_ACCEPT;
	} else {
		if (newstate == TCP_CLOSE)
			bpf_map_delete_elem(&socket_origins, &key);
		return 0;
	}
	bpf_map_update_elem(&socket_origins, &key, &origin, BPF_ANY);
	return 0;
}

/*
 * With --plaintext only, every syscall's return (syscalls.bpf.h): those of
 * the calls whose entry kept a plaintext buffer. Without it, nothing hooks
 * syscall returns.
 */
static __always_inline void syscall_returned(long ret, enum chunk_loop loop)
{
	if (capture_plaintext)
		finish_plain_call(ret, loop);
}

/* Twice, for kernels with and without bpf_loop. */
SEC("tp_btf/sys_exit")
int BPF_PROG(on_sys_exit, struct pt_regs *regs, long ret)
{
	syscall_returned(ret, CHUNKS_IN_BPF_LOOP);
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(on_sys_exit_bounded, struct pt_regs *regs, long ret)
{
	syscall_returned(ret, CHUNKS_IN_BOUNDED_LOOP);
	return 0;
}

/* The tracked socket on `fd` (key `key`) is closed: user space hears it once. */
static __always_inline void socket_closed(__u64 key, int fd)
{
	if (bpf_map_delete_elem(&sockets, &key) == 0)
		send_socket_end(TLSTAP_SOCKET_CLOSE, fd);
}

/*
 * Not scoped: a process can leave the scope (a new command name, another
 * cgroup) with sockets tracked. Most closes are of files and untracked fds:
 * a lookup takes no lock, a delete does.
 */
SEC("raw_tracepoint/sys_enter")
int probe_close_enter(struct bpf_raw_tracepoint_args *ctx)
{
	int fd = SYSCALL_ARG1(syscall_regs(ctx));
	__u64 key = tlstap_socket_key(bpf_get_current_pid_tgid() >> 32, fd);

	if (bpf_map_lookup_elem(&sockets, &key))
		socket_closed(key, fd);
	return 0;
}

/*
 * Where the socket tracepoints replace sys_enter, nothing hooks close(2).
 * The last close of a TCP socket changes its state (to FIN_WAIT1, LAST_ACK
 * or CLOSE) or, if a reset closed it already, destroys it, inside the
 * close() of its fd: `sk` is matched with the socket tracked on that fd, so
 * that a softirq's change to another socket, in whatever task it
 * interrupted, is not taken for it. A close that is not the socket's last
 * (of a dup, or of a copy a child inherited) changes nothing: the fd's
 * entry is replaced when the fd is used again, or goes with its process.
 */
static __always_inline void socket_closing(const struct sock *sk)
{
	struct pt_regs *regs = current_syscall_regs();
	struct socket_state *state;
	__u64 key;
	int fd;

	if (syscall_number(regs) != TLSTAP_NR_CLOSE)
		return;
	fd = SYSCALL_ARG1(regs);
	key = tlstap_socket_key(bpf_get_current_pid_tgid() >> 32, fd);
	state = bpf_map_lookup_elem(&sockets, &key);
	if (state && state->sock == (__u64)sk)
		socket_closed(key, fd);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_tcp_state_in_close, const struct sock *sk, const int oldstate, const int newstate)
{
	socket_closing(sk);
	return 0;
}

SEC("tp_btf/tcp_destroy_sock")
int BPF_PROG(on_tcp_destroy_in_close, const struct sock *sk)
{
	socket_closing(sk);
	return 0;
}

/* Executable files some traced process ran or mapped already, by device and inode. */
struct file_key {
	__u64 dev;
	__u64 ino;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, TLSTAP_MAX_MAPPED_FILES);
	__type(key, struct file_key);
	__type(value, __u8);
} mapped_files SEC(".maps");

/*
 * Whether code from a file no traced process ran or mapped yet makes the
 * process stop until user space has put probes in it (the scopes whose
 * probes cover programs started later; set before load).
 */
const volatile bool stop_for_attach = false;

#define TLSTAP_SIGSTOP 19

/* Whether `file` is one no traced process ran or mapped before; remembers it. */
static __always_inline bool first_sight(struct file *file)
{
	struct file_key key = {
		.dev = BPF_CORE_READ(file, f_inode, i_sb, s_dev),
		.ino = BPF_CORE_READ(file, f_inode, i_ino),
	};
	__u8 seen = 1;

	return bpf_map_update_elem(&mapped_files, &key, &seen, BPF_NOEXIST) == 0;
}

/* A process record about the current process, reserved in the ring; NULL (and counted as lost) if full. */
static __always_inline struct tlstap_process_record *reserve_process_record(__u8 event, int fd)
{
	struct tlstap_process_record *record = bpf_ringbuf_reserve(&events, sizeof(*record), 0);

	if (!record) {
		count_lost(0);
		return NULL;
	}
	fill_task_record(record, TLSTAP_RECORD_PROCESS, event, fd);
	return record;
}

/*
 * Tells user space that the process is about to run code from a file not
 * seen before (EXEC: its new program; MAP: a shared object on `fd`), so
 * that it looks for TLS functions there. Where probes must be in place
 * before that code runs, the process is stopped first: the signal is taken
 * on the way back to user space, before the program's first instruction or
 * the return of the mmap, and user space continues it once attached. It is
 * stopped only if the record that asks for SIGCONT is on its way.
 */
static __always_inline void send_new_code(__u8 event, int fd)
{
	struct tlstap_process_record *record = reserve_process_record(event, fd);

	if (!record)
		return;
	if (stop_for_attach && bpf_send_signal(TLSTAP_SIGSTOP) == 0)
		record->flags = TLSTAP_PROCESS_STOPPED;
	/* Now: the process waits for it. */
	bpf_ringbuf_submit(record, BPF_RB_FORCE_WAKEUP);
}

/* A new program: user space looks for a TLS library linked into it. */
SEC("raw_tracepoint/sched_process_exec")
int probe_process_exec(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct file *program = BPF_CORE_READ(task, mm, exe_file);

	if (tracing_this_process() && program && first_sight(program))
		send_new_code(TLSTAP_PROCESS_EXEC, -1);
	return 0;
}

/* A process forked or made a thread (-p follows children; -c and `--` ask its verdict afresh). */
SEC("raw_tracepoint/sched_process_fork")
int probe_process_fork(struct bpf_raw_tracepoint_args *ctx)
{
	follow_fork((struct task_struct *)ctx->args[0], (struct task_struct *)ctx->args[1]);
	return 0;
}

/*
 * A thread's name is about to change (args: the task, the new name): with
 * -c, its verdict is the new name's from now on.
 */
SEC("raw_tracepoint/task_rename")
int probe_task_rename(struct bpf_raw_tracepoint_args *ctx)
{
	__u8 *verdict;
	struct tlstap_comm_key key = {};

	if (!filter_comms)
		return 0;
	verdict = pid_byte(&verdicts, BPF_CORE_READ((struct task_struct *)ctx->args[0], pid));
	if (!verdict)
		return 0;
	bpf_probe_read_kernel_str(key.comm, sizeof(key.comm), (const char *)ctx->args[1]);
	*verdict = bpf_map_lookup_elem(&traced_comms, &key) ? TLSTAP_VERDICT_TRACED : TLSTAP_VERDICT_UNTRACED;
	return 0;
}

/*
 * A process (or, in a threaded cgroup, a thread) moved to another cgroup
 * (args: the cgroup, its path, the task, whether its whole thread group
 * moved): with `--`, its verdict is asked again, in its new cgroup.
 */
SEC("raw_tracepoint/cgroup_attach_task")
int probe_cgroup_attach(struct bpf_raw_tracepoint_args *ctx)
{
	if (filter_cgroup)
		forget_verdict(BPF_CORE_READ((struct task_struct *)ctx->args[2], tgid));
	return 0;
}

#define TLSTAP_PROT_EXEC 4
#define TLSTAP_MAP_ANONYMOUS 0x20

/*
 * A traced process maps the file open on the fd of mmap `regs`: the first
 * time any traced process maps a file, user space looks at it for a TLS library without
 * probes (a libssl in another directory, one replaced on disk, one loaded
 * later, with dlopen).
 */
static __always_inline void file_mapped(struct pt_regs *regs)
{
	int fd = SYSCALL_ARG5(regs);
	struct file *file;

	if (fd < 0 || (SYSCALL_ARG4(regs) & TLSTAP_MAP_ANONYMOUS)) /* which ignores the fd */
		return;
	file = file_of_fd(fd);
	if (file && (BPF_CORE_READ(file, f_inode, i_mode) & TLSTAP_S_IFMT) == TLSTAP_S_IFREG && first_sight(file))
		send_new_code(TLSTAP_PROCESS_MAP, fd);
}

/* mmap(addr, len, prot, flags, fd, off) of code from a file: the dynamic loader mapping a shared object. */
SEC("raw_tracepoint/sys_enter")
int probe_mmap_enter(struct bpf_raw_tracepoint_args *ctx)
{
	struct pt_regs *regs = syscall_regs(ctx);

	if (tracing_this_process() && (SYSCALL_ARG3(regs) & TLSTAP_PROT_EXEC))
		file_mapped(regs);
	return 0;
}

/*
 * Where the socket tracepoints replace sys_enter: an mmap() that lets the
 * kernel choose the address. The dynamic loader maps a shared object so
 * first, whole and readable only, before it maps its code over that
 * address (MAP_FIXED, which does not come here): so any file, not only
 * code, is looked at, once.
 */
SEC("tp_btf/vm_unmapped_area")
int BPF_PROG(on_map_area, unsigned long address, struct vm_unmapped_area_info *info)
{
	struct pt_regs *regs;

	if (!tracing_this_process())
		return 0;
	regs = current_syscall_regs();
	if (syscall_number(regs) == TLSTAP_NR_MMAP)
		file_mapped(regs);
	return 0;
}

/*
 * A thread is gone: its call entry with it. The process is gone when its
 * leader is, and every fd with it (exit closes them without close()).
 */
SEC("raw_tracepoint/sched_process_exit")
int probe_process_exit(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 thread = bpf_get_current_pid_tgid();

	bpf_map_delete_elem(&tls_calls, &thread);
	if ((__u32)thread == thread >> 32 && tracing_this_process()) {
		struct tlstap_process_record *record = reserve_process_record(TLSTAP_PROCESS_EXIT, -1);

		if (record)
			bpf_ringbuf_submit(record, wakeup_flags(sizeof(*record)));
		forget_traced_pid(thread >> 32);
	}
	return 0;
}
