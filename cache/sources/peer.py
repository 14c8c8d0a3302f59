"""Other appliances on the LAN as a source: found by mDNS, trusted by their feed's key.

Every appliance publishes its cache as a signed feed at ``/feed/`` (``kiosk/feed.py``) and
announces ``_shuqiao._tcp.local.`` (``kiosk/announce.py``). Here:

- :class:`PeerBrowser` keeps the list of appliances announcing themselves, from a
  python-zeroconf ``ServiceBrowser`` (passive listening plus the library's own backed-off
  queries: cheap). At most :data:`MAX_PEERS` are kept; our own announcement is ignored.
  :func:`discover_peers` is the one-shot form for the CLI and tests.
- :class:`PeerDirectory` reads each peer's ``/feed/manifest.json`` — size-bounded,
  re-checked at most every ``refresh_seconds`` with ``If-None-Match`` so an unchanged
  feed costs a 304 — and keeps it only when its signature verifies against
  ``feed_trusted_keys``. **Trust rule:** a peer is used for content only if its feed is
  signed by a trusted key; there is no other "trust this peer" switch — the admin adds the
  peer's key (``shuqiao feed-key`` on the peer prints it) as for any feed. Untrusted peers
  are listed in :meth:`PeerDirectory.status` with their key's fingerprint so the admin can
  decide. Every byte from a peer is still checked against the SHA-256 in its signed
  manifest as it arrives.
- LAN before WAN: :meth:`PeerDirectory.find_blob` / :meth:`find_file` tell the fetch engine
  where on the LAN it can get a file; :func:`fetch_from_peers` fetches whole resources
  from peers by importing them from the peer's feed (the same verified, staged path as
  ``shuqiao import``), and says which resources no peer holds (those go to the WAN).

``cache`` never imports ``kiosk``: the few mDNS constants are repeated here.
"""

from __future__ import annotations

import ipaddress
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable

import requests

from .. import feed
from ..feed import FeedError, Manifest, TrustedKey
from .base import ErrorKind, UpstreamRequest
from .feed import USER_AGENT, HttpReader, read_bounded
from .plain import classify_by_status

log = logging.getLogger("shuqiao.peers")

SERVICE_TYPE = "_shuqiao._tcp.local."  # as kiosk/announce.py announces it
MAX_PEERS = 16
RESOLVE_TIMEOUT_MS = 3000
MANIFEST_TIMEOUT = (3, 20)  # connect, read: a LAN peer that is slower is not worth waiting for


@dataclass(frozen=True)
class Peer:
    instance_id: str
    name: str
    address: str
    port: int
    path: str = "/"

    @property
    def base_url(self) -> str:
        path = self.path if self.path.endswith("/") else self.path + "/"
        return f"http://{self.address}:{self.port}{path}"

    @property
    def feed_url(self) -> str:
        return self.base_url + "feed/"


def zeroconf_interfaces(bind_host: str) -> list[str] | None:
    """Where to browse, following where the server listens: a loopback bind browses on
    127.0.0.1 only (dev runs and tests never multicast on the real network card), a
    specific IPv4 address on that address, a wildcard on all interfaces (None)."""
    host = (bind_host or "").strip().strip("[]")
    if host in ("", "0.0.0.0", "::"):
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None if host != "localhost" else ["127.0.0.1"]
    if address.is_loopback:
        return ["127.0.0.1"]
    return [host] if address.version == 4 else None


