"""Which existing skill a new lesson is close to, and what the learner's model says of the pair.

Embedding similarity finds the close pairs (`learner.similarity`: paraphrases score high, but so
do contradictions, since "always refund" and "never refund" share every word but one); the
learner's model then judges each pair as the same lesson, a refinement, a contradiction or a
different one (`learner.pair_judge`), and the skill manager acts on the verdict.
"""

from __future__ import annotations

from core.config import LearnerConfig
from learner.llm import LLMError
from learner.manager import Verdict, close_pairs
from learner.pair_judge import InvalidVerdict, pair_prompt, parse_verdict
from learner.reflection import Reflection
from learner.reflector import Ask, Spend
from learner.similarity import LexicalSimilarity, SkillSimilarity, default_similarity
from store.records import Skill


def similarity_for(settings: LearnerConfig) -> tuple[SkillSimilarity, float]:
    """The similarity the settings ask for (the lexical one where the embedding model is not
    installed), and the threshold: the setting's, or the measured default of the one in use."""
    similar: SkillSimilarity = (
        default_similarity() if settings.similarity == "embedding" else LexicalSimilarity()
    )
    return similar, settings.similarity_threshold or similar.threshold


def judge_close_pairs(
    ask: Ask,
    settings: LearnerConfig,
    reflection: Reflection,
    known: list[Skill],
    similar: SkillSimilarity,
    threshold: float,
    spend: Spend,
) -> dict[str, Verdict]:
    """The learner's model's verdict on each lesson close to an existing skill. A pair it
    could not judge (an outage, a malformed answer) is left out: read as the same lesson,
    so it becomes evidence, as before there was a judge, and never a duplicate."""
    if not settings.judge_pairs:
        return {}
    verdicts: dict[str, Verdict] = {}
    for text, existing in close_pairs(
        reflection, known, threshold=threshold, similar=similar.most_similar
    ):
        try:
            answer = ask(pair_prompt(text, existing.content))
        except LLMError:
            continue
        spend.add(answer)
        try:
            verdicts[text] = parse_verdict(answer)[0]
        except InvalidVerdict:
            continue
    return verdicts
