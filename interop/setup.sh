#!/usr/bin/env bash
# Install everything the strongSwan interop harness needs (Debian 12).
# Idempotent: packages that are already installed are left alone, and
# apt-get is only run when something is missing.  Must run as root.
set -euo pipefail

PKGS=(
    strongswan-charon          # /usr/lib/ipsec/charon, the foreground daemon
    strongswan-swanctl         # swanctl (vici client)
    strongswan-pki             # certs cross-check: pki --verify
    openssl                    # certs cross-check: openssl verify
    nsd                        # DNS server for the IPSECKEY test (tests/tests/ipseckey.rs)
    libstrongswan              # core plugins (curve25519, kdf, ...)
    libstrongswan-standard-plugins  # openssl, gcm: no AES-GCM without it
    libstrongswan-extra-plugins
    libcharon-extra-plugins    # kernel-libipsec (userspace ESP)
    iproute2
    iputils-ping               # veth sanity check in lib.sh
    nftables
    tcpdump
    tshark
    socat
    iperf3                     # throughput figures: tun-selftest.sh with TUN_IPERF
    python3
    procps                     # pgrep/pkill used by nothing, ps for debugging
    shellcheck
)

if [[ ${EUID} -ne 0 ]]; then
    echo "setup.sh: must run as root" >&2
    exit 1
fi

missing=()
for p in "${PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
        missing+=("$p")
    fi
done

if ((${#missing[@]} == 0)); then
    echo "setup.sh: all packages already installed"
else
    echo "setup.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # tshark asks whether non-root users may capture; answer it up front.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    apt-get update
    apt-get install -y --no-install-recommends "${missing[@]}"
fi

# The Debian package enables the system-wide strongSwan service; the harness
# runs its own charons in namespaces and never uses it.  On CI machines with
# systemd, make sure a host charon does not hold ports 500/4500 of the host
# namespace (harmless if the unit does not exist or systemd is absent).
if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
    systemctl disable --now strongswan-starter.service >/dev/null 2>&1 || true
    systemctl disable --now strongswan.service >/dev/null 2>&1 || true
fi

test -x /usr/lib/ipsec/charon || { echo "setup.sh: /usr/lib/ipsec/charon missing" >&2; exit 1; }
test -e /usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so ||
    { echo "setup.sh: kernel-libipsec plugin missing" >&2; exit 1; }
test -e /usr/lib/ipsec/plugins/libstrongswan-gcm.so ||
    { echo "setup.sh: gcm plugin missing" >&2; exit 1; }
echo "setup.sh: ok ($(/usr/lib/ipsec/charon --version 2>/dev/null | head -n1 || echo charon))"
