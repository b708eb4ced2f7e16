// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * floor -p PID -l LIBSSL: attaches floor.bpf.c's empty programs on entry and
 * return of SSL_write, SSL_read, SSL_write_ex, SSL_read_ex and SSL_do_handshake in LIBSSL, for
 * process PID only (as `tlstap -p PID` does): what every uprobe tracer of
 * OpenSSL's API pays.
 * floor -p PID -P PLAN: the same empty programs at the places tlstap probes,
 * read from PLAN (`tlstap check -p PID --attach-plan`).
 * floor -s: an empty program on tlstap's syscall hook (the raw tracepoint
 * sys_enter), host-wide: what every process pays per syscall for the hook
 * alone, before any work in it.
 * floor -k: empty programs on the socket tracepoints tlstap hooks on Linux
 * 6.3 and later (sock_send_length, sock_recv_length), host-wide: what every
 * socket call pays for them.
 * Prints "floor: attached N probes" on stderr and waits for SIGINT or SIGTERM.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/libbpf.h>
#include "floor.skel.h"
#include "../lib/attach_plan.h"

static volatile sig_atomic_t stopping;

static void stop(int signal)
{
	(void)signal;
	stopping = 1;
}

#define MAX_LINKS 64

static const char *const functions[] = { "SSL_write", "SSL_read", "SSL_write_ex", "SSL_read_ex", "SSL_do_handshake" };

/* The empty programs, wherever tlstap's own go. */
static struct bpf_program *empty_program(void *skel, const char *name, int is_return)
{
	(void)name;
	return is_return ? ((struct floor_bpf *)skel)->progs.floor_exit : ((struct floor_bpf *)skel)->progs.floor_enter;
}

int main(int argc, char **argv)
{
	void *links[MAX_LINKS] = {};
	const char *library = NULL, *plan_path = NULL;
	struct floor_bpf *skel;
	int attached = 0, status = 1, syscall_hooks = 0, socket_hooks = 0;
	pid_t pid = -1;
	int option;

	while ((option = getopt(argc, argv, "p:l:P:sk")) != -1) {
		switch (option) {
		case 's':
			syscall_hooks = 1;
			break;
		case 'k':
			socket_hooks = 1;
			break;
		case 'p':
			pid = atoi(optarg);
			break;
		case 'l':
			library = optarg;
			break;
		case 'P':
			plan_path = optarg;
			break;
		default:
			goto usage;
		}
	}
	if (syscall_hooks || socket_hooks ? pid > 0 || library || plan_path || syscall_hooks == socket_hooks
					  : pid <= 0 || !library == !plan_path)
		goto usage;

	skel = floor_bpf__open();
	if (!skel) {
		fprintf(stderr, "floor: cannot open the BPF programs: %s\n", strerror(errno));
		return 1;
	}
	/* Only what is attached is loaded: a kernel before 6.3 has no socket tracepoints. */
	bpf_program__set_autoload(skel->progs.floor_sys_enter, syscall_hooks);
	bpf_program__set_autoload(skel->progs.floor_sock_send, socket_hooks);
	bpf_program__set_autoload(skel->progs.floor_sock_receive, socket_hooks);
	if (floor_bpf__load(skel)) {
		fprintf(stderr, "floor: cannot load the BPF programs: %s\n", strerror(errno));
		floor_bpf__destroy(skel);
		return 1;
	}
	if (plan_path && attach_plan("floor", plan_path, pid, empty_program, skel, attach_perf_uprobe, links, &attached,
				      MAX_LINKS))
		goto out;
	if (syscall_hooks) {
		struct bpf_link *link = bpf_program__attach(skel->progs.floor_sys_enter);

		if (!link) {
			fprintf(stderr, "floor: cannot attach floor_sys_enter: %s\n", strerror(errno));
			goto out;
		}
		links[attached++] = link;
	}
	for (int i = 0; socket_hooks && i < 2; i++) {
		struct bpf_program *program = i ? skel->progs.floor_sock_receive : skel->progs.floor_sock_send;
		struct bpf_link *link = bpf_program__attach(program);

		if (!link) {
			fprintf(stderr, "floor: cannot attach %s: %s\n", bpf_program__name(program), strerror(errno));
			goto out;
		}
		links[attached++] = link;
	}
	for (size_t i = 0; library && i < sizeof(functions) / sizeof(functions[0]); i++) {
		for (int ret = 0; ret <= 1; ret++) {
			LIBBPF_OPTS(bpf_uprobe_opts, opts, .retprobe = ret, .func_name = functions[i]);
			struct bpf_program *program = ret ? skel->progs.floor_exit : skel->progs.floor_enter;
			struct bpf_link *link = bpf_program__attach_uprobe_opts(program, pid, library, 0, &opts);

			if (!link) {
				fprintf(stderr, "floor: cannot attach %s%s in %s: %s\n", ret ? "return of " : "",
					functions[i], library, strerror(errno));
				goto out;
			}
			links[attached++] = link;
		}
	}
	signal(SIGINT, stop);
	signal(SIGTERM, stop);
	fprintf(stderr, "floor: attached %d probes\n", attached);
	while (!stopping)
		sleep(1); /* a signal cuts it short; the bound covers the race */
	status = 0;
out:
	for (int i = 0; i < attached; i++)
		bpf_link__destroy(links[i]);
	floor_bpf__destroy(skel);
	return status;

usage:
	fprintf(stderr, "usage: floor -p PID (-l /path/to/libssl.so | -P ATTACH_PLAN) | floor -s | floor -k\n");
	return 2;
}
