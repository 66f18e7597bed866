"""Issue 5, item 5: abuse. Rate limiting on by default; bounds on bodies (size, time to arrive, nesting), on
headers, on concurrent requests per gateway process and concurrent calls per server process, and on gRPC
message size; none of them lets a client hold memory without bound.

Raw sockets are used where a well-behaved HTTP client cannot misbehave on purpose (a Content-Length it never
sends, a body that stalls, too many headers). Every raw exchange is bounded by `EXCHANGE_LIMIT`, so a missing
protection fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
import redis.asyncio as aioredis
from google.rpc import error_details_pb2, status_pb2

from tests.support.gateway_stack import GatewayStack, call, gateway_in_front_of
from tests.support.grpc_helpers import md
from tests.support.stack import ServerStack, running_server
from usersecrets.gateway.admission import AT_CAPACITY
from usersecrets.gateway.app import METRICS
from usersecrets.gateway.binding import TOO_DEEP
from usersecrets.gateway.transcode import BODY_TOO_SLOW
from usersecrets.v1 import usersecrets_pb2 as pb

SECRETS = "/api/v2/users/me/secrets"
INVALID_JSON = "Request body must be valid JSON."
EXCHANGE_LIMIT = 8.0  # seconds; a bound against hangs, never a speed expectation


@dataclass(frozen=True)
class RawReply:
    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool  # the server closed the connection after its answer (when asked to wait for that)


class RawClient:
    """One TCP connection to the gateway, written to byte by byte as a test chooses."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> RawClient:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def reply(self, *, then_closed: bool = False) -> RawReply:
        """The next answer; with `then_closed`, also wait for the server to close the connection after it."""
        async with asyncio.timeout(EXCHANGE_LIMIT):
            head = await self.reader.readuntil(b"\r\n\r\n")
            status_line, *lines = head.decode("latin-1").split("\r\n")
            headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)}
            body = await self.reader.readexactly(int(headers.get("content-length", "0")))
            closed = then_closed and await self.reader.read(1) == b""
        return RawReply(int(status_line.split()[1]), headers, body, closed)

    def close(self) -> None:
        self.writer.close()


def request_head(method: str, path: str, token: str, extra: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: gateway", f"Coder-Session-Token: {token}"]
    lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.fixture
async def gw(server_stack: ServerStack) -> AsyncIterator[GatewayStack]:
    async with gateway_in_front_of(server_stack, body_timeout_seconds=0.3, max_concurrent_requests=3) as stack:
        yield stack


async def token_of(gw: GatewayStack) -> str:
    return (await gw.user("alice"))[1]


# ---- rate limiting --------------------------------------------------------------------------------------


async def test_rate_limiting_is_on_by_default(redis_url: str) -> None:
    async with running_server(redis_url) as server, gateway_in_front_of(server) as gw:  # the defaults: 200/s, 400
        _, token = await server.user("alice")
        async with server.stub() as stub:
            calls = [
                stub.ListUserSecrets(pb.ListUserSecretsRequest(user="me"), metadata=md(token)) for _ in range(1000)
            ]
            results = await asyncio.gather(*calls, return_exceptions=True)
        outcomes = Counter(r.code().name if isinstance(r, grpc.aio.AioRpcError) else "OK" for r in results)
        assert set(outcomes) == {"OK", "RESOURCE_EXHAUSTED"}, outcomes
        assert outcomes["OK"] >= 400, outcomes  # the whole burst passes
        limited = next(r for r in results if isinstance(r, grpc.aio.AioRpcError))
        raw = next(v for k, v in limited.trailing_metadata() or () if k == "grpc-status-details-bin")
        details = status_pb2.Status.FromString(raw)
        assert [d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in details.details].count(True) == 1
        # Through REST the same limit is 429 with Retry-After (the bucket refills meanwhile: keep calling).
        replies = []
        for _ in range(5):
            replies += await asyncio.gather(*(call(gw.http, "GET", SECRETS, token=token) for _ in range(100)))
            if any(r.status == 429 for r in replies):
                break
        assert {r.status for r in replies} == {200, 429}
        limited_reply = next(r for r in replies if r.status == 429)
        assert (limited_reply.json["message"], limited_reply.headers["Retry-After"]) == ("Rate limit exceeded.", "1")


# ---- bodies ---------------------------------------------------------------------------------------------


async def test_huge_content_length_is_refused_before_any_body_is_sent(gw: GatewayStack) -> None:
    token = await token_of(gw)
    client = await RawClient.open(gw.gateway.port)
    try:
        head = request_head("POST", SECRETS, token, {"Content-Length": str(10**12), "Content-Type": "application/json"})
        await client.send(head)  # and not one byte of the terabyte it announces
        reply = await client.reply()
    finally:
        client.close()
    detail = f"The body must not exceed {1024 * 1024} bytes."
    assert (reply.status, json.loads(reply.body)) == (413, {"message": "Request body is too large.", "detail": detail})
    assert (await call(gw.http, "GET", SECRETS, token=token)).raw == b"[]"


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_slow_sender_is_408(gw: GatewayStack, framing: str) -> None:
    token = await token_of(gw)
    start = b'{"name": "k", "val'
    if framing == "content-length":
        head = request_head("POST", SECRETS, token, {"Content-Length": "40", "Content-Type": "application/json"})
        first = start
    else:
        head = request_head(
            "POST", SECRETS, token, {"Transfer-Encoding": "chunked", "Content-Type": "application/json"}
        )
        first = b"%x\r\n%s\r\n" % (len(start), start)
    client = await RawClient.open(gw.gateway.port)
    try:
        await client.send(head + first)  # then nothing more: the rest never comes
        reply = await client.reply()
    finally:
        client.close()
    expected = {"message": BODY_TOO_SLOW, "detail": "The body must arrive within 0.3 seconds."}
    assert (reply.status, json.loads(reply.body)) == (408, expected)
    assert (await call(gw.http, "GET", SECRETS, token=token)).raw == b"[]"


def nested(depth: int) -> bytes:
    """A create body whose unknown key `x` makes the whole document `depth` levels deep."""
    return b'{"name": "k", "value": "v", "x": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


@pytest.mark.parametrize(
    ("depth", "status", "detail"),
    [(32, 201, None), (33, 400, TOO_DEEP), (200_000, 400, "invalid JSON")],
    ids=["at-the-limit", "one-past", "stack-deep"],
)
async def test_json_nesting_depth(gw: GatewayStack, depth: int, status: int, detail: str | None) -> None:
    token = await token_of(gw)
    reply = await call(gw.http, "POST", SECRETS, token=token, data=nested(depth))
    assert reply.status == status
    if detail is not None:
        assert reply.json == {"message": INVALID_JSON, "detail": detail}
    stored = [s["name"] for s in (await call(gw.http, "GET", SECRETS, token=token)).json]
    assert stored == (["k"] if status == 201 else [])


# ---- headers --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "status"),
    [
        ({f"X-Filler-{i}": "v" for i in range(61)}, 200),  # 64 headers with Host, the token and Content-Length
        ({f"X-Filler-{i}": "v" for i in range(62)}, 400),
        ({"X-Big": "v" * 8000}, 200),
        ({"X-Big": "v" * 9000}, 400),
    ],
    ids=["64-headers", "65-headers", "8000-byte-header", "9000-byte-header"],
)
async def test_header_count_and_size_are_bounded(gw: GatewayStack, extra: dict[str, str], status: int) -> None:
    token = await token_of(gw)
    client = await RawClient.open(gw.gateway.port)
    try:
        await client.send(request_head("GET", SECRETS, token, {**extra, "Content-Length": "0"}))
        reply = await client.reply(then_closed=status != 200)
    finally:
        client.close()
    assert reply.status == status
    if status == 200:
        assert reply.body == b"[]"
    else:
        assert reply.closed  # refused by the parser before any handler ran, and not kept open


