// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * consumer -p PID -P PLAN: the bare user-space limit for the pipeline
 * capacity benchmark. It loads tlstap's own BPF object (the skeleton
 * Sources/CTLSTapBPF/tlstap.skel.h that tlstap is built with), attaches its
 * OpenSSL probes where `tlstap -p PID` does (PLAN is what `tlstap check -p
 * PID --attach-plan` prints: each program, place and cookie), and then
 * only counts the records and payload bytes arriving from the ring buffer:
 * no decoding, no reassembly, no output. So the BPF programs that copy the
 * plaintext are tlstap's, and the difference in the two processes' CPU time
 * is what tlstap's user space does with each record.
 *
 * tlstap's raw tracepoints, which tie calls to sockets, and its probes are
 * configured, loaded and attached by tlstap's own C shim
 * (Sources/CTLSTapBPF/tlstap_bpf.c, compiled in), as `tlstap -p PID` does:
 * they run in the traced process, so against a server they are part of
 * what the BPF side costs it.
 *
 * Prints "consumer: attached N probes" on stderr when ready; on SIGINT or
 * SIGTERM drains the ring buffer and prints one line on stdout:
 *   consumer: records=N calls=C bytes=B lost_records=L lost_bytes=M other_records=O
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "CTLSTapBPF.h"
#include "tlstap_abi.h"
#include "tlstap.skel.h"
#include "../lib/attach_plan.h"

#define MAX_LINKS 32

struct counts {
	unsigned long long records, calls, bytes, other;
};

static volatile sig_atomic_t stopping;

static void stop(int signal)
{
	(void)signal;
	stopping = 1;
}

static int count_record(void *context, void *data, size_t size)
{
	const struct tlstap_chunk_header *header = data;
	struct counts *counts = context;

	if (size < sizeof(*header) || header->kind != TLSTAP_RECORD_DATA) {
		counts->other++;
		return 0;
	}
	counts->records++;
	counts->bytes += header->chunk_len;
	counts->calls += header->chunk_offset == 0;
	return 0;
}

static struct bpf_program *program_named(void *object, const char *name, int is_return)
{
	(void)is_return;
	return bpf_object__find_program_by_name(object, name);
}

/* The probes tlstap attaches: uprobe_multi links where the kernel has them. */
static void *attach_tlstap_uprobe(struct bpf_program *program, int is_return, pid_t pid, const char *file,
				  unsigned long long offset, unsigned long long cookie)
{
	return CTLSTapBPF_attach_uprobe(program, is_return, pid, file, NULL, offset, cookie);
}

int main(int argc, char **argv)
{
	const char *plan_path = NULL;
	struct counts counts = {};
	struct ring_buffer *ring = NULL;
	void *links[MAX_LINKS] = {};
	struct tlstap_bpf *skel;
	int attached = 0, status = 1, option;
	__u32 ring_mib = 32; /* tlstap's default */
	pid_t pid = -1;

	while ((option = getopt(argc, argv, "p:P:m:")) != -1) {
		switch (option) {
		case 'p':
			pid = atoi(optarg);
			break;
		case 'P':
			plan_path = optarg;
			break;
		case 'm':
			ring_mib = strtoul(optarg, NULL, 0);
			break;
		default:
			goto usage;
		}
	}
	if (pid <= 0 || !plan_path)
		goto usage;

	/* The four steps, as tlstap does them: open, set rodata, load, attach. */
	skel = tlstap_bpf__open();
	if (!skel) {
		fprintf(stderr, "consumer: cannot open the BPF object: %s\n", strerror(errno));
		return 1;
	}
	const struct CTLSTapBPF_Filters filters = { .own_pid = getpid(), .filter_pids = true };
	/* As tlstap takes them on the bench's kernel (6.6+; KernelFeatures). */
	const struct CTLSTapBPF_KernelFeatures features = {
		.bpf_loop = true,
		.attach_cookies = true,
		.socket_tracepoints = CTLSTapBPF_kernel_has_socket_tracepoints(),
	};
	if (CTLSTapBPF_configure(skel, &filters, &features, ring_mib << 20) || CTLSTapBPF_load(skel)) {
		fprintf(stderr, "consumer: cannot load tlstap's BPF programs: %s\n", strerror(errno));
		goto out;
	}
	const int32_t traced = pid;
	int added = CTLSTapBPF_trace_pids(skel, &traced, 1);
	if (added) {
		fprintf(stderr, "consumer: cannot add PID %d to the filter: %s\n", pid, strerror(-added));
		goto out;
	}

	if (attach_plan("consumer", plan_path, pid, program_named, skel->obj, attach_tlstap_uprobe, links,
			&attached, MAX_LINKS))
		goto out;
	const char *failed = NULL;
	int attach_err = CTLSTapBPF_attach_socket_probes(skel, &failed);
	if (attach_err) {
		fprintf(stderr, "consumer: cannot attach %s: %s\n", failed ? failed : "the syscall probes",
			strerror(-attach_err));
		goto out;
	}
	ring = ring_buffer__new(bpf_map__fd(skel->maps.events), count_record, &counts, NULL);
	if (!ring) {
		fprintf(stderr, "consumer: cannot set up the ring buffer: %s\n", strerror(errno));
		goto out;
	}

	signal(SIGINT, stop);
	signal(SIGTERM, stop);
	fprintf(stderr, "consumer: attached %d probes\n", attached);
	/*
	 * The same loop as tlstap's: BPF wakes the reader only when the buffer
	 * is filling up, so it waits up to 20 ms and then empties the buffer.
	 */
	while (!stopping) {
		int err = ring_buffer__poll(ring, 20);

		if (err >= 0)
			err = ring_buffer__consume(ring);
		if (err < 0 && err != -EINTR) {
			fprintf(stderr, "consumer: cannot read the ring buffer: %s\n", strerror(-err));
			goto out;
		}
	}
	ring_buffer__consume(ring);

	int cpus = libbpf_num_possible_cpus();
	struct tlstap_lost_counts *lost = calloc(cpus > 0 ? cpus : 1, sizeof(*lost));
	unsigned long long lost_records = 0, lost_bytes = 0;
	__u32 zero = 0;

	if (lost && cpus > 0 && bpf_map_lookup_elem(bpf_map__fd(skel->maps.lost_counts), &zero, lost) == 0) {
		for (int cpu = 0; cpu < cpus; cpu++) {
			lost_records += lost[cpu].records;
			lost_bytes += lost[cpu].bytes;
		}
	}
	free(lost);
	printf("consumer: records=%llu calls=%llu bytes=%llu lost_records=%llu lost_bytes=%llu other_records=%llu\n",
	       counts.records, counts.calls, counts.bytes, lost_records, lost_bytes, counts.other);
	status = 0;
out:
	ring_buffer__free(ring);
	CTLSTapBPF_destroy(skel, (struct CTLSTapBPF_Probe *const *)links, attached);
	return status;

usage:
	fprintf(stderr, "usage: consumer -p PID -P ATTACH_PLAN [-m RING_BUFFER_MIB]\n");
	return 2;
}
