"""systemd/shuqiao.service: it verifies clean, it is hardened, and the app speaks Type=notify.

The unit's behaviour in a real boot (two-process one-file binary, NotifyAccess, the
sandbox, mDNS through it) was checked in a systemd-nspawn container; systemd/README.md
says how. These tests are the fast part that runs everywhere.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from notify import check_notify_lifecycle

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "shuqiao.service"
EXEC_PATH = "/usr/local/bin/shuqiao"  # where systemd/README.md installs the binary
MAX_EXPOSURE = 2.0  # systemd-analyze security: 0 = locked down, 10 = wide open

ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not installed")


def _host_unit_dir() -> Path | None:
    for candidate in ("/usr/lib/systemd/system", "/lib/systemd/system"):
        if Path(candidate, "multi-user.target").exists():
            return Path(candidate)
    return None


def _verify_root(tmp_path: Path, *, with_binary: bool = True, extra: str = "") -> Path:
    """A throwaway root for `systemd-analyze verify --root`: the unit exactly as shipped
    (plus ``extra`` lines, for the control tests), the host's stock units it depends on,
    and a stand-in executable at the install path. With --root, verify resolves
    ExecStart inside that root, so the shipped ExecStart is checked unchanged and
    nothing is written to the real /usr/local/bin."""
    host_units = _host_unit_dir()
    if host_units is None:
        pytest.skip("no systemd unit directory on this machine")
    root = tmp_path / "root"
    # Copied, not symlinked: verify resolves symlinks inside the root. ~1 MB.
    shutil.copytree(host_units, root / "usr/lib/systemd/system", symlinks=True)
    unit = root / "etc/systemd/system/shuqiao.service"
    unit.parent.mkdir(parents=True)
    unit.write_bytes(UNIT.read_bytes() + extra.encode())
    if with_binary:
        binary = root / EXEC_PATH.lstrip("/")
        binary.parent.mkdir(parents=True)
        binary.write_text("#!/bin/sh\nexit 0\n")
        binary.chmod(0o755)
    return root


def _verify(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([ANALYZE, "verify", f"--root={root}", "shuqiao.service"],
                          capture_output=True, text=True, timeout=60)


@needs_analyze
def test_unit_verifies_without_any_warning(tmp_path):
    assert EXEC_PATH in UNIT.read_text()
    result = _verify(_verify_root(tmp_path))
    # verify exits 0 on unknown keys and bad values and only warns: any output fails.
    assert result.stderr == ""
    assert result.returncode == 0
    assert result.stdout == ""


@needs_analyze
def test_verify_catches_what_the_test_relies_on(tmp_path):
    """Controls: the check above would see a missing binary and a typo."""
    missing = _verify(_verify_root(tmp_path / "a", with_binary=False))
    assert missing.returncode != 0 and EXEC_PATH in missing.stderr
    typo = _verify(_verify_root(tmp_path / "b", extra="[Service]\nProtectSytem=strict\n"))
    assert "ProtectSytem" in typo.stderr


@needs_analyze
def test_unit_is_hardened():
    result = subprocess.run(
        [ANALYZE, "security", "--offline=yes", "--no-pager",
         # the same gate as the parsed number below, on systemd's 0-100 scale
         f"--threshold={int(MAX_EXPOSURE * 10)}", str(UNIT)],
        capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert match, result.stdout + result.stderr
    exposure = float(match.group(1))
    print(f"systemd-analyze security: exposure {exposure}")
    assert exposure <= MAX_EXPOSURE, result.stdout
    assert result.returncode == 0, result.stdout + result.stderr


def test_unit_keeps_what_the_one_file_binary_needs():
    """Settings the one-file binary and the LAN depend on; systemd/README.md says why."""
    settings = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    # READY=1 comes from the bootloader's child process, not the main PID.
    assert settings["NotifyAccess"] == ["all"]
    # SIGTERM to the bootloader only; it forwards it to the app once.
    assert settings["KillMode"] == ["mixed"]
    # psutil's memory, CPU and uptime figures need /proc/meminfo and /proc/stat.
    assert "ProcSubset" not in settings
    # mDNS is multicast on the LAN: no IP filtering, no private network.
    assert "IPAddressDeny" not in settings and "PrivateNetwork" not in settings
    assert "Environment" in settings and "SHUQIAO_HOME=/var/lib/shuqiao" in settings["Environment"]


# --------------------------------------------------------------- the notify protocol

@pytest.mark.skipif(not (ROOT / "app.py").exists(), reason="app.py not written yet")
def test_app_speaks_type_notify(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHUQIAO_")}
    check_notify_lifecycle([sys.executable, str(ROOT / "app.py"), "serve", "--home",
                            str(tmp_path / "home"), "--port", "0", "--no-mdns"], env,
                           cwd=tmp_path)


# Read at import: conftest's autouse fixture strips SHUQIAO_* from the environment of
# every test (they are the app's settings), and these only steer the boot check.
BOOT_CHECK_ENV = {k: v for k, v in os.environ.items()
                  if k in ("SHUQIAO_BOOT_CHECK", "SHUQIAO_BINARY", "SHUQIAO_BOOTCHECK_DIR")}


@pytest.mark.skipif(BOOT_CHECK_ENV.get("SHUQIAO_BOOT_CHECK") != "1",
                    reason="set SHUQIAO_BOOT_CHECK=1 (root, systemd-nspawn, debootstrap) "
                           "to boot the unit and dist/shuqiao in a container")
def test_unit_boots_in_a_container():
    """systemd/boot-check.sh: real systemd, the real binary, mDNS from a peer (~10 s once
    its Debian image is cached; the first run downloads it)."""
    binary = BOOT_CHECK_ENV.get("SHUQIAO_BINARY", str(ROOT / "dist" / "shuqiao"))
    if not Path(binary).is_file():
        pytest.skip(f"no {binary}: run `make dist`")
    result = subprocess.run(
        ["sh", str(ROOT / "systemd" / "boot-check.sh"), binary], cwd=ROOT,
        env={**os.environ, **BOOT_CHECK_ENV, "PYTHON": sys.executable},
        capture_output=True, text=True, timeout=900)
    print(result.stdout[-3000:])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "PASS: boot check" in result.stdout
