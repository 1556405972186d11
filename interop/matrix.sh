#!/usr/bin/env bash
# latchkey <-> strongSwan interop: the proposal matrix (root, network namespaces).
#
# Usage: interop/matrix.sh LATCHKEY_BIN [--quick]
#
# PSK auth, both roles (latchkey initiator: `latchkey connect`; latchkey
# responder: `latchkey listen --echo`, charon `swanctl --initiate`), same
# topology as basic.sh (interop/lib.sh). One axis is IKE encryption x group:
#   {aes128gcm16-prfsha256, aes256gcm16-prfsha256, chacha20poly1305-prfsha256,
#    aes128-sha256} x {x25519, ecp256, ecp384, modp2048}   (16 IKE proposals)
# and each is paired with one ESP proposal of
#   {aes128gcm16, aes256gcm16, chacha20poly1305, aes128-sha256}
# so that, in each role, every IKE encryption and every group meets every ESP
# proposal once (ESP index = encr XOR group for the initiator, XOR 1 for the
# responder): 16 cases per role, 32 in all. --quick: 4 cases per role (8),
# a subset of those 32 that uses every algorithm in each role.
#
# Per case: charon reloads its config with the case's proposals (one charon
# for the whole run), latchkey brings up the SAs; checks: swanctl --list-sas
# shows ESTABLISHED + INSTALLED with the expected suites and latchkey's SPIs
# (check_sas.py), a datagram goes through the tunnel and its echo comes back
# byte for byte, latchkey exits 0 (initiator: after deleting the SAs, which
# charon must no longer list; responder: on SIGINT).
#
# interop/expected-failures.txt: `ROLE IKE ESP reason...` per line; such a
# case that fails is XFAIL (not counted as failed), one that passes is XPASS
# (reported). Output: section "matrix" of interop/RESULTS.md, interop/run/matrix/
# (per case: latchkey cmd/stdout/stderr (-vv), swanctl polls, charon log lines),
# interop/run/matrix.pcap. Last line: `matrix: N passed, M failed`; exit
# status non-zero on any unexpected failure.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { echo "usage: $0 LATCHKEY_BIN [--quick]" >&2; exit 2; }
BIN=""
QUICK=0
for arg in "$@"; do
    case ${arg} in
    --quick) QUICK=1 ;;
    -h | --help) usage ;;
    -*) usage ;;
    *) [[ -z ${BIN} ]] || usage; BIN=${arg} ;;
    esac
