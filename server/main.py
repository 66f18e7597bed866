"""`usersecrets-server`: serve until SIGTERM or SIGINT, then drain in-flight calls and exit 0."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from prometheus_client import start_http_server

from usersecrets.common import jsonlog as logs
from usersecrets.server import config as config_module
from usersecrets.server.app import create_server

log = logging.getLogger("usersecrets.server")
# Past its grace, stopping may take this much longer (releasing Redis, grpc's own teardown); then it gives up,
# says which tasks were still pending (their names only) and exits 1, rather than hang until a SIGKILL.
STOP_MARGIN_SECONDS = 5.0


def _pending_tasks() -> list[str]:
    current = asyncio.current_task()
    others = (t for t in asyncio.all_tasks() if t is not current)
    return sorted({getattr(t.get_coro(), "__qualname__", t.get_name()) for t in others})


async def serve(config: config_module.ServerConfig) -> bool:
    """Serves until SIGTERM or SIGINT; True when it then stopped within its grace (and margin)."""
    app = await create_server(config)
    if config.metrics_listen:
        host, _, port = config.metrics_listen.rpartition(":")
        start_http_server(int(port), addr=host or "127.0.0.1", registry=app.metrics.registry)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await app.start()
    logs.event(log, "serving", grpc_port=app.port, grpc_listen=config.grpc_listen)
    await stop.wait()
    grace = config.shutdown_grace_seconds
    try:
        async with asyncio.timeout(grace + STOP_MARGIN_SECONDS):
            await app.stop(grace, on_draining=lambda: logs.event(log, "draining", grace_seconds=grace))
    except TimeoutError:
        logs.event(log, "stop timed out", logging.ERROR, seconds=grace + STOP_MARGIN_SECONDS, pending=_pending_tasks())
        return False
    logs.event(log, "stopped")
    return True


def main(argv: Sequence[str] | None = None) -> int:
    config = config_module.load(argv)
    logs.configure(config.log_level)
    try:
        import uvloop
    except ImportError:  # optional speed-up
        uvloop = None
    try:
        clean = uvloop.run(serve(config)) if uvloop is not None else asyncio.run(serve(config))
    except (ValueError, OSError) as exc:
        # Configuration and bind errors: say what is wrong in one line (never a key: messages are ours).
        logs.event(log, "cannot start", logging.ERROR, error=str(exc))
        return 1
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
