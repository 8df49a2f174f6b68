"""`POST /v1/feedback`: a client says how an exchange or a session went.

Feedback is optional evidence for the learner; without it the reflector judges from the trace
itself. The trace id comes from the `X-Trace-Id` header of the answer being judged. Errors use
OpenAI's shape like every other proxy-made error, with `param` naming the field at fault.

Which skillbook it is filed under (`filing_skillbook`): the one the client named, by path
(`/sb/{skillbook}/v1/feedback`) or `X-Skillbook` header, which must be the trace's (or one of
the session's); when it named none, the trace's own, or the session's when only one skillbook
has it. A trace still in the trace writer's queue counts as stored, and so does its session:
the client has its answer already.

Answers: 201 `recorded`; 202 `queued` when the store could not take a valid feedback now (it
is kept and written later, see `proxy.feedback_queue`); 400 `invalid_feedback` (a label
outside `store.feedback_labels.LABELS` among them), `wrong_skillbook` or
`ambiguous_skillbook`; 404 `not_found` for an unknown trace or session; 503
`store_unavailable` with `Retry-After` when the store cannot even check the target, or the
queue is full: not accepted, send it again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from proxy import errors
from proxy.body import answer_unread, read_body
from proxy.credentials import key_allowed
from proxy.feedback_queue import FEEDBACK
from proxy.handlers import skillbook_for
from proxy.routing import SKILLBOOK_HEADER
from proxy.state import STATE, ProxyState
from store.errors import StoreMoved, StoreUnavailable
from store.feedback_labels import LABELS, accepted_labels, label_score, normalise
from store.records import NewFeedback

log = logging.getLogger("skillproxy.feedback")


class Feedback(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # "0.5" is not a score

    trace_id: str | None = Field(default=None, min_length=1, max_length=200)
    session_id: str | None = Field(default=None, min_length=1, max_length=200)
    score: float | None = Field(default=None, ge=0, le=1, allow_inf_nan=False)
    label: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description=f"One of these, in any case, '-' or ' ' for '_': {accepted_labels()}.",
    )
    comment: str | None = Field(default=None, max_length=4000)

    @model_validator(mode="after")
    def _one_target_and_a_verdict(self) -> Feedback:
        if (self.trace_id is None) == (self.session_id is None):
            raise ValueError("give exactly one of trace_id or session_id")
        if self.score is None and self.label is None:
            raise ValueError("give a score (0..1) or a label")
        said = label_score(self.label) if self.label is not None else None
        if said is not None and self.score is not None and (said >= 0.5) != (self.score >= 0.5):
            raise ValueError(
                f"the label {self.label!r} and the score {self.score:g} disagree: give one, "
                "or both saying the same"
            )
        return self


@dataclass(frozen=True, slots=True)
class Refusal:
    """A 4xx this endpoint answers, kept as data until the handler renders it. Unlike
    `errors.ProxyError` it carries OpenAI's `param`: the field of the body at fault."""

    status: int
    message: str
    code: str
    param: str | None = None

    def response(self) -> web.Response:
        error = {
            "message": self.message,
            "type": "invalid_request_error",
            "param": self.param,
            "code": self.code,
        }
        return web.json_response({"error": error}, status=self.status)


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
    except errors.ProxyError as exc:
        response = errors.error_response(exc, anthropic=False)
        await answer_unread(request, response, exc)
        return response
    body = parse_feedback(raw.data)
    if isinstance(body, Refusal):
        return body.response()
    if isinstance(state.store.problem, StoreMoved):  # nothing queued could ever be written
        return _unavailable(state.store.problem)
    named = skillbook if _names_skillbook(request) else None
    try:
        filed = filing_skillbook(body, await _owners(state, body), named)
        if isinstance(filed, Refusal):
            return filed.response()
        feedback = NewFeedback(
            filed, body.trace_id, body.session_id, body.score, body.label, body.comment
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


def parse_feedback(raw: bytes) -> Feedback | Refusal:
    """The body as feedback, its label in canonical spelling; or why it is not feedback."""
    try:
        data: Any = json.loads(raw)
    except ValueError as exc:
        return _refusal(errors.invalid_json(str(exc)))
    except RecursionError:
        return _refusal(errors.invalid_json("the JSON is nested too deeply"))
    try:
        body = Feedback.model_validate(data)
    except ValidationError as exc:
        problems = exc.errors()
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in problems
        )
        fields = {str(e["loc"][0]) if e["loc"] else None for e in problems}
        param = fields.pop() if len(fields) == 1 else None
        return Refusal(400, f"Invalid feedback: {detail}", "invalid_feedback", param)
    if body.label is None:
        return body
    label = normalise(body.label)
    if label not in LABELS:
        return Refusal(
            400,
            f"Invalid feedback: label: {body.label!r} is not one of the accepted labels"
            f" ({accepted_labels()}); case does not matter, and '-' or ' ' reads as '_'",
            "invalid_feedback",
            "label",
        )
    return body.model_copy(update={"label": label})


