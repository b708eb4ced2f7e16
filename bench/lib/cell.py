#!/usr/bin/env python3
"""Turns the raw files of one benchmark cell into one JSON line.

bench/run leaves in a cell's folder what the load tool, nginx, the tracer and
/usr/bin/time wrote; this reads them, counts what tlstap captured (the JSON
Lines file is read once and then deleted by bench/run, it can be gigabytes),
and appends one JSON object to the results file.

    cell.py server DIR RESULTS key=value...   an nginx cell
    cell.py capacity DIR RESULTS key=value... a generator cell
"""
import base64
import json
import os
import re
import struct
import sys

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def read(path, default=""):
    try:
        with open(path, errors="replace") as file:
            return file.read()
    except FileNotFoundError:
        return default


def parse_wrk(text):
    """Requests/s, latency percentiles in ms and counts from `wrk --latency`."""
    out = {}
    match = re.search(r"Requests/sec:\s+([\d.]+)", text)
    out["rps"] = float(match.group(1)) if match else None
    match = re.search(r"(\d+) requests in ([\d.]+)(\w+),\s+([\d.]+)(\w+) read", text)
    if match:
        out["requests"] = int(match.group(1))
    for percent in ("50", "99"):
        match = re.search(r"^\s+" + percent + r"%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
        out["p" + percent + "_ms"] = float(match.group(1)) * UNITS[match.group(2)] if match else None
    errors = 0
    match = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if match:
        errors += sum(int(group) for group in match.groups())
    match = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if match:
        errors += int(match.group(1))
    out["errors"] = errors
    return out


def parse_h2load(text, log_path):
    """Requests/s, exact plaintext bytes received, and percentiles from --log-file."""
    out = {}
    match = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", text)
    out["rps"] = float(match.group(1)) if match else None
    match = re.search(r"traffic: \S+ \((\d+)\) total", text)
    out["client_bytes_in"] = int(match.group(1)) if match else None
    match = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                      r"(\d+) errored, (\d+) timeout", text)
    if match:
        out["requests"] = int(match.group(4))
        out["errors"] = int(match.group(5)) + int(match.group(6)) + int(match.group(7))
    durations = []
    for line in read(log_path).splitlines():
        fields = line.split("\t")
        if len(fields) >= 3 and fields[1] == "200":
            durations.append(int(fields[2]) / 1000.0)
    durations.sort()
    for percent in (50, 99):
        index = min(len(durations) - 1, int(len(durations) * percent / 100))
        out["p%d_ms" % percent] = durations[index] if durations else None
    return out


def parse_access_log(path):
    """Plaintext bytes nginx wrote ($bytes_sent) and read ($request_length)."""
    sent = received = lines = 0
    for line in read(path).splitlines():
        fields = line.split()
        if len(fields) >= 2:
            sent += int(fields[0])
            received += int(fields[1])
            lines += 1
    return {"served_out": sent, "served_in": received, "logged_requests": lines}


def parse_time(path):
    """`/usr/bin/time -f '%e %U %S %M'`: wall, user, sys seconds, max RSS in KiB."""
    numbers = read(path).split()
    if len(numbers) < 4:
        return {}
    try:
        wall, user, system, rss = (float(value) for value in numbers[-4:])
    except ValueError:
        return {}
    return {"tracer_wall_s": wall, "tracer_user_s": user, "tracer_sys_s": system, "tracer_maxrss_kib": rss}


def parse_status(path):
    """VmHWM, VmRSS, RssAnon, RssFile of the tracer, sampled just before it was stopped."""
    out = {}
    for line in read(path).splitlines():
        name, _, value = line.partition(":")
        if name in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem"):
            out[name] = int(value.split()[0])
    return out


def process_ticks(stat_line):
    """utime + stime of a /proc/PID/stat line, in clock ticks (fields after the command's closing bracket)."""
    fields = stat_line[stat_line.rfind(")") + 2:].split()
    return int(fields[11]) + int(fields[12]) if len(fields) > 12 else None


