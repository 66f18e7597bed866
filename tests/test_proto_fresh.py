"""The committed generated code must match protos/: a stale *_pb2.py fails CI (run `make proto`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import google.api
from google.protobuf import descriptor_pb2

from usersecrets.v1 import usersecrets_pb2


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
PROTO = "usersecrets/v1/usersecrets.proto"


def test_generated_descriptor_matches_proto_source(tmp_path: Path) -> None:
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
            PROTO,
        ],
        check=True,
        cwd=ROOT,
        env=dict(os.environ),
    )
    fresh = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]
    committed = descriptor_pb2.FileDescriptorProto.FromString(usersecrets_pb2.DESCRIPTOR.serialized_pb)
    stale = "protos/usersecrets/v1/*_pb2.py is stale: run `make proto` and commit"
    assert _without_json_names(fresh) == _without_json_names(committed), stale


def test_generated_stub_lists_every_rpc() -> None:
    grpc_source = (ROOT / "protos/usersecrets/v1/usersecrets_pb2_grpc.py").read_text()
    for method in usersecrets_pb2.DESCRIPTOR.services_by_name["UserSecretsService"].methods:
        assert f"/usersecrets.v1.UserSecretsService/{method.name}" in grpc_source, method.name
