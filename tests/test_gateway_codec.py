"""JSON <-> proto: our messages exactly as the contract shows them, and every proto field type generically."""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, duration_pb2, timestamp_pb2
from google.protobuf.message_factory import GetMessageClass

from usersecrets.gateway.binding import Binding, parse_json_object
from usersecrets.gateway.codec import CodecError, Codecs, format_timestamp
from usersecrets.v1 import usersecrets_pb2 as pb

SECRET_KEYS = ["id", "name", "description", "env_name", "file_path", "created_at", "updated_at"]


def secret(**fields: Any) -> pb.UserSecret:
    message = pb.UserSecret(**fields)
    message.created_at.FromMicroseconds(1767323045123456)  # 2026-01-02T03:04:05.123456Z
    message.updated_at.FromMicroseconds(1767323045654321)
    return message


def test_user_secret_every_key_even_empty() -> None:
    got = Codecs().get(pb.UserSecret.DESCRIPTOR).encode(secret(id="u-1", name="k"))
    assert got == {
        "id": "u-1",
        "name": "k",
        "description": "",
        "env_name": "",
        "file_path": "",
        "created_at": "2026-01-02T03:04:05.123456Z",
        "updated_at": "2026-01-02T03:04:05.654321Z",
    }
    assert list(got) == SECRET_KEYS


def test_user_secret_unset_timestamp_is_null_but_present() -> None:
    got = Codecs().get(pb.UserSecret.DESCRIPTOR).encode(pb.UserSecret())
    assert (got["created_at"], got["updated_at"]) == (None, None)


def test_list_response_body_is_the_array() -> None:
    codec = Codecs().get(pb.ListUserSecretsResponse.DESCRIPTOR)
    encode = codec.field_encoder("secrets")
    assert encode(pb.ListUserSecretsResponse()) == []
    two = pb.ListUserSecretsResponse(secrets=[secret(name="a"), secret(name="b")])
    assert [s["name"] for s in encode(two)] == ["a", "b"]
    assert list(encode(two)[0]) == SECRET_KEYS
    assert codec.encode(two) == {"secrets": encode(two)}


def test_value_message_round_trip() -> None:
    codec = Codecs().get(pb.UserSecretValue.DESCRIPTOR)
    got = codec.encode(pb.UserSecretValue(secret=secret(name="a"), value="v"))
    assert got["value"] == "v" and got["secret"]["name"] == "a"


@pytest.mark.parametrize(
    ("seconds", "nanos", "want"),
    [
        (0, 0, "1970-01-01T00:00:00.000000Z"),
        (1767323045, 123456789, "2026-01-02T03:04:05.123456Z"),  # nanos truncated, not rounded
        (1767323045, 999, "2026-01-02T03:04:05.000000Z"),
        (-1, 0, "1969-12-31T23:59:59.000000Z"),
        (-62135596800, 0, "0001-01-01T00:00:00.000000Z"),
        (253402300799, 999999999, "9999-12-31T23:59:59.999999Z"),
        (951782400, 0, "2000-02-29T00:00:00.000000Z"),
    ],
)
def test_format_timestamp(seconds: int, nanos: int, want: str) -> None:
    assert format_timestamp(timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)) == want


# ---- decoding our request messages ---------------------------------------------------------------------


def create_binding() -> Binding:
    return Binding.compile(Codecs(), pb.CreateUserSecretRequest.DESCRIPTOR, ["user"], "*")


def update_binding() -> Binding:
    return Binding.compile(Codecs(), pb.UpdateUserSecretRequest.DESCRIPTOR, ["user", "name"], "*")


def test_create_every_field_and_path_wins() -> None:
    body = {
        "user": "someone-else",
        "name": "k",
        "value": "v",
        "description": "d",
        "env_name": "E",
        "file_path": "~/f",
        "unknown": {"nested": [1, 2]},
        "createdAt": 5,
    }
    got = create_binding().build(json.dumps(body).encode(), {"user": "me"}, [])
    assert got == pb.CreateUserSecretRequest(
        user="me", name="k", value="v", description="d", env_name="E", file_path="~/f"
    )


