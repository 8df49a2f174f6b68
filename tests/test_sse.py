"""core/formats/sse.py: reading server-sent events as they arrive, in any chunking."""

import pytest

from core.formats.sse import SSEDecoder, SSEEvent, iter_events, json_data

# As Anthropic sends it: `event:` lines, CRLF-free, a multi-byte character inside a delta.
ANTHROPIC = (
    b"event: message_start\n"
    b'data: {"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant",'
    b'"content":[],"model":"claude-sonnet-4-5","stop_reason":null,"stop_sequence":null,'
    b'"usage":{"input_tokens":69,"output_tokens":2}}}\n\n'
    b"event: ping\n"
    b'data: {"type":"ping"}\n\n'
    b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta",'
    b'"text":"925 \xc3\xb7 5 = 185 \xf0\x9f\x8e\x89"}}\n\n'
    b"event: message_stop\n"
    b'data: {"type":"message_stop"}\n\n'
)


def decode_in_pieces(raw: bytes, cuts: list[int]) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    start = 0
    for cut in [*cuts, len(raw)]:
        events += decoder.feed(raw[start:cut])
        start = cut
    return events + decoder.flush()


def test_events_carry_type_and_data() -> None:
    events = list(iter_events(ANTHROPIC))
    assert [e.event for e in events] == [
        "message_start",
        "ping",
        "content_block_delta",
        "message_stop",
    ]
    assert "925 ÷ 5 = 185 🎉" in events[2].data


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_every_line_ending(newline: bytes) -> None:
    raw = b"event: a\ndata: 1\n\ndata: 2\n\n"
    events = list(iter_events(raw.replace(b"\n", newline)))
    assert events == [SSEEvent("a", "1"), SSEEvent(None, "2")]


def test_multiline_data_comments_and_odd_fields() -> None:
    raw = (
        b": keep-alive comment\n"
        b"data: first\n"
        b"data:second\n"  # no space after the colon
        b"data\n"  # a field name alone means an empty value
        b"id: 7\n"
        b"retry: 100\n"
        b"\n"
        b"event: no-data\n"
        b"\n"  # a block without data dispatches nothing
        b"data:  two spaces\n\n"
    )
    assert list(iter_events(raw)) == [
        SSEEvent(None, "first\nsecond\n"),
        SSEEvent(None, " two spaces"),
    ]


def test_missing_final_blank_line_still_delivers() -> None:
    assert list(iter_events(b"data: a\n\ndata: b\n")) == [SSEEvent(None, "a"), SSEEvent(None, "b")]
    assert list(iter_events(b"data: a\n\ndata: b")) == [SSEEvent(None, "a"), SSEEvent(None, "b")]


def test_byte_order_mark_is_not_part_of_the_first_field() -> None:
    assert list(iter_events(b"\xef\xbb\xbfevent: x\ndata: 1\n\n")) == [SSEEvent("x", "1")]
    assert decode_in_pieces(b"\xef\xbb\xbfdata: 1\n\n", [1, 2]) == [SSEEvent(None, "1")]


def test_decoder_matches_whole_parse_at_every_single_split() -> None:
    expected = list(iter_events(ANTHROPIC))
    for cut in range(len(ANTHROPIC) + 1):  # includes cuts inside ÷ and inside the emoji
        assert decode_in_pieces(ANTHROPIC, [cut]) == expected, cut


@pytest.mark.parametrize("newline", [b"\r\n", b"\r"])
def test_decoder_one_byte_at_a_time(newline: bytes) -> None:
    raw = ANTHROPIC.replace(b"\n", newline)
    assert decode_in_pieces(raw, list(range(1, len(raw)))) == list(iter_events(ANTHROPIC))


def test_decoder_crlf_split_between_cr_and_lf_adds_no_blank_line() -> None:
    raw = b"data: a\r\ndata: b\r\n\r\n"
    cut = raw.index(b"\r\n") + 1
    assert decode_in_pieces(raw, [cut]) == [SSEEvent(None, "a\nb")]


def test_decoder_returns_events_as_soon_as_complete() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b'data: {"a":') == []
    assert decoder.feed(b" 1}\n") == []
    assert decoder.feed(b"\ndata: [DO") == [SSEEvent(None, '{"a": 1}')]
    assert decoder.feed(b"NE]") == []
    assert decoder.flush() == [SSEEvent(None, "[DONE]")]
    assert decoder.flush() == []


def test_decoder_flush_on_trailing_cr() -> None:
    assert decode_in_pieces(b"data: x\r", []) == [SSEEvent(None, "x")]


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    assert list(iter_events(b"data: \xff\n\n")) == [SSEEvent(None, "\ufffd")]


def test_json_data() -> None:
    assert json_data(SSEEvent(None, '{"type":"ping"}')) == {"type": "ping"}
    assert json_data(SSEEvent(None, "[DONE]")) is None
    assert json_data(SSEEvent(None, '{"cut": "off')) is None
    assert json_data(SSEEvent(None, "[1, 2]")) is None
    assert json_data(SSEEvent(None, "")) is None
