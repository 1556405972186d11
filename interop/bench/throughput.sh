#!/usr/bin/env bash
# Tunnel throughput (root): iperf3 TCP between two namespaces through
#   bare    the bare veth (no tunnel)
#   ss-ss   strongSwan <-> strongSwan (two charons, kernel-libipsec, ESP in UDP)
#   lk-ss   latchkey daemon (TUN, its defaults: offload on) <-> strongSwan
#   lk-lk   latchkey daemon <-> latchkey daemon, ESP in UDP (force_encap)
#   lk-raw  latchkey <-> latchkey, raw ESP (protocol 50)
#   lk-off  latchkey <-> latchkey, ESP in UDP, TUN offload (offload = true)
#   lk-rawoff  latchkey <-> latchkey, raw ESP with TUN offload: the daemon's
#           own defaults between two peers without NAT
#   base-lk, base-off, base-raw, base-rawoff  as lk-lk, lk-off, lk-raw,
#           lk-rawoff with the binary in
#           LATCHKEY_BASE (an older build: a same-run baseline); added to the
#           default set when LATCHKEY_BASE is given
# all tunnel mode, AES-128-GCM, PSK, 10.98.0.0/24 === 10.99.0.0/24, in one
# run, configurations alternated within each round. The host's UDP socket
# buffers (net.core.{r,w}mem_{max,default}) are raised to BUF bytes for every
# side alike and restored on exit.
#
# Usage: interop/bench/throughput.sh [--seconds N] [--rounds R] [--only "cfg ..."]
#   LATCHKEY=path   latchkey binary (default: target/release/latchkey, built)
#   BUF=bytes       UDP buffer sysctls (default 8388608)
#   LATCHKEY_BASE=path  baseline latchkey binary for the base-* configurations
#   PERF=1          also `perf record -g` the initiating latchkey daemon (and the
#                   responding one: perf-b.*) during one extra lk-lk
#                   client->server run (interop/run/throughput/perf*)
#                   with `perf stat` syscall counts of both daemons (perf-stat*.txt)
#                   and the busy share of all CPUs in that window (perf-cpu.txt)
#   PERF_CFG=cfg    that run's configuration instead of lk-lk (e.g. lk-off)
#   MTU=bytes       the veth's MTU (default 1500, the kernel's); latchkey's TUN
#                   then gets MTU - 100 (room for ESP in UDP: default 1400)
#
# Namespaces lkp-a (198.51.100.1, inner 10.98.0.1) and lkp-b (198.51.100.2,
# inner 10.99.0.1), made here and deleted on exit. Output: a markdown table
# (configuration, median Mbit/s a->b and b->a, median TCP retransmits, ratio
# to strongSwan<->strongSwan, load average at the end of the round set);
# raw iperf3 JSON in interop/run/throughput/.
set -euo pipefail

DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=$(dirname "${DIR}")
RUN=${DIR}/run/throughput
SECS=5
ROUNDS=3
CONFIGS="bare ss-ss lk-ss lk-lk lk-raw lk-off lk-rawoff"
[[ -n ${LATCHKEY_BASE:-} ]] && CONFIGS="${CONFIGS} base-lk base-raw base-off"
while [[ $# -gt 0 ]]; do
    case $1 in
    --seconds) SECS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --only) CONFIGS=$2; shift 2 ;;
    *) echo "usage: $0 [--seconds N] [--rounds R] [--only \"cfg ...\"]" >&2; exit 2 ;;
    esac
done
[[ ${EUID} -eq 0 ]] || { echo "throughput: must run as root" >&2; exit 1; }
command -v iperf3 >/dev/null || { echo "throughput: iperf3 missing (apt-get install -y iperf3)" >&2; exit 1; }
CHARON=${CHARON:-/usr/lib/ipsec/charon}
BUF=${BUF:-8388608}
if [[ -n ${LATCHKEY:-} ]]; then
    BIN=$(realpath "${LATCHKEY}")
else
    (cd "${ROOT}" && cargo build -q --release -p latchkey)
    BIN=${ROOT}/target/release/latchkey
fi
BASE_BIN=""
[[ -n ${LATCHKEY_BASE:-} ]] && BASE_BIN=$(realpath "${LATCHKEY_BASE}")
CUR=${BIN}
NS_A=lkp-a
NS_B=lkp-b
OUT_A=198.51.100.1
OUT_B=198.51.100.2
IN_A=10.98.0.1
IN_B=10.99.0.1

