"""Personal data and secrets found in text, and replaced before it is kept or shown to a model.

Two kinds of rule live here, both pure functions over text, their regular expressions compiled
once (at import for the built-in ones, when a `Redactor` is made for the operator's):

- **Personal data** (`Redactor`, made from `[privacy]` by `redactor_for`): e-mail addresses,
  phone numbers, payment card numbers and IBANs become `[EMAIL]`, `[PHONE]`, `[CARD]`, `[IBAN]`,
  and each of the operator's `patterns` becomes `[REDACTED]`; every call says how many of each
  kind it replaced. Detectors check what they can, so ordinary numbers survive: a card number
  is 13-19 digits (spaces or dashes between them allowed) starting with 2-6 that passes the Luhn
  check; an IBAN has a known country code, that country's length and a valid mod-97 checksum; a
  phone number is international (`+44 20 7946 0958`) or in a common national shape (`(415)
  555-2671`, `415-555-2671`, `020 7946 0958`, `06 12 34 56 78`), never a bare run of digits (an
  order id) nor a date or a time. They run in that order (e-mail, IBAN, card, phone, the
  operator's patterns), each over the text the previous left.
- **Secrets in URLs and headers** (`redact_query`, `redact_header`, `redact_urls`): the values
  of parameters named in `traces.redact_params` (case-insensitive, percent-encoded names too)
  become `***`.

`redact_json` applies a `Redactor` to every string inside a parsed JSON value (object keys are
left alone), so a body stays valid JSON of the same shape.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from core.config import PrivacyConfig

KINDS = ("email", "iban", "card", "phone")
"""The built-in detectors, in the order they run."""
PATTERN = "pattern"
"""The kind counted for a match of one of the operator's `patterns`."""
PLACEHOLDERS = {
    "email": "[EMAIL]",
    "iban": "[IBAN]",
    "card": "[CARD]",
    "phone": "[PHONE]",
    PATTERN: "[REDACTED]",
}
MASK = "***"
"""What the value of a parameter named in `traces.redact_params` becomes."""

Counts = dict[str, int]

# -- e-mail ------------------------------------------------------------------------------------

# The lookbehind starts a match only where a run of address characters starts, which keeps the
# scan linear on long runs without an "@" (base64, ids).
_EMAIL = re.compile(
    r"(?<![\w.%+-])[\w.%+-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.[A-Za-z]{2,24}(?![\w-])"
)

# -- IBAN --------------------------------------------------------------------------------------

IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip
"""Country code -> IBAN length, from the SWIFT IBAN registry."""

# Written whole (DE89370400440532013000) or in groups of four (DE89 3704 0044 0532 0130 00).
_IBAN = re.compile(
    r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}"
    r"(?:[A-Za-z0-9]{11,30}|(?: [A-Za-z0-9]{4}){2,7}(?: [A-Za-z0-9]{1,4})?)(?![A-Za-z0-9])"
)


def valid_iban(text: str) -> bool:
    """A known country, its length, and the ISO 13616 mod-97 check; spaces are ignored."""
    iban = text.replace(" ", "").upper()
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban.isalnum() or not iban.isascii():
        return False
    digits = "".join(str(int(c, 36)) for c in iban[4:] + iban[:4])
    return int(digits) % 97 == 1


# -- card numbers ------------------------------------------------------------------------------

_CARD = re.compile(r"(?<![\d.,/-])[2-6](?:[ -]?\d){12,18}(?![\d]|[.,/-]\d)")


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _valid_card(text: str) -> bool:
    digits = text.replace(" ", "").replace("-", "")
    return 13 <= len(digits) <= 19 and luhn_valid(digits)


# -- phone numbers -----------------------------------------------------------------------------

