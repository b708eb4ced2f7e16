/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* GnuTLS: gnutls_record_send and gnutls_record_recv (TLSStack.gnuTLS). */
#ifndef TLSTAP_STACK_GNUTLS_BPF_H
#define TLSTAP_STACK_GNUTLS_BPF_H

/* gnutls_record_send(session, data, size): plaintext on entry. */
SEC("uprobe")
int probe_gnutls_send_enter(struct pt_regs *ctx)
{
	if (tracing_this_process())
		remember_call(ctx, TLSTAP_LIB_GNUTLS, TLSTAP_FUNC_GNUTLS_RECORD_SEND, 0);
	return 0;
}

/* gnutls_record_recv(session, data, size): plaintext once it returns. */
SEC("uprobe")
int probe_gnutls_recv_enter(struct pt_regs *ctx)
{
	if (tracing_this_process())
		remember_call(ctx, TLSTAP_LIB_GNUTLS, TLSTAP_FUNC_GNUTLS_RECORD_RECV, 0);
	return 0;
}

#endif
