// The skill editor the queue and the skill page share: section and content, saved with
// PATCH /admin/skills/{id}, and for a skill that is not active yet, approved in the same click.

import { patch, post, segment } from "./api.js";
import { h } from "./dom.js";

const MAX_CONTENT = 400;

/** Save `changes` to skill `id`, then approve it when asked; the skill as it ends up. */
export async function saveSkill(id, changes, approve) {
  let skill = await patch(`/skills/${segment(id)}`, changes);
  if (approve) skill = await post(`/skills/${segment(id)}/approve`);
  return skill;
}

/** A form for `skill`; `onDone(skill | null)` after a save (the new skill) or a cancel. */
export function skillEditor(skill, onDone, fail) {
  const section = h("input", { name: "section", value: skill.section, maxlength: 40 });
  const content = h("textarea", { name: "content", rows: 3, maxlength: MAX_CONTENT });
  content.value = skill.content;
  const count = h("span", { class: "muted" });
  const counted = () => {
    count.textContent = `${content.value.length} / ${MAX_CONTENT}`;
  };
  content.addEventListener("input", counted);
  counted();
  const approvable = skill.status === "pending" || skill.status === "rejected";

  const save = async (approve) => {
    const changes = {};
    if (content.value.trim() !== skill.content) changes.content = content.value.trim();
    if (section.value.trim() !== skill.section) changes.section = section.value.trim();
    if (!Object.keys(changes).length && !approve) {
      onDone(null);
      return;
    }
    try {
      const saved = Object.keys(changes).length
        ? await saveSkill(skill.id, changes, approve)
        : await post(`/skills/${segment(skill.id)}/approve`);
      onDone(saved);
    } catch (exc) {
      fail(exc);
    }
  };

  const form = h(
    "form",
    {
      class: "editor",
      onsubmit: (event) => {
        event.preventDefault();
        save(approvable);
      },
      onkeydown: (event) => {
        if (event.key === "Escape") onDone(null);
        if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
          event.preventDefault();
          save(approvable);
        }
      },
    },
    h("label", {}, "Section ", section),
    h("label", {}, "Content ", content),
    count,
    h(
      "div",
      { class: "actions" },
      approvable
        ? h("button", { type: "submit", class: "primary", name: "save-approve" },
          "Save and approve")
        : null,
      h("button", {
        type: approvable ? "button" : "submit",
        class: approvable ? "" : "primary",
        name: "save",
        onclick: approvable ? () => save(false) : null,
      }, "Save"),
      h("button", { type: "button", name: "cancel", onclick: () => onDone(null) }, "Cancel"),
    ),
  );
  queueMicrotask(() => content.focus());
  return form;
}
