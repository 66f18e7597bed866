"""Limits of the contract, in one place. Storage enforces the three per-user limits atomically."""

from __future__ import annotations

MAX_SECRETS = 50
MAX_TOTAL_VALUE_BYTES = 204800
MAX_ENV_VALUE_BYTES = 24576

MAX_VALUE_BYTES = 24576
MAX_NAME_BYTES = 256
MAX_ENV_NAME_BYTES = 256
MAX_FILE_PATH_BYTES = 4096
MAX_DESCRIPTION_BYTES = 4096
