"""The floor: what Redis itself spends on the operations a request needs, measured with redis-benchmark on the
same Redis, in the same run, at the same concurrency. Redis's CPU comes from /proc, like everyone else's.
"""

from __future__ import annotations

from pathlib import Path

import redis

from bench import tools
from bench.procs import TICKS_PER_SECOND, Stack, cpu_ticks, redis_binary
from usersecrets.server import keys
from usersecrets.server.store import LUA_DIR


def _one(stack: Stack, workdir: Path, command: list[str], ops: int, connections: int, pipeline: int) -> dict:
    argv = [
        redis_binary("redis-benchmark"), "-h", "127.0.0.1", "-p", str(stack.redis_port),
        "-c", str(connections), "-n", str(ops), "-P", str(pipeline), "--csv", *command,
    ]  # fmt: skip
    pid = stack.procs["redis"].pid
    before = cpu_ticks(pid)
    run = tools.run_tool(argv, workdir, timeout=120)
    after = cpu_ticks(pid)
    row = tools.parse_redis_benchmark_csv(run.output)
    return {
        "command": command[0],
        "ops": ops,
        "connections": connections,
        "pipeline": pipeline,
        "rps": row["rps"],
        "p50_ms": row.get("p50_latency_ms"),
        "p99_ms": row.get("p99_latency_ms"),
        "redis_cpu_us_per_op": (after - before) * 1e6 / TICKS_PER_SECOND / ops,
        "tool_cpu_us_per_op": run.cpu_seconds * 1e6 / ops,
    }


def measure(stack: Stack, workdir: Path, ops: int, connections: int, reader_id: str, big_id: str) -> dict[str, dict]:
    """HGETALL of one stored secret (the target's unit), unpipelined and pipelined, and the LIST script."""
    client = redis.Redis(port=stack.redis_port)
    try:
        list_sha = client.script_load((LUA_DIR / "list.lua").read_bytes())
    finally:
        client.close()
    secret_key = keys.secret(reader_id, "secret-03")
    return {
        "hgetall": _one(stack, workdir, ["HGETALL", secret_key], ops, connections, 1),
        "hgetall_pipelined": _one(stack, workdir, ["HGETALL", secret_key], ops * 2, connections, 16),
        "list10_script": _one(
            stack, workdir, ["EVALSHA", list_sha, "1", keys.names(reader_id), keys.secret_prefix(reader_id)],
            ops // 10, connections, 1,
        ),
        "list50_script": _one(
            stack, workdir, ["EVALSHA", list_sha, "1", keys.names(big_id), keys.secret_prefix(big_id)],
            ops // 40, connections, 1,
        ),
    }  # fmt: skip