_PHONE = re.compile(
    r"""
    (?<![\w+.,/:-])
    (?:
        \+\d{1,3}(?:[ .-]?(?:\(\d{1,4}\)|\d{1,4})){1,5}    # +44 20 7946 0958, +14155552671
      | \(\d{2,5}\)[ .-]?\d{2,4}(?:[ .-]?\d{2,4}){1,2}     # (415) 555-2671, (020) 7946 0958
      | \d{3}[ .-]\d{3}[ .-]\d{4}                          # 415-555-2671, 415.555.2671
      | 0\d{1,4}(?:[ .-]\d{2,8}){1,4}                      # 020 7946 0958, 06 12 34 56 78
    )
    (?![\w/:-]|[.,]\d)
    """,
    re.VERBOSE,
)


def _valid_phone(text: str) -> bool:
    digits = sum(c.isdigit() for c in text)
    if text.startswith("+"):
        return 8 <= digits <= 15  # E.164: at most 15 digits, country code included
    return 9 <= digits <= 12


# -- the redactor ------------------------------------------------------------------------------

_HAS_DIGIT = re.compile(r"\d").search
_Check = Callable[[str], bool]
_DETECTORS: dict[str, tuple[re.Pattern[str], _Check, str]] = {
    # kind: (pattern, check of a candidate, the characters that separate its groups)
    "email": (_EMAIL, lambda _: True, ""),
    "iban": (_IBAN, valid_iban, " "),
    "card": (_CARD, _valid_card, " -"),
    "phone": (_PHONE, _valid_phone, " .-"),
}


def _prefixes(text: str, separators: str) -> Iterable[str]:
    """`text`, then each shorter prefix that ends before a separator: a greedy match may have
    swallowed a group of whatever follows the number."""
    yield text
    if separators:
        for end in range(len(text) - 1, 0, -1):
            if text[end] in separators:
                yield text[:end]


