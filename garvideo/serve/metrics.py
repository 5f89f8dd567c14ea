"""``GET /metrics`` of ``garvideo serve``: Prometheus text format through ``prometheus_client``, one
registry per app (two apps in one process never share a counter; nothing is registered globally).

Names (all prefixed ``garvideo_``):

* ``garvideo_http_requests_total{status}`` — chat-completion requests answered, by HTTP status (a stream
  counts as its 200; 499: the client went away before the answer started);
* ``garvideo_requests_total{outcome}`` — ``served`` / ``failed`` / ``cancelled`` / ``rejected`` (503);
* ``garvideo_queue_depth`` — requests admitted and not yet generating (checked, prepared or waiting for
  a batch); ``garvideo_running_rows`` — rows in the batch being generated; ``garvideo_in_flight``;
* ``garvideo_batch_rows`` — histogram of the rows of each generation batch;
* ``garvideo_request_seconds`` — histogram, admission to the last token (or the error);
  ``garvideo_queue_seconds`` — admission to the start of the request's generation;
  ``garvideo_first_token_seconds`` — admission to the first streamed text;
* ``garvideo_generated_tokens_total`` / ``garvideo_prompt_tokens_total`` — counters (tokens/s:
  ``rate(garvideo_generated_tokens_total[1m])``);
* ``garvideo_clip_cache_clips``, ``garvideo_clip_cache_hits``, ``garvideo_clip_cache_misses`` — gauges of the
  prepared-clip cache (hits and misses since start).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["CONTENT_TYPE", "ServeMetrics", "StatusCounter"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class ServeMetrics:
    """The server's metrics in their own :class:`prometheus_client.CollectorRegistry`.

    Args:
        gauges: name -> a function giving the current value (queue depth, running rows, in flight, cache).
    """

    def __init__(self, gauges: dict[str, tuple[str, Callable[[], float]]]) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http = Counter(
            "garvideo_http_requests",
            "Chat-completion requests answered, by HTTP status",
            ["status"],
            registry=r,
        )
        self.outcomes = Counter(
            "garvideo_requests", "Chat-completion requests by outcome", ["outcome"], registry=r
        )
        for outcome in ("served", "failed", "cancelled", "rejected"):
            self.outcomes.labels(outcome)  # exported at 0 from the start
        self.batch_rows = Histogram(
            "garvideo_batch_rows", "Rows of each generation batch", buckets=_BATCH_BUCKETS, registry=r
        )
        self.request_seconds = Histogram(
            "garvideo_request_seconds", "Admission to the last token", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.queue_seconds = Histogram(
            "garvideo_queue_seconds",
            "Admission to the start of the request's generation",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.first_token_seconds = Histogram(
            "garvideo_first_token_seconds",
            "Admission to the first streamed text",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.generated_tokens = Counter("garvideo_generated_tokens", "New tokens generated", registry=r)
        self.prompt_tokens = Counter(
            "garvideo_prompt_tokens", "Prompt tokens of answered requests", registry=r
        )
        for name, (doc, fn) in gauges.items():
            Gauge(name, doc, registry=r).set_function(fn)

    def render(self) -> bytes:
        """The registry in Prometheus text format."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class StatusCounter:
    """ASGI middleware counting the status of every response on ``path`` into ``counter`` (pure ASGI:
    streaming responses and disconnect detection pass through untouched)."""

    def __init__(self, app: Any, counter: Any, path: str) -> None:
        self.app = app
        self.counter = counter
        self.path = path

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") != self.path:
            await self.app(scope, receive, send)
            return

        async def counting_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                self.counter.labels(str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, counting_send)