def filing_skillbook(body: Feedback, owners: Sequence[str], named: str | None) -> str | Refusal:
    """The skillbook `body` is filed under, or why it is refused.

    `owners`: the skillbooks the trace (one at most) or the session (any number) belongs to,
    sorted; none when it does not exist. `named`: the skillbook the client named by path or
    header, None when it named none (then it was given the default, which means nothing here).
    """
    if body.trace_id is not None:
        param, target = "trace_id", f"trace {body.trace_id!r}"
    else:
        param, target = "session_id", f"session {body.session_id!r}"
    if not owners:
        missing = (
            f"no trace with id {body.trace_id!r}"
            if body.trace_id is not None
            else f"no traces for session {body.session_id!r}"
        )
        return Refusal(404, missing, "not_found", param)
    if named is None:
        if len(owners) == 1:
            return owners[0]
        return Refusal(
            400,
            f"{target} is in several skillbooks ({_names(owners)}): name the one this feedback"
            " is for, by posting to /sb/{skillbook}/v1/feedback or with the X-Skillbook header",
            "ambiguous_skillbook",
            param,
        )
    if named in owners:
        return named
    if len(owners) == 1:
        where = f"skillbook {owners[0]!r}"
        fix = f"post it to /sb/{owners[0]}/v1/feedback, or name no skillbook"
    else:
        where = f"skillbooks {_names(owners)}"
        fix = "post it under the skillbook of the exchange it judges"
    return Refusal(
        400,
        f"{target} belongs to {where}, not to skillbook {named!r} that this request names: {fix}",
        "wrong_skillbook",
        param,
    )


async def _owners(state: ProxyState, body: Feedback) -> list[str]:
    """The skillbooks the trace or session belongs to, sorted; none when it does not exist.
    The writer's queue is read before the store: a trace committed in between is in the store
    by the time the store is asked, so it cannot be missed."""
    traces = state.traces
    if body.trace_id is not None:
        trace_id = body.trace_id
        owner = traces.pending_skillbook(trace_id)
        if owner is None:
            owner = await state.store.run(lambda store: store.traces.skillbook_of(trace_id))
        return [] if owner is None else [owner]
    session_id = body.session_id or ""
    queued = traces.pending_session_skillbooks(session_id)
    stored = await state.store.run(lambda store: store.traces.session_skillbooks(session_id))
    return sorted(queued.union(stored))


def _names_skillbook(request: web.Request) -> bool:
    """The client chose the skillbook, by path or header, rather than getting the default."""
    return bool(request.match_info.get("skillbook") or request.headers.get(SKILLBOOK_HEADER))


def _names(skillbooks: Sequence[str]) -> str:
    return ", ".join(repr(name) for name in skillbooks)


def _refusal(error: errors.ProxyError) -> Refusal:
    return Refusal(error.status, error.message, error.code)


async def feedback_method_not_allowed(request: web.Request) -> web.Response:
    """`/v1/feedback` is the proxy's own: any method but POST is a 405 here, never a request
    forwarded to the provider with the client's key."""
    err = errors.ProxyError(
        405,
        f"{request.method} is not allowed on {request.path}; send feedback with POST.",
        "invalid_request_error",
        "method_not_allowed",
        "invalid_request_error",
    )
    response = errors.error_response(err, anthropic=False)
    response.headers["Allow"] = "POST"
    return response


def _unavailable(exc: StoreUnavailable) -> web.Response:
    """Not accepted: the store cannot check or keep it now. 503 with `Retry-After`."""
    log.warning("feedback refused: %s", exc)
    err = errors.ProxyError(503, str(exc), "server_error", "store_unavailable", "api_error")
    response = errors.error_response(err, anthropic=False)
    response.headers["Retry-After"] = errors.retry_after(exc.retry_after_s)
    return response
