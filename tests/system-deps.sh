#!/bin/sh
# Debian packages the tests need: Chromium (browser tests), nginx (the benchmark's and
# feed tests' reference server), avahi (independent mDNS client), iproute2 (network namespaces for mDNS across hosts),
# systemd (systemd-analyze for the unit checks), CJK fonts (screenshots read Chinese).
# Installed only when missing, and only as root; otherwise those tests skip with a reason.
set -eu
need=""
command -v chromium >/dev/null 2>&1 || need="$need chromium"
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need="$need nginx-light"
command -v ip >/dev/null 2>&1 || need="$need iproute2"
# ffmpeg: the platform stand-in encodes real H.264/AAC segments so HLS playback is tested.
command -v ffmpeg >/dev/null 2>&1 || need="$need ffmpeg"
command -v systemd-analyze >/dev/null 2>&1 || need="$need systemd"
fc-list 2>/dev/null | grep -q "Noto Sans CJK" || need="$need fonts-noto-cjk"
# avahi: an independent mDNS client for the discovery tests (its daemon only ever runs
# inside a test's network namespace; policy-rc.d below keeps it from starting here).
command -v avahi-browse >/dev/null 2>&1 || need="$need avahi-utils"
[ -x /usr/sbin/avahi-daemon ] || need="$need avahi-daemon"
[ -z "$need" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "system-deps: not root; missing:$need (the tests that need them will skip)" >&2
    exit 0
fi
# Installing nginx must not start it on the host: policy-rc.d refuses service starts.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
echo "system-deps: installing$need" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