rm -rf "${RUN}"
mkdir -p "${RUN}"
chmod 700 "${RUN}"
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# shellcheck source=interop/proc.sh
. "${DIR}/proc.sh"
SYSCTLS="net.core.rmem_max net.core.rmem_default net.core.wmem_max net.core.wmem_default"
declare -A OLD=()
for k in ${SYSCTLS}; do OLD[${k}]=$(sysctl -n "${k}"); done
cleanup() {
    local rc=$? k
    set +e
    stop_all
    ns_del
    for k in ${SYSCTLS}; do sysctl -qw "${k}=${OLD[${k}]}"; done
    exit "${rc}"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
for k in ${SYSCTLS}; do sysctl -qw "${k}=${BUF}"; done
log "UDP buffers: ${SYSCTLS// /, } = ${BUF} (were $(for k in ${SYSCTLS}; do printf '%s ' "${OLD[${k}]}"; done))"

ns_del
ip netns add "${NS_A}"
ip netns add "${NS_B}"
ip link add lkp-va netns "${NS_A}" type veth peer name lkp-vb netns "${NS_B}"
for ns in "${NS_A}" "${NS_B}"; do ip -n "${ns}" link set lo up; done
ip -n "${NS_A}" addr add "${OUT_A}/24" dev lkp-va
ip -n "${NS_B}" addr add "${OUT_B}/24" dev lkp-vb
MTU=${MTU:-1500}
TUN_MTU=$((MTU - 100))
ip -n "${NS_A}" link set lkp-va mtu "${MTU}" up
ip -n "${NS_B}" link set lkp-vb mtu "${MTU}" up
for ((i = 0; i < 30; i++)); do
    ip netns exec "${NS_A}" ping -c1 -W1 "${OUT_B}" >/dev/null 2>&1 && break
    sleep 0.2
done
PSK=${RUN}/psk
(umask 077 && printf 'lkp-%s' "$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')" >"${PSK}")

# inner NS ADDR / inner_del NS: charon's inner address on a veth pair of its own.
inner() {
    ip -n "$1" link add lkp-in0 type veth peer name lkp-in1
    ip -n "$1" link set lkp-in1 up
    ip -n "$1" addr add "$2/32" dev lkp-in0
    ip -n "$1" link set lkp-in0 up
}
inner_del() { ip -n "$1" link del lkp-in0 2>/dev/null || true; }

# charon NAME NS LOCAL REMOTE LTS RTS START
charon() {
    local name=$1 ns=$2 la=$3 ra=$4 lts=$5 rts=$6 start=$7 d=${RUN}/$1 sub
    rm -rf "${d}"
    mkdir -p "${d}/run"
    for sub in conf.d x509 x509ca x509aa x509ocsp x509crl x509ac pubkey private rsa ecdsa bliss pkcs8 pkcs12; do
        mkdir -p "${d}/swanctl/${sub}"
    done
    sed -e "s|@LOG@|${d}/charon.log|" -e "s|@VICI@|${d}/charon.vici|" -e 's|@IKE_LOGLEVEL@|1|' \
        -e 's|@RETRANSMIT_TRIES@|3|' -e 's|@RETRANSMIT_TIMEOUT@|2.0|' \
        -e 's|^\( *\)\(esp\|knl\|net\|cfg\) = [0-9]|\1\2 = 0|' \
        "${DIR}/strongswan/strongswan.conf.in" >"${d}/strongswan.conf"
    (umask 077 && sed -e "s|@LOCAL_ADDR@|${la}|" -e "s|@REMOTE_ADDR@|${ra}|" -e "s|@LOCAL_ID@|${la}|" \
        -e "s|@REMOTE_ID@|${ra}|" -e "s|@LOCAL_TS@|${lts}|" -e "s|@REMOTE_TS@|${rts}|" \
        -e "s|@START_ACTION@|${start}|" -e 's|@IKE_PROPOSAL@|aes128gcm16-prfsha256-x25519|' \
        -e 's|@ESP_PROPOSAL@|aes128gcm16|' -e "s|@PSK@|$(cat "${PSK}")|" \
        "${DIR}/strongswan/swanctl.conf.in" >"${d}/swanctl/swanctl.conf")
    # shellcheck disable=SC2016
    ip netns exec "${ns}" sh -c 'mount --bind "$1" /run && STRONGSWAN_CONF="$2" exec "$3"' \
        sh "${d}/run" "${d}/strongswan.conf" "${CHARON}" >"${d}/charon.stdout" 2>&1 &
    PIDS+=($!)
    for ((i = 0; i < 100; i++)); do
        [[ -S ${d}/charon.vici ]] && swanctl --stats --uri "unix://${d}/charon.vici" >/dev/null 2>&1 && break
        sleep 0.1
    done
    swanctl --load-all --file "${d}/swanctl/swanctl.conf" --uri "unix://${d}/charon.vici" >"${d}/load.out" 2>&1
}
swan() { local n=$1; shift; swanctl "$@" --uri "unix://${RUN}/${n}/charon.vici"; }

# daemon NAME NS LISTEN REMOTE(or "") LTS RTS ADDR EXTRA_TUN EXTRA_CONN
daemon() {
    local name=$1 ns=$2 listen=$3 remote=$4 lts=$5 rts=$6 addr=$7 xt=$8 xc=$9 f=${RUN}/$1.toml
    {
        printf '[daemon]\nlisten = "%s"\ncontrol = "%s"\n\n' "${listen}" "${RUN}/${name}.sock"
        printf '[daemon.tun]\nname = "lkp0"\nmtu = %d\naddresses = ["%s/24"]\n%b\n' "${TUN_MTU}" "${addr}" "${xt}"
        printf '[[connection]]\nname = "c"\n'
        [[ -n ${remote} ]] && printf 'remote = "%s"\n' "${remote}"
        printf 'auth = "psk"\npsk_file = "psk"\nlocal_id = "%s"\nremote_id = "%s"\n' "${listen}" \
            "$([[ ${listen} == "${OUT_A}" ]] && echo "${OUT_B}" || echo "${OUT_A}")"
        printf 'ike_proposals = "aes128gcm16-prfsha256-x25519"\nesp_proposals = "aes128gcm16"\n'
        printf 'local_ts = ["%s"]\nremote_ts = ["%s"]\n%b\n' "${lts}" "${rts}" "${xc}"
    } >"${f}"
    RUST_LOG=${RUST_LOG:-warn} ip netns exec "${ns}" "${CUR}" daemon --config "${f}" 2>"${RUN}/${name}.log" &
    PIDS+=($!)
    for ((i = 0; i < 50; i++)); do
        timeout 5 "${CUR}" connections --control "${RUN}/${name}.sock" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    log "daemon ${name} does not answer: $(tail -n 3 "${RUN}/${name}.log")"
    return 1
}
DAEMON_A_PID=""
DAEMON_B_PID=""

# up CFG: start configuration CFG; sets SRV (server inner/outer address).
up() {
    local xt="" xc="force_encap = true" cfg=$1
    SRV=${IN_B}
    CUR=${BIN}
    DAEMON_B_PID=""
    if [[ ${cfg} == base-* ]]; then
        [[ -n ${BASE_BIN} ]] || { log "${cfg}: no LATCHKEY_BASE"; return 1; }
        CUR=${BASE_BIN}
        cfg=lk-${cfg#base-}
    fi
    case ${cfg} in
    bare) SRV=${OUT_B}; return 0 ;;
    ss-ss)
        inner "${NS_A}" "${IN_A}"
        inner "${NS_B}" "${IN_B}"
        charon b "${NS_B}" "${OUT_B}" "${OUT_A}" 10.99.0.0/24 10.98.0.0/24 none
        charon a "${NS_A}" "${OUT_A}" "${OUT_B}" 10.98.0.0/24 10.99.0.0/24 none
        swan a --initiate --child lk --timeout 15 >"${RUN}/a/initiate.out" 2>&1
        ;;
    lk-ss)
        inner "${NS_B}" "${IN_B}"
        charon b "${NS_B}" "${OUT_B}" "${OUT_A}" 10.99.0.0/24 10.98.0.0/24 none
        daemon a "${NS_A}" "${OUT_A}" "${OUT_B}" 10.98.0.0/24 10.99.0.0/24 "${IN_A}" "" ""
        DAEMON_A_PID=${PIDS[-1]}
        timeout 30 "${BIN}" up c --control "${RUN}/a.sock" >"${RUN}/up.out" 2>&1
        ;;
    lk-lk | lk-raw | lk-off | lk-rawoff)
        # The daemon's default is offload on: lk-lk and lk-raw turn it off.
        xt="offload = false"
        [[ ${cfg} == lk-raw ]] && { xt="raw_esp = true\noffload = false"; xc="force_encap = false"; }
        [[ ${cfg} == lk-off ]] && xt="offload = true"
        [[ ${cfg} == lk-rawoff ]] && { xt="raw_esp = true\noffload = true"; xc="force_encap = false"; }
        daemon b "${NS_B}" "${OUT_B}" "" 10.99.0.0/24 10.98.0.0/24 "${IN_B}" "${xt}" "${xc}"
        DAEMON_B_PID=${PIDS[-1]}
        daemon a "${NS_A}" "${OUT_A}" "${OUT_B}" 10.98.0.0/24 10.99.0.0/24 "${IN_A}" "${xt}" "${xc}"
        DAEMON_A_PID=${PIDS[-1]}
        timeout 30 "${CUR}" up c --control "${RUN}/a.sock" >"${RUN}/up.out" 2>&1
        for ((i = 0; i < 25; i++)); do
            ip -n "${NS_B}" route show 10.98.0.0/24 | grep -q lkp0 && break
            sleep 0.2
        done
        ;;
    esac
    for ((i = 0; i < 20; i++)); do
        ip netns exec "${NS_A}" ping -c1 -W1 "${SRV}" >/dev/null 2>&1 && return 0
        sleep 0.3
    done
    log "$1: no ping through the tunnel"
    return 1
}
down() {
    stop_all
    inner_del "${NS_A}"
    inner_del "${NS_B}"
    ip -n "${NS_A}" link del lkp0 2>/dev/null || true
    ip -n "${NS_B}" link del lkp0 2>/dev/null || true
    sleep 0.3
}

