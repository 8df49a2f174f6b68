"""The reflector's answer: a diagnosis of one episode and the skill changes it supports.

The model answers in JSON; these models validate it. Anything malformed gets one repair
attempt by the reflector; unknown keys are ignored, so a chatty model is not a failure.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class SkillTag(_Lenient):
    skill_id: str
    tag: Literal["helpful", "harmful", "neutral"]
    reason: str = ""


class NewSkill(_Lenient):
    section: str = Field(min_length=1, max_length=40)
    content: str = Field(min_length=1, max_length=2000)
    reason: str = ""


class SkillUpdate(_Lenient):
    skill_id: str
    content: str = Field(min_length=1, max_length=2000)
    reason: str = ""


class SkillRemoval(_Lenient):
    skill_id: str
    reason: str = ""


class Reflection(_Lenient):
    what_happened: str
    what_went_wrong: str = ""
    root_cause: str = ""
    key_insight: str = ""
    skill_tags: list[SkillTag] = []
    new_skill: NewSkill | None = None
    updates: list[SkillUpdate] = []
    removals: list[SkillRemoval] = []


class InvalidAnswer(ValueError):
    """The model's text is not a valid reflection; the message says why, for the repair."""


def parse_reflection(text: str) -> Reflection:
    try:
        return Reflection.model_validate(extract_json(text))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'answer'}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidAnswer(f"the JSON does not match the schema: {problems}") from None


def extract_json(text: str) -> dict[str, Any]:
    """The JSON object in a model's answer, tolerating code fences and prose around it."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        raise InvalidAnswer("the answer contains no JSON object")
    try:
        value = json.loads(text[start : end + 1])
    except ValueError as exc:
        raise InvalidAnswer(f"the answer is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidAnswer("the answer must be a JSON object")
    return value


SCHEMA_TEXT = """{
  "what_happened": "one or two sentences",
  "what_went_wrong": "what failed or was slow, or empty if nothing did",
  "root_cause": "why, in one sentence",
  "key_insight": "the lesson, in one sentence",
  "skill_tags": [
    {"skill_id": "a skill listed as in effect", "tag": "helpful|harmful|neutral", "reason": "..."}
  ],
  "new_skill": {
    "section": "short lowercase topic", "content": "When <trigger>, <action>.", "reason": "..."
  } or null,
  "updates": [{"skill_id": "...", "content": "When <trigger>, <action>.", "reason": "..."}],
  "removals": [{"skill_id": "...", "reason": "..."}]
}"""
