#!/usr/bin/env python3
"""Check what charon showed in `swanctl --list-sas` (polled output).

Usage: check_sas.py --sas POLLFILE [--ike-suite S] [--esp-suite S]
                    [--latchkey-json FILE] [--summary OUT.json]
                    [--min-ike-sas N] [--min-child-sas N] [--last-in-json]
                    [--latchkey-status STATUS.json]

Looks for one snapshot with an ESTABLISHED IKEv2 SA and an INSTALLED child
SA with the given suites. With --latchkey-json, the IKE SPIs and both child
SPIs that charon shows must also appear among the SPIs latchkey printed
(any JSON value under a key containing "spi", hex string or number).
--min-ike-sas / --min-child-sas: across all snapshots, at least N distinct
ESTABLISHED IKE SAs (SPI pairs) / INSTALLED child SAs (SPI pairs) were seen
(rekeying makes new ones). --last-in-json: the SPIs of the last snapshot
with an established pair must also be among latchkey's SPIs (latchkey
followed the rekeys).
--latchkey-status: `latchkey status --json` of the daemon, taken next to
the last snapshot: every IKE SA and INSTALLED child SA charon lists there
must be in latchkey's status with the same SPIs (child: charon's in = our
out) and the same suites (latchkey's strongSwan-syntax suite translated to
charon's names), and latchkey must list no other.
Prints one line per problem on stderr; exit 0 when all checks pass.
"""
import argparse
import json
import re
import sys

IKE_RE = re.compile(r"^(\S+): #(\d+), (\w+), IKEv2, ([0-9a-f]{16})_i\*? ([0-9a-f]{16})_r\*?")
CHILD_RE = re.compile(r"^\s+(\S+): #(\d+), reqid \d+, (\w+), ([\w-]+), (\w+):(\S+)")
SUITE_RE = re.compile(r"^\s+([A-Z0-9_-]+(?:/[A-Z0-9_-]+)+)\s*$")
IN_RE = re.compile(r"^\s+in\s+([0-9a-f]{8})")
OUT_RE = re.compile(r"^\s+out\s+([0-9a-f]{8})")
REMOTE_RE = re.compile(r"^\s+remote\s+'([^']*)' @ (\S+)")
LOCAL_RE = re.compile(r"^\s+local\s+'([^']*)' @ (\S+)")
TS_RE = re.compile(r"^\s+(local|remote)\s+(\d+\.\d+\.\d+\.\d+/\d+.*)$")


def parse_snapshots(text):
    snaps = []
    for block in text.split("=== ")[1:]:
        lines = block.splitlines()
        when = lines[0].strip() if lines else ""
        ike = None
        child = None
        for ln in lines[1:]:
            m = IKE_RE.match(ln)
            if m:
                ike = {"name": m[1], "state": m[3], "spi_i": m[4], "spi_r": m[5],
                       "children": [], "when": when}
                snaps.append(ike)
                child = None
                continue
            if ike is None:
                continue
            m = CHILD_RE.match(ln)
            if m:
                child = {"name": m[1], "state": m[3], "mode": m[4], "proto": m[5],
                         "suite": m[6], "ts": {}}
                ike["children"].append(child)
                continue
            if child is None:
                m = SUITE_RE.match(ln)
                if m:
                    ike["suite"] = m[1]
                m = LOCAL_RE.match(ln)
                if m:
                    ike["local_id"], ike["local"] = m[1], m[2]
                m = REMOTE_RE.match(ln)
                if m:
                    ike["remote_id"], ike["remote"] = m[1], m[2]
                continue
            m = IN_RE.match(ln)
            if m:
                child["spi_in"] = m[1]
            m = OUT_RE.match(ln)
            if m:
                child["spi_out"] = m[1]
            m = TS_RE.match(ln)
            if m:
                child["ts"][m[1]] = m[2].strip()
    return snaps


def spi_values(obj, under_spi=False):
    """All integers that latchkey's JSON gives for keys containing 'spi'."""
    out = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            out |= spi_values(v, under_spi or "spi" in str(k).lower())
    elif isinstance(obj, list):
        for v in obj:
            out |= spi_values(v, under_spi)
    elif under_spi:
        if isinstance(obj, bool):
            pass
        elif isinstance(obj, int):
            out.add(obj)
        elif isinstance(obj, str):
            for tok in re.findall(r"(?:0x)?([0-9a-fA-F]{8,16})", obj):
                out.add(int(tok, 16))
    return out


ENCR = {"aes128gcm16": "AES_GCM_16-128", "aes192gcm16": "AES_GCM_16-192", "aes256gcm16": "AES_GCM_16-256",
        "aes128gcm12": "AES_GCM_12-128", "aes256gcm12": "AES_GCM_12-256",
        "chacha20poly1305": "CHACHA20_POLY1305", "aes128": "AES_CBC-128", "aes192": "AES_CBC-192",
        "aes256": "AES_CBC-256"}
INTEG = {"sha1": "HMAC_SHA1_96", "sha256": "HMAC_SHA2_256_128", "sha384": "HMAC_SHA2_384_192",
         "sha512": "HMAC_SHA2_512_256"}
