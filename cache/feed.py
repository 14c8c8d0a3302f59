"""The pack feed format: a signed manifest plus content-addressed blobs.

A feed is a directory any static web server, CDN, S3-compatible store or USB drive can
hold as plain files (plain GET, Range and ETag are all a reader needs)::

    manifest.json           what the feed holds (catalogue entries, blob list)
    manifest.json.sig       a detached Ed25519 signature over the exact manifest bytes
    blobs/sha256/ab/<hash>  every blob, named by the SHA-256 of its bytes
    README.txt              (export only) a note for whoever opens the drive

Trust: a reader verifies ``manifest.json.sig`` against the keys in the ``feed_trusted_keys``
setting *before* it parses the manifest, and every blob is then checked against the size
and SHA-256 the signed manifest declares, so one trusted signature covers every byte.
Blob addresses come only from validated digests, never from a path in the manifest.

This module is the format: the manifest model and its validation, the canonical bytes,
signing keys and signatures. :mod:`cache.pack` moves feeds in and out of the blob store.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .catalog import resource_id_for
from .db import RESOURCE_KINDS

FORMAT = "shuqiao-feed"
VERSION = 1  # the newest manifest version this code understands
SIGNATURE_FORMAT = "shuqiao-feed-signature"
MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.json.sig"
# A whole national catalogue (≈6,400 books and packages with their parts) is a few tens
# of MB of JSON; anything far larger is a mistake or an attack on the reader's memory.
MAX_MANIFEST_BYTES = 128 * 1024 * 1024
MAX_SIGNATURE_BYTES = 4096
SIGNING_KEY_FILE = "feed-signing-key.pem"

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_MIME = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")
_TEXT_FIELDS = ("description", "stage", "grade", "subject", "edition", "volume", "lesson",
                "upstream_updated")
_MAX_TEXT = 20_000


class FeedError(Exception):
    """A feed cannot be used. ``str()`` is the message for people: Chinese, then English.

    ``reason`` is a stable code for programs and tests (``unsigned``, ``bad_signature``,
    ``unknown_key``, ``too_large``, ``newer_format``, ``bad_manifest``, ``blob_mismatch``,
    ``missing_blob``, ``unlisted_blob``, ``unavailable``, ``no_space``…).
    """

    def __init__(self, reason: str, zh: str, en: str):
        self.reason, self.zh, self.en = reason, zh, en
        super().__init__(f"{zh} / {en}")


class FeedRefused(FeedError):
    """The feed is not acceptable (trust or integrity): nothing from it is kept."""


class FeedUnavailable(FeedError):
    """The feed could not be read just now (network, drive); progress is kept for a retry."""


# ------------------------------------------------------------------------- keys

def fingerprint(public_bytes: bytes) -> str:
    """A short, stable name for a public key, shown to admins next to key names."""
    return "sha256:" + hashlib.sha256(public_bytes).hexdigest()[:16]


def public_key_text(public_bytes: bytes) -> str:
    """The form an admin copies into another appliance's ``feed_trusted_keys``."""
    return base64.b64encode(public_bytes).decode("ascii")


def parse_public_key(text: str) -> bytes:
    """32 raw bytes from base64 (as :func:`public_key_text` prints) or 64 hex characters;
    an ``ed25519:`` prefix is allowed. Raises ValueError."""
    if not isinstance(text, str):
        raise ValueError("expected text")
    value = text.strip()
    if value.lower().startswith("ed25519:"):
        value = value[len("ed25519:"):].strip()
    if re.fullmatch(r"[0-9a-fA-F]{64}", value):
        raw = bytes.fromhex(value)
    else:
        try:
            raw = base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("not base64 or hex") from None
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, this is {len(raw)}")
    return raw


@dataclass(frozen=True)
class TrustedKey:
    name: str
    public_bytes: bytes

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_bytes)


def trusted_keys(setting: Mapping[str, str], own: bytes | None = None) -> dict[str, TrustedKey]:
    """The ``feed_trusted_keys`` setting (name → key) as a map fingerprint → key.

    ``own``: this appliance's public key, trusted as "this appliance" so that a pack it
    exported itself (a backup on USB) imports back. Every bad entry is reported at once.
    """
    keys: dict[str, TrustedKey] = {}
    problems = []
    for name, text in (setting or {}).items():
        try:
            key = TrustedKey(str(name), parse_public_key(text))
        except ValueError as error:
            problems.append(f"{name}: {error}")
            continue
        keys[key.fingerprint] = key
    if problems:
        raise FeedError("bad_setting",
                        "设置 feed_trusted_keys 中有无效的公钥：" + "；".join(problems),
                        "feed_trusted_keys holds invalid public keys: " + "; ".join(problems))
    if own is not None:
        keys.setdefault(fingerprint(own), TrustedKey("本机 this appliance", own))
    return keys


