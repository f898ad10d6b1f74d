"""Webhook delivery against real HTTP receivers on 127.0.0.1: retries, signing, refusals, bounds."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agent.service.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Attempt,
    allow_private_from_env,
    deliver,
    sign,
    verify,
    webhook_secret_from_env,
)

SECRET = "whsec-test-7f3a9c"
PAYLOAD = {
    "task_id": 7,
    "task_run_id": 42,
    "status": "success",
    "result": {"name": "Câble USB-C ✓", "price": 9.99},
    "history": [{"description": "opened the shop", "actions": []}],
}
FAST = {"backoff_s": 0.001, "max_backoff_s": 0.01}  # retries in milliseconds, not seconds


# ------------------------------------------------------------------ a real receiver
@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class Received:
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    at: float


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], receiver: Receiver, family: int) -> None:
        self.address_family = family
        self.receiver = receiver
        super().__init__(address, _Handler)

    def get_request(self):  # every accepted TCP connection, even one that never sends a request
        conn = super().get_request()
        with self.receiver.lock:
            self.receiver.connections += 1
        return conn


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        receiver = self.server.receiver
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with receiver.lock:
            receiver.requests.append(
                Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic())
            )
            reply = receiver.script[min(len(receiver.requests), len(receiver.script)) - 1]
        time.sleep(reply.delay_s)
        try:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
        except OSError:  # the client gave up (timeout test)
            pass


class Receiver:
    """A webhook receiver on 127.0.0.1 answering from a script (the last reply repeats)."""

    def __init__(self, *replies: Reply, host: str = "127.0.0.1") -> None:
        self.script = list(replies) or [Reply()]
        self.requests: list[Received] = []
        self.connections = 0
        self.lock = threading.Lock()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.server = _Server((host, 0), self, family)
        self.port = self.server.server_address[1]
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{self.port}/hook"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for r in made:
        r.close()


def start(receivers: list[Receiver], *replies: Reply, host: str = "127.0.0.1") -> Receiver:
    r = Receiver(*replies, host=host)
    receivers.append(r)
    return r


class Recorder:
    """on_attempt callback that keeps what it is given (async, as the run service's is)."""

    def __init__(self) -> None:
        self.attempts: list[Attempt] = []

    async def __call__(self, attempt: Attempt) -> None:
        self.attempts.append(attempt)

    def summary(self) -> list[tuple[int, int | None, bool, str | None]]:
        return [(a.attempt, a.status_code, a.ok, a.error) for a in self.attempts]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ delivery
async def test_retries_500_then_429_then_delivers_signed_body(receivers: list[Receiver]) -> None:
    r = start(receivers, Reply(500), Reply(429, {"Retry-After": "2"}), Reply(200))
    rec = Recorder()
    began = time.monotonic()
    ok = await deliver(r.url, PAYLOAD, secret=SECRET, on_attempt=rec, allow_private=True,
                       backoff_s=0.001, max_backoff_s=0.3, event="run.finished")
    assert ok is True
    assert rec.summary() == [
        (1, 500, False, "HTTP 500 Internal Server Error"),
        (2, 429, False, "HTTP 429 Too Many Requests"),
        (3, 200, True, None),
    ]
    for a in rec.attempts:
        assert a.at.tzinfo == UTC and 0 < a.duration_ms < 2000
    # Retry-After: 2 was honoured but capped at max_backoff_s (0.3 s); the 500 retried at once.
    assert r.requests[1].at - r.requests[0].at < 0.25
    assert 0.25 <= r.requests[2].at - r.requests[1].at < 1.5
    assert time.monotonic() - began < 4

    compact = json.dumps(PAYLOAD, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    assert len(r.requests) == 3 and r.connections == 3
    ids = {req.headers[DELIVERY_HEADER.lower()] for req in r.requests}
    assert len(ids) == 1 and len(ids.pop()) == 32  # one delivery id across retries, for dedup
    for number, req in enumerate(r.requests, start=1):
        assert req.path == "/hook"
        assert req.body == compact and json.loads(req.body) == PAYLOAD
        h = req.headers
        assert h["content-type"] == "application/json"
        assert h["user-agent"] == "workbench-webhooks/1.0"
        assert h[EVENT_HEADER.lower()] == "run.finished"
        assert h["x-workbench-attempt"] == str(number)
        assert h["host"] == f"127.0.0.1:{r.port}"
        assert abs(int(h[TIMESTAMP_HEADER.lower()]) - time.time()) < 10
        assert verify(SECRET, h[TIMESTAMP_HEADER.lower()], req.body, h[SIGNATURE_HEADER.lower()])
        assert not any(SECRET in v for v in h.values()) and SECRET.encode() not in req.body


async def test_other_4xx_is_not_retried(receivers: list[Receiver]) -> None:
    r = start(receivers, Reply(404), Reply(200))
    rec = Recorder()
    ok = await deliver(r.url, PAYLOAD, secret=SECRET, on_attempt=rec, allow_private=True, max_attempts=5, **FAST)
    assert ok is False
    assert rec.summary() == [(1, 404, False, "HTTP 404 Not Found (not retried: fix the receiver or the URL)")]
    assert len(r.requests) == 1


async def test_redirect_is_not_followed(receivers: list[Receiver]) -> None:
    final = start(receivers, Reply(200))
    hop = start(receivers, Reply(302, {"Location": final.url + "?token=abc"}))
    rec = Recorder()
    ok = await deliver(hop.url, PAYLOAD, on_attempt=rec, allow_private=True, max_attempts=3, **FAST)
    assert ok is False
    assert rec.summary() == [(
        1, 302, False,
        f"HTTP 302: redirects are not followed (Location: http://127.0.0.1:{final.port}/...); "
        "set the webhook URL to the final address",
    )]
    assert len(hop.requests) == 1 and final.connections == 0


async def test_slow_receiver_times_out_and_is_retried_within_bounds(receivers: list[Receiver]) -> None:
    r = start(receivers, Reply(200, delay_s=1.5))
    rec = Recorder()
    began = time.monotonic()
    ok = await deliver(r.url, PAYLOAD, on_attempt=rec, allow_private=True, max_attempts=2, timeout_s=0.2, **FAST)
    elapsed = time.monotonic() - began
    assert ok is False
    assert rec.summary() == [
        (1, None, False, "timed out after 0.2 s (no answer)"),
        (2, None, False, "timed out after 0.2 s (no answer)"),
    ]
    assert all(150 <= a.duration_ms < 1400 for a in rec.attempts)  # the receiver would take 1500
    assert elapsed < 2.5 and len(r.requests) == 2


async def test_connection_refused_is_retried_then_gives_up() -> None:
    rec = Recorder()
    url = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    ok = await deliver(url, PAYLOAD, on_attempt=rec, allow_private=True, max_attempts=3, timeout_s=2, **FAST)
    assert ok is False
    assert [(a.attempt, a.status_code, a.ok) for a in rec.attempts] == [(n, None, False) for n in (1, 2, 3)]
    assert all(a.error is not None and a.error.startswith("network error: ") for a in rec.attempts)


@pytest.mark.parametrize(
    "template, shown",
    [
        ("http://127.0.0.1:{port}/hook", "127.0.0.1"),
        ("http://localhost:{port}/hook", "127.0.0.1"),  # a name that resolves to loopback
        ("http://2130706433:{port}/hook", "127.0.0.1"),  # 127.0.0.1 written as one number
        ("http://[::ffff:127.0.0.1]:{port}/hook", "::ffff:127.0.0.1"),
        ("http://[::1]:{port6}/hook", "::1"),
        ("http://10.0.0.1:{port}/hook", "10.0.0.1"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        ("https://metadata.google.internal/computeMetadata/v1/", "metadata.google.internal"),
    ],
)
async def test_private_addresses_are_refused_without_connecting(
    receivers: list[Receiver], monkeypatch: pytest.MonkeyPatch, template: str, shown: str
) -> None:
    monkeypatch.delenv("WEBHOOK_ALLOW_PRIVATE", raising=False)
    v4 = start(receivers, Reply(200))
    v6 = start(receivers, Reply(200), host="::1")
    rec = Recorder()
    url = template.format(port=v4.port, port6=v6.port)
    ok = await deliver(url, PAYLOAD, secret=SECRET, on_attempt=rec, max_attempts=5, **FAST)
    assert ok is False
    assert len(rec.attempts) == 1  # refused once, never retried
    a = rec.attempts[0]
    assert (a.attempt, a.status_code, a.ok) == (1, None, False)
    assert a.error is not None and a.error.startswith("refused: ") and shown in a.error
    assert "WEBHOOK_ALLOW_PRIVATE" in a.error or "metadata" in a.error
    assert v4.connections == 0 and v6.connections == 0


async def test_operator_can_allow_private_receivers_by_env(
    receivers: list[Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBHOOK_ALLOW_PRIVATE", "1")
    monkeypatch.setenv("WEBHOOK_SECRET", SECRET)
    r = start(receivers, Reply(204))
    rec = Recorder()
    url = f"http://localhost:{r.port}/hook?k=1"
    assert await deliver(url, PAYLOAD, on_attempt=rec, event="run.test", **FAST) is True
    assert rec.summary() == [(1, 204, True, None)]
    req = r.requests[0]
    # We connected to the checked address, yet the receiver sees the URL's own host.
    assert req.headers["host"] == f"localhost:{r.port}" and req.path == "/hook?k=1"
    assert req.headers[EVENT_HEADER.lower()] == "run.test"
    assert verify(SECRET, req.headers[TIMESTAMP_HEADER.lower()], req.body, req.headers[SIGNATURE_HEADER.lower()])


@pytest.mark.parametrize(
    "url, error",
    [
        ("http://169.254.169.254/latest/meta-data/",
         "refused: host '169.254.169.254' resolves to a cloud metadata address (169.254.169.254), "
         "which is always refused"),
        ("http://[::ffff:a9fe:a9fe]/",
         "refused: host '::ffff:a9fe:a9fe' resolves to a cloud metadata address (::ffff:a9fe:a9fe), "
         "which is always refused"),
        ("http://metadata.google.internal/computeMetadata/v1/",
         "refused: host 'metadata.google.internal' is a cloud metadata service and is always refused"),
    ],
)
async def test_metadata_stays_refused_when_private_receivers_are_allowed(url: str, error: str) -> None:
    rec = Recorder()
    assert await deliver(url, PAYLOAD, on_attempt=rec, allow_private=True, **FAST) is False
    assert rec.summary() == [(1, None, False, error)]


async def test_no_secret_means_no_signature_header(receivers: list[Receiver], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WEBHOOK_SECRET", raising=False)
    r = start(receivers, Reply(200))
    assert await deliver(r.url, PAYLOAD, allow_private=True, **FAST) is True
    assert SIGNATURE_HEADER.lower() not in r.requests[0].headers
    assert TIMESTAMP_HEADER.lower() in r.requests[0].headers


async def test_ipv6_receiver_is_reached_when_allowed(receivers: list[Receiver]) -> None:
    r = start(receivers, Reply(200), host="::1")
    rec = Recorder()
    assert await deliver(r.url, PAYLOAD, on_attempt=rec, allow_private=True, **FAST) is True
    assert rec.summary() == [(1, 200, True, None)]
    assert r.requests[0].headers["host"] == f"[::1]:{r.port}"


@pytest.mark.parametrize(
    "url, payload, error",
    [
        ("ftp://example.com/hook", PAYLOAD,
         "webhook URL must be an http:// or https:// URL with a host, e.g. https://example.com/hook"),
        ("https:///nohost", PAYLOAD,
         "webhook URL must be an http:// or https:// URL with a host, e.g. https://example.com/hook"),
        ("https://example.com/hook", {"bad": object()}, "payload cannot be sent: object is not JSON serialisable"),
    ],
)
async def test_bad_input_is_one_failed_attempt_not_an_exception(url: str, payload: dict, error: str) -> None:
    rec = Recorder()
    assert await deliver(url, payload, on_attempt=rec, **FAST) is False
    assert rec.summary() == [(1, None, False, error)]


async def test_a_failing_callback_does_not_break_delivery(receivers: list[Receiver]) -> None:
    r = start(receivers, Reply(503), Reply(200))
    seen: list[int] = []

    def callback(attempt: Attempt) -> None:  # sync callbacks are accepted too
        seen.append(attempt.attempt)
        raise RuntimeError("store is down")

    assert await deliver(r.url, PAYLOAD, on_attempt=callback, allow_private=True, **FAST) is True
    assert seen == [1, 2] and len(r.requests) == 2


# ------------------------------------------------------------------ signing
def test_sign_matches_a_known_vector() -> None:
    # printf '%s' '1700000000.{"a":1}' | openssl dgst -sha256 -hmac secret
    expected = "sha256=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"
    assert sign("secret", "1700000000", b'{"a":1}') == expected


@pytest.mark.parametrize(
    "secret, timestamp, body, signature_of, now, ok",
    [
        ("secret", "1700000000", b'{"a":1}', b'{"a":1}', 1700000000, True),
        ("secret", "1700000000", b'{"a":2}', b'{"a":1}', 1700000000, False),  # tampered body
        ("other", "1700000000", b'{"a":1}', b'{"a":1}', 1700000000, False),  # wrong secret
        ("secret", "1700000000", b'{"a":1}', b'{"a":1}', 1700000301, False),  # stale
        ("secret", "1700000000", b'{"a":1}', b'{"a":1}', 1699999699, False),  # from the future
        ("secret", "1700000000", b'{"a":1}', b'{"a":1}', 1700000299, True),  # just inside tolerance
        ("secret", "not-a-time", b'{"a":1}', b'{"a":1}', 1700000000, False),
    ],
)
def test_verify(secret: str, timestamp: str, body: bytes, signature_of: bytes, now: int, ok: bool) -> None:
    signature = sign("secret", "1700000000" if timestamp == "not-a-time" else timestamp, signature_of)
    assert verify(secret, timestamp, body, signature, now=now) is ok


def test_verify_rejects_garbage_signatures() -> None:
    for bad in ("", "sha256=", "sha256=00", "md5=abc", "sha256=ŝ"):
        assert verify("secret", "1700000000", b"{}", bad, now=1700000000) is False


def test_env_helpers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_SECRET", "  ")
    assert webhook_secret_from_env() is None
    monkeypatch.setenv("WEBHOOK_SECRET", "abc")
    assert webhook_secret_from_env() == "abc"
    for value, expected in (("1", True), ("true", True), ("ON", True), ("0", False), ("", False), ("no", False)):
        monkeypatch.setenv("WEBHOOK_ALLOW_PRIVATE", value)
        assert allow_private_from_env() is expected


async def test_https_pins_the_address_but_keeps_the_host_name_for_tls(tmp_path) -> None:
    """Connecting to the checked IP must not change TLS: SNI and certificate checks use the URL's host."""
    import shutil
    import ssl
    import subprocess

    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl CLI not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost"],
        check=True, capture_output=True, timeout=30,
    )
    server_names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda _sock, name, _ctx: server_names.append(name)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve_one() -> None:
        conn, _ = listener.accept()
        try:
            with context.wrap_socket(conn, server_side=True):
                pass
        except (ssl.SSLError, OSError):
            pass  # the client rejects our self-signed certificate, as it should

    thread = threading.Thread(target=serve_one, daemon=True)
    thread.start()
    rec = Recorder()
    try:
        ok = await deliver(f"https://localhost:{port}/hook", PAYLOAD, on_attempt=rec, allow_private=True,
                           max_attempts=1, timeout_s=5)
    finally:
        thread.join(timeout=5)
        listener.close()
    assert ok is False
    assert server_names == ["localhost"]  # not "127.0.0.1", though that is where we connected
    a = rec.attempts[0]
    assert (a.attempt, a.status_code, a.ok) == (1, None, False)
    assert a.error is not None and "CERTIFICATE_VERIFY_FAILED" in a.error
