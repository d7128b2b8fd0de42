// jobx web UI: plain JavaScript, no build step. Pages are hash routes:
//   #/                               workflows and live runners
//   #/wf/<wf>                        jobs, steps, handlers, recent requests, submit form
//   #/wf/<wf>/handler/<handler>      a handler and its source
//   #/request/<wf>/<id>              a request: state, progress, live graph, result or error
"use strict";

const enc = encodeURIComponent;
const view = { gen: 0, timer: null, token: localStorage.getItem("jobx.token") || "" };

// el builds an element; attributes starting with "on" are listeners and
// children are nodes or text (never parsed as HTML).
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat()) {
    if (kid === undefined || kid === null || kid === false) continue;
    e.append(kid instanceof Node ? kid : String(kid));
  }
  return e;
}

async function api(path, opts) {
  opts = opts || {};
  const headers = Object.assign({}, opts.headers);
  if (view.token) headers.Authorization = "Bearer " + view.token;
  const resp = await fetch(path, Object.assign({}, opts, { headers, cache: "no-store" }));
  const text = await resp.text();
  let body = null;
  try { body = JSON.parse(text); } catch (e) { /* not JSON (SVG, DOT) */ }
  if (resp.status === 401 || resp.status === 403) showTokenForm();
  return { status: resp.status, ok: resp.ok, body, text };
}

function errorText(r) {
  const e = r.body && r.body.error;
  return (e && (e.message || e.kind)) || "HTTP " + r.status;
}

function showTokenForm() { document.getElementById("token-form").hidden = false; }

document.getElementById("token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  view.token = document.getElementById("token").value.trim();
  localStorage.setItem("jobx.token", view.token);
  route();
});

// setMain replaces the page's content; null, undefined and false kids are
// left out (replaceChildren would show them as text).
function setMain(...kids) {
  const main = document.getElementById("main");
  main.replaceChildren(...kids.filter((k) => k !== undefined && k !== null && k !== false));
}

function crumbs(items) {
  const nav = document.getElementById("crumbs");
  const out = [];
  items.forEach(([text, href], i) => {
    if (i > 0) out.push(el("span", { class: "sep" }, "›"));
    out.push(href ? el("a", { href }, text) : el("span", {}, text));
  });
  nav.replaceChildren(...out);
}

function badge(state) {
  return el("span", { class: "badge state-" + (state || "pending"), "data-state": state || "pending" }, state || "pending");
}

// parseTime reads jobx's UTC timestamps ("2006-01-02 15:04:05.000000").
function parseTime(s) {
  if (!s) return null;
  const m = /^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)(\.\d{1,3})?/.exec(s);
  return m ? new Date(m[1] + "T" + m[2] + (m[3] || "") + "Z") : null;
}

function fmtDuration(sec) {
  if (sec === undefined || sec === null || isNaN(sec)) return "";
  if (sec < 1) return Math.round(sec * 1000) + " ms";
  if (sec < 120) return sec.toFixed(1) + " s";
  const m = Math.floor(sec / 60);
  return m < 120 ? m + " min " + Math.round(sec % 60) + " s" : Math.floor(m / 60) + " h " + (m % 60) + " min";
}

function fmtTime(s) {
  const d = parseTime(s);
  return d ? d.toLocaleString() : "";
}

function table(headers, rows, attrs) {
  return el("table", attrs || {},
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: headers.length, class: "muted" }, "none"))));
}

function route() {
  view.gen++;
  clearTimeout(view.timer);
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  if (parts.length === 0) return workflowsPage(view.gen);
  if (parts[0] === "wf" && parts.length === 2) return workflowPage(view.gen, parts[1]);
  if (parts[0] === "wf" && parts[2] === "handler" && parts.length === 4) return handlerPage(view.gen, parts[1], parts[3]);
  if (parts[0] === "request" && parts.length === 3) return requestPage(view.gen, parts[1], parts[2]);
  crumbs([["workflows", "#/"]]);
  setMain(el("p", {}, "No such page."));
}

