// The traffic page's charts, drawn as SVG by hand (no chart library, nothing fetched): the
// server counts (GET /admin/traces/activity, /learner/spend, /skillbooks/{name}/skills-by-day)
// and leaves empty buckets out; here every bucket of the span gets a column, empty or not.
//
//   activityChart  requests and errors per hour over the last day (errors drawn over requests)
//   spendChart     the learner's cost per UTC day (its calls and tokens in each bar's tip);
//                  tokens instead while no call has a price (a local or unpriced model)
//   skillsChart    skills proposed, approved and retired per UTC day, side by side

import { h, svg } from "./dom.js";

const WIDTH = 720;
const HEIGHT = 150;
const PAD = { left: 44, right: 8, top: 10, bottom: 24 };
const HOUR = 3600;
const DAY = 86400;

function clock(seconds) {
  const date = new Date(seconds * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

/** The `count` UTC days ending today, oldest first, as the server names them: `2026-12-01`. */
export function lastDays(count, now = Date.now() / 1000) {
  const today = Math.floor(now / DAY);
  return Array.from({ length: count }, (_, i) =>
    new Date((today - count + 1 + i) * DAY * 1000).toISOString().slice(0, 10));
}

/**
 * One bar chart. `columns`: `[{label, tip, values: [n per series]}]`; `series`:
 * `[{name, class}]`; `overlay` draws every series from the baseline in front of the one before
 * (errors over requests), else they stand side by side. `format` writes the top of the axis.
 */
function barChart({ name, title, columns, series, overlay = false, format = String, caption }) {
  const top = Math.max(...columns.flatMap((column) => column.values), 0);
  const scale = top > 0 ? top : 1;
  const plotW = WIDTH - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const base = PAD.top + plotH;
  const slot = plotW / columns.length;
  const lanes = overlay ? 1 : series.length;
  const width = Math.max(1, (slot - 2) / lanes);
  const y = (n) => base - (n / scale) * plotH;

  const bars = columns.flatMap((column, i) => series.map((kind, s) => {
    const value = column.values[s];
    if (!value) return null;
    const x = PAD.left + i * slot + 1 + (overlay ? 0 : s * width);
    return svg("rect", { class: `bar ${kind.class}`, x, y: y(value), width,
      height: base - y(value) }, svg("title", {}, column.tip));
  }));
  const label = (x, text, anchor) =>
    svg("text", { x, y: base + 16, "text-anchor": anchor, class: "axis" }, text);
  return h(
    "figure",
    { class: `chart chart-${name}` },
    h("h3", {}, title),
    svg(
      "svg",
      { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-label": `${title}: ${caption}` },
      svg("line", { class: "axis-line", x1: PAD.left, x2: WIDTH - PAD.right, y1: base, y2: base }),
      svg("text", { x: PAD.left - 6, y: PAD.top + 10, "text-anchor": "end", class: "axis" },
        format(top)),
      svg("text", { x: PAD.left - 6, y: base, "text-anchor": "end", class: "axis" }, "0"),
      bars,
      label(PAD.left, columns[0].label, "start"),
      label(WIDTH - PAD.right, columns[columns.length - 1].label, "end"),
    ),
    h("figcaption", {},
      series.map((kind) => [h("span", { class: `key ${kind.class}` }, "■"), ` ${kind.name} `]),
      caption),
  );
}

/** `rows` from /traces/activity (hour buckets since `since`). */
export function activityChart(rows, since) {
  const first = Math.floor(since / HOUR) * HOUR;
  const count = Math.floor((Date.now() / 1000 - first) / HOUR) + 1;
  const byStart = new Map(rows.map((row) => [row.start, row]));
  const columns = Array.from({ length: count }, (_, i) => {
    const start = first + i * HOUR;
    const row = byStart.get(start) || { requests: 0, errors: 0 };
    return { label: i === count - 1 ? "now" : clock(start), values: [row.requests, row.errors],
      tip: `${clock(start)}: ${row.requests} requests, ${row.errors} errors` };
  });
  const total = rows.reduce((sum, row) => sum + row.requests, 0);
  const errors = rows.reduce((sum, row) => sum + row.errors, 0);
  return barChart({
    name: "activity",
    title: "Requests per hour, last day",
    columns,
    series: [{ name: "requests", class: "requests" }, { name: "errors", class: "errors" }],
    overlay: true,
    caption: `(${total} requests, ${errors} errors)`,
  });
}

/** `rows` from /learner/spend, over the last `days` UTC days. */
export function spendChart(rows, days) {
  const byDay = new Map(rows.map((row) => [row.day, row]));
  const cost = rows.reduce((sum, row) => sum + row.cost_usd, 0);
  const calls = rows.reduce((sum, row) => sum + row.llm_calls, 0);
  const priced = cost > 0 || !rows.length;
  const value = (row) => (priced ? row.cost_usd : row.input_tokens + row.output_tokens);
  const columns = lastDays(days).map((day) => {
    const row = byDay.get(day);
    return { label: day, values: [row ? value(row) : 0],
      tip: row
        ? `${day}: $${row.cost_usd.toFixed(4)}, ${row.runs} runs, ${row.llm_calls} LLM calls, ` +
          `${row.input_tokens} / ${row.output_tokens} tokens`
        : `${day}: no runs` };
  });
  const tokens = rows.reduce((sum, row) => sum + row.input_tokens + row.output_tokens, 0);
  return barChart({
    name: "spend",
    title: `Learner spend per day, last ${days} days`,
    columns,
    series: [{ name: priced ? "cost" : "tokens (no priced calls)", class: "spend" }],
    format: priced ? (n) => `$${n.toFixed(n >= 1 ? 2 : 4)}` : String,
    caption: `($${cost.toFixed(4)}, ${tokens} tokens over ${calls} LLM calls)`,
  });
}

/** `rows` from /skillbooks/{name}/skills-by-day, over the last `days` UTC days. */
export function skillsChart(rows, days) {
  const byDay = new Map(rows.map((row) => [row.day, row]));
  const columns = lastDays(days).map((day) => {
    const row = byDay.get(day) || { proposed: 0, approved: 0, retired: 0 };
    return { label: day, values: [row.proposed, row.approved, row.retired],
      tip: `${day}: ${row.proposed} proposed, ${row.approved} approved, ${row.retired} retired` };
  });
  const sum = (key) => rows.reduce((total, row) => total + row[key], 0);
  return barChart({
    name: "skills",
    title: `Skills per day, last ${days} days`,
    columns,
    series: [
      { name: "proposed", class: "proposed" },
      { name: "approved", class: "approved" },
      { name: "retired", class: "retired" },
    ],
    caption: `(${sum("proposed")} proposed, ${sum("approved")} approved, ` +
      `${sum("retired")} retired)`,
  });
}
