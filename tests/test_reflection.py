"""learner/reflection.py: parsing and validating the reflector model's JSON answer."""

from __future__ import annotations

import json
import re
from typing import Any, get_args

import pytest

from learner.reflection import (
    SCHEMA_TEXT,
    InvalidAnswer,
    NewSkill,
    Reflection,
    SkillTag,
    parse_reflection,
)

FULL: dict[str, Any] = {
    "what_happened": "The customer asked to return shoes; the agent asked for the address first.",
    "what_went_wrong": "The return window had already closed.",
    "root_cause": "The agent did not check the order date.",
    "key_insight": "Check the return window before collecting shipping details.",
    "skill_tags": [
        {"skill_id": "returns-00001", "tag": "harmful", "reason": "sent the label too early"},
        {"skill_id": "tone-00002", "tag": "helpful"},
    ],
    "new_skill": {
        "section": "returns",
        "content": "When a customer asks to return an item, verify the return window first.",
        "reason": "the window was missed",
    },
    "updates": [{"skill_id": "returns-00001", "content": "When asked, do it.", "reason": "r"}],
    "removals": [{"skill_id": "tone-00003", "reason": "never used"}],
}


def problems(answer: str) -> str:
    with pytest.raises(InvalidAnswer) as caught:
        parse_reflection(answer)
    return str(caught.value)


def test_a_full_answer_is_read_field_by_field() -> None:
    reflection = parse_reflection(json.dumps(FULL))
    assert isinstance(reflection, Reflection)
    assert reflection.what_happened == FULL["what_happened"]
    assert reflection.root_cause == FULL["root_cause"]
    assert [(t.skill_id, t.tag, t.reason) for t in reflection.skill_tags] == [
        ("returns-00001", "harmful", "sent the label too early"),
        ("tone-00002", "helpful", ""),
    ]
    assert reflection.new_skill is not None
    assert reflection.new_skill.section == "returns"
    assert reflection.new_skill.content.startswith("When a customer asks")
    assert [(u.skill_id, u.content) for u in reflection.updates] == [
        ("returns-00001", "When asked, do it.")
    ]
    assert [(r.skill_id, r.reason) for r in reflection.removals] == [("tone-00003", "never used")]


def test_only_what_happened_is_required() -> None:
    reflection = parse_reflection('{"what_happened": "nothing much"}')
    assert reflection.what_happened == "nothing much"
    assert reflection.what_went_wrong == reflection.root_cause == reflection.key_insight == ""
    assert reflection.skill_tags == [] and reflection.updates == [] and reflection.removals == []
    assert reflection.new_skill is None


def test_defaults_are_not_shared_between_answers() -> None:
    first = parse_reflection('{"what_happened": "a"}')
    first.skill_tags.append(SkillTag(skill_id="x", tag="neutral"))
    assert parse_reflection('{"what_happened": "b"}').skill_tags == []


def test_new_skill_may_be_null() -> None:
    assert parse_reflection('{"what_happened": "a", "new_skill": null}').new_skill is None


def test_a_json_code_fence_is_tolerated() -> None:
    answer = "```json\n" + json.dumps(FULL, indent=2) + "\n```"
    assert parse_reflection(answer) == parse_reflection(json.dumps(FULL))


def test_prose_around_the_object_is_tolerated() -> None:
    answer = f"Here is my analysis of the episode:\n\n{json.dumps(FULL)}\n\nLet me know if..."
    assert parse_reflection(answer).key_insight == FULL["key_insight"]


def test_unknown_keys_are_ignored_at_every_level() -> None:
    answer = {
        "what_happened": "a",
        "confidence": 0.9,
        "skill_tags": [{"skill_id": "s-1", "tag": "neutral", "weight": 3}],
        "new_skill": {"section": "x", "content": "When a, b.", "priority": "high"},
    }
    reflection = parse_reflection(json.dumps(answer))
    assert reflection.skill_tags == [SkillTag(skill_id="s-1", tag="neutral")]
    assert reflection.new_skill == NewSkill(section="x", content="When a, b.")
    assert not hasattr(reflection, "confidence")


@pytest.mark.parametrize("answer", ["", "I could not analyse this episode.", "} nothing {", "[]"])
def test_an_answer_without_an_object_is_refused(answer: str) -> None:
    assert "contains no JSON object" in problems(answer)


@pytest.mark.parametrize(
    "answer", ["{what_happened: 'a'}", '{"what_happened": "a",}', '{"what_happened": "a"} }']
)
def test_malformed_json_is_refused(answer: str) -> None:
    assert "not valid JSON" in problems(answer)


