"""Durable acknowledgement: run a write script, then `WAIT numreplicas timeout` on the same connection.

WAIT counts the replicas that acknowledged everything *this connection* wrote, so the script and the WAIT go
out together as one two-command pipeline on one connection. Fewer acknowledgements than asked for within the
timeout raise `NotDurable`, which the store turns into StorageUnavailable (503): the write may have been
applied on the master, but the caller is never told "done" for a write that a failover could still lose.

The trade-off (see deploy/README.md): every write waits one replication round trip, and a shard with fewer
live replicas than asked for refuses writes until a replica is back. WAIT makes the write survive the loss of
the master in memory on the replicas; it does not fsync, and Redis may still promote a replica that missed the
write if the acknowledged ones are lost too.

On Redis Cluster every write script (with or without WAIT) is sent by hand to the master of the keys' slot:
the cluster client's pipeline may resend a failed command alone, on another connection, where WAIT would
count nothing of ours; and its ASK handling sends ASKING as a separate pooled command, which under
concurrency lands on another connection and ping-pongs ASK/MOVED until it gives up. Here ASKING, the script
and WAIT share one connection. Redirections, TRYAGAIN and a script missing from a node's cache are answered
before the script ran, so they are followed and the pair is sent again; a connection lost once the pair was
sent is not retried (the write may have happened) and becomes StorageUnavailable.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis import exceptions as rexc
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode, PipelineCommand
from redis.commands.core import AsyncScript

from .redis_client import QueueingRedisCluster

if TYPE_CHECKING:
    from .reads import PipelinedReads

# Answers that mean the node did not run the script, so sending the pair again cannot apply a write twice.
NOT_RUN = (
    rexc.NoScriptError,
    rexc.AskError,  # and MovedError, its subclass
    rexc.TryAgainError,
    rexc.ClusterDownError,
    rexc.ReadOnlyError,
    rexc.BusyLoadingError,
)
ATTEMPTS = 16  # as many as redis-py gives one command for redirections
TRY_AGAIN_PAUSE = 0.05


class NotDurable(Exception):
    """Fewer replicas than required acknowledged a write in time. The text names counts, never data."""

    def __init__(self, acked: int, wanted: int, timeout_ms: int) -> None:
        self.acked, self.wanted = acked, wanted
        super().__init__(f"{acked} of {wanted} replicas acknowledged the write within {timeout_ms} ms")


@dataclass(frozen=True, slots=True)
class WaitPolicy:
    replicas: int
    timeout_ms: int

    def __post_init__(self) -> None:
        if self.replicas < 0:
            raise ValueError("the number of replicas to wait for cannot be negative")
        # WAIT n 0 blocks forever: a stuck replica would hang every write.
        if self.replicas and self.timeout_ms <= 0:
            raise ValueError("waiting for replicas needs a timeout above 0 ms")

    @property
    def enabled(self) -> bool:
        return self.replicas > 0


async def write(
    redis: Redis | RedisCluster, script: AsyncScript, keys: Sequence[str], args: Sequence[Any], policy: WaitPolicy
) -> Any:
    """The script's answer once `policy.replicas` replicas hold the write; raises NotDurable or redis errors.

    Always a command of the caller's own: when the caller gives up (its deadline), the command is cancelled with
    it and, unsent, can never land after the caller was told it failed. (Reads may share a pipeline instead.)"""
    if isinstance(redis, RedisCluster):
        answer, acked = await _cluster_pair(redis, script, keys, args, policy)
    elif policy.enabled:
        answer, acked = await _standalone_pair(redis, script, keys, args, policy)
    else:
        return await script(keys=keys, args=args)
    if acked < policy.replicas:
        raise NotDurable(acked, policy.replicas, policy.timeout_ms)
    return answer


NO_WAIT = WaitPolicy(0, 0)


async def read(
    redis: Redis | RedisCluster,
    script: AsyncScript,
    keys: Sequence[str],
    args: Sequence[Any],
    reads: PipelinedReads | None = None,
) -> Any:
    """A script that writes nothing: no WAIT, but on a cluster the same sender, so ASK during a migration is safe.
    On a standalone Redis it goes with the other reads of its loop turn if `reads`."""
    if reads is not None and not isinstance(redis, RedisCluster):
        return await reads.run_script(script, keys, args)
    return await write(redis, script, keys, args, NO_WAIT)


def _not_local_as_try_again(answer: Any) -> Any:
    """A read script (list.lua) reads keys it cannot declare; on the importing node of a migrating slot Redis
    stops it at the first such key, before it returned anything. Write scripts declare every key, so only a
    read meets this: try again, as for TRYAGAIN, until the slot has moved."""
    if isinstance(answer, rexc.ResponseError) and str(answer).startswith("Script attempted to access a non local key"):
        return rexc.TryAgainError("slot migrating")
    return answer


def _raise_first(results: list[Any]) -> None:
    for result in results:
        if isinstance(result, Exception):
            raise result


async def _standalone_pair(
    redis: Redis, script: AsyncScript, keys: Sequence[str], args: Sequence[Any], policy: WaitPolicy
) -> tuple[Any, int]:
    for _ in range(2):
        pipe = redis.pipeline(transaction=False)
        pipe.evalsha(script.sha, len(keys), *keys, *args)
        pipe.execute_command("WAIT", policy.replicas, policy.timeout_ms)
        # raise_on_error=False: redis-py's pipeline errors quote the command's arguments.
        results = await pipe.execute(raise_on_error=False)
        if isinstance(results[0], rexc.NoScriptError):
            await redis.script_load(script.script)
            continue
        _raise_first(results)
        return results[0], int(results[1])
    raise rexc.NoScriptError("the write script could not be loaded")


async def _cluster_pair(
    cluster: RedisCluster, script: AsyncScript, keys: Sequence[str], args: Sequence[Any], policy: WaitPolicy
) -> tuple[Any, int]:
    await cluster.initialize()  # a no-op once the slot map is known
    node: ClusterNode | None = None
    asking = False
    last: Exception | None = None
    for _ in range(ATTEMPTS):
        if node is None:
            node = cluster.get_node_from_key(keys[0])
        commands = [PipelineCommand(0, "ASKING")] if asking else []
        commands.append(PipelineCommand(len(commands), "EVALSHA", script.sha, len(keys), *keys, *args))
        if policy.enabled:
            commands.append(PipelineCommand(len(commands), "WAIT", policy.replicas, policy.timeout_ms))
        evalsha = len(commands) - (2 if policy.enabled else 1)
        try:
            async with _turn(cluster):
                await node.execute_pipeline(commands)
        except (rexc.ConnectionError, rexc.TimeoutError) as exc:
            # Nothing was sent: let the client learn the topology, then try again.
            last, node, asking = exc, None, False
            await _learn(cluster, keys[0])
            continue
        answer = _not_local_as_try_again(commands[evalsha].result)
        acked = commands[-1].result if policy.enabled else 0
        if not isinstance(answer, NOT_RUN):
            if isinstance(answer, (rexc.ConnectionError, rexc.TimeoutError)):
                await _learn(cluster, keys[0])
            _raise_first([answer, acked])
            return answer, int(acked)
        last = answer
        if isinstance(answer, rexc.NoScriptError):
            await cluster.script_load(script.script)  # then the same node, with ASKING again if it was asked
        elif isinstance(answer, rexc.MovedError):
            node, asking = None, False
            await _learn(cluster, keys[0])
        elif isinstance(answer, rexc.AskError):
            # The slot is migrating: this one call goes to the importing node, announced by ASKING.
            node = cluster.get_node(host=answer.host or node.host, port=answer.port)
            asking = node is not None
        else:
            node, asking = None, False
            await asyncio.sleep(TRY_AGAIN_PAUSE)
            await _learn(cluster, keys[0])
    assert last is not None
    raise last


def _turn(cluster: RedisCluster) -> contextlib.AbstractAsyncContextManager[None]:
    """The queueing client's connection budget (redis_client.QueueingRedisCluster), if it has one."""
    return cluster.turn() if isinstance(cluster, QueueingRedisCluster) else contextlib.nullcontext()


async def _learn(cluster: RedisCluster, key: str) -> None:
    """One read of the key through the client's own path, which follows MOVED and refreshes the slot map."""
    with contextlib.suppress(rexc.RedisError):
        await cluster.exists(key)