class PeerBrowser:
    """The appliances currently announcing ``_shuqiao._tcp`` (except this one)."""

    def __init__(self, own_instance_id: str | None = None, interfaces: list[str] | None = None):
        self.own_instance_id = own_instance_id
        self.interfaces = interfaces
        self._peers: dict[str, Peer] = {}  # service name -> peer
        self._names: queue.Queue[str | None] = queue.Queue()
        self._changed = threading.Condition()
        self._zc = None
        self._browser = None
        self._resolver: threading.Thread | None = None

    def start(self) -> None:
        from zeroconf import DNSQuestionType, InterfaceChoice, IPVersion, ServiceBrowser, Zeroconf

        self._zc = Zeroconf(interfaces=self.interfaces or InterfaceChoice.All,
                            ip_version=IPVersion.V4Only)
        self._resolver = threading.Thread(target=self._resolve_loop, name="shuqiao-peers",
                                          daemon=True)
        self._resolver.start()
        # QM (multicast) questions: unicast answers can land on the wrong socket when
        # several responders share 127.0.0.1 (see shared/reference/toolbox.md).
        self._browser = ServiceBrowser(self._zc, [SERVICE_TYPE], handlers=[self._on_change],
                                       question_type=DNSQuestionType.QM)

    def stop(self) -> None:
        self._names.put(None)
        if self._browser is not None:
            self._browser.cancel()
        if self._resolver is not None:
            self._resolver.join(10)
        if self._zc is not None:
            self._zc.close()
        self._zc = self._browser = self._resolver = None

    def __enter__(self) -> "PeerBrowser":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def peers(self) -> list[Peer]:
        with self._changed:
            return list(self._peers.values())

    def wait(self, predicate: Callable[[list[Peer]], bool], timeout: float) -> list[Peer]:
        """Wait until ``predicate(peers)`` holds or ``timeout`` passes; returns the peers."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(list(self._peers.values())):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
            return list(self._peers.values())

    # Runs on zeroconf's event loop: must not block, so resolution happens elsewhere.
    def _on_change(self, zeroconf, service_type, name, state_change) -> None:
        from zeroconf import ServiceStateChange

        if state_change is ServiceStateChange.Removed:
            with self._changed:
                self._peers.pop(name, None)
                self._changed.notify_all()
        else:
            self._names.put(name)

    def _resolve_loop(self) -> None:
        from zeroconf import DNSQuestionType

        while (name := self._names.get()) is not None:
            try:
                info = self._zc.get_service_info(SERVICE_TYPE, name, timeout=RESOLVE_TIMEOUT_MS,
                                                 question_type=DNSQuestionType.QM)
            except Exception:  # a closing Zeroconf, a malformed record: skip this one
                log.debug("could not resolve %s", name, exc_info=True)
                continue
            peer = _peer_from(info)
            if peer is None or peer.instance_id == self.own_instance_id:
                continue
            with self._changed:
                if name in self._peers or len(self._peers) < MAX_PEERS:
                    self._peers[name] = peer
                    self._changed.notify_all()


def _peer_from(info) -> Peer | None:
    if info is None or not info.port:
        return None
    addresses = [a for a in info.parsed_addresses() if ":" not in a]
    if not addresses:
        return None
    txt = {k: (v or "") for k, v in info.decoded_properties.items()}
    path = txt.get("path") or "/"
    if not path.startswith("/"):
        path = "/" + path
    return Peer(instance_id=txt.get("id", ""), name=txt.get("name", ""), address=addresses[0],
                port=info.port, path=path)


def discover_peers(timeout: float = 3.0, *, interfaces: list[str] | None = None,
                   own_instance_id: str | None = None, want: int | None = None) -> list[Peer]:
    """Browse for ``timeout`` seconds (or until ``want`` peers are found)."""
    with PeerBrowser(own_instance_id, interfaces) as browser:
        return browser.wait(lambda peers: want is not None and len(peers) >= want, timeout)


@dataclass
class PeerFile:
    """Where on the LAN one file's bytes are: a peer's feed and the signed entry."""

    peer: Peer
    sha256: str
    size: int
    url: str
    parts: list[dict]  # pieces of a multi-blob file (HLS segments), each with its sha256


@dataclass
class _PeerState:
    peer: Peer
    manifest: Manifest | None = None
    signer: str = ""
    fingerprint: str = ""  # of the key that signed, trusted or not
    etag: str | None = None
    checked: float = 0.0
    error: str = ""


class PeerDirectory:
    """What each trusted peer holds, from its verified feed manifest."""

    def __init__(self, trusted: dict[str, TrustedKey], peers: Callable[[], Iterable[Peer]],
                 session: requests.Session | None = None, refresh_seconds: float = 60.0):
        self.trusted = trusted
        self._peers = peers
        self._own_session = session is None
        self.session = session or requests.Session()
        self.refresh_seconds = refresh_seconds
        self._lock = threading.Lock()
        self._states: dict[str, _PeerState] = {}

    def close(self) -> None:
        if self._own_session:
            self.session.close()

    def refresh(self, force: bool = False) -> None:
        """Re-read the feeds of peers not checked within ``refresh_seconds``."""
        with self._lock:
            current = {p.feed_url: p for p in self._peers()}
            for url in list(self._states):
                if url not in current:
                    del self._states[url]
            for url, peer in current.items():
                state = self._states.setdefault(url, _PeerState(peer))
                state.peer = peer
                if force or time.monotonic() - state.checked >= self.refresh_seconds:
                    self._load(state)

    def _load(self, state: _PeerState) -> None:
        state.checked = time.monotonic()
        for _ in range(2):
            if self._load_once(state) != "bad_signature":
                return
            # The peer may have republished between our two GETs: look once more.

    def _load_once(self, state: _PeerState) -> str:
        """Read and verify one peer's feed; returns "" or the reason it is not used."""
        url = state.peer.feed_url
        headers = {"User-Agent": USER_AGENT}
        if state.etag and state.manifest is not None:
            headers["If-None-Match"] = state.etag
        try:
            with self.session.get(url + feed.MANIFEST_NAME, headers=headers, stream=True,
                                  timeout=MANIFEST_TIMEOUT) as response:
                if response.status_code == 304:
                    return ""
                if response.status_code != 200:
                    raise FeedError("http_error", f"HTTP {response.status_code}",
                                    f"HTTP {response.status_code}")
                manifest_bytes = read_bounded(response, feed.MANIFEST_NAME,
                                              feed.MAX_MANIFEST_BYTES)
                etag = response.headers.get("ETag")
            with self.session.get(url + feed.SIGNATURE_NAME, headers={"User-Agent": USER_AGENT},
                                  stream=True, timeout=MANIFEST_TIMEOUT) as response:
                signature = read_bounded(response, feed.SIGNATURE_NAME, feed.MAX_SIGNATURE_BYTES) \
                    if response.status_code == 200 else None
            state.fingerprint = _signer_fingerprint(signature)
            signer = feed.verify(manifest_bytes, signature, self.trusted)
            state.manifest, state.signer, state.etag = feed.parse(manifest_bytes), signer.name, etag
            state.error = ""
            return ""
        except (FeedError, requests.RequestException) as error:
            state.manifest, state.etag, state.error = None, None, str(error)
            log.info("peer %s not used: %s", url, error)
            return getattr(error, "reason", "unavailable")

    def _trusted_states(self) -> list[_PeerState]:
        return [s for s in self._states.values() if s.manifest is not None]

    def find_blob(self, sha256: str) -> str | None:
        """A URL on a trusted peer for this blob, or None (then ask the WAN)."""
        self.refresh()
        with self._lock:
            for state in self._trusted_states():
                if sha256 in state.manifest.blobs:
                    return state.peer.feed_url + feed.blob_path(sha256)
        return None

    def find_file(self, file: dict) -> PeerFile | None:
        """A trusted peer holding this file (a ``files`` row): matched by SHA-256 when this
        appliance knows it, else by the platform's MD5 and size, else by resource and role."""
        self.refresh()
        with self._lock:
            for state in self._trusted_states():
                entry = _match(state.manifest, file)
                if entry is not None:
                    return PeerFile(peer=state.peer, sha256=entry["sha256"], size=entry["size"],
                                    url=state.peer.feed_url + feed.blob_path(entry["sha256"]),
                                    parts=list(entry.get("parts", ())))
        return None

    def holders(self, resource_id: str) -> list[Peer]:
        """Trusted peers whose feed has this resource with at least one cached file."""
        self.refresh()
        with self._lock:
            return [s.peer for s in self._trusted_states()
                    if _has_bytes(s.manifest, resource_id)]

    def status(self) -> list[dict]:
        """For the admin page: every peer seen, whether it is used, and why not."""
        with self._lock:
            return [{"name": s.peer.name, "id": s.peer.instance_id, "url": s.peer.base_url,
                     "trusted": s.manifest is not None, "signer": s.signer,
                     "key_fingerprint": s.fingerprint, "error": s.error,
                     "resources": len(s.manifest.resources) if s.manifest else 0}
                    for s in self._states.values()]


