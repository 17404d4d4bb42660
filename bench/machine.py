"""How busy the machine was during a benchmark phase, and with whose work.

On a shared 2-core machine another job's CPU shows up as our latency, so each
phase records the machine's busy CPU, the part spent by the service under test
and the load generator, the rest (other processes) and the heaviest of those.
"""

from __future__ import annotations

import os
import time
from typing import Any

import psutil


def _cpu(proc: psutil.Process) -> float:
    try:
        times = proc.cpu_times()
        return times.user + times.system + times.children_user + times.children_system
    except psutil.Error:
        return 0.0


def _busy(times: Any) -> float:
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


class MachineCPU:
    """CPU between start() and stop(): the machine, ours (a process tree + this
    process), and the other processes, in % of one core (200 = both cores)."""

    def __init__(self, service_pid: int | None) -> None:
        self.service_pid = service_pid
        self.began = 0.0
        self.machine: Any = None
        self.procs: dict[int, tuple[str, float]] = {}

    def _ours(self) -> set[int]:
        pids = {os.getpid()}
        if self.service_pid:
            try:
                root = psutil.Process(self.service_pid)
                pids |= {root.pid} | {c.pid for c in root.children(recursive=True)}
            except psutil.Error:
                pass
        return pids

    def _snapshot(self) -> dict[int, tuple[str, float]]:
        found = {}
        for proc in psutil.process_iter(["pid", "name", "cmdline"]):
            try:
                line = " ".join(proc.info["cmdline"] or []) or proc.info["name"] or "?"
                times = proc.cpu_times()
                found[proc.pid] = (line[:90], times.user + times.system)
            except psutil.Error:
                continue
        return found

    def start(self) -> None:
        self.began = time.monotonic()
        self.machine = psutil.cpu_times()
        self.procs = self._snapshot()

    def stop(self) -> dict[str, Any]:
        wall = max(1e-6, time.monotonic() - self.began)
        now = psutil.cpu_times()
        busy = 100 * (_busy(now) - _busy(self.machine)) / wall
        after = self._snapshot()
        ours = self._ours()
        spent = {
            pid: (line, cpu - self.procs.get(pid, (line, 0.0))[1])
            for pid, (line, cpu) in after.items()
        }
        ours_pct = 100 * sum(c for pid, (_, c) in spent.items() if pid in ours) / wall
        others = sorted(
            ((c, line) for pid, (line, c) in spent.items() if pid not in ours),
            reverse=True,
        )
        return {
            "seconds": round(wall, 1),
            "busy_cpu_pct": round(busy, 1),  # of one core; 200 = both cores
            "ours_cpu_pct": round(ours_pct, 1),
            "others_cpu_pct": round(max(0.0, busy - ours_pct), 1),
            "loadavg_1m": round(os.getloadavg()[0], 2),
            # Heavy others (≥ 10 % of a core over the phase), so noise has a name.
            "heavy_others": [
                {"cpu_pct": round(100 * c / wall, 1), "process": line}
                for c, line in others[:3] if 100 * c / wall >= 10
            ],
        }


def speed_ms(repeats: int = 5) -> float:
    """A fixed single-threaded pure-Python workload, best of `repeats`, in ms.

    Benchmark machines differ (the same code and the same stock Rasa measured
    twice as slow on one 2-core machine as on another): this says how fast
    this one ran Python, so figures from different runs can be put side by side.
    """
    def work() -> int:
        table: dict[str, int] = {}
        total = 0
        for i in range(200_000):
            key = f"k{i % 997}"
            table[key] = table.get(key, 0) + i
            total += len(key)
        return total + sum(table.values())

    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - began)
    return round(best * 1000, 1)
