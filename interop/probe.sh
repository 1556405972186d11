#!/usr/bin/env bash
# Probe how charon (kernel-libipsec) answers IKE_SA_INIT with honest, fake or
# no NAT-D notifies (facts for latchkey; see README). Output: run/probe/.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lk_init probe
lk_ns_create
lk_psk "${LK_RUN}/psk"
lk_charon_start right "${LK_NS_RIGHT}" "${LK_OUTER_RIGHT}" "${LK_OUTER_LEFT}" \
    "${LK_OUTER_RIGHT}" "${LK_OUTER_LEFT}" "${LK_TS_RIGHT}" "${LK_TS_LEFT}" none "${LK_RUN}/psk"
log=${LK_RUN}/right/charon.log
for mode in honest fake none; do
    from=$(($(wc -l <"${log}") + 1))
    ip netns exec "${LK_NS_LEFT}" "${LK_PY}" "${LK_DIR}/probe_sa_init.py" \
        --src "${LK_OUTER_LEFT}" --dst "${LK_OUTER_RIGHT}" --natd "${mode}" || true
    sleep 0.3
    tail -n +"${from}" "${log}" | grep -aE 'NAT|faking|IKE_SA_INIT' | grep -av natd_ | sed -E 's/^[0-9:]+ /  charon: /'
done
