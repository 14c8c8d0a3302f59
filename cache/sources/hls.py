"""The platform's encrypted HLS videos, stored so terminals play them with no platform.

A lesson video is one HLS *media* playlist per rendition (smartedu-upstream.md §4.4):
version 3, VOD, one ``EXT-X-KEY`` (AES-128, absolute key URI on the key service, zero IV)
and relative ``.ts`` segment names. Fetching one rendition means:

1. read the playlist (from a mirror of the file's URLs);
2. get the AES key by the platform's handshake (§4.5): ``GET K/signs`` → nonce;
   ``sign`` = first 16 hex of MD5(nonce + keyId); ``GET K?nonce&sign`` → base64 of the key
   wrapped with AES-128-ECB under the 16 ASCII bytes of ``sign`` (PKCS#7);
3. fetch every segment, decrypt it (AES-128-CBC, PKCS#7), check it is MPEG-TS, and store
   the clear bytes as a blob; each stored segment is recorded (``file_parts``) before the
   next one starts, so after a restart only missing segments are fetched;
4. check the segment count and the summed size against the item's ``requirements``
   (``count``, ``total_size`` within 1 %);
5. store a rewritten playlist: no ``EXT-X-KEY`` and every segment URI ``/content/<sha256>``.
   Its digest stands for the file. Terminals then play from the appliance only: nothing in
   what they receive names the platform or needs a key.

Why store decrypted segments rather than encrypted ones plus the key: a key served on the
LAN would be a copy of the platform's DRM key handed to every browser, and players would
still need a key URI rewrite; clear TS segments are simpler and equally verifiable.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urljoin, urlsplit, urlunsplit

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .base import ErrorKind

TS_PACKET = 188
TS_SYNC = 0x47
SIZE_TOLERANCE = 0.01   # requirements.total_size vs the summed segments (sed-dl uses 1 %)


class HlsError(Exception):
    """The video cannot be stored as it is; ``kind`` says what the fetch engine should do."""

    def __init__(self, message: str, kind: ErrorKind = ErrorKind.CORRUPT):
        super().__init__(message)
        self.kind = kind


# ----------------------------------------------------------------------------- playlist

@dataclass
class Key:
    method: str
    uri: str | None = None
    iv: bytes | None = None


@dataclass
class Segment:
    uri: str            # absolute, resolved against the playlist's URL
    duration: float
    sequence: int       # media sequence number (the default IV)
    key: Key | None
    title: str = ""
    raw: str = ""       # the URI as written (relative names resolve on any mirror)


@dataclass
class MediaPlaylist:
    version: int = 3
    target_duration: int = 10
    media_sequence: int = 0
    playlist_type: str = ""
    segments: list[Segment] = field(default_factory=list)
    ended: bool = False


_ATTRIBUTE = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)')


def parse_attributes(text: str) -> dict[str, str]:
    return {m.group(1): m.group(2).strip('"') for m in _ATTRIBUTE.finditer(text)}


def parse_media_playlist(text: str, base_url: str) -> MediaPlaylist:
    """Parse an HLS media playlist (RFC 8216 subset the platform uses).

    :raises HlsError: not a playlist, a master playlist, or no segments.
    """
    lines = [line.strip() for line in text.replace("\r\n", "\n").split("\n")]
    if not lines or lines[0].lstrip("\ufeff") != "#EXTM3U":
        raise HlsError("not an HLS playlist (no #EXTM3U)")
    playlist = MediaPlaylist()
    key: Key | None = None
    duration: float | None = None
    title = ""
    for line in lines[1:]:
        if not line:
            continue
        if line.startswith("#EXT-X-STREAM-INF"):
            raise HlsError("a master playlist where a media playlist was expected")
        if line.startswith("#EXT-X-VERSION:"):
            playlist.version = int(line.split(":", 1)[1] or 3)
        elif line.startswith("#EXT-X-TARGETDURATION:"):
            playlist.target_duration = int(float(line.split(":", 1)[1]))
        elif line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            playlist.media_sequence = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-PLAYLIST-TYPE:"):
            playlist.playlist_type = line.split(":", 1)[1]
        elif line.startswith("#EXT-X-ENDLIST"):
            playlist.ended = True
        elif line.startswith("#EXT-X-KEY:"):
            attrs = parse_attributes(line.split(":", 1)[1])
            method = attrs.get("METHOD", "NONE")
            if method == "NONE":
                key = None
            elif method != "AES-128":
                raise HlsError(f"unsupported encryption {method}")
            else:
                iv = attrs.get("IV")
                key = Key(method, urljoin(base_url, attrs["URI"]) if attrs.get("URI") else None,
                          bytes.fromhex(iv[2:].zfill(32)) if iv else None)
        elif line.startswith("#EXTINF:"):
            value, _, title = line.split(":", 1)[1].partition(",")
            duration = float(value)
        elif line.startswith("#"):
            continue  # tags we need not keep (EXT-X-DISCONTINUITY is not used by the platform)
        else:
            sequence = playlist.media_sequence + len(playlist.segments)
            playlist.segments.append(Segment(urljoin(base_url, line), duration or 0.0,
                                             sequence, key, title, line))
            duration, title = None, ""
    if not playlist.segments:
        raise HlsError("the playlist lists no segments")
    return playlist


def local_playlist(playlist: MediaPlaylist, digests: list[str]) -> bytes:
    """The playlist terminals get: same timing, no key, segments at ``/content/<sha256>``."""
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{min(playlist.version, 3)}",
             f"#EXT-X-TARGETDURATION:{playlist.target_duration}",
             f"#EXT-X-MEDIA-SEQUENCE:{playlist.media_sequence}",
             "#EXT-X-PLAYLIST-TYPE:VOD"]
    for segment, digest in zip(playlist.segments, digests, strict=True):
        lines.append(f"#EXTINF:{segment.duration:.6f},{segment.title}")
        lines.append(f"/content/{digest}")
    lines.append("#EXT-X-ENDLIST")
    return ("\n".join(lines) + "\n").encode()


# ----------------------------------------------------------------------- key (§4.5)

def key_id(key_uri: str) -> str:
    return urlsplit(key_uri).path.rstrip("/").rsplit("/", 1)[-1]


def handshake_sign(nonce: str, key_identifier: str) -> str:
    return hashlib.md5((nonce + key_identifier).encode()).hexdigest()[:16]


def unwrap_key(wrapped_b64: str, sign: str) -> bytes:
    """AES-128-ECB-decrypt under the 16 ASCII bytes of ``sign``, PKCS#7 unpad → 16 bytes."""
    try:
        wrapped = base64.b64decode(wrapped_b64, validate=True)
        decryptor = Cipher(algorithms.AES(sign.encode()), modes.ECB()).decryptor()
        padded = decryptor.update(wrapped) + decryptor.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        key = unpadder.update(padded) + unpadder.finalize()
    except ValueError as error:
        raise HlsError(f"the key service's answer does not unwrap: {error}") from None
    if len(key) != 16:
        raise HlsError(f"the unwrapped key has {len(key)} bytes, not 16")
    return key


