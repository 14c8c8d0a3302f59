"""The "before" reference for bench/serve.py: Flask ``send_file`` on stock waitress.

This is how a blob would be served without Shuqiao's content path: a ranged request is
answered by Werkzeug's range iterator, so a waitress worker thread is held for as long
as the client reads, and waitress keeps its default socket buffer. ``/`` is a trivial
page to probe latency with.

Usage: python bench/flask_send_file.py FILE --threads N   (prints "Serving on URL")
"""

from __future__ import annotations

import argparse

from flask import Flask, send_file
from waitress import create_server

PAGE = "<!doctype html><title>reference</title><p>Flask send_file on stock waitress</p>\n"


def make_app(path: str) -> Flask:
    app = Flask("reference")

    @app.route("/")
    def page():
        return PAGE

    @app.route("/content/file.bin")
    def content():
        return send_file(path, mimetype="application/octet-stream", conditional=True)

    return app


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("file")
    p.add_argument("--threads", type=int, default=4, help="waitress worker threads")
    args = p.parse_args()
    # Everything else stays at waitress's defaults: that is the point of the reference.
    server = create_server(make_app(args.file), host="127.0.0.1", port=0, threads=args.threads)
    print(f"Serving on http://127.0.0.1:{server.effective_port}/", flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
