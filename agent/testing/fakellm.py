"""A fake OpenAI-compatible chat server on 127.0.0.1, answering from a script or a function.

litellm reaches it through its real OpenAI code path (OPENAI_BASE_URL). A handler receives the
request body (a dict) and returns one of:
- `reply(content, call("click", index=3), ...)`: an assistant message with tool calls;
- an int (HTTP status) to fail with that status (429, 500 ...);
- a dict, sent as the whole JSON response (`{"__status__": 400, "error": {...}}` for an error body).
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


def reply(content: str | None = None, *calls: dict[str, Any], usage: tuple[int, int] = (100, 20),
          finish: str | None = None) -> dict:
    """A chat completion whose message has `content` and the given tool calls (finish: e.g. "length")."""
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
        "choices": [{"index": 0, "message": message, "finish_reason": finish or ("tool_calls" if calls else "stop")}],
        "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)},
    }


def _tokens(text: str) -> int:
    try:
        import bpe_openai

        return len(bpe_openai.get_encoding("o200k_base").encode(text))
    except Exception:  # no tokenizer: the usual 4 characters per token
        return len(text) // 4


def counted(handler: Handler, latency: float) -> Handler:
    """The handler with real token counts in its usage (o200k when a tokenizer is installed, else ~4 characters
    a token) and a model-like delay of `latency` seconds: what the benchmarks' scripted agents answer with."""

    def wrapped(body: dict[str, Any]) -> Any:
        answer = handler(body)
        if isinstance(answer, dict) and "choices" in answer:
            sent = json.dumps(body.get("messages", []), ensure_ascii=False) + json.dumps(body.get("tools", []))
            prompt = _tokens(sent)
            message = answer["choices"][0]["message"]
            completion = _tokens(json.dumps(message.get("tool_calls") or []) + (message.get("content") or ""))
            answer["usage"] = {"prompt_tokens": prompt, "completion_tokens": completion,
                               "total_tokens": prompt + completion}
        if latency:
            time.sleep(latency)
        return answer

    return wrapped


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
    """The server; `requests` keeps every request body received (as the handler saw it).

    `rules(body)` may refuse a request the way the real API would: it returns None, or
    (status, error payload). agent/testing/fakeproviders.py holds the rule sets and the native-protocol fakes.
    """

    def __init__(self, handler: Handler | None = None, *, rules: Callable[[dict[str, Any]], Any] | None = None) -> None:
        self.handler: Handler = handler or (lambda body: reply("done", call("done", text="ok", success=True)))
        self.rules = rules
        self.paths: set[str] | None = None  # the only paths served (None: any), as a real API's routes
        self.requests: list[dict[str, Any]] = []
        self.refusals: list[tuple[int, dict[str, Any]]] = []  # what `rules` refused, for assertions
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
                if fake.delay_s:
                    time.sleep(fake.delay_s)
                status, answer = fake.respond(self.path, dict(self.headers), body)
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
        self.host = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.url = f"{self.host}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def respond(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """(status, JSON answer) for one request: the route, the rules, then the handler."""
        if self.paths is not None and path.split("?")[0] not in self.paths:
            return 404, {"error": {"message": f"Invalid URL (POST {path})", "type": "invalid_request_error"}}
        refused = self.rules(body) if self.rules is not None else None
        if refused is not None:
            with self._lock:
                self.refusals.append(refused)
            return refused
        return self.answer(body)

    def answer(self, view: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Record the request as the handler sees it and turn the handler's answer into (status, JSON)."""
        with self._lock:
            self.requests.append(view)
        try:
            answer = self.handler(view)
        except Exception as exc:  # a broken test script shows as a 500 with the reason
            answer = {"__status__": 500, "error": {"message": f"fake handler failed: {exc!r}"}}
        if isinstance(answer, int):
            return answer, {"error": {"message": f"fake error {answer}", "type": "server_error"}}
        if isinstance(answer, dict) and "__status__" in answer:
            answer = dict(answer)
            return answer.pop("__status__"), answer
        return 200, answer

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
