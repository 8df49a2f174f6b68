// Traffic and the learner: charts of requests per hour, learner spend and skills per day
// (counted by the server); the traces, newest first, paged by time and filtered by outcome,
// model, session and start time; the learner's runs with their spend; the episodes that wait
// (open) or failed, each linked to its page, with a retry. `#/traffic/<skillbook>` narrows it
// all to one skillbook (the skills chart needs one).

import { get, post, query, segment } from "./api.js";
import { activityChart, skillsChart, spendChart } from "./chart.js";
import { badge, fill, h, number, seg, toast, when } from "./dom.js";

const PAGE = 100;
const DAYS = 30;
const NO_FILTER = { outcome: "", model: "", session_id: "", after: "" };

function table(headings, rows, empty) {
  if (!rows.length) return h("p", { class: "muted" }, empty);
  return h("div", { class: "table-wrap" }, h("table", {},
    h("thead", {}, h("tr", {}, headings.map((text) => h("th", {}, text)))),
    h("tbody", {}, rows)));
}

function traceRow(trace) {
  const failed = trace.error || (trace.status !== null && trace.status >= 400);
  const injected = Array.isArray(trace.injected_skill_ids) ? trace.injected_skill_ids.length : 0;
  return h("tr", { class: failed ? "failed" : "", dataset: { id: trace.id } },
    h("td", { class: "time" },
      h("a", { href: `#/trace/${seg(trace.id)}` }, when(trace.created_at))),
    h("td", {}, trace.skillbook),
    h("td", {}, trace.format || "—"),
    h("td", {}, trace.model || "—"),
    h("td", {}, trace.status === null ? "—" : String(trace.status)),
    h("td", {}, `${number(trace.latency_ms, 0)} ms`),
    h("td", {}, `${trace.input_tokens ?? "—"} / ${trace.output_tokens ?? "—"}`),
    h("td", {}, String(injected)),
    h("td", { class: "text-cell" }, trace.error || ""));
}

function runRow(run) {
  return h("tr", { class: run.error ? "failed" : "" },
    h("td", {}, String(run.seq)),
    h("td", {}, run.skillbook),
    h("td", { class: "time" }, when(run.started_at)),
    h("td", {}, badge(run.status, "run")),
    h("td", {}, `${run.episodes} / ${run.reflections} / ${run.failures}`),
    h("td", {}, `${run.proposals} / ${run.merged} / ${run.tags}`),
    h("td", {}, String(run.llm_calls)),
    h("td", {}, `${run.input_tokens} / ${run.output_tokens}`),
    h("td", {}, `$${number(run.cost_usd, 4)}`),
    h("td", { class: "text-cell" }, run.error || ""));
}

