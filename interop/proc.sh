# shellcheck shell=bash
# Process and namespace helpers shared by the scripts that make their own
# namespace pair (tun-selftest.sh, daemon-tun.sh, bench/throughput.sh).
# Source it after setting NS_A and NS_B; background processes go into the
# PIDS array and are stopped in reverse order by stop_all.

PIDS=()

# stop_pid PID [SIGNAL]: signal (TERM by default), wait up to 5 s, then KILL.
stop_pid() {
    local pid=$1 sig=${2:-TERM} i
    kill -0 "${pid}" 2>/dev/null || { wait "${pid}" 2>/dev/null || true; return 0; }
    kill -s "${sig}" "${pid}" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "${pid}" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "${pid}" 2>/dev/null && kill -KILL "${pid}" 2>/dev/null
    wait "${pid}" 2>/dev/null || true
}

# stop_all: every process in PIDS, newest first.
stop_all() {
    local i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        stop_pid "${PIDS[i]}"
    done
    PIDS=()
}

# ns_del: kill what runs in NS_A and NS_B and delete them (if they exist).
ns_del() {
    local ns pid
    for ns in "${NS_A}" "${NS_B}"; do
        ip netns list 2>/dev/null | grep -qw "^${ns}" || continue
        for pid in $(ip netns pids "${ns}" 2>/dev/null); do
            kill -KILL "${pid}" 2>/dev/null || true
        done
        ip netns del "${ns}" 2>/dev/null || true
    done
}
