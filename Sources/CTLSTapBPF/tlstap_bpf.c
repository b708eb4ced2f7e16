#define _GNU_SOURCE /* vasprintf */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include "CTLSTapBPF.h"
#include "tlstap_abi.h"
#include "tlstap.skel.h"

/*
 * An attached uprobe: a libbpf link (a perf event, on kernels before 6.6),
 * or the fd of an uprobe_multi link, which libbpf 1.1 cannot make.
 */
struct CTLSTapBPF_Probe {
	struct bpf_link *link;
	int fd;
};

/* From the kernel's UAPI (6.6+), newer than Debian 12's headers. */
#define TLSTAP_BPF_TRACE_UPROBE_MULTI 48
#define TLSTAP_BPF_F_UPROBE_MULTI_RETURN 1

/* bpf(BPF_LINK_CREATE) for an uprobe_multi link: union bpf_attr's link_create as 6.6 has it. */
struct uprobe_multi_attr {
	__u32 prog_fd;
	__u32 target_fd;
	__u32 attach_type;
	__u32 flags;
	__u64 path;
	__u64 offsets;
	__u64 ref_ctr_offsets;
	__u64 cookies;
	__u32 cnt;
	__u32 multi_flags;
	__u32 pid;
	__u32 pad;
};

/* Whether the kernel's BTF has a type of this name and kind. */
static bool kernel_btf_has(const char *name, int kind)
{
	struct btf *vmlinux = btf__load_vmlinux_btf();
	bool found;

	if (!vmlinux)
		return false;
	found = btf__find_by_name_kind(vmlinux, name, kind) >= 0;
	btf__free(vmlinux);
	return found;
}

/*
 * Whether the kernel has uprobe_multi links (Linux 6.6+). Detaching a
 * perf-event uprobe waits for an RCU grace period under a global mutex, one
 * probe after the other (about 85 ms each here: nearly 2 s for a libssl, a
 * libgnutls and an NSS); uprobe_multi links wait without the mutex, so links
 * destroyed at once wait once.
 */
static bool kernel_has_uprobe_multi(void)
{
	return kernel_btf_has("bpf_uprobe_multi_link", BTF_KIND_STRUCT);
}

bool CTLSTapBPF_kernel_has_tracepoint(const char *name)
{
	char type[128];

	snprintf(type, sizeof(type), "btf_trace_%s", name);
	return kernel_btf_has(type, BTF_KIND_TYPEDEF);
}

/* The BTF tracepoints that replace sys_enter (socket_tracepoints; syscalls.bpf.h). */
static const char *const socket_tracepoints[] = {
	"sock_send_length",
	"sock_recv_length",
	"vm_unmapped_area",
	"tcp_destroy_sock",
};

const char *CTLSTapBPF_socket_tracepoint(size_t index)
{
	return index < sizeof(socket_tracepoints) / sizeof(socket_tracepoints[0]) ? socket_tracepoints[index] : NULL;
}

bool CTLSTapBPF_kernel_has_socket_tracepoints(void)
{
	for (size_t i = 0; i < sizeof(socket_tracepoints) / sizeof(socket_tracepoints[0]); i++)
		if (!CTLSTapBPF_kernel_has_tracepoint(socket_tracepoints[i]))
			return false;
	return true;
}

/* Loads every uprobe program for uprobe_multi links if the kernel has them. */
static void choose_uprobe_links(struct tlstap_bpf *skel)
{
	struct bpf_program *program;

	if (!kernel_has_uprobe_multi())
		return;
	bpf_object__for_each_program(program, skel->obj) {
		const char *section = bpf_program__section_name(program);

		if (strcmp(section, "uprobe") == 0 || strcmp(section, "uretprobe") == 0)
			bpf_program__set_expected_attach_type(program, TLSTAP_BPF_TRACE_UPROBE_MULTI);
	}
}