# measure CFG ROUND DIR("" or -R): one iperf3 run, appends "cfg dir mbit retr" to results.
RES=${RUN}/results.txt
: >"${RES}"
measure() {
    local cfg=$1 r=$2 dir=$3 j=${RUN}/${1}-r${2}${3}.json bind
    bind=${SRV}
    ip netns exec "${NS_B}" iperf3 -s -B "${bind}" -1 >/dev/null 2>&1 &
    local sp=$!
    sleep 0.4
    ip netns exec "${NS_A}" timeout $((SECS + 20)) iperf3 -c "${SRV}" -t "${SECS}" -O 1 ${dir} -J >"${j}" 2>&1 || true
    wait "${sp}" 2>/dev/null || true
    python3 - "${j}" "${cfg}" "${dir:-fwd}" >>"${RES}" <<'EOF'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
    e = d["end"]
    bps = e["sum_received"]["bits_per_second"]
    rt = e["sum_sent"].get("retransmits", 0)
    print(sys.argv[2], sys.argv[3], f"{bps/1e6:.0f}", rt)
except Exception:
    print(sys.argv[2], sys.argv[3], "0", "-1")
EOF
    tail -n 1 "${RES}" >&2
}

for ((r = 1; r <= ROUNDS; r++)); do
    # Alternate the order: forward on odd rounds, reversed on even ones.
    order=${CONFIGS}
    ((r % 2 == 0)) && order=$(echo "${CONFIGS}" | tr ' ' '\n' | tac | tr '\n' ' ')
    for cfg in ${order}; do
        log "round ${r}: ${cfg}"
        if up "${cfg}"; then
            measure "${cfg}" "${r}" ""
            measure "${cfg}" "${r}" -R
        else
            echo "${cfg} fwd 0 -1" >>"${RES}"
            echo "${cfg} -R 0 -1" >>"${RES}"
        fi
        down
    done
