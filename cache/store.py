"""The content-addressed blob store: ``blobs/sha256/ab/<64 hex>``.

A blob's name is the SHA-256 of its bytes, so a name can be checked against its content
at any time and identical files are stored once. Bytes come in through :meth:`BlobStore.writer`
(or :meth:`BlobStore.put_file`), which hashes them while writing to a temporary file in the
same file system, fsyncs, and only then renames into place: a crash at any moment leaves
either no blob or a complete, verified one, never a torn file under a valid name.

Nothing from a request ever becomes a path here: callers pass a digest, which
:func:`validate_digest` checks is exactly 64 lower-case hex characters first.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator

_DIGEST = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 1024 * 1024


class BlobError(Exception):
    """A blob could not be stored: the bytes did not match what was declared."""


def validate_digest(digest: str) -> str:
    """Return ``digest`` if it is a SHA-256 hex digest (lower case), else raise ValueError."""
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise ValueError("not a SHA-256 hex digest")
    return digest


def fsync_directory(path: Path, removable: bool = False) -> None:
    """Make a rename in ``path`` durable (POSIX needs the directory itself fsynced).

    :param removable: a USB drive: some file systems (FAT through some drivers) refuse a
        directory fsync; then the rename's durability is the drive's business.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        if not removable:
            raise


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o644,
                       removable: bool = False) -> None:
    """Write a small file atomically: temp file in the same directory, fsync, rename.

    :param removable: a USB drive, where FAT refuses chmod and may refuse a directory fsync.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.chmod(tmp, mode)
        except OSError:
            if not removable:
                raise
        os.replace(tmp, path)
        fsync_directory(path.parent, removable)
    except BaseException:
        _unlink_quietly(Path(tmp))
        raise


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


class BlobWriter:
    """Receives the bytes of one blob; :meth:`commit` verifies and publishes it.

    Use as a context manager: leaving the block without ``commit()`` (an exception, a
    cancelled download) removes the temporary file.
    """

    def __init__(self, store: "BlobStore", expected_sha256: str | None, expected_size: int | None,
                 max_bytes: int | None = None):
        self._store = store
        self._max_bytes = max_bytes
        self._expected_sha256 = expected_sha256
        self._expected_size = expected_size
        self._hash = hashlib.sha256()
        self._md5 = hashlib.md5()
        self.size = 0
        fd, name = tempfile.mkstemp(dir=store.tmp_dir, suffix=".part")
        self._tmp = Path(name)
        self._file = os.fdopen(fd, "wb")
        self.sha256: str | None = None

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self._hash.update(data)
        self._md5.update(data)
        self.size += len(data)
        if self._expected_size is not None and self.size > self._expected_size:
            raise BlobError(f"more bytes than the declared {self._expected_size}")
        if self._max_bytes is not None and self.size > self._max_bytes:
            raise BlobError(f"more than the allowed {self._max_bytes} bytes")

    @property
    def md5(self) -> str:
        return self._md5.hexdigest()

    def commit(self) -> str:
        """fsync, verify size and hash, rename into place; returns the SHA-256."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        digest = self._hash.hexdigest()
        if self._expected_size is not None and self.size != self._expected_size:
            raise BlobError(f"got {self.size} bytes, expected {self._expected_size}")
        if self._expected_sha256 is not None and digest != self._expected_sha256:
            raise BlobError(f"SHA-256 is {digest}, expected {self._expected_sha256}")
        final = self._store.path(digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self._tmp, 0o644)
        os.replace(self._tmp, final)
        fsync_directory(final.parent)
        self.sha256 = digest
        return digest

    def __enter__(self) -> "BlobWriter":
        return self

    def __exit__(self, *exc) -> None:
        if not self._file.closed:
            self._file.close()
        if self.sha256 is None:
            _unlink_quietly(self._tmp)


class BlobStore:
    """Blobs under ``root/sha256/ab/<digest>``; temporary files under ``root/tmp``."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.tmp_dir = self.root / "tmp"  # created on first write: reading creates nothing

    def path(self, digest: str) -> Path:
        validate_digest(digest)
        return self.root / "sha256" / digest[:2] / digest

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def open(self, digest: str) -> BinaryIO:
        """Open a blob for reading; raises FileNotFoundError if absent."""
        return open(self.path(digest), "rb")

    def size(self, digest: str) -> int:
        return self.path(digest).stat().st_size

    def writer(self, expected_sha256: str | None = None, expected_size: int | None = None,
               max_bytes: int | None = None) -> BlobWriter:
        if expected_sha256 is not None:
            validate_digest(expected_sha256)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        return BlobWriter(self, expected_sha256, expected_size, max_bytes)

    def put_stream(self, stream: BinaryIO, expected_sha256: str | None = None,
                   expected_size: int | None = None) -> str:
        """Copy a readable stream into the store, verified; returns its SHA-256."""
        with self.writer(expected_sha256, expected_size) as writer:
            while chunk := stream.read(CHUNK):
                writer.write(chunk)
            return writer.commit()

    def put_file(self, path: Path, expected_sha256: str | None = None) -> str:
        with open(path, "rb") as f:
            return self.put_stream(f, expected_sha256, os.fstat(f.fileno()).st_size)

    def verify(self, digest: str) -> bool:
        """Re-hash a stored blob; True when its bytes still match its name."""
        h = hashlib.sha256()
        with self.open(digest) as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
        return h.hexdigest() == digest

    def digests(self) -> Iterator[str]:
        base = self.root / "sha256"
        if not base.is_dir():
            return
        for sub in sorted(base.iterdir()):
            for entry in sorted(sub.iterdir()):
                if _DIGEST.match(entry.name):
                    yield entry.name

    def clean_temporary(self) -> int:
        """Remove partial files left by a crash; returns how many were removed."""
        removed = 0
        if not self.tmp_dir.is_dir():
            return 0
        for entry in self.tmp_dir.glob("*.part"):
            _unlink_quietly(entry)
            removed += 1
        return removed
