"""What every admin handler reads from a request: the app state, who acts, the skillbook named
in the path, and the query parameters checked against a model."""

from __future__ import annotations

from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from proxy.routing import SKILLBOOK_NAME
from proxy.state import STATE, ProxyState
from skillproxy.admin.guard import AdminError
from store.records import as_json

ACTOR_HEADER = "X-Admin-Actor"
NAME_PATTERN = SKILLBOOK_NAME.pattern.replace("\\Z", "$")
"""A skillbook name in a query model or JSON Schema: the same rule in a regex dialect without
Python's end-of-text anchor (in both, `$` matches only at the very end)."""
Q = TypeVar("Q", bound=BaseModel)


class Query(BaseModel):
    """Base of the query models: an unknown parameter is an error, not ignored."""

    model_config = ConfigDict(extra="forbid")


class Body(BaseModel):
    """Base of the JSON body models: unknown fields refused, and no coercion ("100" is not a
    number here, nor 1 a boolean)."""

    model_config = ConfigDict(extra="forbid", strict=True)


def state_of(request: web.Request) -> ProxyState:
    return request.config_dict[STATE]


def actor(request: web.Request) -> str:
    """Who the history records: the `X-Admin-Actor` header, else `admin`."""
    return request.headers.get(ACTOR_HEADER, "admin")[:100] or "admin"


def skillbook_name(request: web.Request, key: str = "skillbook") -> str:
    return checked_name(request.match_info[key])


def checked_name(name: str, field: str = "skillbook") -> str:
    if not SKILLBOOK_NAME.match(name):
        raise AdminError(400, f"{field}: invalid skillbook name {name!r}", "invalid_skillbook")
    return name


def query_of(request: web.Request, model: type[Q]) -> Q:
    """`request.query` as `model`, or a 400 `invalid_query` naming each bad parameter."""
    query = request.query
    repeated = sorted({key for key in query if len(query.getall(key)) > 1})
    if repeated:
        raise AdminError(400, f"{', '.join(repeated)}: give each parameter once", "invalid_query")
    try:
        return model.model_validate(dict(query))
    except ValidationError as exc:
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'query'}: {e['msg']}" for e in exc.errors()
        )
        raise AdminError(400, detail, "invalid_query") from None


async def changed(state: ProxyState, result: object, status: int = 200) -> web.Response:
    """Answer a write, after refreshing this process's skillbook cache."""
    await state.skillbooks.refresh()
    return web.json_response(as_json(result), status=status)
