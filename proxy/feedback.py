"""`POST /v1/feedback`: a client says how an exchange or a session went.

Feedback is optional evidence for the learner; without it the reflector judges from the trace
itself. The trace id comes from the `X-Trace-Id` header of the answer being judged. Errors use
OpenAI's shape like every other proxy-made error.

Answers: 201 `recorded`; 202 `queued` when the store could not take a valid feedback now (it
is kept and written later, see `proxy.feedback_queue`); 404 for an unknown trace or session;
503 `store_unavailable` with `Retry-After` when the store cannot even check the target, or the
queue is full: not accepted, send it again.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from proxy import errors
from proxy.body import answer_unread, read_body
from proxy.credentials import key_allowed
from proxy.feedback_queue import FEEDBACK
from proxy.handlers import skillbook_for
from proxy.state import STATE, ProxyState
from store.errors import StoreMoved, StoreUnavailable
from store.records import NewFeedback

log = logging.getLogger("skillproxy.feedback")


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
        keys = state.config.server.client_keys
        if keys and not key_allowed(request.headers, keys):
            raise errors.invalid_api_key()
        skillbook = skillbook_for(request, state)
        server = state.config.server
        raw = await read_body(
            request, limit=server.max_body_bytes, timeout_s=server.body_timeout_s, readable=True
        )
        body = _parse(raw.data)
    except errors.ProxyError as exc:
        response = errors.error_response(exc, anthropic=False)
        await answer_unread(request, response, exc)
        return response
    if isinstance(state.store.problem, StoreMoved):  # nothing queued could ever be written
        return _unavailable(state.store.problem)
    try:
        missing = await _missing_target(state, body)
        if missing is not None:
            return _not_found(missing)
        feedback = NewFeedback(
            skillbook, body.trace_id, body.session_id, body.score, body.label, body.comment
        )
        queue = request.app.get(FEEDBACK)
        seq: int | None
        if queue is None:  # an app without the queue's cleanup context: write or refuse
            seq = await state.store.run(lambda store: store.feedback.add(feedback))
        else:
            seq = await queue.add(feedback)
    except StoreUnavailable as exc:
        return _unavailable(exc)
    if seq is None:
        return web.json_response({"id": None, "object": "feedback", "status": "queued"}, status=202)
    return web.json_response({"id": seq, "object": "feedback", "status": "recorded"}, status=201)


async def _missing_target(state: ProxyState, body: Feedback) -> str | None:
    """Why the trace or session the feedback names does not exist, or None when it does.
    A trace still in the writer's queue exists: the client has its answer already."""
    if body.trace_id is not None:
        trace_id = body.trace_id
        if state.traces.is_pending(trace_id) or await state.store.run(
            lambda store: store.traces.exists(trace_id)
        ):
            return None
        return f"no trace with id {trace_id!r}"
    session_id = body.session_id or ""
    if await state.store.run(lambda store: store.traces.session_exists(session_id)):
        return None
    return f"no traces for session {session_id!r}"


def _parse(raw: bytes) -> Feedback:
    try:
        data: Any = json.loads(raw)
    except ValueError as exc:
        raise errors.invalid_json(str(exc)) from None
    except RecursionError:
        raise errors.invalid_json("the JSON is nested too deeply") from None
    try:
        return Feedback.model_validate(data)
    except ValidationError as exc:
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        raise errors.invalid_request(f"Invalid feedback: {detail}", "invalid_feedback") from None


def _unavailable(exc: StoreUnavailable) -> web.Response:
    """Not accepted: the store cannot check or keep it now. 503 with `Retry-After`."""
    log.warning("feedback refused: %s", exc)
    err = errors.ProxyError(503, str(exc), "server_error", "store_unavailable", "api_error")
    response = errors.error_response(err, anthropic=False)
    response.headers["Retry-After"] = errors.retry_after(exc.retry_after_s)
    return response


def _not_found(message: str) -> web.Response:
    err = errors.ProxyError(404, message, "invalid_request_error", "not_found", "not_found_error")
    return errors.error_response(err, anthropic=False)
