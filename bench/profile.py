"""`python -m bench.profile`: where the CPU of one GET goes, by function and by library (py-spy, sampling).

Starts the same stack as `make bench` with the small data set, drives REST GET with wrk and then gRPC GET with
h2load, and records the gateway and the server with py-spy meanwhile. Writes a summary per process and scenario
to bench/results/profile-<scenario>-<process>.txt: self time by library, and the top functions by self and by
inclusive time. `--no-uvloop` starts both services on asyncio's own loop (the uvloop lever).

py-spy is a development tool, not a dependency: `pip install py-spy`.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from bench import load, seed, tools
from bench.procs import Stack
from bench.run import RESULTS, SECRETS_PATH, rest_line, write_lines
from usersecrets.server.crypto import generate_key_spec
from usersecrets.v1 import usersecrets_pb2 as pb

# Leaf frame file path -> library, first match wins.
LIBRARIES = [
    ("grpc C core / cython", r"cygrpc|libgrpc|grpc_core|_cython|grpc/_cython"),
    ("grpc aio (python)", r"(^|/)grpc/"),
    ("uvloop", r"uvloop"),
    ("aiohttp/multidict/yarl", r"(^|/)(aiohttp|multidict|yarl|propcache)/|_http_parser|_websocket"),
    ("redis-py/hiredis", r"(^|/)redis/|hiredis"),
    ("protobuf", r"(^|/)google/protobuf/|_message|upb"),
    ("asyncio (python)", r"(^|/)asyncio/"),
    ("logging/json", r"(^|/)(logging|json)/"),
    ("prometheus", r"prometheus_client"),
    ("usersecrets.gateway", r"(^|/)gateway/"),
    ("usersecrets.server", r"(^|/)server/"),
    ("cryptography/hashlib", r"cryptography|hashlib|hmac|_hashlib|libcrypto|openssl"),
    ("kernel/libc", r"libc\.so|libc-|libpthread|\[kernel|syscall|epoll|^__|libc"),
    ("python interpreter", r"libpython|python3\.\d+|_PyEval|PyObject|^_?Py"),
]
FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def parse_collapsed(text: str) -> list[tuple[list[str], int]]:
    """py-spy's raw format: `frame;frame;...;leaf count` per line, outermost frame first."""
    stacks = []
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def library_of(frame: str) -> str:
    found = FRAME.match(frame)
    where = found.group("file") if found else frame
    for name, pattern in LIBRARIES:
        if re.search(pattern, where):
            return name
    return "other python"


def _strip_line(frame: str) -> str:
    return re.sub(r":\d+\)$", ")", frame)


# Leaf frames of a thread that waits (py-spy's idle detection does not see through --native stacks).
IDLE_LEAVES = re.compile(r"^(epoll_wait|epoll_pwait|poll|select|pthread_cond_wait|pthread_cond_timedwait|syscall|"
                         r"__futex_abstimed_wait_common|futex_wait|nanosleep|clock_nanosleep) \(")  # fmt: skip


FRAMEWORK = re.compile(r"<frozen runpy>|\(server/main\.py\)|\(gateway/main\.py\)|Runner\.run|uvloop/__init__|"
                       r"threading\.py|aiohttp/web\.py|base_events\.py|events\.py")  # fmt: skip


