import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor
HTTP_SUCCESS_STATUS_FIELD_NUMBER: _ClassVar[int]
http_success_status: _descriptor.FieldDescriptor

class UserSecret(_message.Message):
    __slots__ = ("id", "name", "description", "env_name", "file_path", "created_at", "updated_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ENV_NAME_FIELD_NUMBER: _ClassVar[int]
    FILE_PATH_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    description: str
    env_name: str
    file_path: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., env_name: _Optional[str] = ..., file_path: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateUserSecretRequest(_message.Message):
    __slots__ = ("user", "name", "value", "description", "env_name", "file_path")
    USER_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ENV_NAME_FIELD_NUMBER: _ClassVar[int]
    FILE_PATH_FIELD_NUMBER: _ClassVar[int]
    user: str
    name: str
    value: str
    description: str
    env_name: str
    file_path: str
    def __init__(self, user: _Optional[str] = ..., name: _Optional[str] = ..., value: _Optional[str] = ..., description: _Optional[str] = ..., env_name: _Optional[str] = ..., file_path: _Optional[str] = ...) -> None: ...

class ListUserSecretsRequest(_message.Message):
    __slots__ = ("user",)
    USER_FIELD_NUMBER: _ClassVar[int]
    user: str
    def __init__(self, user: _Optional[str] = ...) -> None: ...

class ListUserSecretsResponse(_message.Message):
    __slots__ = ("secrets",)
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    secrets: _containers.RepeatedCompositeFieldContainer[UserSecret]
    def __init__(self, secrets: _Optional[_Iterable[_Union[UserSecret, _Mapping]]] = ...) -> None: ...

class GetUserSecretRequest(_message.Message):
    __slots__ = ("user", "name")
    USER_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    user: str
    name: str
    def __init__(self, user: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class UpdateUserSecretRequest(_message.Message):
    __slots__ = ("user", "name", "value", "description", "env_name", "file_path")
    USER_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ENV_NAME_FIELD_NUMBER: _ClassVar[int]
    FILE_PATH_FIELD_NUMBER: _ClassVar[int]
    user: str
    name: str
    value: str
    description: str
    env_name: str
    file_path: str
    def __init__(self, user: _Optional[str] = ..., name: _Optional[str] = ..., value: _Optional[str] = ..., description: _Optional[str] = ..., env_name: _Optional[str] = ..., file_path: _Optional[str] = ...) -> None: ...

class DeleteUserSecretRequest(_message.Message):
    __slots__ = ("user", "name")
    USER_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    user: str
    name: str
    def __init__(self, user: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class ListUserSecretValuesRequest(_message.Message):
    __slots__ = ("user",)
    USER_FIELD_NUMBER: _ClassVar[int]
    user: str
    def __init__(self, user: _Optional[str] = ...) -> None: ...

class UserSecretValue(_message.Message):
    __slots__ = ("secret", "value")
    SECRET_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    secret: UserSecret
    value: str
    def __init__(self, secret: _Optional[_Union[UserSecret, _Mapping]] = ..., value: _Optional[str] = ...) -> None: ...

class ListUserSecretValuesResponse(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedCompositeFieldContainer[UserSecretValue]
    def __init__(self, values: _Optional[_Iterable[_Union[UserSecretValue, _Mapping]]] = ...) -> None: ...
