#!/bin/sh
# Boot a throwaway Debian 12 container with systemd as PID 1, install the binary and
# systemd/shuqiao.service the way systemd/README.md says, and check what the unit tests
# cannot: READY=1 from the one-file binary reaches systemd, the app works inside the
# sandbox, a browser on another "machine" finds it by mDNS, and `systemctl stop` is clean.
#
#   sudo sh systemd/boot-check.sh [dist/shuqiao]      # from the repository root
#
# Needs root, debootstrap, systemd-container (systemd-nspawn), iproute2, and the venv's
# python with zeroconf (for the mDNS browser). The first run downloads a minimal Debian
# (~250 MB unpacked, kept in $WORK for later runs). Nothing leaves the machine: the
# container's only network card is a veth pair into a private namespace.
set -eu

BINARY=${1:-dist/shuqiao}
UNIT=systemd/shuqiao.service
PY=${PYTHON:-.venv/bin/python}
WORK=${SHUQIAO_BOOTCHECK_DIR:-${TMPDIR:-/tmp}/shuqiao-boot-check}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
ROOTFS=$WORK/rootfs
OUT=$WORK/out
NS_C=shuqiao-bc-c      # the container's network namespace
NS_P=shuqiao-bc-peer   # a second "machine" on the same LAN, for the mDNS browse

[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 2; }
[ -x "$BINARY" ] || { echo "no $BINARY: run make dist" >&2; exit 2; }
for tool in debootstrap systemd-nspawn ip unshare; do
    command -v $tool >/dev/null || { echo "missing $tool" >&2; exit 2; }
done
mkdir -p "$WORK" "$OUT"

if [ ! -x "$ROOTFS/lib/systemd/systemd" ]; then
    echo "== debootstrap (once)"
    debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,curl,procps \
        bookworm "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" 2>&1
fi

echo "== install the binary and the unit as a school's server would have them"
rm -rf "$ROOTFS/var/lib/private/shuqiao" "$ROOTFS/var/lib/shuqiao" "$OUT"/*
install -m 0755 "$BINARY" "$ROOTFS/usr/local/bin/shuqiao"
install -m 0644 "$UNIT" "$ROOTFS/etc/systemd/system/shuqiao.service"
mkdir -p "$ROOTFS/etc/systemd/network"
cat >"$ROOTFS/etc/systemd/network/50-lan.network" <<'EOF'
[Match]
Name=lan0
[Network]
Address=10.77.0.2/24
Gateway=10.77.0.1
LinkLocalAddressing=no
IPv6AcceptRA=no
EOF
cat >"$ROOTFS/usr/local/bin/boot-check" <<'EOF'
#!/bin/sh
# Inside the container, after shuqiao.service is up (ordered After= it).
exec >/out/check.txt 2>&1
systemctl show shuqiao -p ActiveState -p NRestarts -p MainPID
echo "healthz=$(curl -s -o /dev/null -w '%{http_code}' http://10.77.0.2:8080/healthz)"
echo "info=$(curl -s http://10.77.0.2:8080/api/info)"
echo "processes=$(ps -o pid= -C shuqiao | wc -l)"
echo "unpacked=$(ls -d /tmp/systemd-private-*-shuqiao.service-*/tmp/_MEI* 2>/dev/null | wc -l)"
touch /out/ready
i=0; while [ ! -e /out/browsed ] && [ $i -lt 60 ]; do sleep 1; i=$((i+1)); done
systemctl stop shuqiao
systemctl show shuqiao -p Result -p ExecMainStatus
echo "private_tmp_left=$(ls -d /tmp/systemd-private-*-shuqiao.service-* 2>/dev/null | wc -l)"
echo "sigterms=$(journalctl -u shuqiao -b -o cat | grep -c 'received SIGTERM')"
echo "notify_refused=$(journalctl -u shuqiao -b -o cat | grep -c 'reception only permitted')"
journalctl -u shuqiao -b --no-pager -o short-monotonic >/out/journal.txt
systemctl poweroff
EOF
chmod 0755 "$ROOTFS/usr/local/bin/boot-check"
cat >"$ROOTFS/etc/systemd/system/boot-check.service" <<'EOF'
[Unit]
Wants=shuqiao.service
After=shuqiao.service
[Service]
Type=oneshot
ExecStart=/usr/local/bin/boot-check
[Install]
WantedBy=multi-user.target
EOF
systemctl --root="$ROOTFS" enable systemd-networkd shuqiao.service boot-check.service >/dev/null 2>&1

