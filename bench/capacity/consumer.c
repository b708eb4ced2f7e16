// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * consumer -p PID -l LIBSSL: the bare user-space limit for the pipeline
 * capacity benchmark. It loads tlstap's own BPF object (bpf/tlstap.bpf.c,
 * compiled by bench/run exactly as scripts/gen-bpf does), attaches it the way
 * `tlstap -p PID` does (entry and return of SSL_write, SSL_read, SSL_write_ex
 * and SSL_read_ex, for PID only), and then only counts the records and
 * payload bytes arriving from the ring buffer: no decoding, no reassembly, no
 * output. So the kernel side is identical to tlstap's, and the difference in
 * CPU time is what tlstap's user space does with each record.
 *
 * Prints "consumer: attached N probes" on stderr when ready; on SIGINT or
 * SIGTERM drains the ring buffer and prints one line on stdout:
 *   consumer: records=N calls=C bytes=B lost_records=L lost_bytes=M
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "tlstap_abi.h"
#include "tlstap.skel.h"

struct counts {
	unsigned long long records, calls, bytes;
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

	if (size < sizeof(*header))
		return 0;
	counts->records++;
	counts->bytes += header->chunk_len;
	counts->calls += header->chunk_offset == 0;
	return 0;
}

int main(int argc, char **argv)
{
	const char *library = NULL;
	struct counts counts = {};
	struct ring_buffer *ring = NULL;
	struct bpf_link *links[8] = {};
	struct tlstap_bpf *skel;
	int attached = 0, status = 1, option;
	__u32 ring_mib = 64;
	pid_t pid = -1;

	while ((option = getopt(argc, argv, "p:l:m:")) != -1) {
		switch (option) {
		case 'p':
			pid = atoi(optarg);
			break;
		case 'l':
			library = optarg;
			break;
		case 'm':
			ring_mib = strtoul(optarg, NULL, 0);
			break;
		default:
			goto usage;
		}
	}
	if (pid <= 0 || !library)
		goto usage;

	/* The four steps, as tlstap does them: open, set rodata, load, attach. */
	skel = tlstap_bpf__open();
	if (!skel) {
		fprintf(stderr, "consumer: cannot open the BPF object: %s\n", strerror(errno));
		return 1;
	}
	skel->rodata->own_pid = getpid();
	skel->rodata->filter_pids = true;
	if (bpf_map__set_max_entries(skel->maps.events, ring_mib << 20) || tlstap_bpf__load(skel)) {
		fprintf(stderr, "consumer: cannot load tlstap's BPF programs: %s\n", strerror(errno));
		goto out;
	}
	__u32 key = pid;
	__u8 present = 1;
	if (bpf_map_update_elem(bpf_map__fd(skel->maps.traced_pids), &key, &present, BPF_ANY)) {
		fprintf(stderr, "consumer: cannot add PID %d to the filter: %s\n", pid, strerror(errno));
		goto out;
	}

	struct {
		const char *function;
		struct bpf_program *enter, *exit;
	} probes[] = {
		{ "SSL_write", skel->progs.probe_ssl_write_enter, skel->progs.probe_ssl_write_exit },
		{ "SSL_read", skel->progs.probe_ssl_read_enter, skel->progs.probe_ssl_read_exit },
		{ "SSL_write_ex", skel->progs.probe_ssl_write_ex_enter, skel->progs.probe_ssl_write_exit },
		{ "SSL_read_ex", skel->progs.probe_ssl_read_ex_enter, skel->progs.probe_ssl_read_exit },
	};
	for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
		for (int ret = 0; ret <= 1; ret++) {
			LIBBPF_OPTS(bpf_uprobe_opts, opts, .retprobe = ret, .func_name = probes[i].function);
			struct bpf_link *link = bpf_program__attach_uprobe_opts(ret ? probes[i].exit : probes[i].enter,
										pid, library, 0, &opts);

			if (!link) {
				fprintf(stderr, "consumer: cannot attach %s%s in %s: %s\n", ret ? "return of " : "",
					probes[i].function, library, strerror(errno));
				goto out;
			}
			links[attached++] = link;
		}
	}
	ring = ring_buffer__new(bpf_map__fd(skel->maps.events), count_record, &counts, NULL);
	if (!ring) {
		fprintf(stderr, "consumer: cannot set up the ring buffer: %s\n", strerror(errno));
		goto out;
	}

	signal(SIGINT, stop);
	signal(SIGTERM, stop);
	fprintf(stderr, "consumer: attached %d probes\n", attached);
	/* The same wait as tlstap's: up to 100 ms per poll. */
	while (!stopping) {
		int err = ring_buffer__poll(ring, 100);

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
	printf("consumer: records=%llu calls=%llu bytes=%llu lost_records=%llu lost_bytes=%llu\n", counts.records,
	       counts.calls, counts.bytes, lost_records, lost_bytes);
	status = 0;
out:
	ring_buffer__free(ring);
	for (int i = 0; i < attached; i++)
		bpf_link__destroy(links[i]);
	tlstap_bpf__destroy(skel);
	return status;

usage:
	fprintf(stderr, "usage: consumer -p PID -l /path/to/libssl.so [-m RING_BUFFER_MIB]\n");
	return 2;
}
