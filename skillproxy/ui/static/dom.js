// Building the page from data without ever parsing it as HTML: every string an API returns
// (skill text, conversations, error messages) becomes a text node, so nothing in it can run.

const SVG_NS = "http://www.w3.org/2000/svg";

function append(parent, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(parent, child);
    else if (child instanceof Node) parent.appendChild(child);
    else parent.appendChild(document.createTextNode(String(child)));
  }
}

function build(element, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") element.setAttribute("class", value);
    else if (key === "text") element.textContent = String(value);
    else if (key === "dataset") Object.assign(element.dataset, value);
    else if (key.startsWith("on")) element.addEventListener(key.slice(2), value);
    else if (key === "style" || key === "innerHTML") throw new Error(`${key} is not allowed`);
    else if (value === true) element.setAttribute(key, "");
    else element.setAttribute(key, String(value));
  }
  append(element, children);
  return element;
}

/** `h("a", {href: "#/x", class: "link"}, "text", child, [more])`: an element, children as text. */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** The same for SVG elements (the traffic chart). */
export function svg(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

export function clear(element) {
  element.replaceChildren();
  return element;
}

/** Replace what `element` holds with `children` (null and false left out, strings as text). */
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

export function when(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const date = new Date(seconds * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

export function number(value, digits = 0) {
  if (value === null || value === undefined) return "—";
  return Number(value).toFixed(digits);
}

/** A path segment for a hash link: `#/skill/${seg(id)}`. */
export function seg(value) {
  return encodeURIComponent(value);
}

/** A small label; its class is `kind`, else the text itself, reduced to safe class names. */
export function badge(text, kind) {
  const classes = String(kind || text).toLowerCase().replace(/[^a-z0-9 _-]/g, "");
  return h("span", { class: `badge ${classes}` }, text);
}

/** A short message in the status line at the bottom of the window. */
export function toast(message, kind = "info") {
  const box = document.getElementById("toast");
  box.replaceChildren(h("span", { class: `toast ${kind}` }, message));
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => box.replaceChildren(), 6000);
}

/** An error box for a failed call: its message, and a refused bulk change's reasons. */
export function errorBox(error) {
  const refused = Object.entries(error.refused || {});
  return h(
    "div",
    { class: "error", role: "alert" },
    h("strong", {}, error.message || String(error)),
    refused.length
      ? h("ul", { class: "refused" }, refused.map(([id, why]) =>
        h("li", { dataset: { id } }, h("code", {}, id), ": ", why)))
      : null,
  );
}
