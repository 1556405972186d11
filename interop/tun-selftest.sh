#!/usr/bin/env bash
# The TUN datapath end to end (root): the OS stack's traffic through
# latchkey's userspace ESP, between network namespaces.
#
# Usage: interop/tun-selftest.sh [--no-strongswan]
#   TUN_GATEWAY=path   use this tun_gateway binary (default: build it with
#                      cargo and use target/debug/examples/tun_gateway)
#   TUN_IPERF=SECONDS  also measure iperf3 TCP throughput a -> b (and b -> a
#                      with -R) through the tunnel in each latchkey<->latchkey
#                      scenario and against strongSwan; reported, not checked
#                      (use a release build for figures: TUN_GATEWAY=target/release/...)
#
# Part 1, latchkey <-> latchkey (namespaces lkt-a and lkt-b, made and
# deleted here):
#   lkt-a 198.51.100.1/24 (veth lkt-va)  TUN lkt0 10.98.0.1/24  initiator
#   lkt-b 198.51.100.2/24 (veth lkt-vb)  TUN lkt0 10.99.0.1/24  responder
#   and fd98::1/64, fd99::1/64 on the same devices (inner IPv6).
#   Child SA 10.98.0.0/24,fd98::/64 === 10.99.0.0/24,fd99::/64, PSK. Routes to the remote net
#   come from latchkey (one per remote selector). Scenarios:
#   - udp-encap: ESP in UDP/4500 (force_encap), with R18 flow latching on:
#     ping, a 4 MiB TCP transfer checked byte for byte, a TCP connection's
#     latch ESTABLISHED while open and gone after FIN/FIN, a UDP flow's
#     latch gone after its idle timeout.
#   - raw-esp: ESP directly over IP (protocol 50, no NAT, no force_encap):
#     ping and the TCP transfer.
#   - offload: ESP in UDP with TUN offload (IFF_VNET_HDR, TSO): ping and
#     the TCP transfer, over inner IPv4 and inner IPv6 (the receiving
#     gateway merges the segments into GSO writes: our GRO).
#   - raw-esp6: as raw-esp, outer addresses IPv6 (2001:db8:51::1 and ::2
#     on the same veth).
# Part 2, latchkey <-> strongSwan (interop/lib.sh: lk-left, lk-right, the
# machine-wide harness lock): tun_gateway in lk-left (TUN 10.98.0.1/24)
# initiates to charon (kernel-libipsec) in lk-right; ping 10.99.0.1 and a
# TCP transfer to a listener on 10.99.0.1.
#
# Output: one `tun-selftest: NAME: pass|fail -- detail` line per check, and
# a last line `tun-selftest: N passed, M failed`; exit status 1 on any
# failure. Logs and status files in interop/run/tun-selftest/.
set -euo pipefail

DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "${DIR}")
RUN=${DIR}/run/tun-selftest
PY=${PY:-python3}
NS_A=lkt-a
NS_B=lkt-b
OUT_A=198.51.100.1
OUT_B=198.51.100.2
STRONGSWAN=1
UDP_IDLE=3
[[ ${1:-} == --no-strongswan ]] && STRONGSWAN=0

if [[ ${EUID} -ne 0 ]]; then
    echo "tun-selftest: skipped: must run as root (TUN devices, namespaces, raw sockets)"
    exit 0
fi

if [[ -n ${TUN_GATEWAY:-} ]]; then
    BIN=$(realpath "${TUN_GATEWAY}")
else
    (cd "${ROOT}" && cargo build -q -p endpoint --example tun_gateway)
    BIN=${ROOT}/target/debug/examples/tun_gateway
fi

rm -rf "${RUN}"
mkdir -p "${RUN}"
chmod 700 "${RUN}"