def test_a_missing_required_field_is_named() -> None:
    message = problems('{"root_cause": "x"}')
    assert "does not match the schema" in message
    assert "what_happened: Field required" in message


@pytest.mark.parametrize(
    ("answer", "location"),
    [
        ({"what_happened": 5}, "what_happened"),
        ({"what_happened": None}, "what_happened"),
        ({"what_happened": "a", "skill_tags": "helpful"}, "skill_tags"),
        ({"what_happened": "a", "skill_tags": [{"tag": "helpful"}]}, "skill_tags.0.skill_id"),
        ({"what_happened": "a", "new_skill": "When a, b."}, "new_skill"),
        ({"what_happened": "a", "new_skill": {"section": "x"}}, "new_skill.content"),
        ({"what_happened": "a", "new_skill": {"section": "", "content": "c"}}, "new_skill.section"),
        ({"what_happened": "a", "new_skill": {"section": "s" * 41, "content": "c"}}, "section"),
        ({"what_happened": "a", "new_skill": {"section": "s", "content": ""}}, "content"),
        ({"what_happened": "a", "updates": [{"content": "c"}]}, "updates.0.skill_id"),
        (
            {"what_happened": "a", "updates": [{"skill_id": "s", "content": ""}]},
            "updates.0.content",
        ),
        ({"what_happened": "a", "removals": [{}]}, "removals.0.skill_id"),
        ({"what_happened": "a", "removals": [{"skill_id": "s"}, 7]}, "removals.1"),
    ],
)
def test_a_wrong_value_is_refused_with_its_location(answer: dict[str, Any], location: str) -> None:
    assert f"{location}: " in problems(json.dumps(answer))


def test_content_length_caps() -> None:
    long_ok = {"section": "s" * 40, "content": "c" * 2000}
    reflection = parse_reflection(json.dumps({"what_happened": "a", "new_skill": long_ok}))
    assert reflection.new_skill is not None and len(reflection.new_skill.content) == 2000
    too_long = {"section": "s", "content": "c" * 2001}
    assert "new_skill.content: " in problems(
        json.dumps({"what_happened": "a", "new_skill": too_long})
    )


@pytest.mark.parametrize("tag", ["helpful", "harmful", "neutral"])
def test_each_tag_value_is_accepted(tag: str) -> None:
    answer = {"what_happened": "a", "skill_tags": [{"skill_id": "s-1", "tag": tag}]}
    assert parse_reflection(json.dumps(answer)).skill_tags[0].tag == tag


@pytest.mark.parametrize("tag", ["useful", "Helpful", "", None, 1])
def test_other_tag_values_are_refused(tag: object) -> None:
    answer = {"what_happened": "a", "skill_tags": [{"skill_id": "s-1", "tag": tag}]}
    assert "skill_tags.0.tag: " in problems(json.dumps(answer))


def test_every_problem_is_listed_for_the_repair() -> None:
    answer = {"skill_tags": [{"skill_id": "s", "tag": "great"}], "removals": [{}]}
    message = problems(json.dumps(answer))
    for location in ("what_happened", "skill_tags.0.tag", "removals.0.skill_id"):
        assert f"{location}: " in message


def test_invalid_answer_is_a_value_error() -> None:
    assert issubclass(InvalidAnswer, ValueError)


def test_the_schema_shown_to_the_model_names_exactly_the_reflection_fields() -> None:
    top_level = re.findall(r'^  "(\w+)":', SCHEMA_TEXT, re.MULTILINE)
    assert top_level == list(Reflection.model_fields)
    for field in NewSkill.model_fields:
        assert f'"{field}"' in SCHEMA_TEXT


def test_the_schema_lists_the_tags_the_parser_accepts() -> None:
    tags = get_args(SkillTag.model_fields["tag"].annotation)
    assert f'"{"|".join(tags)}"' in SCHEMA_TEXT


def test_the_schema_filled_in_as_shown_is_a_valid_answer() -> None:
    filled = SCHEMA_TEXT.replace(" or null", "").replace("helpful|harmful|neutral", "harmful")
    reflection = parse_reflection(filled)
    assert reflection.skill_tags[0].tag == "harmful"
    assert reflection.new_skill is not None
    assert reflection.new_skill.content == "When <trigger>, <action>."
    assert len(reflection.updates) == len(reflection.removals) == 1
