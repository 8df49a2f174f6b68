"""The OpenAPI document at `/admin/openapi.json` (skillproxy/admin/openapi.py): valid OpenAPI
3.1, every `$ref` in it resolves, and a client that knows only the document finds the proxy
as described.

That client is property-based. For each operation it draws path parameters (mostly real ids,
made through the API first), query parameters, headers and bodies from their schemas
(`values_of`), now and then odd text or any JSON instead; sends them with httpx; and checks
every answer against what the document declares for its status: a declared status, never a
5xx, the declared media type, a body its schema accepts (OpenAPI 3.1's dialect of JSON Schema),
the declared headers. What it finds is collected over all examples and reported together, the
shortest request for each kind of finding. `KNOWN` holds what it found in code this file does
not own, each pinned by an example that fails until it is fixed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

from skillproxy.admin.openapi import openapi_document
from skillproxy.admin.routes import ROUTES
from store.feedback_labels import LABELS
from tests.harness import RunningProxy

DOCUMENT = openapi_document(ROUTES)
OPERATIONS = [(path, method.upper()) for path, item in DOCUMENT["paths"].items() for method in item]
EXAMPLES = settings(
    max_examples=80,
    deadline=None,
    derandomize=True,  # the same requests on every run
    database=None,  # nothing written into the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
SKILLBOOKS = ("support", "sales")
SESSION = "openapi-session"
RULE = "When a customer asks to return an item, verify the return window first."
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
ODD_TEXT = ("", " ", "\n", "a\n", "%", "%2F", "{x}", "é", "\x00", "-1", "1e999", "true")
QUERY_TEXT = st.sampled_from(ODD_TEXT) | st.text(max_size=20)
SEGMENT_TEXT = QUERY_TEXT.filter(lambda text: text not in ("", ".", ".."))
"""A path segment is not empty, nor a dot segment: clients and servers remove those."""
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)


# --------------------------------------------------------------------------- the document


def test_the_document_is_valid_openapi_3_1(proxy: RunningProxy) -> None:
    served = proxy.admin("GET", "/openapi.json")
    assert served.status_code == 200
    assert served.json() == DOCUMENT
    validate(served.json())  # raises, naming the part that is not OpenAPI 3.1


def test_every_ref_resolves_and_every_schema_is_json_schema() -> None:
    refs = list(_refs(DOCUMENT))
    assert refs, "the document has no $ref at all"
    assert [ref for ref in refs if _pointer(ref) is None] == []
    for schema in DOCUMENT["components"]["schemas"].values():
        OAS31Validator.check_schema(schema)  # raises, naming what is wrong


def test_every_operation_declares_its_answers() -> None:
    missing = []
    for path, method in OPERATIONS:
        operation = DOCUMENT["paths"][path][method.lower()]
        responses = operation["responses"]
        success = [code for code in responses if code.startswith("2")]
        if not success:
            missing.append(f"{method} {path}: no success response")
        for code in success:
            content = responses[code].get("content")
            if code != "204" and (not content or not content["application/json"]["schema"]):
                missing.append(f"{method} {path}: {code} declares no body schema")
        if not {"4XX", "5XX"} <= set(responses):
            missing.append(f"{method} {path}: no error responses")
        if not operation.get("operationId"):
            missing.append(f"{method} {path}: no operationId")
    assert missing == []


def test_path_regexes_become_enums_and_query_models_parameters() -> None:
    action = DOCUMENT["paths"]["/admin/skills/{skill_id}/{action}"]["post"]["parameters"]
    by_name = {p["name"]: p for p in action}
    assert set(by_name["action"]["schema"]["enum"]) >= {"approve", "reject", "archive"}
    for route in ROUTES:
        if route.query is None:
            continue
        path = "/admin" + re.sub(r"\{(\w+):[^}]+\}", r"{\1}", route.path)
        parameters = DOCUMENT["paths"][path][route.method.lower()]["parameters"]
        names = {p["name"] for p in parameters if p["in"] == "query"}
        assert names == set(route.query.model_fields), f"{route.method} {route.path}"


def test_feedback_is_described_with_its_answers() -> None:
    post = DOCUMENT["paths"]["/v1/feedback"]["post"]
    body = _inline(post["requestBody"]["content"]["application/json"]["schema"])
    assert {"trace_id", "session_id", "score", "label"} <= set(body["properties"])
    assert {"201", "202", "4XX"} <= set(post["responses"])


def test_a_method_a_path_does_not_take_answers_405_with_allow(proxy: RunningProxy) -> None:
    """For every documented admin path: a method it does not document is a 405 whose `Allow`
    names at least every method the document gives it, and whose body is the error."""
    seen = 0
    for path, item in DOCUMENT["paths"].items():
        if not path.startswith("/admin/"):
            continue
        documented = {method.upper() for method in item}
        wrong = next(m for m in ("PUT", "DELETE", "PATCH", "POST", "GET") if m not in documented)
        concrete = _concrete(path, item)
        answer = proxy.admin(wrong, concrete.removeprefix("/admin"))
        assert answer.status_code == 405, f"{wrong} {concrete}: {answer.status_code}"
        allowed = {m.strip() for m in answer.headers["Allow"].split(",")}
        assert documented <= allowed and wrong not in allowed, f"{wrong} {concrete}: {allowed}"
        assert _problems(_pointer("#/components/responses/Error"), answer) == []
        seen += 1
    assert seen > 0


# --------------------------------------------------------------------------- the live client


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    json: Any = None
    content: bytes | None = None

    def __str__(self) -> str:
        query = f" ?{self.query}" if self.query else ""
        headers = f" headers={self.headers}" if self.headers else ""
        body = f" json={self.json!r}" if self.json is not None else ""
        if self.content is not None:
            body = f" content={self.content!r}"
        return f"{self.method} {self.path}{query}{headers}{body}"

    def send(self, client: httpx.Client) -> httpx.Response:
        return client.request(
            self.method,
            self.path,
            params=self.query,
            headers=self.headers,
            json=self.json,
            content=self.content,
        )


@dataclass(frozen=True)
class Known:
    """A finding in code this file does not own, left to its owner: the fuzzer lets answers
    it `matches` pass, and its `example` is an xfail (strict) until it is fixed."""

    where: str
    operation: tuple[str, str]
    example: Call
    matches: Callable[[Call, httpx.Response], bool]


KNOWN: tuple[Known, ...] = ()


@pytest.fixture
def live(make_proxy: Callable[..., RunningProxy]) -> RunningProxy:
    """A proxy without an admin token (loopback clients are served), as a local tool sees it."""
    return make_proxy(admin={"token": ""})


@pytest.fixture
def seeds(live: RunningProxy) -> dict[str, list[Any]]:
    """Real values for the parameters and body fields of these names: two skillbooks, each
    with an approved and a pending skill, and one stored trace with its session."""
    skill_ids = [
        live.add_skill(skillbook, section, RULE, approve=approve)
        for skillbook in SKILLBOOKS
        for section, approve in (("returns", True), ("billing", False))
    ]
    reply = live.openai(SKILLBOOKS[0]).chat.completions.with_raw_response.create(
        model="fake-model",
        messages=[{"role": "user", "content": "hello"}],
        extra_headers={"X-Session-Id": SESSION},
    )
    trace_id = reply.headers["X-Trace-Id"]
    live.trace(trace_id)  # stored, so the trace and its session exist for the API
    return {
        "skillbook": list(SKILLBOOKS),
        "skill_id": skill_ids,
        "supersedes": skill_ids,
        "trace_id": [trace_id],
        "session_id": [SESSION],
        "content": [RULE, RULE.upper()],
        "section": ["returns", "billing"],
        "label": sorted(LABELS),
        "revision": [1],
        "to": ["support-copy"],
    }


@pytest.fixture
def client(live: RunningProxy) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=20) as session:
        yield session


@pytest.mark.parametrize(("path", "method"), OPERATIONS, ids=[f"{m} {p}" for p, m in OPERATIONS])
def test_the_proxy_answers_as_the_document_says(
    path: str, method: str, client: httpx.Client, seeds: dict[str, list[Any]]
) -> None:
    document = client.get("/admin/openapi.json").json()
    operation = document["paths"][path][method.lower()]
    findings: dict[str, Call] = {}

    @EXAMPLES
    @given(calls(path, method, operation, seeds))
    def exercise(call: Call) -> None:
        answer = call.send(client)
        problems = _problems(_declared(operation, answer.status_code), answer)
        if problems and any(known.matches(call, answer) for known in KNOWN):
            return
        for problem in problems:
            kind = f"{answer.status_code}: {problem}"
            if kind not in findings or len(str(call)) < len(str(findings[kind])):
                findings[kind] = call

    exercise()
    assert not findings, "\n".join(f"{kind}\n    {call}" for kind, call in findings.items())


if KNOWN:  # defined only while there are findings: no empty, skipped test in the run

    @pytest.mark.parametrize(
        "known",
        [pytest.param(k, marks=pytest.mark.xfail(strict=True, reason=k.where)) for k in KNOWN],
        ids=[" ".join(k.operation[::-1]) for k in KNOWN],
    )
    def test_known_findings_are_still_there(
        known: Known, client: httpx.Client, seeds: dict[str, list[Any]]
    ) -> None:
        """Each fails until its owner fixes it; then XPASS fails: drop it from `KNOWN`."""
        path, method = known.operation
        answer = known.example.send(client)
        operation = DOCUMENT["paths"][path][method.lower()]
        assert _problems(_declared(operation, answer.status_code), answer) == []


@st.composite
def calls(
    draw: st.DrawFn,
    path: str,
    method: str,
    operation: dict[str, Any],
    seeds: dict[str, list[Any]],
) -> Call:
    concrete, query, headers = path, {}, {}
    for parameter in operation.get("parameters", []):
        name, where = parameter["name"], parameter["in"]
        if where == "path":
            value = _text(draw(_values(parameter, seeds, SEGMENT_TEXT)))
            concrete = concrete.replace("{" + name + "}", quote(value, safe=""))
        elif parameter.get("required") or draw(st.booleans()):
            if where == "query":
                query[name] = _text(draw(_values(parameter, seeds, QUERY_TEXT)))
            elif where == "header":
                headers[name] = draw(HEADER_TEXT).strip()  # h11 refuses one that is padded
    body = operation.get("requestBody")
    if body is None:
        return Call(method, concrete, query, headers)
    choice = draw(st.integers(0, 9))
    if choice == 0:
        return Call(method, concrete, query, headers, content=draw(st.binary(max_size=12)))
    if choice == 1:
        return Call(method, concrete, query, headers, json=draw(JSON_VALUES))
    value = draw(values_of(_inline(body["content"]["application/json"]["schema"])))
    return Call(method, concrete, query, headers, json=_reseed(draw, value, seeds))


@st.composite
def _values(
    draw: st.DrawFn,
    parameter: dict[str, Any],
    seeds: dict[str, list[Any]],
    anything: st.SearchStrategy[str],
) -> Any:
    """Mostly a real value when there is one for the name; else one its schema allows, or
    now and then `anything` (last: Hypothesis favours the first choices)."""
    choice = draw(st.integers(0, 7))
    if parameter["name"] in seeds and choice < 5:
        return draw(st.sampled_from(seeds[parameter["name"]]))
    if choice >= 6:
        return draw(anything)
    return draw(values_of(_inline(parameter["schema"])))


def _reseed(draw: st.DrawFn, body: Any, seeds: dict[str, list[Any]]) -> Any:
    """`body` with some of its fields named like a seed (or `...ids`) given real values."""
    if not isinstance(body, dict):
        return body
    out = dict(body)
    for key, value in body.items():
        if key in seeds and draw(st.booleans()):
            out[key] = draw(st.sampled_from(seeds[key]))
        elif key.endswith("ids") and isinstance(value, list) and draw(st.booleans()):
            ids = st.lists(st.sampled_from(seeds["skill_id"]), min_size=1, max_size=2, unique=True)
            out[key] = draw(ids)
        elif isinstance(value, dict):
            out[key] = _reseed(draw, value, seeds)
    return out


def _text(value: Any) -> str:
    """A parameter value as it travels in a URL."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


