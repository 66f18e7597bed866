"""schemathesis against the served openapi.json, with a valid token: no 5xx, no response off the schema.

Bounded: a few examples per operation (derandomized, no example database), run in a worker thread so the
gateway and server keep serving in the test's event loop while schemathesis' blocking client calls them.
`{user}` is pinned to "me" on most cases so that requests reach the secrets, not only the user lookup.
"""

from __future__ import annotations

import asyncio
import re
import zlib
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis import checks as st_checks  # noqa: E402

from tests.support.gateway_stack import call, gateway_in_front_of  # noqa: E402
from tests.support.stack import ServerStack  # noqa: E402
from usersecrets.gateway import openapi  # noqa: E402

MAX_EXAMPLES = 20
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
]


def run_schemathesis(document: dict[str, Any], base_url: str, token: str) -> list[str]:
    """Every operation, a bounded number of generated cases; the failures as text."""
    schema = schemathesis.openapi.from_dict(document)
    checks = [getattr(st_checks, name) for name in CHECKS]
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 5
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def exercise(case: Any) -> None:
            if case.path_parameters and zlib.crc32(repr(case.path_parameters).encode()) % 4:
                case.path_parameters["user"] = "me"
            try:
                case.call_and_validate(base_url=base_url, headers={"Coder-Session-Token": token}, checks=checks)
            except Exception as exc:  # collect rather than stop: the report should list every kind of failure
                failures.append(f"{case.operation.label}: {exc}")

        exercise()
    return failures


async def test_schemathesis_finds_nothing(server_stack: ServerStack) -> None:
    async with gateway_in_front_of(server_stack) as gw:
        _, token = await gw.user("alice")
        for name in ("string", "a", "0"):  # names hypothesis tends to produce, so GET/PATCH/DELETE hit rows
            await call(gw.http, "POST", "/api/v2/users/me/secrets", token=token, body={"name": name, "value": "v"})
        document = (await call(gw.http, "GET", openapi.PATH)).json
        failures = await asyncio.to_thread(run_schemathesis, document, gw.url, token)
        metrics = (await call(gw.http, "GET", "/metrics")).raw.decode()
    assert failures == [], "\n\n".join(failures[:5])
    counted = r'^usersecrets_gateway_requests_total\{method="\w+",route="/api[^"]*",status="(\d+)"\}'
    statuses = set(re.findall(counted, metrics, re.M))
    assert {"200", "201"} <= statuses and not any(s.startswith("5") for s in statuses), statuses
