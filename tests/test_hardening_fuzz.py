"""Issue 5, item 8: fuzzing. hypothesis over the field validators (held to the contract's rules as an oracle),
the path-template parser and matcher, and the JSON body decoding: no input raises anything but the unit's own
error. Then the live gateway with hostile paths and bodies, and schemathesis in stateful mode (sequences of
calls linked by the names they create): no answer is a server error.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import zlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test
from schemathesis import checks as st_checks
from yarl import URL

from tests.support.gateway_stack import RunningGateway, call, gateway_in_front_of, running_gateway
from tests.support.redis_proc import RedisProcess
from tests.support.stack import ServerStack, running_server
from usersecrets.gateway import openapi
from usersecrets.gateway.app import SERVICE
from usersecrets.gateway.binding import ParameterError
from usersecrets.gateway.codec import CodecError, Codecs
from usersecrets.gateway.httprule import TemplateError, parse
from usersecrets.gateway.pattern import PathEncodingError
from usersecrets.gateway.router import Match, Route, Router
from usersecrets.gateway.routes import RpcRoute, build_routes
from usersecrets.server import limits, validation
from usersecrets.server.errors import FieldViolation

FAST = settings(max_examples=300, deadline=None, database=None, derandomize=True)
ROUTES = tuple(build_routes(SERVICE, Codecs()))
ROUTER: Router[RpcRoute] = Router([Route(r.http_method, r.pattern, r) for r in ROUTES])
RESERVED = {n.upper() for n in validation.RESERVED_ENV_NAMES}

# Text that hits the rules' edges often: separators, spaces, NUL, escapes, reserved words and long runs.
edgy = st.text(alphabet=st.sampled_from(list("aZ_09 /?#~%\x00\t.é😀")), max_size=12)
longish = st.builds(lambda c, n: c * n, st.sampled_from(["a", "é", "😀"]), st.integers(0, 7000))
words = st.sampled_from(["", " ", "~/", "/", "PATH", "path", "CODER", "coder_x", "GIT_DIR", "lc_all", "_", "Dyld_x"])
texts = st.one_of(edgy, edgy, words, st.builds(str.__add__, words, edgy), st.text(max_size=20), longish)


def size(text: str) -> int:
    return len(text.encode())


# ---- validators ------------------------------------------------------------------------------------------


def expected_fields(violations: list[FieldViolation]) -> set[str]:
    assert all(isinstance(v, FieldViolation) and v.detail for v in violations), violations
    return {v.field for v in violations}


@FAST
@given(name=texts, value=texts, description=texts, env_name=texts, file_path=texts)
def test_create_validation_matches_the_contract(
    name: str, value: str, description: str, env_name: str, file_path: str
) -> None:
    found = validation.create_violations(
        name=name, value=value, description=description, env_name=env_name, file_path=file_path
    )
    bad_name = (
        not name.strip() or name != name.strip() or any(c in name for c in "/?#") or size(name) > limits.MAX_NAME_BYTES
    )
    bad_value = not value or "\x00" in value or size(value) > limits.MAX_VALUE_BYTES
    upper = env_name.upper()
    bad_env = bool(env_name) and (
        not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", env_name)
        or size(env_name) > limits.MAX_ENV_NAME_BYTES
        or upper in RESERVED
        or upper == "CODER"
        or upper.startswith(("CODER_", "GIT_", "LC_", "LD_", "DYLD_"))
    )
    bad_file = bool(file_path) and (
        not file_path.startswith(("~/", "/")) or "\x00" in file_path or size(file_path) > limits.MAX_FILE_PATH_BYTES
    )
    bad_description = size(description) > limits.MAX_DESCRIPTION_BYTES
    wanted = {
        f
        for f, bad in [
            ("name", bad_name),
            ("value", bad_value),
            ("env_name", bad_env),
            ("file_path", bad_file),
            ("description", bad_description),
        ]
        if bad
    }
    assert expected_fields(found) == wanted, (found, wanted)


@FAST
@given(value=st.none() | texts, description=st.none() | texts, env_name=st.none() | texts, file_path=st.none() | texts)
def test_update_validation_checks_only_present_fields(
    value: str | None, description: str | None, env_name: str | None, file_path: str | None
) -> None:
    found = validation.update_violations(value=value, description=description, env_name=env_name, file_path=file_path)
    absent = {f for f, v in [("value", value), ("description", description), ("env_name", env_name),
                             ("file_path", file_path)] if v is None}  # fmt: skip
    assert not expected_fields(found) & absent
    if value is not None and value == "":
        assert "value" not in expected_fields(found)  # "" clears a value on update


# ---- templates, matcher, router ---------------------------------------------------------------------------


def pieces(singles: str, escapes: list[str], max_size: int = 30) -> st.SearchStrategy[str]:
    """Strings made of single characters and whole percent escapes (good, bad and truncated)."""
    return st.lists(st.sampled_from([*singles, *escapes]), max_size=max_size).map("".join)


raw_paths = pieces("/%2fF0aAzZ-._~:{}*?#é\x00 ", ["%2F", "%25", "%C3%A9", "%FF", "%E2%82"])


@FAST
@given(source=st.text(alphabet=st.sampled_from(list("/{}=*:._aZ0-")), max_size=30) | st.text(max_size=30))
def test_template_parser_raises_only_its_own_error(source: str) -> None:
    try:
        template = parse(source)
    except TemplateError:
        return
    assert template.source == source


@FAST
@given(method=st.sampled_from(["GET", "POST", "PATCH", "DELETE", "PUT"]), tail=raw_paths)
def test_router_resolves_any_raw_path_or_says_the_encoding_is_bad(method: str, tail: str) -> None:
    for raw in (tail, "/" + tail, "/api/v2/users/" + tail, "/api/v2/users/me/secrets/" + tail):
        try:
            resolved = ROUTER.resolve(method, raw)
        except PathEncodingError:
            continue
        assert resolved.match in (Match.NONE, Match.PARTIAL, Match.FULL)
        if resolved.match is Match.FULL:
            assert resolved.route is not None and resolved.values is not None


names = st.text(st.characters(exclude_characters="/?#", exclude_categories=["Cs"]), min_size=1, max_size=30)


@FAST
@given(user=names, name=names)
def test_percent_encoded_names_come_back_exactly(user: str, name: str) -> None:
    raw = f"/api/v2/users/{quote(user, safe='')}/secrets/{quote(name, safe='')}"
    resolved = ROUTER.resolve("GET", raw)
    assert resolved.match is Match.FULL and resolved.route is not None
    assert resolved.route.endpoint.rpc_path.endswith("/GetUserSecret")
    assert resolved.values == {"user": user, "name": name}


# ---- JSON bodies and query parameters ---------------------------------------------------------------------

# Lone surrogates included: JSON can carry "\ud800", which protobuf strings cannot hold.
json_text = st.text(max_size=20) | st.builds(lambda t, c: t + chr(c), st.text(max_size=5), st.integers(0xD800, 0xDFFF))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | json_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
field_names = st.sampled_from(["name", "value", "description", "env_name", "file_path", "user", "other", ""])
known_fields = st.dictionaries(field_names, json_text | json_values, max_size=5)
objects = known_fields | st.dictionaries(field_names | st.text(max_size=10), json_values, max_size=6)
PATH_VALUES = {"user": "me", "name": "k"}


def build(route: RpcRoute, raw: bytes | None, query: list[tuple[str, str]]) -> None:
    values = {p: PATH_VALUES[p.split(".")[-1]] for p in route.template.field_paths}
    try:
        message = route.binding.build(raw, values, query)
    except (CodecError, ParameterError):
        return
    assert message.DESCRIPTOR is route.method.input_type


@FAST
@given(raw=st.binary(max_size=200) | st.builds(lambda o: repr(o).encode(), objects))
def test_any_bytes_as_a_body_decode_or_fail_cleanly(raw: bytes) -> None:
    for route in ROUTES:
        if route.has_body:
            build(route, raw, [])


@FAST
@given(body=objects)
def test_any_json_object_decodes_or_fails_cleanly(body: dict[str, Any]) -> None:
    raw = json.dumps(body, allow_nan=True).encode()
    for route in ROUTES:
        if route.has_body:
            build(route, raw, [])


@FAST
@given(query=st.lists(st.tuples(field_names | st.text(max_size=8), st.text(max_size=12)), max_size=5))
def test_any_query_string_binds_or_fails_cleanly(query: list[tuple[str, str]]) -> None:
    for route in ROUTES:
        build(route, b"{}" if route.has_body else None, query)


# ---- the live gateway -------------------------------------------------------------------------------------


class LoopThread:
    """An event loop in a thread of its own, for hypothesis' synchronous tests to drive async servers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def live_gateway(redis_proc: RedisProcess) -> Iterator[tuple[LoopThread, RunningGateway, str]]:
    runner = LoopThread()
    stack_cm = running_server(redis_proc.url, rate_limit_per_second=0)

    async def start() -> tuple[ServerStack, Any, RunningGateway, str]:
        server = await stack_cm.__aenter__()
        gateway_cm = running_gateway(server.grpc_target, max_body_bytes=4096)
        gateway = await gateway_cm.__aenter__()
        _, token = await server.user("fuzz")
        return server, gateway_cm, gateway, token

    _, gateway_cm, gateway, token = runner.run(start())
    try:
        yield runner, gateway, token
    finally:

        async def stop() -> None:
            await gateway_cm.__aexit__(None, None, None)
            await stack_cm.__aexit__(None, None, None)

        runner.run(stop())
        runner.close()


