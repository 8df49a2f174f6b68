"""What a learned skill must look like, and when two skills say the same thing.

Rules (`RULES`, in the order applied): first safety, whatever the wording: no secret (a key, a
token, a password), no hidden characters, nothing aimed at the model's instructions, the proxy or
the skillbook, nothing telling the agent to reveal or ask for credentials (trace content is
untrusted: a conversation must not be able to talk the learner into a skill such as "ignore
previous instructions"). Then form, kept loose on purpose: one line within the store's length
cap, one sentence that names its situation ("When X, do Y.", "Always do Y when X.", "Confirm X
before Y."), a comma closing an opening trigger clause.

Similarity is offline and model-free: the mean of word and character trigram cosine similarity,
good enough to catch the same lesson worded a little differently.
"""

from __future__ import annotations

import itertools
import math
import re
import unicodedata
from collections import Counter

from store.rules import MAX_CONTENT_CHARS, MIN_CONTENT_CHARS, check_content

RULES = (
    "secret",
    "hidden characters",
    "instructions",
    "proxy",
    "credentials",
    "one line",
    "length",
    "situation",
    "comma",
    "one action",
)
"""Every rule `check_skill_text` applies, in the order it applies them: safety first, so a
text that breaks several is refused for the one that matters most."""

CONJUNCTIONS = ("when", "whenever", "if", "unless", "before", "after", "once", "while", "until")
"""A skill that opens with one of these opens with its trigger clause, closed by a comma."""
SITUATION_WORDS = frozenset(
    {
        *CONJUNCTIONS,
        *("for", "on", "in", "at", "with", "without", "during", "instead", "rather", "than"),
        *("every", "each", "whether", "where", "that", "which", "who", "whose", "by", "from"),
        *("to", "about", "via", "per", "under", "over", "into", "through", "between"),
        *("against", "except", "as"),
    }
)
"""Words that tie an action to a situation ("... when ...", "... before ...", "... for ...")."""
SPECIFIC_WORDS = 5
"""A text with no situation word is a standing rule ("Never log access tokens or session
cookies."); below this many words it is a platitude ("Always double-check the dates.")."""

