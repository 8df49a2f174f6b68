"""The learner's only door to a model: one litellm call, its usage and its cost.

litellm is imported here, lazily, so the proxy never pays its import time, and every setting
(model, base URL, key, timeout) is passed per call: no `litellm.*` global is ever set.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from core.config import LearnerConfig

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch a price list
log = logging.getLogger("skillproxy.learner")


class LLMError(Exception):
    """The learner's model could not be asked (network, auth, provider error)."""


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    input_tokens: int
    output_tokens: int
    cost_usd: float


def missing_key(config: LearnerConfig) -> str | None:
    """Why the learner's key cannot be read: `api_key_env` names a variable that is unset or
    empty here. None when it is set, or when no variable is named (a keyless local model)."""
    name = config.api_key_env
    if name and not os.environ.get(name):
        return (
            f"learner.api_key_env names the environment variable {name}, which is not set "
            'here: export it, or set api_key_env to "" for a model that needs no key'
        )
    return None


def complete(
    config: LearnerConfig,
    messages: list[dict[str, Any]],
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> Completion:
    """One answer from the learner's model. A failure that may pass (rate limit, timeout, lost
    connection, a 5xx) is retried up to `config.retries` times with exponential backoff, or
    after the provider's `Retry-After` when it gives one, never longer than
    `config.retry_max_wait_s` a wait; anything else (a bad key, a bad request) fails at once."""
    if (problem := missing_key(config)) is not None:  # never a placeholder key to a provider
        raise LLMError(problem)
    attempt = 0
    while True:
        try:
            return _complete_once(config, messages)
        except LLMError as exc:
            wait = retry_wait(exc.__cause__, attempt, config.retry_max_wait_s)
            if wait is None or attempt >= config.retries:
                if attempt:
                    raise LLMError(f"{exc} (after {attempt + 1} attempts)") from exc.__cause__
                raise
            log.warning("learner model call failed (%s); retrying in %.1f s", exc, wait)
            sleep(wait)
            attempt += 1


def retry_wait(exc: BaseException | None, attempt: int, cap_s: float) -> float | None:
    """Seconds to wait before trying again after `exc`, or None when trying again is no use.

    Retried: 408, 409, 429 and 5xx answers, timeouts and connection failures. The wait is
    the answer's `Retry-After` (seconds or an HTTP date) when given, else 1, 2, 4... s."""
    if exc is None:
        return None
    status = getattr(exc, "status_code", None)
    name = type(exc).__name__
    transient = name in _TRANSIENT or (
        isinstance(status, int) and (status in (408, 409, 429) or status >= 500)
    )
    if not transient:
        return None
    hinted = _retry_after(exc)
    wait = hinted if hinted is not None else float(2**attempt)
    return max(0.0, min(wait, cap_s))


_TRANSIENT = frozenset(
    {"Timeout", "APITimeoutError", "APIConnectionError", "RateLimitError",
     "ServiceUnavailableError", "InternalServerError", "BadGatewayError"}
)  # fmt: skip


def _retry_after(exc: BaseException) -> float | None:
    headers: Any = getattr(getattr(exc, "response", None), "headers", None)
    if headers is None:
        headers = getattr(exc, "litellm_response_headers", None)
    value = headers.get("retry-after") if headers is not None else None
    if not value:
        return None
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _complete_once(config: LearnerConfig, messages: list[dict[str, Any]]) -> Completion:
    import litellm  # lazy: seconds of import time the proxy must not pay

    api_key = os.environ.get(config.api_key_env) if config.api_key_env else None
    try:
        response = litellm.completion(
            model=config.model,
            messages=messages,
            api_base=config.api_base or None,
            api_key=api_key or "not-needed",
            timeout=config.request_timeout_s,
            temperature=0,
            num_retries=0,  # retried above, where the wait is ours to bound
            max_retries=0,
        )
    except Exception as exc:  # litellm maps every provider failure to its own exception tree
        raise LLMError(f"{type(exc).__name__}: {exc}") from exc
    text = response.choices[0].message.content or ""
    usage = getattr(response, "usage", None)
    cost = _cost(litellm, config.model, response)
    return Completion(
        text=text,
        input_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        output_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        cost_usd=cost,
    )


def _cost(litellm: Any, model: str, response: Any) -> float:
    """The call's price from litellm's bundled price list; 0 for a model it does not know."""
    name = model.split("/", 1)[-1]
    if model not in litellm.model_cost and name not in litellm.model_cost:
        return 0.0
    try:
        return float(litellm.completion_cost(completion_response=response))
    except Exception:  # a priced model with an unusual response: tokens are still recorded
        return 0.0


_runs_using_clients = 0
_runs_lock = threading.Lock()


@contextlib.contextmanager
def shared_clients() -> Iterator[None]:
    """Hold litellm's cached HTTP clients open for one learner run; the last run out closes them.

    litellm keeps one client cache per process. A run that closed it on its way out broke the
    calls of another run still going (the scheduled learner and `POST /admin/learner/run` can
    overlap), so runs are counted and only the last one closes.
    """
    global _runs_using_clients
    with _runs_lock:
        _runs_using_clients += 1
    try:
        yield
    finally:
        with _runs_lock:
            _runs_using_clients -= 1
            if _runs_using_clients == 0:
                close_cached_clients()


def close_cached_clients() -> None:
    """Close the HTTP clients litellm cached during a run, so no socket outlives it."""
    import litellm

    cache = litellm.in_memory_llm_clients_cache
    for client in list(cache.cache_dict.values()):
        close = getattr(client, "close", None)
        if callable(close):
            try:
                result = close()
            except Exception:  # an async client or one already closed: nothing to release here
                continue
            if hasattr(result, "close"):
                result.close()  # an un-awaited coroutine from an async client
    cache.flush_cache()  # type: ignore[no-untyped-call]
