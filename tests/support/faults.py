"""Storage faults on purpose: a wrapper around a real redis.asyncio client that breaks chosen commands.

`inject(client, plan)` swaps the client's connection class (and the class of the connections it already
holds) for a subclass that consults `plan` before every command. Redis stays real and so does every other
part of the client: its pool, its one quick retry, its error classes. A fault fires at the n-th command
that a `Fault` matches, so "the second EVALSHA of the create script" is a step one can name.

    DROP_BEFORE_SEND   the socket is closed and ConnectionError raised; Redis never sees the command
    DROP_AFTER_SEND    the command is sent (Redis runs it), then the socket is closed before the reply
    TIMEOUT_AFTER_SEND as above, raised as redis' TimeoutError, the way a slow reply surfaces
    RAISE              `error` is raised instead of sending (a Redis error reply: BUSY, OOM, READONLY ...)
    DELAY              the command waits `seconds` and is then sent (a slow network or a slow Redis)
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis import exceptions as rexc
from redis.asyncio import Redis


class Kind(enum.Enum):
    DROP_BEFORE_SEND = "drop_before_send"
    DROP_AFTER_SEND = "drop_after_send"
    TIMEOUT_AFTER_SEND = "timeout_after_send"
    RAISE = "raise"
    DELAY = "delay"


def _text(part: Any) -> str:
    return part.decode("utf-8", "replace") if isinstance(part, bytes) else str(part)


def command_of(args: Sequence[Any]) -> str:
    """The upper-case command name of a packed-to-be command: ("EVALSHA", sha, ...) -> "EVALSHA"."""
    return _text(args[0]).upper().split(" ")[0] if args else ""


@dataclass
class Fault:
    """Break the `at`-th matching command (1-based), and the `times - 1` matching commands after it."""

    kind: Kind
    command: str = ""  # "" matches every command; else a name such as "EVALSHA" or "HGETALL"
    sha: str = ""  # with EVALSHA: only this script (AsyncScript.sha)
    at: int = 1
    times: int = 1
    error: Exception | None = None
    seconds: float = 0.0
    seen: int = 0  # matching commands counted so far
    fired: int = 0

    def matches(self, args: Sequence[Any]) -> bool:
        if self.command and command_of(args) != self.command.upper():
            return False
        return not self.sha or (len(args) > 1 and _text(args[1]) == self.sha)

    def take(self, args: Sequence[Any]) -> bool:
        if not self.matches(args):
            return False
        self.seen += 1
        if self.seen >= self.at and self.fired < self.times:
            self.fired += 1
            return True
        return False


@dataclass
class FaultPlan:
    """What to break. Faults are checked in order; the first that fires wins. Thread-unsafe: one event loop."""

    faults: list[Fault] = field(default_factory=list)
    log: list[tuple[str, str]] = field(default_factory=list)  # (command, what happened), for assertions
    enabled: bool = True

    def add(self, fault: Fault) -> Fault:
        self.faults.append(fault)
        return fault

    def clear(self) -> None:
        self.faults.clear()

    def choose(self, args: Sequence[Any]) -> Fault | None:
        if not self.enabled:
            return None
        for fault in self.faults:
            if fault.take(args):
                self.log.append((command_of(args), fault.kind.value))
                return fault
        return None


class _FaultyConnection:
    """Mixed in ahead of the real connection class; `_plan` is set on the generated subclass."""

    _plan: FaultPlan
    _pending_fault: Fault | None = None

    async def send_command(self, *args: Any, **kwargs: Any) -> None:
        fault = self._plan.choose(args)
        self._pending_fault = None
        if fault is None:
            await super().send_command(*args, **kwargs)  # type: ignore[misc]
            return
        if fault.kind is Kind.DELAY:
            await asyncio.sleep(fault.seconds)
            await super().send_command(*args, **kwargs)  # type: ignore[misc]
            return
        if fault.kind is Kind.RAISE:
            assert fault.error is not None, "RAISE needs an error"
            raise fault.error
        if fault.kind is Kind.DROP_BEFORE_SEND:
            await self.disconnect(nowait=True)  # type: ignore[attr-defined]
            raise rexc.ConnectionError("fault injected: connection dropped before the command was sent")
        await super().send_command(*args, **kwargs)  # type: ignore[misc]
        self._pending_fault = fault

    # A pipeline (the server pipelines concurrent reads) packs its commands, then sends them in one write: the
    # plan sees each command, and the first fault that fires acts on the whole write, as a real one would.
    _pipelined: list[Sequence[Any]] | None = None

    def pack_commands(self, commands: Sequence[Sequence[Any]]) -> Any:
        self._pipelined = list(commands)
        return super().pack_commands(commands)  # type: ignore[misc]

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        pipelined, self._pipelined = self._pipelined, None
        if not pipelined:
            await super().send_packed_command(command, check_health)  # type: ignore[misc]
            return
        chosen = [self._plan.choose(args) for args in pipelined]
        fault = next((f for f in chosen if f is not None), None)
        self._pending_fault = None
        if fault is not None and fault.kind is Kind.DELAY:
            await asyncio.sleep(fault.seconds)
        elif fault is not None and fault.kind is Kind.RAISE:
            assert fault.error is not None, "RAISE needs an error"
            raise fault.error
        elif fault is not None and fault.kind is Kind.DROP_BEFORE_SEND:
            await self.disconnect(nowait=True)  # type: ignore[attr-defined]
            raise rexc.ConnectionError("fault injected: connection dropped before the command was sent")
        await super().send_packed_command(command, check_health)  # type: ignore[misc]
        if fault is not None and fault.kind is not Kind.DELAY:
            self._pending_fault = fault

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        fault, self._pending_fault = self._pending_fault, None
        if fault is None:
            return await super().read_response(*args, **kwargs)  # type: ignore[misc]
        await self.disconnect(nowait=True)  # type: ignore[attr-defined]
        if fault.kind is Kind.TIMEOUT_AFTER_SEND:
            raise rexc.TimeoutError("fault injected: no reply in time")
        raise rexc.ConnectionError("fault injected: connection dropped before the reply")


def _faulty_class(base: type, plan: FaultPlan) -> type:
    return type(f"Faulty{base.__name__}", (_FaultyConnection, base), {"_plan": plan})


def inject(client: Redis, plan: FaultPlan) -> Callable[[], None]:
    """Route every command of `client` through `plan`; returns a function that undoes it."""
    pool = client.connection_pool
    original = pool.connection_class
    faulty = _faulty_class(original, plan)
    pool.connection_class = faulty
    held = [*pool._available_connections, *pool._in_use_connections]  # the pool has no public view of them
    for conn in held:
        conn.__class__ = faulty

    def undo() -> None:
        pool.connection_class = original
        for conn in [*pool._available_connections, *pool._in_use_connections]:
            if isinstance(conn, _FaultyConnection):
                conn.__class__ = original

    return undo
