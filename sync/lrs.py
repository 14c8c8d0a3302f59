"""HTTP to a Learning Record Store (xAPI 1.0.3): post statements, classify the answer.

Every answer becomes an :class:`Outcome` whose ``kind`` tells the uploader what to do:

===========  ==================================================  ======================
kind         when                                                the uploader
===========  ==================================================  ======================
ok           200 (ids stored now; already-stored ones omitted),  marks all delivered
             204 (all were already there)
conflict     409: the LRS has a different statement with an id   splits the batch; a
                                                                 lone one → conflict
invalid      400 / 422: the LRS refuses a statement              splits; a lone one →
                                                                 quarantined (invalid)
too-large    413                                                 splits the batch
auth         401 / 403: wrong lrs_user / lrs_password            backs off, reports
not-lrs      404 / 405: lrs_url does not point at an xAPI LRS    backs off, reports
server       429, 5xx, anything else                             backs off (Retry-After)
offline      connection refused, DNS, network unreachable        backs off, probes
timeout      no answer within lrs_timeout_seconds                backs off
tls          the certificate cannot be verified (lrs_ca_file)    backs off, reports
===========  ==================================================  ======================

Statements travel as their frozen JSON, joined into an array without re-encoding, so the
bytes sent are exactly those stored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import requests

XAPI_VERSION = "1.0.3"
TRANSIENT = ("auth", "not-lrs", "server", "offline", "timeout", "tls")


@dataclass
class Outcome:
    kind: str
    status: int | None = None
    detail: str = ""
    stored_ids: list[str] = field(default_factory=list)
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.kind == "ok"

    def describe(self) -> str:
        status = f"HTTP {self.status}: " if self.status else ""
        return f"{self.kind} ({status}{self.detail})" if self.detail or status else self.kind


def _detail(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(body, dict) and "detail" in body:
        body = body["detail"]
    text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    return text[:1000]


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def classify(response: requests.Response) -> Outcome:
    status = response.status_code
    if status == 204:
        return Outcome("ok", status)
    if status == 200:
        try:
            ids = response.json()
        except ValueError:
            ids = []
        return Outcome("ok", status, stored_ids=ids if isinstance(ids, list) else [])
    kind = {409: "conflict", 400: "invalid", 422: "invalid", 413: "too-large", 401: "auth",
            403: "auth", 404: "not-lrs", 405: "not-lrs"}.get(status, "server")
    return Outcome(kind, status, _detail(response), retry_after=_retry_after(response))


class LrsClient:
    """One LRS endpoint (``lrs_url``) with Basic auth; reuse it for a whole pass."""

    def __init__(self, url: str, user: str = "", password: str = "", *, timeout: float = 30,
                 ca_file: str = ""):
        self.url = url if url.endswith("/") else url + "/"
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers.update({"X-Experience-API-Version": XAPI_VERSION,
                                     "User-Agent": "shuqiao-usage-sync"})
        if user or password:
            self.session.auth = (user, password)
        # Passed on every call: a session-level verify loses to REQUESTS_CA_BUNDLE.
        self.verify: str | bool = ca_file or True

    @classmethod
    def from_config(cls, config) -> "LrsClient":
        return cls(config.lrs_url, config.lrs_user, config.lrs_password,
                   timeout=config.lrs_timeout_seconds, ca_file=config.lrs_ca_file)

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> "LrsClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs) -> tuple[Outcome, requests.Response | None]:
        try:
            response = self.session.request(method, self.url + path, timeout=self.timeout,
                                            verify=self.verify, **kwargs)
        except requests.exceptions.SSLError as error:
            return Outcome("tls", detail=str(error)[:300]), None
        except (requests.exceptions.ConnectTimeout, requests.exceptions.ReadTimeout) as error:
            return Outcome("timeout", detail=str(error)[:300]), None
        except requests.exceptions.RequestException as error:
            return Outcome("offline", detail=str(error)[:300]), None
        with response:
            response.content  # read it all, then release the connection
        return classify(response), response

    def post(self, bodies: list[str]) -> Outcome:
        """POST frozen statements (JSON texts) as one array."""
        payload = ("[" + ",".join(bodies) + "]").encode("utf-8")
        outcome, _ = self._call("POST", "statements", data=payload,
                                headers={"Content-Type": "application/json; charset=utf-8"})
        return outcome

    def probe(self) -> Outcome:
        """A small authenticated read: is the LRS there, and do our credentials work?

        (Ralph has no ``/about``, so this asks for one statement instead.)
        """
        outcome, response = self._call("GET", "statements", params={"limit": 1})
        if outcome.kind == "ok" and response is not None:
            try:
                ok = isinstance(response.json(), dict) and "statements" in response.json()
            except ValueError:
                ok = False
            if not ok:
                return Outcome("not-lrs", response.status_code,
                               "the answer is not an xAPI statement result")
        return outcome

    def get_statement(self, statement_id: str) -> dict | None:
        """The LRS's copy of one statement (to explain a 409), or None."""
        try:
            with self.session.get(self.url + "statements", params={"statementId": statement_id},
                                  timeout=self.timeout, verify=self.verify) as response:
                if response.status_code == 200:
                    body = response.json()
                    return body if isinstance(body, dict) else None
        except (requests.RequestException, ValueError):
            pass
        return None
