"""`shuqiao export`, `shuqiao import` and `shuqiao feed-key` on the command line: a USB drive
carries a signed pack from one appliance to another; a tampered pack is refused whole."""

from __future__ import annotations

from pathlib import Path

from test_cli import run


def test_usb_round_trip_and_tampering(tmp_path):
    source, target, usb = tmp_path / "a", tmp_path / "b", tmp_path / "usb"
    pdf = tmp_path / "课件.pdf"
    pdf.write_bytes(b"%PDF-1.4\n" + b"courseware " * 2000)
    rid = run("add", str(pdf), "--title", "分数课件", "--subject", "数学", home=source).stdout.strip()
    exported = run("export", str(usb), "--select", f"subject=数学", home=source)
    assert "exported" in exported.stdout and "1 resources" in exported.stdout
    key = run("feed-key", home=source).stdout
    snippet = key[key.index("[feed_trusted_keys]"):]
    target.mkdir()
    (target / "shuqiao.toml").write_text(snippet, encoding="utf-8")

    # Tamper with one byte of the blob: refused, nothing stored.
    blob = next(p for p in (usb / "blobs").rglob("*") if p.is_file())
    original = blob.read_bytes()
    blob.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    refused = run("import", str(usb), home=target, check=False)
    assert refused.returncode == 1, refused.stdout
    status = run("status", "--json", home=target, check=False).stdout
    assert '"resources": 0' in status

    blob.write_bytes(original)
    imported = run("import", str(usb), home=target)
    assert "imported" in imported.stdout
    listing = run("status", "--json", home=target).stdout
    assert '"resources": 1' in listing
    assert Path(target / "catalog.db").exists() and rid
