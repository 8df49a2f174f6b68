"""The fake provider is only useful if the real SDKs cannot tell it from the real thing.

So these tests talk to it with the `openai` and `anthropic` SDKs (sync and async), through
litellm's real HTTP path, and with raw HTTP where the exact bytes matter.
"""

# ruff: noqa: F811 - pytest injects the imported `fake_provider` fixture by parameter name

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from aiohttp import web

from tests.fakes import replies
from tests.fakes.fixtures import fake_provider  # noqa: F401
from tests.fakes.network_guard import install_loopback_guard, is_loopback
from tests.fakes.provider import FakeProvider
from tests.fakes.server_thread import ServerThread

Fake = tuple[FakeProvider, ServerThread]
WEATHER = {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'}
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
    }
]


@pytest.fixture
def oai(fake_provider: Fake) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=fake_provider[1].url + "/v1", api_key="x", max_retries=0) as c:
        yield c


@pytest.fixture
async def aoai(fake_provider: Fake) -> AsyncIterator[openai.AsyncOpenAI]:
    url = fake_provider[1].url + "/v1"
    async with openai.AsyncOpenAI(base_url=url, api_key="x", max_retries=0) as client:
        yield client


@pytest.fixture
def claude(fake_provider: Fake) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=fake_provider[1].url, api_key="x", max_retries=0) as c:
        yield c


def user(text: str = "hi") -> list[Any]:
    return [{"role": "user", "content": text}]


# -- ServerThread ----------------------------------------------------------------------------


async def _hello(request: web.Request) -> web.Response:
    return web.Response(text="hello")


def test_server_thread_serves_an_app_built_in_its_own_loop() -> None:
    async def factory() -> web.Application:
        app = web.Application()

        async def session(app: web.Application) -> AsyncIterator[None]:
            async with aiohttp.ClientSession():  # must be created inside the server's loop
                yield

        app.cleanup_ctx.append(session)
        app.router.add_get("/", _hello)
        return app

    with ServerThread(factory) as server:
        assert server.url == f"http://127.0.0.1:{server.port}" and server.port > 0
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert b"hello" in sock.recv(4096)


def test_server_thread_reports_a_startup_failure() -> None:
    async def broken() -> web.Application:
        raise ValueError("no app today")

    with pytest.raises(ValueError, match="no app today"):
        ServerThread(broken).start()


# -- Chat Completions ------------------------------------------------------------------------


def test_chat_completion_object(fake_provider: Fake, oai: openai.OpenAI) -> None:
    provider, _ = fake_provider
    provider.enqueue(replies.text("Bonjour tout le monde"))
    result = oai.chat.completions.create(model="gpt-4o-mini", messages=user(), n=2)

    assert result.id.startswith("chatcmpl-") and result.object == "chat.completion"
    assert result.model == "gpt-4o-mini" and result.system_fingerprint
    assert [c.message.content for c in result.choices] == ["Bonjour tout le monde"] * 2
    assert result.choices[1].index == 1 and result.choices[0].finish_reason == "stop"
    assert result.usage is not None and result.usage.completion_tokens == 8  # 4 words x n=2
    assert result.usage.prompt_tokens == len(provider.last.body) // 4
    assert provider.last.path == "/v1/chat/completions"
    assert provider.last.header("AUTHORIZATION") == "Bearer x"
    assert provider.last.json()["messages"] == user()


def test_chat_default_reply_is_ok(oai: openai.OpenAI) -> None:
    result = oai.chat.completions.create(model="m", messages=user())
    assert result.choices[0].message.content == "ok"


def test_chat_tool_calls(fake_provider: Fake, oai: openai.OpenAI) -> None:
    fake_provider[0].enqueue(replies.tool_calls([WEATHER, {**WEATHER, "id": "call_mine"}]))
    result = oai.chat.completions.create(model="m", messages=user(), tools=TOOLS)

    message = result.choices[0].message
    assert result.choices[0].finish_reason == "tool_calls" and message.content is None
    assert message.tool_calls is not None and len(message.tool_calls) == 2
    first, second = message.tool_calls
    assert first.type == "function" and first.id.startswith("call_")
    assert first.function.name == "get_weather"
    assert json.loads(first.function.arguments) == {"city": "Paris", "unit": "celsius"}
    assert second.id == "call_mine"