def _signer_fingerprint(signature: bytes | None) -> str:
    import json

    try:
        return feed.fingerprint(feed.parse_public_key(json.loads(signature)["public_key"]))
    except Exception:
        return ""


def _match(manifest: Manifest, file: dict) -> dict | None:
    """The entry of ``manifest`` holding the bytes of ``file`` (a ``files`` row), matched
    as :func:`cache.sources.feed.merge_into_catalog` matches: SHA-256, else MD5 and size,
    else role and size (or name) within the same resource."""
    if file.get("sha256"):
        digest = file["sha256"]
        if digest not in manifest.blobs:
            return None
        for resource in manifest.resources:
            for entry in resource["files"]:
                if entry.get("sha256") == digest:
                    return entry
        return None
    resource = manifest.by_id.get(file.get("resource_id", ""))
    if resource is None:
        return None
    size = file.get("size")
    for entry in resource["files"]:
        if not entry.get("sha256"):
            continue
        if file.get("md5") and entry.get("md5"):
            if file["md5"] == entry["md5"] and size in (None, entry["size"]):
                return entry
        elif file.get("role") == entry["role"] and (
                size == entry["size"] or (file.get("name") == entry["name"] and size is None)):
            return entry
    return None


def _has_bytes(manifest: Manifest, resource_id: str) -> bool:
    ids = {resource_id} | {r["id"] for r in manifest.resources if r["parent"] == resource_id}
    return any(f.get("sha256") for rid in ids if rid in manifest.by_id
               for f in manifest.by_id[rid]["files"])


