"""The admin API's OpenAPI 3.1 document, generated from the one route table in `routes`.

Every schema comes from the types the route table declares (request bodies, query models,
success records), turned into JSON Schema by one pydantic generator run over all of them, so
a name two types share is made unique once and every `$ref` points into
`components.schemas`. A path template's regex (`{action:approve|reject}`) becomes an enum
when it is a list of words, a `pattern` otherwise. `/v1/feedback`, the proxy's one
non-forwarded endpoint a client calls, is described here too: its body is
`proxy.feedback.Feedback`, its answers the two in this module.

Errors everywhere are OpenAI's shape, `{"error": {"message", "type", "code"}}` (with `param`
on the proxy's, `refused` on a bulk change the store refused); a 503 carries `Retry-After`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field, TypeAdapter

from proxy.feedback import Feedback
from proxy.routing import SKILLBOOK_HEADER
from skillproxy.admin.requests import ACTOR_HEADER, NAME_PATTERN
from store.feedback_labels import accepted_labels

if TYPE_CHECKING:
    from skillproxy.admin.routes import AdminRoute

REF = "#/components/schemas/{model}"
PARAMETER = re.compile(r"\{(\w+)(?::([^{}]+))?\}")
WORDS = re.compile(r"[\w.-]+(?:\|[\w.-]+)*")
ANY_JSON: dict[str, Any] = {}


class ErrorDetail(BaseModel):
    message: str
    type: str
    code: str | None
    param: str | None = Field(default=None, description="The request field at fault, if one.")
    refused: dict[str, str] = Field(
        default_factory=dict,
        description="A bulk change the store refused: each refused id and why.",
    )


class Error(BaseModel):
    """What every 4xx and 5xx answers."""

    error: ErrorDetail


class FeedbackRecorded(BaseModel):
    id: int
    object: Literal["feedback"]
    status: Literal["recorded"]


class FeedbackQueued(BaseModel):
    """Valid, kept, and written once the store can take it."""

    id: None
    object: Literal["feedback"]
    status: Literal["queued"]


def openapi_document(routes: Iterable[AdminRoute]) -> dict[str, Any]:
    table = list(routes)
    schemas = _Schemas()
    for index, route in enumerate(table):
        schemas.add(("body", index), "validation", route.body)
        schemas.add(("query", index), "validation", route.query)
        schemas.add(("response", index), "serialization", _answer_type(route))
    schemas.add("feedback", "validation", Feedback)
    for answer in (FeedbackRecorded, FeedbackQueued, Error):
        schemas.add(answer, "serialization", answer)
    schemas.build()

    paths: dict[str, dict[str, Any]] = {}
    operation_ids: set[str] = set()
    for index, route in enumerate(table):
        operation = _operation(route, index, schemas)
        operation["operationId"] = _unique(route.handler.__name__, operation_ids)
        paths.setdefault("/admin" + PARAMETER.sub(r"{\1}", route.path), {})[
            route.method.lower()
        ] = operation
    paths.update(_feedback_paths(schemas))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "skillproxy admin API",
            "version": "1",
            "description": (
                "Skillbooks, skills, traces and the learner under /admin, and the proxy's "
                "/v1/feedback. With admin.token set the admin API wants it as a bearer token; "
                "without one it answers only clients on loopback. A method a path does not "
                "take answers 405 with `Allow`. Not described here: `POST /otlp/v1/traces`, "
                "an OTLP/HTTP trace receiver behind the same auth, which speaks OTLP's own "
                "protocol (https://opentelemetry.io/docs/specs/otlp/#otlphttp)."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": schemas.components,
            "responses": _error_responses(schemas.ref(Error)),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "admin.token"},
                "clientKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "One of server.client_keys, when any are set.",
                },
                "clientApiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            },
        },
        "security": [{"bearer": []}],
    }


class _Schemas:
    """The JSON Schemas of many types from one generator: names unique, refs into components."""

    def __init__(self) -> None:
        self._inputs: list[tuple[Any, Literal["validation", "serialization"], TypeAdapter[Any]]]
        self._inputs = []
        self._built: dict[Any, dict[str, Any]] = {}
        self.components: dict[str, Any] = {}

    def add(self, key: Any, mode: Literal["validation", "serialization"], kind: Any) -> None:
        if kind is not None:
            self._inputs.append((key, mode, TypeAdapter(kind)))

    def build(self) -> None:
        built, defs = TypeAdapter.json_schemas(self._inputs, ref_template=REF)
        self._built = {key: schema for (key, _mode), schema in built.items()}
        self.components = dict(sorted(defs.get("$defs", {}).items()))

    def ref(self, key: Any) -> dict[str, Any] | None:
        """The schema of what was added under `key`: a `$ref` for a model, else inline."""
        return self._built.get(key)

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        ref = schema.get("$ref")
        if not isinstance(ref, str):
            return schema
        resolved: dict[str, Any] = self.components[ref.rpartition("/")[2]]
        return resolved


def _answer_type(route: AdminRoute) -> Any:
    if route.response is None or not route.listed:
        return route.response
    return list[route.response]  # type: ignore[name-defined]  # a type made at run time


def _operation(route: AdminRoute, index: int, schemas: _Schemas) -> dict[str, Any]:
    parameters = [_path_parameter(name, regex) for name, regex in PARAMETER.findall(route.path)]
    query = schemas.ref(("query", index))
    if query is not None:
        parameters += _query_parameters(schemas.resolve(query))
    if route.method.upper() not in ("GET", "HEAD"):
        parameters.append(
            {
                "name": ACTOR_HEADER,
                "in": "header",
                "required": False,
                "description": "Who makes the change, as its history records it ('admin').",
                "schema": {"type": "string", "maxLength": 100},
            }
        )
    operation: dict[str, Any] = {
        "summary": route.summary,
        "tags": [route.path.strip("/").split("/")[0]],
        "parameters": parameters,
    }
    body = schemas.ref(("body", index))
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body}},
        }
    if route.body_text is not None:
        operation["requestBody"] = {
            "required": True,
            "description": "Read as it arrives; one JSON object is a file of one line.",
            "content": {
                route.body_text: {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": "object"}},
            },
        }
    answer = schemas.ref(("response", index))
    if answer is not None and route.listed:
        answer = {"type": "object", "properties": {"data": answer}, "required": ["data"]}
    success: dict[str, Any] = {"description": HTTPStatus(route.status).phrase}
    if route.status != HTTPStatus.NO_CONTENT:
        schema = ANY_JSON if answer is None else answer
        success["content"] = {"application/json": {"schema": schema}}
        if route.text is not None:
            success["content"][route.text] = {"schema": {"type": "string"}}
    operation["responses"] = {str(route.status): success, **_ERRORS}
    return operation


def _path_parameter(name: str, regex: str) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "minLength": 1}
    if name == "skillbook":
        schema["pattern"] = NAME_PATTERN
    if regex and WORDS.fullmatch(regex):
        schema = {"type": "string", "enum": regex.split("|")}
    elif regex:
        schema["pattern"] = f"^(?:{regex})$"
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _query_parameters(model: dict[str, Any]) -> list[dict[str, Any]]:
    required = set(model.get("required", ()))
    parameters = []
    for name, prop in model.get("properties", {}).items():
        schema = _not_null({k: v for k, v in prop.items() if k not in ("title", "description")})
        parameter: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": schema,
        }
        if "description" in prop:
            parameter["description"] = prop["description"]
        parameters.append(parameter)
    return parameters


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent or a value, never null: drop the model's null branch."""
    branches = schema.get("anyOf")
    if not isinstance(branches, list) or {"type": "null"} not in branches:
        return schema
    rest = [branch for branch in branches if branch != {"type": "null"}]
    trimmed = {k: v for k, v in schema.items() if k != "anyOf"}
    if trimmed.get("default", ...) is None:
        del trimmed["default"]
    return {**trimmed, **rest[0]} if len(rest) == 1 else {**trimmed, "anyOf": rest}


