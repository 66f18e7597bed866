"""Issue 5, item 4: leaks. A canary value and canary tokens go through every endpoint's success and error
paths (bad JSON, oversized and over-deep bodies, bad tokens, refusals, rate limits, deadlines, Redis down, a
value that fails to decrypt), with the server and gateway running as processes at debug log level. The
canaries must never appear in any response (status line, headers, body), in either process's log output, in
either metrics endpoint, or in the text of any exception the SDK raises. The one answer allowed to carry a
value is ListUserSecretValues to a caller with the service role, which exists to return it.

A second test makes Redis itself answer with an error quoting the canaries (a fault injected below the
store) and reads every log record at debug level, as the processes would print them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import grpc
import pytest
import redis.asyncio as aioredis
from redis import exceptions as rexc

from tests.support.faults import Fault, FaultPlan, Kind, inject
from tests.support.gateway_stack import call, gateway_in_front_of
from tests.support.grpc_helpers import assert_absent, failure_of, formatted_logs, md
from tests.support.processes import Child, gateway_process, server_process
from tests.support.redis_proc import RedisProcess, free_port
from tests.support.stack import ServerStack
from usersecrets.sdk import AsyncClient, CreateUserSecretRequest, UpdateUserSecretRequest, UserSecretsError
from usersecrets.server.crypto import generate_key_spec
from usersecrets.server.identity import IdentityStore
from usersecrets.server.model import SERVICE_ROLE
from usersecrets.v1 import usersecrets_pb2 as pb
from usersecrets.v1 import usersecrets_pb2_grpc as pb_grpc

API = "/api/v2/users"
VALUE = "canaryvalue" + uuid.uuid4().hex  # no character JSON or a URL would escape
FORGED = "canarytok1-" + uuid.uuid4().hex[:22]  # well formed, unknown
MALFORMED = "canary-malformed-" + uuid.uuid4().hex


@dataclass
class Seen:
    """Everything a caller or an operator could read, and the canaries to look for in it."""

    canaries: list[str] = field(default_factory=lambda: [VALUE, FORGED, MALFORMED])
    texts: list[tuple[str, bytes]] = field(default_factory=list)  # (what, bytes) for the failure message
    statuses: dict[str, int] = field(default_factory=dict)

    def add(self, what: str, data: bytes | str) -> None:
        self.texts.append((what, data if isinstance(data, bytes) else data.encode()))

    def check(self) -> None:
        for what, data in self.texts:
            for canary in self.canaries:
                assert canary.encode() not in data, f"a canary ({len(canary)} chars) leaked into {what}"


async def http(seen: Seen, session: aiohttp.ClientSession, what: str, method: str, path: str, **kw: object) -> int:
    """One request; the whole answer (status line, headers, body) is kept."""
    async with session.request(method, path, **kw) as reply:  # type: ignore[arg-type]
        body = await reply.read()
        head = f"{reply.status} {reply.reason}\n" + "".join(f"{k}: {v}\n" for k, v in reply.headers.items())
    seen.add(f"response to {what}", head.encode() + body)
    seen.statuses[what] = reply.status
    return reply.status


@dataclass
class Live:
    redis: RedisProcess
    server: Child
    gateway: Child
    grpc_target: str
    gateway_url: str
    server_metrics: str
    tokens: dict[str, str]
    alice_id: str


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Live]:
    redis = RedisProcess(tmp_path / "redis")
    redis.start()
    try:
        direct = aioredis.from_url(redis.url)
        try:
            identity = IdentityStore(direct)
            alice = await identity.create_user("alice")
            bob = await identity.create_user("bob")
            injector = await identity.create_user("injector", [SERVICE_ROLE])
            tokens = {
                "alice": (await identity.create_token(alice.id, 600))[1],
                "bob": (await identity.create_token(bob.id, 600))[1],
                "injector": (await identity.create_token(injector.id, 600))[1],
                "revoked": (await identity.create_token(alice.id, 600))[1],
                "expired": (await identity.create_token(alice.id, 0.05))[1],
            }
            await identity.revoke_token(tokens["revoked"].split("-")[0])
        finally:
            await direct.aclose()
        target, metrics, listen = (f"127.0.0.1:{free_port()}" for _ in range(3))
        debug = {"USERSECRETS_LOG_LEVEL": "debug"}
        server_settings = {
            **debug,
            "USERSECRETS_METRICS_LISTEN": metrics,
            "USERSECRETS_RATE_LIMIT": "20",
            "USERSECRETS_RATE_LIMIT_BURST": "150",
        }
        async with (
            server_process(tmp_path, target, redis.url, generate_key_spec(), **server_settings) as server,
            gateway_process(tmp_path, listen, target, USERSECRETS_MAX_BODY_BYTES="65536", **debug) as gateway,
        ):
            yield Live(redis, server, gateway, target, f"http://{listen}", f"http://{metrics}", tokens, alice.id)
    finally:
        redis.stop()


def bodies() -> list[tuple[str, str, str, bytes, int]]:
    """(what, method, path under /api/v2/users, raw body, expected status) sent with alice's token."""

    def j(body: dict[str, str]) -> bytes:
        return json.dumps(body).encode()

    return [
        ("create", "POST", "/me/secrets", j({"name": "s", "value": VALUE, "env_name": "CANARY_ENV"}), 201),
        ("create again", "POST", "/me/secrets", j({"name": "s", "value": VALUE}), 409),
        ("create taken env", "POST", "/me/secrets", j({"name": "t", "value": VALUE, "env_name": "CANARY_ENV"}), 409),
        ("value with NUL", "POST", "/me/secrets", j({"name": "n", "value": VALUE + "\x00"}), 400),
        ("value too long", "POST", "/me/secrets", j({"name": "l", "value": VALUE * 600}), 400),
        ("reserved env", "POST", "/me/secrets", j({"name": "e", "value": VALUE, "env_name": "PATH"}), 400),
        ("env bytes limit", "POST", "/me/secrets", j({"name": "big", "value": "v" * 24576, "env_name": "BIG"}), 400),
        ("truncated JSON", "POST", "/me/secrets", b'{"name": "x", "value": "' + VALUE.encode(), 400),
        ("wrong type", "POST", "/me/secrets", b'{"name": 5, "value": "' + VALUE.encode() + b'"}', 400),
        ("value object", "POST", "/me/secrets", b'{"name": "o", "value": {"v": "' + VALUE.encode() + b'"}}', 400),
        ("not UTF-8", "POST", "/me/secrets", b'{"name": "u", "value": "' + VALUE.encode() + b'\xff"}', 400),
        (
            "too deep",
            "POST",
            "/me/secrets",
            b'{"name": "d", "x": ' + b"[" * 40 + json.dumps(VALUE).encode() + b"]" * 40 + b"}",
            400,
        ),
        ("too large", "POST", "/me/secrets", j({"name": "h", "value": VALUE * 3000}), 413),
        ("patch", "PATCH", "/me/secrets/s", j({"value": VALUE + "2", "description": "d"}), 200),
        ("patch nothing", "PATCH", "/me/secrets/s", b'{"name": "' + VALUE.encode() + b'"}', 400),
        ("patch missing", "PATCH", "/me/secrets/missing", j({"value": VALUE}), 404),
        ("patch bob's", "PATCH", "/bob/secrets/s", j({"value": VALUE}), 403),
        ("patch unknown user", "PATCH", "/nobody/secrets/s", j({"value": VALUE}), 400),
        ("wrong method", "PUT", "/me/secrets/s", j({"value": VALUE}), 405),
        ("unknown path", "POST", "/me/vault", j({"value": VALUE}), 404),
        ("get", "GET", "/me/secrets/s", b"", 200),
        ("list", "GET", "/me/secrets", b"", 200),
    ]