async def send_raw(url: str, method: str, raw_path: str, token: str, body: bytes) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.request(
            method,
            URL(url + raw_path, encoded=True),
            data=body,
            headers={"Coder-Session-Token": token, "Content-Type": "application/json"},
        ) as reply,
    ):
        await reply.read()
        return reply.status, reply.headers.get("Content-Type", "")


hostile_paths = st.builds(
    lambda prefix, tail: prefix + tail,
    st.sampled_from(["/api/v2/users/me/secrets", "/api/v2/users/me/secrets/", "/api/v2/users/", "/"]),
    # A request target is ASCII (RFC 3986); raw non-ASCII is refused by aiohttp's parser before our code runs.
    pieces("%2fF0aZ-._~:/", ["%2F", "%25", "%C3%A9", "%FF", "%00"], max_size=20),
)
hostile_bodies = st.binary(max_size=64) | st.builds(lambda o: json.dumps(o).encode(), objects)


def test_live_gateway_never_answers_a_server_error(live_gateway: tuple[LoopThread, RunningGateway, str]) -> None:
    runner, gateway, token = live_gateway

    @settings(max_examples=60, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(method=st.sampled_from(["GET", "POST", "PATCH", "DELETE", "PUT"]), path=hostile_paths, body=hostile_bodies)
    def exercise(method: str, path: str, body: bytes) -> None:
        status, content_type = runner.run(send_raw(gateway.url, method, path, token, body))
        assert status < 500, (method, path, body, status)
        if status != 204:
            assert content_type == "application/json", (method, path, status, content_type)

    exercise()


# ---- schemathesis, stateful --------------------------------------------------------------------------------

CHECKS = [
    st_checks.not_a_server_error,
    st_checks.status_code_conformance,
    st_checks.content_type_conformance,
    st_checks.response_schema_conformance,
]


def run_stateful(document: dict[str, Any], base_url: str, token: str) -> tuple[list[str], set[tuple[str, str, int]]]:
    """(failures, the (kind, method, status) of every step taken), kind being "link" for a step that used
    what an earlier step returned and "random" for a fresh one."""
    schema = schemathesis.openapi.from_dict(document)
    base = schema.as_state_machine()
    failures: list[str] = []
    steps: set[tuple[str, str, int]] = set()

    class Workflow(base):  # type: ignore[misc, valid-type]
        def setup(self) -> None:
            # Every scenario starts from no secrets: the same draws then meet the same answers, which is
            # what lets hypothesis replay a scenario faithfully.
            headers = {"Coder-Session-Token": token}
            secrets = f"{base_url}/api/v2/users/me/secrets"
            for secret in requests.get(secrets, headers=headers, timeout=10).json():
                name = quote(secret["name"], safe="")
                assert requests.delete(f"{secrets}/{name}", headers=headers, timeout=10).status_code == 204

        def before_call(self, case: Any) -> None:
            # Mostly our own user, so the sequences reach secrets rather than stop at the user lookup.
            if "user" in (case.path_parameters or {}) and zlib.crc32(repr(case.path_parameters).encode()) % 4:
                case.path_parameters["user"] = "me"
            # Half the creates made valid: generated bodies are nearly always refused, and a sequence
            # (create, then get / patch / delete the name it returned) needs a secret to exist.
            digest = zlib.crc32(repr(case.body).encode())
            if case.method == "POST" and isinstance(case.body, dict) and digest % 2:
                case.body = {"name": f"fuzzed-{digest}", "value": "v"}

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"base_url": base_url, "headers": {"Coder-Session-Token": token}}

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            try:
                case.validate_response(response, checks=CHECKS)
            except Exception as exc:  # collect, so the report lists every kind of failure
                failures.append(f"{case.operation.label}: {exc}")

        def step(self, input: Any) -> Any:
            output = super().step(input)
            kind = "link" if input.transition is not None and input.applied_parameters else "random"
            steps.add((kind, input.case.method, output.response.status_code))
            return output

        def call(self, case: Any, **kwargs: Any) -> Any:
            try:
                return super().call(case, **kwargs)
            except Exception as exc:
                failures.append(f"{case.operation.label}: the call itself failed: {exc!r}")
                raise

    run_state_machine_as_test(
        Workflow,
        settings=settings(
            max_examples=25,
            stateful_step_count=6,
            deadline=None,
            database=None,
            derandomize=True,
            # Sequences depend on the server's answers, so a replay is not the same test: no shrinking.
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        ),
    )
    return failures, steps


async def test_schemathesis_stateful_finds_no_server_error(server_stack: ServerStack) -> None:
    async with gateway_in_front_of(server_stack) as gw:
        _, token = await gw.user("alice")
        document = (await call(gw.http, "GET", openapi.PATH)).json
        transitions = [
            name for name in dir(schemathesis.openapi.from_dict(document).as_state_machine()) if "__20" in name
        ]
        assert len(transitions) >= 9, transitions  # create -> get/patch/delete, and onwards: sequences, not calls
        failures, steps = await asyncio.to_thread(run_stateful, document, gw.url, token)
        metrics = (await call(gw.http, "GET", "/metrics")).raw.decode()
    assert failures == [], "\n\n".join(failures[:5])
    assert ("random", "POST", 201) in steps, steps
    # Sequences happened: a name a step returned was read, changed or deleted by a later step.
    assert {("link", "GET", 200), ("link", "PATCH", 200), ("link", "DELETE", 204)} & steps, steps
    counted = r'^usersecrets_gateway_requests_total\{method="\w+",route="[^"]*",status="(\d+)"\}'
    assert not any(status.startswith("5") for status in re.findall(counted, metrics, re.M))