echo "== a two-machine LAN: container <-> peer namespace"
cleanup() { ip netns del $NS_C 2>/dev/null || true; ip netns del $NS_P 2>/dev/null || true; }
trap cleanup EXIT
cleanup
ip netns add $NS_C
ip netns add $NS_P
ip -n $NS_C link add lan0 type veth peer name lan0 netns $NS_P
ip -n $NS_C link set lo up
ip -n $NS_P link set lo up
ip -n $NS_P addr add 10.77.0.1/24 dev lan0
ip -n $NS_P link set lan0 up multicast on
ip -n $NS_P route add 224.0.0.0/4 dev lan0   # multicast needs a route (toolbox.md)

echo "== boot"
# A private mount namespace with a tmpfs for nspawn's scratch dir: without systemd as
# PID 1 on this host, nspawn refuses to clean it up on a non-tmpfs /run. Not registered
# with machined (none here); CAP_NET_ADMIN so the container's networkd may configure lan0.
unshare -m --propagation private sh -c "mount -t tmpfs tmpfs /run/systemd/nspawn 2>/dev/null \
    || { mkdir -p /run/systemd/nspawn && mount -t tmpfs tmpfs /run/systemd/nspawn; }; \
    exec systemd-nspawn -q --register=no --keep-unit --capability=CAP_NET_ADMIN \
    -D '$ROOTFS' -M shuqiao-boot-check -b --network-namespace-path=/run/netns/$NS_C \
    --bind='$OUT':/out --console=passive" >"$WORK/nspawn.log" 2>&1 &
BOOT=$!
i=0; while [ ! -e "$OUT/ready" ] && [ $i -lt 180 ] && kill -0 $BOOT 2>/dev/null; do
    sleep 1; i=$((i+1)); done
[ -e "$OUT/ready" ] || { cat "$WORK/nspawn.log"; echo "FAIL: container never got ready"; exit 1; }

echo "== mDNS browse from the peer"
cat >"$WORK/browse.py" <<'EOF'
import time
from zeroconf import DNSQuestionType, IPVersion, ServiceBrowser, Zeroconf
zc = Zeroconf(interfaces=["10.77.0.1"], ip_version=IPVersion.V4Only)
found = {}
class Listener:
    def add_service(self, zc, type_, name): found[name] = type_
    def update_service(self, *args): pass
    def remove_service(self, *args): pass
for type_ in ("_shuqiao._tcp.local.", "_http._tcp.local."):
    ServiceBrowser(zc, type_, Listener(), question_type=DNSQuestionType.QM)
deadline = time.time() + 15
while time.time() < deadline and len(found) < 2:
    time.sleep(0.2)
for name, type_ in sorted(found.items()):
    info = zc.get_service_info(type_, name, 5000, question_type=DNSQuestionType.QM)
    print("mdns", type_, info.parsed_addresses() if info else None, info.port if info else None)
zc.close()
EOF
ip netns exec $NS_P "$PY" "$WORK/browse.py" | tee "$OUT/mdns.txt"
touch "$OUT/browsed"
wait $BOOT || true

echo "== results"
cat "$OUT/check.txt"
fail=0
check() { grep -qx "$1" "$OUT/$2" || { echo "FAIL: expected $1"; fail=1; }; }
check "ActiveState=active" check.txt
check "NRestarts=0" check.txt
check "healthz=200" check.txt
check "processes=2" check.txt          # bootloader + Python child: why NotifyAccess=all
check "unpacked=1" check.txt           # the bundle unpacked into the private /tmp
check "Result=success" check.txt
check "ExecMainStatus=0" check.txt
check "private_tmp_left=0" check.txt
check "sigterms=1" check.txt           # KillMode=mixed: one SIGTERM, forwarded once
check "notify_refused=0" check.txt
check "mdns _shuqiao._tcp.local. \['10.77.0.2'\] 8080" mdns.txt
check "mdns _http._tcp.local. \['10.77.0.2'\] 8080" mdns.txt
[ $fail = 0 ] && echo "PASS: boot check" || { echo "journal: $OUT/journal.txt"; exit 1; }