@dataclass
class PeerFetchResult:
    fetched: dict[str, str]     # resource id -> name of the peer it came from
    not_on_peers: list[str]     # for the WAN
    errors: dict[str, str]      # peer feed URL -> why it failed (the WAN is next anyway)


def fetch_from_peers(catalog, store, resource_ids: Iterable[str], directory: PeerDirectory,
                     progress=None, reserve_bytes: int = 0) -> PeerFetchResult:
    """Fetch these resources (with their parts) from trusted LAN peers.

    Each peer is asked for the resources it holds, through the same verified, staged
    import as ``shuqiao import`` (so a peer that serves wrong bytes stores nothing). What
    no peer holds, or what failed, is returned for the WAN.
    """
    from ..pack import import_feed  # pack imports this package's feed reader

    wanted = list(dict.fromkeys(resource_ids))
    fetched: dict[str, str] = {}
    errors: dict[str, str] = {}
    for rid in wanted:
        if rid in fetched:
            continue
        for peer in directory.holders(rid):
            batch = [r for r in wanted if r not in fetched and peer in directory.holders(r)]
            reader = HttpReader(peer.feed_url, directory.session)
            try:
                import_feed(catalog, store, reader, directory.trusted, select=batch,
                            progress=progress, reserve_bytes=reserve_bytes)
            except FeedError as error:
                errors[peer.feed_url] = str(error)
                continue
            fetched.update((r, peer.name) for r in batch)
            break
    return PeerFetchResult(fetched=fetched, not_on_peers=[r for r in wanted if r not in fetched],
                           errors=errors)