done
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)

if [[ ${PERF:-0} == 1 ]] && command -v perf >/dev/null; then
    log "perf: ${PERF_CFG:-lk-lk}, ${SECS} s client->server, recording the initiating daemon (a)"
    if up "${PERF_CFG:-lk-lk}"; then
        ip netns exec "${NS_B}" iperf3 -s -B "${SRV}" -1 >/dev/null 2>&1 &
        sp=$!
        sleep 0.4
        ip netns exec "${NS_A}" iperf3 -c "${SRV}" -t $((SECS + 2)) -J >"${RUN}/perf-iperf.json" 2>&1 &
        cp=$!
        sleep 1
        # The decrypting side (b) too, when it is a latchkey daemon.
        bp=""
        if [[ -n ${DAEMON_B_PID} ]]; then
            perf record -g -p "${DAEMON_B_PID}" -o "${RUN}/perf-b.data" -- sleep "${SECS}" >/dev/null 2>&1 &
            bp=$!
        fi
        # Syscall counts of both daemons and the machine's CPU time over
        # the same window (perf-stat*.txt, perf-cpu.txt).
        ev=syscalls:sys_enter_write,syscalls:sys_enter_read,syscalls:sys_enter_sendmsg,syscalls:sys_enter_recvmsg,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_futex,context-switches,task-clock
        sa=""
        perf stat -e "${ev}" -p "${DAEMON_A_PID}" -o "${RUN}/perf-stat.txt" -- sleep "${SECS}" >/dev/null 2>&1 &
        sa=$!
        if [[ -n ${DAEMON_B_PID} ]]; then
            perf stat -e "${ev}" -p "${DAEMON_B_PID}" -o "${RUN}/perf-stat-b.txt" -- sleep "${SECS}" >/dev/null 2>&1 &
            sa="${sa} $!"
        fi
        cpu0=$(head -n 1 /proc/stat)
        perf record -g -p "${DAEMON_A_PID}" -o "${RUN}/perf.data" -- sleep "${SECS}" >/dev/null 2>&1 || true
        cpu1=$(head -n 1 /proc/stat)
        # user nice system idle iowait irq softirq: busy share of all CPUs
        python3 -c 'import sys