# --------------------------------------------------------------------------- values from schemas

KEYWORDS = {
    *("title", "description", "default", "examples", "format", "deprecated", "readOnly"),
    *("type", "const", "enum", "anyOf", "oneOf", "properties", "required"),
    *("additionalProperties", "items", "minItems", "maxItems", "uniqueItems"),
    *("minLength", "maxLength", "pattern", "minimum", "maximum"),
    *("exclusiveMinimum", "exclusiveMaximum"),
}


def values_of(schema: Any) -> st.SearchStrategy[Any]:
    """Values an inlined JSON Schema accepts, for the keywords pydantic writes; a keyword it
    does not know fails the test rather than be ignored. (Not hypothesis-jsonschema: 0.23.1,
    its latest, fails on every object schema with the Hypothesis we use.)"""
    if schema is True or schema == {}:
        return JSON_VALUES
    unknown = set(schema) - KEYWORDS
    assert not unknown, f"no strategy for the keywords {sorted(unknown)} in {schema}"
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    branches = schema.get("anyOf") or schema.get("oneOf")
    if branches:
        rest = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}
        return st.one_of([values_of({**rest, **branch}) for branch in branches])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([values_of({**schema, "type": one}) for one in kind])
    if kind is None:
        return JSON_VALUES
    return _TYPED[kind](schema)