static int attach_uprobe_multi(struct bpf_program *program, bool retprobe, pid_t pid, const char *path,
			       uint64_t offset, uint64_t cookie)
{
	struct uprobe_multi_attr attr = {
		.prog_fd = bpf_program__fd(program),
		.attach_type = TLSTAP_BPF_TRACE_UPROBE_MULTI,
		.path = (__u64)(uintptr_t)path,
		.offsets = (__u64)(uintptr_t)&offset,
		.cookies = (__u64)(uintptr_t)&cookie,
		.cnt = 1,
		.multi_flags = retprobe ? TLSTAP_BPF_F_UPROBE_MULTI_RETURN : 0,
		.pid = pid < 0 ? 0 : (__u32)pid,
	};

	return (int)syscall(SYS_bpf, BPF_LINK_CREATE, &attr, sizeof(attr));
}

struct tlstap_bpf *CTLSTapBPF_open(void)
{
	return tlstap_bpf__open();
}

/*
 * The twin of a program that sends payloads, for kernels without bpf_loop
 * (emit.bpf.h): the program of the same name with `_bounded` after it, or
 * NULL if it has none.
 */
static struct bpf_program *bounded_twin(struct tlstap_bpf *skel, struct bpf_program *program)
{
	char twin[128];

	snprintf(twin, sizeof(twin), "%s_bounded", bpf_program__name(program));
	return bpf_object__find_program_by_name(skel->obj, twin);
}

/*
 * `program`, or its bounded twin where that is the one loaded. NULL stays
 * NULL (libbpf 1.1 dereferences a NULL program).
 */
static struct bpf_program *loaded_member(struct tlstap_bpf *skel, struct bpf_program *program)
{
	return !program || bpf_program__autoload(program) ? program : bounded_twin(skel, program);
}

/*
 * Either sys_enter and its handlers, or the socket tracepoints and the two
 * that replace its close and mmap handlers (syscalls.bpf.h).
 */
static void choose_syscall_hooks(struct tlstap_bpf *skel, bool from_sockets)
{
	struct bpf_program *replacing[] = {
		skel->progs.on_socket_send,	    skel->progs.on_socket_receive,
		skel->progs.on_tcp_state_in_close, skel->progs.on_tcp_destroy_in_close,
		skel->progs.on_map_area,
	};
	struct bpf_program *program;

	for (size_t i = 0; i < sizeof(replacing) / sizeof(replacing[0]); i++)
		bpf_program__set_autoload(replacing[i], from_sockets);
	if (!from_sockets)
		return;
	bpf_object__for_each_program(program, skel->obj)
		if (strcmp(bpf_program__section_name(program), "raw_tracepoint/sys_enter") == 0)
			bpf_program__set_autoload(program, false);
}

/*
 * Loads one member of each program pair, and none of the programs that
 * call what the kernel lacks: those are the only ones the verifier would
 * refuse.
 */
static void choose_programs(struct tlstap_bpf *skel, const struct CTLSTapBPF_KernelFeatures *features)
{
	struct bpf_program *program, *twin;

	bpf_object__for_each_program(program, skel->obj) {
		twin = bounded_twin(skel, program);
		if (!twin)
			continue;
		bpf_program__set_autoload(program, features->bpf_loop);
		bpf_program__set_autoload(twin, !features->bpf_loop);
	}
	bpf_program__set_autoload(skel->progs.probe_ssl_write_inner_enter, features->attach_cookies);
	bpf_program__set_autoload(skel->progs.probe_ssl_read_inner_enter, features->attach_cookies);
	if (!skel->rodata->capture_plaintext) { /* only --plaintext needs syscall returns */
		bpf_program__set_autoload(skel->progs.on_sys_exit, false);
		bpf_program__set_autoload(skel->progs.on_sys_exit_bounded, false);
	}
	choose_syscall_hooks(skel, features->socket_tracepoints && !skel->rodata->capture_plaintext);
}

