#!/usr/bin/env bash
# A stand-in for `latchkey` made of a charon, to test basic.sh itself before
# latchkey exists (selftest.sh runs basic.sh with it). Understands just the
# `connect` and `listen` command lines that basic.sh gives, runs inside
# lk-left (basic.sh wraps it in `ip netns exec lk-left`), and prints JSON
# shaped like latchkey's --json output. Not a test of anything but the harness.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

while [[ ${1:-} == -v* ]]; do shift; done
mode=${1:?connect or listen}
shift
if [[ ${1:-} == --help ]]; then
    echo "mock latchkey ${mode}: --auth --psk-file --id --remote-id --send-udp --echo --natt --json"
    exit 0
fi
peer="" local_addr="" psk="" id="" rid="" lts="" rts="" inner="" dst="" msg="hello" wait=1
if [[ ${mode} == connect ]]; then peer=$1; shift; fi
while (($#)); do
    case $1 in
    --local | --ike) local_addr=${2%:*}; shift 2 ;;
    --psk-file) psk=$2; shift 2 ;;
    --id) id=$2; shift 2 ;;
    --remote-id) rid=$2; shift 2 ;;
    --local-ts) lts=$2; shift 2 ;;
    --remote-ts) rts=$2; shift 2 ;;
    --inner-addr) inner=$2; shift 2 ;;
    --send-udp) dst=$2; shift 2 ;;
    --message) msg=$2; shift 2 ;;
    --wait) wait=$2; shift 2 ;;
    --natt | --nat-t-port | --count | --ike-proposal | --esp-proposal | --auth) shift 2 ;;
    --json | --echo) shift ;;
    *) echo "mock: unknown argument $1" >&2; exit 2 ;;
    esac
done
if [[ -z ${inner} ]]; then
    inner=${lts%/*}
    inner=${inner%.0}.1
fi
peer=${peer%:*}
[[ -n ${peer} ]] || peer=${rid}

ns=$(ip netns identify "$$")
# lk_cleanup must not destroy the namespaces: they belong to basic.sh.
lk_ns_destroy() { :; }
LK_RUN=$(mktemp -d "${LK_RUN_ROOT}/mock-${mode}.XXXX")
trap 'lk_cleanup; ip link del lk-mock0 2>/dev/null || true; rm -rf "${LK_RUN}"' EXIT
trap 'exit 0' INT TERM
# The charon in our place needs the inner address on an interface.
ip link add lk-mock0 type veth peer name lk-mock1
ip addr add "${inner}/32" dev lk-mock0
ip link set lk-mock0 up
ip link set lk-mock1 up
lk_charon_start mock "${ns}" "${local_addr}" "${peer}" "${id}" "${rid}" "${lts}" "${rts}" none "${psk}" 2>/dev/null

sa_json() {
    lk_swanctl mock --list-sas 2>/dev/null | awk '
        / ESTABLISHED, IKEv2, / { split($5, a, "_"); split($6, b, "_"); si = a[1]; sr = b[1] }
        /^ +in +[0-9a-f]+,/ { ci = $2; sub(",", "", ci) }
        /^ +out +[0-9a-f]+,/ { co = $2; sub(",", "", co) }
        END { printf "\"ike_sa\": {\"spi_i\": \"%s\", \"spi_r\": \"%s\"}, \"child_sa\": {\"inbound_spi\": \"%s\", \"outbound_spi\": \"%s\"}", si, sr, ci, co }'
}

if [[ ${mode} == connect ]]; then
    lk_swanctl mock --initiate --child lk --timeout 30 >&2
    reply=$("${LK_PY}" "${LK_DIR}/udp_tool.py" send --bind "${inner}" --to "${dst}" --message "${msg}" \
        --wait "${wait}" | cut -f2 | head -n1 || true)
    printf '{%s, "sent": 1, "received": [{"data": "%s"}]}\n' "$(sa_json)" "${reply}"
    lk_swanctl mock --terminate --ike lk --timeout 10 >&2
    exit 0
fi
# listen: print the channel when it is up, then the datagrams (echoed).
lk_listener_start "${ns}" "${inner}" 9999 "${LK_RUN}/in.txt" --echo
until lk_swanctl mock --list-sas 2>/dev/null | grep -q INSTALLED; do sleep 0.2; done
printf '{"event": "channel", %s}\n' "$(sa_json)"
tail -n +1 -f "${LK_RUN}/in.txt" | while IFS=$'\t' read -r src data; do
    printf '{"event": "datagram", "src": "%s", "data": "%s"}\n' "${src}" "${data}"
done &
LK_PIDS+=("$!")
wait
