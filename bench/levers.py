"""`python -m bench.levers`: measure levers that need no change to the server or gateway code.

- REST GET and gRPC GET on the stack as shipped and with one thing changed (see VARIANTS): asyncio's loop
  instead of uvloop, the gateway-to-server hop over a Unix socket, the server's rate limiter off, the gateway's
  relay batching off (one gRPC call per request) or with 1 or 4 batches in flight instead of 2. Variants
  alternate within each round so the machine's background noise falls on all of them; medians are reported.
- Redis hash encoding: bytes per stored secret with Redis's default `hash-max-listpack-value 64` (the 137-byte
  sealed value pushes every secret hash into a hashtable) and with 256 (the hash stays a listpack).

Prints a small table and writes bench/results/levers.json.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

from bench import report, seed, tools
from bench.procs import free_port, redis_binary, redis_pings, wait_until
from bench.run import RESULTS, SECRETS_PATH, Bench, Clock, Plan, rest_line, write_lines
from usersecrets.server.crypto import generate_key_spec
from usersecrets.v1 import usersecrets_pb2 as pb

# name -> Stack options. Each variant changes one thing against "as shipped".
VARIANTS: dict[str, dict] = {
    "as shipped": {},
    "asyncio loop": {"uvloop": False},
    "unix socket hop": {"grpc_unix": True},
    "no rate limiter": {"server_env": {"USERSECRETS_RATE_LIMIT": "0"}},
    "no relay": {"gateway_env": {"USERSECRETS_RELAY_IN_FLIGHT": "0"}},
    "relay 1 in flight": {"gateway_env": {"USERSECRETS_RELAY_IN_FLIGHT": "1"}},
    "relay 4 in flight": {"gateway_env": {"USERSECRETS_RELAY_IN_FLIGHT": "4"}},
}


def variant_round(variant: str, seconds: int, clock: Clock) -> list[dict]:
    workdir = Path(tempfile.mkdtemp(prefix="usersecrets-levers-"))
    plan = Plan(quick=False, seconds=seconds, warmup=1, scale_users=0, floor_ops=0)
    options = VARIANTS[variant]
    bench = Bench(plan, workdir, clock, **options)
    try:
        bench.start()
        data = seed.small_data(bench.stack.redis_url, bench.stack.grpc_target)
        names = [seed.secret_name(i) for i in range(data.secrets_per_reader)]
        lines = [rest_line("GET", f"{SECRETS_PATH}/{n}", a.token) for a in data.readers for n in names]
        get = write_lines(workdir / "get.tsv", lines)
        bench.rest("get", "requests.lua", get)
        if variant == "as shipped":
            bench.transport_floor()
        if not options.get("grpc_unix"):
            request = pb.GetUserSecretRequest(user="me", name="secret-03")
            bench.grpc("get", "GetUserSecret", request, data.readers[0].token)
    finally:
        bench.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    for row in bench.results:
        row["variant"] = variant
    return bench.results


def listpack_memory(users: int, listpack_value: int) -> float:
    """Bytes per secret on a scratch Redis (no persistence) holding `users` x 10 bulk secrets."""
    workdir = Path(tempfile.mkdtemp(prefix="usersecrets-listpack-"))
    port = free_port()
    argv = [redis_binary("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(workdir), "--hash-max-listpack-value", str(listpack_value)]  # fmt: skip
    log = workdir / "redis.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until("scratch redis", lambda: redis_pings(port), proc, log, 10)
        bulk = seed.bulk_load(port, generate_key_spec(), users)
        return bulk.memory["bytes_per_secret"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    args = parser.parse_args()
    tools.ensure_tools(["wrk", "h2load"])
    clock = Clock()
    memory = {f"hash-max-listpack-value {v}": listpack_memory(2000, v) for v in (64, 256)}
    rows: list[dict] = []
    for _ in range(args.rounds):
        for variant in args.variants:
            rows += variant_round(variant, args.seconds, clock)
    summary = {}
    for variant in args.variants:
        for api, name in (("rest", "get"), ("grpc", "get"), ("rest", "healthz"), ("grpc", "health_check")):
            mine = [r for r in rows if r["variant"] == variant and r["api"] == api and r["name"] == name]
            if not mine:
                continue
            summary[f"{api} {name}, {variant}"] = {
                "rps_median": statistics.median(r["rps"] for r in mine),
                "stack_us_median": statistics.median(r["stack_us_per_req"] for r in mine),
                "server_us_median": statistics.median(r["cpu_us_per_req"]["server"] for r in mine),
                "gateway_us_median": statistics.median(r["cpu_us_per_req"]["gateway"] for r in mine),
            }
    report.write_json(RESULTS / "levers.json", {"variants": summary, "rows": rows, "memory_bytes_per_secret": memory})
    print(f"{'variant':<30}{'req/s':>8}{'stack µs':>10}{'server µs':>11}{'gateway µs':>12}")
    for name, v in summary.items():
        print(f"{name:<30}{v['rps_median']:>8.0f}{v['stack_us_median']:>10.0f}{v['server_us_median']:>11.0f}"
              f"{v['gateway_us_median']:>12.0f}")  # fmt: skip
    for name, per in memory.items():
        print(f"Redis {name}: {per:.0f} bytes per secret")


if __name__ == "__main__":
    main()
