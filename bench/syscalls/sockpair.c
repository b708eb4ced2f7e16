// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * sockpair N: N round trips of one byte over a Unix socket pair, a write
 * on one end and a read on the other: 2N socket syscalls, each of which
 * passes the kernel's socket tracepoints (sock_send_length and
 * sock_recv_length, Linux 6.3+), where tlstap hooks socket calls. dd
 * copying a byte at a time measures what every syscall pays; this
 * measures what every socket call pays. Prints the nanoseconds per
 * syscall on stdout.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	long rounds = argc == 2 ? atol(argv[1]) : 0;
	struct timespec start, end;
	int ends[2];
	char byte = 'x';

	if (rounds <= 0) {
		fprintf(stderr, "usage: sockpair ROUNDS\n");
		return 2;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, ends)) {
		perror("sockpair: socketpair");
		return 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (long i = 0; i < rounds; i++) {
		if (write(ends[0], &byte, 1) != 1 || read(ends[1], &byte, 1) != 1) {
			perror("sockpair: write or read");
			return 1;
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &end);
	double nanoseconds = (end.tv_sec - start.tv_sec) * 1e9 + (end.tv_nsec - start.tv_nsec);
	printf("%.1f\n", nanoseconds / (2.0 * rounds));
	return 0;
}
