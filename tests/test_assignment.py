"""proxy/assignment.py: a session's arm is a pure function of its key, shares are respected,
disjoint canaries never share a session, independent ones do."""

from __future__ import annotations

from proxy.assignment import NO_CANARY, Slot, arm_of, bucket, possible_arms

A = Slot("a-00001", False, 0, 2000)
B = Slot("b-00002", False, 2000, 5000)
C = Slot("c-00003", True, 0, 5000)
D = Slot("d-00004", True, 0, 5000)


def test_the_same_key_always_lands_in_the_same_bucket() -> None:
    assert bucket("book", "", "s\0abc") == bucket("book", "", "s\0abc")
    assert bucket("book", "", "s\0abc") != bucket("other", "", "s\0abc")
    assert 0 <= bucket("book", "x", "y") < 10_000


def test_no_key_or_no_canary_is_control() -> None:
    assert arm_of("book", (A,), None) is NO_CANARY
    assert arm_of("book", (), "s\0abc") is NO_CANARY


def test_disjoint_canaries_split_sessions_by_their_shares() -> None:
    arms = [arm_of("book", (A, B), f"s\0{i}") for i in range(4000)]
    assert all(len(arm) <= 1 for arm in arms)
    in_a = sum(A.skill_id in arm for arm in arms) / len(arms)
    in_b = sum(B.skill_id in arm for arm in arms) / len(arms)
    assert abs(in_a - 0.2) < 0.03 and abs(in_b - 0.3) < 0.03


def test_independent_canaries_overlap_as_chance_says() -> None:
    arms = [arm_of("book", (C, D), f"s\0{i}") for i in range(4000)]
    both = sum(arm == {C.skill_id, D.skill_id} for arm in arms) / len(arms)
    assert abs(both - 0.25) < 0.03


def test_possible_arms_are_few_for_disjoint_canaries() -> None:
    assert possible_arms((A, B)) == [frozenset(), {A.skill_id}, {B.skill_id}]
    assert len(possible_arms((A, B, C, D))) == 3 * 4
