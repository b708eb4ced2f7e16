#!/usr/bin/env python3
"""Reads a HAR file with haralyzer (an independent HAR reader from PyPI) and
prints one JSON object per entry with the fields the tests compare."""
import json
import sys

from haralyzer import HarParser

with open(sys.argv[1]) as f:
    parser = HarParser(json.load(f))
print(json.dumps({"creator": parser.creator}))
for page in parser.pages or []:
    pass
for entry in parser.har_data["entries"]:
    request, response = entry["request"], entry["response"]
    print(json.dumps({
        "method": request["method"], "url": request["url"], "httpVersion": request["httpVersion"],
        "status": response["status"], "bodySize": response["bodySize"],
        "contentSize": response["content"]["size"], "text": response["content"].get("text"),
        "requestHeaders": {h["name"].lower(): h["value"] for h in request["headers"]},
        "query": {q["name"]: q["value"] for q in request["queryString"]},
        "cookies": {c["name"]: c["value"] for c in request["cookies"]},
        "pid": entry["_pid"], "comm": entry["_comm"], "conn": entry["_conn"],
        "started": entry["startedDateTime"], "time": entry["time"],
    }))
