"""What the proxy does with the client's credentials: pass them on, keep only a fingerprint.

A key never reaches the store or the logs. The fingerprint (a short SHA-256 prefix) is enough
to tell which key made a call, and cannot be turned back into the key.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache

from multidict import CIMultiDict, CIMultiDictProxy


@lru_cache(maxsize=4096)
def fingerprint(secret: str) -> str:
    """`fp_` + the first 12 hex digits of the key's SHA-256; cached, keys repeat."""
    # surrogatepass: a header's non-UTF-8 bytes arrive as lone surrogates, and must not raise
    return "fp_" + hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def client_key(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> str | None:
    """The credential the client sent: a bearer token or Anthropic's `x-api-key`."""
    auth = headers.get("Authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token else auth
    return headers.get("x-api-key")


def apply_upstream_key(headers: CIMultiDict[str], *, key: str, anthropic: bool) -> None:
    """Replace the client's credential with the configured one (when the config sets one)."""
    if not key:
        return
    # Every copy goes: a client sending a header twice must not get its second one through.
    headers.popall("Authorization", None)
    headers.popall("x-api-key", None)
    if anthropic:
        headers["x-api-key"] = key
    else:
        headers["Authorization"] = f"Bearer {key}"


def key_allowed(
    headers: CIMultiDictProxy[str] | CIMultiDict[str], allowed: tuple[str, ...]
) -> bool:
    """Whether the request carries one of `allowed` (`server.client_keys`) as a bearer token or
    as `x-api-key`. Every presented key is compared with every allowed one, by SHA-256 digest
    and `hmac.compare_digest`, so the time taken says nothing about how close a guess was."""
    expected = _digests(allowed)
    found = False
    for presented in (_bearer(headers.get("Authorization")), headers.get("x-api-key")):
        if presented:
            digest = secret_digest(presented)
            for key in expected:
                found |= hmac.compare_digest(digest, key)
    return found


def _bearer(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def secret_digest(secret: str) -> bytes:
    """SHA-256 of a secret, for `hmac.compare_digest`: equal length whatever was sent, so the
    time taken tells nothing of the secret's length, and any header text hashes (a header's
    non-UTF-8 bytes arrive as lone surrogates)."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


@lru_cache(maxsize=8)
def _digests(keys: tuple[str, ...]) -> tuple[bytes, ...]:
    """Once per configuration, not per request."""
    return tuple(secret_digest(key) for key in keys)
