"""JSON-lines logging to stderr. Records carry structured `fields`; exception text is never written,
since an exception message may quote request data (a value, a token); its type and frames are enough."""

from __future__ import annotations

import json
import logging
import sys
import traceback
from datetime import UTC, datetime

ACCESS_LOGGER = "usersecrets.gateway.access"
LOGGER = "usersecrets.gateway"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="microseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            out["exc_type"] = record.exc_info[0].__name__
            # Where, not what: file, line and function only (no source text, no locals).
            out["exc_frames"] = [
                f"{f.filename}:{f.lineno} in {f.name}" for f in traceback.extract_tb(record.exc_info[2])
            ]
        return json.dumps(out, ensure_ascii=False, default=str)


def configure(level: str) -> None:
    """For the process entry point only: tests keep pytest's handlers."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