async def test_no_canary_anywhere_a_caller_or_operator_can_look(live: Live) -> None:
    seen = Seen()
    alice = live.tokens["alice"]
    seen.canaries += [alice, alice.split("-")[1], live.tokens["revoked"], live.tokens["expired"], live.tokens["bob"]]
    json_type = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(live.gateway_url, timeout=aiohttp.ClientTimeout(total=15)) as session:
        for what, method, path, raw, status in bodies():
            headers = {**json_type, "Coder-Session-Token": alice}
            assert await http(seen, session, what, method, API + path, data=raw, headers=headers) == status, what

        await asyncio.sleep(0.1)  # the expired token's lifetime is over
        credentials = {
            "bearer": {"Authorization": f"Bearer {alice}"},
            "forged": {"Coder-Session-Token": FORGED},
            "forged bearer": {"Authorization": f"Bearer {FORGED}"},
            "malformed": {"Coder-Session-Token": MALFORMED},
            "revoked": {"Coder-Session-Token": live.tokens["revoked"]},
            "expired": {"Coder-Session-Token": live.tokens["expired"]},
            "bob on alice": {"Coder-Session-Token": live.tokens["bob"]},
        }
        expected = {"bearer": 200, "bob on alice": 403}
        for what, headers in credentials.items():
            path = f"{API}/alice/secrets"
            assert await http(seen, session, what, "GET", path, headers=headers) == expected.get(what, 401), what

        await exercise_grpc(live, seen)
        await exercise_sdk(live, seen)

        # A deadline that passes while Redis is paused.
        pauser = aioredis.from_url(live.redis.url)
        await pauser.execute_command("CLIENT", "PAUSE", "600", "ALL")
        await pauser.aclose()
        headers = {**json_type, "Coder-Session-Token": alice, "Grpc-Timeout": "200m"}
        body = json.dumps({"name": "late", "value": VALUE}).encode()
        assert await http(seen, session, "deadline", "POST", f"{API}/me/secrets", data=body, headers=headers) == 504

        # The rate limit (20/s, burst 150), hit with the token itself.
        headers = {"Coder-Session-Token": alice}
        statuses = await asyncio.gather(
            *(http(seen, session, f"burst {i}", "GET", f"{API}/me/secrets", headers=headers) for i in range(200))
        )
        assert set(statuses) == {200, 429}

        # Redis down: writes and reads answer 503.
        live.redis.kill()
        headers = {**json_type, "Coder-Session-Token": live.tokens["bob"]}
        body = json.dumps({"name": "s", "value": VALUE}).encode()
        assert await http(seen, session, "down create", "POST", f"{API}/me/secrets", data=body, headers=headers) == 503
        assert await http(seen, session, "down list", "GET", f"{API}/me/secrets", headers=headers) == 503

        for what, url in [
            ("gateway metrics", f"{live.gateway_url}/metrics"),
            ("server metrics", f"{live.server_metrics}/"),
        ]:
            async with session.get(url) as reply:
                seen.add(what, await reply.read())

    logs = {"server log": live.server.lines, "gateway log": live.gateway.lines}
    assert sum(1 for line in logs["gateway log"] if '"msg": "request"' in line) >= len(bodies()) + 200
    assert sum(1 for line in logs["server log"] if '"msg": "rpc"' in line) >= len(bodies())
    for what, lines in logs.items():
        seen.add(what, "\n".join(lines))
    seen.check()


