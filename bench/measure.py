"""One measured window: snapshots of every process's CPU, Redis's command counters and the server's RPC counters
taken around one run of a load tool, turned into a scenario result.

Snapshots that cost the measured processes work (a metrics scrape, INFO) are taken outside the CPU window.
"""

from __future__ import annotations

import math
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from bench import stats, tools
from bench.procs import TICKS_PER_SECOND, Stack, machine_ticks

# Processes whose CPU is the cost of serving a request, per API.
STACK_PROCESSES = {"rest": ("gateway", "server", "redis"), "grpc": ("server", "redis")}


@dataclass
class LoadOutcome:
    """What a load tool reports about one run."""

    requests: int
    duration_s: float
    latency: dict[str, float]
    tool_cpu_s: float
    errors: dict[str, float] = field(default_factory=dict)  # kind -> count; only non-zero kinds
    extra: dict[str, object] = field(default_factory=dict)


@dataclass
class Snapshot:
    times: dict[str, tuple[int, int]]  # (utime, stime) ticks per process
    machine: tuple[int, int]
    commands: dict[str, tuple[int, int]]
    calls: dict[str, float]

    @property
    def cpu(self) -> dict[str, int]:
        return {name: user + system for name, (user, system) in self.times.items()}

    @property
    def system(self) -> dict[str, int]:
        return {name: system for name, (_, system) in self.times.items()}


class Probe:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.redis = redis.Redis(port=stack.redis_port)

    def close(self) -> None:
        self.redis.close()

    def grpc_calls(self) -> dict[str, float]:
        with urllib.request.urlopen(self.stack.metrics_url, timeout=5) as reply:  # noqa: S310 - our loopback
            return tools.parse_grpc_calls(reply.read().decode())

    def commands(self) -> dict[str, tuple[int, int]]:
        info = self.redis.info("commandstats")
        return {key.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"])) for key, v in info.items()}

    def measure(self, run: Callable[[], LoadOutcome]) -> tuple[LoadOutcome, Snapshot, Snapshot]:
        calls, commands = self.grpc_calls(), self.commands()
        before = Snapshot(self.stack.cpu(), machine_ticks(), commands, calls)
        outcome = run()
        cpu, machine = self.stack.cpu(), machine_ticks()
        after = Snapshot(cpu, machine, self.commands(), self.grpc_calls())
        return outcome, before, after


def _server_codes(before: Snapshot, after: Snapshot) -> dict[str, float]:
    return stats.counter_delta(before.calls, after.calls)


def _redis_commands(before: Snapshot, after: Snapshot, requests: int) -> dict[str, dict[str, float]]:
    out = {}
    for name, (calls, usec) in after.commands.items():
        if name in ("info",):  # our own probe
            continue
        old_calls, old_usec = before.commands.get(name, (0, 0))
        if calls > old_calls and requests:
            out[name] = {"calls_per_req": (calls - old_calls) / requests, "usec_per_req": (usec - old_usec) / requests}
    return out


def result(
    name: str, api: str, tool: str, dataset: str, outcome: LoadOutcome, before: Snapshot, after: Snapshot
) -> dict:
    requests = outcome.requests
    per_process = stats.cpu_us_per_request(before.cpu, after.cpu, requests, TICKS_PER_SECOND)
    per_process["load_tool"] = outcome.tool_cpu_s * 1e6 / requests if requests else math.nan
    busy = after.machine[0] - before.machine[0]
    total = after.machine[1] - before.machine[1]
    ours = sum(after.cpu[p] - before.cpu[p] for p in after.cpu)
    tool_ticks = outcome.tool_cpu_s * TICKS_PER_SECOND
    # Whatever else the machine did meanwhile (other people's tests): the noise next to each figure.
    per_process["other"] = (
        max(busy - ours - tool_ticks, 0) * 1e6 / TICKS_PER_SECOND / requests if requests else math.nan
    )
    stack_us = sum(per_process[p] for p in STACK_PROCESSES[api])
    # Share of each process's CPU spent in the kernel (syscalls: sockets, epoll): what fewer round trips save.
    kernel = stats.cpu_us_per_request(before.system, after.system, requests, TICKS_PER_SECOND)
    kernel_pct = {p: round(100 * kernel[p] / per_process[p], 1) for p in kernel if per_process.get(p)}
    latency = outcome.latency
    errors = {kind: count for kind, count in outcome.errors.items() if count}
    return {
        "name": name,
        "api": api,
        "tool": tool,
        "dataset": dataset,
        "requests": requests,
        "duration_s": round(outcome.duration_s, 3),
        "rps": requests / outcome.duration_s if outcome.duration_s else math.nan,
        "p50_ms": latency["p50_us"] / 1000,
        "p90_ms": latency["p90_us"] / 1000,
        "p99_ms": latency["p99_us"] / 1000,
        "max_ms": latency["max_us"] / 1000,
        "errors": int(sum(errors.values())),
        "error_detail": errors,
        "cpu_us_per_req": per_process,
        "kernel_pct": kernel_pct,
        "stack_us_per_req": stack_us,
        "machine_busy_pct": 100 * busy / total if total else math.nan,
        "server_codes": _server_codes(before, after),
        "redis_commands": _redis_commands(before, after, requests),
        **({"extra": outcome.extra} if outcome.extra else {}),
    }