@dataclass(frozen=True)
class Redactor:
    """Built-in detectors by kind, plus compiled operator patterns. Make one with
    `redactor_for` (cached), not per call."""

    kinds: tuple[str, ...] = KINDS
    patterns: tuple[re.Pattern[str], ...] = ()
    _subs: tuple[tuple[str, Callable[[str, Counts], str]], ...] = field(
        default=(), init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        subs = [(kind, _detector(kind)) for kind in KINDS if kind in self.kinds]
        subs += [(PATTERN, _pattern_sub(p)) for p in self.patterns]
        object.__setattr__(self, "_subs", tuple(subs))

    @property
    def active(self) -> bool:
        return bool(self._subs)

    def text(self, text: str, counts: Counts | None = None) -> str:
        """`text` with every match replaced; `counts` (kind -> n) is added to in place."""
        tally: Counts = {} if counts is None else counts
        for _kind, sub in self._subs:
            text = sub(text, tally)
        return text

    def __call__(self, text: str) -> tuple[str, Counts]:
        counts: Counts = {}
        return self.text(text, counts), counts


def _detector(kind: str) -> Callable[[str, Counts], str]:
    pattern, check, separators = _DETECTORS[kind]
    placeholder = PLACEHOLDERS[kind]
    needs = "@" if kind == "email" else None  # the others all need a digit

    def quick(text: str) -> bool:
        return needs in text if needs else _HAS_DIGIT(text) is not None

    def sub(text: str, counts: Counts) -> str:
        if not quick(text):
            return text
        out: list[str] = []
        found, pos, done = 0, 0, 0
        while (match := pattern.search(text, pos)) is not None:
            start, candidate = match.start(), match.group(0)
            kept = next((p for p in _prefixes(candidate, separators) if check(p)), None)
            if kept is None:  # not one: later starts inside it may still be
                pos = start + 1
                continue
            out += (text[done:start], placeholder)
            found += 1
            pos = done = start + len(kept)  # what a greedy match took beyond it is read again
        if not found:
            return text
        out.append(text[done:])
        counts[kind] = counts.get(kind, 0) + found
        return "".join(out)

    return sub


def _pattern_sub(pattern: re.Pattern[str]) -> Callable[[str, Counts], str]:
    def sub(text: str, counts: Counts) -> str:
        out, found = pattern.subn(PLACEHOLDERS[PATTERN], text)
        if found:
            counts[PATTERN] = counts.get(PATTERN, 0) + found
        return out

    return sub


@functools.lru_cache(maxsize=16)
def _cached(kinds: tuple[str, ...], patterns: tuple[str, ...]) -> Redactor:
    return Redactor(kinds, tuple(re.compile(p) for p in patterns))


def redactor_for(privacy: PrivacyConfig) -> Redactor:
    """The redactor `[privacy]` asks for (`detect` and `patterns`), compiled once per setting."""
    return _cached(tuple(privacy.detect), tuple(privacy.patterns))


def redact_json(value: Any, redactor: Redactor, counts: Counts | None = None) -> Any:
    """`value` (parsed JSON) with every string redacted, object keys untouched. Containers are
    rebuilt, not changed in place, and walked without recursion (JSON may nest deeply)."""
    tally: Counts = {} if counts is None else counts
    if isinstance(value, str):
        return redactor.text(value, tally)
    if not isinstance(value, dict | list):
        return value
    root: list[Any] = [value]
    stack: list[tuple[Any, Any, Any]] = [(root, 0, value)]  # (parent copy, slot, original)
    while stack:
        parent, slot, node = stack.pop()
        if isinstance(node, dict):
            copy: dict[str, Any] | list[Any] = dict(node)
            items: Iterable[tuple[Any, Any]] = node.items()
        else:
            copy = list(node)
            items = enumerate(node)
        parent[slot] = copy
        for key, item in items:
            if isinstance(item, str):
                copy[key] = redactor.text(item, tally)
            elif isinstance(item, dict | list):
                stack.append((copy, key, item))
    return root[0]


def total(counts: Counts) -> int:
    return sum(counts.values())


# -- parameters in URLs and headers ------------------------------------------------------------

_QUERY_PARAM = re.compile(r"(^|[&;])([^=&;#]+)=([^&;#]*)")
_HEADER_PARAM = re.compile(r"(^|[?&;,\s])([^=?&;,\s#]+)=([^&;,\s#]*)")
_QUERY_IN_TEXT = re.compile(r"\?([^\s'\"<>]+)")


def param_names(names: Iterable[str]) -> frozenset[str]:
    """`traces.redact_params` as the lower-case set the functions below take."""
    return frozenset(name.strip().lower() for name in names if name.strip())


def _plain_name(raw: str) -> str:
    """A parameter's name as a server reads it: percent-decoded (twice-encoded too), any case."""
    name = raw
    for _ in range(3):
        decoded = unquote_plus(name)
        if decoded == name:
            break
        name = decoded
    return name.strip().lower()


def _masked(pattern: re.Pattern[str], text: str, names: frozenset[str]) -> str:
    if "=" not in text or not names:
        return text

    def mask(match: re.Match[str]) -> str:
        lead, name, value = match.groups()
        if value and _plain_name(name) in names:
            return f"{lead}{name}={MASK}"
        return match.group(0)

    return pattern.sub(mask, text)


def redact_query(target: str, names: frozenset[str]) -> str:
    """A request target (`/v1/x?key=sk-1&a=b`) with the named parameters' values masked
    (`/v1/x?key=***&a=b`); the path itself is left alone."""
    path, sep, query = target.partition("?")
    if not sep or "=" not in query:
        return target
    return f"{path}?{_masked(_QUERY_PARAM, query, names)}"


def redact_header(value: str, names: frozenset[str]) -> str:
    """A header value with the named parameters masked: `a/b; token=x`, or a URL's query."""
    return _masked(_HEADER_PARAM, value, names)


def redact_urls(text: str, names: frozenset[str]) -> str:
    """Free text (an error message) with the named parameters masked in any query it quotes."""
    if "?" not in text or "=" not in text or not names:
        return text
    return _QUERY_IN_TEXT.sub(lambda m: "?" + _masked(_QUERY_PARAM, m.group(1), names), text)
