"""Announce the appliance on the LAN by mDNS/DNS-SD.

Two services are published for the same web server:

* ``_shuqiao._tcp.local.``: what other appliances and our own tools browse for;
* ``_http._tcp.local.``: so any Bonjour/DNS-SD browser lists the kiosk page.

Both carry the same TXT record (``version``, ``id``, ``name``, ``path``, ``api``), the
facts /api/info serves as JSON. The instance name is the display name plus a short id
("书桥 · 城关小学 (3f9a1c)"), the host name ``shuqiao-<short id>.local.``, and,
when no other appliance holds it already, the fixed name ``shuqiao.local.`` is
published too (see ``Announcer._fixed_name_is_free``).

The announced addresses follow the machine: a background thread polls the interface
addresses and re-announces when they change (a DHCP renumbering, a second NIC coming
up), sending goodbyes for addresses that went away. ``stop()`` sends goodbyes for
everything, so browsers drop the entry at once instead of after the record TTL.

IPv4 only: school LANs hand out IPv4, and every client that browses for us also
resolves IPv4. A specific IPv6 bind address is logged and not announced.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import re
import socket
import threading
import time
import unicodedata
import uuid
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)

SHUQIAO_SERVICE_TYPE = "_shuqiao._tcp.local."
HTTP_SERVICE_TYPE = "_http._tcp.local."
# Apple's convention for describing a host rather than a service: the instance name
# is the host's label and the SRV target the host. We use it only as the vehicle for
# the fixed host name (python-zeroconf answers address queries only for the
# SRV targets of registered services); web-page browsers ignore this type.
DEVICE_INFO_SERVICE_TYPE = "_device-info._tcp.local."
FIXED_HOST_LABEL = "shuqiao"
FIXED_HOST_NAME = f"{FIXED_HOST_LABEL}.local."

_SHORT_ID_LEN = 6
_MAX_LABEL_BYTES = 63
# python-zeroconf renames a clashing instance to "<name>-2", "-3", …; leave room.
_RENAME_RESERVE_BYTES = 4
_MAX_TXT_VALUE_BYTES = 200
_DEFAULT_DISPLAY_NAME = "书桥 Shuqiao"

# Upper bounds for blocking calls; registration with probing takes about 1.7 s.
_REGISTER_TIMEOUT = 10.0
_UPDATE_TIMEOUT = 5.0
_JOIN_TIMEOUT = 10.0
# How long to wait for an owner of our host name to answer (inside the ~1.3 s
# instance-name probing window, so it adds no time).
# Long enough for a busy responder (Avahi on a loaded machine answered after >1 s).
_HOST_PROBE_MS = 2000
# How often an appliance that lost the fixed name to another one checks whether
# the holder has gone (a probe costs three small queries over 1.5 s).
_FIXED_NAME_RETRY_SECONDS = 120.0

# NICs that are not the school LAN: container and VM bridges, VPN tunnels. Clients
# on the LAN could not reach those addresses, so announcing them only makes clients
# try dead addresses first. ("br-" is Docker's; a plain "br0" may well be the LAN.)
_NON_LAN_NIC_PREFIXES = (
    "docker", "br-", "veth", "virbr", "lxcbr", "lxdbr", "cni", "flannel", "podman",
    "vmnet", "vboxnet", "tun", "tap", "wg", "tailscale", "zt",
)

# DNS wire constants (RFC 1035, RFC 6762) for the goodbye packets we build ourselves.
_FLAGS_QR_RESPONSE = 0x8000
_FLAGS_AA = 0x0400
_TYPE_A = 1
_CLASS_IN = 1


# -- names -------------------------------------------------------------------------
def short_id(instance_id: str) -> str:
    """Six lowercase hex-ish characters identifying the instance in names.

    Taken from the id itself when it has enough letters/digits (so an admin can match
    it against /api/info), else from a hash of it.
    """
    alnum = re.sub(r"[^0-9a-z]", "", instance_id.lower())
    if len(alnum) >= _SHORT_ID_LEN:
        return alnum[:_SHORT_ID_LEN]
    return hashlib.sha256(instance_id.encode("utf-8")).hexdigest()[:_SHORT_ID_LEN]


def _truncate_utf8(text: str, max_bytes: int) -> str:
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    return data[:max_bytes].decode("utf-8", errors="ignore").rstrip()


def _clean_display_name(display_name: str) -> str:
    # Control characters confuse browsers' UIs. A "." would be read as a DNS label
    # separator (python-zeroconf splits names on it), so use the full-width stop.
    chars = [" " if unicodedata.category(c).startswith("C") else c for c in display_name]
    cleaned = " ".join("".join(chars).split()).replace(".", "\uff0e")
    return cleaned or _DEFAULT_DISPLAY_NAME


def service_instance_name(display_name: str, instance_id: str) -> str:
    """The DNS-SD instance label: "<display name> (<short id>)", at most 63 bytes.

    The suffix keeps two appliances with the same display name (two schools both
    called 中心小学) from colliding; the display name is cut on a character boundary
    when it is too long.
    """
    suffix = f" ({short_id(instance_id)})"
    budget = _MAX_LABEL_BYTES - _RENAME_RESERVE_BYTES - len(suffix.encode("utf-8"))
    return _truncate_utf8(_clean_display_name(display_name), budget) + suffix


def host_name(instance_id: str) -> str:
    """The per-appliance mDNS host name, e.g. ``shuqiao-3f9a1c.local.``."""
    return f"{FIXED_HOST_LABEL}-{short_id(instance_id)}.local."


def txt_properties(
    *, instance_id: str, display_name: str, version: str, path: str = "/", api_version: str = "1"
) -> dict[str, str]:
    """The TXT record both services carry (the same facts as /api/info)."""
    return {
        "version": _truncate_utf8(version, _MAX_TXT_VALUE_BYTES),
        "id": _truncate_utf8(instance_id, _MAX_TXT_VALUE_BYTES),
        "name": _truncate_utf8(display_name.strip() or _DEFAULT_DISPLAY_NAME, _MAX_TXT_VALUE_BYTES),
        "path": path,
        "api": api_version,
    }


# -- addresses ---------------------------------------------------------------------
def _ipv4_or_none(text: str) -> ipaddress.IPv4Address | None:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    return addr if isinstance(addr, ipaddress.IPv4Address) else None


def _is_ip_literal(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _nic_ipv4_addresses(names: Sequence[str] | None = None) -> dict[str, list[str]]:
    """IPv4 addresses per NIC that is up; all NICs, or only ``names``.

    Loopback and link-local (169.254/16) addresses are left out. With ``names`` None,
    NICs that are not the LAN (containers, VMs, VPNs) are left out too.
    """
    import psutil  # imported here: only the wildcard and NIC-name modes need it

    try:
        stats = psutil.net_if_stats()
    except OSError:
        stats = {}
    result: dict[str, list[str]] = {}
    for nic, entries in psutil.net_if_addrs().items():
        if names is not None and nic not in names:
            continue
        if names is None and nic.startswith(_NON_LAN_NIC_PREFIXES):
            continue
        stat = stats.get(nic)
        if stat is not None and not stat.isup:
            continue
        addrs = []
        for entry in entries:
            if entry.family != socket.AF_INET:
                continue
            addr = _ipv4_or_none(entry.address)
            if addr is None or addr.is_loopback or addr.is_link_local or addr.is_unspecified:
                continue
            addrs.append(str(addr))
        if addrs:
            result[nic] = addrs
    return result


def lan_addresses() -> dict[str, list[str]]:
    """IPv4 LAN addresses per NIC, as announced when the server binds 0.0.0.0."""
    return _nic_ipv4_addresses(None)


AddressSelector = Callable[[], dict[str, list[str]]]


def _make_selector(bind_host: str, interfaces: list[str] | None) -> tuple[AddressSelector, str]:
    """Decide where to announce; returns a selector and a description for logs.

    The selector returns addresses grouped by NIC (or by address, for fixed
    addresses): zeroconf gets one socket per group, bound to its first address, and
    every address is announced.
    """
    if interfaces is not None:
        fixed: dict[str, list[str]] = {}
        nic_names: list[str] = []
        for item in interfaces:
            if _ipv4_or_none(item) is not None:
                fixed[item] = [item]
            elif _is_ip_literal(item):
                log.warning("mDNS: ignoring IPv6 interface %s (IPv4 only)", item)
            else:
                nic_names.append(item)
        if not nic_names:
            return (lambda: dict(fixed)), f"interfaces {interfaces}"

        def by_name() -> dict[str, list[str]]:
            groups = _nic_ipv4_addresses(nic_names)
            groups.update(fixed)
            return groups

        return by_name, f"interfaces {interfaces}"

    host = (bind_host or "").strip().strip("[]")
    if host in ("", "0.0.0.0", "::"):
        # A lambda, so the module-level function is looked up at each poll (tests
        # substitute it to fake the machine's NICs).
        return (lambda: lan_addresses()), "all LAN interfaces"
    if not _is_ip_literal(host):
        try:
            host = socket.gethostbyname(host)
        except OSError:
            log.warning("mDNS: cannot resolve bind host %r; not announcing", bind_host)
            return (lambda: {}), f"unresolvable {bind_host!r}"
    addr = ipaddress.ip_address(host)
    if addr.is_loopback:
        # Dev runs on 127.0.0.1: announce on loopback only, never on the real NIC.
        return (lambda: {"127.0.0.1": ["127.0.0.1"]}), "loopback"
    if not isinstance(addr, ipaddress.IPv4Address):
        log.warning("mDNS: bind host %s is IPv6; not announcing (IPv4 only)", host)
        return (lambda: {}), f"IPv6 {host}"
    return (lambda: {host: [host]}), f"bind address {host}"


# -- the announcer -----------------------------------------------------------------
class Announcer:
    """Publishes ``_shuqiao._tcp`` and ``_http._tcp`` for one running web server.

    ``start()`` registers both services (probing for name conflicts first, unless
    ``fast_register``) and starts a thread that re-announces when the addresses
    change; ``stop()`` sends goodbyes and closes everything. Network failures are
    logged and retried on the next address poll rather than raised, so a box whose
    network is not up yet at boot still announces itself once it is.
    """

    def __init__(
        self,
        *,
        instance_id: str,
        display_name: str,
        version: str,
        port: int,
        bind_host: str,
        path: str = "/",
        api_version: str = "1",
        interfaces: list[str] | None = None,
        address_poll_seconds: float = 10.0,
        fast_register: bool = False,
        publish_fixed_name: bool = True,
    ) -> None:
        if not 0 < int(port) < 65536:
            raise ValueError(f"port out of range: {port!r}")
        if not instance_id:
            raise ValueError("instance_id is required")
        self.instance_id = instance_id
        self.display_name = display_name
        self.port = int(port)
        self.properties = txt_properties(
            instance_id=instance_id, display_name=display_name, version=version,
            path=path, api_version=api_version,
        )
        self.instance_name = service_instance_name(display_name, instance_id)
        # Becomes "shuqiao-<short id>-2.local." if another box already uses it.
        self.host_name = host_name(instance_id)
        self.address_poll_seconds = float(address_poll_seconds)
        # Probing (the default) is what keeps two appliances from taking the same
        # name; skipping it (cooperating responders) saves ~1.2 s, for tests only.
        self._cooperating = bool(fast_register)
        self._publish_fixed_name = bool(publish_fixed_name)
        self._select, self._where = _make_selector(bind_host, interfaces)

        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False
        self._closed = False
        self._failures = 0

        self._zc = None  # zeroconf.Zeroconf while announcing
        self._infos: dict[str, object] = {}  # service type -> registered ServiceInfo
        self._fixed_info = None  # the shuqiao.local. holder, when we hold it
        self._fixed_next_try = 0.0
        self._announced: list[str] = []
        self._sockets: list[str] = []

    # -- public --------------------------------------------------------------------
    # The read-only views below take no lock (the lock is held through network
    # round trips of a second or more): the attributes they read are replaced
    # whole, never mutated, so a reader sees either the old or the new state.
    @property
    def addresses(self) -> list[str]:
        """The IPv4 addresses announced right now (empty when not announcing)."""
        return list(self._announced)

    @property
    def service_names(self) -> dict[str, str]:
        """Registered instance names by service type (after any conflict renaming)."""
        return {type_: info.name for type_, info in self._infos.items()}

    @property
    def fixed_name_claimed(self) -> bool:
        """Whether this appliance currently answers for ``shuqiao.local.``."""
        return self._fixed_info is not None

    def start(self) -> None:
        """Register both services and start following address changes.

        Blocks until registered (about 1.7 s with probing, 0.5 s with
        ``fast_register``), at most ~10 s. If there is no address to announce yet, or
        the network refuses, it logs and returns; the poll thread keeps trying.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("Announcer was stopped; create a new one")
            if self._started:
                return
            self._started = True
            self._refresh()
            if self.address_poll_seconds > 0:
                self._thread = threading.Thread(
                    target=self._poll_loop, name="shuqiao-mdns", daemon=True
                )
                self._thread.start()

    def stop(self) -> None:
        """Send goodbyes for both services, close zeroconf; idempotent."""
        self._stopping.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=_JOIN_TIMEOUT)
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._tear_down()

    def __enter__(self) -> Announcer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- polling -------------------------------------------------------------------
    def _poll_loop(self) -> None:
        while not self._stopping.wait(self.address_poll_seconds):
            try:
                self._refresh()
            except Exception:  # never let the thread die: the next poll may work
                log.exception("mDNS: address refresh failed")

    def _refresh(self) -> None:
        try:
            groups = self._select()
        except Exception:
            log.exception("mDNS: could not read interface addresses")
            return
        addresses: list[str] = []
        for group in groups.values():
            addresses.extend(a for a in group if a not in addresses)
        sockets = [group[0] for group in groups.values() if group]
        with self._lock:
            if self._closed or self._stopping.is_set():
                return
            try:
                if self._zc is None:
                    if addresses:
                        self._bring_up(addresses, sockets)
                elif not addresses:
                    log.info("mDNS: no LAN address left; withdrawing the announcement")
                    self._tear_down()
                elif set(addresses) != set(self._announced) or set(sockets) != set(self._sockets):
                    self._change(addresses, sockets)
                elif self._publish_fixed_name and self._fixed_info is None:
                    self._retry_fixed_name()
                self._failures = 0
            except Exception as exc:
                self._failures += 1
                if self._failures == 1:
                    log.warning("mDNS: announcing on %s failed; will retry", self._where, exc_info=True)
                else:
                    log.debug("mDNS: retry %d failed: %s", self._failures, exc)

    # -- zeroconf work (called with the lock held) ----------------------------------
    def _service_info(self, type_: str, name: str, server: str, port: int,
                      properties: dict[str, str], addresses: list[str]):
        from zeroconf import ServiceInfo

        return ServiceInfo(
            type_, name, port=port, properties=properties, server=server,
            parsed_addresses=addresses,
        )

    def _run(self, coro, timeout: float):
        assert self._zc is not None and self._zc.loop is not None
        future = asyncio.run_coroutine_threadsafe(coro, self._zc.loop)
        try:
            return future.result(timeout=timeout)
        except BaseException:
            future.cancel()
            raise

    def _bring_up(self, addresses: list[str], sockets: list[str]) -> None:
        from zeroconf import IPVersion, Zeroconf

        t0 = time.monotonic()
        # use_asyncio=False: always run zeroconf's own loop thread, so these blocking
        # calls work even if the caller happens to run inside an event loop.
        zc = Zeroconf(interfaces=sockets, ip_version=IPVersion.V4Only, use_asyncio=False)
        self._zc = zc
        try:
            infos, fixed, host = self._run(self._register_all(addresses), _REGISTER_TIMEOUT)
        except BaseException:
            self._zc = None
            self._close_quietly(zc)
            raise
        self.host_name = host
        self._infos = infos
        self._fixed_info = fixed
        self._fixed_next_try = time.monotonic() + _FIXED_NAME_RETRY_SECONDS
        self._announced = list(addresses)
        self._sockets = list(sockets)
        log.info(
            "mDNS: announced %s as %s on %s (%s) in %.1f s%s",
            ", ".join(repr(i.name) for i in infos.values()), host, ", ".join(addresses),
            self._where, time.monotonic() - t0, f"; also {FIXED_HOST_NAME}" if fixed else "",
        )

    async def _register_all(self, addresses: list[str]):
        """Probe every name at once, then register; returns (infos, fixed, host).

        One ~1.3 s probing window covers the two instance names (renamed "-2", …
        on a clash), our host name and the fixed name, instead of one window each.
        """
        zc = self._zc
        types = (SHUQIAO_SERVICE_TYPE, HTTP_SERVICE_TYPE)
        names = {type_: f"{self.instance_name}.{type_}" for type_ in types}
        host = host_name(self.instance_id)
        want_fixed = self._publish_fixed_name
        if not self._cooperating:
            probes = {
                type_: self._service_info(type_, names[type_], host, self.port, {}, addresses)
                for type_ in types
            }
            jobs = [zc.async_check_service(info, allow_name_change=True) for info in probes.values()]
            jobs.append(self._free_host_name(addresses))
            if want_fixed:
                jobs.append(self._fixed_name_is_free(addresses))
            results = await asyncio.gather(*jobs)
            names = {type_: info.name for type_, info in probes.items()}
            host = results[len(types)]
            want_fixed = want_fixed and results[-1]
        infos = {
            type_: self._service_info(type_, names[type_], host, self.port, self.properties, addresses)
            for type_ in types
        }
        fixed = self._fixed_name_info(addresses) if want_fixed else None
        broadcasts = [
            # already probed above (or fast_register): no second probing round
            await zc.async_register_service(info, cooperating_responders=True)
            for info in [*infos.values(), *([fixed] if fixed is not None else [])]
        ]
        await asyncio.gather(*broadcasts)
        return infos, fixed, host

    async def _host_owners(self, name: str, addresses: list[str]) -> list[str]:
        """Addresses, other than ours, that answer for host ``name`` (one probe window)."""
        from zeroconf import AddressResolverIPv4, DNSQuestionType

        resolver = AddressResolverIPv4(name)
        # QM: replies to QU probes are unicast and, with several responders on one
        # machine (tests, dev), may reach another process's socket.
        if not await resolver.async_request(self._zc, _HOST_PROBE_MS, question_type=DNSQuestionType.QM):
            return []
        return [a for a in resolver.parsed_addresses() if a not in addresses]

    async def _free_host_name(self, addresses: list[str]) -> str:
        """Our host name, or "shuqiao-<short id>-2.local." … if another box has it.

        python-zeroconf probes instance names but not host names. Two appliances
        only share a host name when they share the instance id (a disk image
        copied with its data directory), and then, without this check, both would
        answer for it and each one's services would resolve to both addresses.
        """
        base = host_name(self.instance_id)[: -len(".local.")]
        for n in range(1, 10):
            candidate = f"{base}.local." if n == 1 else f"{base}-{n}.local."
            owners = await self._host_owners(candidate, addresses)
            if not owners:
                return candidate
            log.warning(
                "mDNS: host name %s is used by %s (same instance id?); trying another",
                candidate, ", ".join(owners),
            )
        return f"{base}-{uuid.uuid4().hex[:4]}.local."

    def _fixed_name_info(self, addresses: list[str]):
        return self._service_info(
            DEVICE_INFO_SERVICE_TYPE, f"{FIXED_HOST_LABEL}.{DEVICE_INFO_SERVICE_TYPE}",
            FIXED_HOST_NAME, 0, {"model": "Shuqiao", "id": self.properties["id"]}, addresses,
        )

    async def _fixed_name_is_free(self, addresses: list[str]) -> bool:
        """Whether we may become ``shuqiao.local.`` (probes; ~2.3 s).

        The fixed name is for networks where browsing fails: a teacher types
        http://shuqiao.local/. mDNS host names are meant to be unique, but
        python-zeroconf only probes service instance names. So the claim rides on
        the instance ``shuqiao._device-info._tcp.local.`` whose SRV target is
        ``shuqiao.local.``, probed WITHOUT renaming, and we also ask who answers for
        the address. If another appliance (or any machine) holds it, we simply do
        not publish the fixed name (our own shuqiao-<id>.local. and the browsable
        services still work). First come, first served; the loser checks again
        every couple of minutes and takes over once the holder is gone.

        If two appliances still both claim it (they started within the same probe
        window, or with fast_register, which skips probing), both answer address
        queries for shuqiao.local.: a client connects to whichever answer it keeps,
        and since any appliance serves the school's content that is a working page,
        not an outage. Address records carry the cache-flush bit, so a client does
        not keep mixing the two.
        """
        from zeroconf import NonUniqueNameException

        if self._cooperating:
            return True

        async def instance_free() -> bool:
            try:
                await self._zc.async_check_service(
                    self._fixed_name_info(addresses), allow_name_change=False
                )
            except NonUniqueNameException:
                return False
            return True

        # Also ask for the address itself: a machine that merely has the host name
        # "shuqiao" (Avahi, Bonjour) holds it without any _device-info instance.
        free, owners = await asyncio.gather(
            instance_free(), self._host_owners(FIXED_HOST_NAME, addresses)
        )
        if not free or owners:
            log.info(
                "mDNS: %s is held by another machine%s; not claiming it",
                FIXED_HOST_NAME, f" ({', '.join(owners)})" if owners else "",
            )
            return False
        return True

    def _retry_fixed_name(self) -> None:
        if time.monotonic() < self._fixed_next_try:
            return
        self._fixed_next_try = time.monotonic() + _FIXED_NAME_RETRY_SECONDS
        addresses = list(self._announced)

        async def claim():
            if not await self._fixed_name_is_free(addresses):
                return None
            info = self._fixed_name_info(addresses)
            await (await self._zc.async_register_service(info, cooperating_responders=True))
            return info

        info = self._run(claim(), _REGISTER_TIMEOUT)
        if info is not None:
            self._fixed_info = info
            log.info("mDNS: now also answering for %s", FIXED_HOST_NAME)

    def _change(self, addresses: list[str], sockets: list[str]) -> None:
        """Re-announce with new addresses; goodbye for the ones that went away."""
        zc = self._zc
        if set(sockets) != set(self._sockets) and not hasattr(zc, "update_interfaces"):
            # zeroconf before update_interfaces existed: start over (goodbye, probe)
            self._tear_down()
            self._bring_up(addresses, sockets)
            return
        removed = [a for a in self._announced if a not in addresses]
        infos = {
            type_: self._service_info(
                type_, old.name, self.host_name, self.port, self.properties, addresses
            )
            for type_, old in self._infos.items()
        }
        fixed = self._fixed_name_info(addresses) if self._fixed_info is not None else None
        updated = [*infos.values(), *([fixed] if fixed is not None else [])]

        # Order matters. The registry gets the new records first, without sending:
        # update_interfaces re-announces whatever is registered on a new socket, and
        # announcing the old addresses there would refresh them in clients' caches
        # just before the new cache-flush records arrive (RFC 6762 10.2 spares
        # records younger than a second, so clients would keep both until the TTL
        # ran out). Sockets second, so a socket whose address is gone is closed
        # before anything is sent. Then announce on the final set of sockets.
        self._run(self._set_registry(updated), _UPDATE_TIMEOUT)
        if set(sockets) != set(self._sockets):
            zc.update_interfaces(interfaces=sockets)
        self._run(self._update_all(updated), _UPDATE_TIMEOUT)
        if removed:
            self._send_address_goodbyes(removed)
        self._infos = infos
        self._fixed_info = fixed
        self._announced = list(addresses)
        self._sockets = list(sockets)
        log.info(
            "mDNS: addresses changed; now announcing %s (gone: %s)",
            ", ".join(addresses), ", ".join(removed) or "none",
        )

    async def _set_registry(self, infos: list) -> None:
        for info in infos:
            self._zc.registry.async_update(info)  # what queries are answered from

    async def _update_all(self, infos: list) -> None:
        tasks = [await self._zc.async_update_service(info) for info in infos]
        await asyncio.gather(*tasks)

    def _send_address_goodbyes(self, removed: list[str]) -> None:
        """Tell clients now that an address is gone (TTL 0, RFC 6762 10.1).

        The update already carried the new address records with the cache-flush
        bit, which drops older ones in most caches; this covers records a client
        refreshed less than a second ago and clients that ignore the bit. The
        goodbye must NOT set the cache-flush bit itself, or it would flush the new
        addresses too.
        """
        from zeroconf import DNSAddress, DNSOutgoing

        out = DNSOutgoing(_FLAGS_QR_RESPONSE | _FLAGS_AA)
        servers = [self.host_name] + ([FIXED_HOST_NAME] if self._fixed_info is not None else [])
        for server in servers:
            for addr in removed:
                out.add_answer_at_time(
                    DNSAddress(server, _TYPE_A, _CLASS_IN, 0, socket.inet_aton(addr)), 0
                )
        self._zc.send(out)

    def _tear_down(self) -> None:
        zc = self._zc
        self._zc = None
        self._infos = {}
        self._fixed_info = None
        self._announced = []
        self._sockets = []
        if zc is not None:
            self._close_quietly(zc)

    @staticmethod
    def _close_quietly(zc) -> None:
        # unregister_all_services sends the goodbyes (three packets, 125 ms apart).
        try:
            zc.unregister_all_services()
        except Exception:
            log.debug("mDNS: goodbye failed", exc_info=True)
        try:
            zc.close()
        except Exception:
            log.debug("mDNS: close failed", exc_info=True)
