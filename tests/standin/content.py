"""Deterministic file bodies: any size, random access, MD5 without reading the file.

The stand-in serves thousands of "textbook PDFs" of realistic sizes (up to hundreds of MB)
whose MD5 must appear in detail JSON. Hashing each one whole would take minutes, so every
virtual file of one kind shares one long prefix stream and differs only in its tail:

    body = (header + AES-CTR keystream)[: size - len(tail)] + tail

The shared stream's MD5 state is kept at 256 KiB checkpoints, so the MD5 of any body costs
at most 256 KiB of hashing, and any byte range is generated on demand (no file on disk, no
body in memory). The keystream is position dependent: a client that resumes at the wrong
offset gets wrong bytes, which its MD5 check must catch. Headers and tails carry real magic
bytes (``%PDF-`` … ``%%EOF``, JPEG SOI/EOI, PNG signature/IEND, ID3) so magic checks work.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

CHECKPOINT = 256 * 1024

HEADERS = {
    "pdf": b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
           b"2 0 obj\n<< /Length 0 >>\nstream\n",
    "jpg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x48\x00\x48\x00\x00\xff\xfe\x00\x10"
           b"shuqiao-standin\x00",
    "png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00\x00\x00\x01\x00\x08\x02\x00\x00"
           b"\x00\xd3\x10\x3f\x31",
    "mp3": b"ID3\x04\x00\x00\x00\x00\x00\x00\xff\xfb\x90\x64",
    "wav": b"RIFF\x00\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x02\x00\x44\xac\x00\x00"
           b"\x10\xb1\x02\x00\x04\x00\x10\x00data",
}

CONTENT_TYPES = {
    "pdf": "application/pdf", "jpg": "image/jpeg", "png": "image/png", "mp3": "audio/mpeg",
    "wav": "audio/wav", "txt": "text/plain", "json": "application/json",
    "m3u8": "application/vnd.apple.mpegurl", "ts": "video/mp2t",
    "superboard": "application/octet-stream",
}


def tail_for(kind: str, key: str) -> bytes:
    marker = key.encode("utf-8")
    if kind == "pdf":
        return b"\nendstream\nendobj\n% standin " + marker + b"\nstartxref\n0\n%%EOF\n"
    if kind == "jpg":
        return b"standin " + marker + b"\xff\xd9"
    if kind == "png":
        return b"standin " + marker + b"\x00\x00\x00\x00IEND\xaeB`\x82"
    return b"standin " + marker + b"\n"


class Stream:
    """header + AES-CTR keystream, with MD5 checkpoints of its prefixes."""

    def __init__(self, seed: int, kind: str):
        self.header = HEADERS[kind]
        self._key = hashlib.sha256(f"stream:{seed}:{kind}".encode()).digest()[:16]
        self._states = [hashlib.md5()]  # _states[k] = md5 of the first k*CHECKPOINT bytes
        self._lock = threading.Lock()

    def read(self, offset: int, n: int) -> bytes:
        if n <= 0:
            return b""
        out = bytearray()
        header = self.header
        if offset < len(header):
            out += header[offset:offset + n]
            n -= len(out)
            offset += len(out)
            if n <= 0:
                return bytes(out)
        position = offset - len(header)           # offset inside the keystream
        block, skip = divmod(position, 16)
        cipher = Cipher(algorithms.AES(self._key), modes.CTR(block.to_bytes(16, "big")))
        stream = cipher.encryptor().update(bytes(skip + n))
        out += stream[skip:]
        return bytes(out)

    def md5_of_prefix(self, length: int):
        """An md5 object holding the hash of the first ``length`` bytes."""
        index = length // CHECKPOINT
        with self._lock:
            while len(self._states) <= index:
                k = len(self._states) - 1
                state = self._states[k].copy()
                state.update(self.read(k * CHECKPOINT, CHECKPOINT))
                self._states.append(state)
            state = self._states[index].copy()
        state.update(self.read(index * CHECKPOINT, length - index * CHECKPOINT))
        return state


class Body:
    """What a file is made of: a size, random access to bytes, an MD5."""

    size: int

    def read(self, offset: int, n: int) -> bytes:  # pragma: no cover - interface
        raise NotImplementedError

    def md5(self) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def all_bytes(self) -> bytes:
        return self.read(0, self.size)


class LiteralBody(Body):
    def __init__(self, data: bytes):
        self.data = data
        self.size = len(data)
        self._md5 = None

    def read(self, offset: int, n: int) -> bytes:
        return self.data[offset:offset + n]

    def md5(self) -> str:
        if self._md5 is None:
            self._md5 = hashlib.md5(self.data).hexdigest()
        return self._md5


class VirtualBody(Body):
    def __init__(self, stream: Stream, size: int, tail: bytes):
        size = max(size, len(stream.header) + len(tail))
        self.stream, self.size, self.tail = stream, size, tail
        self._split = size - len(tail)
        self._md5 = None

    def read(self, offset: int, n: int) -> bytes:
        end = min(self.size, offset + n)
        if offset >= end:
            return b""
        parts = []
        if offset < self._split:
            parts.append(self.stream.read(offset, min(end, self._split) - offset))
        if end > self._split:
            parts.append(self.tail[max(0, offset - self._split):end - self._split])
        return b"".join(parts)

    def md5(self) -> str:
        if self._md5 is None:
            state = self.stream.md5_of_prefix(self._split)
            state.update(self.tail)
            self._md5 = state.hexdigest()
        return self._md5


class Streams:
    """One Stream per kind, per seed."""

    def __init__(self, seed: int):
        self.seed = seed
        self._streams: dict[str, Stream] = {}
        self._lock = threading.Lock()

    def body(self, kind: str, size: int, key: str) -> VirtualBody:
        with self._lock:
            stream = self._streams.get(kind)
            if stream is None:
                stream = self._streams[kind] = Stream(self.seed, kind)
        return VirtualBody(stream, size, tail_for(kind, key))


def public_image(streams: Streams, small: bool, path: str) -> FileEntry:
    """A page image, thumbnail or cover on the public bucket. Any such path is served
    (bytes and size follow from the path), as the platform's image hosts serve every
    page of every book."""
    digest = hashlib.md5(f"{streams.seed}:{path}".encode()).digest()
    kind = "png" if path.endswith(".png") else "jpg"
    spread = int.from_bytes(digest[:4], "big")
    size = 4_000 + spread % 12_000 if small else 300_000 + spread % 500_000
    return FileEntry(path, streams.body(kind, size, path), kind, public=True,
                     last_modified=1_735_689_600)


@dataclass
class FileEntry:
    """One object on the buckets, as the stand-in serves it."""

    path: str                 # decoded path, no host: /edu_product/esp/…
    body: Body
    kind: str                 # pdf, jpg, png, mp3, wav, txt, json, m3u8, ts, superboard
    strict: bool = False      # placeholder MAC / Bearer / raw token => 400 InvalidArgument
    public: bool = False      # also served without auth on the public r*-ndr hosts
    last_modified: float = 0  # epoch seconds
    owner: str = ""           # resource id the file belongs to
    extra: dict = field(default_factory=dict)

    @property
    def size(self) -> int:
        return self.body.size

    @property
    def md5(self) -> str:
        return self.body.md5()

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES.get(self.kind, "application/octet-stream")

    @property
    def etag(self) -> str:
        return f'"{self.md5}"'