_CREDENTIAL = (
    r"(?:pass(?:word|wd|phrase|code)s?|pwd|pin (?:code|number)s?|api[ _-]?keys?|access[ _-]?keys?|"
    r"secret(?:[ _-]?keys?)?s?|private[ _-]?keys?|credentials?|"
    r"(?:access|auth|bearer|api|refresh|session)[ _-]?tokens?)"
)
_SECRET_VALUE = re.compile(
    r"\b(?:sk|pk|rk)-(?:[a-z0-9]+-)*[A-Za-z0-9_]{16,}"  # OpenAI, Anthropic and similar keys
    r"|\b(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{10,}"  # Stripe
    r"|\bA(?:KIA|SIA)[0-9A-Z]{16}\b"  # AWS access key id
    r"|\bgh[pousr]_[A-Za-z0-9]{20,}|\bgithub_pat_[A-Za-z0-9_]{20,}"  # GitHub
    r"|\bxox[abposr]-[A-Za-z0-9-]{10,}"  # Slack
    r"|\bAIza[0-9A-Za-z_-]{30,}"  # Google
    r"|\beyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{6,}"  # a JSON web token
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----"
    r"|\bbearer\s+(?=[A-Za-z0-9._~+/-]*\d)[A-Za-z0-9._~+/-]{12,}"
    r"|://[^/\s:@]+:[^/\s@]+@",  # a password in a URL
    re.IGNORECASE,
)
_ASSIGNED = re.compile(
    rf"\b{_CREDENTIAL}\s*(?P<sep>[:=]|\bis\b|\bwas\b|\s)\s*(?P<value>[\"'`]?[^\s\"'`,;]+)",
    re.IGNORECASE,
)
_DISCLOSE = re.compile(
    r"\b(?:reveal(?:ing)?|shar(?:e|ing)|disclos(?:e|ing)|print(?:ing)?|output(?:ting)?|"
    r"past(?:e|ing)|leak(?:ing)?|expos(?:e|ing)|giv(?:e|ing)|tell(?:ing)?|show(?:ing)?|"
    r"log(?:ging)?(?!\s+(?:in|on|out|into)\b)|e-?mail(?:ing)?|repeat(?:ing)?|ask(?:ing)?|"
    r"request(?:ing)?|collect(?:ing)?)\b"
    rf"(?P<between>(?:\W+\w+){{0,5}}?)\W+{_CREDENTIAL}\b",
    re.IGNORECASE,
)
_BENIGN = re.compile(
    r"\b(?:reset|change|changing|update|rotate|renew|forgot|forgotten|forget|recover|recovery|"
    r"expired|new|strong|weak|check|verify|configure|set|regenerate|revoke|manager|policy|hint|"
    r"how to|where|find|create|generate|enter|type)\b",
    re.IGNORECASE,
)
_BENIGN_AFTER = re.compile(
    r"\s+(?:reset|change|manager|policy|requirements?|rules?|strength|hint|recovery|expiry|"
    r"expiration|field|prompt|page|form|link)\b",
    re.IGNORECASE,
)
_NEGATION = re.compile(
    r"\b(?:never|not|no|don't|do not|avoid|without|refuse|decline|instead of|rather than)\b",
    re.IGNORECASE,
)
_INJECTION = re.compile(
    r"\bsystem\s+(?:prompt|instructions?)s?\b|\b(?:developer|hidden)\s+(?:prompt|message|"
    r"instructions?)s?\b|\b(?:previous|prior|above|earlier|preceding)\s+(?:instructions|prompts?)\b"
    r"|\bjailbr[eo]ak\w*|\b(?:dan|developer|god)\s+mode\b|\bdo anything now\b|\byou are now\b"
    r"|\bact as (?:an? )?(?:unrestricted|unfiltered|jailbroken)\b"
    r"|\bpretend (?:you have|there are) no\b|<\|[a-z_]+\|>|\[/?inst\]|</?(?:system|instructions?)>",
    re.IGNORECASE,
)
_OVERRIDE = re.compile(
    r"\b(?:ignore|disregard|forget)\b(?:\W+\w+){0,3}?\W+(?:instructions?|prompts?|guidelines|"
    r"directives|polic(?:y|ies)|guardrails|safety)\b|\b(?:ignore|disregard|forget)\W+(?:all|any|"
    r"every|your)\W+(?:\w+\W+)?rules\b|\b(?:bypass|circumvent|evade)\b(?:\W+\w+){0,3}?\W+"
    r"(?:guardrails|safety|filters?|moderation|restrictions)\b",
    re.IGNORECASE,
)
_UNTRUSTED_SOURCE = re.compile(
    r"\s+(?:that\s+(?:appear|come|arrive)|found|in|inside|from|within|embedded|contained|printed|"
    r"written|on)\b",
    re.IGNORECASE,
)
_META = re.compile(
    r"skill[ _-]?proxy|\bskill[ _-]?books?\b|\bskill[ _-]?ids?\b|\b(?:this|these) skills?\b|"
    r"\b(?:this|the) proxy\b(?!\s+(?:settings?|server|configuration|config|address|port))|"
    r"\bskills?\b(?:\W+\w+){0,3}?\W+(?:helpful|harmful)\b",
    re.IGNORECASE,
)
_SENTENCE_BREAK = re.compile(r"[.!?][\"')\]]?\s+[A-Z]")
_SKILL_WORD = re.compile(r"[a-z0-9']+(?:-[a-z0-9']+)*")
_WORD = re.compile(r"[a-z0-9']+")