def load_signing_key(home: Path, create: bool = True) -> Ed25519PrivateKey:
    """This appliance's feed signing key, generated on first need (mode 0600).

    Two processes may ask at once (serve and a CLI export): the new key is written to a
    temporary file and *linked* into place, which fails if another process won the race,
    and then everyone uses the winner's key.
    """
    path = Path(home) / SIGNING_KEY_FILE
    if not path.is_file():
        if not create:
            raise FileNotFoundError(path)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
        finally:
            tmp.unlink(missing_ok=True)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise FeedError("bad_key", f"{path} 不是 Ed25519 私钥",
                        f"{path} is not an Ed25519 private key")
    return key


def public_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


# ------------------------------------------------------------------- signatures

def canonical_bytes(manifest: Mapping[str, Any]) -> bytes:
    """The manifest as written: sorted keys, no spaces, UTF-8, one trailing newline.

    Readers verify the bytes they received and never re-serialise, so canonical form is
    not needed for security; it makes the same content give the same bytes (and ETag).
    """
    return json.dumps(manifest, ensure_ascii=False, sort_keys=True,
                      separators=(",", ":")).encode("utf-8") + b"\n"


def sign(key: Ed25519PrivateKey, manifest_bytes: bytes) -> bytes:
    """The content of ``manifest.json.sig`` for these exact manifest bytes."""
    document = {
        "format": SIGNATURE_FORMAT, "version": 1, "algorithm": "ed25519",
        "public_key": public_key_text(public_bytes(key)),
        "signature": base64.b64encode(key.sign(manifest_bytes)).decode("ascii"),
    }
    return canonical_bytes(document)


def verify(manifest_bytes: bytes | None, signature_bytes: bytes | None,
           trusted: Mapping[str, TrustedKey]) -> TrustedKey:
    """Check the detached signature; returns the trusted key that signed, else refuses."""
    if manifest_bytes is None:
        raise FeedRefused("no_manifest", "找不到 manifest.json：这不是资源包，或导出没有完成",
                          "no manifest.json: not a feed, or an export that did not finish")
    if signature_bytes is None:
        raise FeedRefused("unsigned", "资源包没有签名（缺少 manifest.json.sig），拒绝导入",
                          "the feed is unsigned (no manifest.json.sig); refused")
    try:
        document = json.loads(signature_bytes)
        if document.get("format") != SIGNATURE_FORMAT or document.get("algorithm") != "ed25519":
            raise ValueError("unknown signature format")
        signer = parse_public_key(document["public_key"])
        signature = base64.b64decode(document["signature"], validate=True)
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        raise FeedRefused("bad_signature", "签名文件无法读取，拒绝导入",
                          "the signature file cannot be read; refused") from None
    key = trusted.get(fingerprint(signer))
    if key is None:
        raise FeedRefused(
            "unknown_key",
            f"资源包由未受信任的密钥签名（{fingerprint(signer)}）。如果信任它，请把它的公钥加入 "
            "feed_trusted_keys 设置",
            f"the feed is signed by a key that is not trusted ({fingerprint(signer)}); add its "
            "public key to the feed_trusted_keys setting if you trust it")
    try:
        Ed25519PublicKey.from_public_bytes(key.public_bytes).verify(signature, manifest_bytes)
    except InvalidSignature:
        raise FeedRefused("bad_signature",
                          f"签名与清单不符：资源包已被改动（签名者 {key.name}），拒绝导入",
                          f"the signature does not match the manifest: the feed was altered "
                          f"(signer {key.name}); refused") from None
    return key


# ---------------------------------------------------------------------- manifest

def blob_path(digest: str) -> str:
    """Where a blob lives inside a feed, relative to its root (digest validated)."""
    if not isinstance(digest, str) or not _HEX64.match(digest):
        raise ValueError("not a SHA-256 hex digest")
    return f"blobs/sha256/{digest[:2]}/{digest}"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Manifest:
    """A validated manifest. ``resources`` are dicts in the shape
    :func:`cache.pack.build_manifest` writes, parents before their parts; ``blobs`` maps
    digest → size."""

    name: str
    created: str
    resources: list[dict]
    blobs: dict[str, int]
    version: int = VERSION
    by_id: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_id = {r["id"]: r for r in self.resources}

    def select(self, ids: Iterable[str]) -> "Manifest":
        """The part of the feed for these resource ids: a package brings its parts, a part
        brings its package's entry (so it has a parent to hang from). Unknown ids refuse."""
        wanted = set(ids)
        unknown = sorted(wanted - set(self.by_id))
        if unknown:
            raise FeedError("not_in_feed", "资源包里没有这些资源：" + ", ".join(unknown),
                            "the feed does not hold these resources: " + ", ".join(unknown))
        keep = set(wanted)
        for rid in wanted:
            parent = self.by_id[rid]["parent"]
            if parent:
                keep.add(parent)
        keep |= {r["id"] for r in self.resources if r["parent"] in wanted}
        resources = [r for r in self.resources if r["id"] in keep]
        digests = {f["sha256"] for r in resources for f in r["files"] if f.get("sha256")}
        digests |= {p["sha256"] for r in resources for f in r["files"] for p in f.get("parts", ())}
        return Manifest(self.name, self.created, resources,
                        {d: s for d, s in self.blobs.items() if d in digests}, self.version)

    @property
    def total_bytes(self) -> int:
        return sum(self.blobs.values())


