"""Webhook delivery: signed JSON POSTs with bounded retries, every attempt reported.

`deliver(url, payload)` never raises for delivery problems; it returns True when the receiver
answered 2xx and False otherwise, and reports each attempt through `on_attempt`.

Safety: only http(s); the destination host is resolved and every address checked
(`agent.rules.policy.resolve_public`) before each attempt, and the request then goes to that checked
address (the URL's host stays in the Host header and, for https, in TLS SNI and certificate checks),
so a DNS answer that changes between check and connect cannot redirect it. Redirects are not
followed. `WEBHOOK_ALLOW_PRIVATE=1` lets the operator reach loopback/private receivers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import inspect
import ipaddress
import json
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from agent.rules.policy import PolicyError, check_webhook_url, is_metadata_address, redact_url, resolve_public

__all__ = [
    "Attempt",
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "allow_private_from_env",
    "deliver",
    "sign",
    "verify",
    "webhook_secret_from_env",
]

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Workbench-Signature"
TIMESTAMP_HEADER = "X-Workbench-Timestamp"
EVENT_HEADER = "X-Workbench-Event"
DELIVERY_HEADER = "X-Workbench-Delivery"
ATTEMPT_HEADER = "X-Workbench-Attempt"
USER_AGENT = "workbench-webhooks/1.0"
SECRET_ENV = "WEBHOOK_SECRET"
ALLOW_PRIVATE_ENV = "WEBHOOK_ALLOW_PRIVATE"
MAX_ATTEMPTS_CAP = 20  # whatever the caller asks, a delivery ends
MAX_BODY_BYTES = 10 * 1024 * 1024
RETRY_STATUSES = frozenset({429}) | frozenset(range(500, 600))


@dataclass(frozen=True)
class Attempt:
    """One delivery attempt, as the run service records it."""

    attempt: int
    at: datetime
    status_code: int | None
    ok: bool
    error: str | None
    duration_ms: float


OnAttempt = Callable[[Attempt], Awaitable[None] | None]


def webhook_secret_from_env() -> str | None:
    """The signing secret from WEBHOOK_SECRET, or None when unset or blank."""
    secret = os.environ.get(SECRET_ENV, "")
    return secret if secret.strip() else None


def allow_private_from_env() -> bool:
    """True when WEBHOOK_ALLOW_PRIVATE is 1/true/yes/on: loopback and private receivers allowed."""
    return os.environ.get(ALLOW_PRIVATE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """'sha256=' + hex HMAC-SHA256 of f'{timestamp}.' + body under `secret`."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    secret: str,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    tolerance_s: int = 300,
    now: float | None = None,
) -> bool:
    """True when `signature` is `sign(secret, timestamp, body)` and the timestamp is fresh."""
    try:
        sent = int(timestamp)
    except (TypeError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - sent) > tolerance_s:
        return False  # a replayed old request, or a clock far off
    expected = sign(secret, timestamp, body).encode("utf-8")
    return hmac.compare_digest(expected, str(signature).strip().encode("utf-8", "replace"))


