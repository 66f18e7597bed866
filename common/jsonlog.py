"""JSON log lines on stderr, one object per line, with the request id of the call they belong to.

Nothing logged may hold a secret value or a token: callers pass the fields they choose, and exception texts
are never written (an exception can quote the data it failed on) — only the type and where it was raised.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import traceback
from datetime import UTC, datetime
from typing import TextIO

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="microseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = REQUEST_ID.get()
        if request_id:
            line["request_id"] = request_id
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            line["exc_type"] = record.exc_info[0].__name__
            # Where, not what: file, line and function only (no source text, no locals).
            line["exc_frames"] = [
                f"{f.filename}:{f.lineno} in {f.name}" for f in traceback.extract_tb(record.exc_info[2])
            ]
        return json.dumps(line, ensure_ascii=False, default=str)


def configure(level: str, stream: TextIO | None = None) -> None:
    """For a process entry point only: tests keep pytest's handlers."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries log connection noise at debug level; keep ours readable.
    for noisy in ("grpc", "grpc._cython", "asyncio", "aiohttp"):
        logging.getLogger(noisy).setLevel(max(root.level, logging.INFO))


def event(logger: logging.Logger, msg: str, level: int = logging.INFO, **fields: object) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, msg, extra={"fields": fields})
