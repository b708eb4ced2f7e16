// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Where tlstap puts its uprobes, read from `tlstap check -p PID
 * --attach-plan`: one line per entry probe and its return probe,
 *   FILE OFFSET COOKIE ENTRY-PROGRAM RETURN-PROGRAM
 * so that the floor and the bare consumer probe exactly the same places
 * (tlstap may probe the function SSL_write calls instead of SSL_write: see
 * Sources/TLSTapLoader/ProbePlacement.swift).
 */
#ifndef TLSTAP_BENCH_ATTACH_PLAN_H
#define TLSTAP_BENCH_ATTACH_PLAN_H

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <bpf/libbpf.h>

/* The program to attach for a point's ENTRY-PROGRAM (is_return 0) or RETURN-PROGRAM (1), or NULL. */
typedef struct bpf_program *(*plan_program)(void *context, const char *name, int is_return);

/* Attaches `program` at file offset `offset`: a handle to detach later, or NULL with errno set. */
typedef void *(*plan_attach)(struct bpf_program *program, int is_return, pid_t pid, const char *file,
			     unsigned long long offset, unsigned long long cookie);

/* plan_attach with libbpf: a perf-event uprobe, as the floor's programs are loaded for. */
static inline void *attach_perf_uprobe(struct bpf_program *program, int is_return, pid_t pid, const char *file,
				       unsigned long long offset, unsigned long long cookie)
{
	LIBBPF_OPTS(bpf_uprobe_opts, opts, .retprobe = is_return, .bpf_cookie = cookie);

	return bpf_program__attach_uprobe_opts(program, pid, file, offset, &opts);
}

/*
 * Attaches an entry and a return probe, with the point's cookie, at every
 * point of the plan at `path`, for process `pid` only, appending the links
 * to `links` (`*count` of `max_links` used) the handles `attach` returns.
 * Returns 0, or -1 after saying why on stderr, prefixed with `who`.
 */
static int attach_plan(const char *who, const char *path, pid_t pid, plan_program choose, void *context,
		       plan_attach attach, void **links, int *count, int max_links)
{
	char file[4096], enter[64], exit[64];
	unsigned long long offset, cookie;
	FILE *plan = fopen(path, "r");

	if (!plan) {
		fprintf(stderr, "%s: cannot open %s: %s\n", who, path, strerror(errno));
		return -1;
	}
	while (fscanf(plan, "%4095s %llx %llx %63s %63s", file, &offset, &cookie, enter, exit) == 5) {
		for (int ret = 0; ret <= 1; ret++) {
			const char *name = ret ? exit : enter;
			struct bpf_program *program = choose(context, name, ret);
			void *link = NULL;

			if (*count < max_links && program)
				link = attach(program, ret, pid, file, offset, cookie);
			if (!link) {
				fprintf(stderr, "%s: cannot attach %s at 0x%llx in %s: %s\n", who, name, offset, file,
					!program ? "no such program" : *count < max_links ? strerror(errno) : "too many probes");
				fclose(plan);
				return -1;
			}
			links[(*count)++] = link;
		}
	}
	fclose(plan);
	return 0;
}

#endif
