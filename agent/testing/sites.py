"""Static sites on 127.0.0.1 for tests and benchmarks."""

from __future__ import annotations

import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        # `?delay_ms=300` answers late, as a real server across a network does (bounded to 2 s)
        delay = parse_qs(urlsplit(self.path).query).get("delay_ms", ["0"])[0]
        if delay.isdigit():
            time.sleep(min(int(delay), 2000) / 1000)
        super().do_GET()


def serve_dir(directory: Path) -> tuple[ThreadingHTTPServer, str]:
    """Serve `directory` over HTTP on 127.0.0.1 (`?delay_ms=N` delays an answer); returns server and base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(directory)))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"
