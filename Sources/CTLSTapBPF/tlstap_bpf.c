#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <stdarg.h>
#include <stdio.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include "CTLSTapBPF.h"
#include "tlstap_abi.h"
#include "tlstap.skel.h"

struct tlstap_bpf *CTLSTapBPF_open(void)
{
	return tlstap_bpf__open();
}

int CTLSTapBPF_configure(struct tlstap_bpf *skel, const struct CTLSTapBPF_Filters *filters,
			 uint32_t ring_buffer_bytes)
{
	skel->rodata->own_pid = filters->own_pid;
	skel->rodata->filter_pids = filters->filter_pids;
	skel->rodata->filter_comms = filters->filter_comms;
	skel->rodata->filter_cgroup = filters->filter_cgroup;
	skel->rodata->filter_ports = filters->filter_ports;
	skel->rodata->filter_hosts = filters->filter_hosts;
	skel->rodata->capture_plaintext = filters->capture_plaintext;
	skel->rodata->follow_children = filters->follow_children;
	skel->rodata->stop_for_attach = filters->stop_for_attach;
	if (!filters->capture_plaintext) {
		/* Not even loaded: their tracepoints would fire on every read and write. */
		struct bpf_program *plaintext_only[] = {
			skel->progs.probe_read_exit,	skel->progs.probe_write_exit,
			skel->progs.probe_readv_exit,	skel->progs.probe_writev_exit,
			skel->progs.probe_sendto_exit,	skel->progs.probe_recvfrom_exit,
			skel->progs.probe_sendmsg_exit, skel->progs.probe_recvmsg_exit,
		};

		for (size_t i = 0; i < sizeof(plaintext_only) / sizeof(plaintext_only[0]); i++)
			bpf_program__set_autoload(plaintext_only[i], false);
	}
	skel->rodata->target_cgroup_id = filters->target_cgroup_id;
	skel->rodata->wakeup_threshold = ring_buffer_bytes / 8 < (1u << 20) ? ring_buffer_bytes / 8 : (1u << 20);
	return bpf_map__set_max_entries(skel->maps.events, ring_buffer_bytes);
}

int CTLSTapBPF_load(struct tlstap_bpf *skel)
{
	return tlstap_bpf__load(skel);
}

static void *destroy_link(void *link)
{
	bpf_link__destroy(link);
	return NULL;
}

/*
 * Detaching a probe waits for an RCU grace period in the kernel, about 0.1 s
 * each on this VM kind: 2.3 s for tlstap's two dozen links one after another,
 * on every Ctrl-C and after every `tlstap -- COMMAND`. The waits overlap when
 * each link is destroyed on a thread of its own (one that cannot be started
 * is destroyed in place).
 */
static void destroy_links_at_once(struct bpf_link **links, size_t count)
{
	pthread_t *threads = calloc(count ? count : 1, sizeof(*threads));
	bool *started = calloc(count ? count : 1, sizeof(*started));
	pthread_attr_t attr;
	bool small_stacks;

	if (!threads || !started) {
		for (size_t i = 0; i < count; i++)
			bpf_link__destroy(links[i]);
		free(started);
		free(threads);
		return;
	}
	small_stacks = pthread_attr_init(&attr) == 0;
	if (small_stacks)
		pthread_attr_setstacksize(&attr, 64 * 1024);
	for (size_t i = 0; i < count; i++) {
		started[i] = pthread_create(&threads[i], small_stacks ? &attr : NULL, destroy_link, links[i]) == 0;
		if (!started[i])
			bpf_link__destroy(links[i]);
	}
	for (size_t i = 0; i < count; i++)
		if (started[i])
			pthread_join(threads[i], NULL);
	if (small_stacks)
		pthread_attr_destroy(&attr);
	free(started);
	free(threads);
}

void CTLSTapBPF_destroy(struct tlstap_bpf *skel, struct bpf_link *const *links, size_t link_count)
{
	struct bpf_object_skeleton *s = skel ? skel->skeleton : NULL;
	size_t capacity = link_count + (s ? s->prog_cnt : 0), count = 0;
	struct bpf_link **all = calloc(capacity ? capacity : 1, sizeof(*all));

	for (size_t i = 0; i < link_count; i++) {
		if (all)
			all[count++] = links[i];
		else
			bpf_link__destroy(links[i]);
	}
	/* The skeleton's own links (the syscall tracepoints), taken out of it so destroy() skips them. */
	for (int i = 0; s && all && i < s->prog_cnt; i++) {
		struct bpf_prog_skeleton *prog = (void *)s->progs + (size_t)i * s->prog_skel_sz;

		if (*prog->link)
			all[count++] = *prog->link;
		*prog->link = NULL;
	}
	if (all)
		destroy_links_at_once(all, count);
	free(all);
	tlstap_bpf__destroy(skel);
}

