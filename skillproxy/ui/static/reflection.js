// What a reviewer reads of a reflection (GET /admin/reflections/{seq}): the diagnosis of the
// conversation that produced a skill's evidence.

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
