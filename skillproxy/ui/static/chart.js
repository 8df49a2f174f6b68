// The traffic chart: requests and errors per minute over the traces on screen, drawn as SVG
// by hand (no chart library, nothing fetched). The chart spans at least the last half hour
// of the page; past an hour, a bar covers several minutes, so there are never over MAX_BARS.

import { h, svg } from "./dom.js";

const WIDTH = 720;
const HEIGHT = 170;
const PAD = { left: 36, right: 8, top: 10, bottom: 26 };
const MAX_BARS = 60;
const MIN_MINUTES = 30; // a page from one busy minute still shows the half hour before it

function clock(seconds) {
  const date = new Date(seconds * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

/** `traces` -> `{start, step, buckets: [{start, requests, errors}]}`, `step` in seconds. */
export function buckets(traces) {
  const times = traces.map((trace) => trace.created_at);
  const last = Math.floor(Math.max(...times) / 60); // in minutes
  const first = Math.min(Math.floor(Math.min(...times) / 60), last - MIN_MINUTES + 1);
  const per = Math.max(1, Math.ceil((last - first + 1) / MAX_BARS));
  const step = per * 60;
  const start = Math.floor((first * 60) / step) * step;
  const count = Math.floor((last * 60 - start) / step) + 1;
  const result = Array.from({ length: count }, (_, i) => ({
    start: start + i * step,
    requests: 0,
    errors: 0,
  }));
  for (const trace of traces) {
    const bucket = result[Math.floor((trace.created_at - start) / step)];
    bucket.requests++;
    if (trace.error || (trace.status !== null && trace.status >= 400)) bucket.errors++;
  }
  return { start, step, buckets: result };
}

export function activityChart(traces) {
  if (!traces.length) return h("p", { class: "muted" }, "No traces to chart.");
  const { step, buckets: bars } = buckets(traces);
  const top = Math.max(1, ...bars.map((bar) => bar.requests));
  const plotW = WIDTH - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const width = plotW / bars.length;
  const y = (n) => PAD.top + plotH - (n / top) * plotH;
  const unit = step === 60 ? "minute" : `${step / 60} minutes`;
  const total = bars.reduce((sum, bar) => sum + bar.requests, 0);
  const errors = bars.reduce((sum, bar) => sum + bar.errors, 0);

  const rects = bars.flatMap((bar, i) => {
    const x = PAD.left + i * width + 1;
    const w = Math.max(1, width - 2);
    const tip = `${clock(bar.start)}: ${bar.requests} requests, ${bar.errors} errors`;
    return [
      svg("rect", { class: "bar", x, y: y(bar.requests), width: w,
        height: PAD.top + plotH - y(bar.requests) }, svg("title", {}, tip)),
      bar.errors
        ? svg("rect", { class: "bar error", x, y: y(bar.errors), width: w,
          height: PAD.top + plotH - y(bar.errors) }, svg("title", {}, tip))
        : null,
    ];
  });
  const base = PAD.top + plotH;
  const label = (x, text, anchor = "start") =>
    svg("text", { x, y: base + 16, "text-anchor": anchor, class: "axis" }, text);
  return h(
    "figure",
    { class: "chart" },
    svg(
      "svg",
      {
        viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
        role: "img",
        "aria-label": `Requests per ${unit}: ${total} requests, ${errors} errors`,
      },
      svg("line", { class: "axis-line", x1: PAD.left, x2: WIDTH - PAD.right, y1: base, y2: base }),
      svg("text", { x: PAD.left - 6, y: PAD.top + 10, "text-anchor": "end", class: "axis" },
        String(top)),
      svg("text", { x: PAD.left - 6, y: base, "text-anchor": "end", class: "axis" }, "0"),
      rects,
      label(PAD.left, clock(bars[0].start)),
      label(WIDTH - PAD.right, clock(bars[bars.length - 1].start + step), "end"),
    ),
    h("figcaption", {},
      h("span", { class: "key requests" }, "■"), ` requests per ${unit} (${total}) `,
      h("span", { class: "key errors" }, "■"), ` errors (${errors}), over the traces listed`),
  );
}
