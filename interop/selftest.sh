#!/usr/bin/env bash
# Self-test of the interop harness without latchkey: a second charon in
# lk-left takes latchkey's place (charon <-> charon, both with userspace ESP
# through kernel-libipsec). Proves the namespaces, the charon set-up, the
# listener and the capture checks.
#
# Usage: interop/selftest.sh      (root; run interop/setup.sh first)
# Output: interop/run/selftest/ (configs, logs), interop/run/selftest.pcap;
# last line: `selftest: N passed, M failed`; exit non-zero on any failure.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

S=selftest
lk_init "${S}"
PCAP=${LK_RUN_ROOT}/selftest.pcap
MSG="selftest $(date +%s)-$$"

lk_ns_create
# The left charon needs latchkey's inner address on an interface of its own.
lk_ns_add_inner_left
lk_psk "${LK_RUN}/psk"

lk_charon_start right "${LK_NS_RIGHT}" "${LK_OUTER_RIGHT}" "${LK_OUTER_LEFT}" \
    "${LK_OUTER_RIGHT}" "${LK_OUTER_LEFT}" "${LK_TS_RIGHT}" "${LK_TS_LEFT}" none "${LK_RUN}/psk"
lk_charon_start left "${LK_NS_LEFT}" "${LK_OUTER_LEFT}" "${LK_OUTER_RIGHT}" \
    "${LK_OUTER_LEFT}" "${LK_OUTER_RIGHT}" "${LK_TS_LEFT}" "${LK_TS_RIGHT}" none "${LK_RUN}/psk"
lk_listener_start "${LK_NS_RIGHT}" "${LK_INNER_RIGHT}" 9999 "${LK_RUN}/listener.txt" --echo
lk_tcpdump_start "${LK_NS_LEFT}" "${LK_VETH_LEFT}" "${PCAP}"
lk_poll_sas_start right "${LK_RUN}/right-sas.txt"

# 1. left initiates (as latchkey will), right responds.
if lk_swanctl left --initiate --child lk --timeout 30 >"${LK_RUN}/initiate.out" 2>&1; then
    lk_result "${S}: initiate" pass "swanctl --initiate --child lk on the left charon"
else
    lk_result "${S}: initiate" fail "swanctl --initiate failed: $(tail -n 3 "${LK_RUN}/initiate.out")"
fi

# 2. a datagram 10.98.0.1 -> 10.99.0.1:9999 through the tunnel, echoed back.
if ip netns exec "${LK_NS_LEFT}" "${LK_PY}" "${LK_DIR}/udp_tool.py" send --bind "${LK_INNER_LEFT}" \
    --to "${LK_INNER_RIGHT}:9999" --message "${MSG}" --wait 3 --expect-reply >"${LK_RUN}/reply.txt" 2>&1; then
    reply_ok=1
else
    reply_ok=0
fi
sleep 0.5
lk_poll_sas_stop

# 3. charon right showed the SAs while they were up.
if out=$("${LK_PY}" "${LK_DIR}/check_sas.py" --sas "${LK_RUN}/right-sas.txt" \
    --summary "${LK_RUN}/right-sas.json" 2>&1); then
    lk_result "${S}: swanctl --list-sas" pass "${out}"
else
    lk_result "${S}: swanctl --list-sas" fail "${out}"
fi

if lk_listener_got "${LK_RUN}/listener.txt" "${LK_INNER_LEFT}" "${MSG}"; then
    lk_result "${S}: datagram delivered" pass "listener on ${LK_INNER_RIGHT}:9999 got '${MSG}' from $(cut -f1 "${LK_RUN}/listener.txt" | head -n1)"
else
    lk_result "${S}: datagram delivered" fail "listener got: $(head -c 300 "${LK_RUN}/listener.txt")"
fi
if ((reply_ok)) && grep -qF "${MSG}" "${LK_RUN}/reply.txt"; then
    lk_result "${S}: echo returned" pass "reply $(head -n1 "${LK_RUN}/reply.txt")"
else
    lk_result "${S}: echo returned" fail "$(head -c 300 "${LK_RUN}/reply.txt")"
fi

# 4. the other direction: right initiates a fresh IKE SA to left.
lk_swanctl left --terminate --ike lk --timeout 10 >/dev/null 2>&1 || true
if lk_swanctl right --initiate --child lk --timeout 30 >"${LK_RUN}/initiate-right.out" 2>&1 &&
    ip netns exec "${LK_NS_LEFT}" "${LK_PY}" "${LK_DIR}/udp_tool.py" send --bind "${LK_INNER_LEFT}" \
        --to "${LK_INNER_RIGHT}:9999" --message "${MSG} reverse" --wait 3 --expect-reply >"${LK_RUN}/reply-reverse.txt" 2>&1; then
    lk_result "${S}: right initiates" pass "swanctl --initiate on the right charon, datagram + echo through it"
else
    lk_result "${S}: right initiates" fail "$(tail -n 3 "${LK_RUN}/initiate-right.out" "${LK_RUN}/reply-reverse.txt" 2>/dev/null)"
fi

lk_tcpdump_stop
lk_check_pcap "${S}: capture" "${PCAP}"
"${LK_PY}" "${LK_DIR}/decrypt.py" --log "${LK_RUN}/right/charon.log" --sas "${LK_RUN}/right-sas.txt" \
    --pcap "${PCAP}" --out "${LK_RUN_ROOT}/selftest.decrypted.txt" >&2 || true
lk_charon_facts right "${LK_RUN}/right-facts.txt"

# 5. basic.sh itself, with mock-latchkey.sh (a charon) in latchkey's place:
# proves basic.sh's checks pass for a correct peer. Our namespaces and
# daemons go first; basic.sh makes its own (we keep holding the lock).
lk_cleanup_procs
lk_ns_destroy
if LK_LOCK_HELD=1 LK_RUN_ROOT="${LK_RUN}/mock" LK_RESULTS_MD="${LK_RUN}/mock-RESULTS.md" \
    "${LK_DIR}/basic.sh" "${LK_DIR}/mock-latchkey.sh" >"${LK_RUN}/mock-basic.out" 2>&1; then
    lk_result "${S}: basic.sh with mock latchkey" pass "$(tail -n 1 "${LK_RUN}/mock-basic.out")"
else
    lk_result "${S}: basic.sh with mock latchkey" fail "$(tail -n 1 "${LK_RUN}/mock-basic.out"); see ${LK_RUN#"${LK_DIR}/"}/mock-RESULTS.md"
fi

echo "| scenario | result | detail |" >"${LK_RUN}/results.md"
echo "|---|---|---|" >>"${LK_RUN}/results.md"
printf '%s\n' "${LK_RESULTS[@]}" >>"${LK_RUN}/results.md"
echo "selftest: ${LK_PASSED} passed, ${LK_FAILED} failed"
((LK_FAILED == 0))
