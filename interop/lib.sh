# shellcheck shell=bash
# Library of the latchkey strongSwan interop harness. Source it from a
# `bash -euo pipefail` script running as root:
#
#   . "$(dirname "$0")/lib.sh"
#   lk_init NAME          # lock, run dir interop/run/NAME, cleanup trap
#   lk_ns_create          # lk-left / lk-right, veth, addresses
#   lk_charon_start right lk-right 192.0.2.2 192.0.2.1 ...   (see below)
#
# Everything it starts (namespaces, daemons, listeners, tcpdump) is torn down
# by the EXIT trap, by process id, also on error or Ctrl-C.

LK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LK_RUN_ROOT=${LK_RUN_ROOT:-${LK_DIR}/run}
LK_NS_LEFT=${LK_NS_LEFT:-lk-left}
LK_NS_RIGHT=${LK_NS_RIGHT:-lk-right}
LK_VETH_LEFT=lk-l0
LK_VETH_RIGHT=lk-r0
LK_OUTER_LEFT=192.0.2.1
LK_OUTER_RIGHT=192.0.2.2
LK_INNER_LEFT=10.98.0.1
LK_INNER_RIGHT=10.99.0.1
# shellcheck disable=SC2034 # used by the scripts that source this file
LK_TS_LEFT=10.98.0.0/24
# shellcheck disable=SC2034
LK_TS_RIGHT=10.99.0.0/24
LK_IKE_PROPOSAL=${LK_IKE_PROPOSAL:-aes128gcm16-prfsha256-x25519}
LK_ESP_PROPOSAL=${LK_ESP_PROPOSAL:-aes128gcm16}
LK_CHARON=${LK_CHARON:-/usr/lib/ipsec/charon}
LK_PY=${LK_PY:-/usr/bin/python3}
# ike/chd log level of the charons: 4 logs the (test) keys for tshark.
LK_IKE_LOGLEVEL=${LK_IKE_LOGLEVEL:-4}

LK_PIDS=()          # background processes we started, killed on exit
LK_PID_NAMES=()
LK_RUN=""

lk_log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
lk_die() { lk_log "FATAL: $*"; exit 1; }

lk_require() {
    [[ ${EUID} -eq 0 ]] || lk_die "must run as root (network namespaces)"
    local t
    for t in ip ping tcpdump tshark swanctl "${LK_CHARON}" "${LK_PY}" flock timeout; do
        command -v "$t" >/dev/null 2>&1 || lk_die "missing $t: run interop/setup.sh"
    done
}

