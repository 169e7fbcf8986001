"""Prometheus exposition of the host's metrics.

Not prometheus-client's multiprocess mode: each scrape reads the totals that
every process has written to the shared :class:`~.store.TelemetryStore` (a few
rows per function version), so ``/metrics`` answers the same from any
``--workers`` process and its counters survive restarts. Gauges of the present
moment (executions in flight, async queues, dead letters) come from callables
the host passes in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TypeVar

from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from .store import BUCKET_LABELS, TelemetryStore

logger = logging.getLogger("wasmhost.telemetry")

T = TypeVar("T")


class HostCollector(Collector):
    """Yields the ``wasmhost_*`` metrics at each scrape.

    ``concurrency()`` -> {function: executions in flight now, across processes};
    ``queue()`` -> {function: (async events waiting, age of the oldest in seconds)};
    ``dead_letters()`` -> {dead-letter queue name: messages}. A gauge whose callable
    is not given is left out; one whose callable raises is left out of that scrape
    (and logged), so one broken source does not blank ``/metrics``.
    """

    def __init__(
        self,
        store: TelemetryStore,
        *,
        concurrency: Callable[[], dict[str, int]] | None = None,
        queue: Callable[[], dict[str, tuple[int, float]]] | None = None,
        dead_letters: Callable[[], dict[str, int]] | None = None,
    ) -> None:
        self.store = store
        self.concurrency = concurrency
        self.queue = queue
        self.dead_letters = dead_letters

    def collect(self) -> Iterator[Metric]:
        yield from self._totals()
        concurrency = _call(self.concurrency, "concurrency")
        if concurrency is not None:
            gauge = GaugeMetricFamily(
                "wasmhost_concurrent_executions", "Invocations running now, in all processes.", labels=["function"]
            )
            for function, running in sorted(concurrency.items()):
                gauge.add_metric([function], running)
            yield gauge
        queue = _call(self.queue, "queue")
        if queue is not None:
            depth = GaugeMetricFamily(
                "wasmhost_async_queue_depth", "Asynchronous events waiting to be invoked.", labels=["function"]
            )
            oldest = GaugeMetricFamily(
                "wasmhost_async_queue_oldest_age_seconds",
                "Age of the oldest asynchronous event waiting, in seconds (0 when none wait).",
                labels=["function"],
            )
            for function, (waiting, age_s) in sorted(queue.items()):
                depth.add_metric([function], waiting)
                oldest.add_metric([function], age_s)
            yield depth
            yield oldest
        dead_letters = _call(self.dead_letters, "dead_letters")
        if dead_letters is not None:
            gauge = GaugeMetricFamily(
                "wasmhost_dead_letters", "Messages in a dead-letter queue, not yet taken.", labels=["queue"]
            )
            for name, messages in sorted(dead_letters.items()):
                gauge.add_metric([name], messages)
            yield gauge

    def _totals(self) -> Iterator[Metric]:
        """The counters and the duration histogram, from the store's totals of every process."""
        labels = ["function", "version"]
        invocations = CounterMetricFamily(
            "wasmhost_invocations",
            "Invocations that ran, by outcome (ok or error); throttled requests are not counted.",
            labels=[*labels, "outcome"],
        )
        errors = CounterMetricFamily(
            "wasmhost_errors", "Invocations that ended in an error, by error type.", labels=[*labels, "error_type"]
        )
        throttles = CounterMetricFamily(
            "wasmhost_throttles", "Synchronous invocations refused at a concurrency limit (HTTP 429).", labels=labels
        )
        cold_starts = CounterMetricFamily(
            "wasmhost_cold_starts", "Invocations that had to load the function's code first.", labels=labels
        )
        duration = HistogramMetricFamily(
            "wasmhost_invocation_duration_seconds",
            "Wall time of invocations (sandbox created, run and torn down), in seconds.",
            labels=labels,
        )
        for totals in self.store.aggregates():
            function_version = [totals.function, totals.version]
            for outcome in ("ok", "error"):
                invocations.add_metric([*function_version, outcome], totals.invocations.get(outcome, 0))
            for error_type, count in sorted(totals.errors.items()):
                errors.add_metric([*function_version, error_type], count)
            throttles.add_metric(function_version, totals.throttles)
            cold_starts.add_metric(function_version, totals.cold_starts)
            buckets = [(label, count) for label, (_, count) in zip(BUCKET_LABELS, totals.duration_buckets, strict=True)]
            duration.add_metric(function_version, buckets, totals.duration_sum_s)
        yield from (invocations, errors, throttles, cold_starts, duration)


def _call(source: Callable[[], T] | None, name: str) -> T | None:
    if source is None:
        return None
    try:
        return source()
    except Exception:
        logger.exception("metrics: the %s source failed; its gauges are left out of this scrape", name)
        return None


def render(collector: Collector) -> tuple[bytes, str]:
    """The Prometheus text exposition of ``collector`` and its content type.

    A :class:`HostCollector` flushes its store's buffer before reading, so a scrape
    sees this process's latest invocations.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry), CONTENT_TYPE_LATEST