class RuleViolation(ValueError):
    """The proposed text is not an acceptable skill. `rule` is one of `RULES`; the message
    starts with it and says what the rule asks. A message never quotes a secret it found."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(f"{rule}: {message}")
        self.rule = rule


def check_skill_text(content: str) -> str:
    """`content` without outer space if it is an acceptable skill, else a `RuleViolation`."""
    text = content.strip()
    _check_safety(text)
    if any(mark in text for mark in "\n\r\u2028\u2029"):
        raise RuleViolation("one line", "a skill is a single line: one situation, one action")
    if len(text) < MIN_CONTENT_CHARS:
        raise RuleViolation("length", f"a skill is at least {MIN_CONTENT_CHARS} characters")
    if len(text) > MAX_CONTENT_CHARS:
        raise RuleViolation(
            "length", f"a skill is at most {MAX_CONTENT_CHARS} characters, got {len(text)}"
        )
    words = _SKILL_WORD.findall(text.lower())
    if not SITUATION_WORDS.intersection(words) and len(words) < SPECIFIC_WORDS:
        raise RuleViolation(
            "situation",
            "a skill names the situation it is for: it starts with its trigger (When/If/Before "
            f"...), says it (... when ..., ... before ...), or is a rule of {SPECIFIC_WORDS} "
            "words or more",
        )
    if words[0] in CONJUNCTIONS and "," not in text:
        raise RuleViolation(
            "comma", "a skill that opens with its trigger closes it with a comma, then the action"
        )
    if ";" in text or _SENTENCE_BREAK.search(text):
        raise RuleViolation("one action", "a skill is one sentence, one action, not a list")
    return check_content(text)  # the store's own rules, which the above already imply


def _check_safety(text: str) -> None:
    """The rules that keep secrets and attacks out, whatever the wording of the rest."""
    if _SECRET_VALUE.search(text) or _long_random_run(text) or _assigned_secret(text):
        raise RuleViolation(
            "secret", "a skill may not contain a secret (an API key, a token or a password)"
        )
    if any(unicodedata.category(c) in ("Cc", "Cf", "Co", "Cs") for c in text if c not in "\n\r"):
        raise RuleViolation(
            "hidden characters",
            "a skill may not contain control, invisible or direction-changing characters",
        )
    override = _OVERRIDE.search(text)
    if _INJECTION.search(text) or (
        override is not None
        and not _UNTRUSTED_SOURCE.match(text, override.end())
        and not _negated(text, override.start())
    ):
        raise RuleViolation(
            "instructions",
            "a skill may not address the model's instructions (to reveal, ignore or replace "
            "them): that is prompt injection",
        )
    if _META.search(text):
        raise RuleViolation(
            "proxy", "a skill may not address the proxy, the skillbook, its skills or the learner"
        )
    opener = _SKILL_WORD.findall(text.lower())[:1]
    action = text.split(",", 1)[-1] if opener and opener[0] in CONJUNCTIONS else text
    for found in _DISCLOSE.finditer(action):
        between = found.group("between")
        benign = _BENIGN.search(between) or _BENIGN_AFTER.match(action, found.end())
        if not benign and not _negated(action, found.start()):
            raise RuleViolation(
                "credentials",
                "a skill may not address credentials: it may not tell the agent to reveal, "
                "send, log or ask for a password, key or token",
            )


def _assigned_secret(text: str) -> bool:
    """A credential word given a value: `password: x`, `api_key=x`, `the PIN is 4821`."""
    for found in _ASSIGNED.finditer(text):
        separator, value = found.group("sep").strip(), found.group("value")
        if separator in (":", "="):
            return True
        quoted = value[0] in "\"'`"
        if quoted or any(not c.isalpha() for c in value.rstrip(".!?")):
            return True
    return False


def _long_random_run(text: str) -> bool:
    """A run of 20+ letters and digits that mixes them like a generated key, not a word."""
    for run in re.findall(r"[A-Za-z0-9]{20,}", text):
        digits = sum(c.isdigit() for c in run)
        switches = sum(a.isdigit() != b.isdigit() for a, b in itertools.pairwise(run))
        if digits >= 2 and len(run) - digits >= 2 and switches >= 4:
            return True
    return False


def _negated(text: str, position: int) -> bool:
    """Whether the clause before `position` says not to (`Never ...`, `Do not ...`)."""
    clause = re.split(r"[,.;:!?]", text[:position])[-1]
    return _NEGATION.search(clause) is not None


def similarity(a: str, b: str) -> float:
    return (_cosine(_words(a), _words(b)) + _cosine(_trigrams(a), _trigrams(b))) / 2


def most_similar(text: str, candidates: dict[str, str]) -> tuple[str | None, float]:
    """The id of the candidate closest to `text`, and the score (0 when there are none)."""
    best_id, best = None, 0.0
    for skill_id, other in candidates.items():
        score = similarity(text, other)
        if score > best:
            best_id, best = skill_id, score
    return best_id, best


def _words(text: str) -> Counter[str]:
    return Counter(_WORD.findall(text.lower()))


def _trigrams(text: str) -> Counter[str]:
    squashed = " ".join(_WORD.findall(text.lower()))
    return Counter(squashed[i : i + 3] for i in range(max(0, len(squashed) - 2)))


def _cosine(a: Counter[str], b: Counter[str]) -> float:
    if not a or not b:
        return 0.0
    dot = sum(count * b[key] for key, count in a.items() if key in b)
    return dot / (
        math.sqrt(sum(v * v for v in a.values())) * math.sqrt(sum(v * v for v in b.values()))
    )