async def deliver(
    url: str,
    payload: dict,
    *,
    secret: str | None = None,
    on_attempt: OnAttempt | None = None,
    max_attempts: int = 5,
    timeout_s: float = 10.0,
    backoff_s: float = 1.0,
    max_backoff_s: float = 30.0,
    allow_private: bool | None = None,
    event: str = "run.finished",
    first_attempt: int = 1,
    delivery_id: str | None = None,
) -> bool:
    """POST `payload` as signed JSON to `url` with retries; True once a 2xx answer came back.

    Takes at most about max_attempts * timeout_s + (max_attempts - 1) * max_backoff_s. A delivery
    resumed after a restart passes `first_attempt` (attempts already made + 1) and its `delivery_id`:
    the attempt limit counts the attempts before the restart too.
    """
    secret = webhook_secret_from_env() if secret is None else (secret or None)
    allow_private = allow_private_from_env() if allow_private is None else allow_private
    max_attempts = max(1, min(int(max_attempts), MAX_ATTEMPTS_CAP))
    timeout_s = max(0.001, float(timeout_s))
    max_backoff_s = max(0.0, float(max_backoff_s))
    backoff_s = max(0.0, float(backoff_s))
    report = _Reporter(on_attempt)
    first_attempt = max(1, int(first_attempt))
    if first_attempt > max_attempts:
        return False  # the attempts were all made before a restart

    at, started = datetime.now(UTC), time.monotonic()
    problem: str | None = None
    try:
        check_webhook_url(url)
    except PolicyError as exc:
        if exc.reason != "metadata":  # a metadata host is refused at the attempt, saying what it resolves to
            problem = f"webhook URL {exc}"
    if problem is None:
        try:
            target = httpx.URL(url.strip())
        except Exception as exc:
            problem = f"webhook URL is invalid ({_describe(exc)}); give one such as https://example.com/hook"
    if problem is None:
        try:
            body = _encode(payload)
        except (TypeError, ValueError) as exc:
            problem = f"payload cannot be sent: {_describe(exc)}"
    if problem is not None:  # nothing to retry: one failed attempt that says what to fix
        await report.send(Attempt(attempt=first_attempt, at=at, status_code=None, ok=False, error=problem,
                                  duration_ms=round((time.monotonic() - started) * 1000, 3)))
        return False

    delivery_id = delivery_id or uuid.uuid4().hex  # the same for every attempt, so receivers can drop duplicates
    async with httpx.AsyncClient(
        follow_redirects=False,
        trust_env=False,  # no proxy from the environment: we connect to the address we checked
        timeout=httpx.Timeout(timeout_s),
        limits=httpx.Limits(max_connections=1, max_keepalive_connections=0),
    ) as client:
        for number in range(first_attempt, max_attempts + 1):
            at, started = datetime.now(UTC), time.monotonic()
            outcome = await _attempt(
                client, target, body, secret=secret, event=event, delivery_id=delivery_id,
                number=number, timeout_s=timeout_s, allow_private=allow_private,
            )
            await report.send(Attempt(
                attempt=number, at=at, status_code=outcome.status_code, ok=outcome.ok,
                error=outcome.error, duration_ms=round((time.monotonic() - started) * 1000, 3),
            ))
            if outcome.ok:
                log.info("webhook %s delivered to %s (attempt %d)", delivery_id, _redact(target), number)
                return True
            log.warning("webhook %s to %s attempt %d failed: %s", delivery_id, _redact(target), number, outcome.error)
            if not outcome.retry or number == max_attempts:
                return False
            await asyncio.sleep(_delay(number, backoff_s, max_backoff_s, outcome.retry_after))
    return False


# ------------------------------------------------------------------ one attempt
@dataclass(frozen=True)
class _Outcome:
    status_code: int | None
    ok: bool
    error: str | None
    retry: bool
    retry_after: float | None = None


async def _attempt(
    client: httpx.AsyncClient,
    target: httpx.URL,
    body: bytes,
    *,
    secret: str | None,
    event: str,
    delivery_id: str,
    number: int,
    timeout_s: float,
    allow_private: bool,
) -> _Outcome:
    """Resolve, check, connect to a checked address and POST; never raises (except on cancel)."""
    timestamp = str(int(time.time()))  # fresh per attempt so a retry is not rejected as stale
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        TIMESTAMP_HEADER: timestamp,
        EVENT_HEADER: event,
        DELIVERY_HEADER: delivery_id,
        ATTEMPT_HEADER: str(number),
        "Host": _host_header(target),
    }
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, timestamp, body)
    host = target.raw_host.decode("ascii")  # IDNA names as punycode, IPv6 without brackets
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        async with asyncio.timeout(timeout_s):  # one bound for DNS, connect, send and the answer
            try:
                addresses = await resolve_public(host, port, timeout_s=timeout_s)
            except PolicyError as exc:
                # The operator may allow private receivers, never the metadata service.
                if not allow_private or exc.reason == "metadata":
                    return _Outcome(None, False, f"refused: {exc}", retry=False)
                addresses = await _resolve_any(host, port)
                metadata = [a for a in addresses if is_metadata_address(a)]
                if metadata:
                    return _Outcome(None, False, f"refused: host '{host}' resolves to a cloud metadata "
                                    f"address ({', '.join(metadata)}), which is always refused", retry=False)
            last_error: Exception = OSError(f"no address found for host '{host}'")
            for address in addresses:  # all checked; try the next one only if this one is unreachable
                try:
                    return await _post(client, target, address, body, headers)
                except httpx.ConnectError as exc:
                    last_error = exc
            raise last_error
    except TimeoutError:
        return _Outcome(None, False, f"timed out after {timeout_s:g} s (no answer)", retry=True)
    except httpx.TimeoutException:
        return _Outcome(None, False, f"timed out after {timeout_s:g} s (no answer)", retry=True)
    except (httpx.TransportError, OSError) as exc:
        return _Outcome(None, False, f"network error: {_describe(exc)}", retry=True)
    except Exception as exc:  # our bug or an odd answer: record it, never break the run
        log.exception("webhook %s attempt %d: unexpected error", delivery_id, number)
        return _Outcome(None, False, f"unexpected error: {_describe(exc)}", retry=False)