# Results go to a file too: checks run in subshells and background jobs.
RESULTS=${RUN}/results.txt
: >"${RESULTS}"
result() {
    local name=$1 st=$2 detail=$3
    echo "${st} ${name}" >>"${RESULTS}"
    echo "tun-selftest: ${name}: ${st} -- ${detail}"
}
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# shellcheck source=interop/proc.sh
. "${DIR}/proc.sh"
SUMMARY_DONE=0
cleanup() {
    local rc=$?
    set +e
    stop_all
    ns_del
    if [[ ${SUMMARY_DONE} == 0 && -e ${RESULTS:-/nonexistent} ]]; then
        echo "tun-selftest: aborted (exit ${rc}) after the checks above"
        echo "tun-selftest: $(grep -c '^pass ' "${RESULTS}") passed, $(($(grep -c '^fail ' "${RESULTS}") + 1)) failed"
        rc=1
    fi
    exit "${rc}"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ns_setup() {
    ns_del
    ip netns add "${NS_A}"
    ip netns add "${NS_B}"
    ip link add lkt-va netns "${NS_A}" type veth peer name lkt-vb netns "${NS_B}"
    ip -n "${NS_A}" link set lo up
    ip -n "${NS_B}" link set lo up
    ip -n "${NS_A}" addr add 198.51.100.1/24 dev lkt-va
    ip -n "${NS_B}" addr add 198.51.100.2/24 dev lkt-vb
    ip -n "${NS_A}" addr add 2001:db8:51::1/64 dev lkt-va nodad
    ip -n "${NS_B}" addr add 2001:db8:51::2/64 dev lkt-vb nodad
    ip -n "${NS_A}" link set lkt-va up
    ip -n "${NS_B}" link set lkt-vb up
    local i
    for ((i = 0; i < 30; i++)); do
        ip netns exec "${NS_A}" ping -c1 -W1 198.51.100.2 >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "tun-selftest: veth does not pass traffic" >&2
    return 1
}

# json FILE PYTHON-EXPRESSION (over `d`, the status file's JSON): prints it.
json() {
    "${PY}" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2" 2>/dev/null
}

# wait_child STATUS_FILE SECONDS: until the gateway shows a child SA.
wait_child() {
    local f=$1 i
    for ((i = 0; i < $2 * 5; i++)); do
        [[ -s ${f} ]] && [[ $(json "${f}" 'len(d["status"]["child_sas"])') -ge 1 ]] 2>/dev/null && return 0
        sleep 0.2
    done
    return 1
}

# start_gw NS NAME ARGS...: a gateway in NS, logs and status under RUN/NAME.
start_gw() {
    local ns=$1 name=$2
    shift 2
    RUST_LOG=${RUST_LOG:-info} ip netns exec "${ns}" "${BIN}" --status-file "${RUN}/${name}.json" "$@" \
        >"${RUN}/${name}.out" 2>"${RUN}/${name}.log" &
    PIDS+=("$!")
}

# eventually SECONDS CMD...: true as soon as CMD is (polled every 0.2 s).
eventually() {
    local secs=$1 i
    shift
    for ((i = 0; i < secs * 5; i++)); do
        "$@" && return 0
        sleep 0.2
    done
    return 1
}
no_latch() { ! has_latch "$@"; }

# has_latch STATUS_FILE PATTERN: is there a latch line matching PATTERN?
has_latch() {
    "${PY}" -c '
import json, re, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if any(re.search(sys.argv[2], l) for l in d["latches"]) else 1)' "$1" "$2"
}

