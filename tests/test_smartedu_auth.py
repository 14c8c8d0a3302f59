"""The platform login token: MAC signing (§3.3), the pasted token, refresh with rotation,
and the "an administrator must log in again" state.

Refresh runs against a small real HTTP server on 127.0.0.1 that rotates refresh tokens the
way uc-gateway does (a refresh token works once); the auth matrix against the platform
stand-in (401, strict objects, expiry) is in tests/test_smartedu_fetch.py.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cache.sources import smartedu_auth as auth
from cache.sources.smartedu import HostMap, SmartEduSource
from cache.sources.base import ErrorKind
from conftest import make_config

DOC_URL = ("https://r2-ndr-private.ykt.cbern.com.cn/edu_product/esp/assets/"
           "00000000-0000-0000-0000-000000000001.pkg/%E6%A0%B7%E4%BE%8B.pdf")


def test_mac_matches_the_reference_vector():
    nonce = "1700000000000:K3J9QX2A"
    assert auth.signed_text("get", DOC_URL, nonce) == (
        "1700000000000:K3J9QX2A\nGET\n/edu_product/esp/assets/00000000-0000-0000-0000-"
        "000000000001.pkg/样例.pdf\nr2-ndr-private.ykt.cbern.com.cn\n")
    assert auth.mac_signature("example-mac-key", "GET", DOC_URL, nonce) == \
        "Q2TPR24b1fDsjvopY9huMI3grNRob3rnV3DRdUq732A="


def test_signature_covers_the_mapped_url_without_port_and_with_query():
    mapped = HostMap({"r2-ndr-private.ykt.cbern.com.cn":
                      "http://127.0.0.1:8123/r2-ndr-private.ykt.cbern.com.cn"}).map(
        "https://r2-ndr-private.ykt.cbern.com.cn/a/义务 教育.pdf?x=1")
    assert mapped == ("http://127.0.0.1:8123/r2-ndr-private.ykt.cbern.com.cn/a/"
                      "%E4%B9%89%E5%8A%A1%20%E6%95%99%E8%82%B2.pdf?x=1")
    text = auth.signed_text("GET", mapped, "1:ABCDEFGH")
    assert text == "1:ABCDEFGH\nGET\n/r2-ndr-private.ykt.cbern.com.cn/a/义务 教育.pdf?x=1\n127.0.0.1\n"


def test_nonce_format_and_clock_difference():
    nonce = auth.make_nonce(diff_ms=5000, now_ms=1_700_000_000_000)
    assert re.fullmatch(r"1700000005000:[1-9A-Z]{8}", nonce)
    assert len({auth.make_nonce() for _ in range(50)}) == 50


def _inner(**overrides):
    inner = {"access_token": "AT1", "refresh_token": "RT1", "mac_key": "mk",
             "expires_at": "2030-01-01T08:00:00.000+0800", "user_id": 4501, "diff": 250}
    inner.update(overrides)
    return inner


@pytest.mark.parametrize("shape", ["wrapper", "storage", "inner", "wrapper-dict"])
def test_pasted_token_shapes(shape):
    inner = _inner()
    wrapper = {"value": json.dumps(inner), "expire": 1893456000000}
    text = {
        "wrapper": json.dumps(wrapper),
        "storage": json.dumps({f"ND_UC_AUTH-{auth.SDP_APP_ID}&ncet-xedu&token":
                               json.dumps(wrapper), "other": "x"}),
        "inner": json.dumps(inner),
        "wrapper-dict": json.dumps({"value": inner}),
    }[shape]
    token = auth.parse_token_text(text)
    assert (token.access_token, token.refresh_token, token.mac_key) == ("AT1", "RT1", "mk")
    assert token.user_id == "4501" and token.diff == 250
    assert token.expires_at == 1893456000.0  # 2030-01-01 00:00 UTC


@pytest.mark.parametrize("text", ["", "not json", "[]", '{"value": "{}"}',
                                  '{"access_token": ""}'])
def test_unusable_pastes_are_refused(text):
    with pytest.raises(auth.TokenError):
        auth.parse_token_text(text)


def test_headers_per_mode():
    token = auth.parse_token_text(json.dumps(_inner()))
    url = "http://127.0.0.1:1/r1-ndr-private.ykt.cbern.com.cn/x.pdf"
    mac = auth.auth_headers("auto", token, "GET", url)
    assert re.fullmatch(r'MAC id="AT1",nonce="\d+:[1-9A-Z]{8}",mac="[A-Za-z0-9+/]{43}="',
                        mac["X-ND-AUTH"])
    nonce = re.search(r'nonce="([^"]+)"', mac["X-ND-AUTH"]).group(1)
    expected = auth.mac_signature("mk", "GET", url, nonce)
    assert f'mac="{expected}"' in mac["X-ND-AUTH"]
    assert mac["Authorization"] == "Bearer AT1"
    assert auth.auth_headers("bearer", token, "GET", url) == {"Authorization": "Bearer AT1"}
    assert auth.auth_headers("placeholder", token, "GET", url)["X-ND-AUTH"] == \
        'MAC id="AT1",nonce="0",mac="0"'
    assert auth.auth_headers("none", token, "GET", url) == {}
    assert auth.auth_headers("auto", None, "GET", url) == {}
    no_key = auth.parse_token_text(json.dumps(_inner(mac_key="")))
    assert auth.effective_mode("auto", no_key) == "placeholder"


# ------------------------------------------------------------------- refresh and state

class _UcGateway:
    """POST /v1.1/tokens/{refresh}/actions/refresh → 201 with a rotated pair, like
    uc-gateway: each refresh token works once; ``refuse`` makes every refresh fail (401)."""

    def __init__(self):
        self.valid = {"RT1"}
        self.calls = 0
        self.refuse = False
        self.fail_5xx = False
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                gateway.calls += 1
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                match = re.fullmatch(r"/uc/v1\.1/tokens/([^/]+)/actions/refresh", self.path)
                if gateway.fail_5xx:
                    return self._send(503, {"code": "UC/UNAVAILABLE"})
                if not match or gateway.refuse or match.group(1) not in gateway.valid:
                    return self._send(401, {"code": "UC/REFRESH_TOKEN_INVALID"})
                gateway.valid.discard(match.group(1))
                number = gateway.calls + 1
                gateway.valid.add(f"RT{number}")
                self._send(201, {"access_token": f"AT{number}", "refresh_token": f"RT{number}",
                                 "mac_key": f"mk{number}", "user_id": 4501,
                                 "expires_at": auth._format_time(time.time() + 7 * 86400)})

            def _send(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/uc"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def gateway():
    server = _UcGateway()
    yield server
    server.close()


@pytest.fixture
def config(tmp_path, gateway):
    return make_config(tmp_path / "home", smartedu_hosts={auth.UC_HOST: gateway.url})


def _paste(config, seconds_left: float, **overrides):
    inner = _inner(expires_at=auth._format_time(time.time() + seconds_left), **overrides)
    wrapper = {"value": json.dumps(inner), "expire": int((time.time() + seconds_left) * 1000)}
    return auth.save_pasted_token(config, json.dumps(wrapper))


def _source(config) -> SmartEduSource:
    from cache.sources.smartedu import from_config

    return from_config(config)


def test_no_token_is_an_alert(config):
    state = auth.token_state(config)
    assert state["state"] == "missing" and state["alert"]
    assert "登录" in state["message_zh"] and "log in" in state["message_en"]


def test_a_fresh_token_is_used_as_is(config, gateway):
    state = _paste(config, 6 * 86400)
    assert state["state"] == "ok" and not state["alert"] and state["user_id"] == "4501"
    source = _source(config)
    token = source.tokens.ensure_fresh()
    assert token.access_token == "AT1" and gateway.calls == 0


def test_refresh_before_expiry_rotates_and_persists(config, gateway):
    _paste(config, 3600)                           # less than a day left: refresh now
    assert auth.token_state(config)["state"] == "expiring"
    source = _source(config)
    token = source.tokens.ensure_fresh()
    assert (token.access_token, token.refresh_token, token.mac_key) == ("AT2", "RT2", "mk2")
    assert gateway.calls == 1
    # Written back atomically in the pasted (localStorage) shape, new refresh token kept.
    stored = json.loads(auth.token_path(config).read_text())
    inner = json.loads(stored["value"])
    assert inner["refresh_token"] == "RT2" and inner["access_token"] == "AT2"
    assert inner["diff"] == 250
    assert not list(auth.token_path(config).parent.glob(".*.tmp"))
    state = auth.token_state(config)
    assert state["state"] == "ok" and state["last_refresh"]
    # Another process (a second manager) reads the rotated token and does not refresh.
    other = _source(config)
    assert other.tokens.ensure_fresh().access_token == "AT2"
    assert gateway.calls == 1


def test_expired_token_is_refreshed(config, gateway):
    _paste(config, -60)
    assert auth.token_state(config)["state"] == "expired"
    assert _source(config).tokens.ensure_fresh().access_token == "AT2"


def test_broken_refresh_chain_raises_the_alert_and_a_paste_clears_it(config, gateway):
    _paste(config, 3600)
    gateway.refuse = True
    source = _source(config)
    assert source.tokens.ensure_fresh().access_token == "AT1"   # still usable for now
    state = auth.token_state(config)
    assert state["state"] == "needs_login" and state["alert"]
    assert state["message_zh"] == "需要管理员重新登录平台。"
    assert state["message_en"] == "An administrator must log in to the platform again."
    # The admin logs in again and pastes a new token: the alert is gone.
    gateway.refuse = False
    _paste(config, 6 * 86400, access_token="AT-new", refresh_token="RT1")
    assert auth.token_state(config)["state"] == "ok"
    assert not source.tokens.needs_login()


def test_unreachable_account_service_is_not_an_alert(config, gateway):
    _paste(config, 3600)
    gateway.fail_5xx = True
    source = _source(config)
    with pytest.raises(auth.RefreshError) as caught:
        source.tokens.refresh()
    assert not caught.value.final
    assert auth.token_state(config)["state"] == "expiring"


def test_a_401_refreshes_once_then_alerts(config, gateway):
    _paste(config, 6 * 86400)
    source = _source(config)
    source.request("https://r1-ndr-private.ykt.cbern.com.cn/x.pdf")
    # The platform refuses our token: one refresh, and the request is worth repeating.
    assert source.classify(401, b"<html>401 Authorization Required</html>", None) \
        is ErrorKind.RETRY_SAME
    assert source.tokens.current().access_token == "AT2"
    # Refused again and again with the new token (requests already on the wire may carry
    # the old one, so a few refusals are tolerated), then the alert.
    kinds = [source.classify(401, b"", None) for _ in range(auth.STALE_REFUSALS + 1)]
    assert kinds[-1] is ErrorKind.AUTH
    assert auth.token_state(config)["state"] == "needs_login"
    assert gateway.calls == 1


def test_no_token_means_auth_at_once(config):
    source = _source(config)
    source.request("https://r1-ndr-private.ykt.cbern.com.cn/x.pdf")
    assert source.classify(401, b"", None) is ErrorKind.AUTH


def test_strict_object_refusing_a_placeholder_needs_a_real_mac(config, gateway):
    _paste(config, 6 * 86400, mac_key="")
    source = _source(config)
    request = source.request("https://r1-ndr-private.ykt.cbern.com.cn/x.pdf")
    assert request.headers["X-ND-AUTH"].endswith('nonce="0",mac="0"')
    xml = b"<?xml version='1.0'?><Error><Code>InvalidArgument</Code></Error>"
    # The first refusals may be a burst (same body): back off; the third is the object.
    assert [source.classify(400, xml, None) for _ in range(3)] == [
        ErrorKind.RETRY_SAME, ErrorKind.RETRY_SAME, ErrorKind.AUTH]
    assert "mac_key" in auth.token_state(config)["reason"]
    # With a real MAC the same answer is burst throttling: back off, same mirror.
    _paste(config, 6 * 86400)
    source = _source(config)
    source.request("https://r1-ndr-private.ykt.cbern.com.cn/x.pdf")
    assert source.classify(400, xml, None) is ErrorKind.RETRY_SAME
    assert source.classify(400, b"", None) is ErrorKind.RETRY_SAME


def test_other_answers(config):
    source = _source(config)
    source.request("https://r1-ndr-private.ykt.cbern.com.cn/x.pdf")
    assert source.classify(None, b"", ConnectionError()) is ErrorKind.FAILOVER
    assert source.classify(503, b"", None) is ErrorKind.FAILOVER
    assert source.classify(404, b"", None) is ErrorKind.NOT_FOUND
    # Hosts we send no token to: a refusal is about the object, not our login.
    source.request("https://r1-ndr.ykt.cbern.com.cn/page/1.jpg")
    assert source.classify(403, b"<Error><Code>AccessDenied</Code></Error>", None) \
        is ErrorKind.NOT_FOUND
    source.request("https://ndvideo-key.ykt.eduyun.cn/v1/resource_keys/abc/signs")
    assert source.classify(403, b'{"code": "KEY/SIGN_INVALID"}', None) is ErrorKind.FAILOVER
    assert auth.token_state(config)["state"] == "missing"


def test_refresh_loop_keeps_the_token_fresh(config, gateway):
    _paste(config, 3600)
    source = _source(config)
    loop = auth.RefreshLoop(source.tokens, interval=0.05)
    loop.start()
    try:
        deadline = time.time() + 5
        while time.time() < deadline and gateway.calls == 0:
            time.sleep(0.02)
    finally:
        loop.stop()
    assert gateway.calls == 1
    assert source.tokens.current().access_token == "AT2"
