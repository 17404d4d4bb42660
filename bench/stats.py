"""Figures the benchmarks share: percentiles of latencies, and a free port."""

from __future__ import annotations

import socket
import statistics


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank `q`-th percentile (0–100) of non-empty `values`."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(latencies: list[float], quantiles: tuple[int, ...] = (50, 95, 99)) -> dict[str, float]:
    """n, the quantiles' p<q>_ms, mean_ms and max_ms of latencies in ms ({"n": 0} if none)."""
    if not latencies:
        return {"n": 0}
    figures: dict[str, float] = {"n": len(latencies)}
    for q in quantiles:
        figures[f"p{q}_ms"] = round(percentile(latencies, q), 1)
    figures["mean_ms"] = round(statistics.fmean(latencies), 1)
    figures["max_ms"] = round(max(latencies), 1)
    return figures


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
