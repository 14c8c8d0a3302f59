"""HLS as the platform serves it (§4.4, §4.5): playlist parsing, the key handshake, segment
decryption, the local playlist. The whole fetch against the stand-in (segments stored,
resumed per segment, played with no platform contact) is in tests/test_smartedu_fetch.py.
"""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from cache.sources import hls

PLAYLIST = """#EXTM3U
#EXT-X-VERSION:3
#EXT-X-TARGETDURATION:10
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-PLAYLIST-TYPE:VOD
#EXT-X-KEY:METHOD=AES-128,URI="https://ndvideo-key.ykt.eduyun.cn/v1/resource_keys/0123456789abcdef0123456789abcdef",IV=0x00000000000000000000000000000000
#EXTINF:10.000000,
x-1280x720-true-aaaa-bbbb-00000.ts
#EXTINF:10.000000,
x-1280x720-true-aaaa-bbbb-00001.ts
#EXTINF:4.520000,
x-1280x720-true-aaaa-bbbb-00002.ts
#EXT-X-ENDLIST
"""
BASE = ("https://r1-ndr-private.ykt.cbern.com.cn/edu_product/esp/assets/v1.t/zh-CN/1700/"
        "videos/x-1280x720-true-aaaa-bbbb.m3u8")


def ts_bytes(packets: int, fill: int = 0) -> bytes:
    return b"".join(bytes([0x47, 0x1F, 0xFF, 0x10]) + bytes([fill]) * 184
                    for _ in range(packets))


def encrypt(plain: bytes, key: bytes, iv: bytes = bytes(16)) -> bytes:
    padder = padding.PKCS7(128).padder()
    data = padder.update(plain) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def test_parse_the_platform_playlist():
    playlist = hls.parse_media_playlist(PLAYLIST, BASE)
    assert (playlist.version, playlist.target_duration, playlist.media_sequence) == (3, 10, 0)
    assert playlist.playlist_type == "VOD" and playlist.ended
    assert [s.raw for s in playlist.segments] == [
        f"x-1280x720-true-aaaa-bbbb-{i:05d}.ts" for i in range(3)]
    assert playlist.segments[0].uri == BASE.rsplit("/", 1)[0] + "/x-1280x720-true-aaaa-bbbb-00000.ts"
    assert [s.duration for s in playlist.segments] == [10.0, 10.0, 4.52]
    key = playlist.segments[2].key
    assert key.method == "AES-128" and key.iv == bytes(16)
    assert key.uri.endswith("/resource_keys/0123456789abcdef0123456789abcdef")
    assert hls.key_id(key.uri) == "0123456789abcdef0123456789abcdef"


def test_iv_defaults_to_the_media_sequence():
    text = PLAYLIST.replace("#EXT-X-MEDIA-SEQUENCE:0", "#EXT-X-MEDIA-SEQUENCE:7").replace(
        ",IV=0x00000000000000000000000000000000", "")
    playlist = hls.parse_media_playlist(text, BASE)
    assert hls.segment_iv(playlist.segments[1]) == (8).to_bytes(16, "big")


@pytest.mark.parametrize("text, message", [
    ("<html>401 Authorization Required</html>", "no #EXTM3U"),
    ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nlow.m3u8\n", "master playlist"),
    ("#EXTM3U\n#EXT-X-ENDLIST\n", "no segments"),
    ("#EXTM3U\n#EXT-X-KEY:METHOD=SAMPLE-AES,URI=\"k\"\n#EXTINF:1,\na.ts\n", "unsupported"),
])
def test_bad_playlists(text, message):
    with pytest.raises(hls.HlsError, match=message):
        hls.parse_media_playlist(text, BASE)