# ---- concurrency ----------------------------------------------------------------------------------------


async def test_concurrent_requests_per_gateway_are_bounded(server_stack: ServerStack) -> None:
    async with gateway_in_front_of(server_stack, max_concurrent_requests=3, body_timeout_seconds=30) as gw:
        token = await token_of(gw)
        slow = [await RawClient.open(gw.gateway.port) for _ in range(3)]
        try:
            bodies = [json.dumps({"name": f"k{i}", "value": "v"}).encode() for i in range(3)]
            for client, body in zip(slow, bodies, strict=True):
                head = {"Content-Length": str(len(body)), "Content-Type": "application/json"}
                await client.send(request_head("POST", SECRETS, token, head) + body[:5])

            async def held() -> float | None:
                return gw.gateway.app[METRICS].registry.get_sample_value("usersecrets_gateway_requests_in_flight")

            for _ in range(200):  # until the three are admitted and waiting for the rest of their bodies
                if await held() == 3.0:
                    break
                await asyncio.sleep(0.02)
            assert await held() == 3.0
            refused = await call(gw.http, "GET", SECRETS, token=token)
            assert (refused.status, refused.json, refused.headers["Retry-After"]) == (
                503,
                {"message": AT_CAPACITY},
                "1",
            )
            assert (await call(gw.http, "GET", "/healthz")).status == 200  # still observable
            for client, body in zip(slow, bodies, strict=True):
                await client.send(body[5:])
            finished = [await client.reply() for client in slow]
        finally:
            for client in slow:
                client.close()
        assert [r.status for r in finished] == [201, 201, 201]
        listed = await call(gw.http, "GET", SECRETS, token=token)
        assert [s["name"] for s in listed.json] == ["k0", "k1", "k2"]


async def test_concurrent_calls_per_server_are_bounded(redis_url: str) -> None:
    async with running_server(redis_url, max_concurrent_rpcs=2) as server:
        _, token = await server.user("alice")
        pauser = aioredis.from_url(redis_url)
        async with server.stub() as stub:
            try:
                await pauser.execute_command("CLIENT", "PAUSE", "10000", "WRITE")
                held = [
                    asyncio.ensure_future(
                        stub.CreateUserSecret(
                            pb.CreateUserSecretRequest(user="me", name=f"k{i}", value="v"), metadata=md(token)
                        )
                    )
                    for i in range(2)
                ]
                registry = server.app.metrics.registry
                for _ in range(200):
                    if registry.get_sample_value("usersecrets_grpc_in_flight") == 2.0:
                        break
                    await asyncio.sleep(0.02)
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await stub.ListUserSecrets(pb.ListUserSecretsRequest(user="me"), metadata=md(token))
            finally:
                await pauser.execute_command("CLIENT", "UNPAUSE")
                await pauser.aclose()
            done = await asyncio.gather(*held)
        assert (refused.value.code(), refused.value.details()) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "Concurrent RPC limit exceeded!",
        )
        assert [s.name for s in done] == ["k0", "k1"]


async def test_grpc_message_size_is_bounded(server_stack: ServerStack) -> None:
    _, token = await server_stack.user("alice")
    async with server_stack.stub() as stub:
        huge = pb.CreateUserSecretRequest(user="me", name="k", value="v", description="d" * (5 * 1024 * 1024))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.CreateUserSecret(huge, metadata=md(token))
        listed = await stub.ListUserSecrets(pb.ListUserSecretsRequest(user="me"), metadata=md(token))
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert list(listed.secrets) == []
