#!/usr/bin/env bash
# latchkey <-> strongSwan interop, basic scenarios (root, network namespaces).
#
# Usage: interop/basic.sh [LATCHKEY_BIN]     (default: target/debug/latchkey)
#   Run interop/setup.sh once before (CI: setup.sh, cargo build, basic.sh).
#
# Topology (interop/lib.sh):
#   lk-left  192.0.2.1/24 (veth lk-l0)  latchkey; inner address 10.98.0.1
#            exists only inside latchkey (no interface)
#   lk-right 192.0.2.2/24 (veth lk-r0)  charon (kernel-libipsec, userspace ESP)
#            inner 10.99.0.1/32, UDP listener 10.99.0.1:9999 (echoes)
#   Child SA 10.98.0.0/24 === 10.99.0.0/24, PSK, IKE aes128gcm16-prfsha256-x25519,
#   ESP aes128gcm16. ESP is always in UDP/4500 (charon fakes NAT detection).
#
# Scenario 1 "initiator": `latchkey connect` to charon (responder).
# Scenario 1b "initiator-natd": the same with --force-encap=false (latchkey
#   must detect charon's fake NAT-D itself and move to 4500).
# Scenario 2 "responder": `latchkey listen --echo`, charon initiates
#   (skipped while `latchkey listen --help` fails).
#
# Output: interop/RESULTS.md, interop/run/basic/ (configs, logs, outputs),
# interop/run/basic.pcap and basic-responder.pcap; last line on stdout is
# `interop: N passed, M failed`; exit status non-zero on any failure.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BIN=${1:-${LK_DIR}/../target/debug/latchkey}
[[ ${BIN} == */* ]] || BIN=$(command -v "${BIN}" || echo "${BIN}")
BIN=$(realpath -m "${BIN}")
# Extra global flags for latchkey (logs go to stderr, kept in run/basic/).
read -r -a LK_VERBOSE <<<"${LATCHKEY_VERBOSE--vv}"
WAIT=${LK_WAIT:-3}
RESULTS_MD=${LK_RESULTS_MD:-${LK_DIR}/RESULTS.md}

lk_init basic
R=${LK_RUN}
MSG="hello strongswan from latchkey $(date +%s)-$$"
MSG2="hello latchkey from strongswan $(date +%s)-$$"
FAIL_NOTES=()

note_fail() { FAIL_NOTES+=("$1"); }

# Does charon's SA list go empty within N seconds (latchkey deleted the SAs)?
sas_gone() { lk_sas_gone right "$1"; }

lk_ns_create
lk_psk "${R}/psk"
lk_charon_start right "${LK_NS_RIGHT}" "${LK_OUTER_RIGHT}" "${LK_OUTER_LEFT}" \
    "${LK_OUTER_RIGHT}" "${LK_OUTER_LEFT}" "${LK_TS_RIGHT}" "${LK_TS_LEFT}" none "${R}/psk"
lk_listener_start "${LK_NS_RIGHT}" "${LK_INNER_RIGHT}" 9999 "${R}/listener.txt" --echo

# ---------------------------------------------------------------------------
# run_initiator NAME PCAP MESSAGE [EXTRA LATCHKEY ARGS...]: latchkey connects
# to charon (the responder), sends MESSAGE to the listener, waits for the echo.
run_initiator() {
    local S=$1 pcap=$2 msg=$3 rc out
    shift 3
    if [[ ! -x ${BIN} ]]; then
        lk_result "${S}" fail "latchkey binary ${BIN} not found or not executable"
        note_fail "${S}: no binary ${BIN}"
    elif ! timeout 10 "${BIN}" connect --help >"${R}/connect-help.txt" 2>&1 ||
        ! grep -q -- '--send-udp' "${R}/connect-help.txt"; then
        lk_result "${S}" fail "\`${BIN} connect --help\` fails or lacks --send-udp: $(head -c 200 "${R}/connect-help.txt")"
        note_fail "${S}: connect not implemented"
    else
        lk_tcpdump_start "${LK_NS_LEFT}" "${LK_VETH_LEFT}" "${LK_RUN_ROOT}/${pcap}.pcap"
        local log_from
        log_from=$(($(wc -l <"${R}/right/charon.log") + 1))
        lk_poll_sas_start right "${R}/${S}-sas.txt"
        cmd=(ip netns exec "${LK_NS_LEFT}" timeout 90 "${BIN}" "${LK_VERBOSE[@]}" connect "${LK_OUTER_RIGHT}"
            --local "${LK_OUTER_LEFT}:500" --nat-t-port 4500
            --auth psk --psk-file "${R}/psk" --id "${LK_OUTER_LEFT}" --remote-id "${LK_OUTER_RIGHT}"
            --ike-proposal "${LK_IKE_PROPOSAL}" --esp-proposal "${LK_ESP_PROPOSAL}"
            --local-ts "${LK_TS_LEFT}" --remote-ts "${LK_TS_RIGHT}" --inner-addr "${LK_INNER_LEFT}"
            --send-udp "${LK_INNER_RIGHT}:9999" --message "${msg}" --count 1 --wait "${WAIT}" --json "$@")
        printf '%q ' "${cmd[@]}" >"${R}/${S}.cmd"
        echo >>"${R}/${S}.cmd"
        lk_log "running: $(cat "${R}/${S}.cmd")"
        set +e
        "${cmd[@]}" >"${R}/${S}.stdout" 2>"${R}/${S}.stderr"
        rc=$?
        set -e
        lk_poll_sas_stop
        lk_log "latchkey connect (${S}) exited ${rc}"

        # (a) exit status
        if ((rc == 0)); then
            lk_result "${S}: latchkey connect exits 0" pass "exit 0"
        else
            lk_result "${S}: latchkey connect exits 0" fail "exit ${rc}: $(tail -n 3 "${R}/${S}.stderr")"
            note_fail "${S}: latchkey exit ${rc}"
        fi
        # (b) charon showed ESTABLISHED + INSTALLED with our suites and latchkey's SPIs
        if out=$("${LK_PY}" "${LK_DIR}/check_sas.py" --sas "${R}/${S}-sas.txt" \
            --latchkey-json "${R}/${S}.stdout" --summary "${R}/${S}-sas.json" 2>&1); then
            lk_result "${S}: charon lists the SAs" pass "${out}"
        else
            lk_result "${S}: charon lists the SAs" fail "${out}"
            note_fail "${S}: swanctl --list-sas check"
        fi
        # (c) the datagram reached the listener on charon's inner address
        if lk_listener_got "${R}/listener.txt" "${LK_INNER_LEFT}" "${msg}"; then
            lk_result "${S}: datagram delivered" pass "${LK_INNER_RIGHT}:9999 got '${msg}' from $(grep -F "${msg}" "${R}/listener.txt" | cut -f1 | head -n1)"
        else
            lk_result "${S}: datagram delivered" fail "listener on ${LK_INNER_RIGHT}:9999 got: '$(head -c 300 "${R}/listener.txt")'"
            note_fail "${S}: datagram not delivered"
        fi
        # (d) the listener's echo came back to latchkey through the child SA (inbound ESP)
        if grep -qF "${msg}" "${R}/${S}.stdout" && grep -q '"received"' "${R}/${S}.stdout" &&
            "${LK_PY}" -c 'import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if any(r.get("data") == sys.argv[2] for r in d.get("received", [])) else 1)' "${R}/${S}.stdout" "${msg}"
        then
            lk_result "${S}: echo received by latchkey" pass "inbound ESP from ${LK_INNER_RIGHT}:9999 decrypted and delivered"
        else
            lk_result "${S}: echo received by latchkey" fail "latchkey's JSON has no received datagram '${msg}'"
            note_fail "${S}: no echo"
        fi
        # (e) latchkey deleted the SAs before exiting
        if sas_gone 5; then
            lk_result "${S}: SAs deleted on exit" pass "charon lists no IKE SA after latchkey exited"
        else
            lk_result "${S}: SAs deleted on exit" fail "charon still lists: $(lk_swanctl right --list-sas 2>&1 | head -n 3)"
            note_fail "${S}: SAs left behind"
            lk_swanctl right --terminate --ike lk --force --timeout 5 >/dev/null 2>&1 || true
        fi
        lk_tcpdump_stop
        # (f) the capture shows IKE_SA_INIT, IKE_AUTH, ESP-in-UDP
        lk_check_pcap "${S}: capture" "${LK_RUN_ROOT}/${pcap}.pcap"
        tail -n +"${log_from}" "${R}/right/charon.log" >"${R}/${S}-charon.log"
    fi

}

# Scenario 1: latchkey initiates.
run_initiator initiator basic "${MSG}"

# Scenario 1b: the same without forcing encapsulation on latchkey's side:
# latchkey's NAT-D is then honest, and it must itself detect charon's fake
# NAT-D, move to 4500 and encapsulate (charon logs "faking NAT situation").
if [[ -x ${BIN} ]] && grep -q -- '--force-encap=false' "${R}/connect-help.txt" 2>/dev/null; then
    run_initiator initiator-natd basic-natd "${MSG} (natd)" --force-encap=false
    if grep -aq 'faking NAT situation' "${R}/initiator-natd-charon.log" 2>/dev/null; then
        lk_result "initiator-natd: latchkey's NAT-D honest" pass "charon: faking NAT situation to enforce UDP encapsulation"
    else
        lk_result "initiator-natd: latchkey's NAT-D honest" fail "charon did not log 'faking NAT situation' (latchkey's NAT-D did not match, or none)"
        note_fail "initiator-natd: latchkey still faked NAT-D with --force-encap=false"
    fi
else
    lk_result "initiator-natd" skip "skipped (connect has no --force-encap=false)"
fi

# ---------------------------------------------------------------------------
# Scenario 2: latchkey responds, charon initiates.
S="responder"
if [[ ! -x ${BIN} ]] || ! timeout 10 "${BIN}" listen --help >"${R}/listen-help.txt" 2>&1 ||
    ! grep -q -- '--auth' "${R}/listen-help.txt"; then
    lk_result "${S}" skip "skipped (listen not implemented)"
else
    # The CLI contract says `listen` takes connect's flags minus the peer
    # (--local ADDR:PORT, --nat-t-port); the current CLI spells the
    # addresses --ike ADDR:PORT / --natt ADDR:PORT. Use what --help shows.
    if grep -q -- '--natt' "${R}/listen-help.txt"; then
        addr_args=(--ike "${LK_OUTER_LEFT}:500" --natt "${LK_OUTER_LEFT}:4500")
    else
        addr_args=(--local "${LK_OUTER_LEFT}:500" --nat-t-port 4500)
    fi
    echo_args=()
    grep -q -- '--echo' "${R}/listen-help.txt" && echo_args=(--echo)
    lk_tcpdump_start "${LK_NS_LEFT}" "${LK_VETH_LEFT}" "${LK_RUN_ROOT}/basic-responder.pcap"
    # `env --default-signal=INT`: a background job of a script starts with
    # SIGINT ignored; give latchkey the default, as under an operator's Ctrl-C.
    cmd=(ip netns exec "${LK_NS_LEFT}" env --default-signal=INT "${BIN}" "${LK_VERBOSE[@]}" listen "${addr_args[@]}"
        --auth psk --psk-file "${R}/psk" --id "${LK_OUTER_LEFT}" --remote-id "${LK_OUTER_RIGHT}"
        --ike-proposal "${LK_IKE_PROPOSAL}" --esp-proposal "${LK_ESP_PROPOSAL}"
        --local-ts "${LK_TS_LEFT}" --remote-ts "${LK_TS_RIGHT}" "${echo_args[@]}" --json)
    printf '%q ' "${cmd[@]}" >"${R}/responder.cmd"
    echo >>"${R}/responder.cmd"
    lk_log "running: $(cat "${R}/responder.cmd")"
    lk_bg "latchkey-listen" "${cmd[@]}" >"${R}/responder.stdout" 2>"${R}/responder.stderr"
    LPID=${LK_LAST_PID}
    up=0
    for ((i = 0; i < 100; i++)); do
        if ip netns exec "${LK_NS_LEFT}" ss -Hunl 2>/dev/null | grep -q "${LK_OUTER_LEFT}:500 \|0.0.0.0:500 "; then
            up=1
            break
        fi
        kill -0 "${LPID}" 2>/dev/null || break
        sleep 0.1
    done
    # Bound is not necessarily configured (a charon in latchkey's place binds
    # first and loads its config after): give it a moment.
    sleep 0.5
    if ((up == 0)); then
        lk_result "${S}: latchkey listen starts" fail "not listening on udp ${LK_OUTER_LEFT}:500: $(tail -n 3 "${R}/responder.stderr")"
        note_fail "${S}: listen did not start"
    else
        lk_poll_sas_start right "${R}/responder-sas.txt"
        # charon initiates.
        if lk_swanctl right --initiate --child lk --timeout 30 >"${R}/responder-initiate.out" 2>&1; then
            lk_result "${S}: charon initiates" pass "swanctl --initiate --child lk succeeded"
        else
            lk_result "${S}: charon initiates" fail "swanctl --initiate: $(grep -E 'failed|error|received|parsed' "${R}/responder-initiate.out" | tail -n 4)"
            note_fail "${S}: swanctl --initiate failed"
        fi
        # A datagram from charon's inner address to latchkey's, which echoes it.
        set +e
        ip netns exec "${LK_NS_RIGHT}" "${LK_PY}" "${LK_DIR}/udp_tool.py" send --bind "${LK_INNER_RIGHT}" \
            --to "${LK_INNER_LEFT}:9999" --message "${MSG2}" --wait "${WAIT}" --expect-reply \
            >"${R}/responder-reply.txt" 2>&1
        sent_rc=$?
        set -e
        sleep 0.5
        lk_poll_sas_stop
        if out=$("${LK_PY}" "${LK_DIR}/check_sas.py" --sas "${R}/responder-sas.txt" \
            --latchkey-json "${R}/responder.stdout" --summary "${R}/responder-sas.json" 2>&1); then
            lk_result "${S}: charon lists the SAs" pass "${out}"
        else
            lk_result "${S}: charon lists the SAs" fail "${out}"
            note_fail "${S}: swanctl --list-sas check"
        fi
        if grep -qF "${MSG2}" "${R}/responder.stdout"; then
            lk_result "${S}: datagram delivered to latchkey" pass "latchkey printed '${MSG2}'"
        else
            lk_result "${S}: datagram delivered to latchkey" fail "latchkey's output lacks '${MSG2}'"
            note_fail "${S}: datagram not delivered"
        fi
        if ((${#echo_args[@]})); then
            if ((sent_rc == 0)) && grep -qF "${MSG2}" "${R}/responder-reply.txt"; then
                lk_result "${S}: echo back to charon's side" pass "reply $(head -n1 "${R}/responder-reply.txt")"
            else
                lk_result "${S}: echo back to charon's side" fail "$(head -c 200 "${R}/responder-reply.txt")"
                note_fail "${S}: no echo"
            fi
        fi
    fi
    # Stop latchkey listen with Ctrl-C (SIGINT), as an operator would.
    if kill -0 "${LPID}" 2>/dev/null; then
        kill -s INT "${LPID}" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            kill -0 "${LPID}" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "${LPID}" 2>/dev/null; then
            lk_result "${S}: latchkey listen stops on SIGINT" fail "still running 5 s after SIGINT"
            note_fail "${S}: no exit on SIGINT"
            lk_stop "${LPID}" KILL
        else
            set +e
            wait "${LPID}"
            lrc=$?
            set -e
            if ((lrc == 0)); then
                lk_result "${S}: latchkey listen stops on SIGINT" pass "exit 0"
            else
                lk_result "${S}: latchkey listen stops on SIGINT" fail "exit ${lrc}: $(tail -n 2 "${R}/responder.stderr")"
                note_fail "${S}: exit ${lrc} after SIGINT"
            fi
        fi
    elif ((up)); then
        lk_result "${S}: latchkey listen stops on SIGINT" fail "exited early: $(tail -n 3 "${R}/responder.stderr")"
        note_fail "${S}: latchkey listen exited early"
    fi
    lk_tcpdump_stop
    lk_check_pcap "${S}: capture" "${LK_RUN_ROOT}/basic-responder.pcap"
fi

lk_charon_facts right "${R}/charon-facts.txt"
# Decrypted dissections (IKE_AUTH contents, inner packets) with charon's keys.
for p in basic basic-natd basic-responder; do
    [[ -s ${LK_RUN_ROOT}/${p}.pcap ]] || continue
    polls=()
    for f in "${R}"/*-sas.txt; do [[ -e ${f} ]] && polls+=(--sas "${f}"); done
    "${LK_PY}" "${LK_DIR}/decrypt.py" --log "${R}/right/charon.log" "${polls[@]}" \
        --pcap "${LK_RUN_ROOT}/${p}.pcap" --out "${LK_RUN_ROOT}/${p}.decrypted.txt" >&2 || true
done

# ---------------------------------------------------------------------------
# RESULTS.md
{
    echo "## interop/basic.sh"
    echo
    echo "- run: $(date -u '+%Y-%m-%d %H:%M:%S UTC') on $(uname -r)"
    echo "- latchkey: \`${BIN}\` ($(timeout 5 "${BIN}" --version 2>/dev/null | head -n1 || echo "no --version")," \
        "tree $(git -C "${LK_DIR}" rev-parse --short HEAD 2>/dev/null || echo unknown))"
    echo "- strongSwan: $("${LK_CHARON}" --version 2>/dev/null | head -n1 || true)" \
        "(charon + kernel-libipsec, userspace ESP in UDP/4500)"
    echo "- topology: lk-left 192.0.2.1 (latchkey, inner 10.98.0.1) <-veth-> lk-right 192.0.2.2" \
        "(charon, inner 10.99.0.1, UDP echo listener :9999); child SA 10.98.0.0/24 === 10.99.0.0/24;" \
        "PSK; IKE ${LK_IKE_PROPOSAL}; ESP ${LK_ESP_PROPOSAL}"
    echo "- scenario initiator: \`latchkey connect\` -> charon responder; checks: exit 0, swanctl" \
        "--list-sas while up (ESTABLISHED/INSTALLED, suites, SPIs = latchkey's), datagram at" \
        "10.99.0.1:9999, echo back through the child SA, SAs deleted on exit, capture" \
        "(IKE_SA_INIT, IKE_AUTH, ESP-in-UDP)"
    echo "- scenario initiator-natd: the same with \`--force-encap=false\` (honest NAT-D from" \
        "latchkey: it must detect charon's fake NAT-D and move to 4500 itself); skipped without that flag"
    echo "- scenario responder: \`latchkey listen --echo\`, charon \`swanctl --initiate\`; skipped" \
        "while \`latchkey listen --help\` fails"
    echo
    echo "**interop: ${LK_PASSED} passed, ${LK_FAILED} failed, ${LK_SKIPPED} skipped**"
    echo
    echo "| scenario / check | result | detail |"
    echo "|---|---|---|"
    printf '%s\n' "${LK_RESULTS[@]}"
    if ((${#FAIL_NOTES[@]})); then
        echo
        echo "### What failed"
        echo
        printf -- '- %s\n' "${FAIL_NOTES[@]}"
        echo
        echo "#### charon log (errors and exchanges)"
        echo
        echo '```'
        grep -E 'error|failed|invalid|no proposal|NO_PROPOSAL|AUTHENTICATION|TS_UNACCEPTABLE|INVALID|retransmit|giving up|parsed|generating|received packet|sending packet|deleting|unable|not' \
            "${R}/right/charon.log" 2>/dev/null | sed -E 's/^[0-9:]+ //' | tail -n 60 || true
        echo '```'
        for f in initiator responder; do
            [[ -s ${R}/${f}.stderr ]] || continue
            echo
            echo "#### latchkey ${f} stderr (last 40 lines)"
            echo
            echo '```'
            tail -n 40 "${R}/${f}.stderr"
            echo '```'
        done
    fi
    echo
    echo "Files: interop/run/basic/ (configs, charon.log, latchkey stdout/stderr, swanctl polls)," \
        "interop/run/basic.pcap, basic-natd.pcap, basic-responder.pcap (and *.decrypted.txt: tshark" \
        "with the keys charon logged)."

} | lk_results_section "${RESULTS_MD}" basic

echo "interop: ${LK_PASSED} passed, ${LK_FAILED} failed"
((LK_FAILED == 0))
