#!/usr/bin/env bash
# The foundation's capture check: `latchkey demo` on loopback inside a fresh
# network namespace, on the standard ports (500/4500, root), captured with
# tcpdump and decoded by tshark (a decoder no one here wrote). Passes when
# tshark sees IKE_SA_INIT and IKE_AUTH exchanges of IKEv2 and ESP packets
# in UDP, and the demo's inner plaintext appears nowhere in the capture.
# Usage: interop/demo-capture.sh [LATCHKEY_BIN]   (root; interop/setup.sh first)
# Last line: `demo-capture: N passed, M failed`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=$(realpath "${1:-target/debug/latchkey}")
NS=lk-demo
RUN=interop/run/demo-capture
mkdir -p "$RUN"
PCAP=$RUN/demo.pcap
pass=0
fail=0
check() { # name, command...
    local name=$1
    shift
    if "$@"; then
        echo "PASS $name"
        pass=$((pass + 1))
    else
        echo "FAIL $name"
        fail=$((fail + 1))
    fi
}
cleanup() {
    [ -n "${TCPDUMP_PID:-}" ] && kill "$TCPDUMP_PID" 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
}
trap cleanup EXIT
ip netns del "$NS" 2>/dev/null || true
ip netns add "$NS"
ip -n "$NS" link set lo up
rm -f "$PCAP"
ip netns exec "$NS" tcpdump -i lo -U --immediate-mode -w "$PCAP" 'udp port 500 or udp port 4500' 2>"$RUN/tcpdump.err" &
TCPDUMP_PID=$!
for _ in $(seq 50); do grep -q "listening" "$RUN/tcpdump.err" 2>/dev/null && break; sleep 0.1; done
check "demo exits 0" ip netns exec "$NS" "$BIN" demo --left 127.0.0.1 --right 127.0.0.2 \
    --ike-port 500 --natt-port 4500 --count 5 --json >"$RUN/demo.json"
sleep 0.5
kill -INT "$TCPDUMP_PID" 2>/dev/null || true
wait "$TCPDUMP_PID" 2>/dev/null || true
TCPDUMP_PID=
tshark -r "$PCAP" >"$RUN/summary.txt" 2>/dev/null || true
check "tshark decodes IKE_SA_INIT" grep -q "IKE_SA_INIT" "$RUN/summary.txt"
check "tshark decodes IKE_AUTH" grep -q "IKE_AUTH" "$RUN/summary.txt"
check "tshark decodes ESP in UDP (RFC 3948)" grep -q "ESP" "$RUN/summary.txt"
tshark -r "$PCAP" -T fields -e udp.dstport -e isakmp.exchangetype >"$RUN/ports.txt" 2>/dev/null || true
check "IKE_AUTH moved to port 4500 (RFC 7296 2.23)" grep -qP '^4500\t35$' "$RUN/ports.txt"
check "no inner plaintext on the wire" bash -c "! grep -qa 'from left' '$PCAP' && ! grep -qa 'from right' '$PCAP'"
check "the demo reported ok" grep -q '"ok": true' "$RUN/demo.json"
echo "--- tshark summary ($PCAP)"
cat "$RUN/summary.txt"
echo "demo-capture: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
