"""Issue 6's targets, judged from one run's results. Pure: scenarios and floor in, verdicts out."""

from __future__ import annotations

import math

GATEWAY_EFFICIENCY = 0.9  # REST GET req/s over direct gRPC GET req/s, at least
STACK_COST_RATIO = 40.0  # CPU per REST GET over Redis's CPU per HGETALL, at most
TAIL_RATIO = 3.0  # p99 over p50, at most, in every scenario
WRITE_RATIO = 0.5  # CREATE+DELETE pairs per second over GET req/s, at least
SCALE_TOLERANCE = 0.10  # GET cost with the big data set vs the small one
LIST_GROWTH = 5.0  # LIST cost with 50 secrets over 10: linear at most
MEMORY_PER_SECRET = 1024  # bytes, under
NAN = math.nan


def find(scenarios: list[dict], name: str, api: str, dataset: str = "small") -> dict | None:
    for s in scenarios:
        if s["name"] == name and s["api"] == api and s["dataset"] == dataset:
            return s
    return None


def _ratio(top: dict | None, top_key: str, bottom: dict | None, bottom_key: str) -> float:
    if not top or not bottom or not bottom[bottom_key]:
        return NAN
    return top[top_key] / bottom[bottom_key]


def _verdict(target: str, value: float, limit: str, met: bool, detail: str) -> dict:
    met = bool(met) and not math.isnan(value)
    return {"target": target, "value": value, "limit": limit, "met": met, "detail": detail}


def _tails(scenarios: list[dict]) -> tuple[float, list[str]]:
    worst, bad = NAN, []
    for s in scenarios:
        if s["dataset"] == "hop":  # the transport floor rows are reference points, not scenarios
            continue
        tail = s["p99_ms"] / s["p50_ms"] if s["p50_ms"] else NAN
        worst = tail if math.isnan(worst) else max(worst, tail)
        if not tail <= TAIL_RATIO or s["errors"]:
            bad.append(f"{s['api']} {s['name']}@{s['dataset']}: p99/p50 {tail:.2f}, errors {s['errors']}")
    return worst, bad


def evaluate(scenarios: list[dict], floor: dict, memory: dict, scale_users: int) -> list[dict]:
    rest_get, grpc_get = find(scenarios, "get", "rest"), find(scenarios, "get", "grpc")
    unit = floor.get("hgetall", {}).get("redis_cpu_us_per_op", NAN)
    stack = rest_get["stack_us_per_req"] if rest_get else NAN
    cost = stack / unit if unit else NAN
    worst, bad = _tails(scenarios)
    pairs = find(scenarios, "create_delete", "rest")
    writes = pairs["extra"]["pairs_per_s"] / rest_get["rps"] if pairs and rest_get else NAN
    growth = _ratio(find(scenarios, "get", "rest", "scale"), "stack_us_per_req", rest_get, "stack_us_per_req")
    l10, l50 = find(scenarios, "list10", "rest"), find(scenarios, "list50", "rest")
    linear = _ratio(l50, "stack_us_per_req", l10, "stack_us_per_req")
    per_secret = memory.get("bytes_per_secret", NAN)
    eff = _ratio(rest_get, "rps", grpc_get, "rps")
    return [
        _verdict(
            "1 gateway efficiency", eff, f">= {GATEWAY_EFFICIENCY}", eff >= GATEWAY_EFFICIENCY,
            "REST GET req/s / gRPC GET req/s",
        ),
        _verdict(
            "2 stack cost", cost, f"<= {STACK_COST_RATIO:g}x", cost <= STACK_COST_RATIO,
            f"REST GET {stack:.0f} µs CPU (gateway+server+Redis) / Redis HGETALL {unit:.1f} µs",
        ),
        _verdict(
            "3 tail and errors", worst, f"p99 <= {TAIL_RATIO:g} x p50, 0 errors", not bad,
            "; ".join(bad) or "every scenario",
        ),
        _verdict(
            "4 writes", writes, f">= {WRITE_RATIO}", writes >= WRITE_RATIO,
            "REST CREATE+DELETE pairs/s / REST GET req/s",
        ),
        _verdict(
            "5a scale: GET cost", growth, f"within 1 +/- {SCALE_TOLERANCE:g}", abs(growth - 1) <= SCALE_TOLERANCE,
            f"REST GET CPU/req with {scale_users} users x 10 secrets / with 10 users",
        ),
        _verdict(
            "5b scale: LIST cost", linear, f"<= {LIST_GROWTH:g} (50/10 secrets)", linear <= LIST_GROWTH,
            "REST LIST CPU/req with 50 secrets / with 10",
        ),
        _verdict(
            "5c scale: memory", per_secret, f"< {MEMORY_PER_SECRET} bytes/secret", per_secret < MEMORY_PER_SECRET,
            "Redis used_memory delta per stored secret, all indexes",
        ),
    ]  # fmt: skip
