"""proxy/credentials.py: key fingerprints, the client's key, and the upstream key swap."""

from __future__ import annotations

import hashlib
import re

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from proxy.credentials import apply_upstream_key, client_key, fingerprint

KEY = "sk-proj-Abc123DEF456ghi789JKL012mno345PQR678stu901"


def headers(*items: tuple[str, str]) -> CIMultiDict[str]:
    return CIMultiDict(items)


# fingerprint


def test_a_fingerprint_is_fp_and_a_sha256_prefix() -> None:
    value = fingerprint(KEY)
    assert re.fullmatch(r"fp_[0-9a-f]{12}", value)
    assert value == "fp_" + hashlib.sha256(KEY.encode()).hexdigest()[:12]


def test_a_fingerprint_is_stable_and_tells_keys_apart() -> None:
    assert fingerprint(KEY) == fingerprint(str(KEY))
    keys = [KEY, KEY + "x", KEY[:-1], "sk-ant-api03-other", "", "é"]
    assert len({fingerprint(k) for k in keys}) == len(keys)


@pytest.mark.parametrize("secret", [KEY, "abcdef012345", "0123456789abcdef" * 4])
def test_a_fingerprint_never_contains_the_key(secret: str) -> None:
    value = fingerprint(secret)
    assert secret not in value
    assert len(value) < 16
    for start in range(len(secret) - 5):  # not even a six-character piece of it
        assert secret[start : start + 6] not in value


# client_key


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Authorization", f"Bearer {KEY}"),
        ("authorization", f"bearer {KEY}"),
        ("AUTHORIZATION", f"BEARER {KEY}"),
        ("Authorization", f"Bearer   {KEY}  "),
    ],
)
def test_a_bearer_token_is_the_key(name: str, value: str) -> None:
    assert client_key(headers((name, value))) == KEY


@pytest.mark.parametrize("name", ["x-api-key", "X-Api-Key", "X-API-KEY"])
def test_anthropics_header_is_the_key(name: str) -> None:
    assert client_key(headers((name, KEY))) == KEY


def test_the_authorization_header_wins_over_x_api_key() -> None:
    both = headers(("x-api-key", "from-x-api-key"), ("Authorization", f"Bearer {KEY}"))
    assert client_key(both) == KEY


def test_an_empty_authorization_falls_back_to_x_api_key() -> None:
    assert client_key(headers(("Authorization", ""), ("x-api-key", KEY))) == KEY


@pytest.mark.parametrize("value", [f"Basic {KEY}", KEY, "Bearer"])
def test_another_authorization_scheme_is_kept_whole(value: str) -> None:
    assert client_key(headers(("Authorization", value))) == value


def test_no_credential_is_none() -> None:
    assert client_key(headers()) is None
    assert client_key(headers(("Content-Type", "application/json"))) is None


def test_request_headers_as_a_read_only_proxy_are_read_too() -> None:
    assert client_key(CIMultiDictProxy(headers(("Authorization", f"Bearer {KEY}")))) == KEY


# apply_upstream_key


def test_without_a_configured_key_the_clients_credentials_pass_through() -> None:
    for anthropic in (False, True):
        sent = headers(("Authorization", "Bearer client"), ("x-api-key", "client-x"))
        apply_upstream_key(sent, key="", anthropic=anthropic)
        assert list(sent.items()) == [("Authorization", "Bearer client"), ("x-api-key", "client-x")]


def test_openai_upstreams_get_the_configured_bearer_token() -> None:
    sent = headers(("authorization", "Bearer client"), ("X-Api-Key", "client-x"), ("Accept", "*/*"))
    apply_upstream_key(sent, key="sk-configured", anthropic=False)
    assert sent.getall("Authorization") == ["Bearer sk-configured"]
    assert "x-api-key" not in sent
    assert sent["Accept"] == "*/*"


def test_anthropic_upstreams_get_the_configured_x_api_key() -> None:
    sent = headers(("Authorization", "Bearer client"), ("x-api-key", "client-x"), ("A", "b"))
    apply_upstream_key(sent, key="sk-ant-configured", anthropic=True)
    assert sent.getall("x-api-key") == ["sk-ant-configured"]
    assert "Authorization" not in sent
    assert sent["A"] == "b"


@pytest.mark.parametrize("anthropic", [False, True])
def test_the_configured_key_is_added_when_the_client_sent_none(anthropic: bool) -> None:
    sent = headers()
    apply_upstream_key(sent, key="configured", anthropic=anthropic)
    expected = ("x-api-key", "configured") if anthropic else ("Authorization", "Bearer configured")
    assert list(sent.items()) == [expected]
