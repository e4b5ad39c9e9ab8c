"""A real HTTP server on 127.0.0.1 that serves recorded responses laid out as <root>/<host>/<path>.

The demo serves the bundled samples with it; tests add routes for failures (HTTP 500, slow answers,
error bodies with status 200). It answers conditional requests (ETag, Last-Modified) like a publisher.
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import threading
import time
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

log = logging.getLogger(__name__)

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "crawlers" / "samples"
_FIXED_MTIME = formatdate(1_700_000_000, usegmt=True)  # samples never change, so neither does Last-Modified


@dataclass
class Route:
    """A response the server gives for one path (and query, if given), overriding the files."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/octet-stream"
    delay: float = 0.0
    headers: dict[str, str] | None = None


def _sniff(body: bytes, path: Path) -> str:
    guessed, _ = mimetypes.guess_type(path.name)
    if guessed and path.suffix not in ("", ".atom"):
        return guessed
    head = body.lstrip()[:100]
    if path.suffix == ".atom" or b"<feed" in head:
        return "application/atom+xml; charset=utf-8"
    if head.startswith((b"{", b"[")):
        return "application/json; charset=utf-8"
    if head.startswith(b"<?xml") or b"<rss" in head:
        return "application/xml; charset=utf-8"
    return "text/html; charset=utf-8"


def sample_file(root: Path, path_and_query: str) -> Path | None:
    """The recorded file for ``/<host>/<path>?<query>``: ``<path>@<query>`` first, then ``<path>``; None if neither."""
    parts = urlsplit(path_and_query)
    rel = unquote(parts.path).lstrip("/")
    candidates = [root / f"{rel}@{unquote(parts.query)}"] if parts.query else []
    candidates.append(root / rel)
    for path in candidates:
        try:
            path = path.resolve()
            if not path.is_relative_to(root.resolve()):  # no ../ escapes from the sample tree
                return None
            if path.is_file():
                return path
        except OSError:  # a query too long for a file name simply has no file of its own
            continue
    return None


class SampleServer:
    """Start with ``with SampleServer(root) as server:``; ``server.url`` is the mirror base URL."""

    def __init__(self, root: Path | None = None, port: int = 0) -> None:
        self.root = Path(root or SAMPLES_DIR).resolve()
        self.routes: dict[str, Route] = {}
        self.requests: list[str] = []
        self.bytes_sent = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                server._handle(self)

            def log_message(self, fmt: str, *args) -> None:
                log.debug("sample server: " + fmt, *args)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread: threading.Thread | None = None

    def add_route(self, path_and_query: str, route: Route) -> None:
        """Override one URL of the mirror, e.g. ``/www.gov.uk/api/content/x`` → HTTP 500."""
        self.routes[path_and_query] = route

    def start(self) -> "SampleServer":
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="sample-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> "SampleServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _resolve(self, raw_path: str) -> Route | None:
        parts = urlsplit(raw_path)
        for key in (raw_path, parts.path):
            if key in self.routes:
                return self.routes[key]
        path = sample_file(self.root, raw_path)
        if path is None:
            return None
        body = path.read_bytes()
        return Route(200, body, _sniff(body, path), headers={"Last-Modified": _FIXED_MTIME})

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.requests.append(handler.path)
        route = self._resolve(handler.path) or Route(404, b"not found", "text/plain")
        if route.delay:
            time.sleep(route.delay)
        status, body = route.status, route.body
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        headers = dict(route.headers or {})
        if status == 200:
            headers.setdefault("ETag", etag)
            inm = handler.headers.get("If-None-Match")
            ims = handler.headers.get("If-Modified-Since")
            if (inm and inm == headers["ETag"]) or (not inm and ims and ims == headers.get("Last-Modified")):
                status, body = 304, b""
        try:
            handler.send_response(status)
            if status != 304:
                handler.send_header("Content-Type", route.content_type)
            handler.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(body)
            with self._lock:
                self.bytes_sent += len(body)
        except (BrokenPipeError, ConnectionResetError):
            log.debug("sample server: client went away during %s", handler.path)


if __name__ == "__main__":
    import sys

    logging.basicConfig(level=logging.INFO)
    srv = SampleServer(port=int(sys.argv[1]) if len(sys.argv) > 1 else 8808)
    print(f"serving {srv.root} at {srv.url}", flush=True)
    srv.httpd.serve_forever()
