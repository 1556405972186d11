#!/usr/bin/env bash
# Every speed figure of the speed issue in one command and one run (root):
#
#   interop/bench/all.sh [--quick]
#
# 1. ESP in memory: `cargo bench -p esp --bench pair` (the verdict: latchkey's
#    seal/open and ring's raw AEAD alternated round by round on the same
#    bytes, AES-128-GCM, 1400 B) and `cargo bench -p esp --bench esp`
#    (criterion, absolute times, separate runs);
#    latch and SA churn at up to 100 000 SAs: `cargo bench -p latch --bench
#    churn` (target 3's scale: what creating a latch or installing an SA
#    costs with that many SAs held);
# 2. interop/bench/run.sh: handshakes/s, memory per SA, latches, the latch
#    check's share of the packet cost and the IKE_SA_INIT flood, latchkey
#    against charon;
# 3. interop/bench/throughput.sh: iperf3 TCP through every tunnel
#    configuration against strongSwan <-> strongSwan and the bare veth.
#
# The parts run one after the other (never two at once: they would share
# the two CPUs). Prints one report in markdown and keeps it, with the parts'
# raw output, in interop/run/bench-all/.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "${BENCH_DIR}/../.." && pwd)
OUT=${ROOT}/interop/run/bench-all
QUICK=0
while [[ $# -gt 0 ]]; do
    case $1 in
    --quick) QUICK=1 ;;
    -h | --help)
        sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "all.sh: unknown argument '$1' (only --quick)" >&2
        exit 2
        ;;
    esac
    shift
done
[[ ${EUID} -eq 0 ]] || { echo "all.sh: must run as root (namespaces)" >&2; exit 1; }

rm -rf "${OUT}"
mkdir -p "${OUT}"
cd "${ROOT}"
note() { echo "all.sh: $*" >&2; }

note "building release binaries"
cargo build -q --release -p latchkey -p latchkey-loadgen

START_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
START=$(date -u +%Y-%m-%dT%H:%MZ)

# ---- 1. ESP in memory --------------------------------------------------------
note "ESP in memory (criterion)"
if [[ ${QUICK} == 1 ]]; then
    CRIT=(--warm-up-time 1 --measurement-time 2)
else
    CRIT=(--warm-up-time 2 --measurement-time 5)
fi
cargo bench -q -p esp --bench esp -- 'aes128gcm/.*/1400' "${CRIT[@]}" >"${OUT}/esp.txt" 2>&1 || {
    note "ESP bench failed: see ${OUT}/esp.txt"
    exit 1
}
PAIR_ROUNDS=30000
[[ ${QUICK} == 1 ]] && PAIR_ROUNDS=5000
cargo bench -q -p esp --bench pair -- --markdown --rounds "${PAIR_ROUNDS}" >"${OUT}/esp-pair.txt" 2>&1 || {
    note "ESP pair bench failed: see ${OUT}/esp-pair.txt"
    exit 1
}
# The same through the `&Sad` API others may share (atomic counters, the
# replay window's lock); the rows above are the owner's (`&mut Sad`), what
# the endpoint's driver uses.
cargo bench -q -p esp --bench pair -- --markdown --shared --rounds "${PAIR_ROUNDS}" >"${OUT}/esp-pair-shared.txt" 2>&1 || {
    note "ESP pair bench (shared) failed: see ${OUT}/esp-pair-shared.txt"
    exit 1
}
ESP_TABLE=$(python3 - "${ROOT}/target/criterion/aes128gcm" <<'EOF'
import json, os, sys
base = sys.argv[1]
def ns(name):
    with open(os.path.join(base, name, "1400", "new", "estimates.json")) as f:
        return json.load(f)["median"]["point_estimate"]
print("| AES-128-GCM, 1400 B | latchkey | ring raw, same run | latchkey rate / ring rate |")
print("|---|---|---|---|")
for op in ("seal", "open"):
    ours, ring = ns(op), ns("ring_" + op)
    print(f"| {op} | {ours:.1f} ns | {ring:.1f} ns | {ring / ours:.2f}x |")
EOF
)

note "latch and SA churn (criterion)"
cargo bench -q -p latch --bench churn -- "${CRIT[@]}" >"${OUT}/churn.txt" 2>&1 || {
    note "churn bench failed: see ${OUT}/churn.txt"
    exit 1
}
CHURN_TABLE=$(python3 - "${ROOT}/target/criterion/latch_churn" <<'EOF'
import json, os, sys
base = sys.argv[1]
def us(op, s):
    with open(os.path.join(base, op, str(s), "new", "estimates.json")) as f:
        return json.load(f)["median"]["point_estimate"] / 1000
sizes = (1, 1000, 10000, 100000)
print("| operation (median) | " + " | ".join(f"{s} SAs" for s in sizes) + " |")
print("|---|" + "---|" * len(sizes))
for op, what in (("connection_create_destroy", "create and destroy a connection latch"),
                 ("sa_add_remove", "a Larval latch, its SA installed and removed")):
    print(f"| {what} | " + " | ".join(f"{us(op, s):.2f} us" for s in sizes) + " |")
EOF
)

# ---- 2. handshakes, memory, latches, flood -----------------------------------
note "handshakes, memory, latches, flood (interop/bench/run.sh)"
RUN_ARGS=()
[[ ${QUICK} == 1 ]] && RUN_ARGS=(--quick)
"${BENCH_DIR}/run.sh" "${RUN_ARGS[@]}" >"${OUT}/run.txt" 2>"${OUT}/run.log" || {
    note "run.sh failed: see ${OUT}/run.log"
    exit 1
}

# ---- 3. tunnel throughput ----------------------------------------------------
note "tunnel throughput (interop/bench/throughput.sh)"
TP_ARGS=(--seconds 5 --rounds 3)
[[ ${QUICK} == 1 ]] && TP_ARGS=(--seconds 2 --rounds 1)
LATCHKEY=${ROOT}/target/release/latchkey "${BENCH_DIR}/throughput.sh" "${TP_ARGS[@]}" \
    >"${OUT}/throughput.txt" 2>"${OUT}/throughput.log" || {
    note "throughput.sh failed: see ${OUT}/throughput.log"
    exit 1
}

{
    echo "# latchkey speed report"
    echo
    echo "Run ${START} to $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (dirty tree)')."
    echo "Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r); load ${START_LOAD} at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end."
    echo
    echo "## ESP in memory, paired with ring (cargo bench -p esp --bench pair)"
    echo
    grep '^|' "${OUT}/esp-pair.txt"
    grep '^| [a-z]' "${OUT}/esp-pair-shared.txt"
    echo
    echo "## ESP in memory (cargo bench -p esp --bench esp, medians)"
    echo
    echo "${ESP_TABLE}"
    echo
    echo "## Latch and SA churn, one SA per peer host (cargo bench -p latch --bench churn, medians)"
    echo
    echo "${CHURN_TABLE}"
    echo
    echo "## Handshakes, memory, latches, flood (interop/bench/run.sh)"
    echo
    cat "${OUT}/run.txt"
    echo
    echo "## Tunnel throughput (interop/bench/throughput.sh)"
    echo
    cat "${OUT}/throughput.txt"
} | tee "${OUT}/report.md"
