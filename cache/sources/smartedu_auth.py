"""The national platform's login token: reading it, signing with it, keeping it alive.

Files on the platform's private buckets need a logged-in account (smartedu-upstream.md §3).
A person logs in once in a browser (slider captcha: a human must do it) and the admin
pastes the token JSON from the browser's ``localStorage`` (§3.4) into the appliance; it is
kept in the file named by the ``smartedu_token_file`` setting. From then on:

- every request to a private host carries ``X-ND-AUTH: MAC id=…,nonce=…,mac=…`` (§3.3,
  signed per request over the URL actually sent) and ``Authorization: Bearer …``;
- the token is refreshed before it expires (``POST uc-gateway …/tokens/{refresh}/actions/
  refresh``); the refresh token *rotates*, so the new pair is written back to the token file
  at once, atomically, under a file lock (a CLI ``fetch`` and the server may both run);
- when the refresh chain breaks, or files answer 401/403 even after a refresh, the state
  file next to the token file records "an administrator must log in again", which
  :func:`token_state` reports to the admin page. Pasting a new token clears it (the state
  is tied to a fingerprint of the token it was raised for).

Nothing here logs a token; :func:`token_state` shows only non-secret facts.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import unquote, urlsplit

from ..store import atomic_write_bytes

log = logging.getLogger("shuqiao.smartedu.auth")

AUTH_MODES = ("auto", "mac", "bearer", "placeholder", "none")
UC_HOST = "uc-gateway.ykt.eduyun.cn"
SDP_APP_ID = "e5649925-441d-4a53-b525-51a2f1c4e0a8"
DEFAULT_TOKEN_FILE_NAME = "smartedu_token.json"
# Refresh when less than this is left (tokens live about 7 days, §3.4): a day leaves room
# for a weekend without a link.
REFRESH_MARGIN_SECONDS = 24 * 3600
# Do not hammer the account service: at most one refresh attempt per this many seconds
# unless the token has already expired.
REFRESH_RETRY_SECONDS = 300
EXPIRED_RETRY_SECONDS = 10
# Refusals a freshly refreshed token may get before we believe them (requests that were
# already on the wire carried the old token): the platform's limit of concurrent transfers.
STALE_REFUSALS = 3
_NONCE_ALPHABET = "123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"

MESSAGES = {
    "missing": ("尚未配置平台登录令牌：请管理员登录国家平台并粘贴令牌。",
                "No platform login token: an administrator must log in to the platform and "
                "paste the token."),
    "invalid": ("平台登录令牌无法读取，请重新粘贴。",
                "The platform login token cannot be read; paste it again."),
    "needs_login": ("需要管理员重新登录平台。",
                    "An administrator must log in to the platform again."),
    "expired": ("平台登录令牌已过期，正在尝试刷新。",
                "The platform login token has expired; trying to refresh it."),
    "ok": ("平台登录令牌有效。", "The platform login token is valid."),
}


class TokenError(ValueError):
    """The pasted token cannot be used; the message (Chinese / English) says why."""


class RefreshError(Exception):
    """A refresh failed. ``final`` is True when only a new login can help."""

    def __init__(self, message: str, final: bool):
        super().__init__(message)
        self.final = final


# ---------------------------------------------------------------------------- the token

@dataclass
class Token:
    access_token: str
    refresh_token: str = ""
    mac_key: str = ""
    expires_at: float | None = None   # epoch seconds
    user_id: str = ""
    diff: int = 0                     # server clock minus ours, in ms (§3.3 nonce)
    inner: dict = field(default_factory=dict)   # every field as pasted, written back
    wrapper: dict | None = None                 # the localStorage {value, expire} wrapper

    @property
    def fingerprint(self) -> str:
        """Identifies the token without revealing it (the alert is tied to it)."""
        return hashlib.sha256(self.access_token.encode()).hexdigest()[:16]

    def seconds_left(self, now: float | None = None) -> float | None:
        if self.expires_at is None:
            return None
        return self.expires_at - (time.time() if now is None else now)

    def to_json(self) -> str:
        """The localStorage shape again (so the admin can recognise what they pasted)."""
        inner = dict(self.inner)
        inner.update(access_token=self.access_token, refresh_token=self.refresh_token,
                     mac_key=self.mac_key, user_id=self.user_id, diff=self.diff)
        if self.expires_at is not None:
            inner["expires_at"] = _format_time(self.expires_at)
        wrapper = dict(self.wrapper or {})
        wrapper["value"] = json.dumps(inner, ensure_ascii=False)
        if self.expires_at is not None:
            wrapper["expire"] = int(self.expires_at * 1000)
        return json.dumps(wrapper, ensure_ascii=False, indent=1)


def parse_token_text(text: str) -> Token:
    """Read a pasted token in any shape seen in a browser.

    Accepted: the ``localStorage`` value ``{"value": "<inner JSON>", "expire": …}``; a dump
    of the whole storage or of one item keyed ``ND_UC_AUTH-…&token``; or the inner object
    itself (``access_token``, ``refresh_token``, ``mac_key``, ``expires_at``, ``user_id``,
    ``diff``). :raises TokenError: nothing usable was found.
    """
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        raise TokenError("令牌不是 JSON / the token is not JSON") from None
    wrapper = None
    if isinstance(data, dict):
        token_keys = [k for k in data if isinstance(k, str) and k.endswith("&token")]
        if token_keys and "access_token" not in data:
            data = _maybe_json(data[token_keys[0]])
    if isinstance(data, dict) and "value" in data and "access_token" not in data:
        wrapper = {k: v for k, v in data.items() if k != "value"}
        data = _maybe_json(data["value"])
    if not isinstance(data, dict) or not isinstance(data.get("access_token"), str) \
            or not data["access_token"].strip():
        raise TokenError("令牌中没有 access_token / no access_token in the pasted token")
    expires = _parse_time(data.get("expires_at"))
    if expires is None and wrapper is not None:
        expires = _parse_time(wrapper.get("expire"))
    try:
        diff = int(float(data.get("diff") or 0))
    except (TypeError, ValueError):
        diff = 0
    return Token(access_token=data["access_token"].strip(),
                 refresh_token=str(data.get("refresh_token") or ""),
                 mac_key=str(data.get("mac_key") or ""), expires_at=expires,
                 user_id=str(data.get("user_id") or ""), diff=diff, inner=dict(data),
                 wrapper=wrapper)


def _maybe_json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _parse_time(value: Any) -> float | None:
    """ISO-8601 (``+0800`` offsets too), epoch ms or epoch seconds → epoch seconds."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value / 1000 if value > 1e11 else float(value)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return _parse_time(int(text))
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return moment.timestamp()
    return None


