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

#include <stdio.h>

struct attach_point {
	char file[4096];
	unsigned long long offset, cookie;
	char enter[64], exit[64];
};

/* Reads the next point of `plan`; returns 1, or 0 at its end or on a malformed line. */
static int next_attach_point(FILE *plan, struct attach_point *point)
{
	return fscanf(plan, "%4095s %llx %llx %63s %63s", point->file, &point->offset, &point->cookie, point->enter,
		      point->exit) == 5;
}

#endif
