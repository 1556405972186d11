#!/usr/bin/env python3
"""TCP and UDP helpers for interop/tun-selftest.sh.

  tcp_blob.py serve --bind ADDR --port P --out FILE --ready FILE [--count N]
      accept N connections (default 1) one after the other; the bytes of
      each are written to FILE (appended), then the socket is closed.
  tcp_blob.py send --to ADDR --port P --file FILE [--hold SECONDS]
      connect, send FILE, wait SECONDS (connection open), close; prints
      the bytes sent and the time until the peer acknowledged the last of
      them (the hold is not part of it: it is printed apart).
  tcp_blob.py udp-send --to ADDR --port P --text TEXT [--sport P]
      send one UDP datagram.
  tcp_blob.py iperf-summary FILE
      one line from iperf3's JSON output: throughput and retransmits.
"""
import argparse
import fcntl
import json
import socket
import struct
import sys
import termios
import time


def serve(a):
    family = socket.AF_INET6 if ":" in a.bind else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((a.bind, a.port))
    s.listen(4)
    open(a.ready, "w").close()
    s.settimeout(a.timeout)
    with open(a.out, "ab") as out:
        for _ in range(a.count):
            c, _peer = s.accept()
            c.settimeout(a.timeout)
            while True:
                b = c.recv(65536)
                if not b:
                    break
                out.write(b)
            out.flush()
            c.close()
    s.close()


def unacked(s):
    """Octets in the TCP send queue not yet acknowledged by the peer
    (Linux SIOCOUTQ, the same number as TIOCOUTQ)."""
    b = fcntl.ioctl(s.fileno(), termios.TIOCOUTQ, struct.pack("i", 0))
    return struct.unpack("i", b)[0]


def send(a):
    data = open(a.file, "rb").read()
    s = socket.create_connection((a.to, a.port), timeout=a.timeout)
    t0 = time.monotonic()
    s.sendall(data)
    # The transfer ends when the peer has acknowledged every byte, not when
    # the connection closes: with --hold that is seconds later.
    end = t0 + a.timeout
    while unacked(s) > 0 and time.monotonic() < end:
        time.sleep(0.001)
    dt = time.monotonic() - t0
    if a.hold:
        time.sleep(a.hold)
    s.shutdown(socket.SHUT_WR)
    # Wait for the server's close: every byte was received.
    while s.recv(65536):
        pass
    total = time.monotonic() - t0
    s.close()
    held = f"; held open {a.hold:g} s, closed after {total:.3f} s" if a.hold else ""
    print(f"sent {len(data)} bytes in {dt:.3f} s ({len(data) * 8 / dt / 1e6:.1f} Mbit/s){held}")


def udp_send(a):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if a.sport:
        s.bind(("0.0.0.0", a.sport))
    s.sendto(a.text.encode(), (a.to, a.port))
    s.close()


def iperf_summary(a):
    try:
        d = json.load(open(a.file))
        s, r = d["end"]["sum_sent"], d["end"]["sum_received"]
        print(f"{r['bits_per_second'] / 1e6:.0f} Mbit/s received, "
              f"{s.get('retransmits', 0)} retransmits")
    except Exception as e:  # a failed run: say so, do not fail
        print(f"no result ({e})")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    sv = sub.add_parser("serve")
    sv.add_argument("--bind", required=True)
    sv.add_argument("--port", type=int, required=True)
    sv.add_argument("--out", required=True)
    sv.add_argument("--ready", required=True)
    sv.add_argument("--count", type=int, default=1)
    sv.add_argument("--timeout", type=float, default=60)
    sd = sub.add_parser("send")
    sd.add_argument("--to", required=True)
    sd.add_argument("--port", type=int, required=True)
    sd.add_argument("--file", required=True)
    sd.add_argument("--hold", type=float, default=0)
    sd.add_argument("--timeout", type=float, default=60)
    us = sub.add_parser("udp-send")
    us.add_argument("--to", required=True)
    us.add_argument("--port", type=int, required=True)
    us.add_argument("--text", required=True)
    us.add_argument("--sport", type=int, default=0)
    ip = sub.add_parser("iperf-summary")
    ip.add_argument("file")
    a = p.parse_args()
    {"serve": serve, "send": send, "udp-send": udp_send,
     "iperf-summary": iperf_summary}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
