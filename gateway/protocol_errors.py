"""Requests that fail before any handler runs (malformed HTTP, a header line or URL that aiohttp's parser refuses,
an error outside the middleware) get the contract's JSON error body too, and never an echo of what was sent.

aiohttp answers these from `RequestHandler.handle_error` with a plain-text page that quotes the offending line,
so a malformed `Coder-Session-Token` header would come back in the body. aiohttp has no hook for this answer
(the application's middlewares never see a request its parser refused), so `install()` replaces that one method
of aiohttp's request handler class, once, for the whole process: the gateway is the only aiohttp server in it.
The connection is closed afterwards, as aiohttp does. What is logged names the status and the exception type,
never its text.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus

from aiohttp import web, web_protocol
from aiohttp.web_request import BaseRequest

from usersecrets.common.jsonlog import event
from usersecrets.gateway import errors

MALFORMED = "The request is not valid HTTP."
log = logging.getLogger("usersecrets.gateway")


def _message(status: int) -> str:
    if status == HTTPStatus.BAD_REQUEST:
        return MALFORMED
    if status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE:
        return errors.BODY_TOO_LARGE
    if status >= HTTPStatus.INTERNAL_SERVER_ERROR:
        return errors.INTERNAL
    try:
        return f"{HTTPStatus(status).phrase}."
    except ValueError:
        return MALFORMED


def handle_error(
    self: web_protocol.RequestHandler,
    request: BaseRequest,
    status: int = 500,
    exc: BaseException | None = None,
    message: str | None = None,  # aiohttp's text, which quotes the request: never used
) -> web.StreamResponse:
    level = logging.ERROR if status >= HTTPStatus.INTERNAL_SERVER_ERROR else logging.INFO
    event(log, "request refused before routing", level, status=status, error=type(exc).__name__ if exc else "")
    if request.writer.output_size > 0:
        # Part of a response is already out: nothing can be added, the connection is dropped (as aiohttp does).
        raise ConnectionError("Response is sent already, cannot send another response with the error message")
    body = json.dumps({"message": _message(status)}, separators=(",", ":")).encode()
    response = web.Response(status=status, body=body, content_type="application/json")
    response.force_close()
    return response


def install() -> None:
    """Idempotent: aiohttp's request handler answers protocol errors with `handle_error` above."""
    web_protocol.RequestHandler.handle_error = handle_error  # type: ignore[method-assign]
