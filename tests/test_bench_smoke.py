"""The benchmark harness's parsing and arithmetic, on canned tool output. No processes, no timings asserted."""

from __future__ import annotations

import math

import pytest

from bench import report, seed, stats, targets, tools
from usersecrets.server import keys
from usersecrets.server.crypto import Barrier, KeyRing, associated_data, generate_key_spec

WRK_OUTPUT = """Running 5s test @ http://127.0.0.1:8080
  2 threads and 32 connections
BENCH_JSON {"requests":7000,"duration_us":5000000,"bytes":1400000,"errors":{"connect":0,"read":0,"write":0,"status":3,"timeout":1},"latency":{"p50_us":20000,"p90_us":30000,"p99_us":45000,"max_us":61000,"mean_us":21000.5},"counters":{"created":3500,"deleted":3490,"unexpected":0}}
"""  # noqa: E501

H2LOAD_OUTPUT = """starting benchmark...
finished in 5.00s, 1911.00 req/s, 496.11KB/s
requests: 9555 total, 9587 started, 9555 done, 9550 succeeded, 5 failed, 0 errored, 0 timeout
status codes: 9550 2xx, 0 3xx, 0 4xx, 5 5xx
traffic: 2.42MB (2540060) total, 1.72MB (1806660) headers (space savings 30.72%), 1.21MB (1270150) data
                     min         max         mean         sd        +/- sd
time for request:     1.55ms     43.91ms     16.60ms      4.67ms    80.80%
"""

REDIS_BENCHMARK_CSV = (
    '"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms",'
    '"max_latency_ms"\n"HGETALL us:{a}:secret:x","70422.53","0.274","0.064","0.247","0.439","0.671","2.103"\n'
)

METRICS = """# HELP usersecrets_grpc_calls_total RPCs handled, by method and status code
# TYPE usersecrets_grpc_calls_total counter
usersecrets_grpc_calls_total{code="OK",method="GetUserSecret"} 1509.0
usersecrets_grpc_calls_total{code="CANCELLED",method="GetUserSecret"} 2.0
usersecrets_grpc_calls_created{code="OK",method="GetUserSecret"} 1.7e+09
usersecrets_grpc_in_flight 0.0
"""


def test_parse_wrk_reads_the_summary_line() -> None:
    parsed = tools.parse_wrk(WRK_OUTPUT)
    assert parsed["requests"] == 7000
    assert parsed["duration_s"] == 5.0
    assert parsed["errors"] == {"connect": 0, "read": 0, "write": 0, "status": 3, "timeout": 1}
    assert parsed["latency"]["p99_us"] == 45000
    assert parsed["counters"] == {"created": 3500, "deleted": 3490, "unexpected": 0}


def test_parse_wrk_without_summary_fails_loudly() -> None:
    with pytest.raises(ValueError, match="no BENCH_JSON"):
        tools.parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_parse_h2load_counts() -> None:
    assert tools.parse_h2load(H2LOAD_OUTPUT) == {
        "duration_s": 5.0,
        "requests": 9555,
        "succeeded": 9550,
        "failed": 5,
        "errored": 0,
        "timeout": 0,
        "status": {"2xx": 9550, "3xx": 0, "4xx": 0, "5xx": 5},
        "data_bytes": 1270150,
    }


def test_parse_h2load_milliseconds_duration() -> None:
    assert tools.parse_h2load(H2LOAD_OUTPUT.replace("finished in 5.00s", "finished in 500.00ms"))["duration_s"] == 0.5


def test_parse_h2load_log_skips_failed_streams() -> None:
    log = "1700000000000000\t200\t1000\n1700000000000100\t-1\t99999\n1700000000000200\t200\t3000\n"
    summary = tools.parse_h2load_log(log)
    assert (summary["p50_us"], summary["p99_us"], summary["max_us"]) == (1000.0, 3000.0, 3000.0)


def test_grpc_frame_prefix() -> None:
    assert tools.grpc_frame(b"abc") == b"\x00\x00\x00\x00\x03abc"


def test_parse_redis_benchmark_csv() -> None:
    row = tools.parse_redis_benchmark_csv(REDIS_BENCHMARK_CSV)
    assert row["rps"] == 70422.53
    assert row["p99_latency_ms"] == 0.671


def test_parse_grpc_calls_only_the_calls_counter() -> None:
    assert tools.parse_grpc_calls(METRICS) == {"GetUserSecret/OK": 1509.0, "GetUserSecret/CANCELLED": 2.0}


@pytest.mark.parametrize(
    ("values", "pct", "expected"),
    [
        pytest.param([1, 2, 3, 4], 50, 2.0, id="median-of-even"),
        pytest.param(list(range(1, 101)), 99, 99.0, id="p99-of-100"),
        pytest.param([7], 99, 7.0, id="single"),
        pytest.param(list(range(1, 11)), 90, 9.0, id="p90-of-10"),
    ],
)
def test_percentile_nearest_rank(values: list[float], pct: float, expected: float) -> None:
    assert stats.percentile(values, pct) == expected


def test_percentile_of_nothing_is_nan() -> None:
    assert math.isnan(stats.percentile([], 50))


def test_cpu_us_per_request_from_ticks() -> None:
    per = stats.cpu_us_per_request({"server": 100, "redis": 10}, {"server": 150, "redis": 12}, 1000, 100)
    assert per == {"server": 500.0, "redis": 20.0}


def test_counter_delta_keeps_only_moved() -> None:
    assert stats.counter_delta({"a": 1, "b": 2}, {"a": 1, "b": 5, "c": 1}) == {"b": 3, "c": 1}


