"""Everything the run hands back: the printed table, bench/results/latest.json and the PNG chart."""

from __future__ import annotations

import json
import math
from pathlib import Path

PROCESSES = ("gateway", "server", "redis", "load_tool", "other")
HEADER = (
    f"{'scenario':<22}{'req/s':>8}{'p50ms':>7}{'p90ms':>7}{'p99ms':>7}{'err':>5}"
    f"{'gw':>6}{'srv':>6}{'redis':>6}{'tool':>6}{'other':>6}{'stack':>7}{'xfl':>5}"
)


def _num(value: float, width: int, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"{'-':>{width}}"
    return f"{value:>{width}.{digits}f}"


def operation(s: dict) -> str:
    return s["name"] + {"small": "", "scale": "@scale", "hop": " (hop)"}[s["dataset"]]


def label(s: dict) -> str:
    return f"{s['api']} {operation(s)}"


def table(scenarios: list[dict], floor_us: float) -> str:
    lines = [HEADER, "-" * len(HEADER)]
    for s in scenarios:
        cpu = s["cpu_us_per_req"]
        cells = [
            f"{label(s):<22}",
            _num(s["rps"], 8),
            _num(s["p50_ms"], 7, 2),
            _num(s["p90_ms"], 7, 2),
            _num(s["p99_ms"], 7, 2),
            _num(s["errors"], 5),
            *(_num(cpu.get(p, math.nan), 6) for p in PROCESSES),
            _num(s["stack_us_per_req"], 7),
            _num(s["stack_us_per_req"] / floor_us if floor_us else math.nan, 5),
        ]
        lines.append("".join(cells))
    lines.append("CPU columns: µs per request (gw = gateway, srv = server, tool = load tool, other = rest of machine);")
    lines.append(
        f"stack = gw+srv+redis (REST) or srv+redis (gRPC); xfl = stack / Redis HGETALL floor ({floor_us:.1f} µs)."
    )
    return "\n".join(lines)


def floor_table(floor: dict) -> str:
    lines = ["floor (redis-benchmark on the same Redis):"]
    for name, row in floor.items():
        lines.append(
            f"  {name:<18} {row['rps']:>9.0f} ops/s  Redis CPU {row['redis_cpu_us_per_op']:>6.2f} µs/op  "
            f"(c={row['connections']}, P={row['pipeline']})"
        )
    return "\n".join(lines)


def targets_table(verdicts: list[dict]) -> str:
    lines = ["targets:"]
    for v in verdicts:
        mark = "MET   " if v["met"] else "MISSED"
        lines.append(f"  {mark} {v['target']:<22} {v['value']:>8.3f}  (want {v['limit']}) {v['detail']}")
    return "\n".join(lines)


def write_json(path: Path, document: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, sort_keys=False, default=str) + "\n")


def chart(path: Path, scenarios: list[dict], title: str) -> bool:
    """Throughput, p99 and CPU per request for each operation, REST beside gRPC. False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench: matplotlib is not installed (pip install matplotlib); no chart drawn")
        return False
    ops: list[str] = []
    for s in scenarios:
        # The two hop rows (REST /healthz, gRPC Health.Check) share one slot: the transport alone.
        op = "hop only" if s["dataset"] == "hop" else operation(s)
        if op not in ops:
            ops.append(op)
    by = {("hop only" if s["dataset"] == "hop" else operation(s), s["api"]): s for s in scenarios}
    x = list(range(len(ops)))
    width = 0.4
    fig, axes = plt.subplots(3, 1, figsize=(11, 11), sharex=True)
    colors = {"rest": "#1f77b4", "grpc": "#ff7f0e"}
    for offset, api in ((-width / 2, "rest"), (width / 2, "grpc")):
        xs = [i + offset for i in x]
        axes[0].bar(xs, [by[(o, api)]["rps"] if (o, api) in by else 0 for o in ops], width, label=api.upper(),
                    color=colors[api])  # fmt: skip
        axes[1].bar(xs, [by[(o, api)]["p99_ms"] if (o, api) in by else 0 for o in ops], width, label=api.upper(),
                    color=colors[api])  # fmt: skip
        bottom = [0.0] * len(ops)
        for process, shade in (("gateway", 1.0), ("server", 0.7), ("redis", 0.4)):
            values = [by[(o, api)]["cpu_us_per_req"].get(process, 0) if (o, api) in by else 0 for o in ops]
            axes[2].bar(xs, values, width, bottom=bottom, color=colors[api], alpha=shade,
                        label=f"{api.upper()} {process}", edgecolor="black", linewidth=0.3)  # fmt: skip
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    axes[0].set_ylabel("requests / s")
    axes[1].set_ylabel("p99 latency (ms)")
    axes[2].set_ylabel("CPU µs / request")
    axes[0].set_title(title)
    axes[0].text(
        0.01, 0.97, "create_delete: requests/s (2 per pair); gRPC create_delete driven by a Python client;\n"
        "hop only: REST /healthz and gRPC Health.Check (no token, no Redis)",
        transform=axes[0].transAxes, fontsize=8, va="top",
    )  # fmt: skip
    for ax in axes:
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend()
    axes[2].legend(ncol=2, fontsize=8)
    axes[2].set_xticks(x, ops, rotation=20)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
