"""learner/similarity.py: the embedding model separates the labelled skill pairs of
tests/fixtures/skill_pairs.json at the recorded threshold, loads once, and falls back to the
lexical score when it is not installed."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from learner.similarity import (
    LEXICAL_SAME_LESSON,
    MINILM,
    SAME_LESSON,
    Encoder,
    LexicalSimilarity,
    ModelFileError,
    PackagedFile,
    Similarity,
    clauses,
    default_similarity,
    shared_encoder,
)
from learner.skill_rules import check_skill_text, most_similar, similarity

ROOT = Path(__file__).resolve().parent.parent
PAIRS = [
    (p["a"], p["b"], p["label"])
    for p in json.loads((ROOT / "tests/fixtures/skill_pairs.json").read_text())["pairs"]
]
needs_model = pytest.mark.skipif(
    bool(MINILM.missing()),
    reason=f"the embeddings extra is not installed: {', '.join(MINILM.missing())}",
)


def over(scores: list[tuple[float, str]], threshold: float, label: str) -> int:
    return sum(1 for score, kind in scores if kind == label and score >= threshold)


def test_the_labelled_pairs_are_valid_skills_under_three_labels() -> None:
    labels = [label for *_, label in PAIRS]
    assert len(PAIRS) >= 80
    assert set(labels) == {"same", "different", "contradicts"}
    assert min(labels.count(label) for label in set(labels)) >= 30
    assert len({(a, b) for a, b, _ in PAIRS}) == len(PAIRS)
    for a, b, _ in PAIRS:
        assert check_skill_text(a) == a and check_skill_text(b) == b


@needs_model
def test_the_model_separates_same_from_the_rest_at_the_recorded_threshold() -> None:
    """Measured: precision 0.444, recall 0.957 (44 of 46), 23 of 49 different pairs over."""
    model = Similarity()
    scores = [(model.score(a, b), label) for a, b, label in PAIRS]
    flagged = sum(1 for score, _ in scores if score >= SAME_LESSON)
    same = over(scores, SAME_LESSON, "same")
    assert same / flagged >= 0.42
    assert same / sum(1 for *_, label in PAIRS if label == "same") >= 0.93
    assert over(scores, SAME_LESSON, "different") <= 25
    lexical = [(similarity(a, b), label) for a, b, label in PAIRS]
    assert over(lexical, LEXICAL_SAME_LESSON, "same") <= 5  # what this module is for


@needs_model
def test_contradictions_score_like_paraphrases_so_every_close_pair_needs_the_judge() -> None:
    model = Similarity()
    scores = [(model.score(a, b), label) for a, b, label in PAIRS]
    contradictions = sum(1 for *_, label in PAIRS if label == "contradicts")
    assert over(scores, SAME_LESSON, "contradicts") >= 0.9 * contradictions


@needs_model
def test_scores_are_deterministic_across_loads() -> None:
    fresh = Similarity(Encoder(MINILM, cache_size=0))
    shared = Similarity()
    for a, b, _ in PAIRS[:: len(PAIRS) // 12]:
        assert fresh.score(a, b) == shared.score(a, b)


@needs_model
def test_most_similar_finds_the_paraphrase_the_lexical_score_misses() -> None:
    text = "If an order arrived broken, request a picture of it before you send a new one."
    skills = {
        "photo": "When a customer reports a damaged package, ask for a photo of the damage "
        "before issuing a replacement.",
        "tracking": "When a user asks for the status of a delivery, share the tracking link "
        "from the order record.",
        "tests": "When a test fails, read the full assertion message before editing the code.",
    }
    match, score = Similarity().most_similar(text, skills)
    assert match == "photo" and score >= SAME_LESSON
    assert similarity(text, skills["photo"]) < LEXICAL_SAME_LESSON
    assert Similarity().most_similar(text, {}) == (None, 0.0)


@needs_model
def test_the_model_loads_once_whatever_the_threads() -> None:
    encoder = Encoder(MINILM)
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def embed(i: int) -> None:
        start.wait()
        try:
            encoder.embed(f"When request {i} arrives, answer it.")
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=embed, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == [] and encoder.loads == 1
    assert shared_encoder() is shared_encoder()
    assert Similarity().encoder is shared_encoder()


@needs_model
def test_vectors_are_cached_by_text_and_read_only() -> None:
    encoder = Encoder(MINILM, cache_size=2)
    first = encoder.embed("When the build fails, fix the first error.")
    assert encoder.embed("When the build fails, fix the first error.") is first
    assert not first.flags.writeable
    encoder.embed("one")
    encoder.embed("two")  # the cache holds two texts: the first is gone
    assert encoder.embed("When the build fails, fix the first error.") is not first


@needs_model
def test_a_model_file_that_is_not_the_measured_one_is_refused() -> None:
    wrong = replace(MINILM, onnx=replace(MINILM.onnx, sha256="0" * 64))
    encoder = Encoder(wrong)
    with pytest.raises(ModelFileError, match="not the 0000"):
        encoder.embed("When asked, answer.")
    assert encoder.loads == 0


def test_without_the_model_the_default_is_the_lexical_fallback() -> None:
    absent = replace(MINILM, onnx=PackagedFile("no-such-model-package", "model.onnx", "0" * 64))
    assert absent.missing()[-1] == "no-such-model-package:model.onnx"
    fallback = default_similarity(absent)
    assert isinstance(fallback, LexicalSimilarity)
    assert fallback.threshold == LEXICAL_SAME_LESSON
    skills = {str(i): b for i, (_, b, _) in enumerate(PAIRS[:20])}
    for a, b, _ in PAIRS[:20]:
        assert fallback.score(a, b) == similarity(a, b)
        assert fallback.most_similar(a, skills) == most_similar(a, skills)
    with pytest.raises(ModelFileError, match="not installed"):
        Encoder(absent).embed("When asked, answer.")


@needs_model
def test_with_the_model_installed_the_default_is_the_embedding_similarity() -> None:
    chosen = default_similarity()
    assert isinstance(chosen, Similarity) and chosen.threshold == SAME_LESSON


def test_importing_and_choosing_loads_no_model_runtime() -> None:
    """The proxy imports the learner at start: the runtime's import time waits for a score."""
    code = (
        "import sys; from learner.similarity import default_similarity; default_similarity(); "
        "print(sorted({'onnxruntime', 'numpy'} & set(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("skill", "parts"),
    [
        (
            "When a refund is requested, check the date.",
            ("When a refund is requested", "check the date"),
        ),
        ("If it fails, retry once, then stop.", ("If it fails", "retry once, then stop")),
        (
            "Always check the date before approving a refund.",
            ("before approving a refund", "Always check the date"),
        ),
        (
            "Reply in French when the user writes in French.",
            ("when the user writes in French", "Reply in French"),
        ),
        (
            "Never log access tokens or session cookies.",
            ("Never log access tokens or session cookies",) * 2,
        ),
        (
            "On a timeout from the search tool, retry once with a shorter query.",
            ("On a timeout from the search tool", "retry once with a shorter query"),
        ),
        (
            "Check if the order has shipped before changing the address.",
            ("before changing the address", "Check if the order has shipped"),
        ),
        ("When the build fails.", ("When the build fails",) * 2),
    ],
)
def test_a_skill_splits_into_its_situation_and_its_action(
    skill: str, parts: tuple[str, str]
) -> None:
    assert clauses(skill) == parts