done
[[ -n ${BIN} ]] || usage
[[ ${BIN} == */* ]] || BIN=$(command -v "${BIN}" || echo "${BIN}")
BIN=$(realpath -m "${BIN}")
read -r -a LK_VERBOSE <<<"${LATCHKEY_VERBOSE--vv}"
WAIT=${LK_WAIT:-2}
RESULTS_MD=${LK_RESULTS_MD:-${LK_DIR}/RESULTS.md}
XFAIL_FILE=${LK_XFAIL_FILE:-${LK_DIR}/expected-failures.txt}

# The axes, with the suite names swanctl --list-sas prints for them.
ENCR=(aes128gcm16-prfsha256 aes256gcm16-prfsha256 chacha20poly1305-prfsha256 aes128-sha256)
ENCR_SUITE=(AES_GCM_16-128/PRF_HMAC_SHA2_256 AES_GCM_16-256/PRF_HMAC_SHA2_256
    CHACHA20_POLY1305/PRF_HMAC_SHA2_256 AES_CBC-128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256)
GROUP=(x25519 ecp256 ecp384 modp2048)
GROUP_SUITE=(CURVE_25519 ECP_256 ECP_384 MODP_2048)
ESP=(aes128gcm16 aes256gcm16 chacha20poly1305 aes128-sha256)
ESP_SUITE=(AES_GCM_16-128 AES_GCM_16-256 CHACHA20_POLY1305 AES_CBC-128/HMAC_SHA2_256_128)

# CASES: "ROLE ENCR_INDEX GROUP_INDEX ESP_INDEX"
CASES=()
if ((QUICK)); then
    # Initiator: group = (0,2,3,1)[encr]; responder: group = (1,3,2,0)[encr].
    # Both are rows of the full matrix and use each encr, group, ESP once.
    qi=(0 2 3 1)
    qr=(1 3 2 0)
    for e in 0 1 2 3; do
        CASES+=("initiator ${e} ${qi[e]} $((e ^ qi[e]))")
    done
    for e in 0 1 2 3; do
        CASES+=("responder ${e} ${qr[e]} $((e ^ qr[e] ^ 1))")
    done
else
    for role in initiator responder; do
        x=0
        [[ ${role} == responder ]] && x=1
        for e in 0 1 2 3; do
            for g in 0 1 2 3; do
                CASES+=("${role} ${e} ${g} $((e ^ g ^ x))")
            done
        done
    done
fi

# expected-failures.txt: "ROLE IKE ESP reason..." (# comments, blank lines).
declare -A XFAIL=()
if [[ -r ${XFAIL_FILE} ]]; then
    while read -r r i e reason; do
        [[ -z ${r} || ${r} == \#* ]] && continue
        [[ -n ${reason} ]] || lk_die "${XFAIL_FILE}: entry '${r} ${i} ${e}' has no reason"
        XFAIL["${r} ${i} ${e}"]=${reason}
    done <"${XFAIL_FILE}"
fi

lk_init matrix
R=${LK_RUN}
FAIL_NOTES=()
TIMES=()
XPASS_NOTES=()

lk_ns_create
lk_psk "${R}/psk"
LK_IKE_PROPOSAL=${ENCR[0]}-${GROUP[0]}
LK_ESP_PROPOSAL=${ESP[0]}
lk_charon_start right "${LK_NS_RIGHT}" "${LK_OUTER_RIGHT}" "${LK_OUTER_LEFT}" \
    "${LK_OUTER_RIGHT}" "${LK_OUTER_LEFT}" "${LK_TS_RIGHT}" "${LK_TS_LEFT}" none "${R}/psk"
lk_listener_start "${LK_NS_RIGHT}" "${LK_INNER_RIGHT}" 9999 "${R}/listener.txt" --echo
lk_tcpdump_start "${LK_NS_LEFT}" "${LK_VETH_LEFT}" "${LK_RUN_ROOT}/matrix.pcap"

LISTEN_ADDR=(--ike "${LK_OUTER_LEFT}:500" --natt "${LK_OUTER_LEFT}:4500")
if [[ -x ${BIN} ]] && timeout 10 "${BIN}" listen --help >"${R}/listen-help.txt" 2>&1 &&
    ! grep -q -- '--natt' "${R}/listen-help.txt"; then
    LISTEN_ADDR=(--local "${LK_OUTER_LEFT}:500" --nat-t-port 4500)
fi

# Security flags common to both roles, for the current case.
sec_args() {
    SEC=(--auth psk --psk-file "${R}/psk" --id "${LK_OUTER_LEFT}" --remote-id "${LK_OUTER_RIGHT}"
        --ike-proposal "${LK_IKE_PROPOSAL}" --esp-proposal "${LK_ESP_PROPOSAL}"
        --local-ts "${LK_TS_LEFT}" --remote-ts "${LK_TS_RIGHT}")
}

# check_sas P: swanctl polls of case P against the expected suites.
check_sas() {
    local P=$1 out
    if out=$("${LK_PY}" "${LK_DIR}/check_sas.py" --sas "${P}-sas.txt" --ike-suite "${IKE_SUITE}" \
        --esp-suite "${ESP_SUITE_X}" --latchkey-json "${P}.stdout" --summary "${P}-sas.json" 2>&1); then
        OK+=("sas: ${out}")
    else
        BAD+=("swanctl --list-sas: ${out//$'\n'/; }")
    fi
}

# case_initiator P MSG: latchkey connect, datagram to the listener, echo back.
case_initiator() {
    local P=$1 msg=$2 rc
    sec_args
    lk_poll_sas_start right "${P}-sas.txt"
    local cmd=(ip netns exec "${LK_NS_LEFT}" timeout 60 "${BIN}" "${LK_VERBOSE[@]}" connect "${LK_OUTER_RIGHT}"
        --local "${LK_OUTER_LEFT}:500" --nat-t-port 4500 "${SEC[@]}" --inner-addr "${LK_INNER_LEFT}"
        --timeout 20 --send-udp "${LK_INNER_RIGHT}:9999" --message "${msg}" --count 1 --wait "${WAIT}" --json)
    printf '%q ' "${cmd[@]}" >"${P}.cmd"
    echo >>"${P}.cmd"
    set +e
    "${cmd[@]}" >"${P}.stdout" 2>"${P}.stderr"
    rc=$?
    set -e
    lk_poll_sas_stop
    ((rc == 0)) || BAD+=("latchkey connect exit ${rc}: $(grep -v '^\s*$' "${P}.stderr" | tail -n 2 || true)")
    check_sas "${P}"
    if lk_listener_got "${R}/listener.txt" "${LK_INNER_LEFT}" "${msg}"; then
        OK+=("datagram delivered")
    else
        BAD+=("datagram not delivered to ${LK_INNER_RIGHT}:9999")
    fi
    if "${LK_PY}" -c 'import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if any(r.get("data") == sys.argv[2] for r in d.get("received", [])) else 1)' "${P}.stdout" "${msg}" 2>/dev/null; then
        OK+=("echo identical")
    else
        BAD+=("no identical echo in latchkey's JSON received[]")
    fi
    if ! lk_sas_gone right 5; then
        BAD+=("charon still lists an IKE SA after latchkey exited")
        lk_swanctl right --terminate --ike lk --force --timeout 5 >/dev/null 2>&1 || true
    fi
}

# case_responder P MSG: latchkey listen --echo, charon initiates, datagram
# from charon's side, its echo must come back identical; SIGINT stops latchkey.
case_responder() {
    local P=$1 msg=$2 lpid up=0 i rc
    sec_args
    local cmd=(ip netns exec "${LK_NS_LEFT}" env --default-signal=INT "${BIN}" "${LK_VERBOSE[@]}" listen
        "${LISTEN_ADDR[@]}" "${SEC[@]}" --echo --json)
    printf '%q ' "${cmd[@]}" >"${P}.cmd"
    echo >>"${P}.cmd"
    lk_bg "latchkey-listen" "${cmd[@]}" >"${P}.stdout" 2>"${P}.stderr"
    lpid=${LK_LAST_PID}
    for ((i = 0; i < 100; i++)); do
        if ip netns exec "${LK_NS_LEFT}" ss -Hunl 2>/dev/null | grep -q "${LK_OUTER_LEFT}:4500 \|0.0.0.0:4500 "; then
            up=1
            break
        fi
        kill -0 "${lpid}" 2>/dev/null || break
        sleep 0.1
    done
    if ((up == 0)); then
        BAD+=("latchkey listen did not start: $(tail -n 2 "${P}.stderr")")
    else
        sleep 0.2
        if ! lk_swanctl right --initiate --child lk --timeout 20 >"${P}-initiate.out" 2>&1; then
            BAD+=("swanctl --initiate: $(grep -E 'failed|error|received|NO_PROP|AUTH' "${P}-initiate.out" | tail -n 3 || true)")
        fi
        # Poll only once --initiate has returned: a --list-sas issued while
        # charon is initiating was seen to block until the poll was stopped.
        lk_poll_sas_start right "${P}-sas.txt"
        set +e
        ip netns exec "${LK_NS_RIGHT}" "${LK_PY}" "${LK_DIR}/udp_tool.py" send --bind "${LK_INNER_RIGHT}" \
            --to "${LK_INNER_LEFT}:9999" --message "${msg}" --wait "${WAIT}" --expect-reply >"${P}-reply.txt" 2>&1
        set -e
        lk_poll_sas_stop
        check_sas "${P}"
        if grep -qF "${msg}" "${P}.stdout"; then
            OK+=("datagram delivered")
        else
            BAD+=("latchkey's output lacks the datagram")
        fi
        if awk -F'\t' -v src="${LK_INNER_LEFT}:9999" -v msg="${msg}" '$1 == src && $2 == msg { f = 1 } END { exit !f }' "${P}-reply.txt"; then
            OK+=("echo identical")
        else
            BAD+=("no identical echo from ${LK_INNER_LEFT}:9999: '$(head -c 150 "${P}-reply.txt")'")
        fi
    fi
    if kill -0 "${lpid}" 2>/dev/null; then
        kill -s INT "${lpid}" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            kill -0 "${lpid}" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "${lpid}" 2>/dev/null; then
            BAD+=("latchkey listen still running 5 s after SIGINT")
            lk_stop "${lpid}" KILL
        else
            set +e
            wait "${lpid}"
            rc=$?
            set -e
            ((rc == 0)) || BAD+=("latchkey listen exit ${rc} after SIGINT: $(tail -n 2 "${P}.stderr")")
        fi
    elif ((up)); then
        BAD+=("latchkey listen exited early: $(tail -n 2 "${P}.stderr")")
    fi
    # Leave no SA behind for the next case. latchkey listen is not required
    # to delete its SAs on SIGINT (basic.sh does not ask it either); note it.
    if lk_swanctl right --list-sas 2>/dev/null | grep -q 'IKEv2'; then
        OK+=("note: SAs not deleted by latchkey on SIGINT")
        lk_swanctl right --terminate --ike lk --force --timeout 1 >/dev/null 2>&1 || true
        lk_sas_gone right 3 || true
    fi
}

n=0
for c in "${CASES[@]}"; do
    read -r role e g x <<<"${c}"
    n=$((n + 1))
    LK_IKE_PROPOSAL=${ENCR[e]}-${GROUP[g]}
    LK_ESP_PROPOSAL=${ESP[x]}
    IKE_SUITE=${ENCR_SUITE[e]}/${GROUP_SUITE[g]}
    ESP_SUITE_X=${ESP_SUITE[x]}
    key="${role} ${LK_IKE_PROPOSAL} ${LK_ESP_PROPOSAL}"
    scen="${role} ike=${LK_IKE_PROPOSAL} esp=${LK_ESP_PROPOSAL}"
    P=${R}/$(printf '%02d' "${n}")-${role}-${LK_IKE_PROPOSAL}-${LK_ESP_PROPOSAL}
    msg="matrix ${n} ${role} ${LK_IKE_PROPOSAL}/${LK_ESP_PROPOSAL} $(od -An -tx1 -N6 /dev/urandom | tr -d ' \n')"
    OK=()
    BAD=()
    lk_log "case ${n}/${#CASES[@]}: ${scen}"
    t0=$(date +%s.%N)
    log_from=$(($(wc -l <"${R}/right/charon.log") + 1))
    if ! lk_charon_reconfig right; then
        BAD+=("charon did not load the proposals")
    elif [[ ! -x ${BIN} ]]; then
        BAD+=("latchkey binary ${BIN} not found or not executable")
    elif [[ ${role} == initiator ]]; then
        case_initiator "${P}" "${msg}"
    else
        case_responder "${P}" "${msg}"
    fi
    tail -n +"${log_from}" "${R}/right/charon.log" >"${P}-charon.log"
    secs=$(awk -v a="${t0}" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    TIMES+=("${secs}")
    detail="${secs} s"
    if ((${#BAD[@]} == 0)); then
        detail+="; $(printf '%s; ' "${OK[@]}")"
        if [[ -n ${XFAIL[${key}]:-} ]]; then
            lk_result "${scen}" xpass "XPASS (listed in expected-failures.txt: ${XFAIL[${key}]}); ${detail}"
            XPASS_NOTES+=("${scen}: passes but is listed as expected to fail (${XFAIL[${key}]})")
        else
            lk_result "${scen}" pass "${detail}"
        fi
    else
        detail+="; $(printf '%s; ' "${BAD[@]}")"
        detail+="(files: ${P#"${LK_DIR}/"}.*)"
        if [[ -n ${XFAIL[${key}]:-} ]]; then
            lk_result "${scen}" xfail "expected: ${XFAIL[${key}]}; ${detail}"
        else
            lk_result "${scen}" fail "${detail}"
            FAIL_NOTES+=("${scen}|${P}")
        fi
    fi
done
lk_tcpdump_stop

total=$(printf '%s\n' "${TIMES[@]}" | awk '{ s += $1 } END { printf "%.1f", s }')
mean=$(printf '%s\n' "${TIMES[@]}" | awk '{ s += $1 } END { if (NR) printf "%.1f", s / NR }')
maxt=$(printf '%s\n' "${TIMES[@]}" | sort -n | tail -n 1)

{
    echo "## interop/matrix.sh"
    echo
    echo "- run: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), mode $( ((QUICK)) && echo "--quick (8 cases)" || echo "full (32 cases)")"
    echo "- latchkey: \`${BIN}\` ($(timeout 5 "${BIN}" --version 2>/dev/null | head -n1 || echo "no --version")," \
        "tree $(git -C "${LK_DIR}" rev-parse --short HEAD 2>/dev/null || echo unknown))"
    echo "- strongSwan: $("${LK_CHARON}" --version 2>/dev/null | head -n1 || true) (kernel-libipsec, ESP in UDP/4500)"
    echo "- topology as basic.sh; PSK; one charon whose config is reloaded per case"
    echo "- per case: latchkey initiator (\`connect\`) or responder (\`listen --echo\`, charon \`swanctl --initiate\`);" \
        "swanctl --list-sas shows ESTABLISHED + INSTALLED with the expected IKE and ESP suites and latchkey's SPIs;" \
        "a datagram through the tunnel, its echo back identical; latchkey exits 0 (initiator: SAs deleted)"
    echo "- time per case: mean ${mean} s, max ${maxt} s; all cases ${total} s (plus ~5 s set-up)"
    echo
    echo "**matrix: ${LK_PASSED} passed, ${LK_FAILED} failed, ${LK_XFAILED} expected failures**"
    echo
    echo "| scenario | result | detail |"
    echo "|---|---|---|"
    printf '%s\n' "${LK_RESULTS[@]}"
    if ((${#XPASS_NOTES[@]})); then
        echo
        echo "### Expected failures that passed (remove them from expected-failures.txt)"
        echo
        printf -- '- %s\n' "${XPASS_NOTES[@]}"
    fi
    if ((${#FAIL_NOTES[@]})); then
        echo
        echo "### What failed"
        for f in "${FAIL_NOTES[@]}"; do
            echo
            echo "#### ${f%%|*}"
            echo
            echo "charon (errors and exchanges):"
            echo
            echo '```'
            grep -aE 'error|failed|invalid|no proposal|NO_PROPOSAL|AUTHENTICATION|TS_UNACCEPTABLE|INVALID|retransmit|giving up|parsed|generating|selected|unable|not ' \
                "${f#*|}-charon.log" 2>/dev/null | sed -E 's/^[0-9:]+ //' | tail -n 25 || true
            echo '```'
            echo
            echo "latchkey stderr (last 25 lines):"
            echo
            echo '```'
            tail -n 25 "${f#*|}.stderr" 2>/dev/null || true
            echo '```'
        done
    fi
    echo
    echo "Files: interop/run/matrix/ (NN-ROLE-IKE-ESP.cmd/.stdout/.stderr, -sas.txt, -charon.log), interop/run/matrix.pcap."
} | lk_results_section "${RESULTS_MD}" matrix

for x in "${XPASS_NOTES[@]}"; do
    echo "XPASS: ${x}"
done
echo "matrix: ${LK_PASSED} passed, ${LK_FAILED} failed"
((LK_FAILED == 0))