def test_chat_stream_with_usage(fake_provider: Fake, oai: openai.OpenAI) -> None:
    fake_provider[0].enqueue(replies.text("one two three four"))
    chunks = list(
        oai.chat.completions.create(
            model="m", messages=user(), stream=True, stream_options={"include_usage": True}
        )
    )

    assert len({(c.id, c.created, c.model, c.object) for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four"
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) == 4
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4
    assert all(c.usage is None for c in chunks[:-1])


def test_chat_stream_tool_call_deltas(fake_provider: Fake, oai: openai.OpenAI) -> None:
    second = {"name": "get_time", "arguments": '{"zone": "Europe/Paris"}'}
    fake_provider[0].enqueue(replies.tool_calls([WEATHER, second], content="Let me check."))
    calls: dict[int, dict[str, str]] = {}
    text, finish = "", None
    for chunk in oai.chat.completions.create(model="m", messages=user(), stream=True):
        choice = chunk.choices[0]
        text += choice.delta.content or ""
        finish = choice.finish_reason or finish
        for delta in choice.delta.tool_calls or []:
            call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += delta.id or ""
            call["name"] += delta.function.name or "" if delta.function else ""
            call["arguments"] += delta.function.arguments or "" if delta.function else ""

    assert text == "Let me check." and finish == "tool_calls"
    assert [c["name"] for c in calls.values()] == ["get_weather", "get_time"]
    assert [c["arguments"] for c in calls.values()] == [WEATHER["arguments"], second["arguments"]]
    assert all(c["id"].startswith("call_") for c in calls.values())


async def test_chat_async_stream(fake_provider: Fake, aoai: openai.AsyncOpenAI) -> None:
    fake_provider[0].enqueue(replies.text("async works", chunk_delay=0.01))
    stream = await aoai.chat.completions.create(model="m", messages=user(), stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream])
    assert text == "async works"


async def test_chat_async_tool_call(fake_provider: Fake, aoai: openai.AsyncOpenAI) -> None:
    fake_provider[0].enqueue(replies.tool_calls([WEATHER]))
    result = await aoai.chat.completions.create(model="m", messages=user(), tools=TOOLS)
    assert result.choices[0].message.tool_calls is not None


# -- Responses API ---------------------------------------------------------------------------


def test_responses_object_and_retrieve(fake_provider: Fake, oai: openai.OpenAI) -> None:
    fake_provider[0].enqueue(replies.text("Hello from responses"))
    result = oai.responses.create(model="gpt-4.1", input="hi", instructions="be brief")

    assert result.id.startswith("resp_") and result.status == "completed"
    assert result.output_text == "Hello from responses" and result.instructions == "be brief"
    assert result.usage is not None and result.usage.output_tokens == 3
    assert result.usage.total_tokens == result.usage.input_tokens + 3
    assert oai.responses.retrieve(result.id).output_text == "Hello from responses"


def test_responses_function_call(fake_provider: Fake, oai: openai.OpenAI) -> None:
    fake_provider[0].enqueue(replies.tool_calls([WEATHER]))
    tools: Any = [{"type": "function", "name": "get_weather", "parameters": {}}]
    result = oai.responses.create(model="m", input="hi", tools=tools)

    (item,) = result.output
    assert item.type == "function_call" and item.name == "get_weather"
    assert item.call_id.startswith("call_") and item.arguments == WEATHER["arguments"]


def test_responses_raw_stream_events(fake_provider: Fake, oai: openai.OpenAI) -> None:
    fake_provider[0].enqueue(replies.tool_calls([WEATHER], content="Checking the sky"))
    events = list(oai.responses.create(model="m", input="hi", stream=True))

    assert [e.sequence_number for e in events] == list(range(len(events)))
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-1] == "response.completed"
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == "Checking the sky" and len(deltas) == 3
    args = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    assert "".join(args) == WEATHER["arguments"]
    assert "response.function_call_arguments.done" in kinds


def test_responses_stream_helper_accumulates(fake_provider: Fake, oai: openai.OpenAI) -> None:
    fake_provider[0].enqueue(replies.text("streamed and accumulated"))
    with oai.responses.stream(model="m", input="hi") as stream:
        final = stream.get_final_response()
    assert final.output_text == "streamed and accumulated"
    assert oai.responses.retrieve(final.id).output_text == "streamed and accumulated"


def test_responses_length_is_incomplete(fake_provider: Fake, oai: openai.OpenAI) -> None:
    fake_provider[0].enqueue(replies.text("cut", finish_reason="length"))
    result = oai.responses.create(model="m", input="hi")
    assert result.status == "incomplete"
    assert result.incomplete_details is not None
    assert result.incomplete_details.reason == "max_output_tokens"


# -- Anthropic Messages ----------------------------------------------------------------------


