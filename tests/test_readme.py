"""The README documents every setting the programs read, and the two commands."""

from __future__ import annotations

from pathlib import Path

import pytest

from usersecrets.gateway.config import ENV as GATEWAY_ENV
from usersecrets.server.config import _ENV as SERVER_ENV

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


@pytest.mark.parametrize("variable", sorted(set(SERVER_ENV.values()) | set(GATEWAY_ENV.values())))
def test_every_setting_is_documented(variable: str) -> None:
    assert f"`{variable}`" in README, f"{variable} is read by a program but missing from README.md"


def test_the_two_commands_come_first() -> None:
    head = README[:400]
    assert "make run" in head and "make test" in head
