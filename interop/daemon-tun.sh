#!/usr/bin/env bash
# `latchkey daemon` as a gateway (root): the daemon with a TUN device
# carrying the OS stack's traffic, driven by its client commands.
#
# Usage: interop/daemon-tun.sh [--no-strongswan]
#   LATCHKEY=path     use this latchkey binary (default: cargo build -p
#                     latchkey, target/debug/latchkey)
#   LK_LOCK_WAIT=S    how long part (b) waits for the interop harness lock
#                     (default 300 s; another run may hold it)
#
# Part (a), daemon <-> daemon (namespaces lkd-a and lkd-b, made and
# deleted here):
#   lkd-a 198.51.100.1/24 (veth lkd-va)  TUN lkd0 10.98.0.1/24  connection ab
#   lkd-b 198.51.100.2/24 (veth lkd-vb)  TUN lkd0 10.99.0.1/24  answers (ba)
#   Child SA 10.98.0.0/24 === 10.99.0.0/24, PSK, ESP in UDP, R18 flow
#   latching on. Checks: `latchkey up ab`; ping 10.99.0.1; 4 MiB over TCP
#   byte for byte; `status --json` on both sides (same SPIs, counters
#   moving); `latchkey keys --wireshark` (a has allow_key_export: files
#   non-empty, 0600; b has not: refused, saying how to turn it on); SIGHUP
#   reload keeps the SA and traffic flows on; `latchkey down ab` deletes
#   the SA on both sides, the route goes and ping stops; `up` again, then
#   SIGTERM of a deletes the SA on b, a exits 0 and its device is gone.
# Part (b), daemon <-> strongSwan (interop/lib.sh: lk-left, lk-right, the
#   machine-wide harness lock): the daemon with TUN in lk-left initiates to
#   charon (kernel-libipsec) in lk-right: ping 10.99.0.1 and a TCP transfer;
#   `status --json` against `swanctl --list-sas` (IKE SPIs, child SPIs in
#   and out, suites, states); `keys --wireshark`; charon deletes only the
#   child SA (`swanctl --terminate --child`), the IKE SA stays, and
#   `latchkey down` still deletes it; SIGTERM.
#
# Output: one `daemon-tun: NAME: pass|fail -- detail` line per check and a
# last line `daemon-tun: N passed, M failed`; exit 1 on any failure. Logs,
# configurations and status files in interop/run/daemon-tun/ (part b:
# interop/run/daemon-tun-strongswan/).
set -euo pipefail

DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "${DIR}")
RUN=${DIR}/run/daemon-tun
PY=${PY:-python3}
NS_A=lkd-a
NS_B=lkd-b
OUT_A=198.51.100.1
OUT_B=198.51.100.2
STRONGSWAN=1
[[ ${1:-} == --no-strongswan ]] && STRONGSWAN=0

if [[ ${EUID} -ne 0 ]]; then
    echo "daemon-tun: skipped: must run as root (TUN devices, namespaces, raw sockets)"
    exit 0
fi

if [[ -n ${LATCHKEY:-} ]]; then
    BIN=$(realpath "${LATCHKEY}")
else
    (cd "${ROOT}" && cargo build -q -p latchkey)
    BIN=${ROOT}/target/debug/latchkey
fi

rm -rf "${RUN}"
mkdir -p "${RUN}"
chmod 700 "${RUN}"

