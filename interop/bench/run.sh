#!/usr/bin/env bash
# latchkey speed and scale bench against strongSwan, one command, one run:
#
#   interop/bench/run.sh [--quick] [--only LIST] [--rounds N] [--duration S]
#                        [--concurrency N] [--hold-sas N] [--flood-secs S]
#                        [--charon-hold-secs S] [--base-latchkey PATH]
#                        [--flood-rounds N]
#
# --base-latchkey: also measure memory per SA for another `latchkey` binary
# (e.g. one built from an earlier commit), in the same run, before the
# current one: a before/after ratio that the machine's load cannot skew;
# the flood part floods it too, each round (the legitimate initiator is
# always the current `latchkey`).
# --flood-rounds N: repeat the flood part N times (default 1), each round
# base (if given), latchkey, charon back to back.
#
# LIST is a comma list of: handshakes, memory, latches, latchbench (the
# criterion bench endpoint/benches/latch_check.rs, compiled on first use),
# flood (default all).
# Prints a markdown table (configuration, figure, ratio to strongSwan from
# the same run) and writes it with the raw JSON to interop/run/bench/.
#
# Namespaces of its own (lkb-gen: generator, lkb-resp: responder, veth
# 192.0.2.1 <-> 192.0.2.2), its own lock (not the interop lock: the other
# harness's namespaces are not touched), everything torn down on exit.
# Responders (latchkey listen, charon) take turns on 192.0.2.2, alternating
# round by round, against the same generator (latchkey-loadgen).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "${BENCH_DIR}/../.." && pwd)
export LK_NS_LEFT=lkb-gen LK_NS_RIGHT=lkb-resp
export LK_LOCK=${LKB_LOCK:-/tmp/latchkey-bench.lock}
export LK_RUN_ROOT=${ROOT}/interop/run
# shellcheck source=../lib.sh
. "${ROOT}/interop/lib.sh"

ONLY=handshakes,memory,latches,latchbench,flood
ROUNDS=3
DURATION=8
CONCURRENCY=64
HOLD_SAS=100000
FLOOD_SECS=10
CHARON_HOLD_SECS=120
BASE_LK=""
FLOOD_ROUNDS=1
while [[ $# -gt 0 ]]; do
    case $1 in
    --quick) ROUNDS=1 DURATION=4 HOLD_SAS=10000 FLOOD_SECS=5 ;;
    --only) ONLY=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --concurrency) CONCURRENCY=$2; shift ;;
    --hold-sas) HOLD_SAS=$2; shift ;;
    --flood-secs) FLOOD_SECS=$2; shift ;;
    --charon-hold-secs) CHARON_HOLD_SECS=$2; shift ;;
    --base-latchkey) BASE_LK=$2; shift ;;
    --flood-rounds) FLOOD_ROUNDS=$2; shift ;;
    *) lk_die "unknown argument $1" ;;
    esac
    shift
done
want() { [[ ,${ONLY}, == *,$1,* ]]; }

# LKB_LK / LKB_LG: other binaries (say, a baseline build) with LKB_NO_BUILD=1.
LK=${LKB_LK:-${ROOT}/target/release/latchkey}
LG=${LKB_LG:-${ROOT}/target/release/latchkey-loadgen}
GEN=192.0.2.1
RESP=192.0.2.2
IKE_P=${LK_IKE_PROPOSAL}
ESP_P=${LK_ESP_PROPOSAL}