int CTLSTapBPF_configure(struct tlstap_bpf *skel, const struct CTLSTapBPF_Filters *filters,
			 const struct CTLSTapBPF_KernelFeatures *features, uint32_t ring_buffer_bytes)
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
	choose_uprobe_links(skel);
	choose_programs(skel, features);
	skel->rodata->target_cgroup_id = filters->target_cgroup_id;
	skel->rodata->wakeup_threshold = ring_buffer_bytes / 8 < (1u << 20) ? ring_buffer_bytes / 8 : (1u << 20);
	if (filters->filter_pids &&
	    bpf_map__set_max_entries(skel->maps.traced_pids, TLSTAP_PID_LIMIT / TLSTAP_PIDS_PER_BLOCK))
		return -errno;
	if ((filters->filter_comms || filters->filter_cgroup) &&
	    bpf_map__set_max_entries(skel->maps.verdicts, TLSTAP_PID_LIMIT / TLSTAP_PIDS_PER_BLOCK))
		return -errno;
	bpf_program__set_autoload(skel->progs.probe_task_rename, filters->filter_comms);
	bpf_program__set_autoload(skel->progs.probe_cgroup_attach, filters->filter_cgroup);
	return bpf_map__set_max_entries(skel->maps.events, ring_buffer_bytes);
}

int CTLSTapBPF_trace_pids(struct tlstap_bpf *skel, const int32_t *pids, size_t count)
{
	size_t size = (size_t)bpf_map__max_entries(skel->maps.traced_pids) * TLSTAP_PIDS_PER_BLOCK;
	volatile uint8_t *traced;

	for (size_t i = 0; i < count; i++)
		if (pids[i] <= 0 || (size_t)pids[i] >= size)
			return -ERANGE;
	traced = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, bpf_map__fd(skel->maps.traced_pids), 0);
	if (traced == MAP_FAILED)
		return -errno;
	for (size_t i = 0; i < count; i++)
		traced[pids[i]] = 1; /* a byte of its own: the kernel's stores to the others stay */
	munmap((void *)traced, size);
	return 0;
}

/* A syscall and the program its raw tracepoint tail-calls for it (syscalls.bpf.h). */
struct syscall_handler {
	long number;
	struct bpf_program *program;
};

static int fill_syscall_table(struct tlstap_bpf *skel, const struct syscall_handler *handlers, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		__u32 slot = (__u32)handlers[i].number;
		int program = bpf_program__fd(loaded_member(skel, handlers[i].program));

		if (program < 0 || bpf_map__update_elem(skel->maps.syscall_enters, &slot, sizeof(slot), &program, sizeof(program), BPF_ANY))
			return -errno;
	}
	return 0;
}

int CTLSTapBPF_load(struct tlstap_bpf *skel)
{
	struct syscall_handler enters[] = {
		{ SYS_read, skel->progs.probe_read_enter },	  { SYS_write, skel->progs.probe_write_enter },
		{ SYS_readv, skel->progs.probe_readv_enter },	  { SYS_writev, skel->progs.probe_writev_enter },
		{ SYS_sendto, skel->progs.probe_sendto_enter },	  { SYS_recvfrom, skel->progs.probe_recvfrom_enter },
		{ SYS_sendmsg, skel->progs.probe_sendmsg_enter }, { SYS_recvmsg, skel->progs.probe_recvmsg_enter },
		{ SYS_close, skel->progs.probe_close_enter },	  { SYS_mmap, skel->progs.probe_mmap_enter },
	};
	int err = tlstap_bpf__load(skel);

	if (!err && bpf_program__autoload(skel->progs.on_sys_enter))
		err = fill_syscall_table(skel, enters, sizeof(enters) / sizeof(enters[0]));
	return err;
}

/* A link of the skeleton's, or a probe; detaching either waits for the kernel. */
struct detach_job {
	struct bpf_link *link;
	struct CTLSTapBPF_Probe *probe;
};

static void *detach(void *argument)
{
	struct detach_job *job = argument;

	if (job->link)
		bpf_link__destroy(job->link);
	if (job->probe) {
		bpf_link__destroy(job->probe->link);
		if (job->probe->fd >= 0)
			close(job->probe->fd);
		free(job->probe);
	}
	return NULL;
}

/*
 * Detaching a link waits for an RCU grace period in the kernel. The waits
 * overlap where the kernel lets them (raw tracepoints, uprobe_multi links)
 * when each job runs on a thread of its own (one that cannot be started
 * runs in place).
 */