static const char *const program_names[] = {
	[CTLSTapBPF_SSL_WRITE_ENTER] = "probe_ssl_write_enter",
	[CTLSTapBPF_SSL_READ_ENTER] = "probe_ssl_read_enter",
	[CTLSTapBPF_SSL_WRITE_EX_ENTER] = "probe_ssl_write_ex_enter",
	[CTLSTapBPF_SSL_READ_EX_ENTER] = "probe_ssl_read_ex_enter",
	[CTLSTapBPF_SSL_WRITE_EXIT] = "probe_ssl_write_exit",
	[CTLSTapBPF_SSL_READ_EXIT] = "probe_ssl_read_exit",
	[CTLSTapBPF_GNUTLS_SEND_ENTER] = "probe_gnutls_send_enter",
	[CTLSTapBPF_GNUTLS_RECV_ENTER] = "probe_gnutls_recv_enter",
	[CTLSTapBPF_GO_WRITE_ENTER] = "probe_go_write_enter",
	[CTLSTapBPF_GO_READ_ENTER] = "probe_go_read_enter",
	[CTLSTapBPF_GO_WRITE_RETURN] = "probe_go_write_return",
	[CTLSTapBPF_GO_READ_RETURN] = "probe_go_read_return",
	[CTLSTapBPF_PR_WRITE_ENTER] = "probe_pr_write_enter",
	[CTLSTapBPF_PR_SEND_ENTER] = "probe_pr_send_enter",
	[CTLSTapBPF_PR_READ_ENTER] = "probe_pr_read_enter",
	[CTLSTapBPF_PR_RECV_ENTER] = "probe_pr_recv_enter",
	[CTLSTapBPF_SSL_HANDSHAKE_ENTER] = "probe_ssl_handshake_enter",
	[CTLSTapBPF_SSL_HANDSHAKE_EXIT] = "probe_ssl_handshake_exit",
	[CTLSTapBPF_SSL_WRITE_INNER_ENTER] = "probe_ssl_write_inner_enter",
	[CTLSTapBPF_SSL_READ_INNER_ENTER] = "probe_ssl_read_inner_enter",
	[CTLSTapBPF_BIO_WRITE_ENTER] = "probe_bio_write_enter",
	[CTLSTapBPF_OBJECT_FREE_ENTER] = "probe_object_free_enter",
};

const char *CTLSTapBPF_program_name(enum CTLSTapBPF_Program program)
{
	return (size_t)program < sizeof(program_names) / sizeof(program_names[0]) ? program_names[program] : NULL;
}

struct bpf_program *CTLSTapBPF_program(struct tlstap_bpf *skel, enum CTLSTapBPF_Program program)
{
	const char *name = CTLSTapBPF_program_name(program);

	return name ? bpf_object__find_program_by_name(skel->obj, name) : NULL;
}

int CTLSTapBPF_map_fd(struct tlstap_bpf *skel, enum CTLSTapBPF_Map map)
{
	switch (map) {
	case CTLSTapBPF_MAP_EVENTS:
		return bpf_map__fd(skel->maps.events);
	case CTLSTapBPF_MAP_LOST_COUNTS:
		return bpf_map__fd(skel->maps.lost_counts);
	case CTLSTapBPF_MAP_TRACED_PIDS:
		return bpf_map__fd(skel->maps.traced_pids);
	case CTLSTapBPF_MAP_TRACED_COMMS:
		return bpf_map__fd(skel->maps.traced_comms);
	case CTLSTapBPF_MAP_TRACED_PORTS:
		return bpf_map__fd(skel->maps.traced_ports);
	case CTLSTapBPF_MAP_TRACED_HOSTS:
		return bpf_map__fd(skel->maps.traced_hosts);
	}
	return -1;
}

void CTLSTapBPF_forget_process(struct tlstap_bpf *skel, uint32_t pid, const int32_t *fds, size_t fd_count,
			       const uint64_t *tls_objects, size_t tls_object_count)
{
	for (size_t i = 0; i < fd_count; i++) {
		__u64 key = tlstap_socket_key(pid, fds[i]);

		bpf_map__delete_elem(skel->maps.sockets, &key, sizeof(key), 0);
	}
	for (size_t i = 0; i < tls_object_count; i++) {
		struct tlstap_ssl_key key = { .tgid = pid, .ssl = tls_objects[i] };

		bpf_map__delete_elem(skel->maps.ssl_fds, &key, sizeof(key), 0);
		bpf_map__delete_elem(skel->maps.unbound_objects, &key, sizeof(key), 0);
	}
}

