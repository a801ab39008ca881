"""The proxy's counters and the Prometheus text exposition of ``GET /metrics``.

Hand-written (format 0.0.4): a few counters, a queue gauge and one latency histogram
do not need a client library. Updated from the event loop only, read from it too.
"""

from __future__ import annotations

import bisect
from collections import Counter

from proxy.writer import WriterCounts

#: Upper bounds (seconds) of the upstream latency histogram.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class Metrics:
    """Requests by endpoint and status, and the upstream latency histogram."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, int]] = Counter()
        self.bucket_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.latency_count = 0
        self.upstream_errors: Counter[str] = Counter()

    def request(self, endpoint: str, status: int) -> None:
        self.requests[(endpoint, status)] += 1

    def upstream_latency(self, seconds: float) -> None:
        self.bucket_counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds
        self.latency_count += 1

    def render(self, writer: WriterCounts, queue_depth: int) -> str:
        """The Prometheus text format of everything counted."""
        lines = [
            "# HELP sentinel_proxy_requests_total Requests answered, by endpoint and status.",
            "# TYPE sentinel_proxy_requests_total counter",
        ]
        for (endpoint, status), n in sorted(self.requests.items()):
            lines.append(
                f'sentinel_proxy_requests_total{{endpoint="{endpoint}",status="{status}"}} {n}'
            )
        lines += [
            "# HELP sentinel_proxy_upstream_errors_total Upstream failures answered by the "
            "proxy itself (timeout: 504, connect: 502).",
            "# TYPE sentinel_proxy_upstream_errors_total counter",
        ]
        for kind in ("timeout", "connect", "stream"):
            lines.append(
                f'sentinel_proxy_upstream_errors_total{{kind="{kind}"}} '
                f"{self.upstream_errors[kind]}"
            )
        lines += [
            "# HELP sentinel_proxy_upstream_latency_seconds Seconds from sending a request "
            "upstream to the last byte of its answer.",
            "# TYPE sentinel_proxy_upstream_latency_seconds histogram",
        ]
        cumulative = 0
        for bound, n in zip(LATENCY_BUCKETS, self.bucket_counts, strict=False):
            cumulative += n
            lines.append(
                f'sentinel_proxy_upstream_latency_seconds_bucket{{le="{bound}"}} {cumulative}'
            )
        lines += [
            f'sentinel_proxy_upstream_latency_seconds_bucket{{le="+Inf"}} {self.latency_count}',
            f"sentinel_proxy_upstream_latency_seconds_sum {self.latency_sum:.6f}",
            f"sentinel_proxy_upstream_latency_seconds_count {self.latency_count}",
        ]
        counts = writer.snapshot()
        for name, help_text, value in (
            (
                "responses_queued_total",
                "Responses handed to the writer (a response of n choices is n traces).",
                counts["submitted"],
            ),
            ("traces_written_total", "Traces stored (one per choice).", counts["stored"]),
            (
                "traces_duplicate_total",
                "Traces already in the store (same id and content).",
                counts["duplicates"],
            ),
            (
                "traces_quarantined_total",
                "Traces the store quarantined (no logprobs, invalid), as sentinel ingest does.",
                counts["quarantined"],
            ),
            (
                "traces_spilled_total",
                "Responses appended to the spill file because the store failed.",
                counts["spilled"],
            ),
            ("store_errors_total", "Failed store writes (each spilled).", counts["store_errors"]),
        ):
            lines += [
                f"# HELP sentinel_proxy_{name} {help_text}",
                f"# TYPE sentinel_proxy_{name} counter",
                f"sentinel_proxy_{name} {value}",
            ]
        lines += [
            "# HELP sentinel_proxy_traces_dropped_total Responses lost: the queue was full, "
            "or the store and the spill file both failed.",
            "# TYPE sentinel_proxy_traces_dropped_total counter",
            f'sentinel_proxy_traces_dropped_total{{reason="queue_full"}} '
            f"{counts['dropped_queue_full']}",
            f'sentinel_proxy_traces_dropped_total{{reason="spill_failed"}} '
            f"{counts['dropped_spill_failed']}",
            "# HELP sentinel_proxy_queue_depth Responses waiting for the writer.",
            "# TYPE sentinel_proxy_queue_depth gauge",
            f"sentinel_proxy_queue_depth {queue_depth}",
        ]
        return "\n".join(lines) + "\n"
