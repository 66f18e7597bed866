"""`usersecrets-gateway`: serve the REST gateway until SIGTERM or SIGINT, then stop gracefully.

On a signal the listener closes first (no new work), requests in flight get `shutdown_grace_seconds` to
finish, and only then is the gRPC channel closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from aiohttp import web

from usersecrets.common import jsonlog
from usersecrets.gateway import config as gateway_config
from usersecrets.gateway.app import create_app
from usersecrets.gateway.middleware import LOGGER


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def main(argv: Sequence[str] | None = None) -> None:
    config = gateway_config.load(argv)
    jsonlog.configure(config.log_level)
    log = logging.getLogger(LOGGER)
    host, port = config.host_port
    loop = _new_loop()
    asyncio.set_event_loop(loop)
    log.info("starting", extra={"fields": {"listen": config.http_listen, "grpc_target": config.grpc_target}})
    web.run_app(
        create_app(config),
        host=host,
        port=port,
        loop=loop,
        shutdown_timeout=config.shutdown_grace_seconds,
        handle_signals=True,  # SIGTERM and SIGINT raise GracefulExit inside run_app
        access_log=None,  # our middleware writes the access log, as JSON
        print=lambda _banner: log.info("listening", extra={"fields": {"listen": config.http_listen}}),
    )
    log.info("stopped")


if __name__ == "__main__":
    main()
