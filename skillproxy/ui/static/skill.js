// One skill: its text and status, counters, every revision with a word diff of what it changed
// and a rollback to it, the evidence (each trace opens as a conversation, with the diagnosis
// that cited it), and the outcome figures: episodes it was injected into against comparable
// ones without it; a canary control beside Approve and, once it had one, its canary panel.

import { get, post, segment } from "./api.js";
import { canaryControl, canaryPanel } from "./canary.js";
import { diffView } from "./diff.js";
import { badge, fill, h, number, seg, toast, when } from "./dom.js";
import { skillEditor } from "./editor.js";
import { diagnosisView } from "./reflection.js";

const ACTIONS = {
  pending: ["approve", "reject", "archive"],
  active: ["archive"],
  rejected: ["approve", "restore"],
  archived: ["restore"],
};

function facts(skill) {
  const link = (id) => (id ? h("a", { href: `#/skill/${seg(id)}` }, id) : null);
  const rows = [
    ["Helpful", skill.helpful],
    ["Harmful", skill.harmful],
    ["Neutral", skill.neutral],
    ["Revision", skill.revision],
    ["Created", when(skill.created_at)],
    ["Updated", when(skill.updated_at)],
    ["Rewords", link(skill.supersedes)],
    ["Reworded by", link(skill.superseded_by)],
    ["Contradicts", link(skill.contradicts)],
    ["Proposed for retirement", skill.retire_reason],
    ["Status before archiving", skill.prior_status],
    ["Deleted", skill.deleted_at ? when(skill.deleted_at) : null],
  ].filter(([, value]) => value !== null && value !== undefined);
  return h("dl", { class: "facts" }, rows.map(([label, value]) => [
    h("dt", {}, label),
    h("dd", { dataset: { fact: label.toLowerCase() } }, value),
  ]));
}

function outcomeView(outcome) {
  if (outcome instanceof Error) return h("p", { class: "error" }, outcome.message);
  const arm = (label, figures) => h("tr", {},
    h("th", { scope: "row" }, label),
    h("td", {}, String(figures.episodes)),
    h("td", {}, String(figures.with_feedback)),
    h("td", {}, number(figures.mean_score, 2)));
  return h(
    "div",
    { class: "outcomes" },
    h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, ""), h("th", {}, "Episodes"),
        h("th", {}, "With feedback"), h("th", {}, "Mean score"))),
      h("tbody", {}, arm("With the skill", outcome.with_skill),
        arm("Without it", outcome.without_skill))),
    h("p", {}, h("strong", {}, "Difference: "),
      outcome.difference === null ? "no data" : number(outcome.difference, 2),
      h("span", { class: "muted" }, ` (since ${when(outcome.since)})`)),
    outcome.note ? h("p", { class: "note muted" }, outcome.note) : null,
  );
}

function changeLine(before, after) {
  const parts = [];
  if (!before) return "created";
  for (const key of ["status", "section"]) {
    if (before[key] !== after[key]) parts.push(`${key}: ${before[key]} → ${after[key]}`);
  }
  for (const key of ["helpful", "harmful", "neutral"]) {
    if (before[key] !== after[key]) parts.push(`${key}: ${before[key]} → ${after[key]}`);
  }
  return parts.join(", ");
}