lk_init bench
OUT=${LK_RUN}
ROWS=()
row() { ROWS+=("| $1 | $2 | $3 |"); lk_log "ROW $1 | $2 | $3"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1fx", a / b; else print "n/a" }'; }
load() { cut -d' ' -f1 /proc/loadavg; }

if [[ ${LKB_NO_BUILD:-0} != 1 ]]; then
    (cd "${ROOT}" && cargo build --release -q -p latchkey -p latchkey-loadgen) || lk_die "build failed"
fi

lk_ns_create
# Spoofed flood sources (RFC 2544 space) route back into the generator's
# namespace and are local there: the answers land on the flood's socket.
ip -n "${LK_NS_RIGHT}" route add 198.18.0.0/15 via "${GEN}"
ip -n "${LK_NS_LEFT}" route add local 198.18.0.0/15 dev lo
PSK=${OUT}/psk
lk_psk "${PSK}"

# ---- responders -----------------------------------------------------------
LK_PID=""
lk_start() { # lk_start COOKIE_THRESHOLD MAX_HALF_OPEN [BINARY [LISTEN_ARGS...]]
    local ct=$1 ho=$2 bin=${3:-${LK}}
    shift $(($# < 3 ? $# : 3))
    lk_bg latchkey ip netns exec "${LK_NS_RIGHT}" "${bin}" listen \
        --ike "${RESP}:500" --natt "${RESP}:4500" --auth psk --psk-file "${PSK}" \
        --ike-proposal "${IKE_P}" --esp-proposal "${ESP_P}" \
        --cookie-threshold "${ct}" --max-half-open "${ho}" --control "${OUT}/lk.sock" "$@" \
        >"${OUT}/latchkey.out" 2>"${OUT}/latchkey.err"
    LK_PID=${LK_LAST_PID}
    local i
    for ((i = 0; i < 50; i++)); do
        grep -q listening "${OUT}/latchkey.out" 2>/dev/null && return 0
        sleep 0.1
    done
    cat "${OUT}/latchkey.err" >&2
    lk_die "latchkey listen did not start"
}
lk_end() { lk_stop "${LK_PID}" INT; LK_PID=""; }

CH_PID=""
ch_start() { # ch_start COOKIE_THRESHOLD
    local d=${OUT}/charon
    rm -rf "${d}"
    mkdir -p "${d}/run" "${d}/swanctl"
    local sub
    for sub in conf.d x509 x509ca x509aa x509ocsp x509crl x509ac pubkey private rsa ecdsa bliss pkcs8 pkcs12; do
        mkdir -p "${d}/swanctl/${sub}"
    done
    lk_render "${BENCH_DIR}/strongswan.conf.in" "${d}/strongswan.conf" \
        "LOG=${d}/charon.log" "VICI=${d}/charon.vici" "COOKIE=$1"
    lk_render "${BENCH_DIR}/swanctl.conf.in" "${d}/swanctl/swanctl.conf" \
        "LOCAL_ADDR=${RESP}" "IKE_PROPOSAL=${IKE_P}" "ESP_PROPOSAL=${ESP_P}" \
        "LOCAL_TS=10.99.0.0/24" "REMOTE_TS=10.98.0.0/24" "PSK=$(cat "${PSK}")"
    # shellcheck disable=SC2016 # $1..$3 expand in the inner sh
    lk_bg charon ip netns exec "${LK_NS_RIGHT}" sh -c \
        'mount --bind "$1" /run && STRONGSWAN_CONF="$2" exec "$3"' \
        sh "${d}/run" "${d}/strongswan.conf" "${LK_CHARON}" >"${d}/charon.stdout" 2>&1
    CH_PID=${LK_LAST_PID}
    local i
    for ((i = 0; i < 100; i++)); do
        [[ -S ${d}/charon.vici ]] && SWANCTL_DIR=${d}/swanctl swanctl --stats --uri "unix://${d}/charon.vici" >/dev/null 2>&1 && break
        sleep 0.1
    done
    SWANCTL_DIR=${d}/swanctl swanctl --load-all --uri "unix://${d}/charon.vici" >"${d}/load-all.out" 2>&1 ||
        { cat "${d}/load-all.out" >&2; lk_die "charon: swanctl --load-all failed"; }
}
ch_end() { lk_stop "${CH_PID}" TERM; CH_PID=""; }

# lg_hs OUTFILE ARGS...: latchkey-loadgen handshakes from the generator.
lg_hs() {
    local out=$1
    shift
    ip netns exec "${LK_NS_LEFT}" "${LG}" handshakes --target "${RESP}:500" --local "${GEN}" \
        --psk-file "${PSK}" --ike "${IKE_P}" --esp "${ESP_P}" --json "$@" >"${out}"
}
jget() { "${LK_PY}" -c 'import json,sys; d=json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."): d=d[k]
print(d)' "$1" "$2"; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
rss() { awk '/VmRSS/ {print $2 * 1024}' "/proc/$1/status"; }

# ---- 1. handshake rate ----------------------------------------------------
if want handshakes; then
    declare -a R_LK=() R_CH=() R_PAIR=()
    for ((r = 1; r <= ROUNDS; r++)); do
        for who in latchkey charon; do
            if [[ ${who} == latchkey ]]; then lk_start 1000000 1000000; else ch_start 1000000; fi
            sleep 0.5
            f=${OUT}/hs-${who}-${r}.json
            lg_hs "${f}" --concurrency "${CONCURRENCY}" --duration "${DURATION}"
            rate=$(jget "${f}" rate_per_s)
            lk_log "round ${r} ${who}: $(cat "${f}")"
            if [[ ${who} == latchkey ]]; then R_LK+=("${rate}"); lk_end; else R_CH+=("${rate}"); ch_end; fi
        done
        # Paired: this round's latchkey over this round's charon (adjacent in time).
        R_PAIR+=("$(awk -v a="${R_LK[-1]}" -v b="${R_CH[-1]}" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print 0 }')")
    done
    mpair=$(median "${R_PAIR[@]}")
    mlk=$(median "${R_LK[@]}")
    mch=$(median "${R_CH[@]}")
    p99lk=$(jget "${OUT}/hs-latchkey-1.json" latency_ms.p99)
    p99ch=$(jget "${OUT}/hs-charon-1.json" latency_ms.p99)
    row "handshakes/s, latchkey listen (PSK, ${IKE_P}, ESP ${ESP_P}, ${CONCURRENCY} in flight, median of ${ROUNDS} x ${DURATION} s; p99 ${p99lk} ms)" \
        "$(printf '%.0f' "${mlk}")/s" "$(printf '%.1fx' "${mpair}") (median of the rounds' paired ratios: ${R_PAIR[*]})"
    row "handshakes/s, strongSwan charon 5.9.8 (same generator; p99 ${p99ch} ms)" \
        "$(printf '%.0f' "${mch}")/s" "1.0x"
fi

# ---- 2. memory per SA held ------------------------------------------------
if want memory; then
    # lk_hold NAME BINARY [LOADGEN_ARGS...]: hold HOLD_SAS on latchkey
    # listen --echo; sets held, per_sa, answers, rss_span.
    lk_hold() {
        local name=$1 bin=$2
        shift 2
        lk_start 1000000 1000000 "${bin}" --echo
        sleep 0.5
        local before after
        before=$(rss "${LK_PID}")
        lg_hs "${OUT}/hold-${name}.json" --hold --count "${HOLD_SAS}" --concurrency "${CONCURRENCY}" --duration 600 --drain 10 "$@"
        sleep 1
        after=$(rss "${LK_PID}")
        held=$(jget "${OUT}/hold-${name}.json" completed)
        answers=$(jget "${OUT}/hold-${name}.json" answers)
        lk_end
        per_sa=$(( (after - before) / (held > 0 ? held : 1) ))
        rss_span="${before} -> ${after}"
        lk_log "${name} RSS ${rss_span} for ${held} SAs, ${answers} answers"
    }
    # busy_note: the answers of a --ping hold against the SAs held.
    busy_note() {
        if [[ ${answers} == "${held}" ]]; then echo "all ${answers} answered"; else echo "ONLY ${answers} of ${held} answered"; fi
    }
    # Idle: the SAs held as set up. Busy (--ping): one datagram each way
    # through every child SA (ESP in UDP, echoed by listen --echo), so
    # both directions' ESP keys are expanded, as on SAs carrying traffic.
    if [[ -n ${BASE_LK} ]]; then
        lk_hold latchkey-base "${BASE_LK}"
        held_base=${held} per_base=${per_sa} span_base=${rss_span}
        lk_hold latchkey-base-busy "${BASE_LK}" --ping
        held_base_busy=${held} per_base_busy=${per_sa} span_base_busy=${rss_span} note_base_busy=$(busy_note)
    fi
    lk_hold latchkey "${LK}"
    held_lk=${held} per_lk=${per_sa} span_lk=${rss_span}
    lk_hold latchkey-busy "${LK}" --ping
    held_busy=${held} per_busy=${per_sa} span_busy=${rss_span} note_busy=$(busy_note)
    # charon, same count: its daemon RSS per SA for comparison.
    ch_start 1000000
    sleep 0.5
    cpid=${CH_PID}
    before=$(rss "${cpid}")
    # charon slows down as its SA count grows: at most CHARON_HOLD_SECS.
    lg_hs "${OUT}/hold-charon.json" --hold --count "${HOLD_SAS}" --concurrency "${CONCURRENCY}" --duration "${CHARON_HOLD_SECS}" --drain 10
    sleep 1
    after=$(rss "${cpid}")
    cheld=$(jget "${OUT}/hold-charon.json" completed)
    ch_end
    per_ch=$(( (after - before) / (cheld > 0 ? cheld : 1) ))
    lk_log "charon RSS ${before} -> ${after} for ${cheld} SAs"
    cur_base() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "; current/baseline %.2f", a / b }'; }
    row "bytes of responder RSS per IKE SA + child SA, latchkey listen, idle SAs (${held_lk} SAs held; RSS ${span_lk} B)" "${per_lk} B" \
        "$(ratio "${per_ch}" "${per_lk}") less"
    row "same, SAs that carried one datagram each way (${held_busy} SAs held, ${note_busy}; RSS ${span_busy} B)" "${per_busy} B" \
        "$(ratio "${per_ch}" "${per_busy}") less"
    if [[ -n ${BASE_LK} ]]; then
        row "same, baseline latchkey ${BASE_LK}, idle SAs (${held_base} SAs held; RSS ${span_base} B)" "${per_base} B" \
            "$(ratio "${per_ch}" "${per_base}") less$(cur_base "${per_lk}" "${per_base}")"
        row "same, baseline, SAs that carried one datagram each way (${held_base_busy} SAs held, ${note_base_busy}; RSS ${span_base_busy} B)" "${per_base_busy} B" \
            "$(ratio "${per_ch}" "${per_base_busy}") less$(cur_base "${per_busy}" "${per_base_busy}")"
    fi
    row "bytes of responder RSS per IKE SA + child SA, charon (${cheld} SAs held after at most ${CHARON_HOLD_SECS} s)" "${per_ch} B" "1.0x"
fi

# ---- 3. latches -------------------------------------------------------------
if want latches; then
    "${LG}" latches --count 1000000 --json >"${OUT}/latches.json"
    row "RSS per connection latch, 1M latches (latchkey-loadgen latches)" \
        "$(printf '%.0f' "$(jget "${OUT}/latches.json" bytes_per_latch)") B" "(no strongSwan equivalent)"
    row "check_inbound at 1M latches, latched / unlatched flow" \
        "$(printf '%.0f / %.0f ns' "$(jget "${OUT}/latches.json" check_latched_ns)" "$(jget "${OUT}/latches.json" check_unlatched_ns)")" "(see latch_check bench for the ratio to ESP)"
fi

# The latch check's share of the per-packet inbound ESP cost, criterion,
# same run: (decapsulate+parse+check at 1M latches - decapsulate+parse)
# over decapsulate alone.
if want latchbench; then
    (cd "${ROOT}" && cargo bench -q -p endpoint --bench latch_check -- --warm-up-time 1 --measurement-time 3) \
        >"${OUT}/latch_check.txt" 2>&1 || lk_die "latch_check bench failed"
    crit() { awk -v n="$1" '$1 == n { getline; for (i = 1; i <= NF; i++) if ($i == "time:") { v = $(i + 3); u = $(i + 4); if (u == "µs") v *= 1000; print v } }' "${OUT}/latch_check.txt"; }
    # Per packet: criterion's time for a burst of 64, divided by 64 (the
    # driver holds the table's lock once per receive burst, BurstLatch).
    per() { awk -v t="$(crit "$1")" 'BEGIN { printf "%.1f", t / 64 }'; }
    dec=$(per latch_check/decapsulate_only/64)
    same=$(per latch_check/check_same_flow/1000000/64)
    two=$(per latch_check/check_two_flows/1000000/64)
    many=$(per latch_check/check_many_flows/1000000/64)
    rr=$(per latch_check/check_round_robin/1000000/64)
    rr_un=$(per latch_check/check_round_robin_untouched/1000000/64)
    dp=$(per latch_check/decapsulate_parse/64)
    # The cold case again with glibc's transparent huge pages for large
    # allocations (the table's): fewer TLB misses per lookup.
    (cd "${ROOT}" && GLIBC_TUNABLES=glibc.malloc.hugetlb=1 cargo bench -q -p endpoint --bench latch_check -- \
        --warm-up-time 1 --measurement-time 3 'latch_check/check_round_robin/1000000/64') \
        >"${OUT}/latch_check_thp.txt" 2>&1 || lk_die "latch_check bench (huge pages) failed"
    rr_thp=$(awk -v n=latch_check/check_round_robin/1000000/64 '$1 == n { getline; for (i = 1; i <= NF; i++) if ($i == "time:") { v = $(i + 3); u = $(i + 4); if (u == "µs") v *= 1000; printf "%.1f", v / 64 } }' "${OUT}/latch_check_thp.txt")
    c1m=$(per latch_check/decapsulate_parse_check/1000000/64)
    a_same=$(per latch_check/admit_same_flow/1000000/64)
    a_many=$(per latch_check/admit_many_flows/1000000/64)
    a_rr=$(per latch_check/admit_round_robin/1000000/64)
    a_rr_st=$(per latch_check/admit_round_robin_staged/1000000/64)
    rr_st=$(per latch_check/check_round_robin_staged/1000000/64)
    pct() { awk -v a="$1" -v d="${dec}" 'BEGIN { printf "%.1f%%", 100 * a / d }'; }
    row "TUN path at 1M latches, all bound to the SA covering them (the SA alone passes each packet, LatchTable::sa_admits): bursts of 64 packets of one flow (criterion latch_check, per packet; decapsulation ${dec} ns)" \
        "${a_same} ns" "$(pct "${a_same}") of decapsulation (target < 5%)"
    row "same, 8 flows in turn" \
        "${a_many} ns" "$(pct "${a_many}") of decapsulation (target < 5%)"
    row "same, 64 different flows of the million in a scrambled order" \
        "${a_rr} ns" "$(pct "${a_rr}") of decapsulation (target < 5%)"
    row "same, each burst's 5-tuples copied out of the scrambled list before the timer starts (the driver has them from packets it has just decrypted; the row above also times streaming them from the 68 MB list)" \
        "${a_rr_st} ns" "$(pct "${a_rr_st}") of decapsulation (target < 5%)"
    row "where the SA alone cannot decide (a latch it covers not bound to it, a listener, or the channel path, which reports each packet's latch): a table lookup per flow, below" "" ""
    row "latch check at 1M latches, bursts of 64 packets of one flow (criterion latch_check, per packet; decapsulation ${dec} ns)" \
        "${same} ns" "$(pct "${same}") of decapsulation (target < 5%)"
    row "latch check at 1M latches, bursts of 64 packets of two flows alternating (both remembered by the burst: compares, no lookup)" \
        "${two} ns" "$(pct "${two}") of decapsulation (target < 5%)"
    row "latch check at 1M latches, bursts of 64 packets of 8 flows in turn (more than the burst remembers: every check a table lookup, hot cache)" \
        "${many} ns" "$(pct "${many}") of decapsulation (target < 5%)"
    row "latch check at 1M latches, bursts of 64 packets of 64 different flows in a scrambled order (cold-ish cache, every check a table lookup; the burst's entries touched in one pass first, as the driver does for a UDP GRO read)" \
        "${rr} ns" "$(pct "${rr}") of decapsulation (target < 5%)"
    row "same, each burst's 5-tuples copied out of the scrambled list before the timer starts" \
        "${rr_st} ns" "$(pct "${rr_st}") of decapsulation (target < 5%)"
    row "same, without the touch pass (each check's cache misses after the previous one's)" \
        "${rr_un} ns" "$(pct "${rr_un}") of decapsulation (target < 5%)"
    row "same, with GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (transparent huge pages for the table)" \
        "${rr_thp} ns" "$(pct "${rr_thp}") of decapsulation (target < 5%)"
    row "whole path at 1M latches: decapsulate, parse and check, per packet (without the check: ${dp} ns; noisy, see docs/performance.md)" \
        "${c1m} ns" ""
fi

# ---- 4. IKE_SA_INIT flood from spoofed sources -----------------------------
# flood_one WHO: flood the responder (cookie threshold 64 both), sample its
# RSS, and time one legitimate `latchkey connect` in the middle.
flood_one() {
    local who=$1 pid f=${OUT}/flood-$1.json
    if [[ ${who} == latchkey ]]; then
        lk_start 64 4096
        pid=${LK_PID}
    elif [[ ${who} == base ]]; then
        lk_start 64 4096 "${BASE_LK}"
        pid=${LK_PID}
    else
        ch_start 64
        pid=${CH_PID}
    fi
    sleep 0.5
    local r0 rmax=0 s
    r0=$(rss "${pid}")
    ip netns exec "${LK_NS_LEFT}" "${LG}" flood --target "${RESP}:500" --duration "${FLOOD_SECS}" \
        --listen 500 --ike "${IKE_P}" --json >"${f}" &
    local fp=$!
    sleep "$(awk -v s="${FLOOD_SECS}" 'BEGIN { print s / 2 }')"
    local t0 t1 ok=fail
    t0=$(date +%s%N)
    if ip netns exec "${LK_NS_LEFT}" timeout 30 "${LK}" connect "${RESP}" --local "${GEN}:5500" --nat-t-port 5501 \
        --auth psk --psk-file "${PSK}" --ike-proposal "${IKE_P}" --esp-proposal "${ESP_P}" \
        --local-ts 10.98.0.0/24 --remote-ts 10.99.0.0/24 --wait 0 --timeout 25 >"${OUT}/connect-${who}.out" 2>&1; then
        ok=ok
    fi
    t1=$(date +%s%N)
    while kill -0 "${fp}" 2>/dev/null; do
        s=$(rss "${pid}")
        ((s > rmax)) && rmax=${s}
        sleep 0.2
    done
    wait "${fp}" || true
    s=$(rss "${pid}")
    ((s > rmax)) && rmax=${s}
    FLOOD_RATE=$(jget "${f}" rate_per_s)
    FLOOD_COOKIES=$(jget "${f}" answers.cookies)
    FLOOD_FULL=$(jget "${f}" answers.responses)
    FLOOD_SENT=$(jget "${f}" sent)
    FLOOD_CONNECT_MS=$(((t1 - t0) / 1000000))
    FLOOD_CONNECT=${ok}
    FLOOD_RSS="$((r0 / 1024)) KiB -> max $((rmax / 1024)) KiB"
    if [[ ${who} == charon ]]; then ch_end; else lk_end; fi
}
if want flood; then
    for ((fr = 1; fr <= FLOOD_ROUNDS; fr++)); do
        tag=""
        ((FLOOD_ROUNDS > 1)) && tag=" (round ${fr}, load $(load))"
        if [[ -n ${BASE_LK} ]]; then
            flood_one base
            row "IKE_SA_INIT flood held, latchkey base ${BASE_LK}${tag}: sent ${FLOOD_SENT}, answered ${FLOOD_COOKIES} cookies + ${FLOOD_FULL} full; RSS ${FLOOD_RSS}" \
                "$(printf '%.0f' "${FLOOD_RATE}")/s" ""
            row "legitimate latchkey connect during the flood, base responder${tag}" "${FLOOD_CONNECT} in ${FLOOD_CONNECT_MS} ms" ""
        fi
        flood_one latchkey
        row "IKE_SA_INIT flood held, latchkey (spoofed 198.18/15, cookie threshold 64)${tag}: sent ${FLOOD_SENT}, answered ${FLOOD_COOKIES} cookies + ${FLOOD_FULL} full; RSS ${FLOOD_RSS}" \
            "$(printf '%.0f' "${FLOOD_RATE}")/s" ""
        row "legitimate latchkey connect during the flood, latchkey responder${tag}" "${FLOOD_CONNECT} in ${FLOOD_CONNECT_MS} ms" ""
        lk_rate=${FLOOD_RATE} lk_conn=${FLOOD_CONNECT_MS}
        flood_one charon
        row "IKE_SA_INIT flood held, charon (same flood, cookie_threshold 64)${tag}: sent ${FLOOD_SENT}, answered ${FLOOD_COOKIES} cookies + ${FLOOD_FULL} full; RSS ${FLOOD_RSS}" \
            "$(printf '%.0f' "${FLOOD_RATE}")/s" "$(ratio "${lk_rate}" "${FLOOD_RATE}") (latchkey/charon)"
        row "legitimate latchkey connect during the flood, charon responder${tag}" "${FLOOD_CONNECT} in ${FLOOD_CONNECT_MS} ms" \
            "$(ratio "${FLOOD_CONNECT_MS}" "${lk_conn}") (charon/latchkey time)"
    done
fi

# ---- table -----------------------------------------------------------------
{
    echo "Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(load) at the end, $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "| configuration | figure | ratio to strongSwan (same run) |"
    echo "|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
} | tee "${OUT}/table.md"
