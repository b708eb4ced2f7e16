#!/usr/bin/env python3
"""Turns bench/run's results into the tables of BENCHMARKS.md.

    report.py --line < one-result.json          a progress line for the terminal
    report.py --results R --cells DIR --report BENCHMARKS.md ...

The report replaces what is between the bench:begin and bench:end markers of
BENCHMARKS.md (or appends the section when the markers are missing), so every
number in that section comes from one run. "-" as --report prints it instead.
"""
import argparse
import glob
import json
import os
import re
import statistics
import subprocess
import sys

BEGIN = "<!-- bench:begin: written by bench/run, edit outside these markers -->"
END = "<!-- bench:end -->"
MODES = ("none", "floor", "floor-tlstap", "consumer", "tlstap", "tlstap-record", "tlstap-full")
MODE_NAMES = {"none": "no tracer", "floor": "floor (empty uprobes on OpenSSL's API functions)",
              "floor-tlstap": "floor at tlstap's probe points (empty uprobes where tlstap attaches)",
              "consumer": "BPF side alone (tlstap's programs, a consumer that only counts)",
              "tlstap": "tlstap, JSON Lines of the payloads to a file",
              "tlstap-record": "tlstap record, the records saved undecoded (rendered afterwards by tlstap replay)",
              "tlstap-full": "tlstap with HTTP parsing and pcapng (JSON with exchanges + pcapng file)"}
WORKLOAD_NAMES = {
    "h1-1k": "HTTP/1.1 keep-alive, 1 KiB (wrk)",
    "h1-64k": "HTTP/1.1 keep-alive, 64 KiB (wrk)",
    "h2-1k": "HTTP/2, 1 KiB (h2load)",
    "h2-64k": "HTTP/2, 64 KiB (h2load)",
    "h1close-1k": "HTTP/1.1 new connection per request, 1 KiB (wrk, Connection: close)",
}
MIB = 1024 * 1024
# Frames nginx sends on every HTTP/2 connection outside any stream: SETTINGS
# (9 + 18), WINDOW_UPDATE (9 + 4), SETTINGS ACK (9).
H2_CONNECTION_BYTES = 49
H2_LARGEST_RESPONSE = 65536


def median(values):
    values = [value for value in values if value is not None]
    return statistics.median(values) if values else None


def fmt(value, digits=0, unit=""):
    if value is None:
        return "–"
    if isinstance(value, float) and digits == 0:
        value = round(value)
    if isinstance(value, int) or digits == 0:
        return f"{value:,}{unit}"
    return f"{value:,.{digits}f}{unit}"


def ratio(value):
    return "–" if value is None else f"{value:.2f}×"


def disturbed(record):
    """Whether another tool's tracing programs were loaded around the cell."""
    return bool(record.get("others_before") or record.get("others_after"))


def cpu(record):
    if "tracer_user_s" not in record:
        return None
    return record["tracer_user_s"] + record["tracer_sys_s"]


def progress_line(record):
    """One line per cell on stderr while bench/run goes."""
    name = record.get("workload") or f"gen {record.get('size')} B x{record.get('count')}"
    parts = [f"{record.get('phase')}", name, record.get("mode", "")]
    if record.get("rps") is not None:
        parts.append(f"{record['rps']:,.0f} req/s p99 {fmt(record.get('p99_ms'), 2)} ms")
    if record.get("gen_seconds"):
        parts.append(f"{(record['gen_write_bytes'] + record['gen_read_bytes']) / record['gen_seconds'] / 1e6:,.0f} "
                     f"MB/s payload")
    if cpu(record) is not None:
        parts.append(f"tracer cpu {cpu(record):.2f}s")
    if "events" in record:
        parts.append(f"{record['events']:,} events, {record.get('lost_records', 0):,} lost")
    if "served_out" in record and "captured_out" in record:
        parts.append(f"out captured {record['captured_out']:,} / served {record['served_out']:,}")
    if record.get("others_before") or record.get("others_after"):
        parts.append(f"other tools' tracing programs loaded: {record.get('others_before')} before, "
                     f"{record.get('others_after')} after")
    return "bench:   " + " | ".join(parts)


def command_output(command):
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=10)
        return (result.stdout + result.stderr).strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine(tlstap):
    cpu_model = "unknown"
    with open("/proc/cpuinfo") as file:
        for line in file:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as file:
        memory = int(file.readline().split()[1]) // 1024 // 1024
    nginx = command_output(["nginx", "-v"]).replace("nginx version: ", "")
    openssl = command_output(["openssl", "version"])
    wrk = command_output(["wrk", "-v"]).splitlines()[0:1]
    h2load = command_output(["h2load", "--version"])
    commit = command_output(["git", "rev-parse", "--short", "HEAD"])
    dirty = command_output(["git", "status", "--porcelain", "--untracked-files=no", "--", "Sources", "bpf"])
    return [
        f"- CPU: {os.cpu_count()} × {cpu_model}; {memory} GiB memory; kernel {os.uname().release}",
        f"- Software: {nginx}, {openssl}, {wrk[0] if wrk else 'wrk'}, {h2load}; "
        f"tlstap {command_output([tlstap, '--version'])} at commit {commit}"
        + (" with uncommitted changes in Sources/ or bpf/" if dirty else ""),
    ]


def counted_rounds(main, workload):
    """A workload's rounds (number: cells), those the medians use, and the undisturbed ones."""
    rounds = {}
    for r in main:
        if r["workload"] == workload:
            rounds.setdefault(r["round"], []).append(r)
    clean_rounds = {n: cells for n, cells in rounds.items() if not any(disturbed(r) for r in cells)}
    return rounds, clean_rounds or rounds, clean_rounds


# A worker at this share of a core or more is taken as using a full one (see cpu_section's caption).
FULL_CORE_PERCENT = 90


