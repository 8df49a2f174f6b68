// One trace: what was sent and answered, drawn as a conversation, with the skills injected
// into it at the time, the feedback on it, its status and error, and the raw bodies.

import { get, segment } from "./api.js";
import { conversationView, formatOf } from "./conversation.js";
import { badge, h, number, seg, when } from "./dom.js";

function facts(trace) {
  const rows = [
    ["Skillbook", h("a", { href: `#/book/${seg(trace.skillbook)}` }, trace.skillbook)],
    ["When", when(trace.created_at)],
    ["Route", `${trace.method} ${trace.path}`],
    ["Format", formatOf(trace) || "pass-through"],
    ["Model", trace.model],
    ["Status", trace.status === null ? "no answer" : String(trace.status)],
    ["Error", trace.error],
    ["Client hung up", trace.client_disconnected ? "yes" : null],
    ["Streamed", trace.stream ? "yes" : "no"],
    ["Latency", trace.latency_ms === null ? null : `${number(trace.latency_ms, 1)} ms`],
    ["Tokens in / out", `${trace.input_tokens ?? "—"} / ${trace.output_tokens ?? "—"}`],
    ["Session", trace.session_id],
    ["Episode", trace.episode_id
      ? h("a", { href: `#/episode/${seg(trace.episode_id)}` }, trace.episode_id)
      : null],
  ].filter(([, value]) => value !== null && value !== undefined);
  return h("dl", { class: "facts" }, rows.map(([label, value]) => [
    h("dt", {}, label),
    h("dd", { dataset: { fact: label.toLowerCase() } }, value),
  ]));
}

function injected(trace) {
  const ids = Array.isArray(trace.injected_skill_ids) ? trace.injected_skill_ids : [];
  return h(
    "div",
    { class: "injected" },
    h("h2", {}, "Skills injected"),
    ids.length
      ? h("p", {},
        h("span", { class: "muted" },
          `Skillbook version ${trace.skillbook_version ?? "—"}, ` +
          `${trace.skill_tokens ?? 0} tokens: `),
        ids.map((id, i) => [i ? ", " : "", h("a", { href: `#/skill/${seg(id)}` }, id)]))
      : h("p", { class: "muted" }, "None."),
  );
}

function feedback(items) {
  return h(
    "div",
    { class: "feedback" },
    h("h2", {}, "Feedback"),
    items.length
      ? h("ul", {}, items.map((item) => h("li", {},
        item.score !== null ? badge(`score ${item.score}`, "score") : null,
        item.label ? badge(item.label, "label") : null, " ",
        item.comment ?? "",
        h("span", { class: "muted" },
          ` ${item.trace_id ? "on this trace" : `on session ${item.session_id}`}, ` +
          when(item.created_at)))))
      : h("p", { class: "muted" }, "None."),
  );
}

export async function tracePage(root, args) {
  const trace = await get(`/traces/${segment(args[0])}`);
  const failed = trace.error || (trace.status !== null && trace.status >= 400);
  root.append(
    h("div", { class: "page-head" }, h("h1", {}, trace.id),
      badge(failed ? "error" : "ok", failed ? "bad" : "good")),
    facts(trace),
    injected(trace),
    feedback(trace.feedback || []),
    h("h2", {}, "Conversation"),
    conversationView(trace),
    h("details", { class: "bodies" }, h("summary", {}, "Raw request and response"),
      h("h3", {}, "Request"),
      h("pre", { class: "raw" }, JSON.stringify(trace.request_json, null, 2)),
      h("h3", {}, "Response"),
      h("pre", { class: "raw" }, JSON.stringify(trace.response_json, null, 2))),
  );
}
