"""The demo's HTTP layer: the standard library's threading HTTP server, three routes.

``GET /``             the page (one static HTML file with its script: no web framework, no JS build)
``GET /api/info``     the model's image / text inputs, decodable targets and defaults (:meth:`DemoApp.info`)
``POST /api/generate``  a JSON request in (``Content-Type: application/json``), the outputs out
                      (:meth:`DemoApp.respond`); errors are ``{"error": "one line"}`` with status 400 (the
                      request's to fix), 413 / 415 (too large, not JSON) or 500 (a bug)
"""

from __future__ import annotations

import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from .app import MAX_BODY_BYTES, DemoApp

log = logging.getLogger(__name__)


def page_html() -> bytes:
    """The page, as shipped in the package."""
    return resources.files("fourm_demo").joinpath("page.html").read_bytes()


class DemoServer(ThreadingHTTPServer):
    """Serves one :class:`DemoApp` on ``(host, port)``; port 0 picks a free one (see :attr:`url`)."""

    daemon_threads = True

    def __init__(self, app: DemoApp, host: str = "127.0.0.1", port: int = 7860):
        self.app = app
        self.page = page_html()
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{'[' + host + ']' if ':' in str(host) else host}:{port}/"

    def start(self) -> threading.Thread:
        """Serve in a daemon thread (tests, notebooks); :meth:`stop` ends it."""
        thread = threading.Thread(target=self.serve_forever, name="fourm-demo", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: DemoServer
    server_version = "fourm-demo"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = urlsplit(self.path).path
        if path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, self.server.page, "text/html; charset=utf-8")
        elif path == "/api/info":
            self._json(HTTPStatus.OK, self.server.app.info())
        elif path == "/favicon.ico":
            self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no page {path!r}; the demo serves /, /api/info and "
                                                       f"POST /api/generate"})

    def do_POST(self) -> None:  # noqa: N802
        path = urlsplit(self.path).path
        if path != "/api/generate":
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no endpoint POST {path!r}; use POST /api/generate"})
            return
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != "application/json":  # also keeps other sites' pages from posting here (a CORS preflight)
            self.close_connection = True
            self._json(HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                       {"error": f"POST /api/generate takes Content-Type: application/json, got {ctype or 'none'!r}"})
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._json(HTTPStatus.LENGTH_REQUIRED, {"error": "the request has no Content-Length"})
            return
        if length > MAX_BODY_BYTES:
            self.close_connection = True  # the body is not read
            self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                       {"error": f"the request is {length / 2**20:.0f} MiB, more than the {MAX_BODY_BYTES // 2**20} "
                                 f"MiB accepted; send a smaller image"})
            return
        status, payload = self.server.app.respond(self.rfile.read(length))
        self._json(status, payload)

    def _json(self, status: int, payload: Any) -> None:
        self._send(status, json.dumps(payload, allow_nan=False).encode("utf-8"), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        log.info("%s %s", self.address_string(), format % args)