def cpu_section(results, lines):
    """Where the machine's CPU went while the load ran, per request, for each mode."""
    main = [r for r in results if r.get("phase") == "main"]
    workloads = [w for w in WORKLOAD_NAMES if any(r["workload"] == w and "load_cpu_busy_s" in r for r in main)]
    if not workloads:
        return
    lines += [
        "### Where the machine's CPU goes",
        "",
        "CPU time while the load ran (read from /proc before and after it; medians over the same rounds as "
        "above), per request. *nginx* is its worker, with the BPF programs that run in its context (uprobes "
        "and tracepoints); *load* is wrk or h2load; *tracer* is the tracer's process (tlstap's "
        "threads, the floor's or the consumer's); *rest* is the machine's busy time less those three (softirqs "
        "not charged to a process, other processes), and comes out negative by a few µs where the processes' "
        "exact times exceed the machine's tick counts; *steal* is time the hypervisor took from the VM's two "
        "cores (its disk and network work for the VM among it). Its share of a core is its CPU time over the load's "
        "wall time as the machine's tick counts give it (busy, idle and steal over the two cores); the two clocks "
        "differ by a few percent, so a full core shows as anything from about 90 to 107%. The worker is one thread: at a full core it is "
        "the bottleneck, and then req/s is 1/(its µs per request); below that, it waits for the others.",
        "",
        "| workload | tracer | req/s | nginx, % of a core | nginx µs/req | load µs/req | tracer µs/req "
        "| rest µs/req | machine idle % | steal % |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    cores = os.cpu_count() or 1
    limits = []
    for workload in workloads:
        _, used, _ = counted_rounds(main, workload)
        nginx_cost, nginx_shares = {}, {}
        for mode in MODES:
            rows = [r for n in used for r in used[n]
                    if r["mode"] == mode and r.get("requests") and "load_cpu_busy_s" in r]
            if not rows:
                continue

            def per_request(key):
                return median([r[key] / r["requests"] * 1e6 for r in rows if r.get(key) is not None])

            def wall(r):
                return (r["load_cpu_busy_s"] + r["load_cpu_idle_s"] + r.get("load_cpu_steal_s", 0)) / cores

            rest = median([(r["load_cpu_busy_s"] - r.get("load_cpu_nginx_s", 0) - r.get("load_cpu_tool_s", 0)
                            - r.get("load_cpu_tracer_s", 0)) / r["requests"] * 1e6 for r in rows])
            nginx_share = median([r["load_cpu_nginx_s"] / wall(r) * 100 for r in rows
                                  if r.get("load_cpu_nginx_s") is not None and wall(r)])
            nginx_cost[mode] = per_request("load_cpu_nginx_s")
            nginx_shares[mode] = nginx_share
            idle = median([r["load_cpu_idle_s"] / (wall(r) * cores) * 100 for r in rows if wall(r)])
            steal = median([r.get("load_cpu_steal_s", 0) / (wall(r) * cores) * 100 for r in rows if wall(r)])
            lines.append(
                f"| {workload} | {mode} | {fmt(median([r.get('rps') for r in rows]))} | {fmt(nginx_share)} "
                f"| {fmt(per_request('load_cpu_nginx_s'), 1)} | {fmt(per_request('load_cpu_tool_s'), 1)} "
                f"| {'–' if mode == 'none' else fmt(per_request('load_cpu_tracer_s'), 1)} | {fmt(rest, 1)} "
                f"| {fmt(idle)} | {fmt(steal, 1)} |")
        # Only where the worker is the bottleneck at the floor (a full core, within the clocks' few percent).
        floor, alone = nginx_cost.get("floor-tlstap"), nginx_cost.get("consumer")
        if floor and alone and (nginx_shares.get("floor-tlstap") or 0) >= FULL_CORE_PERCENT:
            short = {"consumer": "BPF side alone", "tlstap": "tlstap (JSON)", "tlstap-record": "tlstap record",
                     "tlstap-full": "tlstap with HTTP parsing and pcapng"}
            added = ", ".join(
                f"{name} {nginx_cost[mode] - floor:+.1f}"
                + ("" if (nginx_shares.get(mode) or 0) >= FULL_CORE_PERCENT else " (the worker below a full core)")
                for mode, name in short.items() if nginx_cost.get(mode))
            limits.append(
                f"- {workload}: with empty probes at tlstap's points nginx's worker spends {floor:.1f} µs per "
                f"request; 0.90× of that rate leaves {floor / 0.9 - floor:.1f} µs per request for everything "
                f"tlstap adds to the worker, and 0.95× {floor / 0.95 - floor:.1f} µs. Added now (µs per request): "
                f"{added}.")
    lines.append("")
    if limits:
        lines += ["What the worker's CPU per request says about the ratios to the floor at tlstap's points, where "
                  "the worker is at a full core at that floor:", ""]
        lines += limits + [""]


def server_section(results, lines):
    main = [r for r in results if r.get("phase") == "main"]
    workloads = [w for w in WORKLOAD_NAMES if any(r["workload"] == w for r in main)]
    summary = {}
    lines += [
        "### Server overhead",
        "",
        "Medians over the rounds that no other tool disturbed (rounds with another tool's tracing programs "
        "loaded are rerun and left out; all rounds count only when none was clean). Ratios are medians of "
        "the per-round ratios (each round runs the modes back to back). Tracer CPU is user + system seconds of the tracer process over the whole cell (start, "
        "load, drain); peak RSS is its maximum resident set (the ring buffer's mapping included) and, in "
        "brackets, its private memory (RssAnon) just before it was stopped.",
        "",
        "| workload | tracer | req/s | × no tracer | × floor | × floor at tlstap's points | p50 ms | p99 ms "
        "| tracer CPU s | tracer CPU µs/req | peak RSS MiB (private) | events | MB captured | lost records |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for workload in workloads:
        rounds, used, clean_rounds = counted_rounds(main, workload)
        cells = {mode: [r for n in used for r in used[n] if r["mode"] == mode] for mode in MODES}
        by_round = {n: {r["mode"]: r.get("rps") for r in cells_of_round} for n, cells_of_round in used.items()}
        summary[workload] = {"rounds": len(used), "rounds_run": len(rounds)}

        def per_round(numerator, denominator):
            values = [rounds[numerator] / rounds[denominator] for rounds in by_round.values()
                      if rounds.get(numerator) and rounds.get(denominator)]
            return median(values)

        summary[workload]["floor/none"] = per_round("floor", "none")
        for mode in ("floor-tlstap", "consumer", "tlstap", "tlstap-record", "tlstap-full"):
            summary[workload][f"{mode}/floor"] = per_round(mode, "floor")
            summary[workload][f"{mode}/floor-tlstap"] = per_round(mode, "floor-tlstap")
            summary[workload][f"{mode}/none"] = per_round(mode, "none")
        for mode in MODES:
            rows = cells[mode]
            if not rows:
                continue
            rps = median([r.get("rps") for r in rows])
            summary[workload][mode] = rps
            cpu_seconds = median([cpu(r) for r in rows])
            cpu_per_request = median([cpu(r) / r["requests"] * 1e6 for r in rows
                                      if cpu(r) is not None and r.get("requests")])
            rss = median([r.get("tracer_maxrss_kib") for r in rows])
            anon = median([r.get("RssAnon") for r in rows])
            rss_text = "–" if rss is None else f"{rss / 1024:.0f}" + ("" if anon is None else f" ({anon / 1024:.1f})")
            none_ratio = "1.00×" if mode == "none" else ratio(summary[workload][f"{mode}/none"])
            floor_ratio = {"none": "–", "floor": "1.00×"}.get(mode) or ratio(summary[workload][f"{mode}/floor"])
            placed_ratio = {"none": "–", "floor": "–", "floor-tlstap": "1.00×"}.get(mode) or ratio(
                summary[workload][f"{mode}/floor-tlstap"])
            lines.append(
                f"| {WORKLOAD_NAMES[workload]} | {MODE_NAMES[mode]} | {fmt(rps)} | {none_ratio} | {floor_ratio} "
                f"| {placed_ratio} "
                f"| {fmt(median([r.get('p50_ms') for r in rows]), 2)} | {fmt(median([r.get('p99_ms') for r in rows]), 2)} "
                f"| {fmt(cpu_seconds, 2)} | {fmt(cpu_per_request, 1)} | {rss_text} "
                f"| {fmt(median([r.get('events') for r in rows]))} "
                f"| {fmt(median([r['bytes'] / 1e6 for r in rows if 'bytes' in r]), 1)} "
                f"| {fmt(median([r.get('lost_records') for r in rows]))} |")
        lines.append(f"| ↳ medians of {len(used)} {'undisturbed ' if clean_rounds else ''}round"
                     f"{'s' if len(used) != 1 else ''} of {len(rounds)} run | | | | | | | | | | | | | |")
    lines.append("")
    return summary


def correctness_section(results, lines):
    cells = [r for r in results if r.get("mode", "").startswith("tlstap") and r.get("phase") in ("main", "soak")]
    lines += [
        "### Every byte captured?",
        "",
        "For each tlstap cell: the plaintext bytes tlstap captured from the nginx worker (sum of `len` of its "
        "JSON `data` events, per direction) against what nginx itself counted in its access log. HTTP/1.1: "
        "`$bytes_sent` is what nginx handed to SSL_write and `$request_length` what it took from SSL_read, so "
        "captured and reference must be equal. HTTP/2: nginx logs per stream, so the reference is the streams' "
        f"`$bytes_sent` plus the {H2_CONNECTION_BYTES} bytes of frames every connection sends outside streams "
        "(SETTINGS, WINDOW_UPDATE, SETTINGS ACK); it is exact for every stream that finished, but nginx "
        "undercounts streams the client abandons when h2load stops, so up to one response per connection "
        "may be captured above the reference (there is no exact reference for the in direction). Every "
        "event's base64 must be exactly as long as its `len` encodes to; the first 2,000 events are decoded, "
        "and the 1 KiB HTTP/1.1 responses compared with the file served. Cells marked *full* ran with HTTP "
        "parsing and pcapng: their `http` records are counted against the requests in nginx's access log (for "
        "HTTP/1.1 they must be equal), and their pcapng file is walked block by block (packets, and whether "
        "it ends on a whole block). Cells marked *record* ran `tlstap record`; what they count is the JSON "
        "`tlstap replay` rendered from its file after the cell. Where records were lost, the data events mark the missing bytes where they "
        "belong (`lost_bytes` inside a call, `lost_before` for whole calls before one): for HTTP/1.1, captured "
        "plus marked must equal the reference.",
        "",
        "| cell | out captured | out reference | Δ | in captured | in reference | Δ | lost (summary / JSON) "
        "| bad events | responses checked (mismatched) | http records (requests logged) | pcapng packets "
        "| verdict |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    verdict = {}
    for r in cells:
        full = r["mode"] == "tlstap-full"
        variant = {"tlstap-full": " full", "tlstap-record": " record"}.get(r["mode"], "")
        name = (f"{r['phase']} {r['workload']}{variant} r{r['round']}"
                + (" (disturbed)" if disturbed(r) else ""))
        connections = r.get("connections") or 20
        clean = r.get("lost_records", 1) == 0 and r.get("json_bad_events", 1) == 0 and r.get("body_mismatch", 0) == 0
        if full:
            clean = clean and r.get("pcapng_complete") is True and r.get("pcapng_packets", 0) > 0
            if r.get("tool") == "wrk":
                clean = clean and r.get("json_http") == r.get("logged_requests")
        if r.get("tool") == "h2load":
            out_reference = r.get("served_out", 0) + H2_CONNECTION_BYTES * connections
            in_reference = None
        else:
            out_reference = r.get("served_out")
            in_reference = r.get("served_in")
        out_delta = None if out_reference is None else r.get("captured_out", 0) - out_reference
        in_delta = None if in_reference is None else r.get("captured_in", 0) - in_reference
        # With loss on HTTP/1.1, what is missing must be exactly what the events mark as missing.
        gaps_marked = (r.get("tool") == "wrk" and r.get("lost_records", 0) > 0 and r.get("json_bad_events", 1) == 0
                       and out_delta is not None and in_delta is not None
                       and out_delta + r.get("gaps_out", 0) == 0 and in_delta + r.get("gaps_in", 0) == 0)
        if gaps_marked:
            text, ok = "records lost; every gap marked to the byte", False
        elif not clean or out_delta is None:
            text, ok = "lost or damaged", False
        elif out_delta == 0 and in_delta in (0, None):
            text, ok = "exact", True
        elif r.get("tool") == "h2load" and 0 < out_delta <= connections * (H2_LARGEST_RESPONSE + 1024):
            text, ok = "complete (+ streams abandoned at stop)", True
        else:
            text, ok = "missing bytes" if (out_delta or 0) < 0 or (in_delta or 0) < 0 else "extra bytes", False
        workload = (r["workload"] if r["phase"] == "main" else "soak") + variant
        verdict.setdefault(workload, []).append((r["round"], ok, disturbed(r), r.get("lost_records")))
        http_text = f"{fmt(r.get('json_http'))} ({fmt(r.get('logged_requests'))})" if full else "–"
        pcapng_text = (f"{fmt(r.get('pcapng_packets'))}{'' if r.get('pcapng_complete') else ' (cut short)'}"
                       if full else "–")
        lines.append(
            f"| {name} | {fmt(r.get('captured_out'))} | {fmt(out_reference)} | {fmt(out_delta)} "
            f"| {fmt(r.get('captured_in'))} | {fmt(in_reference)} | {fmt(in_delta)} "
            f"| {fmt(r.get('lost_records'))} / {fmt(r.get('json_lost_records'))} | {fmt(r.get('json_bad_events'))} "
            f"| {fmt(r.get('body_checked'))} ({fmt(r.get('body_mismatch'))}) | {http_text} | {pcapng_text} | {text} |")
    lines.append("")
    return verdict


def capacity_row(r, size, mode, first, per_event, lines):
    """One row of the capacity table; the first run of a size and mode also feeds the targets."""
    seconds = r.get("gen_seconds") or 0
    expected_events = r.get("gen_writes", 0) + r.get("gen_reads", 0)
    expected_bytes = r.get("gen_write_bytes", 0) + r.get("gen_read_bytes", 0)
    writes_per_second = r.get("gen_writes", 0) / seconds if seconds else None
    if mode == "none":
        lines.append(f"| {size:,} B | none (generator alone, {seconds:.0f} s) | {fmt(writes_per_second)} "
                     f"| ({fmt(expected_events)} calls) | ({fmt(expected_bytes / 1e6, 1)}) "
                     f"| ({fmt(expected_bytes / seconds / 1e6 if seconds else None)}) | | | | | | | | |")
        per_event.setdefault(size, {})["gen_mbps"] = expected_bytes / seconds / 1e6 if seconds else None
        return
    events = r.get("events")
    complete = events == expected_events and r.get("bytes") == expected_bytes and r.get("lost_records") == 0
    net = cpu(r)
    net_user = r.get("tracer_user_s")
    user_per_event = net_user / events * 1e6 if events and net_user is not None else None
    total_per_event = net / events * 1e6 if events and net is not None else None
    per_mb = net / (r["bytes"] / 1e6) * 1e3 if r.get("bytes") and net is not None else None
    mbps = r["bytes"] / seconds / 1e6 if seconds and "bytes" in r else None
    if first:
        per_event.setdefault(size, {})[mode] = {"user": user_per_event, "total": total_per_event,
                                                "mbps": mbps, "complete": complete, "per_mb": per_mb}
    lines.append(
        f"| {size:,} B | {mode} | {fmt(writes_per_second)} | {fmt(events)} "
        f"| {fmt(r['bytes'] / 1e6 if 'bytes' in r else None, 1)} | {fmt(mbps)} | {fmt(r.get('lost_records'))} "
        f"| {'yes' if complete else 'no'} | {fmt(r.get('tracer_user_s'), 2)} | {fmt(r.get('tracer_sys_s'), 2)} "
        f"| {fmt(user_per_event, 2)} | {fmt(total_per_event, 2)} | {fmt(per_mb, 2)} "
        f"| {fmt(r.get('tracer_stop_ms'))} |")


def marginal_cpu(cells, per_event, lines):
    """CPU per event without start and stop: two 1 KiB runs of different lengths, per tracer."""
    marginal = {}
    for mode in ("consumer", "tlstap", "tlstap-record"):
        runs = sorted((r for r in cells if r["size"] == 1024 and r["mode"] == mode and r.get("rate") == "0"
                       and r.get("count", 0) > 1 and cpu(r) is not None and r.get("events")),
                      key=lambda r: r["count"])
        if len(runs) < 2 or runs[-1]["events"] <= runs[0]["events"]:
            continue
        small, large = runs[0], runs[-1]
        extra = large["events"] - small["events"]
        marginal[mode] = {"user": (large["tracer_user_s"] - small["tracer_user_s"]) / extra * 1e6,
                          "total": (cpu(large) - cpu(small)) / extra * 1e6, "extra": extra}
    if not marginal:
        return
    per_event.setdefault(1024, {})["marginal"] = marginal
    lines.append("CPU per event without start and stop, 1 KiB writes: the difference in the tracer's CPU between "
                 "the long and the short run, over the difference in events (`/usr/bin/time` counts in 10 ms "
                 "steps, so a cost below about 0.03 µs/event reads as 0):")
    lines.append("")
    for mode, m in marginal.items():
        lines.append(f"- {mode}: user {m['user']:.2f} µs/event, user + system {m['total']:.2f} µs/event "
                     f"(over {m['extra']:,} more events)")
    lines.append("")


def capacity_section(results, lines):
    cells = [r for r in results if r.get("phase") == "capacity"]
    if not cells:
        return {}
    idle = {r["mode"]: cpu(r) or 0.0 for r in cells if r.get("count") == 1}
    lines += [
        "### Pipeline capacity",
        "",
        "`bench/capacity/gen` makes SSL_write calls of the given size to an in-process TLS server that "
        "SSL_reads them back (memory BIO pair; a 256 KiB write is read as 16 records of 16 KiB), so every "
        "write is captured twice: out and in. Each traced run is the same fixed count of writes. "
        "*consumer* is `bench/capacity/consumer`: tlstap's own BPF programs and attach, a libbpf ring buffer "
        "callback that only counts. *tlstap-record* is `tlstap record`: the ring buffer's pages written to a "
        "file with direct I/O as they lie, no record copied or decoded; its counts come from `tlstap replay` of that file afterwards, "
        "rendered as tlstap's JSON and checked the same way. CPU per event is the tracer's CPU for the whole run (start and stop "
        "included: an idle run, start, one write, stop, took consumer "
        f"{idle.get('consumer', 0):.2f} s, tlstap {idle.get('tlstap', 0):.2f} s, tlstap record "
        f"{idle.get('tlstap-record', 0):.2f} s; subtracting it was tried and gave "
        "negative numbers, as the idle run can cost more than a loaded one) divided by the events (calls; a "
        "256 KiB write is one event of 16 records). Payload MB/s = bytes "
        "captured / the generator's run time; drain = time from SIGINT to the tracer's exit (draining, and "
        "detaching every probe: on this 6.6+ kernel the uprobes are uprobe_multi links and the rest tracepoints, detached at once).",
        "",
        "| write size | tracer | gen writes/s | events | payload MB | payload MB/s | lost records "
        "| complete | CPU user s | CPU sys s | user µs/event | total µs/event | total ms/MB | drain ms |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    per_event = {}
    for size in sorted({r["size"] for r in cells if r.get("count", 0) > 1 and r.get("rate") == "0"}):
        for mode in ("none", "consumer", "tlstap", "tlstap-record"):
            rows = sorted((r for r in cells if r["size"] == size and r["mode"] == mode and r.get("rate") == "0"
                           and r.get("count", 0) > 1), key=lambda r: r["count"])
            for index, r in enumerate(rows):
                capacity_row(r, size, mode, index == 0, per_event, lines)
    lines.append("")
    marginal_cpu(cells, per_event, lines)
    paced = sorted((r for r in cells if r.get("rate") not in (None, "0")), key=lambda r: float(r["rate"]))
    ladder = []
    if paced:
        lines += [
            "Paced large writes (256 KiB), tlstap: the generator writes at a fixed rate for a few seconds; "
            "payload is out + in, twice the write rate.",
            "",
            "| offered payload MB/s | achieved payload MB/s | captured MB | lost records (MB) | complete "
            "| tlstap CPU s | drain ms |",
            "| ---: | ---: | ---: | ---: | --- | ---: | ---: |",
        ]
        for r in paced:
            seconds = r.get("gen_seconds") or 0
            expected = r.get("gen_write_bytes", 0) + r.get("gen_read_bytes", 0)
            achieved = expected / seconds / 1e6 if seconds else None
            complete = r.get("bytes") == expected and r.get("lost_records") == 0
            ladder.append((2 * float(r["rate"]), achieved, complete))
            lines.append(f"| {2 * float(r['rate']):,.0f} | {fmt(achieved)} | {fmt(r.get('bytes', 0) / 1e6, 1)} "
                         f"| {fmt(r.get('lost_records'))} ({fmt(r.get('lost_bytes', 0) / 1e6, 1)}) "
                         f"| {'yes' if complete else 'no'} | {fmt(cpu(r), 2)} | {fmt(r.get('tracer_stop_ms'))} |")
        lines.append("")
    per_event["ladder"] = ladder
    return per_event


def runs(values):
    """`a, b ×3, c`: a series with repeats folded."""
    folded = []
    for value in values:
        if folded and folded[-1][0] == value:
            folded[-1][1] += 1
        else:
            folded.append([value, 1])
    return ", ".join(f"{value} ×{count}" if count > 1 else f"{value}" for value, count in folded)


def soak_section(results, cells_dir, lines):
    soak = [r for r in results if r.get("phase") == "soak"]
    if not soak:
        return None
    r = soak[0]
    samples = []
    for path in glob.glob(os.path.join(cells_dir, "soak-*", "rss-samples.txt")):
        with open(path) as file:
            for line in file:
                values = dict(re.findall(r"(\w+): (\d+) kB", line))
                if values:
                    sample = {key: int(value) for key, value in values.items()}
                    sample["maps"] = {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", line)}
                    samples.append(sample)
    max_rss = max((s.get("VmRSS", 0) for s in samples), default=None)
    max_anon = max((s.get("RssAnon", 0) for s in samples), default=None)
    anon_series = runs(f"{s.get('RssAnon', 0) / 1024:.1f}" for s in samples)
    map_names = [name for name in ("sockets", "ssl_fds", "tls_calls", "pending_connect", "mapped_files")
                 if any(name in s["maps"] for s in samples)]
    map_series = "; ".join(
        f"{name}: " + runs(str(s["maps"].get(name, "?")) for s in samples) for name in map_names)
    shortened = "" if int(r.get("seconds") or 0) >= 600 else "; a shortened version of the issue's 10 minutes"
    lines += [
        "### Memory with 1,000 connections",
        "",
        f"tlstap on nginx's worker while wrk holds 1,000 keep-alive connections for {r.get('seconds')} s "
        f"(1 KiB responses{shortened}). RSS and BPF map entries sampled every 5 s.",
        "",
        f"- {fmt(r.get('rps'))} req/s, p99 {fmt(r.get('p99_ms'), 1)} ms; {fmt(r.get('events'))} events, "
        f"{fmt(r.get('bytes', 0) / 1e6, 1)} MB captured, {fmt(r.get('lost_records'))} records lost; "
        f"out captured {fmt(r.get('captured_out'))} of {fmt(r.get('served_out'))} bytes served",
        f"- peak RSS (VmHWM at the end / /usr/bin/time): {fmt((r.get('VmHWM') or 0) / 1024, 1)} / "
        f"{fmt((r.get('tracer_maxrss_kib') or 0) / 1024, 1)} MiB; largest sample VmRSS "
        f"{fmt((max_rss or 0) / 1024, 1)} MiB, of which private (RssAnon) at most {fmt((max_anon or 0) / 1024, 1)} MiB",
        f"- RssAnon samples, MiB (×N: N samples in a row): {anon_series}",
        f"- BPF map entries per sample (×N: N samples in a row): {map_series or 'not sampled'}",
        "",
    ]
    return {"hwm": r.get("tracer_maxrss_kib"), "anon": max_anon, "lost": r.get("lost_records"), "seconds": r.get("seconds")}


def profile_section(results, cells_dir, summary, lines):
    cells = [r for r in results if r.get("phase") == "profile"]
    if not cells:
        return
    lines += [
        "### Where the time goes",
        "",
        "Profile cells (one each, same load, with `kernel.bpf_stats_enabled=1`, which adds a little to every "
        "program run): the BPF programs the tracer loaded, with `bpftool prog show`'s run counts and run time, "
        "per request of the load (programs that never ran are left out; uprobes show as type kprobe, "
        "tracepoints fire for every process on the host).",
        "",
        "| workload | tracer | program | type | runs | runs/request | avg ns/run | BPF µs/request |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    hits = {}
    programs_of = {}
    for r in cells:
        folder = os.path.join(cells_dir, f"profile-{r['workload']}-{r['mode']}-1")
        try:
            with open(os.path.join(folder, "bpf_before.json")) as file:
                before = {p["id"] for p in json.load(file)}
            with open(os.path.join(folder, "bpf_after.json")) as file:
                after = json.load(file)
        except (OSError, ValueError):
            continue
        requests = r.get("requests") or 0
        total_runs = 0
        for program in after:
            if program["id"] in before:
                continue
            runs = program.get("run_cnt", 0)
            run_ns = program.get("run_time_ns", 0)
            programs_of.setdefault((r["workload"], r["mode"]), {})[program["name"]] = (runs, run_ns)
            if program.get("type") == "kprobe":  # uprobes; tracepoints also fire for other processes
                total_runs += runs
            if runs == 0 or r["mode"] == "consumer":
                continue
            lines.append(
                f"| {r['workload']} | {r['mode']} | {program['name']} | {program.get('type')} | {runs:,} "
                f"| {runs / requests if requests else 0:.2f} | {run_ns / runs if runs else 0:,.0f} "
                f"| {run_ns / requests / 1e3 if requests else 0:.2f} |")
        hits[(r["workload"], r["mode"])] = total_runs / requests if requests else None
    lines.append("")
    alone = [r for r in cells if r["mode"] == "consumer"]
    if alone:
        lines += [
            "**The BPF side alone.** *consumer* is the bare consumer (`bench/capacity/consumer`) on tlstap's "
            "own programs: the same uprobes, tracepoints, copies and ring buffer, and nothing done in "
            "user space but counting. Same profile conditions as above (bpf_stats on, which slows every "
            "program run); one cell each, so noisier than the medians of the server table, whose *BPF side "
            "alone* rows run without bpf_stats.",
            "",
            "| workload | tracer | req/s | × floor | return probes, avg ns/run | tracer CPU s | events | lost records |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for workload in ("h1-1k", "h1-64k"):
            floor = next((r.get("rps") for r in cells if r["workload"] == workload and r["mode"] == "floor"), None)
            for mode in ("floor", "tlstap", "consumer"):
                r = next((r for r in cells if r["workload"] == workload and r["mode"] == mode), None)
                if not r:
                    continue
                programs = programs_of.get((workload, mode), {})
                exits = [programs[name] for name in ("probe_ssl_write_exit", "probe_ssl_read_exit", "floor_exit")
                         if name in programs]
                runs = sum(runs for runs, _ in exits)
                average = sum(ns for _, ns in exits) / runs if runs else None
                lines.append(
                    f"| {workload} | {mode} | {fmt(r.get('rps'))} "
                    f"| {ratio(r['rps'] / floor) if floor and r.get('rps') else '–'} | {fmt(average)} "
                    f"| {fmt(cpu(r), 2)} | {fmt(r.get('events'))} | {fmt(r.get('lost_records'))} |")
        lines.append("")
    estimates = []
    for workload in ("h1-1k", "h1-64k"):
        s = summary.get(workload, {})
        per_request = hits.get((workload, "floor"))
        for floor_mode, where in (("floor", "on OpenSSL's API functions (their first instruction single-stepped)"),
                                  ("floor-tlstap", "at tlstap's probe points (emulated instructions)")):
            if s.get("none") and s.get(floor_mode) and per_request:
                extra_us = (1 / s[floor_mode] - 1 / s["none"]) * 1e6
                estimates.append(
                    f"- {workload}: {per_request:.1f} probe hits per request; empty probes {where} add "
                    f"{extra_us:.1f} µs per request to nginx's loop (1/req/s), about "
                    f"{extra_us / per_request:.1f} µs per probe hit, before any program work.")
        if s.get("floor-tlstap") and s.get("tlstap"):
            estimates.append(
                f"- {workload}: tlstap adds {(1 / s['tlstap'] - 1 / s['floor-tlstap']) * 1e6:.1f} µs per request "
                "on top of empty probes at its own probe points (its programs' run time above, plus contention: "
                "nginx, wrk and tlstap share 2 cores).")
    if estimates:
        lines += ["Estimated from the medians above:", ""] + estimates + [""]
    for r in cells:
        if r["mode"] != "tlstap":
            continue
        folder = os.path.join(cells_dir, f"profile-{r['workload']}-{r['mode']}-1")
        for name, title, limit in (("perf-dso.txt", "by binary", 12), ("perf.txt", "by symbol", 30)):
            try:
                with open(os.path.join(folder, name)) as file:
                    text = [line.rstrip()[:150] for line in file if line.strip() and not line.startswith("#")]
            except OSError:
                continue
            if text:
                lines += [f"perf, tlstap's samples {title}, {r['workload']} (`perf record -e cpu-clock -F 999`; "
                          "self time):", "", "```"] + text[:limit] + ["```", ""]


def targets_section(summary, verdict, capacity, soak, lines):
    lines += ["### Targets of the issue", ""]

    def status(ok):
        return "**met**" if ok else "**not met**"

    for workload in ("h1-1k", "h1-64k"):
        s = summary.get(workload)
        if not s:
            continue
        ratio_value = s.get("tlstap/floor")
        outcomes = verdict.get(workload, [])
        clean = [ok for _, ok, was_disturbed, _ in outcomes if not was_disturbed]
        noisy = [ok for _, ok, was_disturbed, _ in outcomes if was_disturbed]
        others = [f"round {n}: {fmt(lost)} records lost{' (disturbed)' if was_disturbed else ''}"
                  for n, ok, was_disturbed, lost in outcomes if not ok]
        judged = clean or noisy
        lines.append(
            f"- Throughput ≥ 0.95× the floor, {WORKLOAD_NAMES[workload]}: {ratio(ratio_value)} "
            f"({fmt(s.get('tlstap'))} vs {fmt(s.get('floor'))} req/s, medians of {s.get('rounds')} round{'s' if s.get('rounds') != 1 else ''}) — "
            f"{status(ratio_value and ratio_value >= 0.95)}; against the floor at tlstap's own probe points "
            f"(empty programs where tlstap attaches): {ratio(s.get('tlstap/floor-tlstap'))} "
            f"({fmt(s.get('floor-tlstap'))} req/s); zero loss and every byte captured: in "
            f"{sum(clean)} of {len(clean)} undisturbed tlstap cells (and {sum(noisy)} of {len(noisy)} disturbed) — "
            f"{status(judged and all(judged))}" + (f" (not in {'; '.join(others)})" if others else "") + "."
            + (f" `tlstap record`: {ratio(s.get('tlstap-record/floor'))} the floor, "
               f"{ratio(s.get('tlstap-record/floor-tlstap'))} the floor at tlstap's points "
               f"({fmt(s.get('tlstap-record'))} req/s)." if s.get("tlstap-record") else ""))
    one_k = capacity.get(1024, {})
    if one_k.get("tlstap") and one_k.get("consumer"):
        t, c = one_k["tlstap"], one_k["consumer"]
        user_ratio = t["user"] / c["user"] if t["user"] and c["user"] else None
        total_ratio = t["total"] / c["total"] if t["total"] and c["total"] else None
        lines.append(
            f"- Pipeline, user-space CPU per event ≤ 2× the bare consumer's at 1 KiB: user time "
            f"{fmt(t['user'], 2)} vs {fmt(c['user'], 2)} µs/event = {ratio(user_ratio)} — "
            f"{status(user_ratio is not None and user_ratio <= 2)}; user + system "
            f"{fmt(t['total'], 2)} vs {fmt(c['total'], 2)} µs/event = {ratio(total_ratio)} — "
            f"{status(total_ratio is not None and total_ratio <= 2)} (whole runs, start and stop included).")
    marginal = one_k.get("marginal", {})
    if "tlstap" in marginal and "consumer" in marginal:
        t, c = marginal["tlstap"], marginal["consumer"]
        met = c["total"] > 0 and t["total"] <= 2 * c["total"]
        lines.append(
            f"- The same without start and stop (long run minus short run): tlstap user {t['user']:.2f}, "
            f"user + system {t['total']:.2f} µs/event; the bare consumer user {c['user']:.2f}, user + system "
            f"{c['total']:.2f} µs/event — {status(met)}: the consumer does no work per record beyond counting it, "
            "so 2× its cost leaves no room for rendering and writing a kilobyte of JSON.")
    if "tlstap-record" in marginal and "consumer" in marginal:
        t, c = marginal["tlstap-record"], marginal["consumer"]
        user_ratio = t["user"] / c["user"] if c["user"] > 0 else None
        total_ratio = t["total"] / c["total"] if c["total"] > 0 else None
        lines.append(
            f"- The same for `tlstap record` (the ring buffer's pages written to the file as they lie, no "
            f"record copied or decoded; rendered later by `tlstap replay`): user {t['user']:.2f} µs/event = {ratio(user_ratio)} the consumer's — "
            f"{status(user_ratio is not None and user_ratio <= 2)}; user + system {t['total']:.2f} µs/event = "
            f"{ratio(total_ratio)} — {status(total_ratio is not None and total_ratio <= 2)}.")
    big = capacity.get(262144, {})
    ladder = capacity.get("ladder", [])
    # The generator paces itself to within a fraction of a percent of the
    # offered rate (a run offered 500 came out just under it): a complete run that
    # achieved 99% of its offer counts as that offer.
    best = max((offered if achieved >= 0.99 * offered else achieved
                for offered, achieved, complete in ladder if complete and achieved), default=None)
    if big or ladder:
        consumer = big.get("consumer", {})
        tlstap = big.get("tlstap", {})
        generator = big.get("gen_mbps")
        lines.append(
            f"- Sustained capture without loss of ≥ 500 MB/s of payload in large writes (256 KiB): tlstap's "
            f"highest paced rate captured in full (achieved within 1% of the offer, no loss) {fmt(best)} MB/s; unpaced, tlstap {fmt(tlstap.get('mbps'))} MB/s "
            f"({'complete' if tlstap.get('complete') else 'with loss'}), the bare consumer {fmt(consumer.get('mbps'))} "
            f"MB/s ({'complete' if consumer.get('complete') else 'with loss'}); the generator alone, untraced, "
            f"{fmt(generator)} MB/s — {status(best is not None and best >= 500)}.")
    if soak:
        lines.append(
            f"- RSS < 100 MiB with 1,000 connections ({soak['seconds']} s): peak RSS {fmt((soak['hwm'] or 0) / 1024, 1)} MiB "
            f"— {status((soak['hwm'] or 1e12) < 100 * 1024)}; private memory (RssAnon) at most "
            f"{fmt((soak['anon'] or 0) / 1024, 1)} MiB — {status((soak['anon'] or 1e12) < 100 * 1024)}.")
    lines.append("")


def overhead_section(results, lines):
    """`tlstap -- true`'s wall time and what an untraced process pays per syscall."""
    cells = [r for r in results if r.get("phase") == "overhead"]
    if not cells:
        return {}
    lines += ["### Stopping, and what untraced processes pay", ""]
    exits = [r["seconds"] for r in cells if r["kind"] == "exit-true"]
    found = {}
    if exits:
        found["exit"] = median(exits)
        lines.append(f"`tlstap -- true` (start, attach, run, drain, detach): median {median(exits):.2f} s "
                     f"({min(exits):.2f}–{max(exits):.2f}, {len(exits)} runs).")
        lines.append("")
    syscalls = [r for r in cells if r["kind"] == "syscall"]
    if syscalls:
        lines += ["`dd if=/dev/zero of=/dev/null bs=1 count=1000000` (2,000,000 syscalls), a process tlstap does "
                  "not trace, with no tracer and while tlstap traces an idle process in the given "
                  "scope; *as on 6.1* is tlstap with `TLSTAP_KERNEL_WITHOUT=socket_tracepoints`, hooking the raw "
                  "tracepoint sys_enter as on kernels before 6.3 (and with --plaintext); the last row is only an "
                  "empty program on sys_enter (`floor -s`, no tlstap) (alternating, medians of 3):", "",
                  "| scope | dd seconds | no tracer | cost per syscall |", "|---|---|---|---|"]
        untraced, traced = by_scope(syscalls, "seconds")
        base = median(untraced)
        costs = {}
        for scope, seconds in traced.items():
            costs[scope] = (seconds - base) / 2_000_000 * 1e9
            lines.append(f"| {scope_label(scope)} | {seconds:.2f} | {base:.2f} | {costs[scope]:.0f} ns |")
        found["syscall"] = costs
        # The spread of dd's own time with no tracer, per syscall: what "within noise" means here.
        found["noise"] = (max(untraced) - min(untraced)) / 2_000_000 * 1e9
        lines.append("")
    sockcalls = [r for r in cells if r["kind"] == "sockcall" and r.get("ns")]
    if sockcalls:
        untraced, traced = by_scope(sockcalls, "ns")
        rounds = sum(1 for r in sockcalls if r["scope"] == next(iter(traced)))
        lines += ["dd's syscalls reach no socket tracepoint. Socket calls: `bench/syscalls/sockpair` writes a byte "
                  "on one end of a Unix socket pair and reads it on the other, 300,000 times, and prints its time per "
                  "syscall; with no tracer and in each scope as above, the last two rows with only empty programs on "
                  "the socket tracepoints (`floor -k`) and with sockpair itself in tlstap's scope "
                  "(`tlstap -- sockpair`: what tracing host-wide costs every socket call of a process that speaks no "
                  f"TLS) (alternating, medians of {rounds}):", "",
                  "| scope | ns per socket call | no tracer | cost per socket call |", "|---|---:|---:|---:|"]
        base = median(untraced)
        costs = {}
        for scope, ns in traced.items():
            costs[scope] = ns - base
            lines.append(f"| {scope_label(scope)} | {ns:.0f} | {base:.0f} | {costs[scope]:.0f} ns |")
        found["sockcall"] = costs
        found["socknoise"] = max(untraced) - min(untraced)
        lines += ["", f"sockpair's own spread with no tracer: {found['socknoise']:.0f} ns per socket call "
                  f"({len(untraced)} runs).", ""]
    neighbour = [r for r in cells if r["kind"] == "neighbour" and r.get("rate")]
    if neighbour:
        # Each traced run follows a run with no tracer, its pair.
        pairs, untraced = {}, None
        for r in neighbour:
            if r["scope"] == "none":
                untraced = r["rate"]
            elif untraced:
                pairs.setdefault(r["scope"], []).append((untraced, r["rate"]))
                untraced = None
        rounds = max(len(p) for p in pairs.values()) if pairs else 0
        base = [r["rate"] for r in neighbour if r["scope"] == "none"]
        lines += ["An untraced neighbour: a plaintext `redis-server` on 127.0.0.1 under "
                  "`redis-benchmark -t get -c 20 -n 200000`, while tlstap traces nginx's (idle) "
                  "worker (and so as on 6.1), with only the empty sys_enter hook, with only the empty socket "
                  "tracepoints, and with redis itself in tlstap's scope (what tracing host-wide costs a server that "
                  f"speaks no TLS). Each run follows one with no tracer, its pair; {rounds} rounds over the scopes. "
                  "× no tracer is the median of the pairs' ratios (redis-benchmark's own rate drifts by more "
                  "between rounds); GET/s are medians, the range the lowest and highest run:", "",
                  "| tracer | GET/s | range | its pairs with no tracer | × no tracer |",
                  "|---|---:|---:|---:|---:|"]
        lines.append(f"| no tracer (every pair) | {median(base):,.0f} | {min(base):,.0f}–{max(base):,.0f} | | |")
        for scope, runs in pairs.items():
            rates = [rate for _, rate in runs]
            ratio = median([rate / before for before, rate in runs])
            lines.append(f"| {scope_label(scope)} | {median(rates):,.0f} | {min(rates):,.0f}–{max(rates):,.0f} | "
                         f"{median([before for before, _ in runs]):,.0f} | {ratio:.2f}× |")
            if scope == "-p WORKER":
                found["neighbour"] = ratio
        lines.append("")
    return found


def by_scope(cells, field):
    """The untraced runs' values of `field`, and each traced scope's median, in the order first run."""
    untraced = [r[field] for r in cells if r["scope"] == "none"]
    scopes = dict.fromkeys(r["scope"] for r in cells if r["scope"] != "none")
    return untraced, {scope: median([r[field] for r in cells if r["scope"] == scope]) for scope in scopes}


def scope_label(scope):
    """How a scope of the overhead cells reads in a table."""
    if scope == "hooks":
        return "an empty program on sys_enter (`floor -s`)"
    if scope == "sockhooks":
        return "empty programs on the socket tracepoints (`floor -k`)"
    if scope == "in scope":
        return "`tlstap -- sockpair` (in scope, no TLS)"
    if scope == "-p REDIS":
        return "`tlstap -p REDIS` (redis in scope, no TLS)"
    if scope.startswith("sys_enter "):
        return f"`tlstap {scope.removeprefix('sys_enter ')}` as on 6.1"
    return f"`tlstap {scope}`"


def write_report(args):
    with open(args.results) as file:
        results = [json.loads(line) for line in file if line.strip()]
    lines = [BEGIN, "", "## Results", ""]
    lines += [f"Written by `bench/run` on {command_output(['date', '-u', '+%Y-%m-%d %H:%M UTC'])} in "
              f"{args.elapsed} s ({args.settings}).", ""]
    lines += machine(args.tlstap)
    if args.other_tracers and args.other_tracers != "0":
        lines.append(f"- Warning: {args.other_tracers} uprobe programs of another tlstap or floor were loaded "
                     "when the run started; they may have slowed the traced processes.")
    disturbed = [r for r in results if r.get("others_before") or r.get("others_after")]
    if disturbed:
        names = ", ".join(f"{r.get('phase')} {r.get('workload') or r.get('size')} {r.get('mode')} r{r.get('round', 1)}"
                          for r in disturbed)
        lines.append(f"- Other tools' tracing BPF programs were loaded around {len(disturbed)} cells (their uprobes "
                     f"or tracepoints may have slowed those cells): {names}")
    else:
        lines.append("- No other tool's tracing BPF program was loaded before or after any cell.")
    lines.append("")
    body = []
    summary = server_section(results, body)
    cpu_section(results, body)
    verdict = correctness_section(results, body)
    capacity = capacity_section(results, body)
    soak = soak_section(results, args.cells, body)
    profile_section(results, args.cells, summary, body)
    overhead = overhead_section(results, body)
    targets = []
    targets_section(summary, verdict, capacity, soak, targets)
    if "exit" in overhead:
        targets.insert(-1, f"- `tlstap -- true` under 0.5 s: median {overhead['exit']:.2f} s — "
                       f"{'**met**' if overhead['exit'] < 0.5 else '**not met**'}.")
    if "neighbour" in overhead:
        targets.insert(-1, f"- An untraced redis keeps ≥ 0.98× of its rate while tlstap traces nginx's worker: "
                       f"{overhead['neighbour']:.2f}× — {'**met**' if overhead['neighbour'] >= 0.98 else '**not met**'}.")
    if "syscall" in overhead:
        scoped = {k: v for k, v in overhead["syscall"].items() if k != "hooks" and not k.startswith("sys_enter ")}
        costs = ", ".join(f"{scope_label(k)} {v:.0f} ns" for k, v in scoped.items())
        within = all(v <= overhead["noise"] for v in scoped.values())
        targets.insert(-1, f"- An untraced process's cost per syscall within the noise of no tracer (dd's spread "
                       f"there: {overhead['noise']:.0f} ns per syscall): {costs} — "
                       f"{'**met**' if within else '**not met**'}.")
    if "sockcall" in overhead:
        untraced = {k: v for k, v in overhead["sockcall"].items()
                    if k not in ("hooks", "sockhooks", "in scope") and not k.startswith("sys_enter ")}
        costs = ", ".join(f"{scope_label(k)} {v:.0f} ns" for k, v in untraced.items())
        within = all(v <= overhead["socknoise"] for v in untraced.values())
        floor = overhead["sockcall"].get("sockhooks")
        floor_text = f"; empty programs on the same tracepoints {floor:.0f} ns" if floor is not None else ""
        targets.insert(-1, f"- The same per socket call (sockpair's spread: {overhead['socknoise']:.0f} ns): {costs}"
                       f"{floor_text} — {'**met**' if within else '**not met**'}.")
    lines += targets + body + [END]
    section = "\n".join(lines) + "\n"
    if args.report == "-":
        sys.stdout.write(section)
        return
    text = ""
    if os.path.exists(args.report):
        with open(args.report) as file:
            text = file.read()
    start, end = text.find(BEGIN), text.find(END)
    if start >= 0 and end > start:
        text = text[:start] + section + text[end + len(END) + 1:]
    else:
        text = text + ("\n" if text and not text.endswith("\n") else "") + section
    with open(args.report, "w") as file:
        file.write(text)
    print(section, end="")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--line", action="store_true")
    parser.add_argument("--results")
    parser.add_argument("--cells")
    parser.add_argument("--report", default="BENCHMARKS.md")
    parser.add_argument("--elapsed", default="?")
    parser.add_argument("--tlstap", default="tlstap")
    parser.add_argument("--settings", default="")
    parser.add_argument("--other-tracers", default="0")
    args = parser.parse_args()
    if args.line:
        for line in sys.stdin:
            if line.strip():
                print(progress_line(json.loads(line)), file=sys.stderr)
        return
    write_report(args)


if __name__ == "__main__":
    main()
