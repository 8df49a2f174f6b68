"""learner/llm.py: the learner's model calls survive a bad minute, through the real litellm
path against the fake provider on loopback: 5xx and 429 are retried with backoff, a
`Retry-After` is honoured (and capped), a bad request fails at once, and the number of tries
is bounded."""

from __future__ import annotations

import pytest

from core.config import LearnerConfig
from learner.llm import LLMError, complete
from tests.fakes import replies
from tests.fakes.provider import FakeProvider
from tests.fakes.server_thread import ServerThread

MESSAGES = [{"role": "user", "content": "diagnose this"}]


@pytest.fixture
def settings(fake_provider: tuple[FakeProvider, ServerThread]) -> LearnerConfig:
    _, server = fake_provider
    return LearnerConfig(
        model="openai/reflector-model", api_base=server.url + "/v1", retries=3, request_timeout_s=5
    )


@pytest.fixture
def provider(fake_provider: tuple[FakeProvider, ServerThread]) -> FakeProvider:
    return fake_provider[0]


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def test_an_outage_then_recovery_is_retried_with_exponential_backoff(
    provider: FakeProvider, settings: LearnerConfig
) -> None:
    provider.enqueue(
        replies.openai_error(500, "boom", "server_error"),
        replies.openai_error(503, "overloaded", "server_error"),
        replies.text("fine now"),
    )
    waited = Sleeps()
    answer = complete(settings, MESSAGES, sleep=waited)
    assert answer.text == "fine now"
    assert waited == [1.0, 2.0]
    assert len(provider.received) == 3


def test_a_rate_limit_waits_what_retry_after_says_within_the_cap(
    provider: FakeProvider, settings: LearnerConfig
) -> None:
    provider.enqueue(
        replies.openai_error(429, "slow down", "rate_limit_error", headers={"Retry-After": "7"}),
        replies.openai_error(429, "slow down", "rate_limit_error", headers={"Retry-After": "90"}),
        replies.text("ok"),
    )
    waited = Sleeps()
    capped = settings.model_copy(update={"retry_max_wait_s": 20.0})
    assert complete(capped, MESSAGES, sleep=waited).text == "ok"
    assert waited == [7.0, 20.0]


def test_a_refusal_that_retrying_cannot_fix_fails_at_once(
    provider: FakeProvider, settings: LearnerConfig
) -> None:
    provider.enqueue(replies.openai_error(401, "bad key", "invalid_request_error"))
    waited = Sleeps()
    with pytest.raises(LLMError, match="bad key"):
        complete(settings, MESSAGES, sleep=waited)
    assert waited == [] and len(provider.received) == 1


def test_retries_are_bounded_and_the_error_says_how_many_tries(
    provider: FakeProvider, settings: LearnerConfig
) -> None:
    provider.enqueue(*[replies.openai_error(502, "bad gateway", "server_error")] * 5)
    waited = Sleeps()
    with pytest.raises(LLMError, match=r"after 4 attempts"):
        complete(settings, MESSAGES, sleep=waited)
    assert waited == [1.0, 2.0, 4.0] and len(provider.received) == 4
