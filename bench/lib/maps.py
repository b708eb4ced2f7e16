#!/usr/bin/env python3
"""Prints `maps: NAME=ENTRIES ...` for each hash map process PID holds (from
its fds' fdinfo), counted with bpftool: bench/run's soak samples it."""
import json
import os
import subprocess
import sys


def map_ids(pid):
    ids = set()
    directory = f"/proc/{pid}/fdinfo"
    for fd in os.listdir(directory):
        try:
            with open(os.path.join(directory, fd)) as file:
                for line in file:
                    if line.startswith("map_id:"):
                        ids.add(int(line.split()[1]))
        except OSError:
            pass
    return ids


def bpftool(*arguments):
    return json.loads(subprocess.run(["bpftool", "-j", *arguments], capture_output=True, check=True).stdout)


counts = {}
for map_id in sorted(map_ids(sys.argv[1])):
    shown = bpftool("map", "show", "id", str(map_id))
    if shown.get("type", "").endswith("hash"):
        counts[shown["name"]] = len(bpftool("map", "dump", "id", str(map_id)))
print("maps: " + " ".join(f"{name}={count}" for name, count in sorted(counts.items())))