def test_key_handshake_vector():
    assert hls.handshake_sign("5f1c2e", "0123456789abcdef0123456789abcdef") == "d42de74df7954f7a"
    assert hls.unwrap_key("0ibnmDA9Ertbeb35eJ9FLQ/vP2FAkrZ4+tK+/kHpFdo=",
                          "d42de74df7954f7a") == b"0123456789ABCDEF"
    with pytest.raises(hls.HlsError):
        hls.unwrap_key("0ibnmDA9Ertbeb35eJ9FLQ/vP2FAkrZ4+tK+/kHpFdo=", "0000000000000000")


def test_fetch_key_does_the_two_requests():
    uri = "https://ndvideo-key.ykt.eduyun.cn/v1/resource_keys/0123456789abcdef0123456789abcdef"
    asked = []

    def get(url: str) -> bytes:
        asked.append(url)
        if url.endswith("/signs"):
            return json.dumps({"nonce": "5f1c2e"}).encode()
        return json.dumps({"key": "0ibnmDA9Ertbeb35eJ9FLQ/vP2FAkrZ4+tK+/kHpFdo="}).encode()

    assert hls.fetch_key(uri, get) == b"0123456789ABCDEF"
    assert asked == [uri + "/signs", uri + "?nonce=5f1c2e&sign=d42de74df7954f7a"]
    with pytest.raises(hls.HlsError, match="nonce"):
        hls.fetch_key(uri, lambda url: b'{"code": "KEY/SIGN_INVALID"}')


def test_decrypt_and_check_segments():
    key = b"0123456789ABCDEF"
    plain = ts_bytes(20, fill=7)
    data = encrypt(plain, key)
    assert len(data) == hls.encrypted_size(len(plain))
    clear = hls.decrypt_segment(data, key, bytes(16))
    assert clear == plain
    hls.check_ts(clear)
    with pytest.raises(hls.HlsError, match="decrypt|MPEG-TS"):
        hls.check_ts(hls.decrypt_segment(data, b"FEDCBA9876543210", bytes(16)))
    with pytest.raises(hls.HlsError, match="whole AES blocks"):
        hls.decrypt_segment(data[:-1], key, bytes(16))
    with pytest.raises(hls.HlsError, match="MPEG-TS"):
        hls.check_ts(b"<html>" + bytes(182))


def test_totals_within_one_percent():
    hls.check_totals(91, 42_000_000, 91, 42_300_000)
    with pytest.raises(hls.HlsError, match="segments"):
        hls.check_totals(90, 42_000_000, 91, 42_000_000)
    with pytest.raises(hls.HlsError, match="add up"):
        hls.check_totals(91, 41_000_000, 91, 42_000_000)
    hls.check_totals(3, 10, None, None)


def test_local_playlist_has_no_key_and_local_segments():
    playlist = hls.parse_media_playlist(PLAYLIST, BASE)
    digests = [f"{i:064x}" for i in range(3)]
    text = hls.local_playlist(playlist, digests).decode()
    assert "EXT-X-KEY" not in text and "ykt" not in text and "http" not in text
    assert text.startswith("#EXTM3U\n#EXT-X-VERSION:3\n")
    assert text.rstrip().endswith("#EXT-X-ENDLIST")
    assert [line for line in text.splitlines() if not line.startswith("#")] == [
        f"/content/{d}" for d in digests]
    again = hls.parse_media_playlist(text, "http://appliance.lan/content/x")
    assert [s.duration for s in again.segments] == [10.0, 10.0, 4.52]
    assert all(s.key is None for s in again.segments)


def test_wrapped_key_is_base64_of_ecb():
    # What the key service does, from the doc: base64(AES-128-ECB(PKCS7(raw), key=sign)).
    sign = hls.handshake_sign("abc", "k" * 32)
    padder = padding.PKCS7(128).padder()
    data = padder.update(b"K" * 16) + padder.finalize()
    encryptor = Cipher(algorithms.AES(sign.encode()), modes.ECB()).encryptor()
    wrapped = base64.b64encode(encryptor.update(data) + encryptor.finalize()).decode()
    assert hls.unwrap_key(wrapped, sign) == b"K" * 16
