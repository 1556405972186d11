#!/usr/bin/env python3
"""Decrypt a harness capture with the keys charon logged (ike/chd level 4).

Usage: decrypt.py --log charon.log --sas POLL [--sas POLL...] --pcap IN.pcap --out OUT.txt

Joins charon's log (SK_e*, ESP keys and SPIs per IKE SA unique id <name|N>)
with swanctl's polled SA list ("name: #N, STATE, IKEv2, SPIi_i SPIr_r") to
build tshark's ikev2_decryption_table and esp_sa tables, and writes the
decrypted dissection (IKE payloads inside SK, inner packets of ESP) to OUT.
Only AES-GCM-16 suites (what the harness negotiates) are mapped. Test keys
only: these come from throw-away SAs made by the harness.
"""
import argparse
import re
import subprocess
import sys

LINE = re.compile(r"^\S+ \d+\[(\w+)\] <(?:[^|>]*\|)?(\d+)> (.*)$")
HEX = re.compile(r"^\s*\d+: ((?:[0-9A-F]{2} )+)")
IKE_ENC = {16: "AES-GCM-128 with 16 octet ICV [RFC5282]", 24: "AES-GCM-192 with 16 octet ICV [RFC5282]",
           32: "AES-GCM-256 with 16 octet ICV [RFC5282]"}
ESP_ENC = "AES-GCM with 16 octet ICV [RFC4106]"


def parse_log(path):
    sas = {}  # unique id -> dict
    cur = None  # (uid, keyname) while collecting a hex dump
    for raw in open(path, encoding="utf-8", errors="replace"):
        m = LINE.match(raw.rstrip("\n"))
        if not m:
            continue
        _, uid, msg = m.groups()
        sa = sas.setdefault(uid, {"children": [], "child_responder": None})
        h = HEX.match(msg)
        if h and cur and cur[0] == uid:
            sa[cur[1]] = sa.get(cur[1], "") + h.group(1).replace(" ", "").lower()
            continue
        cur = None
        k = re.match(r"(Sk_ei|Sk_er) secret =>", msg)
        if k:
            cur = (uid, k.group(1))
            sa[k.group(1)] = ""
            continue
        k = re.match(r"encryption (initiator|responder) key =>", msg)
        if k:
            cur = (uid, "esp_" + k.group(1))
            sa["esp_" + k.group(1)] = ""
            continue
        if re.match(r"parsed (IKE_AUTH|CREATE_CHILD_SA) request", msg):
            sa["child_responder"] = True
        elif re.match(r"generating (IKE_AUTH|CREATE_CHILD_SA) request", msg):
            sa["child_responder"] = False
        k = re.match(r"SPI 0x([0-9a-f]{8}), src (\S+) dst (\S+)", msg.strip())
        if k:
            sa["children"].append({"spi": k.group(1), "src": k.group(2), "dst": k.group(3),
                                   "inbound": "inbound" in sa.get("_last_add", ""),
                                   "ini": sa.get("esp_initiator", ""), "res": sa.get("esp_responder", ""),
                                   "child_responder": sa["child_responder"]})
        if "ESP SA" in msg and msg.startswith("adding"):
            sa["_last_add"] = msg
    return sas


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--log", required=True)
    ap.add_argument("--sas", action="append", default=[])
    ap.add_argument("--pcap", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    sas = parse_log(a.log)
    spis = {}
    for p in a.sas:
        for ln in open(p, encoding="utf-8", errors="replace"):
            m = re.match(r"^\S+: #(\d+), \w+, IKEv2, ([0-9a-f]{16})_i\*? ([0-9a-f]{16})_r", ln)
            if m:
                spis[m.group(1)] = (m.group(2), m.group(3))
    opts = []
    for uid, sa in sas.items():
        if uid in spis and sa.get("Sk_ei") and sa.get("Sk_er"):
            enc = IKE_ENC.get(len(sa["Sk_ei"]) // 2 - 4)
            if enc:
                opts += ["-o", f'uat:ikev2_decryption_table:{spis[uid][0]},{spis[uid][1]},'
                         f'{sa["Sk_ei"]},{sa["Sk_er"]},"{enc}",,,"NONE [RFC4306]"']
        for ch in sa["children"]:
            # The child SA initiator's key protects initiator -> responder.
            # Charon's inbound SA carries the peer's packets: the initiator
            # key when charon responded to the child SA, else the responder key.
            if ch["child_responder"] is None:
                continue
            use_ini = ch["inbound"] == ch["child_responder"]
            key = ch["ini"] if use_ini else ch["res"]
            if key:
                opts += ["-o", f'uat:esp_sa:"IPv4","{ch["src"]}","{ch["dst"]}","0x{ch["spi"]}",'
                         f'"{ESP_ENC}","0x{key}","NULL",""']
    opts += ["-o", "esp.enable_encryption_decode:TRUE"]
    cmd = ["tshark", "-n", "-r", a.pcap, "-V"] + opts
    with open(a.out, "w", encoding="utf-8") as out:
        r = subprocess.run(cmd, stdout=out, stderr=subprocess.PIPE, text=True, check=False)
    if r.returncode != 0:
        print(r.stderr.strip(), file=sys.stderr)
        return 1
    n_ike = sum(1 for o in opts if o.startswith("uat:ikev2"))
    n_esp = sum(1 for o in opts if o.startswith("uat:esp_sa"))
    print(f"{a.out}: {n_ike} IKE SA(s), {n_esp} ESP SA(s) keyed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