def _format_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds")


# ------------------------------------------------------------------------- signing (§3.3)

def make_nonce(diff_ms: int = 0, now_ms: int | None = None) -> str:
    """``{client ms + diff}:{8 chars from 1-9A-Z}``."""
    stamp = (int(time.time() * 1000) if now_ms is None else now_ms) + int(diff_ms)
    return f"{stamp}:" + "".join(secrets.choice(_NONCE_ALPHABET) for _ in range(8))


def signed_text(method: str, url: str, nonce: str) -> str:
    """nonce⏎METHOD⏎decoded-path[?query]⏎host⏎ for the URL as requested (host without port)."""
    parts = urlsplit(url)
    path = unquote(parts.path or "/")
    if parts.query:
        path += "?" + parts.query
    return f"{nonce}\n{method.upper()}\n{path}\n{parts.hostname or ''}\n"


def mac_signature(mac_key: str, method: str, url: str, nonce: str) -> str:
    digest = hmac.new(mac_key.encode(), signed_text(method, url, nonce).encode(),
                      hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def mac_header(token: Token, method: str, url: str, nonce: str | None = None) -> str:
    nonce = nonce or make_nonce(token.diff)
    mac = mac_signature(token.mac_key, method, url, nonce)
    return f'MAC id="{token.access_token}",nonce="{nonce}",mac="{mac}"'


def auth_headers(mode: str, token: Token | None, method: str, url: str) -> dict[str, str]:
    """The headers for one request to a private host in ``mode`` (see AUTH_MODES).

    ``auto`` is ``mac`` when a token with a mac_key is present, ``placeholder`` when a
    token has no mac_key, and ``none`` without a token.
    """
    mode = effective_mode(mode, token)
    if mode == "none" or token is None:
        return {}
    if mode == "bearer":
        return {"Authorization": f"Bearer {token.access_token}"}
    if mode == "placeholder":
        # What older tools send; most objects accept it, strict ones answer 400 (§3.2).
        return {"X-ND-AUTH": f'MAC id="{token.access_token}",nonce="0",mac="0"',
                "Authorization": f"Bearer {token.access_token}"}
    return {"X-ND-AUTH": mac_header(token, method, url),
            "Authorization": f"Bearer {token.access_token}"}


def effective_mode(mode: str, token: Token | None) -> str:
    if token is None:
        return "none"
    if mode == "auto":
        return "mac" if token.mac_key else "placeholder"
    if mode == "mac" and not token.mac_key:
        return "placeholder"
    return mode


# -------------------------------------------------------------------- files and the alert

def token_path(config) -> Path:
    configured = getattr(config, "smartedu_token_file", "") or ""
    if configured:
        path = Path(configured).expanduser()
        return path if path.is_absolute() else Path(config.home) / path
    return Path(config.home) / DEFAULT_TOKEN_FILE_NAME


def _state_path(token_file: Path) -> Path:
    return token_file.with_name(token_file.name + ".state")


def _read_state(token_file: Path) -> dict:
    try:
        return json.loads(_state_path(token_file).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def _write_state(token_file: Path, state: dict) -> None:
    atomic_write_bytes(_state_path(token_file),
                       json.dumps(state, ensure_ascii=False).encode(), mode=0o600)


def save_pasted_token(config, text: str) -> dict:
    """Check and store what the admin pasted; returns the new :func:`token_state`.

    :raises TokenError: the text holds no usable token (nothing is written then).
    """
    token = parse_token_text(text)
    path = token_path(config)
    with _file_lock(path):
        atomic_write_bytes(path, token.to_json().encode(), mode=0o600)
        state = _read_state(path)
        state.pop("needs_login", None)
        state.update(pasted_at=_format_time(time.time()), token=token.fingerprint)
        _write_state(path, state)
    return token_state(config)


def token_state(config, now: float | None = None) -> dict:
    """What the admin page shows about the platform login (no secrets).

    Keys: ``state`` (ok / expiring / expired / needs_login / missing / invalid), ``alert``
    (True when a person must act), ``message_zh``, ``message_en``, ``expires_at``,
    ``seconds_left``, ``user_id``, ``last_refresh``, ``last_error``, ``token_file``.
    """
    path = token_path(config)
    now = time.time() if now is None else now
    result: dict[str, Any] = {"token_file": str(path), "expires_at": None,
                              "seconds_left": None, "user_id": "", "last_refresh": None,
                              "last_error": None}
    state = _read_state(path)
    result["last_refresh"] = state.get("last_refresh")
    result["last_error"] = state.get("last_error")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return _with_message(result, "missing", alert=True)
    except OSError as error:
        result["last_error"] = str(error)
        return _with_message(result, "invalid", alert=True)
    try:
        token = parse_token_text(text)
    except TokenError as error:
        result["last_error"] = str(error)
        return _with_message(result, "invalid", alert=True)
    result["user_id"] = token.user_id
    left = token.seconds_left(now)
    if token.expires_at is not None:
        result["expires_at"] = _format_time(token.expires_at)
        result["seconds_left"] = int(left)
    alert = state.get("needs_login")
    if alert and alert.get("token") == token.fingerprint:
        result["reason"] = alert.get("reason")
        return _with_message(result, "needs_login", alert=True)
    if left is not None and left <= 0:
        # Expired but still refreshable: the refresh loop is on it; only an alert when it
        # cannot refresh at all.
        return _with_message(result, "expired", alert=not token.refresh_token)
    if left is not None and left < REFRESH_MARGIN_SECONDS:
        return _with_message(result, "ok", alert=False, state="expiring")
    return _with_message(result, "ok", alert=False)


def _with_message(result: dict, key: str, alert: bool, state: str | None = None) -> dict:
    result["state"] = state or key
    result["alert"] = alert
    result["message_zh"], result["message_en"] = MESSAGES[key]
    return result


@contextmanager
def _file_lock(token_file: Path) -> Iterator[None]:
    """Serialise read-refresh-write between processes (the refresh token rotates: two
    processes refreshing with the same old one would make the loser look logged out)."""
    token_file.parent.mkdir(parents=True, exist_ok=True)
    lock_path = token_file.with_name(token_file.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# ----------------------------------------------------------------------- the live manager

# post(url) -> (status or None on a network error, parsed JSON body or None)
PostFunction = Callable[[str], "tuple[int | None, Any]"]


class TokenManager:
    """The token of one appliance home, refreshed in time, shared by all fetch threads.

    :param token_file: where the pasted token lives.
    :param refresh_url: maps a refresh token to the (host-mapped) refresh URL.
    :param post: sends the refresh POST; injected so the source's HTTP session and host
        mapping are used.
    """

    def __init__(self, token_file: Path, refresh_url: Callable[[str], str], post: PostFunction,
                 clock: Callable[[], float] = time.time):
        self.token_file = Path(token_file)
        self._refresh_url = refresh_url
        self._post = post
        self._clock = clock
        self._lock = threading.RLock()
        self._token: Token | None = None
        self._loaded_stamp: tuple | None = None
        self._last_attempt = 0.0
        self._refusals: dict[str, int] = {}
        self._refreshed_to: set[str] = set()   # fingerprints this manager refreshed to

    # -- reading

    def current(self) -> Token | None:
        """The token as stored now (re-read when the file changed: a paste, another process)."""
        with self._lock:
            try:
                stat = self.token_file.stat()
            except FileNotFoundError:
                self._token, self._loaded_stamp = None, None
                return None
            stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            if stamp != self._loaded_stamp:
                try:
                    self._token = parse_token_text(self.token_file.read_text(encoding="utf-8"))
                except (TokenError, OSError) as error:
                    log.warning("smartedu token file unusable: %s", error)
                    self._token = None
                self._loaded_stamp = stamp
            return self._token

    def needs_login(self) -> bool:
        token = self.current()
        alert = _read_state(self.token_file).get("needs_login")
        return token is None or bool(alert and alert.get("token") == token.fingerprint)

    # -- refreshing

    def ensure_fresh(self) -> Token | None:
        """The token, refreshed first when it is close to expiry (cheap when it is not)."""
        token = self.current()
        if token is None or not token.refresh_token:
            return token
        left = token.seconds_left(self._clock())
        if left is None or left >= REFRESH_MARGIN_SECONDS:
            return token
        wait = EXPIRED_RETRY_SECONDS if left <= 0 else REFRESH_RETRY_SECONDS
        if self._clock() - self._last_attempt < wait or self.needs_login():
            return token
        try:
            return self.refresh()
        except RefreshError as error:
            log.warning("smartedu token refresh failed: %s", error)
            return self.current()

    def refresh(self, force: bool = False) -> Token:
        """Refresh now (rotation: the new refresh token replaces the old one on disk).

        :param force: refresh even if the token on disk changed meanwhile (a 401 says the
            current one is no good).
        :raises RefreshError: ``final`` when only a new login can help (the alert is set).
        """
        with self._lock, _file_lock(self.token_file):
            before = self._token
            token = self.current()  # another process may have rotated it already
            if token is None:
                raise RefreshError("no token to refresh", final=True)
            if (not force and before is not None
                    and token.access_token != before.access_token
                    and (token.seconds_left(self._clock()) or 1) > REFRESH_MARGIN_SECONDS):
                return token
            self._last_attempt = self._clock()
            if not token.refresh_token:
                self._raise_alert(token, "the token has no refresh_token")
                raise RefreshError("no refresh token", final=True)
            status, body = self._post(self._refresh_url(token.refresh_token))
            if status is None or status >= 500 or status == 429:
                self._note(last_error=f"refresh: upstream unavailable ({status})")
                raise RefreshError(f"refresh answered {status}", final=False)
            if status not in (200, 201) or not isinstance(body, dict) \
                    or not body.get("access_token"):
                self._raise_alert(token, f"refresh refused ({status})")
                raise RefreshError(f"refresh refused with {status}", final=True)
            new = _merge_refreshed(token, body)
            atomic_write_bytes(self.token_file, new.to_json().encode(), mode=0o600)
            self._loaded_stamp = None
            self._token = None
            self._refreshed_to.add(new.fingerprint)
            self._note(last_refresh=_format_time(self._clock()), last_error=None,
                       token=new.fingerprint)
            log.info("smartedu token refreshed; valid until %s",
                     _format_time(new.expires_at) if new.expires_at else "unknown")
            return self.current() or new

    def rejected(self, status: int, detail: str = "") -> str:
        """A private host refused our token (401/403). Returns what to do:

        - ``"retry"``: we refreshed (or just did, for another thread): repeat the request;
        - ``"later"``: the account service is unreachable: try again after a back-off
          (no alert: nothing a person can do yet);
        - ``"login"``: only a new login helps; the admin alert is up.

        We do not know which token the refused request carried, so a freshly refreshed
        token is given a few refusals (as many as transfers run at once) before the
        alert: those may be requests that were signed with the token it replaced.
        """
        with self._lock:
            token = self.current()
            if token is None or self.needs_login():
                return "login"
            refusals = self._refusals.get(token.fingerprint, 0) + 1
            self._refusals[token.fingerprint] = refusals
            just_refreshed = token.fingerprint in self._refreshed_to
            if not just_refreshed and token.refresh_token:
                try:
                    self.refresh(force=True)
                    return "retry"
                except RefreshError as error:
                    return "login" if error.final else "later"  # refresh() set the alert
            if just_refreshed and refusals <= STALE_REFUSALS:
                return "retry"
            self._raise_alert(token, f"files answered {status} {detail}".strip())
            return "login"

    def raise_alert(self, reason: str) -> None:
        token = self.current()
        if token is not None:
            self._raise_alert(token, reason)

    def _raise_alert(self, token: Token, reason: str) -> None:
        log.error("smartedu: an administrator must log in again (%s)", reason)
        self._note(needs_login={"token": token.fingerprint, "reason": reason,
                                "since": _format_time(self._clock())}, last_error=reason)

    def _note(self, **changes: Any) -> None:
        state = _read_state(self.token_file)
        for key, value in changes.items():
            if value is None:
                state.pop(key, None)
            else:
                state[key] = value
        _write_state(self.token_file, state)


def _merge_refreshed(old: Token, body: dict) -> Token:
    inner = dict(old.inner)
    inner.update({k: v for k, v in body.items() if v is not None})
    expires = _parse_time(body.get("expires_at"))
    if expires is None and body.get("expires_in"):
        expires = time.time() + float(body["expires_in"])
    return Token(access_token=str(body["access_token"]),
                 refresh_token=str(body.get("refresh_token") or old.refresh_token),
                 mac_key=str(body.get("mac_key") or old.mac_key),
                 expires_at=expires if expires is not None else old.expires_at,
                 user_id=str(body.get("user_id") or old.user_id),
                 diff=old.diff if body.get("diff") is None else int(float(body["diff"])),
                 inner=inner, wrapper=old.wrapper)


class RefreshLoop:
    """A daemon thread that keeps the token fresh while the server runs (start/stop by
    app.py): checks every ``interval`` seconds, refreshing within the margin."""

    def __init__(self, manager: TokenManager, interval: float = 600):
        self.manager = manager
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="smartedu-token", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.manager.ensure_fresh()
            except Exception:  # noqa: BLE001 - a bug here must not kill the loop silently
                log.exception("smartedu token refresh loop")
            self._stop.wait(self.interval)

    def stop(self, timeout: float = 5) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
