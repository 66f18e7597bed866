from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from tests.support.stack import running_server
from usersecrets.server.ratelimit import TokenBucketLimiter
from usersecrets.v1 import usersecrets_pb2 as pb


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_burst_then_asks_to_wait_then_refills() -> None:
    clock = FakeClock()
    limiter = TokenBucketLimiter(rate_per_second=2.0, burst=3, clock=clock)
    assert [limiter.acquire("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("k") == pytest.approx(0.5)
    clock.now += 0.5
    assert limiter.acquire("k") == 0.0
    assert limiter.acquire("k") == pytest.approx(0.5)
    assert limiter.acquire("other") == 0.0, "buckets are per key"


def test_bucket_never_exceeds_burst_after_idle() -> None:
    clock = FakeClock()
    limiter = TokenBucketLimiter(rate_per_second=10.0, burst=2, clock=clock)
    clock.now += 3600
    assert [limiter.acquire("k") for _ in range(3)] == [0.0, 0.0, pytest.approx(0.1)]


def test_memory_is_bounded_by_max_keys() -> None:
    limiter = TokenBucketLimiter(rate_per_second=1.0, burst=1, max_keys=100, clock=FakeClock())
    for i in range(10_000):
        limiter.acquire(f"key-{i}")
    assert len(limiter) == 100


async def test_server_answers_resource_exhausted_with_retry_info(redis_url: str) -> None:
    async with running_server(redis_url, rate_limit_per_second=0.5, rate_limit_burst=2) as stack:
        _, token = await stack.user("alice")
        _, other_token = await stack.user("bob")
        md = (("coder-session-token", token),)
        async with stack.stub() as stub:
            for _ in range(2):
                await stub.ListUserSecrets(pb.ListUserSecretsRequest(user="me"), metadata=md)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.ListUserSecrets(pb.ListUserSecretsRequest(user="me"), metadata=md)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert err.value.details() == "Rate limit exceeded."
            raw = dict(err.value.trailing_metadata())["grpc-status-details-bin"]
            status = status_pb2.Status.FromString(raw)
            infos = [d for d in status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
            assert len(infos) == 1
            retry = error_details_pb2.RetryInfo()
            infos[0].Unpack(retry)
            assert 0 < retry.retry_delay.ToNanoseconds() <= 2_000_000_000
            # Another token is not affected.
            other = (("coder-session-token", other_token),)
            assert (await stub.ListUserSecrets(pb.ListUserSecretsRequest(user="me"), metadata=other)).secrets == []