# lk_init NAME: take the harness lock (the namespace names are fixed, so two
# runs must not overlap), make a fresh run dir, install the cleanup trap.
lk_init() {
    local name=$1
    lk_require
    mkdir -p "${LK_RUN_ROOT}"
    # LK_LOCK_HELD=1: a parent run (selftest.sh) holds the lock for us.
    if [[ ${LK_LOCK_HELD:-0} != 1 ]]; then
        # One lock per machine (not per checkout): the namespace names
        # are machine-wide.
        local lock=${LK_LOCK:-/tmp/latchkey-interop.lock}
        exec {LK_LOCK_FD}>"${lock}"
        if ! flock -w "${LK_LOCK_WAIT:-900}" "${LK_LOCK_FD}"; then
            lk_die "another interop run holds ${lock}"
        fi
    fi
    LK_RUN=${LK_RUN_ROOT}/${name}
    rm -rf "${LK_RUN}"
    mkdir -p "${LK_RUN}"
    chmod 700 "${LK_RUN}"
    trap lk_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# lk_bg NAME CMD...: start CMD in the background, remember its pid.
# `ip netns exec` execs its command, so the pid is the daemon's own.
lk_bg() {
    local name=$1
    shift
    "$@" &
    LK_PIDS+=("$!")
    LK_PID_NAMES+=("${name}")
    LK_LAST_PID=$!
}

# lk_stop PID [SIGNAL]: signal one process we started and reap it (5 s, then KILL).
lk_stop() {
    local pid=$1 sig=${2:-TERM} i
    kill -0 "${pid}" 2>/dev/null || { wait "${pid}" 2>/dev/null || true; return 0; }
    kill -s "${sig}" "${pid}" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "${pid}" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "${pid}" 2>/dev/null; then
        lk_log "pid ${pid} ignored SIG${sig}; sending KILL"
        kill -s KILL "${pid}" 2>/dev/null || true
    fi
    wait "${pid}" 2>/dev/null || true
}

# Stop every process we started, newest first.
lk_cleanup_procs() {
    local i
    for ((i = ${#LK_PIDS[@]} - 1; i >= 0; i--)); do
        lk_stop "${LK_PIDS[i]}"
    done
    LK_PIDS=()
    LK_PID_NAMES=()
}

lk_cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    lk_cleanup_procs
    lk_ns_destroy
    return "${rc}"
}

# Kill what is left in a namespace of ours from an earlier, killed run:
# only processes inside lk-left/lk-right, which only this harness creates.
lk_ns_reap() {
    local ns=$1 pid
    ip netns list 2>/dev/null | grep -qw "^${ns}" || return 0
    for pid in $(ip netns pids "${ns}" 2>/dev/null); do
        lk_log "reaping stale pid ${pid} ($(tr '\0' ' ' <"/proc/${pid}/cmdline" 2>/dev/null)) in ${ns}"
        kill -s TERM "${pid}" 2>/dev/null || true
    done
    sleep 0.5
    for pid in $(ip netns pids "${ns}" 2>/dev/null); do
        kill -s KILL "${pid}" 2>/dev/null || true
    done
}

lk_ns_destroy() {
    local ns
    for ns in "${LK_NS_LEFT}" "${LK_NS_RIGHT}"; do
        if ip netns list 2>/dev/null | grep -qw "^${ns}"; then
            lk_ns_reap "${ns}"
            ip netns del "${ns}" 2>/dev/null || lk_log "could not delete netns ${ns}"
        fi
    done
}

# lk_ns_create: lk-left (192.0.2.1/24) <-veth-> lk-right (192.0.2.2/24) and
# strongSwan's inner address 10.99.0.1/32 on an interface of its own in lk-right.
# latchkey's inner address 10.98.0.1 lives only inside latchkey (the
# self-test adds it on a dummy in lk-left with lk_ns_add_inner_left).
lk_ns_create() {
    lk_ns_destroy
    ip netns add "${LK_NS_LEFT}"
    ip netns add "${LK_NS_RIGHT}"
    ip link add "${LK_VETH_LEFT}" netns "${LK_NS_LEFT}" type veth peer name "${LK_VETH_RIGHT}" netns "${LK_NS_RIGHT}"
    ip -n "${LK_NS_LEFT}" link set lo up
    ip -n "${LK_NS_RIGHT}" link set lo up
    ip -n "${LK_NS_LEFT}" addr add "${LK_OUTER_LEFT}/24" dev "${LK_VETH_LEFT}"
    ip -n "${LK_NS_RIGHT}" addr add "${LK_OUTER_RIGHT}/24" dev "${LK_VETH_RIGHT}"
    ip -n "${LK_NS_LEFT}" link set "${LK_VETH_LEFT}" up
    ip -n "${LK_NS_RIGHT}" link set "${LK_VETH_RIGHT}" up
    lk_inner_iface "${LK_NS_RIGHT}" "${LK_INNER_RIGHT}"
    # The veth must pass traffic before anyone relies on it.
    local i
    for ((i = 0; i < 30; i++)); do
        ip netns exec "${LK_NS_LEFT}" ping -c1 -W1 "${LK_OUTER_RIGHT}" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    lk_die "veth ${LK_OUTER_LEFT} -> ${LK_OUTER_RIGHT} does not pass traffic"
}

lk_ns_add_inner_left() {
    lk_inner_iface "${LK_NS_LEFT}" "${LK_INNER_LEFT}"
}

# lk_inner_iface NS ADDR: put an inner address on an interface of its own.
# A dummy interface when the kernel has them; this kernel has no dummy
# driver ("Error: Unknown device type."), so otherwise a veth pair with both
# ends in NS (lk-in0 holds the address, lk-in1 is just up).
lk_inner_iface() {
    local ns=$1 addr=$2
    if ip -n "${ns}" link add lk-in0 type dummy 2>/dev/null; then
        :
    else
        ip -n "${ns}" link add lk-in0 type veth peer name lk-in1
        ip -n "${ns}" link set lk-in1 up
    fi
    ip -n "${ns}" addr add "${addr}/32" dev lk-in0
    ip -n "${ns}" link set lk-in0 up
}

# lk_psk FILE: a fresh random test PSK, ASCII, no trailing newline, mode 600.
# It only ever goes into files (never on a command line).
lk_psk() {
    local file=$1 key
    key="lk-test-$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
    (umask 077 && printf '%s' "${key}" >"${file}")
}

# lk_render TEMPLATE OUT KEY=VALUE...: replace @KEY@ by VALUE.
lk_render() {
    local tpl=$1 out=$2 kv k v
    shift 2
    local -a args=()
    for kv in "$@"; do
        k=${kv%%=*}
        v=${kv#*=}
        [[ ${v} != *'|'* && ${v} != *\\* && ${v} != *'&'* ]] || lk_die "lk_render: bad value for ${k}"
        args+=(-e "s|@${k}@|${v}|g")
    done
    (umask 077 && sed "${args[@]}" "${tpl}" >"${out}")
    if grep -q '@[A-Z_]*@' "${out}"; then
        lk_die "lk_render: unreplaced placeholder in ${out}: $(grep -o '@[A-Z_]*@' "${out}" | sort -u | tr '\n' ' ')"
    fi
}

# lk_charon_start NAME NS LOCAL_ADDR REMOTE_ADDR LOCAL_ID REMOTE_ID LOCAL_TS REMOTE_TS START_ACTION PSK_FILE
# Renders the configs into interop/run/<scenario>/NAME/, starts charon in NS
# with a private /run, waits for its vici socket and loads the config.
# Sets LK_CHARON_PID_<NAME>; use lk_swanctl NAME ... to drive it.
lk_charon_start() {
    local name=$1 ns=$2 laddr=$3 raddr=$4 lid=$5 rid=$6 lts=$7 rts=$8 start=$9 pskf=${10}
    local d=${LK_RUN}/${name}
    mkdir -p "${d}/run" "${d}/swanctl"
    local psk
    psk=$(cat "${pskf}")
    lk_render "${LK_DIR}/strongswan/strongswan.conf.in" "${d}/strongswan.conf" \
        "LOG=${d}/charon.log" "VICI=${d}/charon.vici" "IKE_LOGLEVEL=${LK_IKE_LOGLEVEL}" \
        "RETRANSMIT_TRIES=${LK_RETRANSMIT_TRIES:-3}" "RETRANSMIT_TIMEOUT=${LK_RETRANSMIT_TIMEOUT:-2.0}"
    mkdir -p "${d}/swanctl"
    # Kept for lk_charon_reconfig (no secrets in it: the PSK is read again).
    printf '%s\n' "${laddr}" "${raddr}" "${lid}" "${rid}" "${lts}" "${rts}" "${start}" "${pskf}" >"${d}/conf.args"
    lk_render "${LK_DIR}/strongswan/swanctl.conf.in" "${d}/swanctl/swanctl.conf" \
        "LOCAL_ADDR=${laddr}" "REMOTE_ADDR=${raddr}" "LOCAL_ID=${lid}" "REMOTE_ID=${rid}" \
        "LOCAL_TS=${lts}" "REMOTE_TS=${rts}" "START_ACTION=${start}" \
        "IKE_PROPOSAL=${LK_IKE_PROPOSAL}" "ESP_PROPOSAL=${LK_ESP_PROPOSAL}" "PSK=${psk}"
    unset psk
    # swanctl --load-all wants its usual subdirectories to exist.
    local sub
    for sub in conf.d x509 x509ca x509aa x509ocsp x509crl x509ac pubkey private rsa ecdsa bliss pkcs8 pkcs12; do
        mkdir -p "${d}/swanctl/${sub}"
    done
    lk_log "starting charon '${name}' in ${ns} (log ${d}/charon.log)"
    # shellcheck disable=SC2016 # $1..$3 expand in the inner sh
    lk_bg "charon-${name}" ip netns exec "${ns}" sh -c \
        'mount --bind "$1" /run && STRONGSWAN_CONF="$2" exec "$3"' \
        sh "${d}/run" "${d}/strongswan.conf" "${LK_CHARON}" >"${d}/charon.stdout" 2>&1
    printf -v "LK_CHARON_PID_${name}" '%s' "${LK_LAST_PID}"
    local i
    for ((i = 0; i < 100; i++)); do
        if [[ -S ${d}/charon.vici ]] && lk_swanctl "${name}" --stats >/dev/null 2>&1; then
            break
        fi
        kill -0 "${LK_LAST_PID}" 2>/dev/null || {
            cat "${d}/charon.stdout" "${d}/charon.log" >&2 2>/dev/null || true
            lk_die "charon '${name}' exited during start-up"
        }
        sleep 0.1
    done
    [[ -S ${d}/charon.vici ]] || lk_die "charon '${name}': no vici socket after 10 s"
    lk_swanctl "${name}" --load-all >"${d}/load-all.out" 2>&1 || {
        cat "${d}/load-all.out" >&2
        lk_die "charon '${name}': swanctl --load-all failed"
    }
    lk_log "charon '${name}' up (pid ${LK_LAST_PID}), config loaded"
}

# lk_charon_reconfig NAME: render charon NAME's swanctl.conf again with the
# current LK_IKE_PROPOSAL / LK_ESP_PROPOSAL and reload it (no restart).
lk_charon_reconfig() {
    local name=$1 d=${LK_RUN}/${1} psk
    local -a a
    mapfile -t a <"${d}/conf.args"
    psk=$(cat "${a[7]}")
    lk_render "${LK_DIR}/strongswan/swanctl.conf.in" "${d}/swanctl/swanctl.conf" \
        "LOCAL_ADDR=${a[0]}" "REMOTE_ADDR=${a[1]}" "LOCAL_ID=${a[2]}" "REMOTE_ID=${a[3]}" \
        "LOCAL_TS=${a[4]}" "REMOTE_TS=${a[5]}" "START_ACTION=${a[6]}" \
        "IKE_PROPOSAL=${LK_IKE_PROPOSAL}" "ESP_PROPOSAL=${LK_ESP_PROPOSAL}" "PSK=${psk}"
    unset psk
    lk_swanctl "${name}" --load-all >"${d}/load-all.out" 2>&1 || {
        cat "${d}/load-all.out" >&2
        return 1
    }
}

# lk_sas_gone NAME SECONDS: does charon NAME's SA list go empty in time?
lk_sas_gone() {
    local name=$1 i
    for ((i = 0; i < $2 * 5; i++)); do
        lk_swanctl "${name}" --list-sas 2>/dev/null | grep -q 'IKEv2' || return 0
        sleep 0.2
    done
    return 1
}

# lk_swanctl NAME COMMAND [ARGS...]: swanctl against charon NAME (the command
# first, --uri after, as swanctl wants).
lk_swanctl() {
    local name=$1 cmd=$2
    shift 2
    SWANCTL_DIR=${LK_RUN}/${name}/swanctl swanctl "${cmd}" --uri "unix://${LK_RUN}/${name}/charon.vici" "$@"
}

# lk_wait_child NAME SECONDS: wait until charon NAME shows an INSTALLED child SA.
lk_wait_child() {
    local name=$1 secs=$2 i
    for ((i = 0; i < secs * 5; i++)); do
        lk_swanctl "${name}" --list-sas 2>/dev/null | grep -q 'INSTALLED' && return 0
        sleep 0.2
    done
    return 1
}

# lk_listener_start NS ADDR PORT OUTFILE [--echo]: UDP listener recording
# every datagram ("SRC:PORT<TAB>text" per line) in OUTFILE.
lk_listener_start() {
    local ns=$1 addr=$2 port=$3 out=$4
    shift 4
    : >"${out}"
    lk_bg "listener-${addr}:${port}" ip netns exec "${ns}" "${LK_PY}" -u "${LK_DIR}/udp_tool.py" \
        listen --bind "${addr}" --port "${port}" --out "${out}" --ready "${out}.ready" "$@"
    local i
    for ((i = 0; i < 50; i++)); do
        [[ -e ${out}.ready ]] && return 0
        sleep 0.1
    done
    lk_die "UDP listener on ${addr}:${port} in ${ns} did not start"
}

# lk_tcpdump_start NS IFACE PCAP: capture IKE, ESP-in-UDP and ESP.
lk_tcpdump_start() {
    local ns=$1 ifc=$2 pcap=$3 i
    rm -f "${pcap}"
    lk_bg "tcpdump" ip netns exec "${ns}" tcpdump -i "${ifc}" -n -U --immediate-mode -s 0 -w "${pcap}" \
        'udp port 500 or udp port 4500 or esp' 2>"${pcap}.stderr"
    LK_TCPDUMP_PID=${LK_LAST_PID}
    for ((i = 0; i < 50; i++)); do
        grep -q 'listening on' "${pcap}.stderr" 2>/dev/null && return 0
        sleep 0.1
    done
    cat "${pcap}.stderr" >&2 || true
    lk_die "tcpdump did not start"
}

lk_tcpdump_stop() {
    [[ -n ${LK_TCPDUMP_PID:-} ]] || return 0
    sleep 0.3
    lk_stop "${LK_TCPDUMP_PID}" INT
    LK_TCPDUMP_PID=""
}

# lk_pcap_count PCAP FILTER: number of packets matching a tshark display filter.
lk_pcap_count() {
    tshark -n -r "$1" -Y "$2" -T fields -e frame.number 2>/dev/null | grep -c . || true
}

# lk_poll_sas NAME OUTFILE: in the background, append `swanctl --list-sas`
# of charon NAME to OUTFILE every 0.2 s, each block preceded by a marker.
lk_poll_sas_start() {
    local name=$1 out=$2
    : >"${out}"
    (
        trap 'exit 0' TERM
        while :; do
            printf '=== %s\n' "$(date +%H:%M:%S.%N)"
            lk_swanctl "${name}" --list-sas 2>&1 || true
            sleep 0.2
        done
    ) >>"${out}" &
    LK_PIDS+=("$!")
    LK_PID_NAMES+=("poll-${name}")
    LK_POLL_PID=$!
}

lk_poll_sas_stop() {
    [[ -n ${LK_POLL_PID:-} ]] || return 0
    lk_stop "${LK_POLL_PID}"
    LK_POLL_PID=""
}

# ---- results -------------------------------------------------------------
LK_PASSED=0
LK_FAILED=0
LK_SKIPPED=0
LK_XFAILED=0
LK_RESULTS=()       # markdown table rows

# lk_result SCENARIO STATUS(pass|fail|skip) DETAIL
lk_result() {
    local scen=$1 st=$2 detail=$3
    case ${st} in
    pass) LK_PASSED=$((LK_PASSED + 1)) ;;
    fail) LK_FAILED=$((LK_FAILED + 1)) ;;
    skip) LK_SKIPPED=$((LK_SKIPPED + 1)) ;;
    xfail) LK_XFAILED=$((LK_XFAILED + 1)) ;; # failed, as expected-failures.txt says
    xpass) LK_PASSED=$((LK_PASSED + 1)) ;;   # passed although listed as expected to fail
    esac
    detail=${detail//|/\\|}
    detail=${detail//$'\n'/<br>}
    LK_RESULTS+=("| ${scen} | ${st} | ${detail} |")
    lk_log "RESULT ${scen}: ${st} -- ${detail}"
}

# lk_check_pcap SCENARIO PCAP: IKE_SA_INIT (34) and IKE_AUTH (35) exchanges
# and ESP-in-UDP on port 4500 must be in the capture. Records one result.
lk_check_pcap() {
    local scen=$1 pcap=$2 init auth auth4500 esp natd4500 problems=""
    if [[ ! -s ${pcap} ]]; then
        lk_result "${scen}" fail "no capture ${pcap}"
        return 0
    fi
    init=$(lk_pcap_count "${pcap}" 'isakmp.exchangetype == 34')
    auth=$(lk_pcap_count "${pcap}" 'isakmp.exchangetype == 35')
    esp=$(lk_pcap_count "${pcap}" 'udp.port == 4500 && esp')
    natd4500=$(lk_pcap_count "${pcap}" 'udp.port == 4500 && isakmp')
    auth4500=$(lk_pcap_count "${pcap}" 'udp.srcport == 4500 && udp.dstport == 4500 && isakmp.exchangetype == 35')
    ((init >= 2)) || problems+="IKE_SA_INIT packets: ${init} (want >= 2); "
    ((auth >= 2)) || problems+="IKE_AUTH packets: ${auth} (want >= 2); "
    # kernel-libipsec forces NAT-T: IKE_AUTH must have moved to 4500<->4500.
    ((auth4500 >= 2)) || problems+="IKE_AUTH on 4500<->4500: ${auth4500} (want >= 2: the move to NAT-T); "
    ((esp >= 1)) || problems+="ESP-in-UDP packets on 4500: ${esp} (want >= 1); "
    local detail="IKE_SA_INIT ${init}, IKE_AUTH ${auth} (${auth4500} on 4500), IKE on 4500 ${natd4500}, ESP-in-UDP ${esp} packets (${pcap#"${LK_DIR}/"})"
    if [[ -z ${problems} ]]; then
        lk_result "${scen}" pass "${detail}"
    else
        lk_result "${scen}" fail "${problems}${detail}"
    fi
    # A readable dissection next to the capture, for humans.
    tshark -n -r "${pcap}" -V -Y isakmp >"${pcap%.pcap}.isakmp.txt" 2>/dev/null || true
    tshark -n -r "${pcap}" >"${pcap%.pcap}.summary.txt" 2>/dev/null || true
}

# lk_charon_facts NAME OUT: what a peer of charon NAME must know, from its
# log: payloads of each message it generated/parsed, and packet sizes.
lk_charon_facts() {
    local name=$1 out=$2
    local log=${LK_RUN}/${name}/charon.log
    {
        echo "## charon '${name}': messages (from ${log#"${LK_DIR}/"})"
        grep -E 'generating|parsed|sending packet|received packet|NAT|natd|faking|encap|vendor|selected proposal|CHILD_SA .* established|IKE_SA .* established' "${log}" |
            sed -E 's/^[0-9:]+ //' || true
    } >"${out}"
}

# lk_listener_got FILE SRC_ADDR TEXT: did the listener record TEXT from SRC_ADDR?
lk_listener_got() {
    awk -F'\t' -v src="$2" -v msg="$3" '
        { split($1, a, ":"); if (a[1] == src && $2 == msg) found = 1 }
        END { exit found ? 0 : 1 }' "$1"
}

# lk_results_section FILE NAME: replace (or append) the section of script
# NAME in FILE (RESULTS.md) by stdin, between marker comments, so that each
# script (basic.sh, matrix.sh) keeps its own section.
lk_results_section() {
    local file=$1 name=$2 tmp
    tmp=$(mktemp)
    cat >"${tmp}"
    "${LK_PY}" - "${file}" "${name}" "${tmp}" <<'PYEOF'
import os, re, sys
path, name, body_path = sys.argv[1:4]
body = open(body_path, encoding="utf-8").read().rstrip("\n") + "\n"
begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
block = f"{begin}\n{body}{end}\n"
text = open(path, encoding="utf-8").read() if os.path.exists(path) else ""
if begin in text and end in text:
    i, j = text.index(begin), text.index(end) + len(end)
    if j < len(text) and text[j] == "\n":
        j += 1
    text = text[:i] + block + text[j:]
else:
    if "<!-- begin " not in text:
        # First sectioned write: drop an old unsectioned file (basic.sh's).
        text = "# strongSwan interop results\n\nOne section per script (interop/basic.sh, interop/matrix.sh).\n\n"
    text = text.rstrip("\n") + "\n\n" + block
open(path, "w", encoding="utf-8").write(text)
PYEOF
    rm -f "${tmp}"
}
