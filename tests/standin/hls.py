"""Encrypted HLS as the platform serves it (§4.4, §4.5), and the key service's handshake.

Plaintext segments are real MPEG-TS. When Debian's ffmpeg is present, a short H.264 (Main)
+ AAC (stereo, 44.1 kHz, 25 fps) clip of one segment's length is encoded once (160x90 test
pattern and a tone, a fraction of a second) and cached in the temp dir; segment *i* is that
clip with every PTS/DTS/PCR moved forward by *i* segment durations and its continuity
counters continued, so the concatenated segments are one continuous, playable stream. Each
segment is then padded with null packets (PID 0x1FFF, ignored by decoders) to its planned
size, so sizes (and ``requirements.total_size``) do not depend on the ffmpeg version.
Without ffmpeg the clip is a synthetic PAT/PMT plus null packets (valid TS, plays nothing).

Segments are AES-128-CBC with PKCS#7 padding and a zero IV, the key fetched through
``https://ndvideo-key.ykt.eduyun.cn/v1/resource_keys/{keyId}``:
``GET …/signs`` → ``{"nonce"}``; sign = md5(nonce + keyId)[:16];
``GET …?nonce=&sign=`` → ``{"key": base64(AES-128-ECB(PKCS7(raw key), key=sign))}``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .content import Body

PACKET = 188
KEY_HOST = "ndvideo-key.ykt.eduyun.cn"
NULL_PACKET = b"\x47\x1f\xff\x10" + b"\xff" * 184
CLIP_VERSION = 2  # bump when the ffmpeg command changes (cache key)


# ----------------------------------------------------------------------- key handshake

def sign_for(nonce: str, key_id: str) -> str:
    return hashlib.md5((nonce + key_id).encode("utf-8")).hexdigest()[:16]


def wrap_key(raw_key: bytes, sign: str) -> str:
    padder = padding.PKCS7(128).padder()
    data = padder.update(raw_key) + padder.finalize()
    encryptor = Cipher(algorithms.AES(sign.encode("ascii")), modes.ECB()).encryptor()
    return base64.b64encode(encryptor.update(data) + encryptor.finalize()).decode("ascii")


def unwrap_key(wrapped: str, sign: str) -> bytes:
    decryptor = Cipher(algorithms.AES(sign.encode("ascii")), modes.ECB()).decryptor()
    data = decryptor.update(base64.b64decode(wrapped)) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return unpadder.update(data) + unpadder.finalize()


def encrypt_segment(plain: bytes, key: bytes) -> bytes:
    padder = padding.PKCS7(128).padder()
    data = padder.update(plain) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(bytes(16))).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def decrypt_segment(data: bytes, key: bytes) -> bytes:
    decryptor = Cipher(algorithms.AES(key), modes.CBC(bytes(16))).decryptor()
    plain = decryptor.update(data) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return unpadder.update(plain) + unpadder.finalize()


def encrypted_size(plain_size: int) -> int:
    return (plain_size // 16 + 1) * 16


class KeyService:
    """Raw keys by key id, and the nonces handed out by ``/signs``."""

    def __init__(self, resolver=None):
        self._keys: dict[str, bytes] = {}
        self._resolver = resolver          # key_id -> raw key or None, for lazily made keys
        self._nonces: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def add(self, key_id: str, raw_key: bytes) -> None:
        self._keys[key_id] = raw_key

    def raw_key(self, key_id: str) -> bytes | None:
        raw = self._keys.get(key_id)
        if raw is None and self._resolver is not None:
            raw = self._resolver(key_id)
        return raw

    def issue_nonce(self, key_id: str, nonce: str | None = None) -> str:
        nonce = nonce or secrets.token_hex(3)
        with self._lock:
            issued = self._nonces.setdefault(key_id, set())
            issued.add(nonce)
            if len(issued) > 256:
                issued.pop()
        return nonce

    def answer(self, key_id: str, nonce: str, sign: str) -> tuple[int, dict]:
        """(status, JSON) for ``GET /v1/resource_keys/{key_id}?nonce=&sign=``."""
        raw = self.raw_key(key_id)
        if raw is None:
            return 404, {"code": "KEY/NOT_FOUND", "message": "resource key not found"}
        with self._lock:
            issued = nonce in self._nonces.get(key_id, ())
        if not issued or sign != sign_for(nonce, key_id):
            return 403, {"code": "KEY/SIGN_INVALID", "message": "invalid nonce or sign"}
        return 200, {"key": wrap_key(raw, sign)}


# -------------------------------------------------------------------------- TS content

def _crc32_mpeg(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else (crc << 1)
            crc &= 0xFFFFFFFF
    return crc


def _psi_packet(pid: int, table: bytes) -> bytes:
    section = table + _crc32_mpeg(table).to_bytes(4, "big")
    payload = b"\x00" + section
    header = bytes([0x47, 0x40 | (pid >> 8), pid & 0xFF, 0x10])
    return header + payload + b"\xff" * (PACKET - 4 - len(payload))


@lru_cache(maxsize=1)
def synthetic_clip() -> bytes:
    """PAT + PMT (one H.264 stream on PID 0x100) + null packets: valid TS, no media."""
    pat = bytes([0x00, 0xB0, 0x0D, 0x00, 0x01, 0xC1, 0x00, 0x00, 0x00, 0x01, 0xF0, 0x00])
    pmt = bytes([0x02, 0xB0, 0x12, 0x00, 0x01, 0xC1, 0x00, 0x00, 0xE1, 0x00, 0xF0, 0x00,
                 0x1B, 0xE1, 0x00, 0xF0, 0x00])
    return _psi_packet(0x0000, pat) + _psi_packet(0x1000, pmt) + NULL_PACKET * 8


_clip_lock = threading.Lock()


def playable_clip(seconds: int) -> bytes | None:
    """A real H.264/AAC MPEG-TS clip of ``seconds``, cached in the temp dir; None without
    ffmpeg (or when it fails)."""
    ffmpeg = shutil.which("ffmpeg")
    if not ffmpeg:
        return None
    cache = Path(tempfile.gettempdir()) / "shuqiao-standin"
    target = cache / f"clip-v{CLIP_VERSION}-{seconds}s.ts"
    with _clip_lock:
        if target.is_file() and target.stat().st_size > 0:
            return target.read_bytes()
        cache.mkdir(parents=True, exist_ok=True)
        partial = cache / f".clip-{os.getpid()}-{threading.get_ident()}.ts"
        command = [ffmpeg, "-nostdin", "-v", "error", "-y",
                   "-f", "lavfi", "-i", "testsrc=size=160x90:rate=25",
                   "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
                   "-t", str(seconds), "-map", "0:v", "-map", "1:a",
                   "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "main",
                   "-pix_fmt", "yuv420p", "-b:v", "40k", "-g", str(25 * seconds),
                   "-af", f"atrim=end_sample={(seconds * 44100 // 1024 - 1) * 1024}",
                   "-c:a", "aac", "-b:a", "32k", "-ac", "2",
                   "-f", "mpegts", str(partial)]
        try:
            subprocess.run(command, check=True, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
            os.replace(partial, target)
        except (OSError, subprocess.SubprocessError):
            partial.unlink(missing_ok=True)
            return None
        return target.read_bytes()


def _read_ts_time(b: bytes | bytearray, i: int) -> int:
    return (((b[i] >> 1) & 7) << 30) | (b[i + 1] << 22) | ((b[i + 2] >> 1) << 15) \
        | (b[i + 3] << 7) | (b[i + 4] >> 1)


def _write_ts_time(b: bytearray, i: int, value: int) -> None:
    value &= (1 << 33) - 1
    b[i] = (b[i] & 0xF0) | ((value >> 29) & 0x0E) | 1
    b[i + 1] = (value >> 22) & 0xFF
    b[i + 2] = ((value >> 14) & 0xFE) | 1
    b[i + 3] = (value >> 7) & 0xFF
    b[i + 4] = ((value << 1) & 0xFE) | 1


def shift_clip(clip: bytes, index: int, seconds: int) -> bytes:
    """Segment ``index``: the clip moved ``index * seconds`` later, counters continued."""
    if index == 0:
        return clip
    out = bytearray(clip)
    delta = index * seconds * 90000
    per_pid: dict[int, int] = {}
    for start in range(0, len(out) - PACKET + 1, PACKET):
        if out[start] != 0x47:
            continue
        pid = ((out[start + 1] & 0x1F) << 8) | out[start + 2]
        if pid != 0x1FFF and out[start + 3] & 0x10:
            per_pid[pid] = per_pid.get(pid, 0) + 1
    for start in range(0, len(out) - PACKET + 1, PACKET):
        if out[start] != 0x47:
            continue
        pid = ((out[start + 1] & 0x1F) << 8) | out[start + 2]
        if pid == 0x1FFF:
            continue
        control = out[start + 3]
        continuity = ((control & 0x0F) + index * per_pid.get(pid, 0)) & 0x0F
        out[start + 3] = (control & 0xF0) | continuity
        payload = start + 4
        if control & 0x20:                                  # adaptation field
            length = out[start + 4]
            if length and out[start + 5] & 0x10:              # PCR present
                i = start + 6
                base = (out[i] << 25) | (out[i + 1] << 17) | (out[i + 2] << 9) \
                    | (out[i + 3] << 1) | (out[i + 4] >> 7)
                base = (base + delta) & ((1 << 33) - 1)
                out[i] = (base >> 25) & 0xFF
                out[i + 1] = (base >> 17) & 0xFF
                out[i + 2] = (base >> 9) & 0xFF
                out[i + 3] = (base >> 1) & 0xFF
                out[i + 4] = ((base & 1) << 7) | (out[i + 4] & 0x7F)
            payload = start + 5 + length
        if not (out[start + 1] & 0x40) or payload + 14 > start + PACKET:
            continue                                         # no PES header starts here
        if out[payload:payload + 3] != b"\x00\x00\x01" or out[payload + 3] < 0xC0:
            continue
        flags = out[payload + 7] >> 6
        if flags & 2:
            i = payload + 9
            _write_ts_time(out, i, _read_ts_time(out, i) + delta)
            if flags == 3 and payload + 19 <= start + PACKET:
                _write_ts_time(out, i + 5, _read_ts_time(out, i + 5) + delta)
    return bytes(out)


class Clip:
    """The plaintext source for one mode (segment length): real if ffmpeg works."""

    def __init__(self, seconds: int):
        self.seconds = seconds
        self._lock = threading.Lock()
        self._data: bytes | None = None
        self._segments: dict[int, bytes] = {}
        self.playable = False

    def data(self) -> bytes:
        with self._lock:
            if self._data is None:
                real = playable_clip(self.seconds)
                self.playable = real is not None
                self._data = real if real is not None else synthetic_clip()
            return self._data

    def segment(self, index: int) -> bytes:
        """Plaintext media of segment ``index`` (before padding)."""
        cached = self._segments.get(index)
        if cached is None:
            cached = shift_clip(self.data(), index, self.seconds)
            if len(self._segments) >= 128:
                self._segments.pop(next(iter(self._segments)))
            self._segments[index] = cached
        return cached


# Encrypted segments recently served (a 1080p segment is under 1 MB): ranged re-reads and
# mirrors hitting the same segment do not re-encrypt, and memory stays bounded.
SEGMENT_CACHE_ENTRIES = 48
_segment_cache: OrderedDict[tuple, bytes] = OrderedDict()
_segment_lock = threading.Lock()


class SegmentBody(Body):
    """One encrypted segment: the shifted clip padded to ``plain_size`` with null packets,
    then AES-128-CBC, made on demand (see the cache above)."""

    def __init__(self, clip: Clip, index: int, plain_size: int, key: bytes):
        self.clip, self.index, self.plain_size, self.key = clip, index, plain_size, key
        self.size = encrypted_size(plain_size)

    def plaintext(self) -> bytes:
        content = self.clip.segment(self.index)
        if len(content) > self.plain_size:                   # never expected: keep sizes
            content = synthetic_clip()
        return content + NULL_PACKET * ((self.plain_size - len(content)) // PACKET)

    def data(self) -> bytes:
        cache_key = (self.clip.seconds, self.index, self.plain_size, self.key)
        with _segment_lock:
            data = _segment_cache.get(cache_key)
            if data is not None:
                _segment_cache.move_to_end(cache_key)
                return data
        data = encrypt_segment(self.plaintext(), self.key)
        with _segment_lock:
            _segment_cache[cache_key] = data
            while len(_segment_cache) > SEGMENT_CACHE_ENTRIES:
                _segment_cache.popitem(last=False)
        return data

    def read(self, offset: int, n: int) -> bytes:
        return self.data()[offset:offset + n]

    def md5(self) -> str:
        return hashlib.md5(self.data()).hexdigest()


def media_playlist(stem: str, key_id: str, durations: list[float]) -> bytes:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:10",
             "#EXT-X-MEDIA-SEQUENCE:0", "#EXT-X-PLAYLIST-TYPE:VOD",
             (f'#EXT-X-KEY:METHOD=AES-128,URI="https://{KEY_HOST}/v1/resource_keys/{key_id}",'
              f"IV=0x{'0' * 32}")]
    for index, duration in enumerate(durations):
        lines.append(f"#EXTINF:{duration:.6f},")
        lines.append(f"{stem}-{index:05d}.ts")
    lines.append("#EXT-X-ENDLIST")
    return ("\n".join(lines) + "\n").encode("ascii")