def test_messages_create_text(fake_provider: Fake, claude: anthropic.Anthropic) -> None:
    fake_provider[0].enqueue(replies.text("Hi there"))
    result = claude.messages.create(model="claude-x", max_tokens=50, messages=user())

    assert result.id.startswith("msg_") and result.type == "message" and result.model == "claude-x"
    assert result.content[0].type == "text" and result.content[0].text == "Hi there"
    assert result.stop_reason == "end_turn" and result.stop_sequence is None
    assert result.usage.output_tokens == 2 and result.usage.cache_read_input_tokens == 0
    assert fake_provider[0].last.header("anthropic-version")


def test_messages_create_tool_use(fake_provider: Fake, claude: anthropic.Anthropic) -> None:
    fake_provider[0].enqueue(replies.tool_calls([WEATHER]))
    result = claude.messages.create(model="c", max_tokens=50, messages=user())
    (block,) = result.content
    assert block.type == "tool_use" and block.id.startswith("toolu_")
    assert block.input == {"city": "Paris", "unit": "celsius"}
    assert result.stop_reason == "tool_use"


def test_messages_stream_thinking_text_and_tool(
    fake_provider: Fake,
    claude: anthropic.Anthropic,
) -> None:
    reply = replies.thinking("Weigh the options carefully", "Here it is", signature="c2ln")
    fake_provider[0].enqueue(replies.tool_calls([WEATHER], content="Let me look"), reply)

    with claude.messages.stream(model="c", max_tokens=50, messages=user()) as stream:
        assert "".join(stream.text_stream) == "Let me look"
        tool_message = stream.get_final_message()
    with claude.messages.stream(model="c", max_tokens=50, messages=user()) as stream:
        thought = stream.get_final_message()

    text, tool = tool_message.content
    assert text.type == "text" and tool.type == "tool_use"
    assert tool.input == {"city": "Paris", "unit": "celsius"}
    assert tool_message.stop_reason == "tool_use" and tool_message.usage.output_tokens == 8
    thinking, answer = thought.content
    assert thinking.type == "thinking" and thinking.signature == "c2ln"
    assert thinking.thinking == "Weigh the options carefully"
    assert answer.type == "text" and answer.text == "Here it is"


async def test_messages_async_stream(fake_provider: Fake) -> None:
    fake_provider[0].enqueue(replies.text("async claude"))
    url = fake_provider[1].url
    client = anthropic.AsyncAnthropic(base_url=url, api_key="x", max_retries=0)
    async with client, client.messages.stream(model="c", max_tokens=9, messages=user()) as s:
        message = await s.get_final_message()
    assert message.content[0].type == "text" and message.content[0].text == "async claude"


def test_count_tokens(fake_provider: Fake, claude: anthropic.Anthropic) -> None:
    result = claude.messages.count_tokens(model="c", messages=user("count me please"))
    assert result.input_tokens == len(fake_provider[0].last.body) // 4
    assert fake_provider[0].queued == 0


# -- errors ----------------------------------------------------------------------------------


def test_openai_error_maps_to_sdk_exception(fake_provider: Fake, oai: openai.OpenAI) -> None:
    fake_provider[0].enqueue(replies.openai_error(429, "Slow down", "requests", "rate_limit"))
    with pytest.raises(openai.RateLimitError) as caught:
        oai.chat.completions.create(model="m", messages=user(), stream=True)
    assert caught.value.status_code == 429 and "Slow down" in str(caught.value)
    assert caught.value.code == "rate_limit" and caught.value.type == "requests"


def test_anthropic_error_maps_to_sdk_exception(
    fake_provider: Fake,
    claude: anthropic.Anthropic,
) -> None:
    fake_provider[0].enqueue(replies.anthropic_error(429, "rate_limit_error", "Too many"))
    with pytest.raises(anthropic.RateLimitError) as caught:
        claude.messages.create(model="c", max_tokens=5, messages=user())
    assert caught.value.status_code == 429 and "Too many" in str(caught.value)


async def test_error_is_relayed_verbatim(fake_provider: Fake) -> None:
    provider, server = fake_provider
    provider.enqueue(replies.error(503, b"not json at all", {"retry-after": "7"}))
    async with (
        aiohttp.ClientSession() as session,
        session.post(server.url + "/v1/messages", json={}) as resp,
    ):
        assert (resp.status, await resp.read()) == (503, b"not json at all")
        assert resp.headers["Content-Type"] == "application/json"
        assert resp.headers["retry-after"] == "7" and resp.headers["request-id"]


async def test_unknown_path_and_models(fake_provider: Fake) -> None:
    url = fake_provider[1].url
    async with aiohttp.ClientSession() as session:
        async with session.post(url + "/v1/nope?x=1", json={}) as resp:
            body = await resp.json()
            assert resp.status == 404 and body["error"]["param"] is None
            assert body["error"]["message"] == "Invalid URL (POST /v1/nope)"
        async with session.get(url + "/v1/models") as resp:
            assert (await resp.json())["object"] == "list"
    assert fake_provider[0].received[0].path == "/v1/nope?x=1"


