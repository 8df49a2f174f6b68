// The review page: a client of the admin API with hash routes, one module per page.
//
//   #/queue/<skillbook>  pending proposals to approve, reject or edit (queue.js)
//   #/skill/<id>         one skill: history with word diffs, rollback, evidence, outcomes
//   #/trace/<id>         one exchange rendered as a conversation (trace.js, conversation.js)
//   #/book/<name>        the injected section, settings, export and import (book.js)
//   #/traffic            charts, traces, learner runs, waiting and failed episodes (traffic.js)
//   #/episode/<id>       one episode: its traces, feedback, reflections, refused lessons
//
// A page is `async function (root, args, ctx)`: it fills `root`, which goes on screen when the
// function returns. `ctx.signal` aborts when the user navigates away (listeners registered with
// it go too), `ctx.reload()` renders the route again, `ctx.fail(error)` reports a failed action,
// `ctx.refresher(load, render)` makes a page's own reload-and-redraw.

import { ApiError, getToken } from "./api.js";
import { bookPage } from "./book.js";
import { clear, errorBox, h, toast } from "./dom.js";
import { episodePage } from "./episode.js";
import { loginForm } from "./login.js";
import { queuePage } from "./queue.js";
import { skillPage } from "./skill.js";
import { tracePage } from "./trace.js";
import { trafficPage } from "./traffic.js";

const PAGES = {
  queue: queuePage,
  skill: skillPage,
  trace: tracePage,
  book: bookPage,
  traffic: trafficPage,
  episode: episodePage,
};

let showing = null;

function parse(hash) {
  const parts = hash.replace(/^#\/?/, "").split("/").filter((part) => part !== "");
  const [name = "queue", ...args] = parts.map((part) => {
    try {
      return decodeURIComponent(part);
    } catch {
      return part;
    }
  });
  return { name, args };
}

function login(error) {
  const view = document.getElementById("view");
  document.getElementById("logout").hidden = true;
  view.replaceChildren(loginForm(error, route));
}

function fail(error) {
  if (!(error instanceof ApiError)) console.error(error); // a bug in the page, not a refusal
  if (error instanceof ApiError && error.auth) login(error);
  else toast(error.message || String(error), "bad");
}

async function route() {
  showing?.abort();
  const controller = new AbortController();
  showing = controller;
  const view = document.getElementById("view");
  const { name, args } = parse(location.hash);
  const page = PAGES[name];
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("here", link.dataset.nav === name);
  }
  document.getElementById("logout").hidden = !getToken();
  if (page === undefined) {
    view.replaceChildren(errorBox(new Error(`No page called ${name}`)));
    return;
  }
  clear(view).appendChild(h("p", { class: "muted" }, "Loading…"));
  const root = h("section", { class: `page page-${name}` });
  const ctx = { signal: controller.signal, reload: route, fail };
  // `ctx.refresher(load, render)`: a `refresh(message)` that loads the page's data again and
  // renders it (and the message) unless that fails or the user has moved on
  ctx.refresher = (load, render) => async (message) => {
    let data;
    try {
      data = await load();
    } catch (exc) {
      fail(exc);
      return;
    }
    if (message) toast(message, "good");
    if (!controller.signal.aborted) render(data);
  };
  try {
    await page(root, args, ctx);
  } catch (exc) {
    if (controller.signal.aborted) return;
    if (!(exc instanceof ApiError)) console.error(exc);
    if (exc instanceof ApiError && exc.auth) login(exc);
    else view.replaceChildren(errorBox(exc));
    return;
  }
  if (!controller.signal.aborted) view.replaceChildren(root);
}

document.getElementById("logout").addEventListener("click", () => {
  login(new ApiError(401, "missing_token", "Signed out."));
});
window.addEventListener("hashchange", route);
route();
