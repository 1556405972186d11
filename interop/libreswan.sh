# shellcheck shell=bash disable=SC2153 # LK_DIR and friends come from lib.sh
# libreswan's pluto as a NULL-authentication peer (RFC 7619), for
# run-matrix.sh (sourced; uses its OK/BAD arrays and lib.sh).
#
# Debian's libreswan package conflicts with strongSwan's (installing it
# removes them), so its .deb is unpacked with `dpkg -x` into LS_ROOT, with
# the three libraries pluto needs that are not installed (libldns3,
# libevent-pthreads, and certutil from libnss3-tools for the NSS database).
# pluto runs in lk-right (charon is stopped first: both want UDP 500/4500),
# with its own run dir (control socket), NSS db, secrets and log; it is
# driven with the unpacked `addconn` and `whack`.
#
# What can work here: the IKE SA (IKE_SA_INIT + IKE_AUTH with AUTH method
# 13, NULL). What cannot: pluto's child SA, which it installs in the kernel
# (XFRM), and this kernel has no ESP; so the child SA is an expected
# failure, recorded by the separate scenario null-libreswan-child.

LS_PKGS=(libreswan libldns3 libevent-pthreads-2.1-7 libnss3-tools)
LS_LIB=${LS_ROOT}/usr/lib/x86_64-linux-gnu
LS_EXEC=${LS_ROOT}/usr/libexec/ipsec
LS_CHILD_STATE=()   # per role: "ROLE|ok|detail"

ls_version() {
    [[ -x ${LS_EXEC}/pluto ]] || { echo "(not unpacked)"; return 0; }
    LD_LIBRARY_PATH=${LS_LIB} "${LS_EXEC}/pluto" --version 2>&1 | head -n1 | awk '{ print $2 }'
}

