"""The one-file binary from `make dist` (packaging/): it starts, answers, stops.

Which binary is tested:
- SHUQIAO_BUILD_DIST=1: build one now into a temp dir with packaging/build.py
  (about 1-2 minutes on 2 cores) and test that one;
- else SHUQIAO_BINARY=/path/to/shuqiao, if set;
- else dist/shuqiao from `make dist`; without it these tests skip.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from notify import check_notify_lifecycle

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30  # s; the one-file unpacks ~15 MB before Python starts
# Read at import: conftest's autouse fixture strips SHUQIAO_* from every test's
# environment (they are the app's settings); these two only choose the binary.
BUILD_DIST = os.environ.get("SHUQIAO_BUILD_DIST") == "1"
BINARY_ENV = os.environ.get("SHUQIAO_BINARY")


def _newest_source_mtime() -> float:
    newest = 0.0
    for top in ("app.py", "settings.py", "kiosk", "cache", "sync", "packaging"):
        path = ROOT / top
        files = path.rglob("*") if path.is_dir() else [path]
        for f in files:
            if f.is_file() and "__pycache__" not in f.parts:
                newest = max(newest, f.stat().st_mtime)
    return newest


@pytest.fixture(scope="module")
def binary(tmp_path_factory) -> Path:
    if BUILD_DIST:
        out = tmp_path_factory.mktemp("dist")
        started = time.monotonic()
        subprocess.run(
            [sys.executable, str(ROOT / "packaging" / "build.py"),
             "--distpath", str(out / "dist"), "--workpath", str(out / "build")],
            cwd=ROOT, check=True, timeout=900,
        )
        print(f"build took {time.monotonic() - started:.0f} s")
        return out / "dist" / "shuqiao"
    if BINARY_ENV:
        path = Path(BINARY_ENV)
        if not path.is_file():
            pytest.fail(f"SHUQIAO_BINARY={path} does not exist")
        return path
    path = ROOT / "dist" / "shuqiao"
    if not path.is_file():
        pytest.skip("no dist/shuqiao: run `make dist` first "
                    "(or set SHUQIAO_BUILD_DIST=1 to build it in the test)")
    if path.stat().st_mtime < _newest_source_mtime():
        # Testing yesterday's binary proves little; say so rather than fail.
        warnings.warn("dist/shuqiao is older than the sources: run `make dist` again")
    return path


def _clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SHUQIAO_") and k != "NOTIFY_SOCKET"}
    # The one-file unpacks itself under TMPDIR: point it into the test's folder
    # so we can check the unpacked copy is removed on exit.
    env["TMPDIR"] = str(tmp_path / "tmp")
    (tmp_path / "tmp").mkdir()
    return env


def test_binary_serves_and_stops_on_sigterm(binary, tmp_path):
    # Under systemd (Type=notify) READY=1 must get out of the bootloader's child process
    # too, and SIGTERM sent to the bootloader must reach the Python child.
    first_200 = check_notify_lifecycle(
        [str(binary), "serve", "--home", str(tmp_path / "home"), "--port", "0", "--no-mdns"],
        _clean_env(tmp_path), start_timeout=START_TIMEOUT)
    print(f"start to first 200: {first_200:.2f} s")
    assert not list((tmp_path / "tmp").glob("_MEI*")), "unpacked bundle left behind"


def binary_manifest(binary) -> bytes:
    from PyInstaller.archive.readers import CArchiveReader

    return CArchiveReader(str(binary)).extract("cache/sample/library.json")


def test_binary_bundles_data_and_metadata(binary):
    readers = pytest.importorskip("PyInstaller.archive.readers")
    # Data files by path, plus the module names inside the embedded PYZ archive.
    names = set(readers.pkg_archive_contents(str(binary), recursive=True))
    for folder in ("kiosk/templates/", "kiosk/static/"):
        assert any(n.startswith(folder) for n in names), f"{folder} not bundled"
    # The demo library: its manifest and every media file it lists.
    assert "cache/sample/library.json" in names
    manifest = json.loads(binary_manifest(binary))
    listed = [entry["path"] for item in manifest["resources"]
              for entry in item.get("files", []) + [
                  f for part in item.get("parts", []) for f in part.get("files", [])]]
    assert listed
    missing = [p for p in listed if f"cache/sample/{p}" not in names]
    not_in_tree = [p for p in missing if not (ROOT / "cache" / "sample" / p).is_file()]
    assert not missing, (
        f"library.json lists files the binary lacks: {missing}; of these, missing from "
        f"cache/sample/ in the tree as well (regenerate the samples): {not_in_tree}")
    # importlib.metadata.version("waitress") fails in the binary without it.
    assert any(re.match(r"waitress-[^/]+\.dist-info/METADATA$", n) for n in names)
    for unwanted in ("pytest", "playwright", "tkinter"):
        assert not any(n.split(".")[0] == unwanted for n in names), unwanted


def test_binary_size(binary):
    size_mb = binary.stat().st_size / 1e6
    print(f"{binary}: {size_mb:.1f} MB")
    # It is unpacked at every start and copied onto school servers by USB stick:
    # growth past this means something big slipped in (see packaging/README.md).
    assert size_mb < 40
