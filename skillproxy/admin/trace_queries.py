"""The query parameters the trace listing takes, as a model the handler and the OpenAPI share."""

from __future__ import annotations

from pydantic import Field

from skillproxy.admin.requests import Query

MAX_PAGE = 500


class TracesQuery(Query):
    skillbook: str | None = None
    limit: int = Field(default=50, ge=1, le=MAX_PAGE)
    before: float | None = Field(
        default=None,
        allow_inf_nan=False,
        description="the `next_before` of the previous page: older traces only",
    )
