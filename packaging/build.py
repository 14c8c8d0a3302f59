"""Build the one-file `dist/shuqiao` binary with PyInstaller (what `make dist` runs).

    python packaging/build.py            # from the repository root, in the venv

Uses packaging/shuqiao.spec; intermediate files go to build/pyinstaller/, the result
to dist/shuqiao. Both folders are build output and stay out of git.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "packaging" / "shuqiao.spec"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--distpath", default=str(ROOT / "dist"),
                        help="where the binary goes (default: dist/)")
    parser.add_argument("--workpath", default=str(ROOT / "build" / "pyinstaller"),
                        help="PyInstaller's scratch folder (default: build/pyinstaller/)")
    args = parser.parse_args(argv)

    try:
        import PyInstaller  # noqa: F401
    except ImportError:
        print("PyInstaller is missing: pip install pyinstaller", file=sys.stderr)
        return 2

    started = time.monotonic()
    # --clean: a stale analysis cache has bitten us after dependency upgrades, and a
    # full rebuild is only ~1-2 minutes. Run as a subprocess so the spec executes in
    # a fresh interpreter with the repo root as working directory.
    cmd = [sys.executable, "-m", "PyInstaller", "--noconfirm", "--clean",
           "--log-level", "WARN",
           "--distpath", args.distpath, "--workpath", args.workpath, str(SPEC)]
    result = subprocess.run(cmd, cwd=ROOT)
    if result.returncode != 0:
        return result.returncode

    binary = Path(args.distpath) / "shuqiao"
    if not binary.is_file():
        print(f"build finished but {binary} is missing", file=sys.stderr)
        return 1
    size_mb = binary.stat().st_size / 1e6
    print(f"built {binary} ({size_mb:.1f} MB) in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
