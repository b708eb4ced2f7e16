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
	int attached = 0, status = 1, syscall_hooks = 0;
	pid_t pid = -1;
	int option;

	while ((option = getopt(argc, argv, "p:l:P:s")) != -1) {
		switch (option) {
		case 's':
			syscall_hooks = 1;
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
	if (syscall_hooks ? pid > 0 || library || plan_path : pid <= 0 || !library == !plan_path)
		goto usage;

	skel = floor_bpf__open_and_load();
	if (!skel) {
		fprintf(stderr, "floor: cannot load the BPF programs: %s\n", strerror(errno));
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
	fprintf(stderr, "usage: floor -p PID (-l /path/to/libssl.so | -P ATTACH_PLAN) | floor -s\n");
	return 2;
}