RESULTS=${RUN}/results.txt
: >"${RESULTS}"
result() {
    local name=$1 st=$2 detail=$3
    echo "${st} ${name}" >>"${RESULTS}"
    echo "daemon-tun: ${name}: ${st} -- ${detail}"
}
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# shellcheck source=interop/proc.sh
. "${DIR}/proc.sh"
cleanup() {
    local rc=$?
    set +e
    stop_all
    ns_del
    exit "${rc}"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ns_setup() {
    ns_del
    ip netns add "${NS_A}"
    ip netns add "${NS_B}"
    ip link add lkd-va netns "${NS_A}" type veth peer name lkd-vb netns "${NS_B}"
    ip -n "${NS_A}" link set lo up
    ip -n "${NS_B}" link set lo up
    ip -n "${NS_A}" addr add "${OUT_A}/24" dev lkd-va
    ip -n "${NS_B}" addr add "${OUT_B}/24" dev lkd-vb
    ip -n "${NS_A}" link set lkd-va up
    ip -n "${NS_B}" link set lkd-vb up
    local i
    for ((i = 0; i < 30; i++)); do
        ip netns exec "${NS_A}" ping -c1 -W1 "${OUT_B}" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "daemon-tun: veth does not pass traffic" >&2
    return 1
}

# lk CONTROL ARGS...: a client command against the daemon at CONTROL.
lk() {
    local c=$1
    shift
    timeout 60 "${BIN}" "$@" --control "${c}"
}

# status CONTROL OUT: `status --json` into OUT.
status() {
    lk "$1" status --json >"$2" 2>"$2.err"
}

# js FILE EXPR: evaluate a Python expression over `d` (FILE's JSON).
js() {
    "${PY}" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2" 2>/dev/null
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

# n_ike CONTROL: number of IKE SAs the daemon shows (-1 if it does not answer).
n_ike() {
    local f=${RUN}/.n_ike.json
    if status "$1" "${f}"; then js "${f}" 'len(d["ike_sas"])'; else echo -1; fi
}
no_ike() { [[ $(n_ike "$1") == 0 ]]; }
answers() { lk "$1" connections >/dev/null 2>&1; }

# ping_ok NS ADDR [COUNT]
ping_ok() {
    ip netns exec "$1" ping -c "${3:-3}" -i 0.3 -W 2 "$2" >"${RUN}/ping.out" 2>&1
}
ping_summary() { grep -E 'packets transmitted' "${RUN}/ping.out" | tr '\n' ' '; }

# tcp_transfer NAME NS_SERVER ADDR NS_CLIENT: 4 MiB, compared byte for byte.
tcp_transfer() {
    local name=$1 nss=$2 addr=$3 nsc=$4 i
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
    if ip netns exec "${nsc}" timeout 60 "${PY}" "${DIR}/tcp_blob.py" send --to "${addr}" --port 5001 \
        --file "${blob}" >"${base}.client.out" 2>&1; then
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

# keys_check NAME CONTROL DIR: `latchkey keys --wireshark DIR` works, both
# files non-empty and 0600, and they hold the keys of the SAs `status`
# shows now (IKE SPIs, both child SPIs).
keys_check() {
    local name=$1 c=$2 kd=$3 f bad="" st=${3}.status.json
    status "${c}" "${st}" || true
    local spis
    spis=$(js "${st}" '" ".join([d["ike_sas"][0]["spi_i"], d["ike_sas"][0]["spi_r"], d["ike_sas"][0]["child_sas"][0]["spi_in"], d["ike_sas"][0]["child_sas"][0]["spi_out"]])' || true)
    local -a sp
    read -r -a sp <<<"${spis}"
    rm -rf "${kd}"
    if ! lk "${c}" keys --wireshark "${kd}" >"${kd}.out" 2>"${kd}.err"; then
        result "${name}" fail "keys --wireshark failed: $(tail -c 300 "${kd}.err")"
        return 0
    fi
    for f in ikev2_decryption_table esp_sa; do
        [[ -s ${kd}/${f} ]] || bad+=" ${f} empty or missing;"
        [[ $(stat -c %a "${kd}/${f}" 2>/dev/null) == 600 ]] || bad+=" ${f} mode $(stat -c %a "${kd}/${f}" 2>/dev/null);"
    done
    if [[ ${#sp[@]} -eq 4 ]]; then
        grep -q "^${sp[0]},${sp[1]}," "${kd}/ikev2_decryption_table" 2>/dev/null ||
            bad+=" no ikev2_decryption_table line for IKE SA ${sp[0]}_i ${sp[1]}_r;"
        grep -q "\"0x${sp[2]}\"" "${kd}/esp_sa" 2>/dev/null || bad+=" no esp_sa line for SPI ${sp[2]} (in);"
        grep -q "\"0x${sp[3]}\"" "${kd}/esp_sa" 2>/dev/null || bad+=" no esp_sa line for SPI ${sp[3]} (out);"
    else
        bad+=" status shows no SA to compare with: ${spis};"
    fi
    if [[ -z ${bad} ]]; then
        result "${name}" pass "ikev2_decryption_table has IKE SA ${sp[0]}_i ${sp[1]}_r, esp_sa has SPIs ${sp[2]} and ${sp[3]}; both 0600, non-empty; stderr warns: $(grep -m1 -i secret "${kd}.err" | cut -c1-80)"
    else
        result "${name}" fail "${bad}"
    fi
}

# ---------------------------------------------------------------------------
# Part (a): two daemons.
part_a() {
    ns_setup
    local psk=${RUN}/psk
    (umask 077 && printf 'lkd-%s' "$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')" >"${psk}")
    local CA=${RUN}/a.sock CB=${RUN}/b.sock
    write_a() {
        cat >"${RUN}/a.toml" <<EOF
# daemon-tun.sh: the initiating gateway (lkd-a).
[daemon]
listen = "${OUT_A}"
control = "${CA}"
allow_key_export = true

[daemon.tun]
name = "lkd0"
addresses = ["10.98.0.1/24"]
latch_flows = true
udp_idle = "30s"

[[connection]]
name = "ab"
remote = "${OUT_B}"
auth = "psk"
psk_file = "psk"
local_id = "@a.lkd.example"
remote_id = "@b.lkd.example"
local_ts = ["10.98.0.0/24"]
remote_ts = ["10.99.0.0/24"]
$1
EOF
    }
    write_a ""
    cat >"${RUN}/b.toml" <<EOF
# daemon-tun.sh: the answering gateway (lkd-b).
[daemon]
listen = "${OUT_B}"
control = "${CB}"

[daemon.tun]
name = "lkd0"
addresses = ["10.99.0.1/24"]
latch_flows = true

[[connection]]
name = "ba"
auth = "psk"
psk_file = "psk"
local_id = "@b.lkd.example"
remote_id = "@a.lkd.example"
local_ts = ["10.99.0.0/24"]
remote_ts = ["10.98.0.0/24"]
EOF
    local out
    if out=$("${BIN}" daemon --config "${RUN}/a.toml" --check 2>&1) && [[ ${out} == *"TUN lkd0"*"latch_flows true"* ]] &&
        [[ ${out} == *"allow_key_export"* ]]; then
        result a/check pass "$(echo "${out}" | tr '\n' ' ')"
    else
        result a/check fail "${out}"
    fi
    RUST_LOG=${RUST_LOG:-info} ip netns exec "${NS_B}" "${BIN}" daemon --config "${RUN}/b.toml" \
        2>"${RUN}/b.log" &
    local PB=$!
    PIDS+=("${PB}")
    RUST_LOG=${RUST_LOG:-info} ip netns exec "${NS_A}" "${BIN}" daemon --config "${RUN}/a.toml" \
        2>"${RUN}/a.log" &
    local PA=$!
    PIDS+=("${PA}")
    if ! eventually 10 answers "${CA}" || ! eventually 10 answers "${CB}"; then
        result a/start fail "the daemons do not answer on their control sockets (${RUN}/a.log, b.log): $(tail -n 3 "${RUN}/a.log" "${RUN}/b.log")"
        stop_all
        return 0
    fi
    if grep -q 'WARNING: allow_key_export' "${RUN}/a.log" && ! grep -q 'allow_key_export' "${RUN}/b.log"; then
        result a/key-export-warning pass "a warns at start: $(grep -m1 'WARNING: allow_key_export' "${RUN}/a.log" | cut -c1-120)"
    else
        result a/key-export-warning fail "no warning in ${RUN}/a.log"
    fi
    if ip -n "${NS_A}" -br addr show dev lkd0 2>/dev/null | grep -q '10.98.0.1/24'; then
        result a/tun-device pass "$(ip -n "${NS_A}" -br addr show dev lkd0)"
    else
        result a/tun-device fail "no lkd0 with 10.98.0.1/24 in ${NS_A}"
    fi

    if lk "${CA}" up ab >"${RUN}/up.out" 2>&1; then
        result a/up pass "$(head -n 1 "${RUN}/up.out")"
    else
        result a/up fail "$(tail -c 300 "${RUN}/up.out")"
        stop_all
        return 0
    fi
    # The responder installs its route when its child SA is up.
    eventually 5 bash -c "ip -n ${NS_B} route show 10.98.0.0/24 | grep -q lkd0" || true
    if ip -n "${NS_A}" route show 10.99.0.0/24 | grep -q 'dev lkd0'; then
        result a/route pass "lkd-a: $(ip -n "${NS_A}" route show 10.99.0.0/24); lkd-b: $(ip -n "${NS_B}" route show 10.98.0.0/24)"
    else
        result a/route fail "no route to 10.99.0.0/24 into lkd0: $(ip -n "${NS_A}" route)"
    fi
    if ping_ok "${NS_A}" 10.99.0.1; then
        result a/ping pass "$(ping_summary)"
    else
        result a/ping fail "$(tail -n 3 "${RUN}/ping.out" | tr '\n' ' ')"
    fi
    status "${CA}" "${RUN}/a-status-1.json" || true
    tcp_transfer a/tcp "${NS_B}" 10.99.0.1 "${NS_A}" || true
    status "${CA}" "${RUN}/a-status-2.json" || true
    status "${CB}" "${RUN}/b-status-2.json" || true
    # Both sides: the same IKE SA and mirrored child SPIs, counters moved
    # by the transfer.
    if out=$("${PY}" - "${RUN}/a-status-1.json" "${RUN}/a-status-2.json" "${RUN}/b-status-2.json" <<'PYEOF' 2>&1
import json, sys
sys.excepthook = lambda t, e, tb: (print(f"{t.__name__}: {e}"), sys.exit(1))
a1, a2, b2 = (json.load(open(p)) for p in sys.argv[1:4])
def one(d, who):
    assert len(d["ike_sas"]) == 1, f"{who}: {len(d['ike_sas'])} IKE SAs"
    i = d["ike_sas"][0]
    assert i["state"] == "ESTABLISHED", f"{who}: IKE SA {i['state']}"
    assert len(i["child_sas"]) == 1, f"{who}: {len(i['child_sas'])} child SAs"
    c = i["child_sas"][0]
    assert c["state"] == "INSTALLED" and c["encap"], f"{who}: child {c['state']} encap={c['encap']}"
    return i, c
i1, c1 = one(a1, "a before")
ia, ca = one(a2, "a after")
ib, cb = one(b2, "b")
assert (ia["spi_i"], ia["spi_r"]) == (ib["spi_i"], ib["spi_r"]), "IKE SPIs differ"
assert ia["initiator"] and not ib["initiator"], "roles"
assert ca["spi_out"] == cb["spi_in"] and ca["spi_in"] == cb["spi_out"], "child SPIs not mirrored"
assert ia["suite"] == ib["suite"] and ca["suite"] == cb["suite"], "suites differ"
po, pi = ca["packets_out"] - c1["packets_out"], ca["packets_in"] - c1["packets_in"]
bo = ca["bytes_out"] - c1["bytes_out"]
# In: b's ACKs. The daemon's TUN offload writes coalesced segments (GRO,
# up to 64 KiB a write) and b's TCP acknowledges per write: 4 MiB is at
# least 64 writes, at least 32 ACKs with delayed ACKs.
assert po > 1000 and pi > 30 and bo > 4 * 1024 * 1024, f"counters moved too little: +{po} packets out, +{pi} in, +{bo} bytes out"
# What a sent and b took in may differ (ESP packets lost on the way, e.g.
# a full socket buffer; TCP sends them again): reported, not checked.
assert cb["packets_in"] > 1000 and cb["packets_out"] > 30, f"b's counters: {cb['packets_in']} in, {cb['packets_out']} out"
print(f"IKE {ia['spi_i']}_i {ia['spi_r']}_r {ia['suite']}; child a out {ca['spi_out']} = b in {cb['spi_in']}, {ca['suite']}; "
      f"the transfer moved a's counters by +{po} packets (+{bo} bytes) out, +{pi} in; "
      f"b: {cb['packets_in']} packets in (of a's {ca['packets_out']} out), {cb['packets_out']} out")
PYEOF
    ); then
        result a/status pass "${out}"
    else
        result a/status fail "${out}"
    fi

    keys_check a/keys "${CA}" "${RUN}/keys-a"
    if lk "${CB}" keys --wireshark "${RUN}/keys-b" >/dev/null 2>"${RUN}/keys-b.err"; then
        result a/keys-refused fail "b has no allow_key_export but handed out keys"
    elif grep -q 'allow_key_export = true' "${RUN}/keys-b.err" && [[ ! -e ${RUN}/keys-b/esp_sa ]]; then
        result a/keys-refused pass "b (no allow_key_export): $(tail -n 1 "${RUN}/keys-b.err" | cut -c1-160)"
    else
        result a/keys-refused fail "$(cat "${RUN}/keys-b.err")"
    fi

    # SIGHUP: a changed connection setting; the SA stays, traffic flows.
    local spi_before spi_after
    spi_before=$(js "${RUN}/a-status-2.json" 'd["ike_sas"][0]["spi_i"]')
    write_a 'dpd = "20s"'
    local lines
    lines=$(wc -l <"${RUN}/a.log")
    kill -HUP "${PA}"
    if eventually 5 bash -c "tail -n +$((lines + 1)) '${RUN}/a.log' | grep -q 'SIGHUP: reloaded'"; then
        status "${CA}" "${RUN}/a-status-3.json" || true
        spi_after=$(js "${RUN}/a-status-3.json" 'd["ike_sas"][0]["spi_i"]' || true)
        if [[ ${spi_after} == "${spi_before}" ]] && ping_ok "${NS_A}" 10.99.0.1; then
            result a/sighup pass "reloaded ($(tail -n +$((lines + 1)) "${RUN}/a.log" | grep -m1 -o 'SIGHUP: reloaded.*' | cut -c1-100)); IKE SA ${spi_before} kept; $(ping_summary)"
        else
            result a/sighup fail "IKE SPI before ${spi_before}, after ${spi_after}; $(tail -n 2 "${RUN}/ping.out" | tr '\n' ' ')"
        fi
    else
        result a/sighup fail "no 'SIGHUP: reloaded' in ${RUN}/a.log"
    fi
    tcp_transfer a/tcp-after-reload "${NS_B}" 10.99.0.1 "${NS_A}" || true

    # down: the SA goes on both sides, the route goes, traffic stops.
    if lk "${CA}" down ab >"${RUN}/down.out" 2>&1; then
        if [[ $(n_ike "${CA}") == 0 ]] && eventually 5 no_ike "${CB}"; then
            result a/down pass "$(head -n 1 "${RUN}/down.out"); no IKE SA on a nor b"
        else
            result a/down fail "IKE SAs left: a $(n_ike "${CA}"), b $(n_ike "${CB}")"
        fi
    else
        result a/down fail "$(tail -c 300 "${RUN}/down.out")"
    fi
    if eventually 3 bash -c "! ip -n ${NS_A} route show 10.99.0.0/24 | grep -q lkd0"; then
        if ping_ok "${NS_A}" 10.99.0.1 2; then
            result a/down-traffic fail "ping still answered after down: $(ping_summary)"
        else
            result a/down-traffic pass "route to 10.99.0.0/24 gone; ping: $(tail -n 2 "${RUN}/ping.out" | tr '\n' ' ')"
        fi
    else
        result a/down-traffic fail "route still there: $(ip -n "${NS_A}" route show 10.99.0.0/24)"
    fi

    # up again, then SIGTERM of a: b is told (its SA goes), a exits 0.
    if lk "${CA}" up ab >"${RUN}/up2.out" 2>&1 && ping_ok "${NS_A}" 10.99.0.1 2; then
        kill -TERM "${PA}"
        local rc=0 i
        for ((i = 0; i < 50; i++)); do
            kill -0 "${PA}" 2>/dev/null || break
            sleep 0.1
        done
        wait "${PA}" || rc=$?
        if [[ ${rc} == 0 ]] && eventually 5 no_ike "${CB}" &&
            ! ip netns exec "${NS_A}" ip link show lkd0 >/dev/null 2>&1; then
            result a/sigterm pass "a exited 0, b lost the SA (Delete received), lkd0 gone from lkd-a"
        else
            result a/sigterm fail "a exit ${rc}; b IKE SAs $(n_ike "${CB}"); lkd0 in lkd-a: $(ip -n "${NS_A}" -br link show lkd0 2>&1)"
        fi
    else
        result a/sigterm fail "second up failed: $(tail -c 300 "${RUN}/up2.out") $(tail -n 2 "${RUN}/ping.out")"
    fi
    stop_all
    ns_del
}

part_a

# ---------------------------------------------------------------------------
# Part (b): the daemon against strongSwan (lib.sh, in a subshell so its traps
# and lock stay its own).
if [[ ${STRONGSWAN} == 1 ]]; then
    if ! command -v swanctl >/dev/null 2>&1 || [[ ! -x /usr/lib/ipsec/charon ]]; then
        echo "daemon-tun: strongswan: skipped: charon/swanctl not installed (interop/setup.sh)"
    else
        set +e
        (
            set -euo pipefail
            export LK_LOCK_WAIT=${LK_LOCK_WAIT:-300}
            # shellcheck source=interop/lib.sh
            . "${DIR}/lib.sh"
            lk_init daemon-tun-strongswan
            R=${LK_RUN}
            : >"${RUN}/strongswan.locked"
            lk_ns_create
            lk_psk "${R}/psk"
            lk_charon_start right "${LK_NS_RIGHT}" "${LK_OUTER_RIGHT}" "${LK_OUTER_LEFT}" \
                "${LK_OUTER_RIGHT}" "${LK_OUTER_LEFT}" "${LK_TS_RIGHT}" "${LK_TS_LEFT}" none "${R}/psk"
            C=${R}/left.sock
            cat >"${R}/left.toml" <<EOF
# daemon-tun.sh part (b): the daemon in lk-left against charon in lk-right.
[daemon]
listen = "${LK_OUTER_LEFT}"
control = "${C}"
allow_key_export = true

[daemon.tun]
name = "lkd0"
addresses = ["${LK_INNER_LEFT}/24"]

[[connection]]
name = "lk"
remote = "${LK_OUTER_RIGHT}"
auth = "psk"
psk_file = "psk"
local_id = "${LK_OUTER_LEFT}"
remote_id = "${LK_OUTER_RIGHT}"
ike_proposals = "${LK_IKE_PROPOSAL}"
esp_proposals = "${LK_ESP_PROPOSAL}"
local_ts = ["${LK_TS_LEFT}"]
remote_ts = ["${LK_TS_RIGHT}"]
EOF
            lk_bg daemon env RUST_LOG="${RUST_LOG:-info}" ip netns exec "${LK_NS_LEFT}" "${BIN}" daemon \
                --config "${R}/left.toml" 2>"${R}/daemon.log"
            DPID=${LK_LAST_PID}
            say() { result "strongswan/$1" "$2" "$3"; }
            lkc() { timeout 60 "${BIN}" "$@" --control "${C}"; }
            ike_count() {
                lkc status --json >"${R}/.st.json" 2>/dev/null && js "${R}/.st.json" 'len(d["ike_sas"])'
            }
            fails=0
            fail() { say "$1" fail "$2"; fails=$((fails + 1)); }
            eventually 10 answers "${C}" || { fail start "the daemon does not answer (${R}/daemon.log)"; exit 1; }
            if lkc up lk >"${R}/up.out" 2>&1 && lk_wait_child right 10; then
                say up pass "$(head -n 1 "${R}/up.out"); charon INSTALLED the child SA"
            else
                fail up "$(tail -c 300 "${R}/up.out") (${R}/daemon.log, ${R}/right/charon.log)"
                exit 1
            fi
            if out=$(ip netns exec "${LK_NS_LEFT}" ping -c 3 -i 0.3 -W 2 "${LK_INNER_RIGHT}" 2>&1); then
                say ping pass "$(echo "${out}" | grep -E 'packets transmitted' | tr '\n' ' ')"
            else
                fail ping "$(echo "${out}" | tail -n 2 | tr '\n' ' ')"
            fi
            blob=${R}/blob.bin got=${R}/received
            head -c $((4 * 1024 * 1024)) /dev/urandom >"${blob}"
            lk_bg tcp-server ip netns exec "${LK_NS_RIGHT}" "${LK_PY}" "${DIR}/tcp_blob.py" serve \
                --bind "${LK_INNER_RIGHT}" --port 5001 --out "${got}" --ready "${got}.ready" --timeout 60
            eventually 5 test -e "${got}.ready" || true
            if ip netns exec "${LK_NS_LEFT}" timeout 60 "${LK_PY}" "${DIR}/tcp_blob.py" send \
                --to "${LK_INNER_RIGHT}" --port 5001 --file "${blob}" >"${R}/client.out" 2>&1 &&
                sleep 0.5 && cmp -s "${blob}" "${got}"; then
                say tcp pass "4 MiB byte for byte to ${LK_INNER_RIGHT}: $(cat "${R}/client.out")"
            else
                fail tcp "$(tail -c 300 "${R}/client.out"); received $(stat -c %s "${got}" 2>/dev/null || echo 0) bytes"
            fi
            # status --json against swanctl --list-sas.
            lkc status --json >"${R}/status.json" 2>"${R}/status.err" || true
            { printf '=== %s\n' "$(date +%H:%M:%S.%N)"; lk_swanctl right --list-sas; } >"${R}/list-sas.txt" 2>&1 || true
            if out=$("${LK_PY}" - "${R}/status.json" "${R}/list-sas.txt" "${DIR}" <<'PYEOF' 2>&1
import json, sys
sys.excepthook = lambda t, e, tb: (print(f"{t.__name__}: {e}"), sys.exit(1))
sys.path.insert(0, sys.argv[3])
from check_sas import parse_snapshots
d = json.load(open(sys.argv[1]))
snaps = parse_snapshots(open(sys.argv[2]).read())
assert len(snaps) == 1, f"charon lists {len(snaps)} IKE SAs"
s = snaps[0]
assert len(d["ike_sas"]) == 1, f"latchkey lists {len(d['ike_sas'])} IKE SAs"
i = d["ike_sas"][0]
assert (i["spi_i"], i["spi_r"]) == (s["spi_i"], s["spi_r"]), f"IKE SPIs: latchkey {i['spi_i']}_i {i['spi_r']}_r, charon {s['spi_i']}_i {s['spi_r']}_r"
assert i["state"] == s["state"] == "ESTABLISHED", f"IKE state latchkey {i['state']}, charon {s['state']}"
assert i["initiator"], "latchkey is the initiator"
# latchkey names suites in strongSwan's proposal syntax, swanctl
# --list-sas in its own: translate the tokens.
NAMES = {"aes128gcm16": "AES_GCM_16-128", "aes192gcm16": "AES_GCM_16-192",
         "aes256gcm16": "AES_GCM_16-256", "aes128": "AES_CBC-128", "aes192": "AES_CBC-192",
         "aes256": "AES_CBC-256", "chacha20poly1305": "CHACHA20_POLY1305",
         "sha1": "HMAC_SHA1_96", "sha256": "HMAC_SHA2_256_128", "sha384": "HMAC_SHA2_384_192",
         "sha512": "HMAC_SHA2_512_256", "prfsha1": "PRF_HMAC_SHA1", "prfsha256": "PRF_HMAC_SHA2_256",
         "prfsha384": "PRF_HMAC_SHA2_384", "prfsha512": "PRF_HMAC_SHA2_512",
         "x25519": "CURVE_25519", "curve25519": "CURVE_25519", "ecp256": "ECP_256", "ecp384": "ECP_384",
         "modp2048": "MODP_2048", "modp3072": "MODP_3072", "esn": "ESN"}
def swan(suite):
    return "/".join(NAMES.get(t, t) for t in suite.split("-") if t != "noesn")
assert swan(i["suite"]) == s.get("suite"), f"IKE suite latchkey {i['suite']!r} ({swan(i['suite'])}), charon {s.get('suite')!r}"
assert len(i["child_sas"]) == 1 and len(s["children"]) == 1, "one child SA each"
c, k = i["child_sas"][0], s["children"][0]
assert (c["spi_in"], c["spi_out"]) == (k["spi_out"], k["spi_in"]), f"child SPIs: latchkey in {c['spi_in']} out {c['spi_out']}, charon in {k['spi_in']} out {k['spi_out']}"
assert c["state"] == k["state"] == "INSTALLED", f"child state latchkey {c['state']}, charon {k['state']}"
assert swan(c["suite"]) == k["suite"], f"ESP suite latchkey {c['suite']!r} ({swan(c['suite'])}), charon {k['suite']!r}"
assert c["packets_out"] > 1000 and c["packets_in"] > 100, f"counters {c['packets_out']} out {c['packets_in']} in"
print(f"IKE {i['spi_i']}_i {i['spi_r']}_r {i['suite']} ESTABLISHED; child in {c['spi_in']} out {c['spi_out']} "
      f"{c['suite']} INSTALLED (charon: {s['suite']}, {k['suite']}, in {k['spi_in']} out {k['spi_out']}); {c['packets_out']} packets out, {c['packets_in']} in")
PYEOF
            ); then
                say status-vs-swanctl pass "${out}"
            else
                fail status-vs-swanctl "${out}"
            fi
            keys_check strongswan/keys "${C}" "${R}/keys"
            grep -q '^fail strongswan/keys' "${RESULTS}" && fails=$((fails + 1))
            childless() {
                lkc status --json >"${R}/.st2.json" 2>/dev/null &&
                    [[ $(js "${R}/.st2.json" 'len(d["ike_sas"]) == 1 and d["ike_sas"][0]["child_sas"] == []') == True ]]
            }
            # charon deletes only the child SA; `up` creates a new one
            # under the IKE SA still up (CREATE_CHILD_SA): same IKE SPIs,
            # no second IKE SA, charon INSTALLED it.
            lkc status --json >"${R}/.st1.json" 2>/dev/null
            ike_spi=$(js "${R}/.st1.json" 'd["ike_sas"][0]["spi_i"]')
            lk_swanctl right --terminate --child lk --timeout 10 >"${R}/terminate-child0.out" 2>&1 || true
            if eventually 5 childless && lkc up lk >"${R}/up-childless.out" 2>&1 && lk_wait_child right 10 &&
                lkc status --json >"${R}/.st3.json" 2>/dev/null &&
                [[ $(js "${R}/.st3.json" 'len(d["ike_sas"]) == 1 and len(d["ike_sas"][0]["child_sas"]) == 1 and d["ike_sas"][0]["spi_i"] == "'"${ike_spi}"'"') == True ]]; then
                say up-childless pass "charon deleted only the child SA; up made a new one under IKE SA ${ike_spi}"
            else
                fail up-childless "$(tail -c 300 "${R}/up-childless.out"); status: $(head -c 300 "${R}/.st3.json" 2>/dev/null)"
            fi
            # Again; now down deletes the IKE SA left without a child SA
            # (the daemon holds no channel for it).
            lk_swanctl right --terminate --child lk --timeout 10 >"${R}/terminate-child.out" 2>&1 || true
            if eventually 5 childless; then
                if lkc down lk >"${R}/down.out" 2>&1 && lk_sas_gone right 5 && [[ $(ike_count) == 0 ]]; then
                    say down-childless pass "charon deleted only the child SA; down deleted the IKE SA ($(head -n 1 "${R}/down.out")); charon lists no SA"
                else
                    fail down-childless "$(tail -c 300 "${R}/down.out"); charon: $(lk_swanctl right --list-sas 2>&1 | head -n 2 | tr '\n' ' ')"
                fi
            else
                fail down-childless "after swanctl --terminate --child the daemon shows: $(head -c 300 "${R}/.st2.json" 2>/dev/null)"
            fi
            # up again; SIGTERM deletes it at charon.
            if lkc up lk >"${R}/up2.out" 2>&1 && lk_wait_child right 10; then
                lk_stop "${DPID}" TERM
                if lk_sas_gone right 5; then
                    say sigterm pass "SIGTERM: charon lists no SA afterwards"
                else
                    fail sigterm "charon still lists: $(lk_swanctl right --list-sas 2>&1 | head -n 2 | tr '\n' ' ')"
                fi
            else
                fail sigterm "second up failed: $(tail -c 300 "${R}/up2.out")"
            fi
            exit "${fails}"
        )
        rc=$?
        set -e
        if [[ ! -e ${RUN}/strongswan.locked ]]; then
            result strongswan/lock fail "could not take the interop harness lock within ${LK_LOCK_WAIT:-300} s (another interop run holds it); run again later, or with --no-strongswan"
        elif [[ ${rc} -ne 0 ]] && ! grep -q '^fail strongswan/' "${RESULTS}"; then
            result strongswan/run fail "the strongSwan run stopped (exit ${rc}); see ${DIR}/run/daemon-tun-strongswan/"
        fi
    fi
fi

PASSED=$(grep -c '^pass ' "${RESULTS}" || true)
FAILED=$(grep -c '^fail ' "${RESULTS}" || true)
echo "daemon-tun: ${PASSED} passed, ${FAILED} failed"
[[ ${FAILED} -eq 0 ]]
