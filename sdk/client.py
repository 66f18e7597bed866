"""The asynchronous client, on aiohttp: one session (one connection pool) per client.

    async with AsyncClient("http://127.0.0.1:8080", token) as client:
        secret = await client.create_user_secret("me", CreateUserSecretRequest("github", value))

aiohttp's exceptions are mapped to the SDK's error tree here, at the one place they can arise.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from types import TracebackType
from typing import TypeVar

import aiohttp
from yarl import URL

from usersecrets.sdk import errors
from usersecrets.sdk._core import DEFAULT_TIMEOUT, Call, ClientCore
from usersecrets.sdk.models import CreateUserSecretRequest, UpdateUserSecretRequest, UserSecret

T = TypeVar("T")

# Most specific first is not needed: the lookup walks the raised type's MRO and takes the first hit.
AIOHTTP_ERRORS: dict[type[BaseException], tuple[type[errors.TransportError], str]] = {
    TimeoutError: (errors.RequestTimeoutError, "Timed out waiting for the server."),
    aiohttp.ServerTimeoutError: (errors.RequestTimeoutError, "Timed out waiting for the server."),
    aiohttp.ClientSSLError: (errors.TransportError, "TLS with the server failed."),
    aiohttp.ServerFingerprintMismatch: (errors.TransportError, "The server's certificate fingerprint differs."),
    aiohttp.ClientConnectorDNSError: (errors.TransportError, "Cannot resolve the server's host name."),
    aiohttp.ClientProxyConnectionError: (errors.TransportError, "Cannot connect to the proxy."),
    aiohttp.ClientConnectorError: (errors.TransportError, "Cannot connect to the server."),
    aiohttp.ServerDisconnectedError: (errors.TransportError, "The server closed the connection."),
    aiohttp.ClientConnectionResetError: (errors.TransportError, "The connection was reset."),
    aiohttp.ClientOSError: (errors.TransportError, "Network error talking to the server."),
    aiohttp.ClientConnectionError: (errors.TransportError, "Connection to the server failed."),
    aiohttp.ClientPayloadError: (errors.TransportError, "The server's answer was cut short or malformed."),
    aiohttp.ClientResponseError: (errors.TransportError, "The server's answer could not be read."),
    aiohttp.InvalidURL: (errors.TransportError, "The URL is not valid."),
    aiohttp.NonHttpUrlClientError: (errors.TransportError, "The URL is not an http(s) URL."),
    aiohttp.RedirectClientError: (errors.TransportError, "The server redirected to an unusable URL."),
    aiohttp.UploadAbortedError: (errors.TransportError, "The request body upload was aborted."),
    OSError: (errors.TransportError, "Network error talking to the server."),
}


def map_transport_error(exc: BaseException) -> errors.TransportError:
    for kind in type(exc).__mro__:
        if kind in AIOHTTP_ERRORS:
            cls, message = AIOHTTP_ERRORS[kind]
            return cls(message, str(exc))
    return errors.TransportError("Unexpected client error.", type(exc).__name__)


class AsyncClient:
    """Each method is one REST call; every non-success answer raises a `UserSecretsError`.

    `url` and `token` default to $USERSECRETS_URL and $USERSECRETS_TOKEN. `timeout` bounds each whole call.
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
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"AsyncClient(url={self._core.url!r})"

    @property
    def url(self) -> str:
        return self._core.url

    async def __aenter__(self) -> AsyncClient:
        self._open()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _open(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("the client is closed")
        # Built lazily: an aiohttp session belongs to the event loop that is running when it is made.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections, ssl=self._ssl),
                timeout=aiohttp.ClientTimeout(total=self._core.timeout),
            )
        return self._session

    async def _send(self, call: Call[T]) -> T:
        session = self._open()
        url = URL(self._core.url, encoded=True).with_path(call.path, encoded=True)
        try:
            # Redirects are not followed: the token header would go wherever the Location points.
            async with session.request(
                call.method, url, data=call.body, headers=call.headers, allow_redirects=False
            ) as response:
                body = await response.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise map_transport_error(exc) from exc
        return self._core.finish(call, response.status, response.headers, body)

    async def create_user_secret(self, user: str, request: CreateUserSecretRequest) -> UserSecret:
        return await self._send(self._core.create_user_secret(user, request))

    async def user_secrets(self, user: str) -> list[UserSecret]:
        return await self._send(self._core.user_secrets(user))

    async def user_secret_by_name(self, user: str, name: str) -> UserSecret:
        return await self._send(self._core.user_secret_by_name(user, name))

    async def update_user_secret(self, user: str, name: str, request: UpdateUserSecretRequest) -> UserSecret:
        return await self._send(self._core.update_user_secret(user, name, request))

    async def delete_user_secret(self, user: str, name: str) -> None:
        await self._send(self._core.delete_user_secret(user, name))