static void detach_at_once(struct detach_job *jobs, size_t count)
{
	pthread_t *threads = calloc(count ? count : 1, sizeof(*threads));
	bool *started = calloc(count ? count : 1, sizeof(*started));
	pthread_attr_t attr;
	bool small_stacks;

	if (!threads || !started) {
		for (size_t i = 0; i < count; i++)
			detach(&jobs[i]);
		free(started);
		free(threads);
		return;
	}
	small_stacks = pthread_attr_init(&attr) == 0;
	if (small_stacks)
		pthread_attr_setstacksize(&attr, 64 * 1024);
	for (size_t i = 0; i < count; i++) {
		started[i] = pthread_create(&threads[i], small_stacks ? &attr : NULL, detach, &jobs[i]) == 0;
		if (!started[i])
			detach(&jobs[i]);
	}
	for (size_t i = 0; i < count; i++)
		if (started[i])
			pthread_join(threads[i], NULL);
	if (small_stacks)
		pthread_attr_destroy(&attr);
	free(started);
	free(threads);
}

void CTLSTapBPF_detach(struct tlstap_bpf *skel, struct CTLSTapBPF_Probe *const *probes, size_t probe_count)
{
	struct bpf_object_skeleton *s = skel ? skel->skeleton : NULL;
	size_t capacity = probe_count + (s ? s->prog_cnt : 0), count = 0;
	struct detach_job *jobs = calloc(capacity ? capacity : 1, sizeof(*jobs));

	for (size_t i = 0; i < probe_count; i++) {
		struct detach_job job = { .probe = probes[i] };

		if (jobs)
			jobs[count++] = job;
		else
			detach(&job);
	}
	/* The skeleton's own links (the raw tracepoints), taken out of it so destroy() skips them. */
	for (int i = 0; s && jobs && i < s->prog_cnt; i++) {
		struct bpf_prog_skeleton *prog = (void *)s->progs + (size_t)i * s->prog_skel_sz;

		if (*prog->link)
			jobs[count++] = (struct detach_job){ .link = *prog->link };
		*prog->link = NULL;
	}
	if (jobs)
		detach_at_once(jobs, count);
	free(jobs);
}

void CTLSTapBPF_destroy(struct tlstap_bpf *skel, struct CTLSTapBPF_Probe *const *probes, size_t probe_count)
{
	CTLSTapBPF_detach(skel, probes, probe_count);
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
	[CTLSTapBPF_BORINGSSL_WRITE_ENTER] = "probe_boringssl_write_enter",
	[CTLSTapBPF_BORINGSSL_READ_ENTER] = "probe_boringssl_read_enter",
	[CTLSTapBPF_BORINGSSL_WRITE_EX_ENTER] = "probe_boringssl_write_ex_enter",
	[CTLSTapBPF_BORINGSSL_READ_EX_ENTER] = "probe_boringssl_read_ex_enter",
	[CTLSTapBPF_BORINGSSL_HANDSHAKE_ENTER] = "probe_boringssl_handshake_enter",
	[CTLSTapBPF_GO_HANDSHAKE_ENTER] = "probe_go_handshake_enter",
	[CTLSTapBPF_GO_HANDSHAKE_RETURN] = "probe_go_handshake_return",
};

const char *CTLSTapBPF_program_name(enum CTLSTapBPF_Program program)
{
	return (size_t)program < sizeof(program_names) / sizeof(program_names[0]) ? program_names[program] : NULL;
}

struct bpf_program *CTLSTapBPF_program(struct tlstap_bpf *skel, enum CTLSTapBPF_Program program)
{
	const char *name = CTLSTapBPF_program_name(program);

	return name ? loaded_member(skel, bpf_object__find_program_by_name(skel->obj, name)) : NULL;
}