async def _post(
    client: httpx.AsyncClient, target: httpx.URL, address: str, body: bytes, headers: dict[str, str]
) -> _Outcome:
    """POST to `address` while presenting the URL's host; read only the status line and headers."""
    pinned = target.copy_with(host=address)
    # TLS still names (and verifies the certificate of) the URL's host, not the address.
    extensions = {"sni_hostname": target.raw_host.decode("ascii")} if target.scheme == "https" else {}
    request = client.build_request("POST", pinned, content=body, headers=headers, extensions=extensions)
    response = await client.send(request, stream=True)  # the body is never read: it is unbounded
    await response.aclose()
    status = response.status_code
    if 200 <= status < 300:
        return _Outcome(status, True, None, retry=False)
    if 300 <= status < 400:
        where = _redact_location(response.headers.get("location"))
        return _Outcome(
            status, False,
            f"HTTP {status}: redirects are not followed (Location: {where}); set the webhook URL to the final address",
            retry=False,
        )
    retry = status in RETRY_STATUSES
    reason = response.reason_phrase or "error"
    hint = "" if retry else " (not retried: fix the receiver or the URL)"
    return _Outcome(status, False, f"HTTP {status} {reason}{hint}", retry=retry,
                    retry_after=_retry_after(response.headers.get("retry-after")))


async def _resolve_any(host: str, port: int) -> list[str]:
    """Addresses of `host` without the public check (the operator allowed private receivers)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(ipaddress.ip_address(str(info[4][0]).split("%")[0])) for info in infos))


# ------------------------------------------------------------------ helpers
class _Reporter:
    """Calls on_attempt (sync or async); a failing callback is logged, never propagated."""

    def __init__(self, callback: OnAttempt | None) -> None:
        self.callback = callback

    async def send(self, attempt: Attempt) -> None:
        if self.callback is None:
            return
        try:
            result = self.callback(attempt)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("webhook on_attempt callback failed for attempt %d", attempt.attempt)



def _delay(number: int, backoff_s: float, max_backoff_s: float, retry_after: float | None) -> float:
    """Seconds to wait after failed attempt `number`: the receiver's Retry-After, else exponential + jitter."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), max_backoff_s)
    base = min(max_backoff_s, backoff_s * (2 ** (number - 1)))
    return base / 2 + random.uniform(0, base / 2)  # jitter: receivers that failed together recover apart


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date), None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _encode(payload: Any) -> bytes:
    """Compact UTF-8 JSON of the payload (datetimes as ISO 8601), bounded in size."""
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=_json_default).encode("utf-8")
    if len(body) > MAX_BODY_BYTES:
        raise ValueError(f"payload is {len(body)} bytes; the limit is {MAX_BODY_BYTES}")
    return body


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if hasattr(value, "model_dump"):  # a pydantic model
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _host_header(target: httpx.URL) -> str:
    host = target.raw_host.decode("ascii")
    if ":" in host:
        host = f"[{host}]"
    return host if target.port is None else f"{host}:{target.port}"


def _redact(target: httpx.URL) -> str:
    """scheme://host:port/... only: webhook URLs often carry a token in the path or query."""
    return redact_url(str(target))


def _redact_location(location: str | None) -> str:
    if not location:
        return "none"
    try:
        parsed = httpx.URL(location)
    except Exception:
        return "unreadable"
    if not parsed.host:
        return "a relative path on the same host"
    return _redact(parsed)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
