"""A fake OpenAI-compatible chat server on 127.0.0.1, answering from a script or a function.

litellm reaches it through its real OpenAI code path (OPENAI_BASE_URL). A handler receives the
request body (a dict) and returns one of:
- `reply(content, call("click", index=3), ...)`: an assistant message with tool calls;
- an int (HTTP status) to fail with that status (429, 500 ...);
- a dict, sent as the whole JSON response.
`FakeLLM.script([...])` answers request N with item N (the last one repeats).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Handler = Callable[[dict[str, Any]], Any]


def call(name: str, _raw: str | None = None, **arguments: Any) -> dict[str, Any]:
    """One tool call; `_raw` sends arguments verbatim (for malformed-JSON tests)."""
    return {"name": name, "arguments": _raw if _raw is not None else json.dumps(arguments)}


def reply(content: str | None = None, *calls: dict[str, Any], usage: tuple[int, int] = (100, 20)) -> dict:
    """A chat completion whose message has `content` and the given tool calls."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = [
            {"id": f"call_{i}_{int(time.time() * 1e6)}", "type": "function", "function": c}
            for i, c in enumerate(calls)
        ]
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "fake",
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}],
        "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)},
    }


def last_user_text(body: dict[str, Any]) -> str:
    """The text of the last user message (the current page observation)."""
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return "\n".join(p.get("text", "") for p in content if p.get("type") == "text")
            return content or ""
    return ""


def find_index(body: dict[str, Any], text: str, *, tag: str | None = None) -> int:
    """Index of the first interactive element whose line contains `text`, as a model would pick it."""
    for line in last_user_text(body).splitlines():
        m = re.match(r"^\s*\[(\d+)\]<(\w[\w-]*)", line)
        if m and text in line and (tag is None or m.group(2) == tag):
            return int(m.group(1))
    raise LookupError(f"no element with {text!r} in the observation")


def tool_names(body: dict[str, Any]) -> list[str]:
    """Names of the tools offered in a request."""
    return [t["function"]["name"] for t in body.get("tools", [])]


class FakeLLM:
    """The server; `requests` keeps every request body received."""

    def __init__(self, handler: Handler | None = None) -> None:
        self.handler: Handler = handler or (lambda body: reply("done", call("done", text="ok", success=True)))
        self.requests: list[dict[str, Any]] = []
        self.delay_s = 0.0
        self._lock = threading.Lock()
        fake = self

        class _H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with fake._lock:
                    fake.requests.append(body)
                if fake.delay_s:
                    time.sleep(fake.delay_s)
                try:
                    answer = fake.handler(body)
                except Exception as exc:  # a broken test script shows as a 500 with the reason
                    answer = {"__status__": 500, "error": {"message": f"fake handler failed: {exc!r}"}}
                status = 200
                if isinstance(answer, int):
                    status, answer = answer, {"error": {"message": f"fake error {answer}", "type": "server_error"}}
                elif isinstance(answer, dict) and "__status__" in answer:
                    status = answer.pop("__status__")
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _H)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def script(self, answers: list[Any]) -> FakeLLM:
        """Answer request N with answers[N] (a reply, a status, or a function of the body)."""
        items = list(answers)

        def handler(body: dict[str, Any]) -> Any:
            n = len(self.requests) - 1
            item = items[min(n, len(items) - 1)]
            return item(body) if callable(item) else item

        self.handler = handler
        return self

    def reset(self, handler: Handler | None = None) -> None:
        """Forget past requests and optionally install a new handler."""
        with self._lock:
            self.requests.clear()
        if handler is not None:
            self.handler = handler

    def close(self) -> None:
        """Stop the server."""
        self.server.shutdown()
        self.server.server_close()