def test_null_is_absent() -> None:
    got = create_binding().build(b'{"name": "k", "description": null}', {"user": "me"}, [])
    assert got == pb.CreateUserSecretRequest(user="me", name="k")


PATCH_CASES = [
    ("absent stays unset", {"description": "d"}, {"description"}),
    ("empty string is present", {"value": "", "env_name": ""}, {"value", "env_name"}),
    (
        "all four",
        {"value": "v", "description": "", "env_name": "", "file_path": ""},
        {"value", "description", "env_name", "file_path"},
    ),
    ("name in body is ignored", {"name": "renamed"}, set()),
    ("wrong-typed name in body is ignored too", {"name": 5, "value": "v"}, {"value"}),
    ("null is absent", {"value": None}, set()),
]


@pytest.mark.parametrize(("body", "present"), [c[1:] for c in PATCH_CASES], ids=[c[0] for c in PATCH_CASES])
def test_patch_presence(body: dict[str, Any], present: set[str]) -> None:
    got = update_binding().build(json.dumps(body).encode(), {"user": "me", "name": "k"}, [])
    assert got.name == "k" and got.user == "me"
    have = {f for f in ("value", "description", "env_name", "file_path") if got.HasField(f)}
    assert have == present, f"{body} -> present {have}; want {present}"
    for field in present:
        assert getattr(got, field) == body[field]


WRONG_TYPES = [
    ("number", {"name": 1}, 'field "name" must be a string, not number'),
    ("float", {"value": 1.5}, 'field "value" must be a string, not number'),
    ("boolean", {"description": True}, 'field "description" must be a string, not boolean'),
    ("array", {"env_name": ["A"]}, 'field "env_name" must be a string, not array'),
    ("object", {"file_path": {}}, 'field "file_path" must be a string, not object'),
    ("lone surrogate", {"name": "\ud800"}, 'field "name" is not valid Unicode'),
]


@pytest.mark.parametrize(("body", "detail"), [c[1:] for c in WRONG_TYPES], ids=[c[0] for c in WRONG_TYPES])
def test_wrong_types(body: dict[str, Any], detail: str) -> None:
    with pytest.raises(CodecError) as info:
        create_binding().build(json.dumps(body).encode(), {"user": "me"}, [])
    assert info.value.detail == detail


NOT_OBJECTS = [
    ("array", b"[]", "the request body must be a JSON object, not array"),
    ("string", b'"x"', "the request body must be a JSON object, not string"),
    ("number", b"12", "the request body must be a JSON object, not number"),
    ("true", b"true", "the request body must be a JSON object, not boolean"),
    ("null", b"null", "the request body must be a JSON object, not null"),
    ("empty", b"", "the request body is empty"),
    ("blank", b"  \n", "the request body is empty"),
    ("truncated", b'{"name": ', "invalid JSON: Expecting value at line 1 column 10"),
    ("trailing garbage", b"{} x", "invalid JSON: Extra data at line 1 column 4"),
    ("not utf8", b'{"name": "\xff"}', "the request body is not UTF-8"),
    ("too deep", b"[" * 100_000 + b"]" * 100_000, "invalid JSON"),
]


@pytest.mark.parametrize(("raw", "detail"), [c[1:] for c in NOT_OBJECTS], ids=[c[0] for c in NOT_OBJECTS])
def test_not_an_object(raw: bytes, detail: str) -> None:
    with pytest.raises(CodecError) as info:
        parse_json_object(raw)
    assert info.value.detail == detail


def test_error_detail_never_quotes_the_value() -> None:
    with pytest.raises(CodecError) as info:
        create_binding().build(b'{"value": ["hunter2-secret"]}', {"user": "me"}, [])
    assert "hunter2" not in str(info.value)


