"""A site on 127.0.0.1 that echoes what is typed into it, in every place a page can show a value, and
an independent check that a text holds no spelling of a secret (for the secrets tests).

Pages (each laid out at fixed places, so a test knows where a screenshot shows what):
  /get     a GET form (`q`), as a search box         -> /echo?q=...   (Chromium's form encoding)
  /post    a POST form (`pw`), as a password box    -> 303 to /done?pw=... (the server's own encoding)
  /echo, /done  the value in text, in a refilled field, in a title, in a link, as JSON and as the raw query
  /masked?v=...  the value in text, a field, a placeholder, open and closed shadow roots, an iframe of
           this origin and one of another (localhost), percent-encoded, split across <b>; and a control text
"""

from __future__ import annotations

import html
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, unquote_plus, urlsplit

# Where the pages put things (CSS pixels of a 1280x800 viewport): name -> (left, top).
SPOTS = {
    "text": (40, 40), "field": (40, 100), "placeholder": (40, 160), "open_shadow": (40, 220),
    "closed_shadow": (40, 280), "encoded": (40, 340), "control": (40, 400), "split": (40, 460),
    "frame": (700, 40), "cross_frame": (700, 240),
}
FRAME_TEXT_AT = (10, 10)  # inside each iframe
STYLE = "position:absolute;margin:0;font:24px/30px monospace;white-space:pre;color:#000"
CONTROL_TEXT = "Nothing secret here at all"


def _at(name: str, extra: str = "") -> str:
    left, top = SPOTS[name]
    return f'style="{STYLE};left:{left}px;top:{top}px;{extra}"'


