#!/usr/bin/env python3
"""UDP helper of the latchkey interop harness (runs inside a namespace).

  listen --bind ADDR --port P --out FILE [--ready FILE] [--echo]
      record every datagram as "SRC_ADDR:SRC_PORT<TAB>text" (one line each,
      flushed), optionally send it back to its sender unchanged.
  send --bind ADDR --to ADDR:PORT --message TEXT [--count N] [--interval S]
       [--wait S] [--expect-reply]
      send datagram(s) from ADDR (any port), --interval seconds apart (the
      replies arriving meanwhile are printed), then print the replies that
      arrive within --wait seconds, one per line; exit 0 if --expect-reply
      was not given or at least one reply came.
"""
import argparse
import socket
import sys
import time


def listen(a):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((a.bind, a.port))
    with open(a.out, "a", encoding="utf-8") as out:
        if a.ready:
            open(a.ready, "w").close()
        while True:
            data, src = s.recvfrom(65535)
            text = data.decode("utf-8", "backslashreplace").replace("\n", "\\n")
            out.write(f"{src[0]}:{src[1]}\t{text}\n")
            out.flush()
            if a.echo:
                s.sendto(data, src)


def send(a):
    host, _, port = a.to.rpartition(":")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((a.bind, 0))
    replies = 0

    def receive(until, stop_when_all):
        nonlocal replies
        while True:
            left = until - time.monotonic()
            if left <= 0:
                return
            s.settimeout(left)
            try:
                data, src = s.recvfrom(65535)
            except socket.timeout:
                return
            except OSError as e:  # e.g. ICMP unreachable reported on the socket
                print(f"receive: {e}", file=sys.stderr)
                time.sleep(min(left, 0.05))
                continue
            replies += 1
            print(f"{src[0]}:{src[1]}\t{data.decode('utf-8', 'backslashreplace')}", flush=True)
            if stop_when_all and replies >= a.count:
                return

    for i in range(a.count):
        msg = a.message if a.count == 1 else f"{a.message} {i + 1}"
        try:
            s.sendto(msg.encode(), (host, int(port)))
        except OSError as e:
            print(f"send {a.bind} -> {a.to}: {e}", file=sys.stderr)
            if a.interval <= 0:
                return 1
        if a.interval > 0 and i + 1 < a.count:
            receive(time.monotonic() + a.interval, False)
    receive(time.monotonic() + a.wait, a.expect_reply)
    if a.expect_reply and replies == 0:
        print("no reply", file=sys.stderr)
        return 1
    return 0


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    l = sub.add_parser("listen")
    l.add_argument("--bind", required=True)
    l.add_argument("--port", type=int, required=True)
    l.add_argument("--out", required=True)
    l.add_argument("--ready")
    l.add_argument("--echo", action="store_true")
    s = sub.add_parser("send")
    s.add_argument("--bind", required=True)
    s.add_argument("--to", required=True)
    s.add_argument("--message", required=True)
    s.add_argument("--count", type=int, default=1)
    s.add_argument("--interval", type=float, default=0.0)
    s.add_argument("--wait", type=float, default=0.0)
    s.add_argument("--expect-reply", action="store_true")
    a = p.parse_args()
    if a.cmd == "listen":
        listen(a)
        return 0
    return send(a)


if __name__ == "__main__":
    sys.exit(main())