# ---- every proto field type, through a message built for the test -------------------------------------


def _all_types_class() -> type:
    f = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="codec_test.proto",
        package="codectest",
        syntax="proto3",
        dependency=["google/protobuf/timestamp.proto", "google/protobuf/duration.proto"],
    )
    file.enum_type.add(name="Color").value.extend(
        [descriptor_pb2.EnumValueDescriptorProto(name=n, number=i) for i, n in enumerate(["UNSET", "RED"])]
    )
    msg = file.message_type.add(name="All")
    entry = msg.nested_type.add(name="TagsEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=f.TYPE_STRING, label=f.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=f.TYPE_INT32, label=f.LABEL_OPTIONAL)
    fields = [
        ("s", f.TYPE_STRING, None, f.LABEL_OPTIONAL),
        ("b", f.TYPE_BOOL, None, f.LABEL_OPTIONAL),
        ("i32", f.TYPE_INT32, None, f.LABEL_OPTIONAL),
        ("u32", f.TYPE_UINT32, None, f.LABEL_OPTIONAL),
        ("i64", f.TYPE_INT64, None, f.LABEL_OPTIONAL),
        ("u64", f.TYPE_UINT64, None, f.LABEL_OPTIONAL),
        ("d", f.TYPE_DOUBLE, None, f.LABEL_OPTIONAL),
        ("raw", f.TYPE_BYTES, None, f.LABEL_OPTIONAL),
        ("color", f.TYPE_ENUM, ".codectest.Color", f.LABEL_OPTIONAL),
        ("at", f.TYPE_MESSAGE, ".google.protobuf.Timestamp", f.LABEL_OPTIONAL),
        ("wait", f.TYPE_MESSAGE, ".google.protobuf.Duration", f.LABEL_OPTIONAL),
        ("child", f.TYPE_MESSAGE, ".codectest.All", f.LABEL_OPTIONAL),
        ("names", f.TYPE_STRING, None, f.LABEL_REPEATED),
        ("children", f.TYPE_MESSAGE, ".codectest.All", f.LABEL_REPEATED),
        ("tags", f.TYPE_MESSAGE, ".codectest.All.TagsEntry", f.LABEL_REPEATED),
        ("from", f.TYPE_STRING, None, f.LABEL_OPTIONAL),  # a Python keyword
    ]
    for number, (name, kind, type_name, label) in enumerate(fields, start=1):
        field = msg.field.add(name=name, number=number, type=kind, label=label)
        if type_name:
            field.type_name = type_name
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    pool.AddSerializedFile(duration_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(file)
    return GetMessageClass(pool.FindMessageTypeByName("codectest.All"))


ALL = _all_types_class()
FULL_JSON = {
    "s": "x",
    "b": True,
    "i32": -5,
    "u32": 7,
    "i64": "-9007199254740993",
    "u64": "18446744073709551615",
    "d": 1.5,
    "raw": "AAEC",
    "color": "RED",
    "at": "2026-01-02T03:04:05.123456Z",
    "wait": "1.500s",
    "child": {"s": "inner"},
    "names": ["a", "b"],
    "children": [{"i32": 1}],
    "tags": {"k": 3},
    "from": "kw",
}


def test_all_types_round_trip() -> None:
    codec = Codecs().get(ALL.DESCRIPTOR)
    message = codec.decode(FULL_JSON)
    assert message.raw == b"\x00\x01\x02" and message.i64 == -9007199254740993 and message.color == 1
    encoded = codec.encode(message)
    assert set(encoded) == set(FULL_JSON)
    for key in ("s", "b", "i32", "u32", "i64", "u64", "d", "raw", "color", "at", "wait", "names", "tags", "from"):
        assert encoded[key] == FULL_JSON[key], key
    assert encoded["child"]["s"] == "inner" and encoded["child"]["child"] is None
    assert encoded["children"][0]["i32"] == 1


def test_all_types_empty_message_has_every_key() -> None:
    encoded = Codecs().get(ALL.DESCRIPTOR).encode(ALL())
    assert encoded["s"] == "" and encoded["i64"] == "0" and encoded["color"] == "UNSET"
    assert encoded["names"] == [] and encoded["tags"] == {} and encoded["at"] is None


def test_all_types_lenient_inputs() -> None:
    codec = Codecs().get(ALL.DESCRIPTOR)
    message = codec.decode({"i32": "12", "i64": 3, "d": "NaN", "color": 1, "raw": "AAE", "u32": 2.0})
    assert (message.i32, message.i64, message.color, message.raw, message.u32) == (12, 3, 1, b"\x00\x01", 2)
    assert codec.encode(message)["d"] == "NaN"


ALL_WRONG = [
    ("bool from number", {"b": 1}, 'field "b" must be a boolean, not number'),
    ("int from bool", {"i32": True}, 'field "i32" must be an integer, not boolean'),
    ("int fraction", {"i32": 1.5}, 'field "i32" must be an integer in [-2147483648, 2147483647]'),
    ("int32 overflow", {"i32": 2**31}, 'field "i32" must be an integer in [-2147483648, 2147483647]'),
    ("uint negative", {"u32": -1}, 'field "u32" must be an integer in [0, 4294967295]'),
    ("int from text", {"i64": "ten"}, 'field "i64" must be an integer in [-9223372036854775808, 9223372036854775807]'),
    ("double from string", {"d": "1.5"}, 'field "d" must be a number, not string'),
    ("bytes not base64", {"raw": "***"}, 'field "raw" must be a base64 string'),
    ("enum unknown", {"color": "BLUE"}, "field \"color\" must be one of ['RED', 'UNSET']"),
    ("timestamp number", {"at": 5}, 'field "at" must be an RFC 3339 timestamp, not number'),
    ("timestamp text", {"at": "yesterday"}, 'field "at" must be an RFC 3339 timestamp'),
    ("duration text", {"wait": "soon"}, 'field "wait" must be a duration like "1.5s"'),
    ("child not object", {"child": []}, 'field "child" must be an object, not array'),
    ("nested wrong", {"child": {"child": {"s": 1}}}, 'field "child.child.s" must be a string, not number'),
    ("list not array", {"names": "a"}, 'field "names" must be an array, not string'),
    ("list item wrong", {"names": ["a", 2]}, 'field "names[1]" must be a string, not number'),
    ("map not object", {"tags": []}, 'field "tags" must be an object, not array'),
    ("map value wrong", {"tags": {"k": "x"}}, 'field "tags.k" must be an integer in [-2147483648, 2147483647]'),
]


@pytest.mark.parametrize(("body", "detail"), [c[1:] for c in ALL_WRONG], ids=[c[0] for c in ALL_WRONG])
def test_all_types_wrong(body: dict[str, Any], detail: str) -> None:
    with pytest.raises(CodecError) as info:
        Codecs().get(ALL.DESCRIPTOR).decode(body)
    assert info.value.detail == detail


def test_query_parameters_bind_scalars() -> None:
    binding = Binding.compile(Codecs(), ALL.DESCRIPTOR, ["s"], "")
    query = [("i32", "4"), ("b", "true"), ("names", "x"), ("names", "y"), ("child.s", "c"), ("nope", "1"), ("s", "q")]
    got = binding.build(None, {"s": "path"}, query)
    assert (got.s, got.i32, got.b, list(got.names), got.child.s) == ("path", 4, True, ["x", "y"], "c")


def test_body_field_binding() -> None:
    binding = Binding.compile(Codecs(), ALL.DESCRIPTOR, ["s"], "child")
    got = binding.build(b'{"s": "inner", "i32": 2}', {"s": "outer"}, [("child.s", "ignored"), ("i32", "9")])
    assert (got.s, got.child.s, got.child.i32, got.i32) == ("outer", "inner", 2, 9)