# -- raw bytes -------------------------------------------------------------------------------


async def _raw(url: str, body: dict[str, Any]) -> tuple[str, bytes]:
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as resp:
        return resp.headers["Content-Type"], await resp.read()


async def test_raw_stream_bytes(fake_provider: Fake) -> None:
    url = fake_provider[1].url
    kind, chat = await _raw(url + "/v1/chat/completions", {"model": "m", "stream": True})
    assert kind == "text/event-stream; charset=utf-8"
    assert chat.startswith(b'data: {"id":"chatcmpl-') and chat.endswith(b"data: [DONE]\n\n")

    _, messages = await _raw(url + "/v1/messages", {"model": "c", "stream": True})
    assert messages.startswith(b'event: message_start\ndata: {"type":"message_start","message"')
    names = [line[7:] for line in messages.split(b"\n") if line.startswith(b"event: ")]
    assert names == [
        b"message_start",
        b"content_block_start",
        b"ping",
        b"content_block_delta",
        b"content_block_stop",
        b"message_delta",
        b"message_stop",
    ]

    _, events = await _raw(url + "/v1/responses", {"model": "m", "stream": True})
    assert events.startswith(b'event: response.created\ndata: {"type":"response.created"')
    assert b"[DONE]" not in events

    kind, whole = await _raw(url + "/v1/chat/completions", {"model": "m"})
    assert kind == "application/json" and whole.startswith(b'{\n  "id": "chatcmpl-')


# -- timing ----------------------------------------------------------------------------------


def test_delay_holds_back_the_headers(fake_provider: Fake, oai: openai.OpenAI) -> None:
    fake_provider[0].enqueue(replies.text("late", delay=0.3))
    started = time.monotonic()
    oai.chat.completions.create(model="m", messages=user())
    assert time.monotonic() - started >= 0.3


def test_client_timeout_during_delay_is_seen(fake_provider: Fake) -> None:
    provider, server = fake_provider
    provider.enqueue(replies.text("too late", delay=30))
    url = server.url + "/v1"
    client = openai.OpenAI(base_url=url, api_key="x", max_retries=0, timeout=0.3)
    with client, pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="m", messages=user())
    assert provider.wait_for_disconnect(5) and provider.disconnects == 1


def test_hang_records_the_disconnect(fake_provider: Fake, oai: openai.OpenAI) -> None:
    provider, _ = fake_provider
    provider.enqueue(replies.text("never finishes", hang=True))
    stream = oai.chat.completions.create(model="m", messages=user(), stream=True)
    first = [next(stream), next(stream)]
    assert first[1].choices[0].delta.content == "never"
    stream.close()
    assert provider.wait_for_disconnect(5) and provider.disconnects == 1


async def test_hang_on_anthropic_stream(fake_provider: Fake) -> None:
    provider, server = fake_provider
    provider.enqueue(replies.text("stuck here", hang=True))
    async with aiohttp.ClientSession() as session:
        resp = await session.post(server.url + "/v1/messages", json={"stream": True})
        seen = b""
        while b"content_block_delta" not in seen:
            seen += await resp.content.readany()
        resp.close()
    assert await asyncio.to_thread(provider.wait_for_disconnect, 5)


# -- litellm ---------------------------------------------------------------------------------


def test_litellm_reaches_the_fake(fake_provider: Fake) -> None:
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    import litellm

    provider, server = fake_provider
    provider.enqueue(replies.text("from litellm"))
    url = server.url + "/v1"
    # Our own client, closed here: litellm would otherwise cache one (and its open socket)
    # for the rest of the session.
    with openai.OpenAI(base_url=url, api_key="x", max_retries=0) as client:
        result: Any = litellm.completion(
            model="openai/fake", api_base=url, api_key="x", messages=user(), client=client
        )
    assert result.choices[0].message.content == "from litellm"
    assert provider.last.json()["model"] == "fake"


# -- network guard ---------------------------------------------------------------------------


def test_loopback_guard(fake_provider: Fake) -> None:
    assert is_loopback("127.0.0.5") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("10.0.0.1") and not is_loopback("example.com")
    uninstall = install_loopback_guard()
    try:
        with pytest.raises(RuntimeError, match="test tried to reach"):
            socket.create_connection(("203.0.113.9", 443), timeout=0.1)
        with socket.socket() as sock, pytest.raises(RuntimeError, match=r"203\.0\.113\.9"):
            sock.connect(("203.0.113.9", 80))
        with socket.create_connection(("127.0.0.1", fake_provider[1].port)):
            pass
    finally:
        uninstall()
