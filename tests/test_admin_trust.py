"""Who counts as "on loopback" for the admin API without a token (skillproxy/admin/guard.py).

Behind a reverse proxy on the same host every connection comes from 127.0.0.1, so the peer
alone cannot open the API: a request that carries forwarding headers is not a local one,
unless the peer is one of `server.trusted_proxies`, whose `X-Forwarded-For` (right-most
address that is not itself a trusted proxy) names the client. Raw requests set the headers
exactly as a proxy, or an attacker, would.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from multidict import CIMultiDict

from skillproxy.admin.guard import forwarded_chains, parse_address
from tests.harness import ADMIN_TOKEN, RunningProxy

OPEN = {"token": ""}


def get(proxy: RunningProxy, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.get(proxy.url + "/admin/skillbooks", headers=headers or {})


def refused(response: httpx.Response) -> bool:
    if response.status_code != 403:
        assert response.status_code == 200, response.text
        return False
    assert response.json()["error"]["code"] == "admin_loopback_only"
    return True


def test_a_direct_loopback_client_needs_no_token(make_proxy: Callable[..., RunningProxy]) -> None:
    assert not refused(get(make_proxy(admin=OPEN)))


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-For": "203.0.113.9"},
        {"X-Forwarded-For": "127.0.0.1"},  # a forwarded request is not a local one
        {"Forwarded": "for=203.0.113.9;proto=https"},
        {"Forwarded": 'for="[2001:db8::7]:4711"'},
        {"X-Real-IP": "203.0.113.9"},
    ],
)
def test_a_forwarded_request_from_an_untrusted_peer_is_refused(
    make_proxy: Callable[..., RunningProxy], headers: dict[str, str]
) -> None:
    proxy = make_proxy(admin=OPEN)
    response = get(proxy, headers)
    assert refused(response)
    assert "server.trusted_proxies" in response.json()["error"]["message"]


def test_loopback_is_not_trusted_as_a_proxy_by_being_loopback(
    make_proxy: Callable[..., RunningProxy],
) -> None:
    proxy = make_proxy(admin=OPEN, server={"trusted_proxies": ["10.0.0.0/8"]})
    assert refused(get(proxy, {"X-Forwarded-For": "127.0.0.1"}))
    assert not refused(get(proxy))


@pytest.mark.parametrize(
    ("headers", "allowed"),
    [
        ({"X-Forwarded-For": "127.0.0.1"}, True),
        ({"X-Forwarded-For": "::1"}, True),
        ({"Forwarded": "for=127.0.0.1"}, True),
        ({"X-Forwarded-For": "203.0.113.9"}, False),
        ({"X-Forwarded-For": "203.0.113.9:51234"}, False),
        # A client that writes its own header is not believed: the trusted proxy appends
        # the address it saw, and the right-most untrusted address is the client.
        ({"X-Forwarded-For": "127.0.0.1, 203.0.113.9"}, False),
        ({"X-Forwarded-For": "203.0.113.9, 127.0.0.1"}, False),
        ({"X-Forwarded-For": "unknown"}, False),
        ({"X-Forwarded-For": "127.0.0.1", "Forwarded": "for=203.0.113.9"}, False),
        ({"X-Forwarded-For": "127.0.0.1", "X-Real-IP": "203.0.113.9"}, False),
        ({"Forwarded": "proto=https"}, False),
    ],
)
def test_a_trusted_proxy_names_the_client(
    make_proxy: Callable[..., RunningProxy], headers: dict[str, str], allowed: bool
) -> None:
    proxy = make_proxy(admin=OPEN, server={"trusted_proxies": ["127.0.0.1"]})
    assert refused(get(proxy, headers)) is not allowed


def test_a_trusted_proxy_without_forwarding_headers_is_the_client(
    make_proxy: Callable[..., RunningProxy],
) -> None:
    proxy = make_proxy(admin=OPEN, server={"trusted_proxies": ["127.0.0.0/8"]})
    assert not refused(get(proxy))


def test_the_token_opens_the_api_to_forwarded_requests(
    make_proxy: Callable[..., RunningProxy],
) -> None:
    proxy = make_proxy()
    headers = {"X-Forwarded-For": "203.0.113.9", "Authorization": f"Bearer {ADMIN_TOKEN}"}
    assert get(proxy, headers).status_code == 200
    assert get(proxy, {"X-Forwarded-For": "127.0.0.1"}).status_code == 401


def test_addresses_are_read_as_proxies_write_them() -> None:
    assert str(parse_address("203.0.113.9:443")) == "203.0.113.9"
    assert str(parse_address('"[2001:db8::1]:4711"')) == "2001:db8::1"
    assert str(parse_address("::ffff:127.0.0.1")) == "127.0.0.1"
    assert str(parse_address("fe80::1%eth0")) == "fe80::1"
    assert parse_address("unknown") is None and parse_address("_hidden") is None
    headers = CIMultiDict(
        [("X-Forwarded-For", "a, b"), ("x-forwarded-for", "c"), ("Forwarded", "for=d, for=e")]
    )
    chains = forwarded_chains(headers)
    assert chains == {"X-Forwarded-For": ["a", "b", "c"], "Forwarded": ["d", "e"]}
