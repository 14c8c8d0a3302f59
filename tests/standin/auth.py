"""The platform's login tokens and request signing, as the stand-in checks them.

Upstream reference: smartedu-upstream.md §3.3 (header formats) and §3.4 (token, refresh).

- ``signed_text`` / ``mac`` / ``nd_auth_header`` compute the UC SDK's ``X-ND-AUTH: MAC …``
  header exactly as the site does: the signed text is four lines, each ending in a newline:
  the nonce, the method in upper case, the **percent-decoded** path followed by ``?query``
  as sent (query not decoded), and the host name without port. ``mac`` is
  Base64(HMAC-SHA256(mac_key, text)).
- ``TokenStore`` issues access/refresh/mac_key triples, expires access tokens after
  ``Faults.token_ttl_seconds`` (checked at use time, so a test can shorten the life of a
  token already handed out) and rotates refresh tokens: a refresh token works once.
- The error bodies the platform's CDN answers with (openresty 401 page, object-storage XML)
  live here too, so every module answers with the same bytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import re
import string
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import unquote, urlsplit

NONCE_ALPHABET = "123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"  # the site's Ze(): 1-9A-Z
SDP_APP_ID = "e5649925-441d-4a53-b525-51a2f1c4e0a8"       # the 中小学 client (§3.4)
LOCAL_STORAGE_KEY = f"ND_UC_AUTH-{SDP_APP_ID}&ncet-xedu&token"
CHINA = timezone(timedelta(hours=8))

_MAC_HEADER = re.compile(r'^MAC\s+id="([^"]*)",\s*nonce="([^"]*)",\s*mac="([^"]*)"\s*$')
_NONCE = re.compile(r"^(\d{10,16}):([0-9A-Z]{8})$")


# ---------------------------------------------------------------------------- signing

def signed_text(method: str, path_and_query: str, host: str, nonce: str) -> str:
    """The text the MAC covers. ``path_and_query`` is the request target as sent on the
    wire (percent-encoded path, optional ``?query``); ``host`` has no port."""
    path, _, query = path_and_query.partition("?")
    return text_to_sign(nonce, method, unquote(path, encoding="utf-8", errors="strict"),
                        query, host)


def text_to_sign(nonce: str, method: str, decoded_path: str, query: str, host: str) -> str:
    relative = decoded_path + (f"?{query}" if query else "")
    return f"{nonce}\n{method.upper()}\n{relative}\n{host}\n"


def mac(text: str, mac_key: str) -> str:
    digest = hmac.new(mac_key.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def make_nonce(diff_ms: int = 0, rng: random.Random | None = None) -> str:
    rng = rng or random
    suffix = "".join(rng.choice(NONCE_ALPHABET) for _ in range(8))
    return f"{int(time.time() * 1000) + int(diff_ms)}:{suffix}"


def nd_auth_header(url: str, method: str, access_token: str, mac_key: str,
                   diff_ms: int = 0, nonce: str | None = None) -> str:
    """``X-ND-AUTH`` for the URL really requested (for a stand-in: the mapped URL
    ``http://127.0.0.1:PORT/<platform host>/edu_product/…``). A reference for tests."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    nonce = nonce or make_nonce(diff_ms)
    signature = mac(signed_text(method, target, parts.hostname or "", nonce), mac_key)
    return f'MAC id="{access_token}",nonce="{nonce}",mac="{signature}"'


def parse_mac_header(value: str) -> tuple[str, str, str] | None:
    match = _MAC_HEADER.match(value.strip())
    return match.groups() if match else None


def nonce_time_ms(nonce: str) -> int | None:
    match = _NONCE.match(nonce)
    return int(match.group(1)) if match else None


# ----------------------------------------------------------------------------- tokens

@dataclass
class Token:
    access_token: str
    refresh_token: str
    mac_key: str
    user_id: str
    issued_at: float          # time.time() when issued
    ttl_at_issue: float       # seconds, for the expires_at the client is told
    revoked: bool = False


def iso_time(epoch: float) -> str:
    """The platform's timestamp format: ISO-8601, milliseconds, +0800."""
    moment = datetime.fromtimestamp(epoch, CHINA)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0800"


class TokenStore:
    """Issued tokens. ``ttl`` is read from the faults at every check (tests shorten it)."""

    def __init__(self, seed: int, ttl_getter, clock_offset_getter):
        self._rng = random.Random(f"tokens:{seed}")
        self._lock = threading.Lock()
        self._by_access: dict[str, Token] = {}
        self._by_refresh: dict[str, Token] = {}
        self._ttl = ttl_getter
        self._offset_ms = clock_offset_getter
        self.user_id = str(450000000000 + self._rng.randrange(10**8))

    def _hex(self, n: int) -> str:
        return "".join(self._rng.choice("0123456789ABCDEF") for _ in range(n))

    def issue(self) -> Token:
        with self._lock:
            token = Token(access_token=self._hex(64), refresh_token=self._hex(64),
                          mac_key="".join(self._rng.choice(string.ascii_letters + string.digits)
                                          for _ in range(10)),
                          user_id=self.user_id, issued_at=time.time(),
                          ttl_at_issue=float(self._ttl()))
            self._by_access[token.access_token] = token
            self._by_refresh[token.refresh_token] = token
            return token

    def lookup(self, access_token: str) -> tuple[Token | None, str]:
        """(token, state) with state one of "ok", "unknown", "expired", "revoked"."""
        token = self._by_access.get(access_token)
        if token is None:
            return None, "unknown"
        if token.revoked:
            return token, "revoked"
        if time.time() > token.issued_at + float(self._ttl()):
            return token, "expired"
        return token, "ok"

    def refresh(self, refresh_token: str) -> Token | None:
        """A new triple for a live refresh token; the old refresh token stops working
        (rotation). The old access token lives on until it expires."""
        with self._lock:
            old = self._by_refresh.pop(refresh_token, None)
            if old is None or old.revoked:
                return None
        return self.issue()

    def revoke_all(self) -> None:
        """The refresh chain breaks: every token dies (a person must log in again)."""
        with self._lock:
            for token in self._by_access.values():
                token.revoked = True
            self._by_refresh.clear()

    def response_body(self, token: Token) -> dict:
        """What ``POST /v1.1/tokens/{refresh}/actions/refresh`` answers (201)."""
        now = time.time()
        return {
            "user_id": int(token.user_id),
            "access_token": token.access_token,
            "refresh_token": token.refresh_token,
            "mac_key": token.mac_key,
            "mac_algorithm": "hmac-sha-256",
            "expires_at": iso_time(token.issued_at + token.ttl_at_issue),
            "server_time": iso_time(now + self._offset_ms() / 1000.0),
            "region": "",
        }

    def local_storage_value(self, token: Token) -> str:
        """The browser's localStorage value for ``LOCAL_STORAGE_KEY`` (§3.4): JSON
        ``{"value": "<inner JSON string>", "expire": <ms>}``."""
        inner = {
            "access_token": token.access_token,
            "refresh_token": token.refresh_token,
            "mac_key": token.mac_key,
            "mac_algorithm": "hmac-sha-256",
            "expires_at": iso_time(token.issued_at + token.ttl_at_issue),
            "user_id": int(token.user_id),
            "diff": int(self._offset_ms()),
        }
        expire_ms = int((token.issued_at + token.ttl_at_issue) * 1000)
        return json.dumps({"value": json.dumps(inner, separators=(",", ":")),
                           "expire": expire_ms}, separators=(",", ":"))


# ------------------------------------------------------------------------ error bodies

def openresty_401(client_ip: str, request_id: str) -> bytes:
    """The ~346-byte page the private CDN answers without a usable token (§3.2)."""
    stamp = datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
    body = ("<html>\r\n<head><title>401 Authorization Required</title></head>\r\n<body>\r\n"
            "<center><h1>401 Authorization Required</h1></center>\r\n"
            "<hr><center>openresty</center>\r\n"
            f"Date: {stamp}\r\nNode_info: cbern-cdn-openresty-zj-hz-ct2-07\r\n"
            f"Request_id: {request_id}\r\nClient_ip: {client_ip}\r\n"
            "Hit-status: MISS\r\n</body>\r\n</html>\r\n")
    return body.encode("ascii")


def openresty_page(status: int, reason: str) -> bytes:
    return (f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
            f"<center><h1>{status} {reason}</h1></center>\r\n"
            "<hr><center>openresty</center>\r\n</body>\r\n</html>\r\n").encode("ascii")


def storage_error(code: str, message: str, request_id: str, host: str) -> bytes:
    """An object-storage XML error (``InvalidArgument``, ``AccessDenied``, ``NoSuchKey``)."""
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<Error>\n'
            f"  <Code>{code}</Code>\n  <Message>{message}</Message>\n"
            f"  <RequestId>{request_id}</RequestId>\n  <HostId>{host}</HostId>\n"
            "</Error>\n").encode()
