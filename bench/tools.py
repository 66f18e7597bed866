"""The load tools: make sure they exist, run them with their CPU measured, and parse what they print.

wrk drives REST, h2load drives gRPC (one fixed request per run), redis-benchmark measures the floor. The
parsers are pure functions over the tools' text so tests can feed them canned output.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench import stats

# Executable -> Debian package that ships it.
PACKAGES = {
    "wrk": "wrk",
    "h2load": "nghttp2-client",
    "redis-server": "redis-server",
    "redis-benchmark": "redis-tools",
    "redis-cli": "redis-tools",
}


def ensure_tools(names: list[str]) -> None:
    """Install missing tools with apt-get when running as root; otherwise say exactly what to install."""
    missing = [name for name in names if shutil.which(name) is None]
    if not missing:
        return
    packages = sorted({PACKAGES[name] for name in missing})
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise SystemExit(
            f"bench: missing {', '.join(missing)}; install with: sudo apt-get install -y {' '.join(packages)}"
        )
    print(f"bench: installing {' '.join(packages)} with apt-get", flush=True)
    install = ["apt-get", "install", "-y", "-q", *packages]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=False)
        done = subprocess.run(install, env=env, capture_output=True)
        if done.returncode != 0:
            raise SystemExit(f"bench: apt-get install {' '.join(packages)} failed:\n{done.stderr.decode()[-2000:]}")
    still = [name for name in names if shutil.which(name) is None]
    if still:
        raise SystemExit(f"bench: {', '.join(still)} still missing after apt-get install")


@dataclass(frozen=True)
class ToolRun:
    output: str
    cpu_seconds: float  # user + system of the tool process and its threads, from wait4's rusage
    wall_seconds: float
    returncode: int


def run_tool(argv: list[str], workdir: Path, env: dict[str, str] | None = None, timeout: float = 120.0) -> ToolRun:
    out_path = workdir / "tool.out"
    started = time.monotonic()
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    deadline = started + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.01)
    proc.returncode = os.waitstatus_to_exitcode(status)  # wait4 reaped it; keep Popen from waiting again
    return ToolRun(
        output=out_path.read_text(errors="replace"),
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        wall_seconds=time.monotonic() - started,
        returncode=proc.returncode,
    )


# --- wrk -------------------------------------------------------------------------------------------------


def bench_json(output: str) -> dict:
    """The one `BENCH_JSON {...}` line our scripts and clients print."""
    for line in output.splitlines():
        if line.startswith("BENCH_JSON "):
            return json.loads(line.removeprefix("BENCH_JSON "))
    raise ValueError(f"no BENCH_JSON line in:\n{output[-2000:]}")


def parse_wrk(output: str) -> dict:
    """The summary bench/lua/report.lua prints from wrk's done(); latencies in µs."""
    data = bench_json(output)
    data["duration_s"] = data.pop("duration_us") / 1e6
    return data


# --- h2load ----------------------------------------------------------------------------------------------

_H2_FINISHED = re.compile(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s")
_H2_REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout"
)
_H2_STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
_H2_DATA = re.compile(r"traffic: .*?, [\d.]+\w*B \((\d+)\) data")


def parse_h2load(output: str) -> dict:
    finished = _H2_FINISHED.search(output)
    requests = _H2_REQUESTS.search(output)
    status = _H2_STATUS.search(output)
    data = _H2_DATA.search(output)
    if not (finished and requests and status and data):
        raise ValueError(f"unexpected h2load output:\n{output[-2000:]}")
    seconds = float(finished.group(1)) / (1000 if finished.group(2) == "ms" else 1)
    _total, _started, done, succeeded, failed, errored, timeout = (int(v) for v in requests.groups())
    return {
        "duration_s": seconds,
        "requests": done,
        "succeeded": succeeded,
        "failed": failed,
        "errored": errored,
        "timeout": timeout,
        "status": dict(zip(("2xx", "3xx", "4xx", "5xx"), (int(v) for v in status.groups()), strict=True)),
        "data_bytes": int(data.group(1)),
    }


def parse_h2load_log(text: str) -> dict[str, float]:
    """Latency percentiles from h2load's --log-file (start µs, HTTP status, duration µs); failed streams skipped."""
    durations = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[1] == "200":
            durations.append(float(parts[2]))
    return stats.latency_summary_us(durations)


def grpc_frame(message: bytes) -> bytes:
    """One uncompressed gRPC length-prefixed message, as h2load sends it with -d."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


# --- redis-benchmark -------------------------------------------------------------------------------------


def parse_redis_benchmark_csv(output: str) -> dict[str, float]:
    """The row of `redis-benchmark --csv <command>`: requests per second and the latency columns (ms)."""
    rows = [line for line in output.splitlines() if line.startswith('"')]
    if len(rows) < 2:
        raise ValueError(f"unexpected redis-benchmark output:\n{output[-2000:]}")
    header = [cell.strip('"') for cell in rows[0].split('","')]
    values = [cell.strip('"') for cell in rows[-1].split('","')]
    row = dict(zip(header, values, strict=True))
    return {key: float(value) for key, value in row.items() if key != "test"}


# --- Prometheus text -----------------------------------------------------------------------------------

_PROM_LINE = re.compile(r"^([a-zA-Z_:][\w:]*)\{([^}]*)\} ([-+\deE.naNIf]+)$")


def parse_grpc_calls(metrics_text: str) -> dict[str, float]:
    """`usersecrets_grpc_calls_total{method, code}` as {"Method/CODE": count}."""
    calls: dict[str, float] = {}
    for line in metrics_text.splitlines():
        found = _PROM_LINE.match(line)
        if not found or found.group(1) != "usersecrets_grpc_calls_total":
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', found.group(2)))
        calls[f"{labels.get('method', '')}/{labels.get('code', '')}"] = float(found.group(3))
    return calls
