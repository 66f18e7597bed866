"""Everything the two clients share and that does no I/O: settings, URLs, headers, bodies, parsing, errors.

Each operation is first built into a `Call` (method, encoded path, headers, body, the status that means
success, and how to read the answer). `AsyncClient` and `Client` only move a `Call` over the wire and hand
the status, headers and bytes back to `ClientCore.finish`, so both speak the API the same way.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote, urlsplit

from usersecrets.sdk import errors
from usersecrets.sdk.models import CreateUserSecretRequest, UpdateUserSecretRequest, UserSecret, Validation

T = TypeVar("T")

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT = 30.0
URL_ENV = "USERSECRETS_URL"
TOKEN_ENV = "USERSECRETS_TOKEN"  # noqa: S105 - a variable name
TOKEN_HEADER = "Coder-Session-Token"  # noqa: S105 - a header name
USER_AGENT = "usersecrets-sdk/0.1"
API_PREFIX = "/api/v2/users/"


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One HTTP exchange, ready to send. `path` is already percent-encoded."""

    method: str
    path: str
    headers: Mapping[str, str] = field(repr=False)
    body: bytes | None = field(repr=False)
    success: int
    read: Callable[[Any], T]


def encode_segment(text: str) -> str:
    """Percent-encode one path segment: every byte but the unreserved ones, so a space is %20, `%` is %25."""
    encoded = quote(text, safe="")
    # "." and ".." are dot-segments that URL normalisation would swallow; their escaped forms are not.
    if encoded in (".", ".."):
        encoded = encoded.replace(".", "%2E")
    return encoded


def _no_control_chars(what: str, text: str) -> None:
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        raise ValueError(f"{what} must not contain control characters")


class ClientCore:
    """The I/O-free half of a client. The token never appears in `repr` or in any message."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        environ = os.environ if environ is None else environ
        url = url or environ.get(URL_ENV) or DEFAULT_URL
        token = token if token is not None else environ.get(TOKEN_ENV) or None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url must be http:// or https:// with a host, got {url!r}")
        if parts.query or parts.fragment:
            raise ValueError("url must not have a query or fragment")
        if token is not None:
            _no_control_chars("token", token)
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.url = url.rstrip("/")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.base_path = parts.path.rstrip("/")
        self.timeout = timeout
        self._token = token

    def __repr__(self) -> str:
        return f"ClientCore(url={self.url!r}, token={'set' if self._token else 'unset'})"

    # -- building -------------------------------------------------------------------------------------

    def headers(self, with_body: bool) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if with_body:
            headers["Content-Type"] = "application/json"
        if self._token:
            headers[TOKEN_HEADER] = self._token
        return headers

    def path(self, user: str, name: str | None = None) -> str:
        if not user:
            raise ValueError('user must be "me", a UUID or a username')
        path = f"{self.base_path}{API_PREFIX}{encode_segment(user)}/secrets"
        if name is not None:
            # An empty name would address the collection instead of a secret.
            if not name:
                raise ValueError("name must not be empty")
            path += "/" + encode_segment(name)
        return path

    def _call(self, method: str, path: str, body: Any, success: int, read: Callable[[Any], T]) -> Call[T]:
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode()
        return Call(method, path, self.headers(data is not None), data, success, read)

    def create_user_secret(self, user: str, request: CreateUserSecretRequest) -> Call[UserSecret]:
        return self._call("POST", self.path(user), request.to_json(), 201, UserSecret.from_json)

    def user_secrets(self, user: str) -> Call[list[UserSecret]]:
        return self._call("GET", self.path(user), None, 200, _read_list)

    def user_secret_by_name(self, user: str, name: str) -> Call[UserSecret]:
        return self._call("GET", self.path(user, name), None, 200, UserSecret.from_json)

    def update_user_secret(self, user: str, name: str, request: UpdateUserSecretRequest) -> Call[UserSecret]:
        return self._call("PATCH", self.path(user, name), request.to_json(), 200, UserSecret.from_json)

    def delete_user_secret(self, user: str, name: str) -> Call[None]:
        return self._call("DELETE", self.path(user, name), None, 204, _read_nothing)

    # -- reading --------------------------------------------------------------------------------------

    def finish(self, call: Call[T], status: int, headers: Mapping[str, str], body: bytes) -> T:
        """The call's result, or the error the answer stands for."""
        if status != call.success:
            raise error_from_response(status, headers, body)
        if status == 204:
            return call.read(None)
        try:
            return call.read(json.loads(body))
        except ValueError as exc:
            raise errors.UserSecretsError(status, "The server's answer could not be read.", str(exc)) from exc


def _read_list(data: Any) -> list[UserSecret]:
    if not isinstance(data, list):
        raise ValueError(f"expected a JSON array, got {type(data).__name__}")
    return [UserSecret.from_json(item) for item in data]


def _read_nothing(_: Any) -> None:
    return None


def error_from_response(status: int, headers: Mapping[str, str], body: bytes) -> errors.UserSecretsError:
    message, detail, validations = _error_body(status, body)
    cls = errors.class_for(status, validations, message)
    if cls is errors.RateLimitedError:
        return errors.RateLimitedError(
            status, message, detail, validations, retry_after=_retry_after(headers.get("Retry-After"))
        )
    return cls(status, message, detail, validations)


def _error_body(status: int, body: bytes) -> tuple[str, str, list[Validation]]:
    """Coder's error shape; anything else (a proxy's HTML page, say) becomes a generic message."""
    fallback = (f"Unexpected HTTP {status} response.", "", [])
    try:
        data = json.loads(body)
    except ValueError:
        return fallback
    if not isinstance(data, dict) or not isinstance(data.get("message"), str):
        return fallback
    detail = data.get("detail")
    validations = []
    for item in data.get("validations") or []:
        if isinstance(item, dict):
            validations.append(Validation(str(item.get("field", "")), str(item.get("detail", ""))))
    return data["message"], detail if isinstance(detail, str) else "", validations


def _retry_after(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None  # an HTTP-date; rare enough that callers fall back to their own backoff
