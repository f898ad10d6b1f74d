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
        query = parse_qs(urlsplit(self.path).query)
        delay = query.get("delay_ms", ["0"])[0]
        if delay.isdigit():
            time.sleep(min(int(delay), 2000) / 1000)
        stall = query.get("stall_ms", ["0"])[0]
        if stall.isdigit() and int(stall) > 0 and self._stalled(min(int(stall), 2000) / 1000):
            return
        super().do_GET()

    def _stalled(self, seconds: float) -> bool:
        """`?stall_ms=800`: send an HTML page up to its `<body`, wait, then the rest (a document that has
        committed but is still being parsed, as a slow server's is); False for a file that is not one."""
        path = Path(self.translate_path(self.path))
        if path.suffix != ".html" or not path.is_file():
            return False
        data = path.read_bytes()
        cut = max(0, data.find(b"<body"))
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[:cut])
        self.wfile.flush()
        time.sleep(seconds)
        self.wfile.write(data[cut:])
        return True


def serve_dir(directory: Path) -> tuple[ThreadingHTTPServer, str]:
    """Serve `directory` over HTTP on 127.0.0.1 (`?delay_ms=N` delays an answer, `?stall_ms=N` stalls an HTML
    page's body); returns server and base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(directory)))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"