async def exercise_grpc(live: Live, seen: Seen) -> None:
    """Direct gRPC callers: errors carry google.rpc details, which are checked too."""
    async with grpc.aio.insecure_channel(live.grpc_target) as channel:
        stub = pb_grpc.UserSecretsServiceStub(channel)
        alice, injector = md(live.tokens["alice"]), md(live.tokens["injector"])
        failing = {
            "grpc duplicate": stub.CreateUserSecret(
                pb.CreateUserSecretRequest(user="me", name="s", value=VALUE), metadata=alice
            ),
            "grpc invalid": stub.CreateUserSecret(
                pb.CreateUserSecretRequest(user="me", name="s/", value=VALUE + "\x00"), metadata=alice
            ),
            "grpc values without role": stub.ListUserSecretValues(
                pb.ListUserSecretValuesRequest(user="me"), metadata=alice
            ),
            "grpc forged": stub.ListUserSecrets(pb.ListUserSecretsRequest(user="me"), metadata=md(FORGED)),
        }
        for what, pending in failing.items():
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await pending
            seen.add(what, failure_of(err.value).raw + repr(err.value).encode())
        # The one answer that carries values, to a caller with the service role: not a leak, by design.
        values = await stub.ListUserSecretValues(pb.ListUserSecretValuesRequest(user="alice"), metadata=injector)
        assert [v.value for v in values.values] == [VALUE + "2"]
        # A value that no longer decrypts: DATA_LOSS, and nothing of the value or the key in the answer.
        direct = aioredis.from_url(live.redis.url)
        key = f"us:{{{live.alice_id}}}:secret:s"
        sealed = await direct.hget(key, "value")
        # Flip a bit of the tag (setting a byte to 0 would change nothing when it already is 0: 1 run in 256).
        await direct.hset(key, "value", sealed[:-1] + bytes([sealed[-1] ^ 0x01]))
        await direct.aclose()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ListUserSecretValues(pb.ListUserSecretValuesRequest(user="alice"), metadata=injector)
        assert err.value.code() == grpc.StatusCode.DATA_LOSS
        seen.add("grpc data loss", failure_of(err.value).raw + repr(err.value).encode())


