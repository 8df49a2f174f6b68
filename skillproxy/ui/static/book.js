// One skillbook: the section exactly as the proxy injects it now (text, tokens against the
// budget, the skills in order), its settings (a blank field is the configured default),
// export to a file and import from one, its live skills, the lessons the skill rules refused
// (each linked to its episode) and its history.

import { download, get, patch, post, query, segment } from "./api.js";
import { badge, errorBox, fill, h, seg, toast, when } from "./dom.js";

const FIELDS = ["token_budget", "ranking", "auto_approve", "max_active"];

function promptView(prompt) {
  return h(
    "section",
    { class: "prompt" },
    h("h2", {}, "Injected section"),
    h("p", { class: "prompt-figures" },
      h("strong", { class: "tokens" }, `${prompt.tokens} / ${prompt.token_budget} tokens`),
      h("span", { class: "muted" },
        ` · version ${prompt.version} · ranking ${prompt.ranking} · ${prompt.encoding}` +
        (prompt.frozen ? " · frozen" : ""))),
    prompt.text
      ? h("pre", { class: "prompt-text" }, prompt.text)
      : h("p", { class: "muted" }, "Nothing is injected: no active skill fits."),
    h("p", {}, h("span", { class: "muted" }, "Skills, in order: "),
      prompt.skill_ids.length
        ? h("ol", { class: "prompt-ids" }, prompt.skill_ids.map((id) => h("li", {},
          h("a", { href: `#/skill/${seg(id)}` }, id))))
        : "none"),
  );
}

function field(label, control, hint) {
  return h("label", { class: "field" }, h("span", {}, label), control,
    hint ? h("small", { class: "muted" }, hint) : null);
}

function settingsForm(settings, save) {
  const eff = settings.effective || {};
  const numberInput = (key) => h("input", {
    type: "number", name: key, min: key === "max_active" ? 1 : 0, step: 1,
    value: settings[key] ?? "", placeholder: `default: ${eff[key] ?? "none"}`,
  });
  const choice = (key, options) => h("select", { name: key },
    h("option", { value: "" }, `default (${eff[key] ?? "none"})`),
    options.map((value) => h("option", { value, selected: String(settings[key]) === value },
      value)));
  const controls = {
    token_budget: numberInput("token_budget"),
    ranking: choice("ranking", ["usefulness", "relevance"]),
    auto_approve: choice("auto_approve", ["true", "false"]),
    max_active: numberInput("max_active"),
  };
  const frozen = h("input", { type: "checkbox", name: "frozen", checked: settings.frozen });
  const problem = h("p", { class: "error", role: "alert", hidden: true });

  const read = (key) => {
    const raw = controls[key].value.trim();
    if (raw === "") return null;
    if (key === "auto_approve") return raw === "true";
    if (key === "ranking") return raw;
    const value = Number(raw);
    if (!Number.isInteger(value)) {
      throw new Error(`${key}: a whole number, or blank for the default`);
    }
    return value;
  };

  return h(
    "form",
    {
      class: "settings",
      onsubmit: (event) => {
        event.preventDefault();
        problem.hidden = true;
        const changes = {};
        try {
          for (const key of FIELDS) {
            const value = read(key);
            if (value !== (settings[key] ?? null)) changes[key] = value;
          }
        } catch (exc) {
          problem.textContent = exc.message;
          problem.hidden = false;
          return;
        }
        if (frozen.checked !== settings.frozen) changes.frozen = frozen.checked;
        save(changes);
      },
    },
    h("h2", {}, "Settings"),
    field("Token budget", controls.token_budget, "tokens the section may take"),
    field("Ranking", controls.ranking, "which skills go first when they do not all fit"),
    field("Auto-approve", controls.auto_approve, "proposals go live without review"),
    field("Max active", controls.max_active, "past it, retiring the least useful is proposed"),
    h("label", { class: "field check" }, frozen,
      h("span", {}, "Frozen: the injected bytes stay as they are now"),
      settings.frozen_version ? h("small", { class: "muted" },
        ` (since version ${settings.frozen_version})`) : null),
    problem,
    h("button", { type: "submit", class: "primary", name: "save-settings" }, "Save settings"),
  );
}

function saveBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const link = h("a", { href: url, download: filename, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

function summaryView(summary) {
  const remapped = Object.entries(summary.remapped || {});
  return h("div", { class: "import-summary" },
    h("p", {}, `Imported: ${summary.created} created, ${summary.updated} updated, ` +
      `${summary.unchanged} unchanged, ${summary.archived} archived.`),
    remapped.length
      ? h("ul", {}, remapped.map(([from, to]) => h("li", {}, h("code", {}, from), " is now ",
        h("a", { href: `#/skill/${seg(to)}` }, to))))
      : null);
}

function skillsTable(skills) {
  if (!skills.length) return h("p", { class: "muted" }, "No active skills.");
  return h("table", { class: "skills" },
    h("thead", {}, h("tr", {}, ["Id", "Status", "Section", "+", "−", "Text"].map((t) =>
      h("th", {}, t)))),
    h("tbody", {}, skills.map((skill) => h("tr", {},
      h("td", {}, h("a", { href: `#/skill/${seg(skill.id)}` }, skill.id)),
      h("td", {}, badge(skill.status)),
      h("td", {}, skill.section),
      h("td", {}, String(skill.helpful)),
      h("td", {}, String(skill.harmful)),
      h("td", { class: "text-cell" }, skill.content)))));
}

function refusedTable(refused) {
  if (!refused.length) return h("p", { class: "muted" }, "The skill rules refused none.");
  return h("table", { class: "refused-lessons" },
    h("thead", {}, h("tr", {}, ["When", "Episode", "Rule", "Lesson"].map((t) => h("th", {}, t)))),
    h("tbody", {}, refused.map((item) => h("tr", { dataset: { seq: item.seq } },
      h("td", { class: "time" }, when(item.created_at)),
      h("td", {}, h("a", { href: `#/episode/${seg(item.episode_id)}` },
        h("code", {}, item.episode_id))),
      h("td", { class: "rule" }, item.rule),
      h("td", { class: "text-cell lesson" }, item.content)))));
}

export async function bookPage(root, args, ctx) {
  const name = args[0];
  const path = `/skillbooks/${segment(name)}`;
  let importResult = null;

  async function load() {
    const [book, prompt, settings, skills, events, refused] = await Promise.all([
      get(path),
      get(`${path}/prompt`),
      get(`${path}/settings`),
      get(`${path}/skills${query({ status: "active" })}`),
      get(`${path}/history`).catch((exc) => (exc.auth ? Promise.reject(exc) : { data: [] })),
      get(`${path}/refused${query({ limit: 50 })}`),
    ]);
    return { counts: book.skills, prompt, settings, skills: skills.data, events: events.data,
      refused: refused.data };
  }

  const refresh = ctx.refresher(load, render);

  const save = async (changes) => {
    if (!Object.keys(changes).length) {
      toast("Nothing to change.");
      return;
    }
    try {
      await patch(`${path}/settings`, changes);
    } catch (exc) {
      ctx.fail(exc);
      return;
    }
    refresh(`Saved: ${Object.keys(changes).join(", ")}`);
  };

  const exporter = (format, suffix) => async () => {
    try {
      saveBlob(await download(`${path}/export${query({ format })}`), `${name}.${suffix}`);
    } catch (exc) {
      ctx.fail(exc);
    }
  };

  const file = h("input", { type: "file", name: "import-file", accept: ".json,application/json" });
  const mode = h("select", { name: "import-mode" }, h("option", { value: "merge" }, "merge"),
    h("option", { value: "replace" }, "replace"));
  const importIt = async (event) => {
    event.preventDefault();
    const chosen = file.files[0];
    if (!chosen) {
      toast("Choose an exported JSON file first.", "bad");
      return;
    }
    let document_;
    try {
      document_ = JSON.parse(await chosen.text());
    } catch (exc) {
      importResult = errorBox(new Error(`${chosen.name} is not JSON: ${exc.message}`));
      refresh();
      return;
    }
    try {
      importResult = summaryView(await post(`${path}/import${query({ mode: mode.value })}`,
        document_));
    } catch (exc) {
      if (exc.auth) {
        ctx.fail(exc);
        return;
      }
      importResult = errorBox(exc);
    }
    refresh();
  };

  function render({ counts, prompt, settings, skills, events, refused }) {
    fill(root,
      h("div", { class: "page-head" }, h("h1", {}, name),
        settings.frozen ? badge("frozen", "frozen") : null,
        h("a", { href: `#/queue/${seg(name)}` }, "Review queue"),
        h("a", { href: `#/traffic/${seg(name)}` }, "Traffic")),
      h("div", { class: "columns" },
        promptView(prompt),
        settingsForm(settings, save)),
      h("section", { class: "transfer" },
        h("h2", {}, "Export and import"),
        h("div", { class: "actions" },
          h("button", { type: "button", name: "export-json", onclick: exporter("json",
            "skillbook.json") }, "Export JSON"),
          h("button", { type: "button", name: "export-markdown", onclick: exporter("markdown",
            "md") }, "Export Markdown")),
        h("form", { class: "import", onsubmit: importIt },
          file, h("label", {}, " Mode ", mode),
          h("button", { type: "submit", name: "import" }, "Import")),
        importResult),
      h("h2", {}, `Active skills (${counts.active})`),
      h("p", { class: "muted counts" },
        h("a", { href: `#/queue/${seg(name)}` }, `${counts.pending} pending`),
        ` · ${counts.rejected} rejected · ${counts.archived} archived`),
      skillsTable(skills),
      h("h2", {}, "Refused lessons"),
      refusedTable(refused),
      h("h2", {}, "History"),
      events.length
        ? h("ul", { class: "book-history" }, events.slice(-15).reverse().map((event) => h("li", {},
          badge(event.action, "action"), ` by ${event.actor}, ${when(event.at)} `,
          h("code", {}, JSON.stringify(event.detail)))))
        : h("p", { class: "muted" }, "Nothing yet."),
    );
  }

  render(await load());
}