def _scenario(name: str, api: str, rps: float, stack: float, p50: float = 10, p99: float = 20, dataset: str = "small",
              errors: int = 0, **extra: float) -> dict:  # fmt: skip
    row = {"name": name, "api": api, "dataset": dataset, "rps": rps, "stack_us_per_req": stack, "p50_ms": p50,
           "p99_ms": p99, "errors": errors, "cpu_us_per_req": {"server": stack}}  # fmt: skip
    if extra:
        row["extra"] = extra
    return row


def test_targets_verdicts() -> None:
    scenarios = [
        _scenario("get", "rest", 950, 380),
        _scenario("get", "grpc", 1000, 200),
        _scenario("list10", "rest", 800, 400),
        _scenario("list50", "rest", 300, 1000),
        _scenario("create_delete", "rest", 1000, 500, pairs_per_s=500),
        _scenario("get", "rest", 900, 400, dataset="scale", p99=40),
    ]
    floor = {"hgetall": {"redis_cpu_us_per_op": 10.0}}
    verdicts = {v["target"]: v for v in targets.evaluate(scenarios, floor, {"bytes_per_secret": 900.0}, 100_000)}
    assert verdicts["1 gateway efficiency"]["value"] == pytest.approx(0.95)
    assert verdicts["1 gateway efficiency"]["met"]
    assert verdicts["2 stack cost"]["value"] == pytest.approx(38.0)
    assert verdicts["2 stack cost"]["met"]
    assert not verdicts["3 tail and errors"]["met"]  # the scale GET has p99 = 4 x p50
    assert "rest get@scale" in verdicts["3 tail and errors"]["detail"]
    assert verdicts["4 writes"]["value"] == pytest.approx(500 / 950)
    assert verdicts["5a scale: GET cost"]["value"] == pytest.approx(400 / 380)
    assert verdicts["5a scale: GET cost"]["met"]
    assert verdicts["5b scale: LIST cost"]["value"] == pytest.approx(2.5)
    assert verdicts["5c scale: memory"]["met"]


def test_transport_floor_rows_do_not_count_for_the_tail_target() -> None:
    rows = [_scenario("get", "rest", 1000, 500), _scenario("healthz", "rest", 2000, 500, p99=100, dataset="hop")]
    verdicts = {v["target"]: v for v in targets.evaluate(rows, {}, {}, 10)}
    assert verdicts["3 tail and errors"]["met"]
    assert verdicts["3 tail and errors"]["value"] == 2.0
    assert verdicts["3 tail and errors"]["detail"] == "every scenario"


def test_targets_missing_scenarios_are_missed_not_crashes() -> None:
    verdicts = targets.evaluate([], {}, {}, 10)
    assert [v["met"] for v in verdicts] == [False] * 7


def test_table_has_a_row_per_scenario() -> None:
    rows = [_scenario("get", "rest", 950, 380), _scenario("get", "grpc", 1000, 200, dataset="scale")]
    for row in rows:
        row.update(p90_ms=15.0, cpu_us_per_req={"gateway": 1.0, "server": 2.0, "redis": 3.0})
    text = report.table(rows, 10.0).splitlines()
    assert text[2].startswith("rest get ")
    assert text[3].startswith("grpc get@scale")


def _parse_resp(blob: bytes) -> list[list[bytes]]:
    commands, pos = [], 0
    while pos < len(blob):
        assert blob[pos : pos + 1] == b"*"
        end = blob.index(b"\r\n", pos)
        count, pos = int(blob[pos + 1 : end]), end + 2
        args = []
        for _ in range(count):
            end = blob.index(b"\r\n", pos)
            size = int(blob[pos + 1 : end])
            args.append(blob[end + 2 : end + 2 + size])
            pos = end + 2 + size + 2
        commands.append(args)
    return commands


def test_bulk_writer_writes_the_create_script_layout() -> None:
    barrier = Barrier(KeyRing.parse(generate_key_spec()))
    uid = "3f1e0000-0000-4000-8000-000000000001"
    commands = _parse_resp(seed.SecretWriter(barrier, 3, b"1700000000000000").commands(uid))
    secrets = [c for c in commands if c[0] == b"HSET" and c[1].startswith(keys.secret_prefix(uid).encode())]
    assert len(secrets) == 3
    fields = dict(zip(secrets[1][2::2], secrets[1][3::2], strict=True))
    assert secrets[1][1] == keys.secret(uid, "secret-01").encode()
    assert sorted(fields) == sorted(
        [b"id", b"name", b"description", b"env_name", b"file_path", b"created_at", b"updated_at", b"value",
         b"key_id", b"value_len"]
    )  # fmt: skip
    opened = barrier.open(fields[b"value"], associated_data(uid, fields[b"id"].decode()))
    assert opened == seed.VALUE.encode()
    assert fields[b"value_len"] == b"100"
    by_key = {c[1]: c for c in commands}
    assert by_key[keys.names(uid).encode()] == [
        b"ZADD", keys.names(uid).encode(), b"0", b"secret-00", b"0", b"secret-01", b"0", b"secret-02"
    ]  # fmt: skip
    assert by_key[keys.env_index(uid).encode()][2:4] == [b"SECRET_00", b"secret-00"]
    assert by_key[keys.file_index(uid).encode()][2:4] == [b"~/.secrets/secret-00", b"secret-00"]
    assert by_key[keys.usage(uid).encode()][2:] == [b"bytes", b"300", b"env_bytes", b"300"]
