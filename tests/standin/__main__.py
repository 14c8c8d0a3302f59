"""Run the stand-in as its own process (benches): ``python tests/standin [options]``.

Prints one JSON line ``{"base_url", "hosts", "token_json"}`` on stdout once serving, then
serves until SIGTERM/SIGINT. Faults can be given here or set later with
``POST {base_url}/_standin/faults`` and a JSON object body.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

if __package__ in (None, ""):                       # run as a folder: python tests/standin
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from standin import Standin


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="standin", description=__doc__.splitlines()[0])
    parser.add_argument("--captured", type=Path, help="folder of captured catalogue JSON")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--large", action="store_true", help="realistic sizes (small=False)")
    parser.add_argument("--lesson-books", type=int)
    parser.add_argument("--lessons-per-book", type=int)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--faults", default="{}", help='JSON, e.g. {"rate_limit_bytes_per_s": 1250000}')
    args = parser.parse_args(argv)
    standin = Standin(args.captured, seed=args.seed, small=not args.large,
                      lesson_books=args.lesson_books, lessons_per_book=args.lessons_per_book,
                      port=args.port)
    standin.faults.update(json.loads(args.faults))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(json.dumps({"base_url": standin.base_url, "hosts": standin.hosts,
                      "token_json": standin.token_json()}, ensure_ascii=False), flush=True)
    stop.wait()
    standin.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
