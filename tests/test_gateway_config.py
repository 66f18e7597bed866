"""GatewayConfig: flags win over environment, which wins over defaults; bad values are refused."""

from __future__ import annotations

import pytest

from usersecrets.gateway.config import ENV, GatewayConfig, load


def test_defaults() -> None:
    config = load([], {})
    assert config == GatewayConfig()
    assert (config.grpc_target, config.http_listen, config.max_body_bytes) == (
        "127.0.0.1:50051",
        "127.0.0.1:8080",
        1048576,
    )


def test_environment_then_flags() -> None:
    env = {
        "USERSECRETS_GRPC_TARGET": "server:1",
        "USERSECRETS_HTTP_LISTEN": "0.0.0.0:9000",
        "USERSECRETS_MAX_BODY_BYTES": "2048",
        "USERSECRETS_DEFAULT_DEADLINE": "2.5",
    }
    config = load(["--grpc-target", "flag:2"], env)
    assert (config.grpc_target, config.http_listen, config.max_body_bytes, config.default_deadline_seconds) == (
        "flag:2",
        "0.0.0.0:9000",
        2048,
        2.5,
    )
    assert config.host_port == ("0.0.0.0", 9000)


def test_every_setting_has_a_flag_and_an_env_name() -> None:
    assert all(name.startswith("USERSECRETS_") for name in ENV.values())
    assert len(set(ENV.values())) == len(ENV)


@pytest.mark.parametrize(
    "env",
    [{"USERSECRETS_MAX_BODY_BYTES": "lots"}, {"USERSECRETS_DEFAULT_DEADLINE": "soon"}],
    ids=["body cap not int", "deadline not float"],
)
def test_bad_values_exit(env: dict[str, str]) -> None:
    with pytest.raises(SystemExit):
        load([], env)


@pytest.mark.parametrize(
    "overrides",
    [
        {"max_body_bytes": 0},
        {"default_deadline_seconds": 0.0},
        {"grpc_tls_cert": "c"},
        {"grpc_tls_cert": "c", "grpc_tls_key": "k"},
    ],
    ids=["zero cap", "zero deadline", "cert without key", "client cert without ca"],
)
def test_misuse_is_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(AssertionError):
        GatewayConfig(**overrides)  # type: ignore[arg-type]


def test_ipv6_listen() -> None:
    assert GatewayConfig(http_listen="[::1]:8080").host_port == ("::1", 8080)
