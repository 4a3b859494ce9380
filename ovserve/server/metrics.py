"""Prometheus metrics at ``GET /metrics``: requests, tokens, latency, and each resource's gauges."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from ovserve.server.loop_lag import LAG_BUCKETS
from ovserve.server.servables import Servables

disable_created_metrics()  # no *_created series: they double the exposition and nothing reads them

#: Resource metrics that only grow: exposed as counters (``ovserve_<name>_total``).
RESOURCE_COUNTERS = frozenset({"engine_starts", "engine_hangs", "engine_steps", "engine_idle_steps",
                               "scoring_engine_starts"})
_TOKEN_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5)
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class _ResourceGauges(Collector):
    """Reads resource gauges (engine state, KV cache use, ...) at scrape time."""

    def __init__(self, servables: Servables) -> None:
        self.servables = servables

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily]:
        families: dict[str, GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily] = {}
        for servable in self.servables:
            families.setdefault("model_ready", GaugeMetricFamily(
                "ovserve_model_ready", "1 when the model can serve", labels=["model"],
            )).add_metric([servable.name], float(servable.ready))
            for node, gauges in servable.graph.resource_metrics():
                for name, value in gauges.items():
                    kind = CounterMetricFamily if name in RESOURCE_COUNTERS else GaugeMetricFamily
                    families.setdefault(name, kind(
                        f"ovserve_{name}", f"{name.replace('_', ' ')} (reported by the graph's resources)",
                        labels=["model", "node"],
                    )).add_metric([servable.name, node], value)
            for node, histograms in servable.graph.resource_histograms():
                for name, histogram in histograms.items():
                    family = families.setdefault(name, HistogramMetricFamily(
                        f"ovserve_{name}", histogram.doc, labels=["model", "node"]))
                    family.add_metric([servable.name, node], histogram.cumulative(),  # type: ignore[call-arg]
                                      sum_value=histogram.total)
        yield from families.values()


class ServerMetrics:
    """The server's metric families, in a registry of their own."""

    def __init__(self, servables: Servables) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("ovserve_requests", "Requests to the completion endpoints, by HTTP status",
                                ["model", "status"], registry=self.registry)
        self.prompt_tokens = Counter("ovserve_prompt_tokens", "Prompt tokens processed", ["model"],
                                     registry=self.registry)
        self.generated_tokens = Counter("ovserve_generated_tokens", "Tokens generated", ["model"],
                                        registry=self.registry)
        self.duration = Histogram("ovserve_request_duration_seconds", "Time from request to last byte",
                                  ["model"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.first_chunk = Histogram("ovserve_time_to_first_chunk_seconds",
                                     "Time from request to the first response bytes (streams: first token)",
                                     ["model"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.inter_chunk = Histogram("ovserve_inter_token_latency_seconds",
                                     "Time between consecutive chunks of a streamed answer (about one token each)",
                                     ["model"], buckets=_TOKEN_BUCKETS, registry=self.registry)
        self.loop_lag = Histogram("ovserve_event_loop_lag_seconds",
                                  "How much later than asked the HTTP event loop woke a 5 ms timer",
                                  buckets=LAG_BUCKETS, registry=self.registry)
        self.in_flight = Gauge("ovserve_requests_in_flight", "Completion requests being served now",
                               registry=self.registry)
        self.rejected = Counter("ovserve_requests_rejected",
                                "Completion requests refused with 429: the server was at --max-concurrent-requests",
                                registry=self.registry)
        self.config_reloads = Counter("ovserve_config_reloads",
                                      "Reloads of --config that changed what is served (models added, rebuilt "
                                      "or removed)", registry=self.registry)
        self.config_reload_failures = Counter(
            "ovserve_config_reload_failures",
            "Reloads of --config that failed, by model ('-': config.json itself); the previous version serves on",
            ["model"], registry=self.registry)
        self.registry.register(_ResourceGauges(servables))

    def observe(self, model: str, status: int, seconds: float, first_chunk: float | None,
                prompt_tokens: object, completion_tokens: object) -> None:
        """Record one finished request."""
        self.requests.labels(model, str(status)).inc()
        self.duration.labels(model).observe(seconds)
        if first_chunk is not None:
            self.first_chunk.labels(model).observe(first_chunk)
        if isinstance(prompt_tokens, int):
            self.prompt_tokens.labels(model).inc(prompt_tokens)
        if isinstance(completion_tokens, int):
            self.generated_tokens.labels(model).inc(completion_tokens)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