class PeerSource:
    """LAN peers as a :class:`~cache.sources.base.Source` for the fetch engine.

    Put it first in the engine's ``sources_for`` list (:func:`lan_first`): a file a trusted
    peer holds is downloaded from the peer through the engine's own resumable download,
    each blob checked against the SHA-256 of the peer's signed manifest (for a video in
    pieces, every segment and then the playlist); a file no peer holds raises
    ``TransferError(NOT_FOUND)`` at once, without a request, and the engine moves on to
    the file's own source — the WAN.

    ``lan = True``: bytes from a peer cross the school LAN, not the metered link; the
    engine should not charge them to the bandwidth budget (it does not yet know this flag).
    """

    name = "peer"
    lan = True

    def __init__(self, directory: PeerDirectory):
        self.directory = directory

    def request(self, url: str, method: str = "GET") -> UpstreamRequest:
        return UpstreamRequest(url, {"User-Agent": USER_AGENT})

    def classify(self, status: int | None, body: bytes, error: Exception | None) -> ErrorKind:
        return classify_by_status(status, error)

    def fetch_file(self, file: dict, ctx) -> str:
        from ..transfer import TransferError

        hit = self.directory.find_file(file)
        if hit is None:
            raise TransferError(ErrorKind.NOT_FOUND, "not on any trusted LAN peer")
        base = hit.peer.feed_url
        for part in hit.parts:  # segments first: the playlist is useless without them
            self._download(ctx, base + feed.blob_path(part["sha256"]), part["sha256"],
                           part["size"], hit.peer)
        # The platform's MD5, when we have it and the file is one blob, is checked too.
        md5 = file.get("md5") if not hit.parts else None
        return self._download(ctx, hit.url, hit.sha256, hit.size, hit.peer, md5)

    @staticmethod
    def _download(ctx, url: str, digest: str, size: int, peer: Peer,
                  md5: str | None = None) -> str:
        from ..transfer import TransferError

        got = ctx.download(url, expected_size=size, expected_md5=md5)
        if got != digest:
            raise TransferError(ErrorKind.CORRUPT, f"{url} from LAN peer {peer.name} does not "
                                "match its signed manifest")
        return got


def lan_first(sources_for: Callable[[dict], list],
              peer_source: PeerSource) -> Callable[[dict], list]:
    """Wrap the engine's ``sources_for`` so LAN peers are tried before every other source."""
    def sources(file: dict) -> list:
        return [peer_source, *sources_for(file)]

    return sources


class LanPeers:
    """What ``serve`` runs when ``peer_discovery`` is on: the browser, the directory of
    trusted peers' feeds, and the source to put first in the fetch engine's list.

    ``start()`` returns at once (browsing runs on zeroconf's thread); ``stop()`` closes it.
    """

    def __init__(self, trusted: dict[str, TrustedKey], own_instance_id: str,
                 interfaces: list[str] | None, refresh_seconds: float = 60.0):
        self.browser = PeerBrowser(own_instance_id, interfaces)
        self.directory = PeerDirectory(trusted, self.browser.peers,
                                       refresh_seconds=refresh_seconds)
        self.source = PeerSource(self.directory)

    @classmethod
    def from_config(cls, config, instance_id: str) -> "LanPeers":
        from ..pack import trusted_keys_for

        return cls(trusted_keys_for(config), instance_id, zeroconf_interfaces(config.host))

    def start(self) -> "LanPeers":
        self.browser.start()
        return self

    def stop(self) -> None:
        self.browser.stop()
        self.directory.close()

    def sources_for(self, sources_for: Callable[[dict], list]) -> Callable[[dict], list]:
        return lan_first(sources_for, self.source)