async function workflowsPage(gen) {
  crumbs([["workflows"]]);
  const r = await api("/api/workflows");
  if (gen !== view.gen) return;
  if (!r.ok) return setMain(el("div", { class: "error" }, errorText(r)));
  if (r.body.tokens_required) showTokenForm();
  const rows = r.body.workflows.map((w) => el("tr", {},
    el("td", {}, el("a", { href: "#/wf/" + enc(w.name) }, w.name)),
    el("td", {}, w.description),
    el("td", {}, String(w.jobs))));
  const runners = el("div", { id: "runners-section" }, el("p", { class: "muted" }, "Loading…"));
  setMain(el("h1", {}, "Workflows"),
    r.body.tokens_required && !view.token ? el("p", { class: "muted" }, "This gateway needs a token: enter it above.") : null,
    table(["workflow", "description", "jobs"], rows, { id: "workflows" }),
    el("h2", {}, "Runners"), runners);

  const refresh = async () => {
    const rr = await api("/api/runners");
    if (gen !== view.gen) return;
    runners.replaceChildren(rr.ok ? runnersTable(rr.body.runners) : el("div", { class: "error" }, errorText(rr)));
    view.timer = setTimeout(refresh, 5000);
  };
  refresh();
}

// runnersTable lists the live runners; those on the none sandbox carry a
// warning badge, and a warning above the table names them.
function runnersTable(runners) {
  const unisolated = runners.filter((r) => !r.isolated).map((r) => r.id);
  const rows = runners.map((r) => el("tr", { "data-runner": r.id, "data-isolated": String(r.isolated), class: r.isolated ? null : "unisolated" },
    el("td", { class: "mono" }, r.id), el("td", {}, r.host), el("td", {}, r.capabilities.join(", ")),
    el("td", {}, r.workflows.length ? r.workflows.join(", ") : el("span", { class: "muted" }, "all")),
    el("td", {}, r.isolated ? r.sandbox : el("span", { class: "badge unisolated", title: "started with --sandbox none: handlers run as the runner's user, with its files, network and processes in reach" },
      "⚠ " + r.sandbox + ": handlers run unisolated")),
    el("td", {}, r.in_flight + " / " + r.concurrency), el("td", { class: "mono" }, r.version),
    el("td", {}, fmtDuration((Date.now() - Date.parse(r.started)) / 1000))));
  return el("div", {},
    unisolated.length ? el("div", { class: "warning", id: "runners-warning", role: "alert" },
      el("strong", {}, "Handlers run unisolated"), " on " + unisolated.join(", ") +
      " (--sandbox none): as the runner's user, with its files, network and processes in reach. Restart with --sandbox auto to isolate them.") : null,
    table(["runner", "host", "capabilities", "workflows", "sandbox", "load", "version", "up"], rows, { id: "runners" }));
}