# ls_unpack: apt-get download + dpkg -x, once (kept in LS_ROOT).
ls_unpack() {
    [[ -x ${LS_EXEC}/pluto && -x ${LS_ROOT}/usr/bin/certutil ]] && return 0
    local dl=${LS_ROOT}.debs p
    mkdir -p "${dl}" "${LS_ROOT}"
    for p in "${LS_PKGS[@]}"; do
        (cd "${dl}" && apt-get download "${p}") >>"${dl}/download.log" 2>&1 || {
            lk_log "apt-get download ${p} failed (see ${dl}/download.log)"
            return 1
        }
    done
    for p in "${dl}"/*.deb; do
        dpkg -x "${p}" "${LS_ROOT}"
    done
    [[ -x ${LS_EXEC}/pluto ]]
}

ls_ctl() { echo "${LS_DIR}/run/pluto.ctl"; }
ls_whack() { LD_LIBRARY_PATH=${LS_LIB} "${LS_EXEC}/whack" --ctlsocket "$(ls_ctl)" "$@"; }

# ls_start: pluto in lk-right with conn "lk" (authby=null, subnets as charon's).
ls_start() {
    LS_DIR=${R}/pluto
    rm -rf "${LS_DIR}"
    mkdir -p "${LS_DIR}/run" "${LS_DIR}/nss" "${LS_DIR}/ipsec.d"
    : >"${LS_DIR}/ipsec.secrets"
    LD_LIBRARY_PATH=${LS_LIB} "${LS_ROOT}/usr/bin/certutil" -N -d "sql:${LS_DIR}/nss" --empty-password \
        >"${LS_DIR}/certutil.out" 2>&1 || { BAD+=("certutil -N failed: $(tail -n1 "${LS_DIR}/certutil.out")"); return 1; }
    cat >"${LS_DIR}/ipsec.conf" <<EOF
# Written by interop/libreswan.sh: NULL authentication (RFC 7619).
conn lk
    ikev2=yes
    authby=null
    left=${LK_OUTER_RIGHT}
    leftid=%null
    leftsubnet=${LK_TS_RIGHT}
    right=${LK_OUTER_LEFT}
    rightid=%null
    rightsubnet=${LK_TS_LEFT}
    encapsulation=yes
    keyingtries=1
    retransmit-timeout=20s
    auto=add
EOF
    # pluto runs its helper /usr/libexec/ipsec/addconn by that fixed path:
    # bind the unpacked libexec there, in pluto's own mount namespace only
    # (`ip netns exec` gives every command a private one).
    # shellcheck disable=SC2016 # $1, $2 expand in the inner sh
    lk_bg "pluto" ip netns exec "${LK_NS_RIGHT}" sh -c 'mount --bind "$1" /usr/libexec && shift && exec "$@"' \
        sh "${LS_ROOT}/usr/libexec" env LD_LIBRARY_PATH="${LS_LIB}" "${LS_EXEC}/pluto" \
        --nofork --stderrlog --rundir "${LS_DIR}/run" --nssdir "${LS_DIR}/nss" \
        --ipsecdir "${LS_DIR}/ipsec.d" --secretsfile "${LS_DIR}/ipsec.secrets" \
        --use-xfrm --listen "${LK_OUTER_RIGHT}" --log-no-time \
        >"${LS_DIR}/pluto.log" 2>&1
    LS_PID=${LK_LAST_PID}
    local i
    for ((i = 0; i < 100; i++)); do
        [[ -S $(ls_ctl) ]] && ls_whack --status >/dev/null 2>&1 && break
        kill -0 "${LS_PID}" 2>/dev/null || { BAD+=("pluto exited at start-up: $(tail -n 3 "${LS_DIR}/pluto.log" | tr '\n' ' ')"); return 1; }
        sleep 0.1
    done
    ip netns exec "${LK_NS_RIGHT}" env LD_LIBRARY_PATH="${LS_LIB}" "${LS_EXEC}/addconn" \
        --ctlsocket "$(ls_ctl)" --config "${LS_DIR}/ipsec.conf" lk >"${LS_DIR}/addconn.out" 2>&1 ||
        { BAD+=("addconn failed: $(tail -n 3 "${LS_DIR}/addconn.out" | tr '\n' ' ')"); return 1; }
    # The interfaces pluto listens on are found on --listen; make it look now.
    ls_whack --listen >/dev/null 2>&1 || true
}

ls_stop() {
    [[ -n ${LS_PID:-} ]] || return 0
    ls_whack --status >"${LS_DIR}/status-final.txt" 2>&1 || true
    lk_stop "${LS_PID}"
    LS_PID=""
}

# sc_libreswan P ROLE: IKE SA with NULL auth (checked), child SA (recorded
# for null-libreswan-child).
sc_libreswan() {
    local P=$1 role=$2 i up=0 msg
    msg="null-libreswan ${role} $(od -An -tx1 -N4 /dev/urandom | tr -d ' \n')"
    if ! ls_unpack; then
        BAD+=("could not unpack libreswan (apt-get download/dpkg -x, see ${LS_ROOT}.debs/download.log)")
        LS_CHILD_STATE+=("${role}|skip|libreswan not available")
        return 0
    fi
    # charon and pluto both want UDP 500/4500 in lk-right.
    if [[ -n ${LK_CHARON_PID_right:-} ]] && kill -0 "${LK_CHARON_PID_right}" 2>/dev/null; then
        lk_stop "${LK_CHARON_PID_right}"
    fi
    ls_start || { LS_CHILD_STATE+=("${role}|fail|pluto did not start"); return 0; }
    local lk_sec=(--auth null --local-ts "${LK_TS_LEFT}" --remote-ts "${LK_TS_RIGHT}")
    if [[ ${role} == initiator ]]; then
        local cmd=(ip netns exec "${LK_NS_LEFT}" timeout 60 "${BIN}" "${LK_VERBOSE[@]}" connect "${LK_OUTER_RIGHT}"
            --local "${LK_OUTER_LEFT}:500" --nat-t-port 4500 "${lk_sec[@]}" --inner-addr "${LK_INNER_LEFT}"
            --timeout 20 --send-udp "${LK_INNER_RIGHT}:9999" --message "${msg}" --wait 2 --json)
        printf '%q ' "${cmd[@]}" >"${P}.cmd"
        echo >>"${P}.cmd"
        set +e
        "${cmd[@]}" >"${P}.stdout" 2>"${P}.stderr"
        RC=$?
        set -e
    else
        listen_start_null "${P}" || { ls_stop; return 0; }
        ls_whack --name lk --initiate --asynchronous >"${P}-initiate.out" 2>&1 || true
        for ((i = 0; i < 100; i++)); do
            grep -q 'IKE SA established\|child SA' "${P}.stderr" 2>/dev/null && break
            sleep 0.1
        done
        sleep 2
        ip netns exec "${LK_NS_RIGHT}" "${LK_PY}" "${LK_DIR}/udp_tool.py" send --bind "${LK_INNER_RIGHT}" \
            --to "${LK_INNER_LEFT}:9999" --message "${msg}" --wait 2 --expect-reply >"${P}-reply.txt" 2>&1 || true
    fi
    ls_whack --status >"${P}-pluto-status.txt" 2>&1 || true
    ls_whack --trafficstatus >"${P}-pluto-traffic.txt" 2>&1 || true
    [[ ${role} == responder ]] && listen_stop "${P}"
    ls_stop
    cp "${LS_DIR}/pluto.log" "${P}-pluto.log"

    # IKE SA: pluto says established with NULL auth, latchkey too.
    local est
    est=$(grep -aE 'established IKE SA' "${P}-pluto.log" | head -n1 || true)
    if [[ -n ${est} ]]; then
        up=1
        OK+=("pluto: ${est#*: }")
    else
        BAD+=("pluto's log has no 'established IKE SA' ($(grep -aE 'STATE_|NOTIFY|failed|error|AUTH' "${P}-pluto.log" | tail -n 3 | tr '\n' ' '))")
    fi
    if ((up)) && ! grep -aqiE 'null' <<<"${est}"; then
        BAD+=("pluto's established line does not name NULL authentication")
    fi
    if grep -q 'IKE SA established' "${P}.stderr"; then
        OK+=("latchkey: IKE SA established ($(grep -m1 -o 'peer_id=[^ ]*' "${P}.stderr" | sed -E 's/\x1b\[[0-9;]*m//g' || true))")
    else
        BAD+=("latchkey did not log 'IKE SA established': $(grep -v '^\s*$' "${P}.stderr" | tail -n 2 | sed -E 's/\x1b\[[0-9;]*m//g' | tr '\n' ' ')")
    fi
    # Child SA (expected to fail: no kernel ESP for pluto).
    local child_ok=0 why
    if [[ ${role} == initiator ]]; then
        grep -qF "${msg}" "${P}.stdout" 2>/dev/null && ((RC == 0)) && child_ok=1
    else
        grep -qF "${msg}" "${P}-reply.txt" 2>/dev/null && child_ok=1
    fi
    why=$(grep -aE 'netlink response for Add SA|CHILD SA encountered|TS_UNACCEPTABLE' "${P}-pluto.log" | head -n 2 | sed -E 's/^ERROR: //' | tr '\n' ' ' || true)
    if ((child_ok)); then
        LS_CHILD_STATE+=("${role}|pass|datagram through the child SA and back")
    else
        LS_CHILD_STATE+=("${role}|fail|no datagram through the child SA; latchkey: $(grep -aE 'child SA|error' "${P}.stderr" | tail -n 1 | sed -E 's/\x1b\[[0-9;]*m//g; s/^[0-9TZ:.-]+ +//' | head -c 200); pluto: ${why:0:300}")
    fi
}

# sc_libreswan_child P ROLE: the child SA outcome of the preceding null-libreswan case.
sc_libreswan_child() {
    local role=$2 e
    for e in "${LS_CHILD_STATE[@]}"; do
        [[ ${e%%|*} == "${role}" ]] || continue
        local rest=${e#*|}
        case ${rest%%|*} in
        pass) OK+=("${rest#*|}") ;;
        *) BAD+=("${rest#*|}") ;;
        esac
        return 0
    done
    BAD+=("no null-libreswan ${role} case ran before this one")
}

# listen_start_null P: latchkey listen with NULL auth (for pluto initiating).
listen_start_null() {
    local P=$1 i
    local cmd=(ip netns exec "${LK_NS_LEFT}" env --default-signal=INT "${BIN}" "${LK_VERBOSE[@]}" listen
        --ike "${LK_OUTER_LEFT}:500" --natt "${LK_OUTER_LEFT}:4500" --control "${P}.ctl"
        --auth null --local-ts "${LK_TS_LEFT}" --remote-ts "${LK_TS_RIGHT}" --echo --json)
    printf '%q ' "${cmd[@]}" >"${P}.cmd"
    echo >>"${P}.cmd"
    lk_bg "latchkey-listen" "${cmd[@]}" >"${P}.stdout" 2>"${P}.stderr"
    LPID=${LK_LAST_PID}
    for ((i = 0; i < 100; i++)); do
        ip netns exec "${LK_NS_LEFT}" ss -Hunl 2>/dev/null | grep -q "${LK_OUTER_LEFT}:4500 " && return 0
        kill -0 "${LPID}" 2>/dev/null || break
        sleep 0.1
    done
    BAD+=("latchkey listen did not start: $(tail -n 2 "${P}.stderr" | tr '\n' ' ')")
    return 1
}
