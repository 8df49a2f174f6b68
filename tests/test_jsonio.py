"""core/jsonio.py: orjson parsing and serialising with the standard library as the fallback."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from core import jsonio

ORDINARY: Any = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": 'Héllo, 世界 🎉\n\t"quoted" \\ / \u2028 \x00'}],
    "temperature": 0.7,
    "n": 1,
    "whole_float": 1.0,
    "negative_zero": -0.0,
    "huge": 1e300,
    "flags": [True, False, None],
    "nested": {"empty_list": [], "empty_object": {}},
    "u64_max": 2**64 - 1,
    "i64_min": -(2**63),
}


@pytest.mark.parametrize("form", ["bytes", "str"])
def test_parse_reads_ordinary_json_without_the_stdlib(form: str) -> None:
    text = json.dumps(ORDINARY)
    value, stdlib = jsonio.parse(text.encode() if form == "bytes" else text)
    assert value == ORDINARY
    assert stdlib is False


def test_loads_is_the_value_parse_returns() -> None:
    assert jsonio.loads(b'{"a": [1, 2]}') == {"a": [1, 2]}
    assert jsonio.loads("[]") == []
    assert jsonio.loads("null") is None


@pytest.mark.parametrize(
    "data", [b"", b"{", b"{} x", b"{'a': 1}", b'{"a": 1,}', "nope", b"\xff\xfe", b"[1] [2]"]
)
def test_what_is_not_json_raises_value_error(data: bytes | str) -> None:
    with pytest.raises(ValueError):
        jsonio.loads(data)
    with pytest.raises(ValueError):
        jsonio.parse(data)


@pytest.mark.parametrize(
    ("data", "check"),
    [
        (b'{"t": NaN}', lambda v: math.isnan(v["t"])),
        (b'{"t": Infinity}', lambda v: v["t"] == math.inf),
        (b'{"t": -Infinity}', lambda v: v["t"] == -math.inf),
        (b'[1, {"deep": [NaN]}]', lambda v: math.isnan(v[1]["deep"][0])),
    ],
)
def test_nan_and_infinity_are_read_by_the_stdlib_and_flagged(data: bytes, check: Any) -> None:
    value, stdlib = jsonio.parse(data)
    assert stdlib is True
    assert check(value)


def test_a_value_read_with_nan_round_trips_through_stdlib_dumps() -> None:
    value, stdlib = jsonio.parse('{"a": NaN, "b": [Infinity, -Infinity], "c": "é"}'.encode())
    written = jsonio.dumps(value, stdlib=stdlib)
    assert written == '{"a":NaN,"b":[Infinity,-Infinity],"c":"é"}'.encode()
    again, flagged = jsonio.parse(written)
    assert flagged is True
    assert math.isnan(again["a"]) and again["b"] == [math.inf, -math.inf]


def test_without_the_stdlib_flag_nan_is_written_as_null() -> None:
    # Documented: orjson writes NaN back as null, which is why `parse` reports it.
    assert jsonio.dumps({"a": math.nan}) == b'{"a":null}'


def test_dumps_is_compact_utf8_with_non_ascii_as_is() -> None:
    out = jsonio.dumps({"a": [1, 2], "b": "é世🎉"})
    assert isinstance(out, bytes)
    assert out == '{"a":[1,2],"b":"é世🎉"}'.encode()
    assert b"\\u" not in out


def test_both_serialisers_write_ordinary_values_identically() -> None:
    assert jsonio.dumps(ORDINARY) == jsonio.dumps(ORDINARY, stdlib=True)


def test_dumps_then_parse_round_trips() -> None:
    value, stdlib = jsonio.parse(jsonio.dumps(ORDINARY))
    assert value == ORDINARY
    assert stdlib is False


@pytest.mark.parametrize("number", [2**64, 2**100, -(2**63) - 1, -(10**30)])
def test_integers_beyond_64_bits_are_written_exactly(number: int) -> None:
    assert jsonio.dumps(number) == str(number).encode()
    assert jsonio.dumps({"n": [number]}) == f'{{"n":[{number}]}}'.encode()
    assert json.loads(jsonio.dumps({"n": number})) == {"n": number}


@pytest.mark.parametrize("number", [2**63 - 1, 2**63, 2**64 - 1, -(2**63), 0, -1])
def test_integers_within_64_bits_are_read_exactly(number: int) -> None:
    value, stdlib = jsonio.parse(str(number))
    assert value == number and type(value) is int
    assert stdlib is False


def test_integers_beyond_64_bits_are_read_as_floats() -> None:
    # The one documented difference from the standard library.
    value, stdlib = jsonio.parse(str(2**64))
    assert value == float(2**64)
    assert stdlib is False


def test_values_no_json_can_hold_are_refused() -> None:
    with pytest.raises(TypeError):
        jsonio.dumps({"a": object()})
    with pytest.raises(TypeError):
        jsonio.dumps({1, 2})