PRF = {"prfsha1": "PRF_HMAC_SHA1", "prfsha256": "PRF_HMAC_SHA2_256", "prfsha384": "PRF_HMAC_SHA2_384",
       "prfsha512": "PRF_HMAC_SHA2_512"}
GROUP = {"x25519": "CURVE_25519", "curve25519": "CURVE_25519", "x448": "CURVE_448", "curve448": "CURVE_448",
         "ecp256": "ECP_256", "ecp384": "ECP_384", "ecp521": "ECP_521", "modp2048": "MODP_2048",
         "modp3072": "MODP_3072", "modp4096": "MODP_4096"}


def charon_suite(suite, ike):
    """latchkey's suite in strongSwan proposal syntax -> swanctl --list-sas's words."""
    encr, integ, prf, group, unknown = [], [], [], [], []
    for tok in suite.lower().split("-"):
        if tok in ENCR:
            encr.append(ENCR[tok])
        elif tok in INTEG:
            integ.append(INTEG[tok])
            if ike and not prf:
                prf.append("PRF_HMAC_" + INTEG[tok].split("_", 1)[1].rsplit("_", 1)[0])
        elif tok in PRF:
            prf[:] = [PRF[tok]]
        elif tok in GROUP:
            group.append(GROUP[tok])
        elif tok in ("noesn", "esn"):
            pass
        else:
            unknown.append(tok)
    if unknown:
        return None
    return "/".join(encr + integ + prf + group)


def check_status(snaps, status_path, problems):
    """Compare the last snapshot's SAs with latchkey status --json."""
    try:
        st = json.load(open(status_path, encoding="utf-8"))
    except (OSError, ValueError) as e:
        problems.append(f"cannot read latchkey status {status_path}: {e}")
        return None
    if not snaps:
        problems.append("no swanctl snapshot next to latchkey status")
        return None
    last_when = snaps[-1]["when"]
    charon = [s for s in snaps if s["when"] == last_when and s["state"] == "ESTABLISHED"]
    lk_ike = {(i["spi_i"], i["spi_r"]): i for i in st.get("ike_sas", [])}
    seen = []
    for ike in charon:
        key = (ike["spi_i"], ike["spi_r"])
        mine = lk_ike.pop(key, None)
        if mine is None:
            problems.append(f"status: charon's IKE SA {key[0]}_i {key[1]}_r not in latchkey status "
                            f"(has {sorted('_'.join(k) for k in lk_ike)})")
            continue
        want = charon_suite(mine.get("suite", ""), True)
        if want != ike.get("suite"):
            problems.append(f"status: IKE SA {key[0]}: latchkey suite {mine.get('suite')!r} (= {want!r}), "
                            f"charon {ike.get('suite')!r}")
        if mine.get("state") != "ESTABLISHED":
            problems.append(f"status: IKE SA {key[0]} state {mine.get('state')!r} in latchkey")
        lk_child = {(c.get("spi_in"), c.get("spi_out")): c for c in mine.get("child_sas", [])}
        for ch in ike["children"]:
            if ch["state"] != "INSTALLED" or "spi_in" not in ch:
                continue
            ck = (ch["spi_out"], ch["spi_in"])
            mc = lk_child.pop(ck, None)
            if mc is None:
                problems.append(f"status: charon's child SA in {ch['spi_in']} out {ch['spi_out']} not in latchkey "
                                f"status (has {sorted('/'.join(k) for k in lk_child)})")
                continue
            cw = charon_suite(mc.get("suite", ""), False)
            if cw != ch["suite"]:
                problems.append(f"status: child SA {ch['spi_in']}: latchkey suite {mc.get('suite')!r} (= {cw!r}), "
                                f"charon {ch['suite']!r}")
            seen.append(f"child {mc.get('spi_in')}/{mc.get('spi_out')} {mc.get('suite')}={ch['suite']}")
        for k in lk_child:
            problems.append(f"status: latchkey lists child SA {k[0]}/{k[1]} that charon does not")
        seen.insert(0, f"IKE {key[0]}_i {key[1]}_r {mine.get('suite')}={ike.get('suite')}")
    for k in lk_ike:
        problems.append(f"status: latchkey lists IKE SA {k[0]}_i {k[1]}_r that charon does not")
    return "; ".join(seen)