# tcp_transfer NAME NS_SERVER ADDR NS_CLIENT [HOLD]: 4 MiB through the tunnel.
tcp_transfer() {
    local name=$1 nss=$2 addr=$3 nsc=$4 hold=${5:-0} i
    local base=${RUN}/${name//\//-}
    local blob=${RUN}/blob.bin got=${base}.received
    [[ -s ${blob} ]] || head -c $((4 * 1024 * 1024)) /dev/urandom >"${blob}"
    rm -f "${got}" "${got}.ready"
    ip netns exec "${nss}" "${PY}" "${DIR}/tcp_blob.py" serve --bind "${addr}" --port 5001 \
        --out "${got}" --ready "${got}.ready" --timeout 60 2>"${base}.server.log" &
    local spid=$!
    PIDS+=("${spid}")
    for ((i = 0; i < 50; i++)); do
        [[ -e ${got}.ready ]] && break
        sleep 0.1
    done
    if ip netns exec "${nsc}" timeout 90 "${PY}" "${DIR}/tcp_blob.py" send --to "${addr}" --port 5001 \
        --file "${blob}" --hold "${hold}" >"${base}.client.out" 2>&1; then
        wait "${spid}" 2>/dev/null || true
        if cmp -s "${blob}" "${got}"; then
            result "${name}" pass "4 MiB byte for byte: $(cat "${base}.client.out")"
            return 0
        fi
        result "${name}" fail "received $(stat -c %s "${got}" 2>/dev/null || echo 0) bytes, differ from the 4 MiB sent"
    else
        result "${name}" fail "client failed: $(tail -c 300 "${base}.client.out")"
    fi
    stop_pid "${spid}"
    return 1
}

ping_check() {
    local name=$1 ns=$2 addr=$3 out
    if out=$(ip netns exec "${ns}" ping -c 3 -i 0.3 -W 2 "${addr}" 2>&1); then
        result "${name}" pass "$(echo "${out}" | grep -E 'packets transmitted|rtt' | tr '\n' ' ')"
    else
        result "${name}" fail "$(echo "${out}" | tail -n 3 | tr '\n' ' ')"
    fi
}

# iperf NAME NS_SERVER ADDR NS_CLIENT: TUN_IPERF seconds of iperf3 TCP each
# way; prints `tun-selftest: NAME/iperf: ...` lines (measurements only).
iperf() {
    [[ -n ${TUN_IPERF:-} ]] || return 0
    if ! command -v iperf3 >/dev/null 2>&1; then
        echo "tun-selftest: $1/iperf: skipped: iperf3 not installed (interop/setup.sh)"
        return 0
    fi
    local name=$1 nss=$2 addr=$3 nsc=$4 dir base=${RUN}/${1}-iperf
    for dir in "" -R; do
        rm -f "${base}.pid"
        ip netns exec "${nss}" iperf3 -s -B "${addr}" -1 -D -I "${base}.pid" >/dev/null 2>&1 || return 0
        sleep 0.5
        ip netns exec "${nsc}" timeout $((TUN_IPERF + 20)) iperf3 -c "${addr}" -t "${TUN_IPERF}" ${dir} -J \
            >"${base}${dir}.json" 2>&1 || true
        echo "tun-selftest: ${name}/iperf${dir:- }: $("${PY}" "${DIR}/tcp_blob.py" iperf-summary "${base}${dir}.json")"
        if [[ -s ${base}.pid ]]; then
            kill "$(cat "${base}.pid")" 2>/dev/null || true
        fi
    done
}

# no_sa_check SCENARIO STATUS_FILE: packets routed into the TUN device
# that no child SA covers are dropped and counted, never sent (RFC 4301
# 5.1, R6): ping 10.97.0.1 through lkt0 in lkt-a, watch the veth for it.
no_sa_reason='TUN: no child SA covers the packet'
no_sa_count() {
    "${PY}" -c '
import json, sys
d = json.load(open(sys.argv[1]))["status"]["drops"]
print(sum(n for r, n in d if r == sys.argv[2]))' "$1" "${no_sa_reason}" 2>/dev/null || echo 0
}
no_sa_check() {
    local S=$1 A=$2 before after pcap=${RUN}/${1}-no-sa.pcap leaked
    ip -n "${NS_A}" route add 10.97.0.0/24 dev lkt0
    ip netns exec "${NS_A}" tcpdump -i lkt-va -n -U -w "${pcap}" 'host 10.97.0.1' 2>/dev/null &
    local tdpid=$!
    PIDS+=("${tdpid}")
    sleep 0.8
    before=$(no_sa_count "${A}")
    ip netns exec "${NS_A}" ping -c 3 -i 0.2 -W 1 10.97.0.1 >/dev/null 2>&1 || true
    sleep 1.2
    after=$(no_sa_count "${A}")
    stop_pid "${tdpid}"
    leaked=$(tcpdump -n -r "${pcap}" 2>/dev/null | grep -c . || true)
    if ((after - before >= 3)) && ((leaked == 0)); then
        result "${S}/no-sa-drop" pass "3 pings outside the selectors: '${no_sa_reason}' ${before} -> ${after}, none on the wire"
    else
        result "${S}/no-sa-drop" fail "drop count ${before} -> ${after}, ${leaked} packets to 10.97.0.1 on the veth"
    fi
    ip -n "${NS_A}" route del 10.97.0.0/24 dev lkt0 2>/dev/null || true
}

# counters_ok STATUS_FILE: the child SA counted the 4 MiB transfer.
counters_ok() {
    local pout pin
    pout=$(json "$1" 'd["status"]["child_sas"][0][1]["packets_out"]')
    pin=$(json "$1" 'd["status"]["child_sas"][0][1]["packets_in"]')
    # In: the receiver's ACKs. With TUN offload b writes coalesced
    # segments (GRO, up to 64 KiB a write), and its TCP acknowledges per
    # write: 4 MiB is at least 64 writes, at least 32 ACKs with delayed
    # ACKs (without offload, about one ACK per two segments: over 1000).
    [[ ${pout:-0} -gt 2800 && ${pin:-0} -gt 30 ]]
}

# run_pair SCENARIO ENCAP(udp|raw) LATCH(0|1) [EXTRA GATEWAY ARGS...]
run_pair() {
    local S=$1 encap=$2 latch=$3
    shift 3
    local -a extra=("$@")
    [[ ${encap} == raw ]] && extra+=(--no-encap)
    [[ ${latch} == 1 ]] && extra+=(--latch-flows --udp-idle "${UDP_IDLE}")
    log "scenario ${S}: encap=${encap} latch_flows=${latch}"
    ns_setup
    local psk=${RUN}/psk
    (umask 077 && printf 'lkt-%s' "$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')" >"${psk}")
    start_gw "${NS_B}" "${S}-b" --local "${OUT_B}" --tun lkt0 --tun-addr 10.99.0.1/24 \
        --tun-addr fd99::1/64 --local-ts 10.99.0.0/24,fd99::/64 --remote-ts 10.98.0.0/24,fd98::/64 \
        --psk-file "${psk}" "${extra[@]}"
    local i
    for ((i = 0; i < 50; i++)); do
        [[ -s ${RUN}/${S}-b.json ]] && break
        sleep 0.1
    done
    start_gw "${NS_A}" "${S}-a" --local "${OUT_A}" --connect "${OUT_B}" --tun lkt0 \
        --tun-addr 10.98.0.1/24 --tun-addr fd98::1/64 --local-ts 10.98.0.0/24,fd98::/64 \
        --remote-ts 10.99.0.0/24,fd99::/64 --psk-file "${psk}" "${extra[@]}"
    local A=${RUN}/${S}-a.json B=${RUN}/${S}-b.json
    if ! wait_child "${A}" 20; then
        result "${S}/child-sa" fail "no child SA within 20 s (see ${RUN}/${S}-a.log)"
        stop_all
        return 0
    fi
    local want=True
    [[ ${encap} == raw ]] && want=False
    local got
    got=$(json "${A}" 'd["status"]["child_sas"][0][0]["udp_encap"]')
    if [[ ${got} == "${want}" ]]; then
        result "${S}/child-sa" pass "child SA up, udp_encap=${got}, suite $(json "${A}" 'd["status"]["child_sas"][0][0]["suite"]')"
    else
        result "${S}/child-sa" fail "udp_encap=${got}, want ${want}"
    fi
    ping_check "${S}/ping" "${NS_A}" 10.99.0.1
    ping_check "${S}/ping6" "${NS_A}" fd99::1
    if [[ ${S} == udp-encap ]]; then
        no_sa_check "${S}" "${A}"
    fi
    if [[ ${latch} == 1 ]]; then
        # R18: the transfer holds its connection open 3 s after sending.
        tcp_transfer "${S}/tcp" "${NS_B}" 10.99.0.1 "${NS_A}" 3 &
        local tpid=$! tcp_seen=0 udp_seen=0
        if eventually 4 has_latch "${A}" '^tcp 10\.98\.0\.1:[0-9]+ -> 10\.99\.0\.1:5001 ESTABLISHED' &&
            eventually 2 has_latch "${B}" '^tcp 10\.99\.0\.1:5001 -> 10\.98\.0\.1:[0-9]+ ESTABLISHED'; then
            result "${S}/r18-tcp-latched" pass "open TCP connection latched ESTABLISHED on both gateways (outbound SYN on a, inbound SYN on b)"
            tcp_seen=1
        else
            result "${S}/r18-tcp-latched" fail "latches a: $(json "${A}" 'd["latches"]') b: $(json "${B}" 'd["latches"]')"
        fi
        wait "${tpid}" || true
        if [[ ${tcp_seen} == 1 ]] && eventually 5 no_latch "${A}" '^tcp .*:5001' && eventually 2 no_latch "${B}" '^tcp 10\.99\.0\.1:5001'; then
            result "${S}/r18-tcp-released" pass "latches released after FIN from both sides"
        else
            result "${S}/r18-tcp-released" fail "latches a: $(json "${A}" 'd["latches"]') b: $(json "${B}" 'd["latches"]')"
        fi
        ip netns exec "${NS_A}" "${PY}" "${DIR}/tcp_blob.py" udp-send --to 10.99.0.1 --port 5002 \
            --sport 5003 --text "r18 udp flow" || true
        if eventually 2 has_latch "${A}" '^udp 10\.98\.0\.1:5003 -> 10\.99\.0\.1:5002 ESTABLISHED'; then
            result "${S}/r18-udp-latched" pass "UDP flow latched on its first packet"
            udp_seen=1
        else
            result "${S}/r18-udp-latched" fail "latches a: $(json "${A}" 'd["latches"]')"
        fi
        if [[ ${udp_seen} == 1 ]] && eventually 8 no_latch "${A}" '^udp 10\.98\.0\.1:5003'; then
            result "${S}/r18-udp-idle" pass "UDP flow latch released after the ${UDP_IDLE} s idle timeout"
        else
            result "${S}/r18-udp-idle" fail "latches a: $(json "${A}" 'd["latches"]')"
        fi
    else
        tcp_transfer "${S}/tcp" "${NS_B}" 10.99.0.1 "${NS_A}" || true
    fi
    if [[ ${S} == offload ]]; then
        # Inner IPv6: the receiving gateway's merged TCPv6 GSO writes.
        tcp_transfer "${S}/tcp6" "${NS_B}" fd99::1 "${NS_A}" || true
    fi
    iperf "${S}" "${NS_B}" 10.99.0.1 "${NS_A}"
    # The status file is rewritten every 0.5 s: poll until it shows the
    # transfer (4 MiB is over 2800 packets of at most 1400 octets).
    eventually 3 counters_ok "${A}" || true
    local pout pin
    pout=$(json "${A}" 'd["status"]["child_sas"][0][1]["packets_out"]')
    pin=$(json "${A}" 'd["status"]["child_sas"][0][1]["packets_in"]')
    log "${S}: a: packets out ${pout} in ${pin}; drops a: $(json "${A}" 'd["status"]["drops"]') b: $(json "${B}" 'd["status"]["drops"]')"
    if counters_ok "${A}"; then
        result "${S}/counters" pass "child SA traffic on a: ${pout} packets out, ${pin} in"
    else
        result "${S}/counters" fail "child SA traffic on a: ${pout} packets out, ${pin} in"
    fi
    if [[ ${S} == offload ]]; then
        # Our GRO (driver/gro.rs): the receiving gateway b wrote the
        # transfers' segments as merged GSO writes, several packets each.
        local mw mp
        mw=$(json "${B}" 'd["status"]["tun_merged_writes"]')
        mp=$(json "${B}" 'd["status"]["tun_merged_packets"]')
        if [[ ${mw:-0} -gt 0 && ${mp:-0} -gt $((2 * ${mw:-0})) ]]; then
            result "${S}/gro" pass "b merged ${mp} packets into ${mw} GSO writes"
        else
            result "${S}/gro" fail "b merged writes ${mw:-none}, packets ${mp:-none}"
        fi
        # Our TSO cut (driver/tso.rs): the sending gateway a read the
        # stack's 64 KiB TCP packets whole and cut them into segments
        # written straight into its ESP send buffer.
        local cr cs
        cr=$(json "${A}" 'd["status"]["tun_cut_reads"]')
        cs=$(json "${A}" 'd["status"]["tun_cut_segments"]')
        if [[ ${cr:-0} -gt 0 && ${cs:-0} -gt $((2 * ${cr:-0})) ]]; then
            result "${S}/tso" pass "a cut ${cr} reads into ${cs} segments"
        else
            result "${S}/tso" fail "a cut reads ${cr:-none}, segments ${cs:-none}"
        fi
    fi
    stop_all
}

run_pair udp-encap udp 1
run_pair raw-esp raw 0
run_pair offload udp 0 --offload
# Outer IPv6: IKE over IPv6 and raw ESP over IPv6.
OUT_A=2001:db8:51::1 OUT_B=2001:db8:51::2 run_pair raw-esp6 raw 0
ns_del

# ---------------------------------------------------------------------------
# Part 2: latchkey's TUN gateway against strongSwan (lib.sh, in a subshell so
# its traps and lock stay its own).
if [[ ${STRONGSWAN} == 1 ]]; then
    if ! command -v swanctl >/dev/null 2>&1 || [[ ! -x /usr/lib/ipsec/charon ]]; then
        echo "tun-selftest: strongswan: skipped: charon/swanctl not installed (interop/setup.sh)"
    else
        set +e
        (
            set -euo pipefail
            # shellcheck source=interop/lib.sh
            . "${DIR}/lib.sh"
            lk_init tun-strongswan
            R=${LK_RUN}
            lk_ns_create
            lk_psk "${R}/psk"
            lk_charon_start right "${LK_NS_RIGHT}" "${LK_OUTER_RIGHT}" "${LK_OUTER_LEFT}" \
                "${LK_OUTER_RIGHT}" "${LK_OUTER_LEFT}" "${LK_TS_RIGHT}" "${LK_TS_LEFT}" none "${R}/psk"
            blob=${R}/blob.bin
            head -c $((4 * 1024 * 1024)) /dev/urandom >"${blob}"
            got=${R}/received
            lk_bg tcp-server ip netns exec "${LK_NS_RIGHT}" "${LK_PY}" "${DIR}/tcp_blob.py" serve \
                --bind "${LK_INNER_RIGHT}" --port 5001 --out "${got}" --ready "${got}.ready" --timeout 60
            lk_bg tun-gateway env RUST_LOG="${RUST_LOG:-info}" ip netns exec "${LK_NS_LEFT}" "${BIN}" \
                --local "${LK_OUTER_LEFT}" --connect "${LK_OUTER_RIGHT}" --tun lkt0 \
                --tun-addr "${LK_INNER_LEFT}/24" --local-ts "${LK_TS_LEFT}" --remote-ts "${LK_TS_RIGHT}" \
                --psk-file "${R}/psk" --id "${LK_OUTER_LEFT}" --remote-id "${LK_OUTER_RIGHT}" \
                --ike-proposal "${LK_IKE_PROPOSAL}" --esp-proposal "${LK_ESP_PROPOSAL}" \
                --status-file "${R}/gw.json" >"${R}/gw.out" 2>"${R}/gw.log"
            say() { result "strongswan/$1" "$2" "$3"; }
            fails=0
            if lk_wait_child right 20; then
                say child-sa pass "charon INSTALLED the child SA"
            else
                say child-sa fail "no INSTALLED child SA at charon in 20 s (${R}/gw.log, ${R}/right/charon.log)"
                exit 1
            fi
            if out=$(ip netns exec "${LK_NS_LEFT}" ping -c 3 -i 0.3 -W 2 "${LK_INNER_RIGHT}" 2>&1); then
                say ping pass "$(echo "${out}" | grep -E 'packets transmitted' | tr '\n' ' ')"
            else
                say ping fail "$(echo "${out}" | tail -n 2 | tr '\n' ' ')"
                fails=$((fails + 1))
            fi
            if ip netns exec "${LK_NS_LEFT}" timeout 90 "${LK_PY}" "${DIR}/tcp_blob.py" send \
                --to "${LK_INNER_RIGHT}" --port 5001 --file "${blob}" >"${R}/client.out" 2>&1 &&
                sleep 0.5 && cmp -s "${blob}" "${got}"; then
                say tcp pass "4 MiB byte for byte to ${LK_INNER_RIGHT}: $(cat "${R}/client.out")"
            else
                say tcp fail "$(tail -c 300 "${R}/client.out"); received $(stat -c %s "${got}" 2>/dev/null || echo 0) bytes"
                fails=$((fails + 1))
            fi
            iperf strongswan "${LK_NS_RIGHT}" "${LK_INNER_RIGHT}" "${LK_NS_LEFT}"
            exit "${fails}"
        )
        rc=$?
        set -e
        if [[ ${rc} -ne 0 ]] && ! grep -q '^fail strongswan/' "${RESULTS}"; then
            result strongswan/run fail "the strongSwan run stopped (exit ${rc}); see ${DIR}/run/tun-strongswan/"
        fi
    fi
fi

PASSED=$(grep -c '^pass ' "${RESULTS}" || true)
FAILED=$(grep -c '^fail ' "${RESULTS}" || true)
SUMMARY_DONE=1
echo "tun-selftest: ${PASSED} passed, ${FAILED} failed"
[[ ${FAILED} -eq 0 ]]
