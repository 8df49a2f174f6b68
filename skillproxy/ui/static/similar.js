// Which existing skills a proposal resembles, by word overlap: a cheap hint for the reviewer
// that a proposal may repeat or fight a skill already there. The learner's own judgement (a
// rewording's `supersedes`, a `contradicts` flag) comes from the API and is shown beside it.

const STOP = new Set(
  ("a an and are as at be before by for from has have if in into is it its of on or so " +
    "that the their then this to was when with you your").split(" "),
);

export function wordSet(text) {
  const found = (text || "").toLowerCase().match(/[\p{L}\p{N}]+/gu) || [];
  return new Set(found.filter((word) => word.length > 1 && !STOP.has(word)));
}

/** Jaccard overlap of the two texts' content words, 0..1. */
export function overlap(a, b) {
  const left = wordSet(a);
  const right = wordSet(b);
  if (!left.size || !right.size) return 0;
  let shared = 0;
  for (const word of left) if (right.has(word)) shared++;
  return shared / (left.size + right.size - shared);
}

/** The `limit` skills of `others` closest to `skill`, at least `floor` alike, closest first. */
export function similarSkills(skill, others, { limit = 3, floor = 0.2 } = {}) {
  return others
    .filter((other) => other.id !== skill.id)
    .map((other) => ({ skill: other, score: overlap(skill.content, other.content) }))
    .filter((pair) => pair.score >= floor)
    .sort((x, y) => y.score - x.score)
    .slice(0, limit);
}
