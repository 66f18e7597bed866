"""`python -m bench.run [--quick]` (`make bench [QUICK=1]`): the usersecrets benchmark, end to end.

Starts its own Redis (append-only, fsync every second), server and gateway on free ports; creates users and
secrets through the server; warms up; measures every scenario for a fixed time at 32 connections, REST (wrk)
beside direct gRPC (h2load; the Python client for CREATE+DELETE); measures the Redis floor with
redis-benchmark; loads the scale data set and measures GET again; then prints the table and the targets and
writes bench/results/latest.json and latest.png (latest-quick.* with --quick).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from bench import floor, load, report, seed, targets, tools
from bench.measure import LoadOutcome, Probe, result
from bench.procs import Stack, redis_binary
from usersecrets.server.crypto import generate_key_spec
from usersecrets.v1 import usersecrets_pb2 as pb

RESULTS = Path(__file__).parent / "results"
SECRETS_PATH = "/api/v2/users/me/secrets"


@dataclass(frozen=True)
class Plan:
    quick: bool
    seconds: int  # each measured window (wrk takes whole seconds)
    warmup: int  # a warm-up run before each window; 0 = only the one warm-up at the start
    scale_users: int
    floor_ops: int
    connections: int = 32


FULL = Plan(quick=False, seconds=5, warmup=1, scale_users=100_000, floor_ops=100_000)
QUICK = Plan(quick=True, seconds=1, warmup=0, scale_users=5_000, floor_ops=20_000)


class Clock:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {text}", flush=True)


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def rest_line(method: str, path: str, token: str, body: str = "") -> str:
    return f"{method}\t{path}\t{token}\t{body}"


def check_rest(base: str, line: str, expected: int) -> None:
    """The first request of a data file, sent once with a plain client: the status must be the contract's."""
    method, path, token, body = line.split("\t")
    headers = {"Coder-Session-Token": token}
    if body:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(  # noqa: S310 - our loopback gateway
        base + path, data=body.encode() or None, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:  # noqa: S310 - our loopback gateway
            status, text = reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode(errors="replace")
    if status != expected or '"value"' in text:
        raise RuntimeError(f"{method} {path}: status {status}, expected {expected}: {text[:300]}")


class Bench:
    def __init__(self, plan: Plan, workdir: Path, clock: Clock, **stack_options: Any) -> None:
        self.plan, self.workdir, self.clock = plan, workdir, clock
        self.stack = Stack(workdir, generate_key_spec(), **stack_options)
        self.load = load.Load(plan.connections, workdir)
        self.results: list[dict] = []
        self.probe: Probe | None = None

    def start(self) -> None:
        self.stack.start_redis()
        self.stack.start_server()
        self.stack.start_gateway()
        self.probe = Probe(self.stack)
        self.clock.say(
            f"stack up: redis :{self.stack.redis_port}, grpc :{self.stack.grpc_port}, http :{self.stack.http_port}"
        )

    def scenario(self, name: str, api: str, tool: str, dataset: str, run: Callable[[], LoadOutcome]) -> dict:
        assert self.probe is not None
        outcome, before, after = self.probe.measure(run)
        row = result(name, api, tool, dataset, outcome, before, after)
        if tool == "h2load":
            method = str(outcome.extra["method"])
            codes = {k.split("/", 1)[1]: v for k, v in row["server_codes"].items() if k.startswith(method + "/")}
            # h2load hangs up on the calls still in flight when its time is up: at most one per connection.
            cancelled = codes.pop("CANCELLED", 0)
            if cancelled > self.plan.connections:
                codes["CANCELLED"] = cancelled
            elif cancelled:
                row["extra"]["cancelled_at_stop"] = cancelled
            codes.pop("OK", None)
            if codes:
                row["error_detail"]["server_non_ok"] = sum(codes.values())
                row["errors"] += int(sum(codes.values()))
        self.results.append(row)
        self.clock.say(
            f"{api:>4} {name}@{dataset}: {row['rps']:.0f} req/s, p50 {row['p50_ms']:.2f} ms, "
            f"p99 {row['p99_ms']:.2f} ms, errors {row['errors']}, stack {row['stack_us_per_req']:.0f} µs/req"
        )
        return row

    def rest(
        self, name: str, script: str, data: Path, dataset: str = "small", env: dict[str, str] | None = None
    ) -> None:
        url = self.stack.http_url
        if self.plan.warmup:
            load.wrk(self.load, url, script, data, self.plan.warmup, env)
        self.scenario(
            name, "rest", "wrk", dataset, lambda: load.wrk(self.load, url, script, data, self.plan.seconds, env)
        )

    def grpc(self, name: str, method: str, request, token: str, dataset: str = "small") -> None:  # type: ignore[no-untyped-def]
        target = self.stack.grpc_target
        if self.plan.warmup:
            load.h2load(self.load, target, method, request, token, self.plan.warmup)()
        run = load.h2load(self.load, target, method, request, token, self.plan.seconds)
        self.scenario(name, "grpc", "h2load", dataset, run)

    def run_small(self, data: seed.SmallData) -> None:
        w = self.workdir
        names = [seed.secret_name(i) for i in range(data.secrets_per_reader)]
        get = write_lines(
            w / "get.tsv", [rest_line("GET", f"{SECRETS_PATH}/{n}", a.token) for a in data.readers for n in names]
        )
        list10 = write_lines(w / "list10.tsv", [rest_line("GET", SECRETS_PATH, a.token) for a in data.readers])
        list50 = write_lines(w / "list50.tsv", [rest_line("GET", SECRETS_PATH, data.big.token)])
        body = '{"description":"patched by the benchmark"}'
        patch = write_lines(
            w / "patch.tsv",
            [rest_line("PATCH", f"{SECRETS_PATH}/{n}", a.token, body) for a in data.readers for n in names],
        )
        writers = write_lines(w / "writers.txt", [a.token for a in data.writers])
        for path, status in ((get, 200), (list10, 200), (list50, 200), (patch, 200)):
            check_rest(self.stack.http_url, path.read_text().splitlines()[0], status)

        reader = data.readers[0]
        get_request = pb.GetUserSecretRequest(user="me", name="secret-03")
        self.clock.say("warm-up")
        load.wrk(self.load, self.stack.http_url, "requests.lua", get, 2 if not self.plan.quick else 1)
        load.h2load(self.load, self.stack.grpc_target, "GetUserSecret", get_request, reader.token, 1)()

        self.rest("get", "requests.lua", get)
        self.grpc("get", "GetUserSecret", get_request, reader.token)
        self.rest("list10", "requests.lua", list10)
        self.grpc("list10", "ListUserSecrets", pb.ListUserSecretsRequest(user="me"), reader.token)
        self.rest("list50", "requests.lua", list50)
        self.grpc("list50", "ListUserSecrets", pb.ListUserSecretsRequest(user="me"), data.big.token)
        self.rest("patch", "requests.lua", patch)
        patch_request = pb.UpdateUserSecretRequest(user="me", name="secret-03", description="patched by the benchmark")
        self.grpc("patch", "UpdateUserSecret", patch_request, reader.token)

        self.rest_pairs(writers, data.writers)
        target = self.stack.grpc_target
        if self.plan.warmup:
            load.grpc_pairs(self.load, target, writers, "gwarm", self.plan.warmup)
        self.scenario(
            "create_delete", "grpc", "python-grpc", "small",
            lambda: load.grpc_pairs(self.load, target, writers, "grpcpair", self.plan.seconds),
        )  # fmt: skip
        seed.delete_all(self.stack.grpc_target, data.writers)
        values = pb.ListUserSecretValuesRequest(user=reader.user_id)
        self.grpc("list_values", "ListUserSecretValues", values, data.service.token)
        self.transport_floor()

    def transport_floor(self) -> None:
        """The hop alone: the gateway's /healthz (aiohttp + one grpc.aio Health.Check; no token, Redis or
        transcoding) and one bare grpc.aio call on the server (Health.Check from h2load)."""
        healthz = write_lines(self.workdir / "healthz.tsv", [rest_line("GET", "/healthz", "-")])
        self.rest("healthz", "requests.lua", healthz, dataset="hop")
        check = health_pb2.HealthCheckRequest(service="")
        serving = health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING).ByteSize() + 5
        target, seconds = self.stack.grpc_target, self.plan.seconds
        path = "/grpc.health.v1.Health/Check"
        if self.plan.warmup:
            load.h2load(self.load, target, "Check", check, "-", self.plan.warmup, path, (serving, serving))()
        run = load.h2load(self.load, target, "Check", check, "-", seconds, path, (serving, serving))
        self.scenario("health_check", "grpc", "h2load", "hop", run)

    def rest_pairs(self, writers: Path, accounts: list[seed.Account]) -> None:
        """Each wrk run gets its own name prefix; what a run leaves behind is deleted before the next."""
        url = self.stack.http_url
        if self.plan.warmup:
            load.wrk(self.load, url, "create_delete.lua", writers, self.plan.warmup, {"BENCH_PREFIX": "warmpair"})
            seed.delete_all(self.stack.grpc_target, accounts)
        env = {"BENCH_PREFIX": "restpair"}
        self.scenario(
            "create_delete", "rest", "wrk", "small",
            lambda: load.wrk(self.load, url, "create_delete.lua", writers, self.plan.seconds, env),
        )  # fmt: skip
        seed.delete_all(self.stack.grpc_target, accounts)

    def run_scale(self, data: seed.SmallData) -> dict:
        self.clock.say(f"loading {self.plan.scale_users} users x 10 secrets into Redis")
        bulk = seed.bulk_load(self.stack.redis_port, self.stack.key_spec, self.plan.scale_users)
        waited = seed.wait_for_persistence(self.stack.redis_port)
        self.clock.say(
            f"loaded in {bulk.seconds:.1f}s (+{waited:.1f}s AOF rewrite); "
            f"{bulk.memory['bytes_per_secret']:.0f} bytes/secret"
        )
        user_id, token = bulk.tokens[len(bulk.tokens) // 2]
        seed.verify_bulk_user(self.stack.grpc_target, data.service, user_id, token, bulk.secrets_per_user)
        lines = [
            rest_line("GET", f"{SECRETS_PATH}/{seed.secret_name(i % bulk.secrets_per_user)}", tok)
            for i, (_, tok) in enumerate(bulk.tokens)
        ]
        scale = write_lines(self.workdir / "scale.tsv", lines)
        check_rest(self.stack.http_url, lines[0], 200)
        self.rest("get", "requests.lua", scale, dataset="scale")
        self.grpc("get", "GetUserSecret", pb.GetUserSecretRequest(user="me", name="secret-03"), token, dataset="scale")
        return {"users": bulk.users, "secrets_per_user": bulk.secrets_per_user, "load_seconds": bulk.seconds,
                "aof_rewrite_wait_seconds": waited, **bulk.memory}  # fmt: skip

    def stop(self) -> None:
        if self.probe is not None:
            self.probe.close()
        self.stack.stop()


def _version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except OSError:
        return "?"
    return (done.stdout + done.stderr).strip().splitlines()[0] if (done.stdout + done.stderr).strip() else "?"


def machine() -> dict:
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "redis_server": _version([redis_binary("redis-server"), "--version"]),
        "wrk": _version(["wrk", "-v"]),
        "h2load": _version(["h2load", "--version"]),
        "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1-second windows and a 5,000-user scale set (< 40 s)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, AOF) for inspection")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    clock = Clock()
    tools.ensure_tools(["wrk", "h2load", "redis-benchmark", "redis-cli"])
    meta = machine()
    workdir = Path(tempfile.mkdtemp(prefix="usersecrets-bench-"))
    bench = Bench(plan, workdir, clock)
    try:
        bench.start()
        data = seed.small_data(bench.stack.redis_url, bench.stack.grpc_target)
        clock.say("small data set: 10 readers x 10 secrets, 1 user x 50, 8 writers, 1 secret-injector")
        bench.run_small(data)
        clock.say("floor: redis-benchmark")
        floor_rows = floor.measure(
            bench.stack, workdir, plan.floor_ops, plan.connections, data.readers[0].user_id, data.big.user_id
        )
        memory = bench.run_scale(data)
    finally:
        bench.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    meta["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    meta["total_seconds"] = round(time.monotonic() - clock.started, 1)
    verdicts = targets.evaluate(bench.results, floor_rows, memory, plan.scale_users)
    unit = floor_rows["hgetall"]["redis_cpu_us_per_op"]
    document = {
        "meta": meta,
        "plan": asdict(plan),
        "floor": floor_rows,
        "memory": memory,
        "scenarios": bench.results,
        "targets": verdicts,
    }
    stem = "latest-quick" if plan.quick else "latest"
    report.write_json(RESULTS / f"{stem}.json", document)
    title = f"usersecrets, {meta['cores']} cores ({meta['cpu']}), {plan.connections} connections" + (
        ", QUICK" if plan.quick else ""
    )
    drawn = report.chart(RESULTS / f"{stem}.png", bench.results, title)
    print()
    print(report.table(bench.results, unit))
    print(report.floor_table(floor_rows))
    print(
        f"memory: {memory['bytes_per_secret']:.0f} bytes/secret (100-byte value, all indexes), "
        f"{memory['bytes_per_user_record']:.0f} bytes/user record, {memory['bytes_per_token']:.0f} bytes/token; "
        f"scale set {memory['users']} users x {memory['secrets_per_user']}"
        + (" (QUICK: smaller than the 100,000 of a full run)" if plan.quick else "")
    )
    print(report.targets_table(verdicts))
    print(f"wrote {RESULTS / (stem + '.json')}" + (f" and {RESULTS / (stem + '.png')}" if drawn else ""))
    print(
        f"total {meta['total_seconds']}s on {meta['cores']} cores, "
        f"load average {' '.join(meta['loadavg_start'])} at start"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