def _numbers(schema: dict[str, Any], integers: bool) -> st.SearchStrategy[Any]:
    low, high = schema.get("minimum"), schema.get("maximum")
    above, below = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if integers:
        low = above + 1 if above is not None else low
        high = below - 1 if below is not None else high
        return st.integers(low, high)
    return st.floats(
        above if above is not None else low,
        below if below is not None else high,
        exclude_min=above is not None,
        exclude_max=below is not None,
        allow_nan=False,
        allow_infinity=False,
    )


def _strings(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    low, high = schema.get("minLength", 0), schema.get("maxLength")
    if "pattern" not in schema:
        return st.text(min_size=low, max_size=high if high is not None else 30)
    fits: st.SearchStrategy[str] = st.from_regex(schema["pattern"])
    return fits.filter(lambda text: low <= len(text) <= (high if high is not None else len(text)))


def _arrays(schema: dict[str, Any]) -> st.SearchStrategy[list[Any]]:
    def key(item: Any) -> str:
        return json.dumps(item, sort_keys=True)

    return st.lists(
        values_of(schema.get("items", {})),
        min_size=schema.get("minItems", 0),
        max_size=schema.get("maxItems", 4),
        unique_by=key if schema.get("uniqueItems") else None,
    )


@st.composite
def _objects(draw: st.DrawFn, schema: dict[str, Any]) -> dict[str, Any]:
    required = set(schema.get("required", ()))
    out = {
        name: draw(values_of(prop))
        for name, prop in schema.get("properties", {}).items()
        if name in required or draw(st.booleans())
    }
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        out.update(draw(st.dictionaries(st.text(max_size=8), values_of(extra), max_size=3)))
    return out


_TYPED: dict[str, Callable[[dict[str, Any]], st.SearchStrategy[Any]]] = {
    "null": lambda _: st.none(),
    "boolean": lambda _: st.booleans(),
    "integer": lambda schema: _numbers(schema, integers=True),
    "number": lambda schema: _numbers(schema, integers=False),
    "string": _strings,
    "array": _arrays,
    "object": _objects,
}


# --------------------------------------------------------------------------- checking answers


def _declared(operation: dict[str, Any], status: int) -> dict[str, Any] | None:
    responses = operation["responses"]
    for code in (str(status), f"{status // 100}XX", "default"):
        if code in responses:
            found: dict[str, Any] = responses[code]
            return _pointer(found["$ref"]) if "$ref" in found else found
    return None


def _problems(declared: dict[str, Any] | None, answer: httpx.Response) -> list[str]:
    """What about `answer` the document does not allow (a 5xx is always a problem)."""
    problems = [f"a server error: {answer.text[:300]}"] if answer.status_code >= 500 else []
    if declared is None:
        return [*problems, "a status the operation does not declare"]
    for name, header in declared.get("headers", {}).items():
        if header.get("required") and name not in answer.headers:
            problems.append(f"no {name} header")
    content = declared.get("content")
    if not content:
        if answer.content:
            problems.append(f"a body where none is declared: {answer.text[:80]!r}")
        return problems
    media = answer.headers.get("Content-Type", "").split(";")[0].strip()
    if media not in content:
        return [*problems, f"Content-Type {media!r}, not one of {sorted(content)}"]
    if media != "application/json":
        return problems
    try:
        body = answer.json()
    except ValueError:
        return [*problems, f"not JSON: {answer.text[:80]!r}"]
    validator = OAS31Validator(_inline(content[media]["schema"]))
    for error in sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))[:3]:
        where = "/".join(str(part) for part in error.absolute_path) or "body"
        problems.append(f"{where}: {error.message[:200]}")
    return problems


# --------------------------------------------------------------------------- references


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _pointer(ref: str) -> Any:
    """What a local `$ref` (`#/a/b`) points at in the document, None if nothing."""
    if not ref.startswith("#/"):
        return None
    node: Any = DOCUMENT
    for raw in ref[2:].split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _inline(schema: Any, seen: tuple[str, ...] = ()) -> Any:
    """`schema` with every `$ref` replaced by what it points at (our types are not recursive:
    a cycle fails here rather than looping)."""
    if isinstance(schema, list):
        return [_inline(item, seen) for item in schema]
    if not isinstance(schema, dict):
        return schema
    ref = schema.get("$ref")
    if isinstance(ref, str):
        assert ref not in seen, f"recursive schema through {ref}"
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        return {**_inline(_pointer(ref), (*seen, ref)), **_inline(rest, seen)}
    return {key: _inline(value, seen) for key, value in schema.items()}


def _concrete(path: str, item: dict[str, Any]) -> str:
    """`path` with each parameter given a value it accepts (an enum's first), to reach it."""
    values = {
        parameter["name"]: str(parameter["schema"].get("enum", ["x1"])[0])
        for operation in item.values()
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "path"
    }
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)