async def exercise_sdk(live: Live, seen: Seen) -> None:
    """The SDK's exceptions: their str, repr and args."""
    async with (
        AsyncClient(live.gateway_url, live.tokens["alice"]) as client,
        AsyncClient(live.gateway_url, FORGED) as forged,
    ):
        calls = {
            "sdk conflict": client.create_user_secret("me", CreateUserSecretRequest("s", VALUE)),
            "sdk validation": client.create_user_secret("me", CreateUserSecretRequest("n", VALUE + "\x00")),
            "sdk not found": client.update_user_secret("me", "missing", UpdateUserSecretRequest(value=VALUE)),
            "sdk forbidden": client.update_user_secret("bob", "s", UpdateUserSecretRequest(value=VALUE)),
            "sdk unauthorized": forged.user_secrets("me"),
        }
        for what, pending in calls.items():
            with pytest.raises(UserSecretsError) as err:
                await pending
            seen.add(what, f"{err.value}\n{err.value!r}\n{err.value.args!r}")


async def test_a_redis_error_quoting_the_canaries_stays_out_of_answers_and_logs(
    server_stack: ServerStack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with gateway_in_front_of(server_stack) as gw:
        _, token = await gw.user("alice")
        plan = FaultPlan()
        undo = inject(server_stack.app.redis, plan)
        quoted = f"ERR odd reply quoting {VALUE} and {token}"
        try:
            plan.add(Fault(Kind.RAISE, command="EVALSHA", error=rexc.ResponseError(quoted)))
            # The third HGETALL: the create's token lookup, the get's token lookup, then the get's secret.
            plan.add(Fault(Kind.RAISE, command="HGETALL", at=3, error=rexc.ResponseError(quoted)))
            created = await call(gw.http, "POST", f"{API}/me/secrets", token=token, body={"name": "s", "value": VALUE})
            got = await call(gw.http, "GET", f"{API}/me/secrets/s", token=token)
        finally:
            undo()
    assert [(r.status, r.json) for r in (created, got)] == [(500, {"message": "Internal error."})] * 2
    assert [f.fired for f in plan.faults] == [1, 1]
    lines = formatted_logs(caplog.records)
    assert any('"internal error"' in line for line in lines)
    for text in [*lines, created.raw, got.raw, repr(created.headers), repr(got.headers)]:
        assert_absent(text, VALUE, token, token.split("-")[1])
