"""deploy/: the Kubernetes manifests and the Dockerfile agree with what the programs read (issue 7).

The manifests are parsed with PyYAML; ports, probes and environment variable names are checked against
server/config.py `_ENV` and gateway/config.py `ENV`. The probes are then sent to a real server and a real
gateway configured from the manifests' own environment. The Dockerfile cannot be built here (no container
engine), so its text is checked for the properties the issue names.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.gateway_stack import running_gateway
from tests.support.stack import running_server
from usersecrets.gateway import config as gateway_config
from usersecrets.server import config as server_config

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
SECRET_ONLY = {"USERSECRETS_ENCRYPTION_KEYS", "USERSECRETS_REDIS_URL"}  # never a literal in a manifest


def _documents() -> list[dict[str, Any]]:
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    return [doc for name in listed for doc in yaml.safe_load_all((K8S / name).read_text()) if doc]


DOCS = _documents()


def _one(kind: str, name: str) -> dict[str, Any]:
    found = [d for d in DOCS if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def _container(deployment: str) -> dict[str, Any]:
    containers = _one("Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def _literal_env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def _port(container: dict[str, Any], name_or_number: str | int) -> int:
    for port in container["ports"]:
        if name_or_number in (port["name"], port["containerPort"]):
            return port["containerPort"]
    raise AssertionError(f"{container['name']} has no port {name_or_number!r}")


def _listen_port(address: str) -> int:
    return int(address.rpartition(":")[2])


SERVER = _container("usersecrets-server")
GATEWAY = _container("usersecrets-gateway")
PROGRAMS = [
    pytest.param(SERVER, set(server_config._ENV.values()), id="server"),
    pytest.param(GATEWAY, set(gateway_config.ENV.values()), id="gateway"),
]


@pytest.mark.parametrize(("container", "known"), PROGRAMS)
def test_every_environment_variable_is_one_the_program_reads(container: dict[str, Any], known: set[str]) -> None:
    names = [e["name"] for e in container["env"]]
    assert len(names) == len(set(names)), names
    assert set(names) <= known, f"not read by the program: {sorted(set(names) - known)}"


def test_literal_values_parse_as_the_programs_do() -> None:
    server = server_config.load([], environ=_literal_env(SERVER))
    gateway = gateway_config.load([], environ=_literal_env(GATEWAY))
    assert (server.redis_wait_replicas, server.redis_wait_timeout_ms) == (1, 500)
    assert gateway.host_port == ("0.0.0.0", 8080)


def test_keys_and_redis_url_come_from_the_secret() -> None:
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in SERVER["env"] if "valueFrom" in e}
    assert refs == {
        "USERSECRETS_ENCRYPTION_KEYS": {"name": "usersecrets", "key": "encryption-keys"},
        "USERSECRETS_REDIS_URL": {"name": "usersecrets", "key": "redis-url"},
    }
    for container in (SERVER, GATEWAY):
        assert not SECRET_ONLY & set(_literal_env(container))


def test_server_ports_and_grpc_probes() -> None:
    env = _literal_env(SERVER)
    grpc_port = _listen_port(env["USERSECRETS_GRPC_LISTEN"])
    assert _port(SERVER, "grpc") == grpc_port
    assert _port(SERVER, "metrics") == _listen_port(env["USERSECRETS_METRICS_LISTEN"])
    readiness, liveness = SERVER["readinessProbe"]["grpc"], SERVER["livenessProbe"]["grpc"]
    assert (readiness["port"], liveness["port"]) == (grpc_port, grpc_port)
    assert readiness["service"] == "usersecrets.v1.UserSecretsService"
    assert liveness.get("service", "") == ""
    annotations = _one("Deployment", "usersecrets-server")["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == _port(SERVER, "metrics")


def test_gateway_ports_probes_and_target() -> None:
    env = _literal_env(GATEWAY)
    http_port = _listen_port(env["USERSECRETS_HTTP_LISTEN"])
    assert _port(GATEWAY, "http") == http_port
    for probe in ("readinessProbe", "livenessProbe"):
        assert _port(GATEWAY, GATEWAY[probe]["httpGet"]["port"]) == http_port, probe
    assert GATEWAY["readinessProbe"]["httpGet"]["path"] == "/healthz"
    # The gateway reaches the server through its Service, on the port the server listens on.
    host, _, port = env["USERSECRETS_GRPC_TARGET"].rpartition(":")
    service = _one("Service", host)
    (service_port,) = [p for p in service["spec"]["ports"] if p["port"] == int(port)]
    assert service_port["appProtocol"] == "grpc"
    assert _port(SERVER, service_port["targetPort"]) == _listen_port(_literal_env(SERVER)["USERSECRETS_GRPC_LISTEN"])


def _pod_labels(deployment: str) -> dict[str, str]:
    return _one("Deployment", deployment)["spec"]["template"]["metadata"]["labels"]


SERVICES = [
    ("usersecrets-server", "usersecrets-server", "grpc"),
    ("usersecrets-server-headless", "usersecrets-server", "grpc"),
    ("usersecrets-gateway", "usersecrets-gateway", "http"),
]


@pytest.mark.parametrize(("service", "deployment", "protocol"), SERVICES, ids=[s[0] for s in SERVICES])
def test_services_select_their_pods_with_an_app_protocol(service: str, deployment: str, protocol: str) -> None:
    spec = _one("Service", service)["spec"]
    labels = _pod_labels(deployment)
    assert spec["selector"].items() <= labels.items()
    assert _one("Deployment", deployment)["spec"]["selector"]["matchLabels"].items() <= labels.items()
    container = _container(deployment)
    for port in spec["ports"]:
        assert port["appProtocol"] == protocol
        _port(container, port["targetPort"])  # exists


@pytest.mark.parametrize("deployment", ["usersecrets-server", "usersecrets-gateway"])
def test_disruption_budget_resources_and_security(deployment: str) -> None:
    spec = _one("Deployment", deployment)["spec"]
    pdb = _one("PodDisruptionBudget", deployment)["spec"]
    assert pdb["selector"]["matchLabels"].items() <= _pod_labels(deployment).items()
    assert pdb["maxUnavailable"] < spec["replicas"]
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    for kind in ("requests", "limits"):
        assert set(container["resources"][kind]) == {"cpu", "memory"}, kind
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == _dockerfile_user()
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["automountServiceAccountToken"] is False
    assert _one("ServiceAccount", pod["serviceAccountName"])
    grace = float(_literal_env(container)["USERSECRETS_SHUTDOWN_GRACE"])
    pre_stop = float(container["lifecycle"]["preStop"]["exec"]["command"][1])
    assert pod["terminationGracePeriodSeconds"] > grace + pre_stop
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert container["command"][0] in scripts


# ---- the probes against real processes configured from the manifests ----------------------------------------


async def test_server_answers_its_probes(redis_url: str) -> None:
    async with running_server(redis_url) as stack, grpc.aio.insecure_channel(stack.grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for probe in ("readinessProbe", "livenessProbe"):
            service = SERVER[probe]["grpc"].get("service", "")
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, probe


async def test_gateway_serves_its_probe_paths() -> None:
    # No server behind it: readiness must say 503 (not 404), liveness must still say 200.
    async with running_gateway("127.0.0.1:1", health_timeout_seconds=0.5) as gateway, aiohttp.ClientSession() as http:
        expected = {"readinessProbe": 503, "livenessProbe": 200}
        for probe, status in expected.items():
            async with http.get(gateway.url + GATEWAY[probe]["httpGet"]["path"]) as reply:
                assert reply.status == status, probe


# ---- the Dockerfile -----------------------------------------------------------------------------------------


def _stages() -> Iterator[tuple[str, str]]:
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    for block in re.split(r"(?m)^(?=FROM )", text)[1:]:
        yield block.split()[3] if " AS " in block.splitlines()[0] else "", block


def _dockerfile_user() -> int:
    *_, (_, runtime) = _stages()
    (user,) = re.findall(r"(?m)^USER (\d+):(\d+)$", runtime)
    return int(user[0])


def test_dockerfile_is_multi_stage_non_root_without_build_tools() -> None:
    stages = dict(_stages())
    assert list(stages) == ["build", "runtime"]
    runtime = stages["runtime"]
    assert _dockerfile_user() != 0
    assert "COPY --from=build /opt/usersecrets /opt/usersecrets" in runtime
    for tool in ("build-essential", "gcc", "apt-get install", "pip install"):
        assert tool not in runtime, tool
    assert "pip uninstall -y pip" in runtime and "pip uninstall -y pip" in stages["build"]
    (cmd,) = re.findall(r'(?m)^CMD \["([^"]+)"\]$', runtime)
    assert cmd in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for port in (_port(SERVER, "grpc"), _port(GATEWAY, "http"), _port(SERVER, "metrics")):
        assert re.search(rf"(?m)^EXPOSE .*\b{port}\b", runtime), port
