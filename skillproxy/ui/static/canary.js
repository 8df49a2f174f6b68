// A skill's canary: the control that starts one (a share of sessions, beside Approve) and the
// panel of its figures per arm from GET /admin/skills/{id}/canary: sessions, feedback, mean
// score, tokens and turns per conversation, the difference with its always-valid interval,
// the verdict and what the skillbook's rules do with it, and the limits in plain words.

import { h, number, when } from "./dom.js";

/** The share input and button that start a canary; `start(share)` does the call. */
export function canaryControl(start) {
  const input = h("input", {
    type: "number", name: "canary-share", min: "1", max: "99", step: "1", value: "20",
    "aria-label": "Canary share, percent of sessions",
  });
  return h("span", { class: "canary-control" },
    input,
    h("span", { class: "muted" }, "%"),
    h("button", { type: "button", name: "canary", onclick: () => start(Number(input.value)) },
      "Canary"));
}

function interval(span) {
  return span ? `[${number(span.low, 3)}, ${number(span.high, 3)}]` : "no data";
}

/** The report as a panel; `stop()` ends a running canary. */
export function canaryPanel(report, stop) {
  if (report instanceof Error) return h("p", { class: "error" }, report.message);
  const canary = report.canary;
  const arm = (label, figures) => h("tr", {},
    h("th", { scope: "row" }, label),
    h("td", {}, String(figures.sessions)),
    h("td", {}, String(figures.rated_sessions)),
    h("td", {}, String(figures.feedback)),
    h("td", {}, number(figures.mean_score, 3)),
    h("td", {}, number(figures.tokens_per_session, 0)),
    h("td", {}, number(figures.turns_per_session, 1)),
    h("td", {}, interval(figures.interval)));
  return h("div", { class: "canary-panel", dataset: { status: canary.status } },
    h("p", {},
      h("strong", {}, `${canary.share}% of sessions`),
      ` · ${canary.status} · since ${when(canary.started_at)}`,
      canary.status === "running"
        ? h("button", { type: "button", name: "stop-canary", onclick: stop }, "Stop canary")
        : null),
    h("table", {},
      h("thead", {}, h("tr", {}, ...["", "Sessions", "Rated", "Feedback", "Mean score",
        "Tokens / conv.", "Turns / conv.", "Interval"].map((t) => h("th", {}, t)))),
      h("tbody", {}, arm("With the skill", report.treatment), arm("Without it", report.control))),
    h("p", { class: "canary-verdict" },
      h("strong", {}, "Difference: "),
      report.difference === null ? "no data" : number(report.difference, 3),
      ` ${Math.round((1 - report.alpha) * 100)}% interval ${interval(report.interval)} · `,
      h("strong", {}, "Verdict: "), h("span", { class: "verdict" }, report.verdict),
      ` · rules: ${report.decision}`),
    h("p", { class: "muted" }, `Method: ${report.method}.`),
    h("p", { class: "muted" }, `Assignment: ${report.assignment}.`),
    h("ul", { class: "canary-limits muted" }, report.limits.map((line) => h("li", {}, line))));
}
