from __future__ import annotations

import pytest

from usersecrets.gateway import config as gateway_config
from usersecrets.server import config as server_config
from usersecrets.server.config import ServerConfig


@pytest.mark.parametrize(
    ("argv", "environ", "expected"),
    [
        ([], {}, ServerConfig()),
        ([], {"USERSECRETS_REDIS_URL": "redis://e:1/0"}, ServerConfig(redis_url="redis://e:1/0")),
        (["--redis-url", "redis://f:2/0"], {"USERSECRETS_REDIS_URL": "redis://e:1/0"}, ServerConfig(redis_url="redis://f:2/0")),
        ([], {"USERSECRETS_RATE_LIMIT": "0", "USERSECRETS_REDIS_MAX_CONNECTIONS": "7"},
         ServerConfig(rate_limit_per_second=0.0, redis_max_connections=7)),
    ],
    ids=["defaults", "env", "flag wins", "typed"],
)  # fmt: skip
def test_server_settings(argv: list[str], environ: dict[str, str], expected: ServerConfig) -> None:
    assert server_config.load(argv, environ) == expected


@pytest.mark.parametrize("module", [server_config, gateway_config], ids=["server", "gateway"])
def test_a_bad_number_is_a_usage_error_naming_the_setting(module: object, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        module.load([], {"USERSECRETS_SHUTDOWN_GRACE": "soon"})  # type: ignore[attr-defined]
    assert exit_info.value.code == 2
    assert "--shutdown-grace-seconds / USERSECRETS_SHUTDOWN_GRACE: not a valid float" in capsys.readouterr().err
