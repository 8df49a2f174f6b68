"""The reflector's answer: a diagnosis of one episode and the skill changes it supports.

The model answers in JSON; these models validate it. Anything malformed gets one repair
attempt by the reflector; unknown keys are ignored, so a chatty model is not a failure.

The diagnosis follows ACE's reflector: what happened, what went wrong, the root cause, the
correct approach and the key insight. An answer may carry several lessons (`new_skills`); the
older single `new_skill` object is still read, as the first of them, and `Reflection.new_skill`
still returns that first one. Votes are for skills the episode shows applied: `neutral` is
still accepted from a model that sends it, but the schema no longer asks for it.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


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
    correct_approach: str = ""
    key_insight: str = ""
    skill_tags: list[SkillTag] = []
    new_skills: list[NewSkill] = []
    updates: list[SkillUpdate] = []
    removals: list[SkillRemoval] = []

    @model_validator(mode="before")
    @classmethod
    def _fold_legacy_new_skill(cls, data: Any) -> Any:
        """A single `new_skill` object (the earlier schema) becomes the first of `new_skills`."""
        if not isinstance(data, dict) or "new_skill" not in data:
            return data
        data = dict(data)
        legacy = data.pop("new_skill")
        if legacy is not None:
            listed = data.get("new_skills")
            data["new_skills"] = [legacy, *listed] if isinstance(listed, list) else [legacy]
        return data

    @property
    def new_skill(self) -> NewSkill | None:
        """The first lesson, for callers that still handle one."""
        return self.new_skills[0] if self.new_skills else None

    def capped(self, max_lessons: int) -> Reflection:
        """This reflection with at most `max_lessons` new skills, the first ones."""
        if len(self.new_skills) <= max_lessons:
            return self
        return self.model_copy(update={"new_skills": self.new_skills[:max_lessons]})


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
  "correct_approach": "what the agent should have done instead, or empty if it did well",
  "key_insight": "the lesson, in one sentence",
  "skill_tags": [
    {"skill_id": "a skill in effect that this conversation shows applied", \
"tag": "helpful|harmful", "reason": "the evidence"}
  ],
  "new_skills": [
    {"section": "short lowercase topic", "content": "When <trigger>, <action>.", "reason": "..."}
  ],
  "updates": [{"skill_id": "...", "content": "When <trigger>, <action>.", "reason": "..."}],
  "removals": [{"skill_id": "...", "reason": "..."}]
}"""
