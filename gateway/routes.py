"""REST routes read from the service descriptor's `google.api.http` rules: no handler per endpoint.

Each annotated RPC (and each of its additional_bindings) becomes one RpcRoute: the HTTP method and compiled
path pattern, how the request message is bound, how the response is rendered, and the success status from
the `usersecrets.v1.http_success_status` method option (200 when unset). RPCs without a rule get no route.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from google.api import annotations_pb2, http_pb2
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from usersecrets.gateway import httprule
from usersecrets.gateway.binding import Binding
from usersecrets.gateway.codec import Codecs
from usersecrets.gateway.pattern import Pattern
from usersecrets.v1 import usersecrets_pb2

_VERBS = ("get", "put", "post", "delete", "patch")


@dataclass(frozen=True, slots=True)
class RpcRoute:
    http_method: str
    template: httprule.Template
    pattern: Pattern
    rpc_path: str  # "/package.Service/Method", what the channel calls
    method: MethodDescriptor
    binding: Binding
    response_class: type[Message]
    encode_response: Callable[[Message], Any]
    response_body: str
    success_status: int

    @property
    def has_body(self) -> bool:
        return bool(self.binding.body)


def _rules(rule: http_pb2.HttpRule) -> Iterator[tuple[str, str, str, str]]:
    """(HTTP method, template, body, response_body) for a rule and its additional bindings."""
    pattern = rule.WhichOneof("pattern")
    if pattern == "custom":
        yield rule.custom.kind.upper(), rule.custom.path, rule.body, rule.response_body
    elif pattern in _VERBS:
        yield pattern.upper(), getattr(rule, pattern), rule.body, rule.response_body
    for extra in rule.additional_bindings:
        yield from _rules(extra)


def success_status(method: MethodDescriptor) -> int:
    return method.GetOptions().Extensions[usersecrets_pb2.http_success_status] or 200


def build_routes(service: ServiceDescriptor, codecs: Codecs) -> list[RpcRoute]:
    routes: list[RpcRoute] = []
    for method in service.methods:
        options = method.GetOptions()
        if not options.HasExtension(annotations_pb2.http):
            continue
        assert not (method.client_streaming or method.server_streaming), f"{method.full_name}: unary only"
        for http_method, source, body, response_body in _rules(options.Extensions[annotations_pb2.http]):
            template = httprule.parse(source)
            output = codecs.get(method.output_type)
            routes.append(
                RpcRoute(
                    http_method=http_method,
                    template=template,
                    pattern=Pattern.compile(template),
                    rpc_path=f"/{service.full_name}/{method.name}",
                    method=method,
                    binding=Binding.compile(codecs, method.input_type, template.field_paths, body),
                    response_class=GetMessageClass(method.output_type),
                    encode_response=output.field_encoder(response_body) if response_body else output.encode,
                    response_body=response_body,
                    success_status=success_status(method),
                )
            )
    return routes