struct bpf_link *CTLSTapBPF_attach_uprobe(struct bpf_program *program, bool retprobe, pid_t pid,
					  const char *path, const char *function, uint64_t offset,
					  uint64_t cookie)
{
	LIBBPF_OPTS(bpf_uprobe_opts, opts, .retprobe = retprobe, .func_name = function,
		    .bpf_cookie = cookie);

	/* libbpf 1.1 dereferences a NULL program. */
	if (!program) {
		errno = ENOENT;
		return NULL;
	}
	return bpf_program__attach_uprobe_opts(program, pid, path, function ? 0 : offset, &opts);
}

/* A program and the skeleton slot for its link, so destroy() detaches it. */
struct probe_slot {
	struct bpf_program *program;
	struct bpf_link **link;
};

static int attach_all(struct probe_slot *probes, size_t count, const char **failed)
{
	for (size_t i = 0; i < count; i++) {
		*probes[i].link = bpf_program__attach(probes[i].program);
		if (!*probes[i].link) {
			int err = -errno;

			if (failed)
				*failed = bpf_program__section_name(probes[i].program);
			return err;
		}
	}
	return 0;
}

#define SLOT(name) { skel->progs.name, &skel->links.name }

int CTLSTapBPF_attach_socket_probes(struct tlstap_bpf *skel, bool plaintext, const char **failed)
{
	struct probe_slot always[] = {
		SLOT(probe_read_enter),	   SLOT(probe_write_enter),    SLOT(probe_readv_enter),
		SLOT(probe_writev_enter),  SLOT(probe_sendto_enter),   SLOT(probe_recvfrom_enter),
		SLOT(probe_sendmsg_enter), SLOT(probe_recvmsg_enter),  SLOT(probe_connect_enter),
		SLOT(probe_connect_exit),  SLOT(probe_accept_exit),    SLOT(probe_accept4_exit),
		SLOT(probe_close_enter),   SLOT(probe_process_exit),    SLOT(probe_process_exec),
		SLOT(probe_mmap_enter),
	};
	struct probe_slot plaintext_only[] = {
		SLOT(probe_read_exit),	  SLOT(probe_write_exit),    SLOT(probe_readv_exit),
		SLOT(probe_writev_exit),  SLOT(probe_sendto_exit),   SLOT(probe_recvfrom_exit),
		SLOT(probe_sendmsg_exit), SLOT(probe_recvmsg_exit),
	};
	/* Forks matter only to -p's filter: no cost on every fork of the host otherwise. */
	struct probe_slot children[] = { SLOT(probe_process_fork) };
	int err = attach_all(always, sizeof(always) / sizeof(always[0]), failed);

	if (!err && skel->rodata->filter_pids && skel->rodata->follow_children)
		err = attach_all(children, 1, failed);
	if (err || !plaintext)
		return err;
	return attach_all(plaintext_only, sizeof(plaintext_only) / sizeof(plaintext_only[0]), failed);
}

void CTLSTapBPF_set_go_probes_attached(struct tlstap_bpf *skel)
{
	skel->bss->go_probes_attached = 1; /* .bss is mmap'ed: the programs see it at once */
}

static CTLSTapBPF_LogHandler log_handler;

static int forward_log(enum libbpf_print_level level, const char *format, va_list args)
{
	char message[1024];
	int length = vsnprintf(message, sizeof(message), format, args);

	/* libbpf ends its lines with a newline; the logger adds its own. */
	if (length > 0 && (size_t)length < sizeof(message) && message[length - 1] == '\n')
		message[length - 1] = '\0';
	if (log_handler)
		log_handler((int)level, message);
	return length;
}

void CTLSTapBPF_set_log_handler(CTLSTapBPF_LogHandler handler)
{
	log_handler = handler;
	libbpf_set_print(handler ? forward_log : NULL);
}

int CTLSTapBPF_probe_fentry(void)
{
	struct bpf_insn return_zero[] = {
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 0 },
		{ .code = BPF_JMP | BPF_EXIT },
	};
	struct btf *vmlinux = btf__load_vmlinux_btf();
	int function, fd, err;

	if (!vmlinux)
		return -errno;
	function = btf__find_by_name_kind(vmlinux, "do_nanosleep", BTF_KIND_FUNC);
	btf__free(vmlinux);
	if (function < 0)
		return function;

	LIBBPF_OPTS(bpf_prog_load_opts, opts, .expected_attach_type = BPF_TRACE_FENTRY,
		    .attach_btf_id = function);
	fd = bpf_prog_load(BPF_PROG_TYPE_TRACING, NULL, "GPL", return_zero, 2, &opts);
	err = fd < 0 ? -errno : 0;
	if (fd >= 0)
		close(fd);
	return err;
}
