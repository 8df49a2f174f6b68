// Traffic and the learner: the traces, newest first and paged by time, charted per minute;
// the learner's runs with their spend; the episodes that wait (open) or failed, with a retry.
// `#/traffic/<skillbook>` narrows it all to one skillbook.

import { get, post, query, segment } from "./api.js";
import { activityChart } from "./chart.js";
import { badge, fill, h, number, seg, toast, when } from "./dom.js";

const PAGE = 100;

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
  const state = { before: null, newer: [] };

  async function load() {
    const [books, traces, runs, failed, open] = await Promise.all([
      get("/skillbooks"),
      get(`/traces${query({ skillbook, limit: PAGE, before: state.before })}`),
      get(`/learner/runs${query({ skillbook, limit: 20 })}`),
      get(`/episodes${query({ skillbook, status: "failed", limit: 50 })}`),
      get(`/episodes${query({ skillbook, status: "open", limit: 50 })}`),
    ]);
    return { books: books.data, traces, runs: runs.data, failed: failed.data, open: open.data };
  }

  async function refresh(message) {
    let data;
    try {
      data = await load();
    } catch (exc) {
      ctx.fail(exc);
      return;
    }
    if (message) toast(message, "good");
    if (!ctx.signal.aborted) render(data);
  }

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
      h("td", {}, h("code", {}, episode.id)),
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

  function render({ books, traces, runs, failed, open }) {
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
      activityChart(traces.data),
      h("h2", {}, "Traces"),
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
