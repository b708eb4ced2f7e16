/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* OpenSSL and BoringSSL: the SSL_* API's programs (Tracer's TLSStack.openSSL attaches them). */
#ifndef TLSTAP_STACK_OPENSSL_BPF_H
#define TLSTAP_STACK_OPENSSL_BPF_H

/*
 * The OpenSSL API's entry probes, once per flavour: OpenSSL's programs
 * (probe_ssl_*) and BoringSSL's (probe_boringssl_*) differ only in the
 * library they report, which each program knows itself, so kernels without
 * attach cookies (before 5.15) tell the two apart too.
 *   SSL_write(ssl, buf, num), SSL_read(ssl, buf, num): the write's buffer is
 *     plaintext on entry, the read's once it returns;
 *   SSL_write_ex and SSL_read_ex(ssl, buf, num, size_t *count);
 *   SSL_do_handshake(ssl): its syscalls (or, with memory BIOs, the next
 *     socket write) name the fd before any application data moves.
 */
#define OPENSSL_API_ENTRY(program, library, function, count_out)                        \
	SEC("uprobe")                                                                    \
	int program(struct pt_regs *ctx)                                                 \
	{                                                                                \
		if (tracing_this_process())                                              \
			remember_call(ctx, library, function, count_out);                \
		return 0;                                                                \
	}

#define OPENSSL_API_ENTRIES(flavour, library)                                                                  \
	OPENSSL_API_ENTRY(probe_##flavour##_write_enter, library, TLSTAP_FUNC_SSL_WRITE, 0)                    \
	OPENSSL_API_ENTRY(probe_##flavour##_read_enter, library, TLSTAP_FUNC_SSL_READ, 0)                      \
	OPENSSL_API_ENTRY(probe_##flavour##_write_ex_enter, library, TLSTAP_FUNC_SSL_WRITE_EX, PT_REGS_PARM4(ctx)) \
	OPENSSL_API_ENTRY(probe_##flavour##_read_ex_enter, library, TLSTAP_FUNC_SSL_READ_EX, PT_REGS_PARM4(ctx))   \
	OPENSSL_API_ENTRY(probe_##flavour##_handshake_enter, library, TLSTAP_FUNC_SSL_HANDSHAKE, 0)

OPENSSL_API_ENTRIES(ssl, TLSTAP_LIB_OPENSSL)
OPENSSL_API_ENTRIES(boringssl, TLSTAP_LIB_BORINGSSL)

/*
 * The inner function of SSL_write and SSL_write_ex (OpenSSL's
 * ssl_write_internal(ssl, buf, num, [flags,] size_t *count), likewise for
 * reads), probed instead of both when their first instruction would make
 * every probe hit single-step (ProbePlacement.swift). The return address
 * tells which of the two called it; the attach cookie says where the count
 * goes and which library this is. Kernels without cookies (before 5.15)
 * have their probes on SSL_write and SSL_write_ex themselves instead.
 */
static __always_inline void remember_inner_call(struct pt_regs *ctx, __u8 plain, __u8 ex)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	__u64 count_arg = (cookie >> TLSTAP_COOKIE_COUNT_ARG_SHIFT) & 0xff;
	__u64 return_address = 0;
	__u64 fourth = PT_REGS_PARM4(ctx), fifth = PT_REGS_PARM5(ctx);
	__u8 function = ex;

	/* Both read as they are: the verifier rejects a ctx offset chosen at run time. */
	barrier_var(fourth);
	barrier_var(fifth);

	if (cookie & TLSTAP_COOKIE_PLAIN_SITE_KNOWN) {
		bpf_probe_read_user(&return_address, sizeof(return_address), (void *)PT_REGS_SP(ctx));
		if ((return_address & 0xfff) == ((cookie >> TLSTAP_COOKIE_PLAIN_SITE_SHIFT) & 0xfff))
			function = plain;
	}
	remember_call(ctx, cookie & TLSTAP_COOKIE_LIBRARY_MASK, function, count_arg == 5 ? fifth : fourth);
}

SEC("uprobe")
int probe_ssl_write_inner_enter(struct pt_regs *ctx)
{
	if (tracing_this_process())
		remember_inner_call(ctx, TLSTAP_FUNC_SSL_WRITE, TLSTAP_FUNC_SSL_WRITE_EX);
	return 0;
}

SEC("uprobe")
int probe_ssl_read_inner_enter(struct pt_regs *ctx)
{
	if (tracing_this_process())
		remember_inner_call(ctx, TLSTAP_FUNC_SSL_READ, TLSTAP_FUNC_SSL_READ_EX);
	return 0;
}

SEC("uretprobe")
int probe_ssl_handshake_exit(struct pt_regs *ctx)
{
	__u64 thread = bpf_get_current_pid_tgid();
	struct tls_call *pending = call_in_flight(thread);
	struct tls_call call;

	if (!pending || pending->function != TLSTAP_FUNC_SSL_HANDSHAKE)
		return 0;
	call = *pending;
	end_call(pending);
	call_socket(&call, thread >> 32);
	return 0;
}

/*
 * BIO_write(bio, data, length) inside a call of an object with no socket
 * yet: the records it hands over leave fingerprints for the write syscall
 * that sends them (bindings.bpf.h). Calls through socket BIOs name their
 * fd themselves, and bound objects need nothing: both return at once.
 */
SEC("uprobe")
int BPF_KPROBE(probe_bio_write_enter, void *bio, const void *data, int length)
{
	struct tls_call *call = call_in_flight(bpf_get_current_pid_tgid());

	if (call && call->fd < 0 && call->known_fd < 0 && call->library != TLSTAP_LIB_GO && length > 0)
		leave_fingerprint(call->ssl, (__u64)data, length);
	return 0;
}

#endif
