#!/usr/bin/env python3
"""Send one IKE_SA_INIT request (aes128gcm16-prfsha256-x25519) and print the
payloads of the response: to see how charon answers with and without NAT-D.
The KE value is random bytes (no key is ever derived); run it inside lk-left
against charon in lk-right only.

Usage: probe_sa_init.py --src 192.0.2.1 --dst 192.0.2.2 --natd honest|none|fake
"""
import argparse
import hashlib
import os
import socket
import struct
import sys

NOTIFY = {16388: "NATD_S_IP", 16389: "NATD_D_IP", 16430: "FRAG_SUP", 16431: "HASH_ALG",
          16418: "CHDLESS_SUP", 16404: "MULT_AUTH", 16406: "REDIR_SUP", 14: "NO_PROP",
          17: "INVALID_KE", 16390: "COOKIE"}
PAYLOAD = {33: "SA", 34: "KE", 40: "No", 41: "N", 43: "V"}


def payload(nxt, body):
    return struct.pack("!BBH", nxt, 0, 4 + len(body)) + body


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", required=True)
    ap.add_argument("--dst", required=True)
    ap.add_argument("--natd", choices=["honest", "none", "fake"], default="honest")
    a = ap.parse_args()
    spi_i = os.urandom(8)
    zero = b"\0" * 8
    tr = [struct.pack("!BBHBBH", 3, 0, 12, 1, 0, 20) + struct.pack("!HH", 0x800E, 128),
          struct.pack("!BBHBBH", 3, 0, 8, 2, 0, 5),
          struct.pack("!BBHBBH", 0, 0, 8, 4, 0, 31)]
    prop_body = b"".join(tr)
    prop = struct.pack("!BBHBBBB", 0, 0, 8 + len(prop_body), 1, 1, 0, 3) + prop_body
    natd = []
    if a.natd != "none":
        def h(ip):
            return hashlib.sha1(spi_i + zero + socket.inet_aton(ip) + struct.pack("!H", 500)).digest()
        src_hash = h(a.src) if a.natd == "honest" else os.urandom(20)
        natd = [struct.pack("!BBH", 0, 0, 16388) + src_hash, struct.pack("!BBH", 0, 0, 16389) + h(a.dst)]
    chain = [(33, prop), (34, struct.pack("!HH", 31, 0) + os.urandom(32)), (40, os.urandom(32))]
    chain += [(41, n) for n in natd]
    body = b""
    for i, (_, b) in enumerate(chain):
        nxt = chain[i + 1][0] if i + 1 < len(chain) else 0
        body += payload(nxt, b)
    hdr = spi_i + zero + struct.pack("!BBBBII", chain[0][0], 0x20, 34, 0x08, 0, 28 + len(body))
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((a.src, 500))
    s.settimeout(3)
    s.sendto(hdr + body, (a.dst, 500))
    try:
        data, _ = s.recvfrom(65535)
    except socket.timeout:
        print("no response")
        return 1
    nxt = data[16]
    off = 28
    out = []
    spi_r = data[8:16]

    def h2(ip):
        return hashlib.sha1(spi_i + spi_r + socket.inet_aton(ip) + struct.pack("!H", 500)).digest()
    while nxt and off + 4 <= len(data):
        n2, _, ln = struct.unpack("!BBH", data[off:off + 4])
        name = PAYLOAD.get(nxt, str(nxt))
        if nxt == 41:
            t = struct.unpack("!H", data[off + 6:off + 8])[0]
            name = f"N({NOTIFY.get(t, t)})"
            nd = data[off + 8:off + ln]
            if t == 16388:
                name += "=" + ("real" if nd == h2(a.dst) else "FAKE")
            if t == 16389:
                name += "=" + ("real" if nd == h2(a.src) else "FAKE")
        out.append(name)
        nxt, off = n2, off + ln
    print(f"natd={a.natd}: response {len(data)} bytes [ {' '.join(out)} ]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