a=[int(x) for x in sys.argv[1].split()[1:8]]; b=[int(x) for x in sys.argv[2].split()[1:8]]
d=[y-x for x,y in zip(a,b)]; t=sum(d)
print(f"all CPUs over the perf window: busy {100*(t-d[3]-d[4])/t:.0f}% (user {100*d[0]/t:.0f}%, system {100*d[2]/t:.0f}%, softirq {100*d[6]/t:.0f}%, idle {100*d[3]/t:.0f}%)")' "${cpu0}" "${cpu1}" >"${RUN}/perf-cpu.txt" || true
        # shellcheck disable=SC2086
        wait ${sa} 2>/dev/null || true
        [[ -n ${bp} ]] && { wait "${bp}" 2>/dev/null || true; }
        wait "${cp}" "${sp}" 2>/dev/null || true
        for side in "" -b; do
            [[ -f ${RUN}/perf${side}.data ]] || continue
            perf report -i "${RUN}/perf${side}.data" --no-children --sort symbol --stdio 2>/dev/null | grep -v '^$' | head -n 120 >"${RUN}/perf${side}-report.txt" || true
            perf report -i "${RUN}/perf${side}.data" --children --sort symbol --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -n 60 >"${RUN}/perf${side}-children.txt" || true
        done
    fi
    down
fi

python3 - "${RES}" "${ROUNDS}" "${SECS}" "${LOAD}" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
names = {"bare": "bare veth (no tunnel)", "ss-ss": "strongSwan <-> strongSwan (kernel-libipsec)",
         "lk-ss": "latchkey daemon <-> strongSwan", "lk-lk": "latchkey <-> latchkey, ESP in UDP",
         "lk-raw": "latchkey <-> latchkey, raw ESP", "lk-off": "latchkey <-> latchkey, ESP in UDP, TUN offload",
         "lk-rawoff": "latchkey <-> latchkey, raw ESP, TUN offload (the daemon's defaults without NAT)",
         "base-lk": "baseline build: latchkey <-> latchkey, ESP in UDP",
         "base-raw": "baseline build: latchkey <-> latchkey, raw ESP",
         "base-off": "baseline build: latchkey <-> latchkey, ESP in UDP, TUN offload",
         "base-rawoff": "baseline build: latchkey <-> latchkey, raw ESP, TUN offload"}
order = []
for r in rows:
    if r[0] not in order:
        order.append(r[0])
def med(cfg, d, i):
    v = [int(r[i]) for r in rows if r[0] == cfg and r[1] == d and int(r[3]) >= 0]
    return (statistics.median(v), v) if v else (0, [])
base = {d: med("ss-ss", d, 2)[0] for d in ("fwd", "-R")}
print(f"{sys.argv[2]} rounds x {sys.argv[3]} s each way, iperf3 TCP a -> b and b -> a (-R); "
      f"median Mbit/s (all rounds), median retransmits; load average at the end {sys.argv[4]}")
print()
print("| configuration | a -> b Mbit/s | b -> a Mbit/s | retransmits a->b / b->a | vs strongSwan<->strongSwan | rounds a -> b |")
print("|---|---|---|---|---|---|")
for c in order:
    f, fv = med(c, "fwd", 2)
    b, bv = med(c, "-R", 2)
    rf, _ = med(c, "fwd", 3)
    rb, _ = med(c, "-R", 3)
    ratio = " / ".join(f"{x / base[d]:.1f}x" if base[d] else "-" for x, d in ((f, "fwd"), (b, "-R")))
    print(f"| {names.get(c, c)} | {f:.0f} | {b:.0f} | {rf:.0f} / {rb:.0f} | {ratio} | {' '.join(map(str, fv))} |")
EOF
