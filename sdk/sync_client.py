"""The synchronous twin of `AsyncClient`, on the standard library's http.client (no extra dependency).

    with Client("http://127.0.0.1:8080", token) as client:
        for secret in client.user_secrets("me"):
            print(secret.name)

It shares `ClientCore` with the async client and writes out only the I/O: a small pool of keep-alive
connections, safe to use from several threads. Socket errors are mapped to the SDK's error tree here.
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import TypeVar

from usersecrets.sdk import errors
from usersecrets.sdk._core import DEFAULT_TIMEOUT, Call, ClientCore
from usersecrets.sdk.models import CreateUserSecretRequest, UpdateUserSecretRequest, UserSecret

T = TypeVar("T")

# The lookup walks the raised type's MRO and takes the first hit, so subclasses come before their bases
# only where they need a different message.
SOCKET_ERRORS: dict[type[BaseException], tuple[type[errors.TransportError], str]] = {
    TimeoutError: (errors.RequestTimeoutError, "Timed out waiting for the server."),
    ssl.SSLError: (errors.TransportError, "TLS with the server failed."),
    ssl.CertificateError: (errors.TransportError, "TLS with the server failed."),
    socket.gaierror: (errors.TransportError, "Cannot resolve the server's host name."),
    ConnectionRefusedError: (errors.TransportError, "Cannot connect to the server."),
    http.client.RemoteDisconnected: (errors.TransportError, "The server closed the connection."),
    ConnectionResetError: (errors.TransportError, "The connection was reset."),
    BrokenPipeError: (errors.TransportError, "The connection was reset."),
    http.client.IncompleteRead: (errors.TransportError, "The server's answer was cut short or malformed."),
    http.client.HTTPException: (errors.TransportError, "The server's answer could not be read."),
    OSError: (errors.TransportError, "Network error talking to the server."),
}

# Retried once on a fresh connection when a pooled one turns out dead: these cannot do harm twice.
IDEMPOTENT = frozenset({"GET", "HEAD"})


def map_transport_error(exc: BaseException) -> errors.TransportError:
    for kind in type(exc).__mro__:
        if kind in SOCKET_ERRORS:
            cls, message = SOCKET_ERRORS[kind]
            return cls(message, str(exc))
    return errors.TransportError("Unexpected client error.", type(exc).__name__)


class _Pool:
    """Idle keep-alive connections to one origin, at most `size` kept; a new one is opened when none is idle."""

    def __init__(self, core: ClientCore, ssl_context: ssl.SSLContext | None, size: int) -> None:
        self._core = core
        self._ssl = ssl_context
        self._size = size
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._closed = False

    def acquire(self) -> tuple[http.client.HTTPConnection, bool]:
        """A connection, and whether it was used before."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the client is closed")
            while self._idle:
                conn = self._idle.pop()
                if not _dropped(conn):
                    return conn, True
                conn.close()
        if self._core.scheme == "https":
            context = self._ssl or ssl.create_default_context()
            return http.client.HTTPSConnection(
                self._core.host, self._core.port, timeout=self._core.timeout, context=context
            ), False
        return http.client.HTTPConnection(self._core.host, self._core.port, timeout=self._core.timeout), False

    def release(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self._size:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """An idle connection with something to read has been closed (or spoiled) by the server."""
    if conn.sock is None:
        return True
    try:
        readable, _, _ = select.select([conn.sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class Client:
    """Each method is one REST call; every non-success answer raises a `UserSecretsError`.

    `url` and `token` default to $USERSECRETS_URL and $USERSECRETS_TOKEN. `timeout` bounds connecting and
    each read from the socket.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int = 10,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._core = ClientCore(url, token, timeout=timeout, environ=environ)
        self._pool = _Pool(self._core, ssl_context, max_connections)

    def __repr__(self) -> str:
        return f"Client(url={self._core.url!r})"

    @property
    def url(self) -> str:
        return self._core.url

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._pool.close()

    def _send(self, call: Call[T]) -> T:
        status, headers, body = self._exchange(call)
        return self._core.finish(call, status, headers, body)

    def _exchange(self, call: Call[T]) -> tuple[int, Mapping[str, str], bytes]:
        conn, reused = self._pool.acquire()
        try:
            try:
                conn.request(call.method, call.path, body=call.body, headers=dict(call.headers))
                response = conn.getresponse()
                body = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                if not (reused and call.method in IDEMPOTENT):
                    raise
                conn.close()
                conn, reused = self._pool.acquire()
                conn.request(call.method, call.path, body=call.body, headers=dict(call.headers))
                response = conn.getresponse()
                body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise map_transport_error(exc) from exc
        except BaseException:
            conn.close()
            raise
        if response.will_close:
            conn.close()
        else:
            self._pool.release(conn)
        return response.status, response.headers, body

    def create_user_secret(self, user: str, request: CreateUserSecretRequest) -> UserSecret:
        return self._send(self._core.create_user_secret(user, request))

    def user_secrets(self, user: str) -> list[UserSecret]:
        return self._send(self._core.user_secrets(user))

    def user_secret_by_name(self, user: str, name: str) -> UserSecret:
        return self._send(self._core.user_secret_by_name(user, name))

    def update_user_secret(self, user: str, name: str, request: UpdateUserSecretRequest) -> UserSecret:
        return self._send(self._core.update_user_secret(user, name, request))

    def delete_user_secret(self, user: str, name: str) -> None:
        self._send(self._core.delete_user_secret(user, name))
