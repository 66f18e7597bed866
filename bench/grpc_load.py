"""`python -m bench.grpc_load`: CREATE+DELETE pairs over gRPC, which h2load cannot send (every name is new).

A grpc.aio client in its own process; the harness reports its CPU like any other load tool's. Each of
`--concurrency` workers creates a secret, deletes it, and repeats until the duration is over. Prints one JSON
object: requests, duration, status counts and latency percentiles (µs, over both calls of every pair).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from pathlib import Path

import grpc

from bench import stats
from usersecrets.v1 import usersecrets_pb2 as pb
from usersecrets.v1 import usersecrets_pb2_grpc as pb_grpc

VALUE = "v" * 100
CHANNELS = 4


async def worker(
    stub: pb_grpc.UserSecretsServiceStub,
    token: str,
    prefix: str,
    deadline: float,
    latencies: list[float],
    codes: Counter[str],
) -> None:
    metadata = (("coder-session-token", token),)
    counter = 0
    while time.monotonic() < deadline:
        counter += 1
        name = f"{prefix}_{counter}"
        create = pb.CreateUserSecretRequest(
            user="me", name=name, value=VALUE, description="benchmark pair", env_name=name, file_path=f"/bench/{name}"
        )
        for call, request in (
            (stub.CreateUserSecret, create),
            (stub.DeleteUserSecret, pb.DeleteUserSecretRequest(user="me", name=name)),
        ):
            started = time.perf_counter()
            try:
                await call(request, metadata=metadata, timeout=10)
                codes["OK"] += 1
            except grpc.aio.AioRpcError as exc:
                codes[exc.code().name] += 1
            latencies.append((time.perf_counter() - started) * 1e6)


async def run(target: str, tokens: list[str], prefix: str, duration: float, concurrency: int) -> dict:
    channels = [
        grpc.aio.insecure_channel(target, options=(("grpc.use_local_subchannel_pool", 1),)) for _ in range(CHANNELS)
    ]
    latencies: list[float] = []
    codes: Counter[str] = Counter()
    try:
        stubs = [pb_grpc.UserSecretsServiceStub(channel) for channel in channels]
        started = time.monotonic()
        deadline = started + duration
        await asyncio.gather(
            *(
                worker(stubs[i % CHANNELS], tokens[i % len(tokens)], f"{prefix}_{i}", deadline, latencies, codes)
                for i in range(concurrency)
            )
        )
        elapsed = time.monotonic() - started
    finally:
        for channel in channels:
            await channel.close()
    return {
        "requests": sum(codes.values()),
        "duration_s": elapsed,
        "codes": dict(codes),
        "latency": stats.latency_summary_us(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", required=True)
    parser.add_argument("--tokens-file", required=True, type=Path)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    tokens = [line for line in args.tokens_file.read_text().splitlines() if line]
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    result = runner(run(args.target, tokens, args.prefix, args.duration, args.concurrency))
    print("BENCH_JSON " + json.dumps(result))


if __name__ == "__main__":
    main()