def with_query(url: str, query: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path,
                       f"{parts.query}&{query}" if parts.query else query, ""))


def fetch_key(key_uri: str, get: Callable[[str], bytes]) -> bytes:
    """The handshake, with ``get(url) -> body`` doing the (host-mapped) requests."""
    identifier = key_id(key_uri)
    base = key_uri.split("?", 1)[0].rstrip("/")
    nonce = _json_field(get(base + "/signs"), "nonce")
    sign = handshake_sign(nonce, identifier)
    wrapped = _json_field(get(with_query(base, f"nonce={nonce}&sign={sign}")), "key")
    return unwrap_key(wrapped, sign)


def _json_field(body: bytes, name: str) -> str:
    try:
        value = json.loads(body).get(name)
    except (ValueError, AttributeError):
        value = None
    if not isinstance(value, str) or not value:
        raise HlsError(f"the key service answered without {name!r}", ErrorKind.FAILOVER)
    return value


# ----------------------------------------------------------------------------- segments

def segment_iv(segment: Segment) -> bytes:
    if segment.key and segment.key.iv is not None:
        return segment.key.iv
    return segment.sequence.to_bytes(16, "big")


def decrypt_segment(data: bytes, key: bytes, iv: bytes) -> bytes:
    """AES-128-CBC with PKCS#7 padding (standard HLS). :raises HlsError: bad length/padding."""
    if not data or len(data) % 16:
        raise HlsError(f"an encrypted segment of {len(data)} bytes (not whole AES blocks)")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(data) + decryptor.finalize()
    try:
        unpadder = padding.PKCS7(128).unpadder()
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise HlsError("a segment does not decrypt (wrong key or damaged bytes)") from None


def check_ts(data: bytes) -> None:
    """MPEG-TS: whole 188-byte packets, each starting with the sync byte 0x47."""
    if not data or len(data) % TS_PACKET or any(
            data[i] != TS_SYNC for i in range(0, len(data), TS_PACKET)):
        raise HlsError("a segment is not MPEG-TS after decryption")


def encrypted_size(clear_size: int) -> int:
    """Bytes on the wire for ``clear_size`` bytes under AES-CBC with PKCS#7 (1–16 added)."""
    return (clear_size // 16 + 1) * 16


def check_totals(count: int, wire_bytes: int, expected_count: int | None,
                 expected_total: int | None) -> None:
    """Segment count exact, summed size within 1 % of ``requirements`` (when declared)."""
    if expected_count and count != expected_count:
        raise HlsError(f"{count} segments, the platform declares {expected_count}")
    if expected_total and abs(wire_bytes - expected_total) > expected_total * SIZE_TOLERANCE:
        raise HlsError(f"segments add up to {wire_bytes} bytes, the platform declares "
                       f"{expected_total}")