_ERRORS = {
    "4XX": {"$ref": "#/components/responses/Error"},
    "503": {"$ref": "#/components/responses/Unavailable"},
    "5XX": {"$ref": "#/components/responses/Error"},
}


def _error_responses(error: dict[str, Any] | None) -> dict[str, Any]:
    content = {"application/json": {"schema": error}}
    return {
        "Error": {"description": "An error in OpenAI's shape.", "content": content},
        "Unavailable": {
            "description": "The store cannot serve now: try again after `Retry-After` seconds.",
            "headers": {
                "Retry-After": {"required": True, "schema": {"type": "integer", "minimum": 1}}
            },
            "content": content,
        },
    }


def _feedback_paths(schemas: _Schemas) -> dict[str, dict[str, Any]]:
    def operation(operation_id: str, parameter: dict[str, Any]) -> dict[str, Any]:
        return {
            "post": {
                "operationId": operation_id,
                "summary": "Say how an exchange (trace_id) or a session went",
                "description": (
                    "Exactly one of trace_id (the X-Trace-Id of the answer judged) or "
                    "session_id, and a score (0..1) or a label: "
                    f"{accepted_labels()} (case does not matter, '-' or ' ' reads as '_')."
                ),
                "tags": ["feedback"],
                "security": [{}, {"clientKey": []}, {"clientApiKey": []}],
                "parameters": [parameter],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": schemas.ref("feedback")}},
                },
                "responses": {
                    "201": _json("Recorded", schemas.ref(FeedbackRecorded)),
                    "202": _json("Queued: written later", schemas.ref(FeedbackQueued)),
                    **_ERRORS,
                },
            }
        }

    skillbook = {"type": "string", "pattern": NAME_PATTERN}
    header = {"name": SKILLBOOK_HEADER, "in": "header", "required": False, "schema": skillbook}
    path = {"name": "skillbook", "in": "path", "required": True, "schema": skillbook}
    return {
        "/v1/feedback": operation("send_feedback", header),
        "/sb/{skillbook}/v1/feedback": operation("send_skillbook_feedback", path),
    }


def _json(description: str, schema: dict[str, Any] | None) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}_{n}"
    taken.add(candidate)
    return candidate