def parse_cpu_samples(folder):
    """Where the machine's CPU went while the load ran, from bench/run's samples around it.

    Seconds of CPU of nginx's worker (its BPF programs run in its context, so
    they count there), of the load tool (/usr/bin/time), of the tracer, and
    of the whole machine (busy, idle, softirq and the hypervisor's steal, from
    /proc/stat's first line).
    """
    samples = []
    for name in ("cpu-start.txt", "cpu-end.txt"):
        sample = {}
        for line in read(os.path.join(folder, name)).splitlines():
            kind, _, rest = line.partition(" ")
            if kind == "cpu":
                # user nice system idle iowait irq softirq steal
                user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in rest.split()[:8])
                sample.update(busy=user + nice + system + irq + softirq, idle=idle + iowait, softirq=softirq,
                              steal=steal)
            elif kind in ("nginx", "tracer") and rest:
                sample[kind] = process_ticks(rest)
        samples.append(sample)
    start, end = samples
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for key in ("busy", "idle", "softirq", "steal", "nginx", "tracer"):
        if start.get(key) is not None and end.get(key) is not None:
            out[f"load_cpu_{key}_s"] = (end[key] - start[key]) / tick
    numbers = read(os.path.join(folder, "load-time.txt")).split()
    try:
        out["load_cpu_tool_s"] = float(numbers[-2]) + float(numbers[-1])
    except (IndexError, ValueError):
        pass
    return out


SUMMARY = re.compile(r"tlstap: (\d+) events, (\d+) bytes captured, (\d+) records lost \((\d+) bytes\)")
CONSUMER = re.compile(r"consumer: records=(\d+) calls=(\d+) bytes=(\d+) lost_records=(\d+) lost_bytes=(\d+)")
DATA_FIELD = b',"data":"'


def parse_tracer_output(stderr_text):
    out = {}
    match = SUMMARY.search(stderr_text)
    if match:
        out.update(events=int(match.group(1)), bytes=int(match.group(2)), lost_records=int(match.group(3)),
                   lost_bytes=int(match.group(4)))
    match = CONSUMER.search(stderr_text)
    if match:
        out.update(records=int(match.group(1)), events=int(match.group(2)), bytes=int(match.group(3)),
                   lost_records=int(match.group(4)), lost_bytes=int(match.group(5)))
    return out