def summarize(stacks: list[tuple[list[str], int]], top: int = 25) -> str:
    waiting = sum(count for frames, count in stacks if IDLE_LEAVES.match(frames[-1]))
    stacks = [(frames, count) for frames, count in stacks if not IDLE_LEAVES.match(frames[-1])]
    total = sum(count for _, count in stacks) or 1
    by_library: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    callers: dict[str, Counter[str]] = {}
    for frames, count in stacks:
        leaf = _strip_line(frames[-1])
        by_library[library_of(frames[-1])] += count
        self_time[leaf] += count
        path = [_strip_line(f) for f in frames]
        python_callers = [f for f in path[:-1] if ".py)" in f][-3:]
        callers.setdefault(leaf, Counter())[" <- ".join(reversed(python_callers))] += count
        for frame in set(path):
            inclusive[frame] += count
    lines = [
        f"{total} busy samples ({waiting} samples of threads waiting in epoll/poll/futex left out)",
        "",
        "self time by library of the leaf frame:",
    ]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in by_library.most_common()]
    lines += ["", f"top {top} functions by self time:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in self_time.most_common(top)]
    lines += ["", "where the top 6 self-time functions are called from (nearest Python frames):"]
    for name, n in self_time.most_common(6):
        lines.append(f"  {100 * n / total:5.1f}%  {name}")
        for chain, m in callers[name].most_common(3):
            lines.append(f"           {100 * m / total:5.1f}%  <- {chain or '(no Python caller)'}")
    lines += [
        "",
        f"top {top} Python functions by inclusive time (the loop's and the entry point's own frames left out):",
    ]
    python = [(name, n) for name, n in inclusive.most_common() if ".py)" in name and not FRAMEWORK.search(name)]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in python[:top]]
    return "\n".join(lines) + "\n"


def record(pid: int, seconds: int, out: Path, native: bool) -> subprocess.Popen[bytes]:
    py_spy = shutil.which("py-spy") or str(Path(__import__("sys").executable).parent / "py-spy")
    argv = [py_spy, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "250", "--format", "raw",
            "--output", str(out)] + (["--native"] if native else [])  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def profile_run(
    stack: Stack, scenario: str, processes: tuple[str, ...], drive, seconds: int, native: bool, suffix: str
) -> None:  # type: ignore[no-untyped-def]
    """Run `drive` (a load) in a thread; sample `processes` with py-spy from half a second in, so connection
    set-up stays out of the profile."""
    outs = {p: stack.workdir / f"{scenario}-{p}.txt" for p in processes}
    outcomes: list = []
    driver = threading.Thread(target=lambda: outcomes.append(drive()))
    driver.start()
    time.sleep(0.5)
    recorders = [record(stack.procs[p].pid, seconds - 1, outs[p], native) for p in processes]
    for recorder in recorders:
        recorder.wait()
    driver.join()
    print(f"{scenario}: {outcomes[0].requests / outcomes[0].duration_s:.0f} req/s while profiled")
    for p, path in outs.items():
        summary = summarize(parse_collapsed(path.read_text()))
        target = RESULTS / f"profile-{scenario}-{p}{suffix}.txt"
        target.write_text(f"# py-spy, {scenario}, {p}{suffix}, 32 connections\n" + summary)
        print(f"--- {target}\n" + "\n".join(summary.splitlines()[:16]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--native", action="store_true", help="include C frames (slower sampling)")
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args()
    tools.ensure_tools(["wrk", "h2load"])
    workdir = Path(tempfile.mkdtemp(prefix="usersecrets-profile-"))
    stack = Stack(workdir, generate_key_spec(), uvloop=not args.no_uvloop)
    suffix = ("-asyncio" if args.no_uvloop else "") + ("-native" if args.native else "")
    try:
        stack.start_redis()
        stack.start_server()
        stack.start_gateway()
        data = seed.small_data(stack.redis_url, stack.grpc_target)
        names = [seed.secret_name(i) for i in range(data.secrets_per_reader)]
        get = write_lines(
            workdir / "get.tsv", [rest_line("GET", f"{SECRETS_PATH}/{n}", a.token) for a in data.readers for n in names]
        )
        runner = load.Load(32, workdir)
        load.wrk(runner, stack.http_url, "requests.lua", get, 2)
        request = pb.GetUserSecretRequest(user="me", name="secret-03")
        rest = lambda: load.wrk(runner, stack.http_url, "requests.lua", get, args.seconds)  # noqa: E731
        grpc_get = load.h2load(runner, stack.grpc_target, "GetUserSecret", request, data.readers[0].token, args.seconds)
        profile_run(stack, "rest-get", ("gateway", "server"), rest, args.seconds, args.native, suffix)
        profile_run(stack, "grpc-get", ("server",), grpc_get, args.seconds, args.native, suffix)
    finally:
        stack.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
