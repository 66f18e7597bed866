"""Run one load tool for a fixed time and return a LoadOutcome, with the tool's blind spots covered.

- wrk (REST): bench/lua scripts; errors are socket errors, non-2xx/3xx answers and, for the pairs, every
  answer that was neither a 201 nor a 204.
- h2load (gRPC): it counts an HTTP 200 carrying grpc-status != 0 as a success, so each run is checked three
  ways: one call with a real client first (status OK, response size), DATA bytes received against that size,
  and the server's own per-method status counters (Prometheus) around the run.
- bench.grpc_load (gRPC writes): a Python client, its CPU reported like the others.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.protobuf.message import Message

from bench import tools
from bench.measure import LoadOutcome
from usersecrets.v1 import usersecrets_pb2_grpc as pb_grpc

LUA_DIR = Path(__file__).parent / "lua"
SERVICE_PATH = "/usersecrets.v1.UserSecretsService/"


@dataclass(frozen=True)
class Load:
    connections: int
    workdir: Path


def wrk(load: Load, url: str, script: str, data: Path, seconds: int, env: dict[str, str] | None = None) -> LoadOutcome:
    counters = "created,deleted,unexpected" if script == "create_delete.lua" else ""
    run_env = dict(os.environ, BENCH_LUA_DIR=str(LUA_DIR), BENCH_DATA=str(data), BENCH_COUNTERS=counters, **(env or {}))
    argv = [
        "wrk", "-t", "2", "-c", str(load.connections), "-d", f"{seconds}s", "--timeout", "5s",
        "-s", str(LUA_DIR / script), url,
    ]  # fmt: skip
    run = tools.run_tool(argv, load.workdir, run_env, timeout=seconds + 60)
    parsed = tools.parse_wrk(run.output)
    errors: dict[str, float] = dict(parsed["errors"])
    extra: dict[str, object] = {}
    if counters:
        got = parsed["counters"]
        # wrk's "status" error count is already inside this: every answer that was not a 201 or a 204.
        errors["status"] = parsed["requests"] - got["created"] - got["deleted"]
        errors["unmatched_201"] = got["unexpected"]
        extra = {
            "created": got["created"],
            "deleted": got["deleted"],
            "pairs_per_s": got["deleted"] / parsed["duration_s"],
        }
    return LoadOutcome(parsed["requests"], parsed["duration_s"], parsed["latency"], run.cpu_seconds, errors, extra)


def expected_frame_sizes(target: str, method: str, request: Message, token: str) -> tuple[int, int]:
    """One real call: it must succeed; its response size (plus the 5-byte gRPC prefix) is what h2load should see.

    Timestamps are varints, so a response that carries a fresh `updated_at` may differ by a byte.
    """
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.UserSecretsServiceStub(channel)
        reply = getattr(stub, method)(request, metadata=(("coder-session-token", token),), timeout=10)
    size = reply.ByteSize() + 5
    return (size - 1, size + 1) if method == "UpdateUserSecret" else (size, size)


def h2load(
    load: Load,
    target: str,
    method: str,
    request: Message,
    token: str,
    seconds: float,
    path: str = "",
    frame_sizes: tuple[int, int] | None = None,
) -> Callable[[], LoadOutcome]:
    """Check one call with a real client now; return the run itself, for the measured window.

    The server's per-method status counters are compared by the caller, from snapshots taken outside the window.
    `path` and `frame_sizes` serve calls outside UserSecretsService (health), whose answer size is known.
    """
    low, high = frame_sizes or expected_frame_sizes(target, method, request, token)
    body = load.workdir / "h2load.body"
    body.write_bytes(tools.grpc_frame(request.SerializeToString()))
    log = load.workdir / "h2load.log"
    argv = [
        "h2load", "-c", str(load.connections), "-m", "1", "-t", "1", "-D", f"{seconds:g}",
        "--log-file", str(log), "-d", str(body),
        "-H", "content-type: application/grpc", "-H", "te: trailers", "-H", f"coder-session-token: {token}",
        f"http://{target}{path or SERVICE_PATH + method}",
    ]  # fmt: skip

    def run() -> LoadOutcome:
        log.unlink(missing_ok=True)
        done = tools.run_tool(argv, load.workdir, timeout=seconds + 60)
        parsed = tools.parse_h2load(done.output)
        latency = tools.parse_h2load_log(log.read_text()) if log.exists() else tools.parse_h2load_log("")
        short = max(0, parsed["succeeded"] * low - parsed["data_bytes"])
        errors = {
            "h2load_failed": parsed["failed"] + parsed["errored"] + parsed["timeout"],
            "http_non_2xx": parsed["status"]["3xx"] + parsed["status"]["4xx"] + parsed["status"]["5xx"],
            # An answer without its message (a gRPC error) leaves the DATA total short by about one message.
            "short_responses": math.ceil(short / low) if short else 0,
        }
        extra = {"data_bytes": parsed["data_bytes"], "frame_bytes": [low, high], "method": method}
        return LoadOutcome(parsed["requests"], parsed["duration_s"], latency, done.cpu_seconds, errors, extra)

    return run


def grpc_pairs(load: Load, target: str, tokens_file: Path, prefix: str, seconds: float) -> LoadOutcome:
    argv = [
        sys.executable, "-m", "bench.grpc_load", "--target", target, "--tokens-file", str(tokens_file),
        "--prefix", prefix, "--duration", f"{seconds:g}", "--concurrency", str(load.connections),
    ]  # fmt: skip
    run = tools.run_tool(argv, load.workdir, timeout=seconds + 60)
    parsed = tools.bench_json(run.output)
    codes = dict(parsed["codes"])
    ok = codes.pop("OK", 0)
    extra = {"pairs_per_s": ok / 2 / parsed["duration_s"]}
    return LoadOutcome(parsed["requests"], parsed["duration_s"], parsed["latency"], run.cpu_seconds, codes, extra)