def _refuse(where: str, problem: str) -> FeedRefused:
    return FeedRefused("bad_manifest", f"清单无效：{where} {problem}",
                       f"invalid manifest: {where} {problem}")


def _text(value: Any, where: str, *, required: bool = False, limit: int = _MAX_TEXT) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or len(value) > limit or (required and not value.strip()):
        raise _refuse(where, "must be text" + (" (not empty)" if required else "")
                      + f" of at most {limit} characters")
    return value


def _int(value: Any, where: str, *, nullable: bool = False) -> int | None:
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value > 2**53:
        raise _refuse(where, "must be a whole number ≥ 0")
    return value


def _text_list(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > 1000:
        raise _refuse(where, "must be a list")
    return [_text(v, f"{where}[{i}]", limit=2000) for i, v in enumerate(value)]


def _object(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _refuse(where, "must be an object")
    return value


def _file(entry: Any, where: str, blobs: dict[str, int]) -> dict:
    if not isinstance(entry, dict):
        raise _refuse(where, "must be an object")
    file = {
        "role": _text(entry.get("role"), where + ".role", required=True, limit=100),
        "name": _text(entry.get("name"), where + ".name", limit=500),
        "mime": _text(entry.get("mime"), where + ".mime", required=True, limit=200),
        "size": _int(entry.get("size"), where + ".size", nullable=True),
        "urls": _text_list(entry.get("urls"), where + ".urls"),
        "extra": _object(entry.get("extra"), where + ".extra"),
    }
    if not _MIME.match(file["mime"]):
        raise _refuse(where + ".mime", "is not a MIME type")
    for url in file["urls"]:
        if not url.startswith(("http://", "https://")):
            raise _refuse(where + ".urls", "must hold http(s) URLs only")
    md5 = entry.get("md5")
    if md5 is not None:
        if not isinstance(md5, str) or not _HEX32.match(md5):
            raise _refuse(where + ".md5", "is not 32 lower-case hex characters")
        file["md5"] = md5
    digest = entry.get("sha256")
    if digest is not None:
        if not isinstance(digest, str) or not _HEX64.match(digest):
            raise _refuse(where + ".sha256", "is not 64 lower-case hex characters")
        if digest not in blobs:
            raise _refuse(where + ".sha256", "names a blob the manifest does not list")
        if file["size"] != blobs[digest]:
            raise _refuse(where + ".size", "differs from the listed blob's size")
        file["sha256"] = digest
    parts = entry.get("parts")
    if parts is not None:
        if digest is None or not isinstance(parts, list) or len(parts) > 100_000:
            raise _refuse(where + ".parts", "must be a list, on a file that has a sha256")
        file["parts"] = [_part(p, f"{where}.parts[{k}]", blobs) for k, p in enumerate(parts)]
    return file


def _part(entry: Any, where: str, blobs: dict[str, int]) -> dict:
    """A piece of a file fetched in pieces (an HLS segment), kept so that the receiving
    appliance knows which blobs the file needs (eviction, re-export)."""
    if not isinstance(entry, dict):
        raise _refuse(where, "must be an object")
    part = {"url": _text(entry.get("url"), where + ".url", required=True, limit=4000),
            "seq": _int(entry.get("seq"), where + ".seq"),
            "size": _int(entry.get("size"), where + ".size")}
    digest = entry.get("sha256")
    if not isinstance(digest, str) or not _HEX64.match(digest):
        raise _refuse(where + ".sha256", "is not 64 lower-case hex characters")
    if blobs.get(digest) != part["size"]:
        raise _refuse(where + ".sha256", "names a blob the manifest does not list with this size")
    part["sha256"] = digest
    return part


def parse(manifest_bytes: bytes) -> Manifest:
    """Validate a manifest whose signature was already verified (see :func:`verify`).

    Strict: every field is type-checked, every address is a 64-hex digest, every file's
    blob is listed with the same size, every listed blob is used, resource ids match
    their (source, source_id), and parents come before their parts.
    """
    if len(manifest_bytes) > MAX_MANIFEST_BYTES:
        raise too_large(len(manifest_bytes))
    try:
        document = json.loads(manifest_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _refuse("manifest.json", f"is not JSON ({error})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise FeedRefused("bad_manifest", "这不是书桥资源包的清单",
                          f"not a {FORMAT} manifest")
    version = document.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise _refuse("version", "must be a whole number ≥ 1")
    if version > VERSION:
        raise FeedRefused("newer_format",
                          f"资源包格式版本 {version} 比本机支持的 {VERSION} 新：请先升级书桥",
                          f"the feed's format version {version} is newer than {VERSION}, the "
                          "newest this appliance knows: upgrade Shuqiao first")
    name = _text(document.get("name"), "name", required=True, limit=200)
    created = _text(document.get("created"), "created", limit=100)

    raw_blobs = document.get("blobs")
    if not isinstance(raw_blobs, list):
        raise _refuse("blobs", "must be a list")
    blobs: dict[str, int] = {}
    for i, entry in enumerate(raw_blobs):
        if not isinstance(entry, dict):
            raise _refuse(f"blobs[{i}]", "must be an object")
        digest = entry.get("sha256")
        if not isinstance(digest, str) or not _HEX64.match(digest):
            raise _refuse(f"blobs[{i}].sha256", "is not 64 lower-case hex characters")
        if digest in blobs:
            raise _refuse(f"blobs[{i}].sha256", "is listed twice")
        blobs[digest] = _int(entry.get("size"), f"blobs[{i}].size")

    raw_resources = document.get("resources")
    if not isinstance(raw_resources, list):
        raise _refuse("resources", "must be a list")
    resources: list[dict] = []
    seen: set[str] = set()
    used: set[str] = set()
    for i, entry in enumerate(raw_resources):
        where = f"resources[{i}]"
        if not isinstance(entry, dict):
            raise _refuse(where, "must be an object")
        resource = {
            "source": _text(entry.get("source"), where + ".source", required=True, limit=200),
            "source_id": _text(entry.get("source_id"), where + ".source_id", required=True,
                               limit=500),
            "kind": entry.get("kind"),
            "title": _text(entry.get("title"), where + ".title", required=True, limit=2000),
            "chapter": _text_list(entry.get("chapter"), where + ".chapter"),
            "chapter_ids": _text_list(entry.get("chapter_ids"), where + ".chapter_ids"),
            "lesson_no": _int(entry.get("lesson_no", 0), where + ".lesson_no"),
            "position": _int(entry.get("position", 0), where + ".position"),
            "extra": _object(entry.get("extra"), where + ".extra"),
        }
        for name_ in _TEXT_FIELDS:
            resource[name_] = _text(entry.get(name_), f"{where}.{name_}")
        if resource["kind"] not in RESOURCE_KINDS:
            raise _refuse(where + ".kind", f"must be one of {', '.join(RESOURCE_KINDS)}")
        rid = entry.get("id")
        if rid != resource_id_for(resource["source"], resource["source_id"]):
            raise _refuse(where + ".id", "does not match its source and source_id")
        if rid in seen:
            raise _refuse(where + ".id", "is listed twice")
        parent = entry.get("parent")
        if parent is not None and parent not in seen:
            raise _refuse(where + ".parent", "must name a resource listed before it")
        tags = entry.get("tags") or []
        if not isinstance(tags, list) or not all(
                isinstance(t, list) and len(t) == 3 and all(isinstance(x, str) and len(x) <= 500
                                                             for x in t) for t in tags):
            raise _refuse(where + ".tags", "must be a list of [dimension, tag id, name]")
        files = entry.get("files") or []
        if not isinstance(files, list) or len(files) > 1000:
            raise _refuse(where + ".files", "must be a list")
        resource.update(id=rid, parent=parent, tags=[tuple(t) for t in tags],
                        files=[_file(f, f"{where}.files[{j}]", blobs)
                               for j, f in enumerate(files)])
        used |= {f["sha256"] for f in resource["files"] if "sha256" in f}
        used |= {p["sha256"] for f in resource["files"] for p in f.get("parts", ())}
        seen.add(rid)
        resources.append(resource)
    unused = sorted(set(blobs) - used)
    if unused:
        raise _refuse("blobs", f"lists {len(unused)} blob(s) no file uses, e.g. {unused[0]}")
    return Manifest(name=name, created=created, resources=resources, blobs=blobs,
                    version=version)


def too_large(size: int | None) -> FeedRefused:
    shown = f"{size} bytes" if size is not None else "too many bytes"
    return FeedRefused("too_large",
                       f"清单太大（{shown}，上限 {MAX_MANIFEST_BYTES} 字节），拒绝导入",
                       f"the manifest is too large ({shown}; the limit is "
                       f"{MAX_MANIFEST_BYTES} bytes); refused")
