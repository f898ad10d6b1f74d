"""Spans a collector could not take are kept and sent again, so that a run's trace is not left without
its root because the collector was down at the moment the run ended.

The SDK's OTLP exporter already retries a failed request (with backoff, within
`OTEL_EXPORTER_OTLP_TIMEOUT`, 10 s by default); then it gives the batch up. `KeepingExporter` wraps it:
the spans of a batch that failed are kept (at most MAX_KEPT_SPANS, the runs' own spans kept before
their steps' when there is no room for all) and sent again with the next export that works, every
RETRY_EVERY_S seconds on their own, and once more at shutdown; a span kept longer than MAX_KEEP_S is
dropped (logged). What cannot be saved: spans of a process that is killed, and spans of a collector
that stays down longer than that.

Imported only when an exporter is configured (it needs the SDK).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

__all__ = ["KeepingExporter"]

log = logging.getLogger(__name__)

MAX_KEPT_SPANS = 2048  # the batch processor's own queue size
MAX_RESEND = 512  # spans per request when sending kept ones again (the batch processor's batch size)
RETRY_EVERY_S = 15.0
MAX_KEEP_S = 900.0  # a quarter of an hour of collector downtime


@dataclass
class _Kept:
    span: ReadableSpan
    since: float  # time.monotonic() of its first failure

    @property
    def root(self) -> bool:
        return self.span.parent is None


class KeepingExporter(SpanExporter):
    """An exporter that keeps the spans it could not send (bounded) and sends them again later."""

    def __init__(self, inner: SpanExporter, *, max_kept: int = MAX_KEPT_SPANS, retry_every_s: float = RETRY_EVERY_S,
                 max_keep_s: float = MAX_KEEP_S) -> None:
        self.inner = inner
        self.max_kept = max_kept
        self.retry_every_s = retry_every_s
        self.max_keep_s = max_keep_s
        self.kept: list[_Kept] = []
        self.dropped = 0  # spans given up (no room, or kept too long): for the log and the tests
        self._lock = threading.Lock()  # one request at a time: the batch worker, the retry thread, shutdown
        self._stop = threading.Event()
        self._retrier: threading.Thread | None = None

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Send `spans`; on failure keep them for later. Kept spans go out after the next export that works."""
        with self._lock:
            result = self.inner.export(spans)
            if result is SpanExportResult.SUCCESS:
                if self.kept:
                    self._resend()
            else:
                self._keep(spans)
            return result

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Try the kept spans once more, then flush the wrapped exporter."""
        with self._lock:
            if self.kept:
                self._resend()
            return self.inner.force_flush(timeout_millis) and not self.kept

    def shutdown(self) -> None:
        """Stop retrying, try the kept spans one last time, shut the wrapped exporter down."""
        self._stop.set()
        with self._lock:
            if self.kept:
                self._resend()
                if self.kept:
                    log.warning("%d span(s) could not be sent to the OpenTelemetry collector before shutdown",
                                len(self.kept))
            self.inner.shutdown()

    # ------------------------------------------------------------ the kept spans (under the lock)
    def _keep(self, spans: Sequence[ReadableSpan]) -> None:
        now = time.monotonic()
        self.kept += [_Kept(span, now) for span in spans]
        over = len(self.kept) - self.max_kept
        if over > 0:  # no room for all: the oldest steps, calls and actions go first, the runs' own spans last
            gone: set[int] = set()
            for roots in (False, True):
                for k in self.kept:
                    if len(gone) < over and k.root is roots:
                        gone.add(id(k))
            self.kept = [k for k in self.kept if id(k) not in gone]
            self.dropped += over
            log.warning("the OpenTelemetry collector is unreachable; %d span(s) dropped so far", self.dropped)
        self._start_retrier()

    def _resend(self) -> None:
        """Send the kept spans again, a batch at a time; stop at the first failure. Spans kept too long go."""
        limit = time.monotonic() - self.max_keep_s
        expired = [k for k in self.kept if k.since < limit]
        if expired:
            self.dropped += len(expired)
            self.kept = [k for k in self.kept if k.since >= limit]
            log.warning("%d span(s) dropped: the OpenTelemetry collector was unreachable for %g s",
                        len(expired), self.max_keep_s)
        while self.kept:
            batch = self.kept[:MAX_RESEND]
            if self.inner.export([k.span for k in batch]) is not SpanExportResult.SUCCESS:
                return
            self.kept = self.kept[len(batch):]

    def _start_retrier(self) -> None:
        if self._retrier is None and not self._stop.is_set():
            self._retrier = threading.Thread(target=self._retry_loop, name="otel-retry", daemon=True)
            self._retrier.start()

    def _retry_loop(self) -> None:
        """Every `retry_every_s`, send what is kept; ends when nothing is left (or at shutdown)."""
        while not self._stop.wait(self.retry_every_s):
            with self._lock:
                if self.kept:
                    self._resend()
                if not self.kept:
                    self._retrier = None  # decided under the lock: the next failure starts a new one
                    return
