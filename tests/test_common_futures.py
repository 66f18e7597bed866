"""fail_waiting: callers still waiting hear the failure; those who gave up are left alone."""

from __future__ import annotations

import asyncio

import pytest

from usersecrets.common.futures import fail_waiting


async def test_an_error_reaches_every_waiting_caller_and_no_one_else() -> None:
    loop = asyncio.get_running_loop()
    waiting, answered, gave_up = loop.create_future(), loop.create_future(), loop.create_future()
    answered.set_result("kept")
    gave_up.cancel()
    error = ConnectionError("dropped")
    fail_waiting([waiting, answered, gave_up], error)
    assert waiting.exception() is error
    assert answered.result() == "kept"
    assert gave_up.cancelled()


async def test_a_cancellation_cancels_the_waiting_callers() -> None:
    loop = asyncio.get_running_loop()
    waiting, answered = loop.create_future(), loop.create_future()
    answered.set_exception(TimeoutError())
    fail_waiting(iter([waiting, answered]), asyncio.CancelledError())
    assert waiting.cancelled()
    with pytest.raises(TimeoutError):
        answered.result()