int CTLSTapBPF_map_fd(struct tlstap_bpf *skel, enum CTLSTapBPF_Map map)
{
	switch (map) {
	case CTLSTapBPF_MAP_EVENTS:
		return bpf_map__fd(skel->maps.events);
	case CTLSTapBPF_MAP_LOST_COUNTS:
		return bpf_map__fd(skel->maps.lost_counts);
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

struct CTLSTapBPF_Probe *CTLSTapBPF_attach_uprobe(struct bpf_program *program, bool retprobe, pid_t pid,
						  const char *path, const char *function, uint64_t offset,
						  uint64_t cookie)
{
	LIBBPF_OPTS(bpf_uprobe_opts, opts, .retprobe = retprobe, .func_name = function,
		    .bpf_cookie = cookie);
	struct CTLSTapBPF_Probe *probe;

	/* libbpf 1.1 dereferences a NULL program. */
	if (!program) {
		errno = ENOENT;
		return NULL;
	}
	probe = calloc(1, sizeof(*probe));
	if (!probe)
		return NULL;
	probe->fd = -1;
	if (bpf_program__expected_attach_type(program) == (enum bpf_attach_type)TLSTAP_BPF_TRACE_UPROBE_MULTI) {
		/* An uprobe_multi link takes file offsets only: the caller resolves symbols. */
		if (function)
			errno = ENOENT;
		else
			probe->fd = attach_uprobe_multi(program, retprobe, pid, path, offset, cookie);
	} else {
		probe->link = bpf_program__attach_uprobe_opts(program, pid, path, function ? 0 : offset, &opts);
	}
	if (!probe->link && probe->fd < 0) {
		int err = errno;

		free(probe);
		errno = err;
		return NULL;
	}
	return probe;
}

/* A program and the skeleton slot for its link, so destroy() detaches it. */
struct probe_slot {
	struct bpf_program *program;
	struct bpf_link **link;
};

static int attach_all(struct probe_slot *probes, size_t count, const char **failed)
{
	for (size_t i = 0; i < count; i++) {
		if (!bpf_program__autoload(probes[i].program))
			continue; /* the other member of its pair is loaded */
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

int CTLSTapBPF_attach_socket_probes(struct tlstap_bpf *skel, const char **failed)
{
	/*
	 * The syscall handlers are not attached: on_sys_enter tail-calls them. Without --plaintext, no exits
	 * load; with the socket tracepoints, no sys_enter (attach_all skips what did not load).
	 */
	struct probe_slot always[] = {
		SLOT(on_sys_enter),
		SLOT(on_sys_exit),
		SLOT(on_sys_exit_bounded),
		SLOT(on_tcp_state),
		SLOT(on_socket_send),
		SLOT(on_socket_receive),
		SLOT(on_tcp_state_in_close),
		SLOT(on_tcp_destroy_in_close),
		SLOT(on_map_area),
		SLOT(probe_process_exit),
		SLOT(probe_process_exec),
		SLOT(probe_task_rename), /* loaded with -c only */
		SLOT(probe_cgroup_attach), /* with `--` only */
	};
	/*
	 * Forks matter only to -p's filter, -c's and `--`'s: no cost on every fork of the host otherwise.
	 * First: before any other program asks for a verdict (filter.bpf.h).
	 */
	struct probe_slot children[] = { SLOT(probe_process_fork) };
	int err = 0;

	if ((skel->rodata->filter_pids && skel->rodata->follow_children) || skel->rodata->filter_comms ||
	    skel->rodata->filter_cgroup)
		err = attach_all(children, 1, failed);
	return err ? err : attach_all(always, sizeof(always) / sizeof(always[0]), failed);
}

void CTLSTapBPF_set_go_probes_attached(struct tlstap_bpf *skel)
{
	skel->bss->go_probes_attached = 1; /* .bss is mmap'ed: the programs see it at once */
}

static CTLSTapBPF_LogHandler log_handler;

static int forward_log(enum libbpf_print_level level, const char *format, va_list args)
{
	char line[1024], *message = line;
	size_t end;
	va_list again;
	int length;

	va_copy(again, args);
	length = vsnprintf(line, sizeof(line), format, args);
	/* A verifier log runs to many KiB, and its reason comes last: never cut it. */
	if (length >= (int)sizeof(line) && vasprintf(&message, format, again) < 0)
		message = line;
	va_end(again);
	/* libbpf ends its lines with a newline; the logger adds its own. */
	end = strlen(message);
	if (end > 0 && message[end - 1] == '\n')
		message[end - 1] = '\0';
	if (log_handler)
		log_handler((int)level, message);
	if (message != line)
		free(message);
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
