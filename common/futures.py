"""Settling the futures of callers who wait on shared work (a relay batch, a Redis pipeline)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any


def fail_waiting(futures: Iterable[asyncio.Future[Any]], exc: BaseException) -> None:
    """Every caller still waiting hears `exc`; a cancellation (BaseException) cancels them instead.
    Callers that already gave up (their future is done) are left alone."""
    for future in futures:
        if future.done():
            continue
        if isinstance(exc, Exception):
            future.set_exception(exc)
        else:
            future.cancel()
