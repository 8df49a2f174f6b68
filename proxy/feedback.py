"""`POST /v1/feedback`: a client says how an exchange or a session went.

Feedback is optional evidence for the learner; without it the reflector judges from the trace
itself. The trace id comes from the `X-Trace-Id` header of the answer being judged. Errors use
OpenAI's shape like every other proxy-made error.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from proxy import errors
from proxy.handlers import skillbook_for
from proxy.state import STATE
from store.records import NewFeedback


class Feedback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    trace_id: str | None = Field(default=None, min_length=1, max_length=200)
    session_id: str | None = Field(default=None, min_length=1, max_length=200)
    score: float | None = Field(default=None, ge=0, le=1)
    label: str | None = Field(default=None, min_length=1, max_length=100)
    comment: str | None = Field(default=None, max_length=4000)

    @model_validator(mode="after")
    def _one_target_and_a_verdict(self) -> Feedback:
        if (self.trace_id is None) == (self.session_id is None):
            raise ValueError("give exactly one of trace_id or session_id")
        if self.score is None and self.label is None:
            raise ValueError("give a score (0..1) or a label")
        return self


async def post_feedback(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        skillbook = skillbook_for(request, state)
        body = _parse(await request.read())
    except errors.ProxyError as exc:
        return errors.error_response(exc, anthropic=False)
    trace_id, session_id = body.trace_id or "", body.session_id or ""
    if (
        body.trace_id is not None
        and not state.traces.is_pending(body.trace_id)
        and not await state.store.run(lambda store: store.traces.exists(trace_id))
    ):
        return _not_found(f"no trace with id {body.trace_id!r}")
    if body.session_id is not None and not await state.store.run(
        lambda store: store.traces.session_exists(session_id)
    ):
        return _not_found(f"no traces for session {body.session_id!r}")
    feedback = NewFeedback(
        skillbook, body.trace_id, body.session_id, body.score, body.label, body.comment
    )
    seq = await state.store.run(lambda store: store.feedback.add(feedback))
    return web.json_response({"id": seq, "object": "feedback", "status": "recorded"}, status=201)


def _parse(raw: bytes) -> Feedback:
    try:
        data: Any = json.loads(raw)
    except ValueError as exc:
        raise errors.invalid_json(str(exc)) from None
    try:
        return Feedback.model_validate(data)
    except ValidationError as exc:
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        raise errors.invalid_request(f"Invalid feedback: {detail}", "invalid_feedback") from None


def _not_found(message: str) -> web.Response:
    err = errors.ProxyError(404, message, "invalid_request_error", "not_found", "not_found_error")
    return errors.error_response(err, anthropic=False)
