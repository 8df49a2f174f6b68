"""The query parameters the trace routes take, as models the handlers and the OpenAPI share."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from skillproxy.admin.requests import NAME_PATTERN, Query

MAX_PAGE = 500


class ActivityQuery(Query):
    skillbook: str | None = Field(default=None, pattern=NAME_PATTERN)
    since: float | None = Field(default=None, allow_inf_nan=False, description="default: a day ago")
    bucket_s: int = Field(default=3600, ge=60, le=86400)


class SpendQuery(Query):
    days: int = Field(default=30, ge=1, le=3660, description="UTC days back from now")


class TracesQuery(Query):
    skillbook: str | None = Field(default=None, pattern=NAME_PATTERN)
    limit: int = Field(default=50, ge=1, le=MAX_PAGE)
    after: float | None = Field(
        default=None, allow_inf_nan=False, description="only traces from this time on"
    )
    outcome: Literal["ok", "error"] | None = None
    model: str | None = Field(default=None, max_length=200)
    session_id: str | None = Field(default=None, max_length=200)
    before: float | None = Field(
        default=None,
        allow_inf_nan=False,
        description="the `next_before` of the previous page: older traces only",
    )