async function workflowPage(gen, wf) {
  crumbs([["workflows", "#/"], [wf]]);
  const r = await api("/api/workflows/" + enc(wf));
  if (gen !== view.gen) return;
  if (!r.ok) return setMain(el("h1", {}, wf), el("div", { class: "error" }, errorText(r)));
  const w = r.body;
  const handlerLink = (h) => h ? el("a", { href: "#/wf/" + enc(wf) + "/handler/" + enc(h) }, h) : el("span", { class: "muted" }, "—");

  const jobSelect = el("select", { id: "job-select", name: "job" }, w.jobs.map((j) => el("option", { value: j.name }, j.name)));
  const args = el("textarea", { id: "arguments", name: "arguments", spellcheck: "false" }, "{}");
  const formError = el("div", { id: "form-error", role: "alert" });
  const form = el("form", { id: "submit-form", class: "submit card", onsubmit: (ev) => submitJob(ev, wf, jobSelect, args, formError) },
    el("label", { for: "job-select" }, "Job"), jobSelect,
    el("label", { for: "arguments" }, "Arguments (a JSON object)"), args,
    el("div", { class: "row" }, el("button", { type: "submit", id: "submit-button" }, "Submit"),
      el("span", { class: "muted" }, "non-blocking; the request is kept for tracing (jobx request cleanup removes it)")),
    formError);

  const jobs = w.jobs.map((j) => el("tr", {},
    el("td", {}, j.name), el("td", {}, j.description), el("td", {}, j.initial_step),
    el("td", {}, el("button", { type: "button", class: "link", onclick: () => { jobSelect.value = j.name; args.focus(); } }, "run…"))));
  const steps = w.steps.map((s) => el("tr", {},
    el("td", {}, s.name), el("td", {}, handlerLink(s.map)), el("td", {}, handlerLink(s.combine)), el("td", {}, handlerLink(s.reduce)), el("td", {}, s.description)));
  const handlers = w.handlers.map((h) => el("tr", {},
    el("td", {}, handlerLink(h.name)), el("td", {}, h.handler_type), el("td", {}, h.source_type),
    el("td", {}, h.required_capability), el("td", { class: "mono" }, h.file || ""), el("td", {}, h.description)));
  const requests = el("div", { id: "requests" }, el("p", { class: "muted" }, "Loading…"));

  setMain(el("h1", {}, w.name), el("p", { class: "muted" }, w.description),
    el("h2", {}, "Jobs"), table(["job", "description", "initial step", ""], jobs, { id: "jobs" }),
    el("h2", {}, "Submit a job"), form,
    el("h2", {}, "Recent requests"), requests,
    el("h2", {}, "Steps"), table(["step", "map", "combine", "reduce", "description"], steps, { id: "steps" }),
    el("h2", {}, "Handlers"), table(["handler", "type", "language", "capability", "file", "description"], handlers, { id: "handlers" }));

  const refresh = async () => {
    const rr = await api("/api/workflows/" + enc(wf) + "/requests?limit=30");
    if (gen !== view.gen) return;
    if (!rr.ok) {
      requests.replaceChildren(el("div", { class: "error" }, errorText(rr)));
    } else {
      // A removed request (cleaned up; its summary is in the history) has
      // no page to link to.
      const rows = rr.body.requests.map((q) => el("tr", { class: q.removed ? "removed" : null },
        el("td", { class: "mono" }, q.removed ? q.request_id.slice(0, 10)
          : el("a", { href: "#/request/" + enc(wf) + "/" + enc(q.request_id) }, q.request_id.slice(0, 10))),
        el("td", {}, q.job_name), el("td", {}, badge(q.state), q.removed ? el("span", { class: "muted" }, " removed") : null),
        el("td", {}, fmtTime(q.created_timestamp)), el("td", {}, fmtDuration(q.duration_seconds)),
        el("td", {}, q.error_kind || "")));
      requests.replaceChildren(table(["request", "job", "state", "created", "duration", "error"], rows, { id: "requests-table" }),
        el("p", { class: "muted" }, "Requests still kept link to their page; removed ones (a blocking request once delivered, others after the runners' --retention) are listed from the workflow's history, its last 100. Submit with keep=true to keep one for tracing."));
    }
    view.timer = setTimeout(refresh, 3000);
  };
  refresh();
}

async function submitJob(ev, wf, jobSelect, args, formError) {
  ev.preventDefault();
  formError.textContent = "";
  let value;
  try {
    value = JSON.parse(args.value || "{}");
  } catch (e) {
    formError.textContent = "Arguments: not JSON: " + e.message;
    return;
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    formError.textContent = "Arguments: want a JSON object, like {\"arg1\": 1000}";
    return;
  }
  const job = jobSelect.value;
  const r = await api("/job/" + enc(wf) + "/" + enc(job) + "?blocking=false&keep=true", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ arguments: value }),
  });
  if (r.status !== 202 || !r.body || !r.body.request_id) {
    formError.textContent = "Submit failed: " + errorText(r);
    return;
  }
  location.hash = "#/request/" + enc(wf) + "/" + enc(r.body.request_id);
}

