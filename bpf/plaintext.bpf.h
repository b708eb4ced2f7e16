/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * --plaintext: the payload of unencrypted TCP sockets, from the same socket
 * syscalls that name TLS calls' fds. A socket is TLS (and never shown) once
 * an SSL call used it or a TLS handshake record crossed it; syscalls made
 * inside an SSL call carry ciphertext and are skipped too.
 */
#ifndef TLSTAP_PLAINTEXT_BPF_H
#define TLSTAP_PLAINTEXT_BPF_H

const volatile bool capture_plaintext = false;

/* A socket syscall in flight whose bytes may be plaintext. */
struct plain_call {
	__u64 buffer;	   /* the buffer, or the iovec array */
	__u64 iov_count;   /* 0 for a flat buffer */
	__s32 fd;
	__u8 function;	   /* enum tlstap_function */
	__u8 direction;
	__u8 pad[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, TLSTAP_MAX_THREADS);
	__type(key, __u64);
	__type(value, struct plain_call);
} plain_calls SEC(".maps");

/* `in_tls_call`: the syscall is made inside a TLS call, so its bytes are ciphertext. */
static __always_inline void remember_plain_call(bool in_tls_call, int fd, __u64 buffer, __u64 iov_count,
						__u8 function, __u8 direction)
{
	__u64 thread = bpf_get_current_pid_tgid();
	struct socket_state *socket;
	struct plain_call call = {
		.buffer = buffer,
		.iov_count = iov_count,
		.fd = fd,
		.function = function,
		.direction = direction,
	};

	if (!capture_plaintext || in_tls_call || !tracing_this_process())
		return;
	socket = socket_in_use(fd);
	if (!socket || socket->is_tls || !socket->wanted)
		return;
	bpf_map_update_elem(&plain_calls, &thread, &call, BPF_ANY);
}

/* sendmsg/recvmsg(fd, struct user_msghdr *msg, flags): the iovecs are in msg. */
static __always_inline void remember_plain_msg(bool in_tls_call, int fd, __u64 message, __u8 function,
					       __u8 direction)
{
	struct user_msghdr header = {};

	if (!capture_plaintext || bpf_probe_read_user(&header, sizeof(header), (void *)message))
		return;
	remember_plain_call(in_tls_call, fd, (__u64)header.msg_iov, header.msg_iovlen, function, direction);
}

static __always_inline void finish_plain_call(long ret, enum chunk_loop loop)
{
	__u64 thread = bpf_get_current_pid_tgid();
	struct plain_call *pending = bpf_map_lookup_elem(&plain_calls, &thread);
	struct socket_state *socket;
	struct emit_state state = {};
	struct plain_call call;
	struct iovec iov = {};
	__u64 done = 0;
	__u64 key;

	if (!pending)
		return;
	call = *pending;
	bpf_map_delete_elem(&plain_calls, &thread);
	key = tlstap_socket_key(thread >> 32, call.fd);
	socket = bpf_map_lookup_elem(&sockets, &key);
	if (ret <= 0 || !socket)
		return;
	if (call.iov_count && bpf_probe_read_user(&iov, sizeof(iov), (void *)call.buffer))
		return;
	if (tls_record_type(call.iov_count ? (__u64)iov.iov_base : call.buffer)) {
		socket->is_tls = 1;
		return;
	}

	state.header.kind = TLSTAP_RECORD_DATA;
	state.header.library = TLSTAP_LIB_SOCKET;
	state.header.function = call.function;
	state.header.direction = call.direction;
	state.header.pid = thread >> 32;
	state.header.tid = (__u32)thread;
	state.header.call_time_ns = bpf_ktime_get_ns();
	state.header.total_len = ret;
	state.header.fd = call.fd;
	bpf_get_current_comm(state.header.comm, sizeof(state.header.comm));
	begin_loss_mark(&state, socket_lost(socket, call.direction));
	if (!call.iov_count) {
		state.buffer = call.buffer;
		emit_payload(&state, loop);
		done = ret;
	}
	for (int i = 0; i < TLSTAP_MAX_IOVECS && i < call.iov_count && done < (__u64)ret; i++) {
		if (bpf_probe_read_user(&iov, sizeof(iov), (void *)(call.buffer + i * sizeof(iov))))
			break;
		state.buffer = (__u64)iov.iov_base;
		state.segment_offset = done;
		state.segment_len = iov.iov_len < (__u64)ret - done ? iov.iov_len : (__u64)ret - done;
		emit_segment(&state, loop);
		done += state.segment_len;
	}
	end_loss_mark(&state, socket_lost(socket, call.direction));
	if (done < (__u64)ret)
		count_lost(ret - done); /* more iovecs than TLSTAP_MAX_IOVECS */
}

#endif /* TLSTAP_PLAINTEXT_BPF_H */
