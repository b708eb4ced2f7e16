#!/usr/bin/env python3
"""Python's http.client making COUNT requests on one keep-alive TLS connection.

  keepalive_client.py HOST PORT CAFILE COUNT

Request i is a GET of /echo/i?size=N for i in 0..COUNT-1; prints one line
"path status body_length" per response.
"""
import http.client
import ssl
import sys

host, port, cafile, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
connection = http.client.HTTPSConnection(host, port, context=ssl.create_default_context(cafile=cafile))
for i in range(count):
    path = "/files/f%d.txt" % (i % 10)
    connection.request("GET", path)
    response = connection.getresponse()
    body = response.read()
    print(path, response.status, len(body))
connection.close()