export async function trafficPage(root, args, ctx) {
  const skillbook = args[0] || "";
  const state = { before: null, newer: [], filter: { ...NO_FILTER } };

  async function load() {
    const since = Date.now() / 1000 - 86400;
    const { outcome, model, session_id, after } = state.filter;
    const from = after ? new Date(after).getTime() / 1000 : null;
    const [books, traces, runs, failed, open, activity, spend, skills] = await Promise.all([
      get("/skillbooks"),
      get(`/traces${query({ skillbook, outcome, model, session_id, after: from, limit: PAGE,
        before: state.before })}`),
      get(`/learner/runs${query({ skillbook, limit: 20 })}`),
      get(`/episodes${query({ skillbook, status: "failed", limit: 50 })}`),
      get(`/episodes${query({ skillbook, status: "open", limit: 50 })}`),
      get(`/traces/activity${query({ skillbook, since, bucket_s: 3600 })}`),
      get(`/learner/spend${query({ days: DAYS, skillbook })}`),
      skillbook ? get(`/skillbooks/${segment(skillbook)}/skills-by-day${query({ days: DAYS })}`)
        : null,
    ]);
    return { books: books.data, traces, runs: runs.data, failed: failed.data, open: open.data,
      charts: h("div", { class: "charts" },
        activityChart(activity.data, since),
        spendChart(spend.data, DAYS),
        skills ? skillsChart(skills.data, DAYS)
          : h("p", { class: "muted" }, "Choose a skillbook to chart its skills per day.")) };
  }

  function filterForm() {
    const { outcome, model, session_id, after } = state.filter;
    const controls = {
      outcome: h("select", { name: "outcome" }, [["", "any"], ["ok", "ok"], ["error", "error"]]
        .map(([value, text]) => h("option", { value, selected: value === outcome }, text))),
      model: h("input", { name: "model", value: model, placeholder: "any", size: 14 }),
      session_id: h("input", { name: "session_id", value: session_id, placeholder: "any",
        size: 14 }),
      after: h("input", { type: "datetime-local", name: "after", value: after, step: 1 }),
    };
    const apply = (filter) => {
      state.filter = filter;
      state.before = null;
      state.newer = [];
      refresh();
    };
    return h("form", {
      class: "trace-filters",
      onsubmit: (event) => {
        event.preventDefault();
        apply(Object.fromEntries(Object.entries(controls).map(([key, control]) =>
          [key, control.value.trim()])));
      },
    },
    h("label", {}, "Outcome ", controls.outcome),
    h("label", {}, "Model ", controls.model),
    h("label", {}, "Session ", controls.session_id),
    h("label", {}, "From ", controls.after),
    h("button", { type: "submit", name: "filter" }, "Filter"),
    h("button", { type: "button", name: "clear-filter", class: "quiet",
      onclick: () => apply({ ...NO_FILTER }) }, "Clear"));
  }

  const refresh = ctx.refresher(load, render);

  const retry = async (episode) => {
    try {
      const done = await post(`/episodes/${segment(episode.id)}/retry`);
      refresh(done.retried.length ? `${episode.id}: re-queued` : `${episode.id}: nothing to retry`);
    } catch (exc) {
      ctx.fail(exc);
    }
  };

  function episodeRow(episode) {
    return h("tr", { dataset: { id: episode.id } },
      h("td", {}, h("a", { href: `#/episode/${seg(episode.id)}` }, h("code", {}, episode.id))),
      h("td", {}, episode.skillbook),
      h("td", {}, badge(episode.status)),
      h("td", { class: "time" }, when(episode.last_at)),
      h("td", {}, String(episode.trace_count)),
      h("td", {}, String(episode.attempts)),
      h("td", { class: "text-cell" }, episode.error || ""),
      h("td", {}, episode.status === "failed"
        ? h("button", { type: "button", name: "retry", class: "small",
          onclick: () => retry(episode) }, "Retry")
        : h("span", { class: "muted" }, "waiting")));
  }

  function render({ books, traces, runs, failed, open, charts }) {
    const picker = h("select", {
      id: "traffic-skillbook",
      onchange: (event) => {
        location.hash = event.target.value ? `#/traffic/${seg(event.target.value)}` : "#/traffic";
      },
    }, h("option", { value: "" }, "all skillbooks"),
    books.map((book) => h("option", { value: book.name, selected: book.name === skillbook },
      book.name)));
    const page = (before, newer) => {
      state.before = before;
      state.newer = newer;
      refresh();
    };
    fill(root,
      h("div", { class: "page-head" }, h("h1", {}, "Traffic and learner"),
        h("label", { class: "picker" }, "Skillbook ", picker)),
      charts,
      h("h2", {}, "Traces"),
      filterForm(),
      table(["When", "Skillbook", "Format", "Model", "Status", "Latency", "Tokens in / out",
        "Skills", "Error"], traces.data.map(traceRow), "No traces yet."),
      h("nav", { class: "pager" },
        h("button", { type: "button", name: "newer", disabled: !state.newer.length,
          onclick: () => page(state.newer.at(-1), state.newer.slice(0, -1)) }, "← Newer"),
        h("button", { type: "button", name: "older", disabled: traces.next_before === null,
          onclick: () => page(traces.next_before, [...state.newer, state.before]) }, "Older →")),
      h("h2", {}, "Learner runs"),
      table(["Run", "Skillbook", "Started", "Status", "Episodes / reflected / failed",
        "Proposed / merged / tagged", "LLM calls", "Tokens in / out", "Cost", "Error"],
      runs.map(runRow), "No learner runs yet."),
      h("h2", {}, "Episodes that failed"),
      table(["Episode", "Skillbook", "Status", "Last activity", "Traces", "Attempts", "Error", ""],
        failed.map(episodeRow), "None failed."),
      h("h2", {}, "Episodes waiting"),
      table(["Episode", "Skillbook", "Status", "Last activity", "Traces", "Attempts", "Error", ""],
        open.map(episodeRow), "None waiting."),
    );
  }

  render(await load());
}