async function handlerPage(gen, wf, name) {
  crumbs([["workflows", "#/"], [wf, "#/wf/" + enc(wf)], ["handler " + name]]);
  const r = await api("/api/workflows/" + enc(wf) + "/handlers/" + enc(name));
  if (gen !== view.gen) return;
  if (!r.ok) return setMain(el("h1", {}, name), el("div", { class: "error" }, errorText(r)));
  const h = r.body;
  const field = (k, v) => v ? el("div", {}, el("span", {}, k), v) : null;
  const o = h.options || {};
  setMain(el("h1", {}, h.name), el("p", { class: "muted" }, h.description),
    el("div", { class: "card grid" }, field("type", h.handler_type), field("language", h.source_type),
      field("capability", h.required_capability), field("file", h.file), field("version", h.version && h.version.slice(0, 12)),
      field("timeout", o.timeout), field("retries", o.retries && String(o.retries)), field("network", o.network)),
    el("h2", {}, "Source"), el("pre", { id: "source" }, el("code", {}, h.source_code)));
}

async function requestPage(gen, wf, id) {
  crumbs([["workflows", "#/"], [wf, "#/wf/" + enc(wf)], ["request " + id.slice(0, 10)]]);
  const base = "/request/" + enc(wf) + "/" + enc(id);
  const summary = el("div", { class: "card grid", id: "summary" });
  const bar = el("div", {});
  const progressText = el("span", { id: "progress-text" });
  const graph = el("div", { id: "graph" }, el("span", { class: "muted" }, "Loading the graph…"));
  const outcome = el("div", { id: "outcome" });
  const logs = el("div", { id: "logs" });
  setMain(el("h1", {}, "Request ", el("span", { class: "mono" }, id)),
    summary,
    el("h2", {}, "Progress"), el("div", { class: "progress", id: "progress" }, bar), progressText,
    el("h2", {}, "Invocation graph"),
    el("p", { class: "links" }, el("a", { href: base + "/graph?format=svg", target: "_blank" }, "SVG"),
      el("a", { href: base + "/graph?format=dot", target: "_blank" }, "DOT"),
      el("a", { href: base + "/graph?format=png", target: "_blank" }, "PNG"),
      el("a", { href: base + "/graph?format=json", target: "_blank" }, "JSON")),
    graph, outcome, logs);

  // Each invocation's log lines, once the request is done (recorded for
  // kept requests; the UI submits with keep=true).
  const loadLogs = async () => {
    const g = await api(base + "/graph?format=json");
    if (gen !== view.gen || !g.ok) return;
    const rows = [];
    const walk = (n) => {
      if (!n) return;
      if (n.log) {
        rows.push(el("div", { class: "invocation-log", "data-invocation": n.invocation_id },
          el("p", {}, el("strong", {}, n.kind), " ", el("span", { class: "mono" }, n.invocation_id.slice(0, 10)),
            " step ", n.step, " handler ", n.handler),
          el("pre", {}, n.log)));
      }
      (n.children || []).forEach(walk);
      walk(n.reduce);
    };
    walk(g.body.root);
    logs.replaceChildren(el("h2", {}, "Handler logs"), ...(rows.length ? rows
      : [el("p", { class: "muted" }, "No invocation logged anything (logs are kept for requests submitted with keep=true).")]));
  };

  let graphKey = "", bigGraphWanted = false;
  const loadGraph = async () => {
    const g = await api(base + "/graph?format=svg");
    if (gen !== view.gen) return;
    if (!g.ok) return graph.replaceChildren(el("div", { class: "error" }, errorText(g)));
    const at = g.text.indexOf("<svg");
    graph.innerHTML = at >= 0 ? g.text.slice(at) : g.text; // our own SVG (dot escapes labels)
  };

  const tick = async () => {
    const r = await api(base);
    if (gen !== view.gen) return;
    if (!r.ok) {
      summary.replaceChildren(el("div", {}, el("span", {}, "state"), badge("unknown")));
      outcome.replaceChildren(el("div", { class: "error", id: "error" }, errorText(r)));
      graph.replaceChildren();
      return;
    }
    const q = r.body;
    const p = q.progress || { invocations_done: 0, invocations_known: 0 };
    const start = parseTime(q.created_timestamp), end = parseTime(q.done_timestamp) || new Date();
    const state = el("span", { id: "request-state", "data-state": q.state }, badge(q.state));
    summary.replaceChildren(
      el("div", {}, el("span", {}, "workflow"), el("a", { href: "#/wf/" + enc(wf) }, wf)),
      el("div", {}, el("span", {}, "job"), q.job_name),
      el("div", {}, el("span", {}, "state"), state),
      el("div", {}, el("span", {}, "created"), fmtTime(q.created_timestamp)),
      el("div", {}, el("span", {}, q.is_done ? "duration" : "running for"), start ? fmtDuration((end - start) / 1000) : ""),
      el("div", {}, el("span", {}, "mode"), (q.is_blocking ? "blocking" : "non-blocking")));
    const pct = p.invocations_known ? Math.round(100 * p.invocations_done / p.invocations_known) : 0;
    bar.style.width = pct + "%";
    document.getElementById("progress").classList.toggle("failed", q.state === "failed");
    progressText.textContent = p.invocations_done + " / " + p.invocations_known + " invocations done";
    progressText.dataset.done = p.invocations_done;
    progressText.dataset.known = p.invocations_known;

    const big = p.invocations_known > maxLiveGraph;
    const key = big ? q.state : q.state + ":" + p.invocations_done + "/" + p.invocations_known; // a big graph: redrawn when the state changes
    if (big && !bigGraphWanted) {
      graph.replaceChildren(el("p", { class: "muted" }, p.invocations_known + " invocations: the graph is not drawn live. ",
        el("button", { type: "button", class: "link", onclick: () => { bigGraphWanted = true; graphKey = ""; loadGraph(); } }, "Draw it now")));
    } else if (key !== graphKey) {
      graphKey = key;
      await loadGraph();
      if (gen !== view.gen) return;
    }
    if (q.state === "done") outcome.replaceChildren(el("h2", {}, "Result"), resultTable(q.result && q.result.pairs || []));
    else if (q.state === "failed") outcome.replaceChildren(el("h2", {}, "Error"), errorBox(q.error || {}));
    else outcome.replaceChildren();
    if (!q.is_done) view.timer = setTimeout(tick, 1000);
    else await loadLogs();
  };
  tick();
}

