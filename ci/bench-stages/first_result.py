#!/usr/bin/env python3
"""Times a streamed listing from the daemon's API: seconds to the first entry and to the end.

Usage: first_result.py URL TOKEN_FILE TIMEOUT
Prints "FIRST TOTAL ENTRIES". The listing is one JSON array sent in chunks, so the first
entry is the first '{' after the opening '['; an error object after the array fails.
"""
import sys
import time
import urllib.request

url, token_file, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
request = urllib.request.Request(url)
try:
    with open(token_file) as f:
        request.add_header("Authorization", "Bearer " + f.read().strip())
except FileNotFoundError:
    pass
t0 = time.monotonic()
first = None
body = bytearray()
with urllib.request.urlopen(request, timeout=timeout) as response:
    while True:
        chunk = response.read1(65536)
        if not chunk:
            break
        if first is None and b"{" in chunk:
            first = time.monotonic() - t0
        body += chunk
total = time.monotonic() - t0
text = body.decode()
if "]\n" in text:
    sys.exit("listing cut short: " + text[text.index("]\n") + 2 :][:200])
if first is None:
    sys.exit("no entry in the listing")
entries = text.count('"path"')
print(f"{first:.4f} {total:.4f} {entries}")
