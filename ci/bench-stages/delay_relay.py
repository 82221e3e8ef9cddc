#!/usr/bin/env python3
"""A UDP relay that holds every datagram for a fixed time, each way: the lossy bench
stage's delay (this kernel has no netem; loss and rate are nft and tbf in the kernel).

usage: delay_relay.py NEAR_IP:PORT FAR_IP TARGET_IP:PORT DELAY_MS SECONDS

Datagrams arriving on NEAR (the client, reaching it through a DNAT) leave from FAR_IP to
TARGET after DELAY_MS; the target's answers go back to the last client. Ends after SECONDS.
"""
import collections
import select
import socket
import sys
import time


def addr(text):
    host, port = text.rsplit(":", 1)
    return host, int(port)


def main():
    near_addr, far_ip, target, delay_ms, seconds = sys.argv[1:6]
    delay = int(delay_ms) / 1000
    target = addr(target)
    near = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    near.bind(addr(near_addr))
    far = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    far.bind((far_ip, 0))
    for s in (near, far):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    client = None
    # One fixed delay keeps arrival order, so a FIFO is a timer queue.
    queue = collections.deque()
    deadline = time.monotonic() + int(seconds)
    while time.monotonic() < deadline:
        wait = max(0.0, queue[0][0] - time.monotonic()) if queue else 0.5
        readable, _, _ = select.select([near, far], [], [], wait)
        for s in readable:
            data, source = s.recvfrom(65535)
            if s is near:
                client = source
                queue.append((time.monotonic() + delay, far, data, target))
            elif client is not None:
                queue.append((time.monotonic() + delay, near, data, client))
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, out, data, dest = queue.popleft()
            try:
                out.sendto(data, dest)
            except OSError:
                pass  # a full socket buffer is one more lost datagram


main()
