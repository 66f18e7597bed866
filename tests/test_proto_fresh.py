"""The committed generated code must match protos/: a stale *_pb2.py fails CI (run `make proto`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import google.api
import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor

from usersecrets.v1 import relay_pb2, usersecrets_pb2


def _without_json_names(file: descriptor_pb2.FileDescriptorProto) -> descriptor_pb2.FileDescriptorProto:
    """protoc fills json_name in descriptor sets but not in generated code; it carries no information here."""
    for field in file.extension:
        field.ClearField("json_name")
    stack = list(file.message_type)
    while stack:
        message = stack.pop()
        stack.extend(message.nested_type)
        for field in (*message.field, *message.extension):
            field.ClearField("json_name")
    return file


ROOT = Path(__file__).resolve().parent.parent
GENERATED = {
    "usersecrets/v1/usersecrets.proto": usersecrets_pb2.DESCRIPTOR,
    "usersecrets/v1/relay.proto": relay_pb2.DESCRIPTOR,
}


@pytest.mark.parametrize("proto", sorted(GENERATED))
def test_generated_descriptor_matches_proto_source(tmp_path: Path, proto: str) -> None:
    generated: FileDescriptor = GENERATED[proto]
    include = Path(google.api.__path__[0]).parent.parent
    out = tmp_path / "set.pb"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{ROOT / 'protos'}",
            f"-I{include}",
            f"--descriptor_set_out={out}",
            proto,
        ],
        check=True,
        cwd=ROOT,
        env=dict(os.environ),
    )
    fresh = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]
    committed = descriptor_pb2.FileDescriptorProto.FromString(generated.serialized_pb)
    stale = "protos/usersecrets/v1/*_pb2.py is stale: run `make proto` and commit"
    assert _without_json_names(fresh) == _without_json_names(committed), stale


@pytest.mark.parametrize("proto", sorted(GENERATED))
def test_generated_stub_lists_every_rpc(proto: str) -> None:
    grpc_source = (ROOT / "protos" / proto.replace(".proto", "_pb2_grpc.py")).read_text()
    services = GENERATED[proto].services_by_name.values()
    assert services
    for service in services:
        for method in service.methods:
            assert f"/{service.full_name}/{method.name}" in grpc_source, method.name
