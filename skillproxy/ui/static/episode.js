// One episode (GET /admin/episodes/{id}): the conversation the learner reads as a unit, with
// its status and attempts, its traces (each linked to its page), the feedback on it, every
// reflection with all its fields, and the lessons the skill rules refused, with the rule.
// A failed episode has a Retry button that re-queues it for the next learner run.

import { get, post, segment } from "./api.js";
import { badge, fill, h, seg, toast, when } from "./dom.js";
import { reflectionView } from "./reflection.js";

function facts(episode) {
  const rows = [
    ["Skillbook", h("a", { href: `#/book/${seg(episode.skillbook)}` }, episode.skillbook)],
    ["Status", badge(episode.status)],
    ["Session", episode.session_key],
    ["First", when(episode.first_at)],
    ["Last", when(episode.last_at)],
    ["Reflected", episode.reflected_at ? when(episode.reflected_at) : null],
    ["Traces", String(episode.trace_count)],
    ["Attempts", String(episode.attempts)],
    ["Error", episode.error],
  ].filter(([, value]) => value !== null && value !== undefined);
  return h("dl", { class: "facts" }, rows.map(([label, value]) => [
    h("dt", {}, label),
    h("dd", { dataset: { fact: label.toLowerCase() } }, value),
  ]));
}

function section(title, name, items, render, empty) {
  return h("section", { class: `episode-${name}` },
    h("h2", {}, title),
    items.length ? render(items) : h("p", { class: "muted" }, empty));
}

const traceList = (traces) => h("ul", { class: "episode-traces" }, traces.map((trace) => {
  const failed = trace.error || (trace.status !== null && trace.status >= 400);
  return h("li", { class: failed ? "failed" : "" },
    h("a", { href: `#/trace/${seg(trace.id)}` }, when(trace.created_at)),
    ` ${trace.model || "—"} · ${trace.status === null ? "no answer" : trace.status}`,
    trace.error ? h("span", { class: "muted" }, ` · ${trace.error}`) : null);
}));

const feedbackList = (items) => h("ul", {}, items.map((item) => h("li", {},
  item.score !== null ? badge(`score ${item.score}`, "score") : null,
  item.label ? badge(item.label, "label") : null, " ",
  item.comment ?? "",
  h("span", { class: "muted" }, ` ${when(item.created_at)}`))));

const refusedList = (items) => h("ul", { class: "refused-lessons" }, items.map((item) =>
  h("li", {}, h("span", { class: "lesson" }, item.content), " ",
    h("span", { class: "rule" }, item.rule))));

export async function episodePage(root, args, ctx) {
  const path = `/episodes/${segment(args[0])}`;

  const retry = async () => {
    try {
      const done = await post(`${path}/retry`);
      toast(done.retried.length ? `${args[0]}: re-queued` : `${args[0]}: nothing to retry`,
        "good");
    } catch (exc) {
      ctx.fail(exc);
      return;
    }
    ctx.reload();
  };

  const episode = await get(path);
  fill(root,
    h("div", { class: "page-head" }, h("h1", {}, episode.id), badge(episode.status),
      episode.status === "failed"
        ? h("button", { type: "button", name: "retry", onclick: retry }, "Retry")
        : null),
    facts(episode),
    section("Traces", "traces", episode.traces, traceList, "None."),
    section("Feedback", "feedback", episode.feedback, feedbackList, "None."),
    section("Reflections", "reflections", episode.reflections,
      (items) => items.map(reflectionView), "Not reflected on yet."),
    section("Refused lessons", "refused", episode.refused, refusedList,
      "The skill rules refused none."),
  );
}
