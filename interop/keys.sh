#!/usr/bin/env bash
# Issue 5 witness: tshark (a decoder no one here wrote) decrypts a captured
# latchkey <-> strongSwan exchange with the keys latchkey exports as
# Wireshark's ikev2_decryption_table and esp_sa.
#
# Usage: interop/keys.sh [LATCHKEY_BIN]   (root; interop/setup.sh first;
#        default BIN target/debug/latchkey). Takes < 60 s.
#
# 1. initiator: `latchkey connect --keys-wireshark DIR --send-udp
#    10.99.0.1:9999` (lk-left) to charon (lk-right), captured on the veth.
# 2. responder: `latchkey listen --allow-key-export --echo` (lk-left, bound
#    to the wildcard address as by default: its own outer address is `*`
#    in esp_sa),
#    charon initiates, a datagram goes 10.99.0.1 -> 10.98.0.1 and back,
#    then `latchkey keys --wireshark DIR --control SOCK` fetches the keys.
# For each: tshark reads the capture with DIR as its Wireshark profile
# directory (XDG_CONFIG_HOME) and must show IKE_AUTH's decrypted payloads
# (IDi, IDr, AUTH) and the inner UDP datagram's text in both directions;
# without the tables it must not (control); the exported ESP keys (and
# SK_ei/SK_er) must equal the ones charon logs at ike/chd level 4
# (parsed with interop/decrypt.py's parser).
# Prints PASS/FAIL lines; last line `keys: N passed, M failed`; exit status
# non-zero on any failure. Files: interop/run/keys/.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BIN=${1:-${LK_DIR}/../target/debug/latchkey}
[[ ${BIN} == */* ]] || BIN=$(command -v "${BIN}" || echo "${BIN}")
BIN=$(realpath -m "${BIN}")
[[ -x ${BIN} ]] || lk_die "no latchkey binary at ${BIN} (cargo build -p latchkey)"

lk_init keys
R=${LK_RUN}
PASS=0
FAIL=0
check() { # NAME DETAIL COMMAND...
    local name=$1 detail=$2
    shift 2
    if "$@"; then
        echo "PASS ${name}${detail:+: ${detail}}"
        PASS=$((PASS + 1))
    else
        echo "FAIL ${name}${detail:+: ${detail}}"
        FAIL=$((FAIL + 1))
    fi
}

lk_ns_create
lk_psk "${R}/psk"
lk_charon_start right "${LK_NS_RIGHT}" "${LK_OUTER_RIGHT}" "${LK_OUTER_LEFT}" \
    "${LK_OUTER_RIGHT}" "${LK_OUTER_LEFT}" "${LK_TS_RIGHT}" "${LK_TS_LEFT}" none "${R}/psk"
lk_listener_start "${LK_NS_RIGHT}" "${LK_INNER_RIGHT}" 9999 "${R}/listener.txt" --echo

# The inner datagrams (to charon's echo listener, or to latchkey's echo).
INNER_FILTER='(udp.port == 9999 || udp.port == 7777)'
SEC=(--auth psk --psk-file "${R}/psk" --id "${LK_OUTER_LEFT}" --remote-id "${LK_OUTER_RIGHT}"
    --ike-proposal "${LK_IKE_PROPOSAL}" --esp-proposal "${LK_ESP_PROPOSAL}"
    --local-ts "${LK_TS_LEFT}" --remote-ts "${LK_TS_RIGHT}")

# tshark_profile DIR PCAP [ARGS...]: tshark with DIR/wireshark as its
# personal configuration (DIR is XDG_CONFIG_HOME), ESP decryption on.
tshark_profile() {
    local cfg=$1 pcap=$2
    shift 2
    XDG_CONFIG_HOME=${cfg} HOME=${cfg} tshark -n -r "${pcap}" \
        -o esp.enable_encryption_decode:TRUE -o esp.enable_authentication_check:TRUE \
        "$@" 2>>"${R}/tshark.stderr"
}

# verify NAME PCAP KEYDIR MSG: the checks on one capture.
verify() {
    local S=$1 pcap=$2 cfg=$3 msg=$4 dir=$3/wireshark
    local ike_lines esp_lines mode
    ike_lines=$(grep -vc '^#' "${dir}/ikev2_decryption_table" 2>/dev/null || true)
    esp_lines=$(grep -vc '^#' "${dir}/esp_sa" 2>/dev/null || true)
    mode=$(stat -c %a "${dir}/ikev2_decryption_table" "${dir}/esp_sa" 2>/dev/null | sort -u | tr '\n' ' ' || true)
    check "${S}: tables written" "${ike_lines:-0} IKE SA, ${esp_lines:-0} ESP SA line(s), mode ${mode}" \
        test "${ike_lines:-0}" -ge 1 -a "${esp_lines:-0}" -ge 2 -a "${mode}" = "600 "

    # IKE_AUTH decrypted: the payloads inside SK show up as their own fields.
    tshark_profile "${cfg}" "${pcap}" -V -Y 'isakmp.exchangetype == 35' >"${R}/${S}.ike_auth.txt" || true
    local idi idr auth
    # (`Next payload: ...` in the SK header is visible without keys; the
    # payloads themselves and their fields only once decrypted.)
    idi=$(grep -cE '^ +Payload: Identification - Initiator' "${R}/${S}.ike_auth.txt" || true)
    idr=$(grep -cE '^ +Payload: Identification - Responder' "${R}/${S}.ike_auth.txt" || true)
    auth=$(grep -cE '^ +Authentication Method: ' "${R}/${S}.ike_auth.txt" || true)
    check "${S}: tshark decrypts IKE_AUTH" "IDi ${idi}, IDr ${idr}, AUTH ${auth} payloads decoded" \
        test "${idi}" -ge 1 -a "${idr}" -ge 1 -a "${auth}" -ge 2
    check "${S}: IDs as sent" "$(grep -E 'Identification Data:' "${R}/${S}.ike_auth.txt" | tr -s ' ' | tr '\n' ';')" \
        grep -q "Identification Data:${LK_OUTER_LEFT}" "${R}/${S}.ike_auth.txt"

    # ESP decrypted: the inner UDP datagrams (both directions) and their text.
    local hex want_fwd want_back
    hex=$(printf '%s' "${msg}" | od -An -tx1 | tr -d ' \n')
    tshark_profile "${cfg}" "${pcap}" -Y "esp && ${INNER_FILTER}" \
        -T fields -e ip.src -e ip.dst -e esp.spi -e udp.payload >"${R}/${S}.esp.txt" || true
    want_fwd=$(awk -F'\t' -v h="${hex}" 'index($1, "10.98.0.1") && index($4, h)' "${R}/${S}.esp.txt" | grep -c . || true)
    want_back=$(awk -F'\t' -v h="${hex}" 'index($1, "10.99.0.1") && index($4, h)' "${R}/${S}.esp.txt" | grep -c . || true)
    check "${S}: tshark decrypts ESP" "inner UDP with '${msg}': ${want_fwd} from 10.98.0.1, ${want_back} from 10.99.0.1 ($(wc -l <"${R}/${S}.esp.txt") decrypted)" \
        test "${want_fwd}" -ge 1 -a "${want_back}" -ge 1
    tshark_profile "${cfg}" "${pcap}" -V -Y esp >"${R}/${S}.esp-verbose.txt" || true
    local good bad
    good=$(tshark_profile "${cfg}" "${pcap}" -Y 'esp.icv_good == 1' -T fields -e frame.number | grep -c . || true)
    bad=$(tshark_profile "${cfg}" "${pcap}" -Y 'esp.icv_bad == 1' -T fields -e frame.number | grep -c . || true)
    check "${S}: ESP ICVs verify with the exported keys" "${good} good, ${bad} bad" \
        test "${good}" -ge 2 -a "${bad}" -eq 0

    # Control: without the tables, nothing of this is visible.
    local empty=${R}/${S}-nokeys
    mkdir -p "${empty}/wireshark"
    local c_auth c_esp
    c_auth=$(tshark_profile "${empty}" "${pcap}" -V -Y 'isakmp.exchangetype == 35' | grep -cE '^ +Authentication Method: ' || true)
    c_esp=$(tshark_profile "${empty}" "${pcap}" -Y "esp && ${INNER_FILTER}" -T fields -e frame.number | grep -c . || true)
    check "${S}: control without keys" "AUTH ${c_auth}, inner UDP ${c_esp} (want 0, 0)" \
        test "${c_auth}" -eq 0 -a "${c_esp}" -eq 0

    # Tampered tables (one key digit changed in each): nothing decrypts, so
    # the checks above can fail.
    local bad=${R}/${S}-tampered
    mkdir -p "${bad}/wireshark"
    "${LK_PY}" - "${dir}" "${bad}/wireshark" <<'PYEOF'
import sys
src, dst = sys.argv[1:3]
flip = lambda h: format(int(h, 16) ^ 1, "x")
for name, cols, skip in (("ikev2_decryption_table", (2, 3), 0), ("esp_sa", (5,), 3)):
    out = []
    for ln in open(f"{src}/{name}", encoding="utf-8"):
        if not ln.startswith("#") and ln.strip():
            f = ln.rstrip("\n").split(",")
            for c in cols:  # first key digit (after `"0x` in esp_sa)
                f[c] = f[c][:skip] + flip(f[c][skip]) + f[c][skip + 1:]
            ln = ",".join(f) + "\n"
        out.append(ln)
    open(f"{dst}/{name}", "w", encoding="utf-8").write("".join(out))
PYEOF
    local t_auth t_esp
    t_auth=$(tshark_profile "${bad}" "${pcap}" -V -Y 'isakmp.exchangetype == 35' | grep -cE '^ +Authentication Method: ' || true)
    t_esp=$(tshark_profile "${bad}" "${pcap}" -Y "esp && ${INNER_FILTER}" -T fields -e frame.number | grep -c . || true)
    check "${S}: tampered keys decrypt nothing" "AUTH ${t_auth}, inner UDP ${t_esp} (want 0, 0); tables differ: $(cmp -s "${dir}/esp_sa" "${bad}/wireshark/esp_sa" || echo yes)" \
        test "${t_auth}" -eq 0 -a "${t_esp}" -eq 0

    # The exported keys are charon's (its log at ike/chd level 4).
    local rc=0
    "${LK_PY}" - "${LK_DIR}" "${R}/right/charon.log" "${dir}" "${R}/${S}.compare.txt" <<'PYEOF' || rc=$?
import os, re, sys
lk_dir, log, kdir, out = sys.argv[1:5]
sys.path.insert(0, lk_dir)
import decrypt  # the harness's parser of charon's log

def uat(path):
    rows = []
    for ln in open(path, encoding="utf-8"):
        if ln.startswith("#") or not ln.strip():
            continue
        rows.append([f.strip('"') for f in ln.rstrip("\n").split(",")])
    return rows

ours_esp = {r[3].lower().removeprefix("0x"): (r[1], r[2], r[5].lower().removeprefix("0x")) for r in uat(os.path.join(kdir, "esp_sa"))}
ours_ike = {(r[2], r[3]) for r in uat(os.path.join(kdir, "ikev2_decryption_table"))}
theirs_esp, theirs_ike = {}, set()
for uid, sa in decrypt.parse_log(log).items():
    if sa.get("Sk_ei") and sa.get("Sk_er"):
        theirs_ike.add((sa["Sk_ei"], sa["Sk_er"]))
    for ch in sa["children"]:
        if ch["child_responder"] is None:
            continue
        use_ini = ch["inbound"] == ch["child_responder"]
        key = ch["ini"] if use_ini else ch["res"]
        theirs_esp[ch["spi"]] = (ch["src"], ch["dst"], key)
lines, ok = [], True
for spi, (src, dst, key) in sorted(ours_esp.items()):
    t = theirs_esp.get(spi)
    same = t is not None and t[2] == key and (src == "*" or src == t[0]) and (dst == "*" or dst == t[1])
    ok &= same
    lines.append(f"ESP SPI 0x{spi} {src} -> {dst}: {'same key and addresses as charon' if same else 'DIFFERS from charon ' + repr(t and t[:2])}")
missing = sorted(set(theirs_esp) - set(ours_esp))
lines.append(f"charon ESP SAs not exported: {missing or 'none'}")
ike_same = bool(ours_ike) and ours_ike <= theirs_ike
lines.append(f"IKE SK_ei/SK_er: {len(ours_ike)} exported, {'all equal to charon' if ike_same else 'NOT found in charon log'}")
ok &= ike_same and len(ours_esp) >= 2
open(out, "w").write("\n".join(lines) + "\n")
sys.exit(0 if ok else 1)
PYEOF
    check "${S}: keys equal charon's" "$(tr '\n' ';' <"${R}/${S}.compare.txt")" test "${rc}" -eq 0
}

# ---------------------------------------------------------------------------
# 1. latchkey initiates.
S=initiator
MSG="keys witness $(date +%s)-$$ initiator"
PCAP=${R}/${S}.pcap
KEYS=${R}/${S}-keys
lk_tcpdump_start "${LK_NS_LEFT}" "${LK_VETH_LEFT}" "${PCAP}"
set +e
ip netns exec "${LK_NS_LEFT}" timeout 40 "${BIN}" -v connect "${LK_OUTER_RIGHT}" \
    --local "${LK_OUTER_LEFT}:500" --nat-t-port 4500 "${SEC[@]}" --inner-addr "${LK_INNER_LEFT}" \
    --send-udp "${LK_INNER_RIGHT}:9999" --message "${MSG}" --count 1 --wait 2 \
    --keys-wireshark "${KEYS}/wireshark" >"${R}/${S}.stdout" 2>"${R}/${S}.stderr"
rc=$?
set -e
lk_tcpdump_stop
check "${S}: latchkey connect --keys-wireshark" "exit ${rc}; $(grep -m1 'WARNING' "${R}/${S}.stderr" | cut -c1-90)..." \
    test "${rc}" -eq 0
check "${S}: echo came back" "$(grep -m1 '^received' "${R}/${S}.stdout")" grep -qF "${MSG}" "${R}/${S}.stdout"
verify "${S}" "${PCAP}" "${KEYS}" "${MSG}"

# ---------------------------------------------------------------------------
# 2. latchkey responds; `latchkey keys` asks it over the control socket.
S=responder
MSG="keys witness $(date +%s)-$$ responder"
PCAP=${R}/${S}.pcap
KEYS=${R}/${S}-keys
CTL=${R}/control.sock
lk_tcpdump_start "${LK_NS_LEFT}" "${LK_VETH_LEFT}" "${PCAP}"
lk_bg latchkey-listen ip netns exec "${LK_NS_LEFT}" env --default-signal=INT "${BIN}" -v listen \
    --ike 0.0.0.0:500 --natt 0.0.0.0:4500 "${SEC[@]}" --echo \
    --control "${CTL}" --allow-key-export >"${R}/${S}.stdout" 2>"${R}/${S}.stderr"
LPID=${LK_LAST_PID}
for ((i = 0; i < 50; i++)); do
    [[ -S ${CTL} ]] && break
    sleep 0.1
done
# Without --allow-key-export nobody gets keys: checked on the same binary below.
if lk_swanctl right --initiate --child lk --timeout 20 >"${R}/${S}-initiate.out" 2>&1; then
    ip netns exec "${LK_NS_RIGHT}" "${LK_PY}" "${LK_DIR}/udp_tool.py" send --bind "${LK_INNER_RIGHT}" \
        --to "${LK_INNER_LEFT}:7777" --message "${MSG}" --wait 2 --expect-reply >"${R}/${S}-send.out" 2>&1 || true
fi
set +e
"${BIN}" keys --wireshark "${KEYS}/wireshark" --control "${CTL}" >"${R}/${S}-keys.stdout" 2>"${R}/${S}-keys.stderr"
rc=$?
set -e
check "${S}: latchkey keys --control" "exit ${rc}: $(head -c 160 "${R}/${S}-keys.stderr")" test "${rc}" -eq 0
check "${S}: echo came back" "$(head -n1 "${R}/${S}-send.out")" grep -qF "${MSG}" "${R}/${S}-send.out"
lk_stop "${LPID}" INT
lk_tcpdump_stop
verify "${S}" "${PCAP}" "${KEYS}" "${MSG}"

# Key export is opt-in: a listen without --allow-key-export refuses.
CTL2=${R}/control-off.sock
lk_bg latchkey-listen-off ip netns exec "${LK_NS_LEFT}" env --default-signal=INT "${BIN}" listen \
    --ike "${LK_OUTER_LEFT}:500" --natt "${LK_OUTER_LEFT}:4500" "${SEC[@]}" \
    --control "${CTL2}" >"${R}/off.stdout" 2>"${R}/off.stderr"
OFFPID=${LK_LAST_PID}
for ((i = 0; i < 50; i++)); do
    [[ -S ${CTL2} ]] && break
    sleep 0.1
done
set +e
"${BIN}" keys --wireshark "${R}/off-keys" --control "${CTL2}" >"${R}/off-keys.stdout" 2>"${R}/off-keys.stderr"
rc=$?
set -e
lk_stop "${OFFPID}" INT
check "opt-in: listen without --allow-key-export refuses" "exit ${rc}: $(head -c 160 "${R}/off-keys.stderr")" \
    test "${rc}" -ne 0 -a ! -e "${R}/off-keys/esp_sa"

echo "keys: ${PASS} passed, ${FAIL} failed"
[[ ${FAIL} -eq 0 ]]
