"""Host names, deterministic ids and times shared by the catalogue modules."""

from __future__ import annotations

import hashlib
import random
import re

from .auth import iso_time

DOMAIN = "ykt.cbern.com.cn"
JSON_HOSTS = tuple(f"{name}.{DOMAIN}" for name in
                   ("s-file-1", "s-file-2", "s-file-3", "bdcs-file-1", "bdcs-file-2"))
PUBLIC_HOSTS = tuple(f"r{n}-ndr.{DOMAIN}" for n in (1, 2, 3))
PRIVATE_HOSTS = tuple(f"r{n}-ndr-private.{DOMAIN}" for n in (1, 2, 3))
DOC_PRIVATE_HOSTS = tuple(f"r{n}-ndr-doc-private.{DOMAIN}" for n in (1, 2))
KEY_HOST = "ndvideo-key.ykt.eduyun.cn"
UC_HOST = "uc-gateway.ykt.eduyun.cn"
FILE_HOSTS = PUBLIC_HOSTS + PRIVATE_HOSTS + DOC_PRIVATE_HOSTS
ALL_HOSTS = JSON_HOSTS + PUBLIC_HOSTS + PRIVATE_HOSTS + DOC_PRIVATE_HOSTS + (KEY_HOST, UC_HOST)
PRIVATE_ALL = PRIVATE_HOSTS + DOC_PRIVATE_HOSTS

CN_NUMBERS = "一二三四五六七八九十"
# Epoch of the generated catalogue (2025-03-01 10:00 +0800): times are stable per seed.
BASE_EPOCH = 1740794400.0

_ID_TOKEN = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
                       r"|(?<![0-9a-fA-F])[0-9a-fA-F]{32}(?![0-9a-fA-F])")


def rng_for(seed: int, *parts) -> random.Random:
    return random.Random(":".join(str(p) for p in (seed,) + parts))


def make_uuid(seed: int, *parts) -> str:
    """A version-4-shaped UUID from an MD5 of the parts (same as uuid.UUID(bytes=…,
    version=4), written out by hand: the large catalogue makes 200k of them)."""
    digest = bytearray(hashlib.md5(":".join(map(str, (seed,) + parts)).encode("utf-8")).digest())
    digest[6] = (digest[6] & 0x0F) | 0x40
    digest[8] = (digest[8] & 0x3F) | 0x80
    x = digest.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def hex32(resource_id: str) -> str:
    return resource_id.replace("-", "").lower()


def id_tokens(path: str) -> list[str]:
    """Every uuid / 32-hex token in a path, normalised with :func:`hex32`, in order."""
    return [hex32(token) for token in _ID_TOKEN.findall(path)]


def ms_stamp(rng: random.Random, around: float = BASE_EPOCH) -> int:
    """A 13-digit millisecond timestamp within a year before ``around``."""
    return int((around - rng.uniform(0, 365 * 86400)) * 1000)


def time_pair(rng: random.Random) -> tuple[str, str, float]:
    """(create_time, update_time, update epoch) in the platform's format."""
    created = BASE_EPOCH - rng.uniform(30 * 86400, 900 * 86400)
    updated = created + rng.uniform(0, 25 * 86400)
    return iso_time(created), iso_time(updated), updated


def cn_number(n: int) -> str:
    if n <= 10:
        return CN_NUMBERS[n - 1]
    if n < 20:
        return "十" + CN_NUMBERS[n - 11]
    tens, ones = divmod(n, 10)
    return CN_NUMBERS[tens - 1] + "十" + (CN_NUMBERS[ones - 1] if ones else "")


def mirrors(path: str, hosts=PRIVATE_HOSTS, count: int = 3) -> list[str]:
    return [f"https://{host}{path}" for host in hosts[:count]]