def count_jsonl(path, pid, body):
    """Sums `len` per direction of one PID's data events, and checks each event.

    Also sums, per direction, the bytes the events mark as lost (`lost_bytes`
    inside a call, `lost_before` whole calls before it).

    Every line must parse as far as its `data` field, and the base64 text
    must be exactly as long as `len` bytes encode to; the first 2,000 events
    are also decoded. With `body` (the file nginx served), the out events of
    a keep-alive HTTP/1.1 response of that size must end with it.
    """
    out = {"captured_out": 0, "captured_in": 0, "json_events": 0, "json_lost_records": 0, "json_lost_bytes": 0,
           "json_bad_events": 0, "json_other_pid": 0, "body_checked": 0, "body_mismatch": 0, "json_http": 0,
           "gaps_out": 0, "gaps_in": 0}
    if not os.path.exists(path):
        return out
    with open(path, "rb") as file:
        for line in file:
            if line.startswith(b'{"event":"lost"'):
                record = json.loads(line)
                out["json_lost_records"] += record.get("records", 0)
                out["json_lost_bytes"] += record.get("bytes", 0)
                continue
            if line.startswith(b'{"event":"http"'):
                out["json_http"] += 1
                continue
            if not line.startswith(b'{"event":"data"'):
                continue
            split = line.find(DATA_FIELD, 0, 2000)
            if split < 0:
                out["json_bad_events"] += 1
                continue
            try:
                fields = json.loads(line[:split] + b"}")
            except ValueError:
                out["json_bad_events"] += 1
                continue
            out["json_events"] += 1
            if fields.get("pid") != pid:
                out["json_other_pid"] += 1
                continue
            length = fields.get("len", 0)
            delivered = length - fields.get("lost_bytes", 0)
            direction = fields.get("dir")
            data = line[split + len(DATA_FIELD):].rstrip(b"\n")
            if not data.endswith(b'"}'):
                out["json_bad_events"] += 1
                continue
            data = data[:-2]
            if len(data) != 4 * ((delivered + 2) // 3):
                out["json_bad_events"] += 1
                continue
            if out["json_events"] <= 2000:
                payload = base64.b64decode(data)
                if len(payload) != delivered:
                    out["json_bad_events"] += 1
                    continue
                if body and direction == "out" and len(body) < len(payload) < len(body) + 1024:
                    out["body_checked"] += 1
                    out["body_mismatch"] += not payload.endswith(body)
            out["captured_out" if direction == "out" else "captured_in"] += delivered
            # Bytes marked missing where they belong: inside the call, and whole calls before it.
            out["gaps_out" if direction == "out" else "gaps_in"] += (fields.get("lost_bytes", 0)
                                                                     + fields.get("lost_before", 0))
    return out


def count_pcapng(path):
    """Enhanced packet blocks in a pcapng file and their captured bytes.

    Walks the blocks by their lengths, so a file cut short (not finished at
    stop) shows as `pcapng_complete: false`.
    """
    if not os.path.exists(path):
        return {}
    packets = captured = 0
    with open(path, "rb") as file:
        data = file.read()
    offset = 0
    while offset + 12 <= len(data):
        kind, length = struct.unpack_from("<II", data, offset)
        if length < 12 or offset + length > len(data):
            break
        if kind == 6:
            packets += 1
            captured += struct.unpack_from("<I", data, offset + 20)[0]
        offset += length
    return {"pcapng_packets": packets, "pcapng_captured_bytes": captured, "pcapng_file_bytes": len(data),
            "pcapng_complete": offset == len(data)}


def main():
    kind, folder, results = sys.argv[1], sys.argv[2], sys.argv[3]
    record = dict(argument.split("=", 1) for argument in sys.argv[4:])
    for key in ("round", "worker", "size", "count", "others_before", "others_after", "connections"):
        if key in record:
            record[key] = int(record[key])
    load = read(os.path.join(folder, "load.txt"))
    tracer_err = read(os.path.join(folder, "tracer.err"))
    record.update(parse_time(os.path.join(folder, "time.txt")))
    record.update(parse_status(os.path.join(folder, "status.txt")))
    stop_ms = read(os.path.join(folder, "stop_ms.txt")).strip()
    if stop_ms:
        record["tracer_stop_ms"] = int(stop_ms)
    record.update(parse_tracer_output(tracer_err + read(os.path.join(folder, "tracer.out"))))
    if kind == "server":
        record.update(parse_cpu_samples(folder))
        if record.get("tool") == "h2load":
            record.update(parse_h2load(load, os.path.join(folder, "h2load.log")))
        else:
            record.update(parse_wrk(load))
        record.update(parse_access_log(os.path.join(folder, "access.log")))
        body = None
        if record.get("body") and record.get("tool") == "wrk" and record.get("keepalive") == "yes":
            with open(record["body"], "rb") as file:
                body = file.read()
        if record.get("mode", "").startswith("tlstap"):
            record.update(count_jsonl(os.path.join(folder, "out.jsonl"), record["worker"], body))
            record.update(count_pcapng(os.path.join(folder, "out.pcapng")))
    else:
        match = re.search(r"gen: size=(\d+) writes=(\d+) write_bytes=(\d+) reads=(\d+) read_bytes=(\d+) "
                          r"seconds=([\d.]+)", load)
        if match:
            record.update(gen_writes=int(match.group(2)), gen_write_bytes=int(match.group(3)),
                          gen_reads=int(match.group(4)), gen_read_bytes=int(match.group(5)),
                          gen_seconds=float(match.group(6)))
        if record.get("mode") in ("tlstap", "tlstap-record"):  # tlstap-record's, as `tlstap replay` renders them
            record.update(count_jsonl(os.path.join(folder, "out.jsonl"), record["worker"], None))
    problems = [line for line in tracer_err.splitlines() if "warning" in line or "error" in line]
    if problems:
        record["tracer_messages"] = problems[:5]
    with open(results, "a") as file:
        file.write(json.dumps(record, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
