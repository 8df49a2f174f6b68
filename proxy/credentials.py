"""What the proxy does with the client's credentials: pass them on, keep only a fingerprint.

A key never reaches the store or the logs. The fingerprint (a short SHA-256 prefix) is enough
to tell which key made a call, and cannot be turned back into the key.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

from multidict import CIMultiDict, CIMultiDictProxy


@lru_cache(maxsize=4096)
def fingerprint(secret: str) -> str:
    """`fp_` + the first 12 hex digits of the key's SHA-256; cached, keys repeat."""
    return "fp_" + hashlib.sha256(secret.encode()).hexdigest()[:12]


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
    if anthropic:
        headers.pop("Authorization", None)
        headers["x-api-key"] = key
    else:
        headers.pop("x-api-key", None)
        headers["Authorization"] = f"Bearer {key}"
