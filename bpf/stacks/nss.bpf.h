/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* NSS, through NSPR's I/O functions (TLSStack.nss). */
#ifndef TLSTAP_STACK_NSS_BPF_H
#define TLSTAP_STACK_NSS_BPF_H

/*
 * NSS: the application moves plaintext with NSPR's PR_Write/PR_Send and
 * PR_Read/PR_Recv(fd, buf, amount, ...) on a PRFileDesc that NSS's SSL layer
 * was pushed onto; NSS itself reaches the socket below through the layers'
 * method tables, never through these functions, so no byte is seen twice.
 * The same functions serve plain files and pipes, whose PRFileDesc has no
 * lower layer: those calls are skipped. PRFileDesc is NSPR's public struct
 * (prio.h): methods, secret, lower, higher, dtor, identity.
 */
struct nspr_file_desc {
	void *methods;
	void *secret;
	struct nspr_file_desc *lower;
};

static __always_inline void nspr_remember(struct pt_regs *ctx, __u8 function)
{
	struct nspr_file_desc *fd = (void *)PT_REGS_PARM1(ctx);
	void *lower = NULL;

	if (!tracing_this_process())
		return;
	bpf_probe_read_user(&lower, sizeof(lower), &fd->lower);
	if (lower)
		remember_call(ctx, TLSTAP_LIB_NSS, function, 0);
}

SEC("uprobe")
int probe_pr_write_enter(struct pt_regs *ctx)
{
	nspr_remember(ctx, TLSTAP_FUNC_PR_WRITE);
	return 0;
}

SEC("uprobe")
int probe_pr_send_enter(struct pt_regs *ctx)
{
	nspr_remember(ctx, TLSTAP_FUNC_PR_SEND);
	return 0;
}

SEC("uprobe")
int probe_pr_read_enter(struct pt_regs *ctx)
{
	nspr_remember(ctx, TLSTAP_FUNC_PR_READ);
	return 0;
}

SEC("uprobe")
int probe_pr_recv_enter(struct pt_regs *ctx)
{
	nspr_remember(ctx, TLSTAP_FUNC_PR_RECV);
	return 0;
}

#endif