const maxRows = 500;
// maxLiveGraph is the largest graph redrawn on every change; larger ones
// are drawn on demand (each drawing reads every invocation).
const maxLiveGraph = 300;

function resultTable(pairs) {
  const rows = pairs.slice(0, maxRows).map((kv) => el("tr", {},
    el("td", { class: "mono" }, JSON.stringify(kv[0])), el("td", { class: "mono" }, JSON.stringify(kv[1]))));
  return el("div", {},
    table(["key", "value"], rows, { id: "result" }),
    pairs.length > maxRows ? el("p", { class: "muted" }, (pairs.length - maxRows) + " more pairs (GET the request for all of them)") : null);
}

function errorBox(e) {
  const line = (k, v) => (v !== undefined && v !== null && v !== "") ? el("div", {}, el("span", {}, k), String(v)) : null;
  return el("div", { class: "error", id: "error" },
    el("p", {}, el("strong", { id: "error-kind" }, e.kind || "error"), ": ", el("span", { id: "error-message" }, e.message || "")),
    el("div", { class: "grid" }, line("handler", e.handler), line("step", e.step), line("direction", e.direction),
      line("invocation", e.invocation_id && e.invocation_id.slice(0, 10)), line("exit status", e.exit_code),
      line("signal", e.signal), line("attempts", e.attempts)),
    e.stderr_tail ? [el("h2", {}, "stderr (tail)"), el("pre", { id: "stderr" }, e.stderr_tail)] : null);
}

window.addEventListener("hashchange", route);
route();