def load_json_lenient(path):
    text = open(path, encoding="utf-8", errors="replace").read()
    try:
        return json.loads(text)
    except ValueError:
        pass
    # JSON lines, or a JSON document after other output.
    docs = []
    dec = json.JSONDecoder()
    i = 0
    while i < len(text):
        j = text.find("{", i)
        if j < 0:
            break
        try:
            obj, end = dec.raw_decode(text, j)
            docs.append(obj)
            i = end
        except ValueError:
            i = j + 1
    if not docs:
        raise ValueError("no JSON object in latchkey's output")
    return docs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sas", required=True)
    ap.add_argument("--ike-suite", default="AES_GCM_16-128/PRF_HMAC_SHA2_256/CURVE_25519")
    ap.add_argument("--esp-suite", default="AES_GCM_16-128")
    ap.add_argument("--latchkey-json")
    ap.add_argument("--summary")
    ap.add_argument("--min-ike-sas", type=int, default=0)
    ap.add_argument("--min-child-sas", type=int, default=0)
    ap.add_argument("--last-in-json", action="store_true")
    ap.add_argument("--latchkey-status")
    a = ap.parse_args()

    snaps = parse_snapshots(open(a.sas, encoding="utf-8", errors="replace").read())
    problems = []
    good = None
    for ike in snaps:
        if ike["state"] != "ESTABLISHED":
            continue
        for ch in ike["children"]:
            if ch["state"] == "INSTALLED" and "spi_in" in ch and "spi_out" in ch:
                good = (ike, ch)
                break
        if good:
            break
    if not snaps:
        problems.append("charon never showed an IKE SA in swanctl --list-sas")
    elif good is None:
        states = sorted({(s["state"], tuple(c["state"] for c in s["children"])) for s in snaps})
        problems.append(f"no snapshot with ESTABLISHED IKE SA + INSTALLED child SA (seen: {states})")
    summary = {"snapshots_with_ike_sa": len(snaps)}
    if good:
        ike, ch = good
        summary.update({"ike": {k: v for k, v in ike.items() if k != "children"}, "child": ch})
        if ike.get("suite") != a.ike_suite:
            problems.append(f"IKE suite {ike.get('suite')!r}, expected {a.ike_suite!r}")
        if ch["suite"] != a.esp_suite:
            problems.append(f"ESP suite {ch['suite']!r}, expected {a.esp_suite!r}")
        if ch["proto"] != "ESP":
            problems.append(f"child SA protocol {ch['proto']}, expected ESP")
        if a.latchkey_json:
            try:
                lk = load_json_lenient(a.latchkey_json)
            except (OSError, ValueError) as e:
                problems.append(f"cannot read latchkey JSON: {e}")
                lk = None
            if lk is not None:
                spis = spi_values(lk)
                summary["latchkey_spis"] = sorted(f"{v:x}" for v in spis)
                for label, hx in (("IKE SPI_i", ike["spi_i"]), ("IKE SPI_r", ike["spi_r"]),
                                  ("child SPI in", ch["spi_in"]), ("child SPI out", ch["spi_out"])):
                    if int(hx, 16) not in spis:
                        problems.append(f"charon's {label} {hx} is not among latchkey's SPIs "
                                        f"{summary['latchkey_spis']}")
    ike_set = sorted({(s["spi_i"], s["spi_r"]) for s in snaps if s["state"] == "ESTABLISHED"})
    child_set = sorted({(c["spi_in"], c["spi_out"]) for s in snaps for c in s["children"]
                        if c["state"] == "INSTALLED" and "spi_in" in c and "spi_out" in c})
    summary["distinct_ike_sas"] = ["_".join(x) for x in ike_set]
    summary["distinct_child_sas"] = ["/".join(x) for x in child_set]
    if len(ike_set) < a.min_ike_sas:
        problems.append(f"{len(ike_set)} distinct IKE SAs seen, expected >= {a.min_ike_sas} (rekeys)")
    if len(child_set) < a.min_child_sas:
        problems.append(f"{len(child_set)} distinct child SAs seen, expected >= {a.min_child_sas} (rekeys)")
    if a.last_in_json and a.latchkey_json and good:
        last = None
        for ike in snaps:
            if ike["state"] != "ESTABLISHED":
                continue
            for ch in ike["children"]:
                if ch["state"] == "INSTALLED" and "spi_in" in ch and "spi_out" in ch:
                    last = (ike, ch)
        try:
            spis = spi_values(load_json_lenient(a.latchkey_json))
        except (OSError, ValueError):
            spis = set()
        if last:
            ike, ch = last
            summary["last"] = {"ike": f"{ike['spi_i']}_{ike['spi_r']}", "child": f"{ch['spi_in']}/{ch['spi_out']}"}
            for label, hx in (("last IKE SPI_i", ike["spi_i"]), ("last child SPI in", ch["spi_in"]),
                              ("last child SPI out", ch["spi_out"])):
                if int(hx, 16) not in spis:
                    problems.append(f"charon's {label} {hx} (after rekeys) is not among latchkey's SPIs")
    status_seen = None
    if a.latchkey_status:
        status_seen = check_status(snaps, a.latchkey_status, problems)
        summary["status_match"] = status_seen
    if a.summary:
        with open(a.summary, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
    for p in problems:
        print(p, file=sys.stderr)
    if good and not problems:
        ike, ch = good
        print(f"IKE {ike['spi_i']}_i {ike['spi_r']}_r {ike.get('suite')} "
              f"child in {ch['spi_in']} out {ch['spi_out']} {ch['mode']} {ch['proto']}:{ch['suite']} "
              f"{ch['ts'].get('local', '?')} === {ch['ts'].get('remote', '?')}"
              + (f"; distinct IKE SAs {len(ike_set)}, child SAs {len(child_set)}"
                 if a.min_ike_sas or a.min_child_sas else "")
              + (f"; latchkey status = swanctl: {status_seen}" if status_seen else ""))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