export async function skillPage(root, args, ctx) {
  const id = args[0];
  let editing = false;
  let skill;
  let outcome;
  let canary = null;
  const reflections = new Map();

  async function load() {
    const soft = (exc) => (exc.auth ? Promise.reject(exc) : exc);
    [skill, outcome] = await Promise.all([
      get(`/skills/${segment(id)}`),
      get(`/skills/${segment(id)}/outcomes`).catch(soft),
    ]);
    canary = skill.canary ? await get(`/skills/${segment(id)}/canary`).catch(soft) : null;
    const seqs = [...new Set(skill.evidence.map((e) => e.reflection).filter((s) => s != null))];
    await Promise.all(seqs.filter((seq) => !reflections.has(seq)).slice(0, 20).map(async (seq) => {
      reflections.set(seq, await get(`/reflections/${seq}`).catch(() => null));
    }));
  }

  async function act(work, message) {
    try {
      await work();
      if (message) toast(message, "good");
      await load();
    } catch (exc) {
      ctx.fail(exc);
      return;
    }
    if (!ctx.signal.aborted) render();
  }

  const transition = (action) => act(
    () => post(`/skills/${segment(id)}/${action}`),
    `${id}: ${action.replace(/e$/, "")}ed`,
  );

  const startCanary = (share) => act(
    () => post(`/skills/${segment(id)}/canary`, { share }),
    `${id}: canary for ${share}% of sessions`,
  );
  const stopCanary = () => act(() => post(`/skills/${segment(id)}/canary/stop`),
    `${id}: canary stopped`);

  const rollback = (revision) => act(
    () => post(`/skills/${segment(id)}/rollback`, { revision }),
    `${id}: rolled back to revision ${revision}`,
  );

  function history() {
    const events = [...skill.history].sort((x, y) => y.revision - x.revision);
    return h("ol", { class: "history", reversed: true }, events.map((event) => {
      const before = event.before;
      const after = event.after;
      const textChanged = !before || before.content !== after.content;
      return h(
        "li",
        { class: "revision", dataset: { revision: String(event.revision) } },
        h("header", {},
          h("strong", {}, `Revision ${event.revision}`), " ",
          badge(event.action, "action"),
          h("span", { class: "muted" }, ` by ${event.actor}, ${when(event.at)}`),
          event.revision < skill.revision
            ? h("button", { type: "button", name: "rollback", class: "small",
              onclick: () => rollback(event.revision) }, `Roll back to revision ${event.revision}`)
            : h("span", { class: "muted current" }, " (current)")),
        event.note ? h("p", { class: "note" }, "Note: ", event.note) : null,
        changeLine(before, after) ? h("p", { class: "change" }, changeLine(before, after)) : null,
        textChanged
          ? diffView(before ? before.content : "", after.content)
          : h("p", { class: "muted" }, "text unchanged"),
      );
    }));
  }

  function evidence() {
    if (!skill.evidence.length) return h("p", { class: "muted" }, "No evidence recorded.");
    return h("ul", { class: "evidence-list" }, skill.evidence.map((item) => h(
      "li",
      {},
      h("a", { href: `#/trace/${seg(item.trace_id)}`, class: "trace-link" }, item.trace_id), " ",
      badge(item.source, "source"), " ", item.reason,
      h("span", { class: "muted" }, ` ${when(item.created_at)}`),
      item.reflection != null
        ? h("div", { class: "from-reflection" },
          h("span", { class: "muted" }, `From reflection ${item.reflection}`),
          diagnosisView(reflections.get(item.reflection)))
        : null,
    )));
  }

  function render() {
    const actions = (ACTIONS[skill.status] || []).map((action) => h("button", {
      type: "button",
      name: action,
      class: action === "approve" ? "primary" : "",
      onclick: () => transition(action),
    }, action[0].toUpperCase() + action.slice(1)));
    const running = skill.canary && skill.canary.status === "running";
    const canaryable = ["pending", "active"].includes(skill.status) && !skill.deleted_at;
    if (canaryable && !running) actions.splice(1, 0, canaryControl(startCanary));
    fill(root, 
      h("div", { class: "page-head" },
        h("h1", {}, skill.id),
        badge(skill.status, `status ${skill.status}`),
        running ? badge(`canary ${skill.canary.share}%`, "canary") : null,
        badge(skill.section, "section"),
        h("a", { href: `#/book/${seg(skill.skillbook)}` }, `Skillbook ${skill.skillbook}`),
        h("a", { href: `#/queue/${seg(skill.skillbook)}` }, "Queue")),
      editing
        ? skillEditor(skill, (saved) => {
          editing = false;
          if (saved) act(async () => null, `${id}: saved`);
          else render();
        }, ctx.fail)
        : h("p", { class: "content skill-text" }, skill.content),
      editing ? null : h("div", { class: "actions" }, actions,
        h("button", { type: "button", name: "edit", onclick: () => {
          editing = true;
          render();
        } }, "Edit")),
      facts(skill),
      canary ? h("h2", {}, "Canary") : null,
      canary ? canaryPanel(canary, stopCanary) : null,
      h("h2", {}, "Outcomes"),
      outcomeView(outcome),
      h("h2", {}, `Evidence (${skill.evidence.length})`),
      evidence(),
      h("h2", {}, "History"),
      history(),
    );
  }

  await load();
  render();
}
