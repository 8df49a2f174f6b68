// What a reviewer reads of a reflection (GET /admin/reflections/{seq}): the diagnosis of the
// conversation that produced a skill's evidence (`diagnosisView`, on the queue), or every field
// the reflector answered (`reflectionView`, on the episode page).

import { h } from "./dom.js";

const FIELDS = [
  ["What went wrong", "what_went_wrong"],
  ["Root cause", "root_cause"],
  ["Key insight", "key_insight"],
];

/** The diagnosis of `found` (a stored reflection) under `title`, or null when it has none. */
export function diagnosisView(found, title) {
  const answer = found?.reflection || {};
  const rows = FIELDS.filter(([, key]) => answer[key]);
  if (!rows.length) return null;
  return h(
    "div",
    { class: "diagnosis" },
    title ? h("h3", {}, title) : null,
    h("dl", {}, rows.map(([label, key]) => [h("dt", {}, label), h("dd", {}, answer[key])])),
  );
}

const ALL_FIELDS = [
  ["What happened", "what_happened"],
  ["What went wrong", "what_went_wrong"],
  ["Root cause", "root_cause"],
  ["Correct approach", "correct_approach"],
  ["Key insight", "key_insight"],
];

function listed(value) {
  return Array.isArray(value) && value.length ? value : null;
}

function lessonView(lesson) {
  if (typeof lesson !== "object" || lesson === null) return h("li", {}, String(lesson));
  return h("li", {}, lesson.section ? [h("span", { class: "badge section" }, lesson.section), " "]
    : null, lesson.content ?? "", lesson.reason ? h("span", { class: "muted" },
    ` (${lesson.reason})`) : null);
}

/** Every field of a stored reflection (GET /admin/episodes/{id}): the episode page's view. */
export function reflectionView(stored) {
  const answer = stored.reflection || {};
  const known = new Set([...ALL_FIELDS.map(([, key]) => key), "skill_tags", "new_skills",
    "new_skill"]);
  const tags = listed(answer.skill_tags);
  const lessons = listed(answer.new_skills) || (answer.new_skill ? [answer.new_skill] : null);
  const rest = Object.entries(answer).filter(([key, value]) => !known.has(key) &&
    value !== null && value !== undefined && !(Array.isArray(value) && !value.length));
  return h(
    "div",
    { class: "reflection", dataset: { seq: stored.seq } },
    h("h3", {}, `Reflection ${stored.seq}`,
      h("span", { class: "muted" }, ` · run ${stored.run}`)),
    h("dl", { class: "facts" },
      ALL_FIELDS.filter(([, key]) => answer[key]).map(([label, key]) => [
        h("dt", {}, label), h("dd", { dataset: { field: key } }, String(answer[key]))]),
      tags ? [h("dt", {}, "Skill tags"), h("dd", { dataset: { field: "skill_tags" } },
        tags.map((tag) => h("code", { class: "tag" },
          typeof tag === "object" ? `${tag.skill_id}: ${tag.tag}` : tag)))]
        : null,
      lessons ? [h("dt", {}, "New skills"), h("dd", { dataset: { field: "new_skills" } },
        h("ul", {}, lessons.map(lessonView)))] : null,
      rest.map(([key, value]) => [h("dt", {}, key), h("dd", { dataset: { field: key } },
        typeof value === "string" ? value : h("code", {}, JSON.stringify(value)))])),
  );
}
