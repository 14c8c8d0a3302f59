"""One request on the stand-in: routing by platform host, auth, answering, faults.

A ``ThreadingHTTPServer`` runs one :class:`Handler` per connection (HTTP/1.1 keep-alive),
writing straight to its socket, so slow readers, stalls and paced bodies hold only their
own thread. ``self.server.standin`` is the :class:`~standin.server.Standin` it serves.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import time
import uuid
from dataclasses import asdict, dataclass
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote_to_bytes, urlsplit

from . import auth
from .common import (
    ALL_HOSTS,
    FILE_HOSTS,
    JSON_HOSTS,
    KEY_HOST,
    PRIVATE_ALL,
    PUBLIC_HOSTS,
)
from .content import Body, FileEntry, LiteralBody
from .faults import Faults, TokenBucket
from .transport import UNSATISFIABLE, Plan, parse_range, send_body

if TYPE_CHECKING:
    from .server import Standin


@dataclass
class LogEntry:
    """One request as the stand-in saw it (``bytes_sent`` grows while the body goes out)."""

    time: float               # time.time() when the request line arrived
    method: str
    host: str
    path: str                 # decoded, without the /<host> prefix and without the query
    query: str
    client: str               # "ip:port"
    range: str | None = None  # the Range header as received
    status: int = 0
    bytes_sent: int = 0       # body bytes written
    auth: str = "-"           # none, mac, bad-mac, placeholder, bearer, raw, query,
    #                           unknown-token, expired-token, revoked-token ("-": no auth here)
    fault: str = ""           # burst, 5xx, drop, stall, corrupt (comma-joined)
    outcome: str = ""         # ok, dropped, client-gone, closing


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "openresty"
    sys_version = ""
    timeout = 300

    def setup(self):
        super().setup()
        # Headers and body leave in separate writes: without this, Nagle plus the
        # client's delayed ACK add 40 ms to every small answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def parse_request(self):
        # Stamp the request as soon as its request line is in: a log's times are then as
        # close to the client's request starts as a server can see them.
        self.received_at = time.time()
        return super().parse_request()

    def version_string(self):
        return self.server_version

    def log_message(self, format, *args):
        pass

    # ------------------------------------------------------------------- dispatch

    def do_GET(self):
        self._handle()

    def do_HEAD(self):
        self._handle()

    def do_POST(self):
        self._handle()

    def _handle(self):
        standin: Standin = self.server.standin
        raw_path, _, self.query = self.path.partition("?")
        client = f"{self.client_address[0]}:{self.client_address[1]}"
        self.entry = LogEntry(self.received_at, self.command, "", raw_path, self.query, client,
                              self.headers.get("Range"))
        try:
            decoded = unquote_to_bytes(raw_path.encode("latin-1")).decode("utf-8")
        except (UnicodeDecodeError, UnicodeEncodeError):
            return self._simple(400, b"bad request path\n", "text/plain")
        self._drain_request_body()
        if decoded.startswith("/_standin/"):
            return self._control(standin, decoded)
        host, _, remainder = decoded[1:].partition("/")
        self.rest = "/" + remainder              # the platform path, decoded, no query
        self.entry.host, self.entry.path = host, self.rest
        standin.log.append(self.entry)
        standin._begin()
        try:
            if host not in ALL_HOSTS:
                return self._simple(404, auth.openresty_page(404, "Not Found"), "text/html")
            self._dispatch(standin, host)
        finally:
            standin._end()

    def _dispatch(self, standin: Standin, host: str):
        faults = standin.faults
        request_id = uuid.uuid4().hex
        if host in PRIVATE_ALL and standin._bursts.over_limit(self.client_address[0],
                                                             faults.burst_limit):
            self._note("burst")
            if faults.burst_body_kind() == "xml":
                return self._simple(400, auth.storage_error(
                    "InvalidArgument", "Request rate exceeded.", request_id, host),
                    "application/xml")
            return self._simple(400, b"\r\n", "text/plain")
        faulty_host = host in FILE_HOSTS or (faults.apply_to_json and host in JSON_HOSTS)
        status = faults.take_5xx(host, faulty_host)
        if status is not None:
            self._note("5xx")
            return self._simple(status, auth.openresty_page(status, "Service Temporarily Unavailable"
                                                            if status == 503 else "Error"),
                                "text/html")
        if host in JSON_HOSTS:
            return self._json_host(standin, host, request_id)
        if host in PUBLIC_HOSTS:
            entry = standin.catalogue.file(self.rest)
            if entry is None:
                return self._no_such_key(host, request_id)
            if not entry.public:
                return self._simple(403, auth.storage_error(
                    "AccessDenied", "Access Denied", request_id, host), "application/xml")
            return self._serve(standin, entry.body, entry.content_type, entry, faulty=True)
        if host in PRIVATE_ALL:
            return self._private_host(standin, host, request_id)
        if host == KEY_HOST:
            return self._key_service(standin)
        return self._uc_gateway(standin)

    # ----------------------------------------------------------------- host kinds

    def _json_host(self, standin: Standin, host: str, request_id: str):
        if self.command not in ("GET", "HEAD"):
            return self._simple(405, auth.openresty_page(405, "Not Allowed"), "text/html")
        answer = standin.catalogue.json_body(self.rest)
        if answer is None:
            return self._no_such_key(host, request_id)
        status, body = answer
        if status != 200:
            return self._simple(status, body, "application/xml")
        etag = '"' + hashlib.md5(body).hexdigest() + '"'
        return self._serve(standin, LiteralBody(body), "application/json", None,
                           faulty=standin.faults.apply_to_json, etag=etag)

    def _private_host(self, standin: Standin, host: str, request_id: str):
        mode, token_state = self._authenticate(standin)
        self.entry.auth = mode
        if mode == "none" or token_state in ("unknown", "expired", "revoked"):
            if mode == "query" and token_state != "ok":
                return self._invalid_argument(host, request_id, "Invalid accessToken.")
            return self._simple(401, auth.openresty_401(self.client_address[0], request_id),
                                "text/html")
        entry = standin.catalogue.file(self.rest)
        if entry is None:
            return self._no_such_key(host, request_id)
        if entry.strict and mode != "mac":
            return self._invalid_argument(host, request_id, "Invalid Argument: X-ND-AUTH.")
        return self._serve(standin, entry.body, entry.content_type, entry, faulty=True)

    def _authenticate(self, standin: Standin) -> tuple[str, str]:
        """(mode, token state) from X-ND-AUTH, Authorization: Bearer or ?accessToken."""
        header = self.headers.get("X-ND-AUTH", "").strip()
        bearer = self.headers.get("Authorization", "").strip()
        if header:
            parsed = auth.parse_mac_header(header)
            token_id = parsed[0] if parsed else header
            token, state = standin.tokens.lookup(token_id)
            if state != "ok":
                return f"{state}-token", state
            if not parsed:
                return "raw", state
            _, nonce, mac = parsed
            if nonce == "0" and mac == "0":
                return "placeholder", state
            return ("mac" if self._mac_valid(standin, token, nonce, mac) else "bad-mac"), state
        if bearer.lower().startswith("bearer "):
            token, state = standin.tokens.lookup(bearer[7:].strip())
            return ("bearer" if state == "ok" else f"{state}-token"), state
        query_token = parse_qs(self.query).get("accessToken", [None])[0]
        if query_token:
            _, state = standin.tokens.lookup(query_token)
            return "query", state
        return "none", "none"

    def _mac_valid(self, standin: Standin, token, nonce: str, mac: str) -> bool:
        stamp = auth.nonce_time_ms(nonce)
        if stamp is None:
            return False
        platform_now_ms = time.time() * 1000 + standin.faults.clock_offset_ms
        if abs(stamp - platform_now_ms) > standin.faults.nonce_window_seconds * 1000:
            return False
        host_header = self.headers.get("Host", "")
        hostname = urlsplit("//" + host_header).hostname or ""
        decoded_path = unquote_to_bytes(self.path.partition("?")[0].encode("latin-1")).decode("utf-8")
        text = auth.text_to_sign(nonce, self.command, decoded_path, self.query, hostname)
        return hmac.compare_digest(auth.mac(text, token.mac_key), mac)

    def _key_service(self, standin: Standin):
        keys = standin.catalogue.keyservice
        parts = self.rest.strip("/").split("/")
        if len(parts) >= 3 and parts[:2] == ["v1", "resource_keys"]:
            key_id = parts[2]
            if len(parts) == 4 and parts[3] == "signs":
                if keys.raw_key(key_id) is None:
                    return self._json(404, {"code": "KEY/NOT_FOUND", "message": "resource key not found"})
                return self._json(200, {"nonce": keys.issue_nonce(key_id)})
            if len(parts) == 3:
                query = parse_qs(self.query)
                status, value = keys.answer(key_id, query.get("nonce", [""])[0],
                                            query.get("sign", [""])[0])
                return self._json(status, value)
        return self._json(404, {"code": "NOT_FOUND", "message": "no such api"})

    def _uc_gateway(self, standin: Standin):
        parts = self.rest.strip("/").split("/")
        if (self.command == "POST" and len(parts) == 5 and parts[:2] == ["v1.1", "tokens"]
                and parts[3:] == ["actions", "refresh"]):
            token = standin.tokens.refresh(parts[2])
            if token is None:
                return self._json(401, {"code": "UC/AUTH_TOKEN_EXPIRED",
                                        "message": "refresh token invalid or expired"})
            return self._json(201, standin.tokens.response_body(token))
        if self.command == "GET" and len(parts) == 3 and parts[:2] == ["v1.1", "users"]:
            session = parse_qs(self.query).get("session_id", [""])[0]
            _, state = standin.tokens.lookup(session)
            if state != "ok" or parts[2] != standin.tokens.user_id:
                return self._json(401, {"code": "UC/AUTH_INVALID_TOKEN", "message": "invalid token"})
            return self._json(200, {"user_id": int(parts[2]), "nick_name": "测试教师",
                                    "org_exinfo": {"org_name": "示范小学"}})
        return self._json(404, {"code": "UC/API_NOT_FOUND", "message": "no such api"})

    # ------------------------------------------------------------------ answering

    def _serve(self, standin: Standin, body: Body, content_type: str, entry: FileEntry | None,
               faulty: bool, etag: str | None = None):
        """A static body with validators, Range per the faults, and mid-body faults."""
        faults = standin.faults
        size = body.size
        etag = etag or (entry.etag if entry else None)
        last_modified = formatdate(entry.last_modified if entry and entry.last_modified
                                   else 1_735_689_600, usegmt=True)
        wanted = parse_range(self.headers.get("Range"), size) if faults.range_supported else None
        if wanted is not None and not self._if_range_matches(etag, last_modified):
            wanted = None
        headers = {"Content-Type": content_type, "Last-Modified": last_modified}
        if etag:
            headers["ETag"] = etag
        if faults.range_supported:
            headers["Accept-Ranges"] = "bytes"
        if wanted == UNSATISFIABLE:
            headers["Content-Range"] = f"bytes */{size}"
            return self._simple(416, b"", content_type, headers)
        if wanted is None:
            status, start, end = 200, 0, size
        else:
            status, (start, end) = 206, wanted
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        self._start(status, end - start, headers)
        if self.command == "HEAD" or end == start:
            self.entry.outcome = "ok"
            return
        plan = self._plan(faults, end - start, faulty)
        outcome = send_body(self.connection, body, start, end, plan, standin._closing,
                            self._progress)
        self.entry.outcome = outcome
        if outcome != "ok":
            self.close_connection = True
        if outcome == "dropped":
            self._hard_close()

    def _plan(self, faults: Faults, length: int, faulty: bool) -> Plan:
        plan = Plan()
        bucket = faults.global_bucket()
        if bucket is not None:
            if faults.rate_limit_scope == "connection":
                bucket = TokenBucket(faults.rate_limit_bytes_per_s)
            plan.buckets.append(bucket)
        if not faulty:
            return plan
        drop = faults.take_drop_after(length)
        random_drop = faults.random_drop_within(length)
        cuts = [c for c in (drop, random_drop) if c is not None]
        if cuts:
            plan.drop_at = min(cuts)
            self._note("drop")
        stall = faults.take_stall(length)
        if stall is not None:
            plan.stall_at, plan.stall_seconds = stall
            self._note("stall")
        if faults.take_corrupt():
            plan.corrupt_at = length // 2
            self._note("corrupt")
        return plan

    def _if_range_matches(self, etag: str | None, last_modified: str) -> bool:
        validator = self.headers.get("If-Range")
        if not validator:
            return True
        validator = validator.strip()
        if validator.startswith(('"', "W/")):
            return etag is not None and validator == etag       # strong comparison
        try:
            return parsedate_to_datetime(validator) == parsedate_to_datetime(last_modified)
        except (TypeError, ValueError):
            return False

    def _progress(self, sent: int) -> None:
        self.entry.bytes_sent = sent

    def _note(self, fault: str) -> None:
        self.entry.fault = f"{self.entry.fault},{fault}" if self.entry.fault else fault

    def _start(self, status: int, length: int, headers: dict) -> None:
        self.entry.status = status
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def _simple(self, status: int, body: bytes, content_type: str, headers: dict | None = None):
        all_headers = {"Content-Type": content_type}
        all_headers.update(headers or {})
        self._start(status, len(body), all_headers)
        if self.command != "HEAD" and body:
            try:
                self.wfile.write(body)
                self.entry.bytes_sent = len(body)
            except OSError:
                self.close_connection = True
        self.entry.outcome = self.entry.outcome or "ok"

    def _json(self, status: int, value) -> None:
        self._simple(status, json.dumps(value, ensure_ascii=False).encode("utf-8"),
                     "application/json")

    def _no_such_key(self, host: str, request_id: str):
        return self._simple(404, auth.storage_error("NoSuchKey", "The specified key does not exist.",
                                                    request_id, host), "application/xml")

    def _invalid_argument(self, host: str, request_id: str, message: str):
        return self._simple(400, auth.storage_error("InvalidArgument", message, request_id, host),
                            "application/xml")

    def _hard_close(self) -> None:
        """Close now so the kernel sends RST (SO_LINGER 0 is set), not a FIN from the
        socketserver's shutdown(SHUT_WR) later. The read buffer holds the socket open, so it
        goes first; the writer holds no reference and must stay usable for http.server's
        final flush()."""
        try:
            self.rfile.close()
        except OSError:
            pass
        self.connection.close()

    def _drain_request_body(self) -> None:
        length = self.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > 0:
            self.request_body = self.rfile.read(min(int(length), 1 << 20))
        else:
            self.request_body = b""

    # ------------------------------------------------------------------- control

    def _control(self, standin: Standin, path: str):
        """``/_standin/…``: lets a stand-in in another process be steered over HTTP."""
        self.entry.host, self.entry.path = "_standin", path       # not added to the log
        name = path[len("/_standin/"):]
        if name == "faults":
            if self.command == "POST":
                try:
                    standin.faults.update(json.loads(self.request_body or b"{}"))
                except (ValueError, AttributeError, TypeError) as error:
                    return self._json(400, {"error": str(error)})
            return self._json(200, standin.faults.as_dict())
        if name == "token":
            return self._json(200, json.loads(standin.token_json(fresh=self.command == "POST")))
        if name == "hosts":
            return self._json(200, standin.hosts)
        if name == "revoke" and self.command == "POST":
            standin.revoke_tokens()
            return self._json(200, {"revoked": True})
        if name.startswith("touch/") and self.command == "POST":
            book = standin.touch_textbook(name[len("touch/"):])
            return self._json(200, {"id": book.id, "url": book.url, "md5": book.md5})
        if name == "log":
            since = int(parse_qs(self.query).get("since", ["0"])[0])
            return self._json(200, [asdict(e) for e in standin.log[since:]])
        return self._json(404, {"error": "unknown control"})