class SecretSite:
    """The echo site; `hits` keeps (method, raw path, raw body) of every request, as the browser sent it."""

    def __init__(self) -> None:
        self.hits: list[tuple[str, str, bytes]] = []
        site = self

        class _H(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: str = "", headers: dict[str, str] | None = None) -> None:
                data = body.encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                site.hits.append(("GET", self.path, b""))
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                first = {k: v[0] for k, v in query.items()}
                if parts.path == "/sw.js":
                    data = b"self.addEventListener('fetch', () => {});"
                    self.send_response(200)
                    self.send_header("Content-Type", "text/javascript")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                self._send(200, site.page(parts.path, first, parts.query))

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                site.hits.append(("POST", self.path, body))
                if urlsplit(self.path).path == "/post":
                    value = parse_qs(body.decode("ascii"))["pw"][0]
                    # The server's own spelling: every byte but letters percent-encoded, in lower-case hex.
                    spelled = "".join(c if c.isascii() and c.isalnum() else quote(c, safe="").lower() for c in value)
                    self._send(303, "", {"Location": f"/done?pw={spelled}"})
                    return
                self._send(404, "not here")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _H)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def page(self, path: str, q: dict[str, str], raw_query: str) -> str:
        """The HTML of `path` (query values already decoded)."""
        e = html.escape
        head = "<!doctype html><html><head><meta charset='utf-8'><title>{}</title></head><body>"
        if path == "/get":
            return head.format("Search") + """<h1>Search</h1><form action="/echo" method="get">
<label for="q">Search words</label> <input id="q" name="q" size="40"> <button>Search</button></form></body></html>"""
        if path == "/post":
            return head.format("Sign in") + """<h1>Sign in</h1><form action="/post" method="post">
<label for="pw">Password</label> <input id="pw" name="pw" type="password"> <button>Sign in</button></form></body></html>"""
        if path in ("/echo", "/done"):
            value = q.get("q") or q.get("pw") or ""
            name = "q" if path == "/echo" else "pw"
            return head.format(f"Results for {e(value)}") + f"""
<p id="echo" {_at("text")}>{e(value)}</p>
<input id="again" value="{e(value)}" title="{e(value)}" {_at("field", "width:600px;height:34px")}>
<p {_at("placeholder")}><a href="/echo?{name}={quote(value, safe='').lower()}&amp;page=2">Next page</a></p>
<pre id="json" {_at("encoded")}>{e(json.dumps(value)[1:-1])}</pre>
<p id="raw" {_at("split")}>{e(raw_query.split("=", 1)[-1].split("&")[0])}</p>
<p {_at("control")}>{CONTROL_TEXT}</p>
<p style="position:absolute;top:520px;left:40px"><a href="/post">Sign in</a> <a href="/get">Search again</a></p>
</body></html>"""
        if path == "/masked":
            value = q.get("v", "")
            ev = e(value)
            half = len(value) // 2
            frame_style = "position:absolute;width:500px;height:150px;border:2px solid #888"
            return head.format("Masked") + f"""
<p {_at("text")}>{ev}</p>
<input id="field" value="{ev}" {_at("field", "width:600px;height:34px")}>
<input id="ph" placeholder="{ev}" {_at("placeholder", "width:600px;height:34px")}>
<div id="open" {_at("open_shadow")}></div>
<div id="closed" {_at("closed_shadow")}></div>
<p {_at("encoded")}>{e(quote(value, safe=''))}</p>
<p {_at("control")}>{CONTROL_TEXT}</p>
<p {_at("split")}><b>{e(value[:half])}</b>{e(value[half:])}</p>
<iframe src="/inner?v={quote(value, safe='')}" style="{frame_style};left:{SPOTS['frame'][0]}px;top:{SPOTS['frame'][1]}px"></iframe>
<iframe src="http://localhost:{self.port}/inner?v={quote(value, safe='')}"
  style="{frame_style};left:{SPOTS['cross_frame'][0]}px;top:{SPOTS['cross_frame'][1]}px"></iframe>
<script>
const v = {json.dumps(value)};
const style = {json.dumps(STYLE)} + ';left:0;top:0';
document.getElementById('open').attachShadow({{mode: 'open'}}).innerHTML = '<p style="' + style + '"></p>';
document.getElementById('open').shadowRoot.firstChild.textContent = v;
const closed = document.getElementById('closed').attachShadow({{mode: 'closed'}});
closed.innerHTML = '<p style="' + style + '"></p>';
closed.firstChild.textContent = v;
</script></body></html>"""
        if path == "/inner":
            left, top = FRAME_TEXT_AT
            return (head.format("Inner") + f'<p style="{STYLE};left:{left}px;top:{top}px">{e(q.get("v", ""))}</p>'
                    "</body></html>")
        if path == "/worker":
            return head.format("Worker") + """<h1>Worker</h1><script>
navigator.serviceWorker.register('/sw.js').then(
  () => navigator.serviceWorker.getRegistrations().then((r) => { document.title = 'registrations: ' + r.length; }),
  (e) => { document.title = 'refused: ' + e.name; });
</script></body></html>"""
        return head.format("Not here") + "<h1>Not here</h1></body></html>"

    def sent(self, method: str, path: str) -> list[str]:
        """What the browser sent to `path`: the raw query (GET) or the raw body (POST), as bytes on the wire."""
        out = []
        for m, p, body in self.hits:
            if m == method and urlsplit(p).path == path:
                out.append(urlsplit(p).query if method == "GET" else body.decode("latin-1"))
        return out

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ------------------------------------------------------------------ an independent leak check
_JSON_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})|\\x([0-9a-fA-F]{2})|\\([\"\\/'bfnrt])")


def _json_unescape(text: str) -> str:
    def one(m: re.Match[str]) -> str:
        if m.group(1):
            return chr(int(m.group(1), 16))
        if m.group(2):
            return chr(int(m.group(2), 16))
        return {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}.get(m.group(3), m.group(3))
    out = _JSON_ESCAPE.sub(one, text)
    # A surrogate pair written as two escapes decodes to two halves: join them as JSON readers do.
    return out.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


_DECODERS = (unquote, unquote_plus, html.unescape, _json_unescape)


def decodings(text: str, depth: int = 3) -> set[str]:
    """`text` and every decoding of it by up to `depth` of: percent, form (+), HTML entities, JSON/Python escapes."""
    seen = {text}
    frontier = {text}
    for _ in range(depth):
        frontier = {d(t) for t in frontier for d in _DECODERS} - seen
        seen |= frontier
    return seen


def leaks(text: str, values: list[str]) -> list[str]:
    """The values (or their 12-character heads) that any decoding of `text` holds, spacing collapsed."""
    found = []
    for decoded in decodings(text):
        flat = " ".join(decoded.split())
        for value in values:
            probe = " ".join(value.split())
            if (probe in flat or probe[:12] in flat) and value not in found:
                found.append(value)
    return found
