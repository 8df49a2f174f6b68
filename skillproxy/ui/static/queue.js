// The review queue of one skillbook: its pending proposals, newest first, each with what a
// reviewer needs to decide (the text, the diagnosis that produced it, its evidence, the
// existing skills it resembles, rewords or contradicts), and the retire proposals on live
// skills. Approve, reject, edit then approve, or select several and change them all at once
// (all or none: a refusal names each id that could not change), or approve one as a canary
// (a share of sessions only, canary.js). Keys: j/k move, a approve, r reject, e edit, x select.

import { ApiError, get, post, query, segment } from "./api.js";
import { canaryControl } from "./canary.js";
import { diffView } from "./diff.js";
import { badge, errorBox, fill, h, seg, toast, when } from "./dom.js";
import { skillEditor } from "./editor.js";
import { diagnosisView } from "./reflection.js";
import { similarSkills } from "./similar.js";

const PAGE_SIZE = 50;
const DONE = { approve: "approved", reject: "rejected", archive: "archived" };
const PARALLEL = 6;

/** `fn` over `items`, at most `limit` at a time (the browser's connections per host). */
async function pool(items, limit, fn) {
  const results = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

function pickBook(books) {
  const waiting = books.filter((book) => book.skills.pending > 0);
  return (waiting[0] || books[0] || null)?.name ?? null;
}

function bookPicker(books, name) {
  const select = h(
    "select",
    {
      id: "skillbook",
      onchange: (event) => {
        location.hash = `#/queue/${seg(event.target.value)}`;
      },
    },
    books.map((book) => h("option", { value: book.name, selected: book.name === name },
      `${book.name} (${book.skills.pending} pending)`)),
  );
  return h("label", { class: "picker" }, "Skillbook ", select);
}

export async function queuePage(root, args, ctx) {
  let books = (await get("/skillbooks")).data;
  const name = args[0] || pickBook(books);
  if (name === null) {
    root.append(h("h1", {}, "Review queue"),
      h("p", { class: "empty" }, "No skillbooks yet: they appear with the first request."));
    return;
  }
  if (!args[0]) history.replaceState(null, "", `#/queue/${seg(name)}`);
  const path = `/skillbooks/${segment(name)}`;

  const state = {
    page: 0,
    focus: 0,
    selected: new Set(),
    editing: null,
    busy: false,
    refused: {},
    problem: null,
    pending: [],
    total: 0,
    others: [],
    retiring: [],
  };
  let details = new Map();
  const reflections = new Map();

  const reflection = (seq) => {
    if (!reflections.has(seq)) {
      reflections.set(seq, get(`/reflections/${seq}`).catch(() => null));
    }
    return reflections.get(seq);
  };

  const pageItems = () => state.pending;

  /** One page of pending skills, newest first, paged by the API (a queue may hold thousands);
   * the live skills beside them, to compare against; the skillbooks, for their counts. */
  async function load() {
    const pending = (offset) => get(`${path}/skills${query({
      status: "pending", order: "newest", limit: PAGE_SIZE, offset,
    })}`);
    let page;
    let active;
    [{ data: books }, { data: page }, { data: active }] = await Promise.all([
      get("/skillbooks"),
      pending(state.page * PAGE_SIZE),
      get(`${path}/skills${query({ status: "active" })}`),
    ]);
    const book = books.find((found) => found.name === name);
    const total = book ? book.skills.pending : page.length;
    if (!book) books = [...books, { name, skills: { pending: total } }];
    if (!page.length && state.page > 0) { // the last page emptied: show the one before
      state.page = Math.max(0, Math.ceil(total / PAGE_SIZE) - 1);
      page = (await pending(state.page * PAGE_SIZE)).data;
    }
    const fresh = new Map();
    await pool(page, PARALLEL, async (skill) => {
      const detail = await get(`/skills/${segment(skill.id)}`);
      const seqs = [...new Set(detail.evidence.map((e) => e.reflection).filter((s) => s != null))];
      detail.diagnoses = (await Promise.all(seqs.slice(0, 3).map(reflection))).filter(Boolean);
      fresh.set(skill.id, detail);
    });
    // all at once, so that a render never mixes this load with the last
    details = fresh;
    Object.assign(state, { pending: page, total, others: active });
    state.retiring = active.filter((skill) => skill.retire_reason);
    state.focus = Math.max(0, Math.min(state.focus, page.length - 1));
    const ids = new Set(page.map((skill) => skill.id));
    for (const id of state.selected) if (!ids.has(id)) state.selected.delete(id);
  }

  async function act(work, done) {
    state.busy = true;
    try {
      await attempt(work, done);
    } finally {
      state.busy = false;
    }
  }

  async function attempt(work, done) {
    try {
      const message = await work();
      state.problem = null;
      state.refused = {};
      if (message) toast(message, "good");
      if (done) done();
    } catch (exc) {
      if (exc instanceof ApiError && exc.code === "bulk_refused") {
        state.problem = exc;
        state.refused = exc.refused || {};
      } else if (exc instanceof ApiError && !exc.auth) {
        state.problem = exc;
      } else {
        ctx.fail(exc);
        return;
      }
    }
    try {
      await load();
    } catch (exc) {
      ctx.fail(exc);
      return;
    }
    if (!ctx.signal.aborted) render();
  }

  const change = (skill, action, note) =>
    act(async () => {
      await post(`/skills/${segment(skill.id)}/${action}`, note ? { note } : {});
      return `${skill.id}: ${DONE[action]}`;
    });

  const canary = (skill, share) =>
    act(async () => {
      await post(`/skills/${segment(skill.id)}/canary`, { share });
      return `${skill.id}: canary for ${share}% of sessions`;
    });

  // the reason a reviewer gives goes into the skill's history with the change
  const noteOf = (button) => {
    const field = button.closest(".actions").querySelector("input[name=note]");
    return field && field.value.trim() ? field.value.trim() : undefined;
  };

  const bulk = (action) =>
    act(async () => {
      const ids = [...state.selected];
      const result = await post(`/skillbooks/${segment(name)}/skills/${action}`, { ids });
      return `${result.changed.length} skills ${DONE[action]}`;
    }, () => state.selected.clear());

  function card(skill, index) {
    const detail = details.get(skill.id) || { evidence: [], diagnoses: [] };
    const byId = (id) => state.others.find((other) => other.id === id);
    const chosen = state.selected.has(skill.id);
    const box = h("input", {
      type: "checkbox",
      class: "select",
      "aria-label": `select ${skill.id}`,
      checked: chosen,
      onchange: (event) => {
        if (event.target.checked) state.selected.add(skill.id);
        else state.selected.delete(skill.id);
        renderToolbar();
      },
    });
    const reworded = skill.supersedes ? byId(skill.supersedes) : null;
    const contradicted = skill.contradicts ? byId(skill.contradicts) : null;
    const similar = similarSkills(skill, state.others);
    const editing = state.editing === skill.id;
    return h(
      "article",
      {
        class: `card skill-card${index === state.focus ? " focused" : ""}`,
        dataset: { id: skill.id, index: String(index) },
        onclick: () => setFocus(index, false),
      },
      h(
        "header",
        {},
        box,
        h("a", { href: `#/skill/${seg(skill.id)}`, class: "skill-id" }, skill.id),
        badge(skill.section, "section"),
        h("span", { class: "muted" }, when(skill.created_at)),
        skill.contradicts ? badge("contradiction", "contradicts") : null,
        skill.supersedes ? badge("rewording", "rewording") : null,
      ),
      editing
        ? skillEditor(skill, (saved) => {
          state.editing = null;
          if (saved) {
            toast(`${saved.id}: saved${saved.status === "active" ? " and approved" : ""}`, "good");
            act(async () => null);
          } else render();
        }, ctx.fail)
        : h("p", { class: "content" }, skill.content),
      state.refused[skill.id]
        ? h("p", { class: "error refused-reason" }, `Refused: ${state.refused[skill.id]}`)
        : null,
      skill.contradicts
        ? h("div", { class: "flag contradiction" },
          h("strong", {}, "Contradicts "),
          h("a", { href: `#/skill/${seg(skill.contradicts)}` }, skill.contradicts),
          contradicted ? h("q", {}, contradicted.content) : null)
        : null,
      skill.supersedes
        ? h("div", { class: "flag rewording" },
          h("strong", {}, "Rewords "),
          h("a", { href: `#/skill/${seg(skill.supersedes)}` }, skill.supersedes),
          " (approving this archives it)",
          reworded ? diffView(reworded.content, skill.content) : null)
        : null,
      detail.diagnoses.map((found) =>
        diagnosisView(found, `Diagnosis (reflection ${found.seq})`)),
      evidenceList(skill, detail.evidence),
      similar.length
        ? h("div", { class: "similar" }, h("h3", {}, "Similar existing skills"),
          h("ul", {}, similar.map(({ skill: other, score }) => h("li", {},
            h("a", { href: `#/skill/${seg(other.id)}` }, other.id), " ", badge(other.status),
            h("span", { class: "score" }, ` ${Math.round(score * 100)}% alike `),
            h("span", { class: "muted" }, other.content)))))
        : null,
      editing
        ? null
        : h(
          "div",
          { class: "actions" },
          h("button", { type: "button", class: "primary", name: "approve",
            onclick: () => change(skill, "approve") }, "Approve"),
          detail.canary && detail.canary.status === "running"
            ? badge(`canary ${detail.canary.share}%`, "canary")
            : canaryControl((share) => canary(skill, share)),
          h("button", { type: "button", name: "reject",
            onclick: (event) => change(skill, "reject", noteOf(event.currentTarget)) }, "Reject"),
          h("input", { type: "text", name: "note", maxlength: "500",
            placeholder: "why (optional, kept in the history)", "aria-label": "note" }),
          h("button", { type: "button", name: "edit", onclick: () => edit(skill) }, "Edit"),
        ),
    );
  }

  function evidenceList(skill, evidence) {
    const shown = evidence.slice(0, 3);
    return h(
      "div",
      { class: "evidence" },
      h("h3", {}, h("span", { class: "evidence-count" }, String(evidence.length)),
        evidence.length === 1 ? " piece of evidence" : " pieces of evidence"),
      shown.length
        ? h("ul", {}, shown.map((item) => h("li", {},
          h("a", { href: `#/trace/${seg(item.trace_id)}` }, item.trace_id), " ",
          badge(item.source, "source"), " ", item.reason)))
        : null,
      evidence.length > shown.length
        ? h("a", { href: `#/skill/${seg(skill.id)}` }, `All ${evidence.length} on the skill page`)
        : null,
    );
  }

  function edit(skill) {
    state.editing = skill.id;
    render();
  }

  function setFocus(index, scroll = true) {
    const cards = root.querySelectorAll(".skill-card");
    if (!cards.length) return;
    state.focus = Math.max(0, Math.min(index, cards.length - 1));
    cards.forEach((element, i) => element.classList.toggle("focused", i === state.focus));
    if (scroll) cards[state.focus].scrollIntoView({ block: "nearest" });
  }

  const toolbar = h("div", { class: "toolbar" });

  function renderToolbar() {
    const items = pageItems();
    const all = items.length > 0 && items.every((skill) => state.selected.has(skill.id));
    const count = state.selected.size;
    fill(toolbar, 
      h("label", {}, h("input", {
        type: "checkbox",
        name: "select-page",
        checked: all,
        onchange: (event) => {
          for (const skill of items) {
            if (event.target.checked) state.selected.add(skill.id);
            else state.selected.delete(skill.id);
          }
          render();
        },
      }), " Select this page"),
      h("span", { class: "selected-count" }, `${count} selected`),
      h("button", { type: "button", name: "bulk-approve", class: "primary", disabled: !count,
        onclick: () => bulk("approve") }, "Approve selected"),
      h("button", { type: "button", name: "bulk-reject", disabled: !count,
        onclick: () => bulk("reject") }, "Reject selected"),
    );
  }

  function pager() {
    const pages = Math.ceil(state.total / PAGE_SIZE);
    if (pages <= 1) return null;
    const go = (page) => act(async () => {
      state.page = page;
      state.focus = 0;
      state.selected.clear(); // a selection is of one page: bulk changes what is on screen
    });
    return h(
      "nav",
      { class: "pager" },
      h("button", { type: "button", name: "newer", disabled: state.page === 0,
        onclick: () => go(state.page - 1) }, "← Newer"),
      h("span", {}, `Page ${state.page + 1} of ${pages}`),
      h("button", { type: "button", name: "older", disabled: state.page >= pages - 1,
        onclick: () => go(state.page + 1) }, "Older →"),
    );
  }

  function retireSection() {
    if (!state.retiring.length) return null;
    return h(
      "section",
      { class: "retiring" },
      h("h2", {}, "Proposed for retirement"),
      h("p", { class: "muted" }, "Archiving a skill approves its retirement."),
      state.retiring.map((skill) => h(
        "article",
        { class: "card retire-card", dataset: { id: skill.id } },
        h("header", {}, h("a", { href: `#/skill/${seg(skill.id)}` }, skill.id),
          badge(skill.section, "section"), badge("active"),
          h("span", { class: "muted" }, `+${skill.helpful} / −${skill.harmful}`)),
        h("p", { class: "content" }, skill.content),
        h("p", { class: "flag retire" }, h("strong", {}, "Why retire: "), skill.retire_reason),
        h("div", { class: "actions" }, h("button", { type: "button", name: "archive",
          onclick: () => change(skill, "archive") }, "Archive (retire it)")),
      )),
    );
  }

  function render() {
    const items = pageItems();
    renderToolbar();
    fill(root, 
      h("div", { class: "page-head" },
        h("h1", {}, "Review queue"),
        bookPicker(books, name),
        h("a", { href: `#/book/${seg(name)}` }, "Skillbook page")),
      h("p", { class: "muted keys" },
        "Keys: j / k move, a approve, r reject, e edit, x select. ",
        `${state.total} pending.`),
      state.problem ? errorBox(state.problem) : null,
      items.length ? toolbar : null,
      items.length
        ? h("div", { class: "queue" }, items.map(card))
        : h("p", { class: "empty" }, `Nothing waiting for review in ${name}.`),
      pager(),
      retireSection(),
    );
  }

  document.addEventListener("keydown", (event) => {
    const typing = event.target.closest?.("input, textarea, select, [contenteditable]");
    if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
    if (state.editing || state.busy) return; // one change at a time: no double approvals
    const skill = pageItems()[state.focus];
    const keys = {
      j: () => setFocus(state.focus + 1),
      k: () => setFocus(state.focus - 1),
      a: () => skill && change(skill, "approve"),
      r: () => skill && change(skill, "reject"),
      e: () => skill && edit(skill),
      x: () => {
        if (!skill) return;
        if (state.selected.has(skill.id)) state.selected.delete(skill.id);
        else state.selected.add(skill.id);
        render();
      },
    };
    const run = keys[event.key];
    if (run) {
      event.preventDefault();
      run();
    }
  }, { signal: ctx.signal });

  await load();
  render();
}
