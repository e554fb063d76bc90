// Runs: training runs with a live loss chart (polls metrics.jsonl for new lines), pipeline stages,
// evaluation comparisons with their confidence intervals, gate reports, and the model registry
// with promote / rollback behind a confirmation.
import { api, showError } from "./app.js";
import { el } from "./render.js";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const POLL_MS = 1000;

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

function fmt(x) { return Math.abs(x) >= 100 || x === 0 ? x.toFixed(0) : x.toPrecision(3); }

// A line per series over a shared step axis, drawn as inline SVG.
export function chart(series, label) {
  const W = 640, H = 260, L = 52, R = 12, T = 12, B = 30;
  const all = series.flatMap((s) => s.points);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label, id: "run-chart",
    "data-points": all.length, class: "chart" });
  if (!all.length) return root;
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)], [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  const sx = (x) => L + ((x - x0) / (x1 - x0 || 1)) * (W - L - R);
  const sy = (y) => H - B - ((y - y0) / (y1 - y0 || 1)) * (H - T - B);
  root.append(svg("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }),
    svg("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }));
  const tick = (x, y, text, anchor) => { const t = svg("text", { x, y, "text-anchor": anchor }); t.textContent = text; return t; };
  root.append(tick(L - 4, sy(y1) + 4, fmt(y1), "end"), tick(L - 4, sy(y0), fmt(y0), "end"),
    tick(L, H - 8, `step ${x0}`, "start"), tick(W - R, H - 8, `step ${x1}`, "end"));
  series.forEach((s, i) => {
    if (!s.points.length) return;
    root.append(svg("polyline", { points: s.points.map((p) => `${sx(p[0])},${sy(p[1])}`).join(" "), class: `line s${i}` }));
    for (const p of s.points.length < 80 ? s.points : []) root.append(svg("circle", { cx: sx(p[0]), cy: sy(p[1]), r: 2.5, class: `s${i}` }));
    const legend = tick(W - R, T + 12 + 14 * i, s.name, "end");
    legend.setAttribute("class", `legend s${i}`);
    root.append(legend);
  });
  return root;
}

function table(headers, rows) {
  return el("div", { class: "scroll" }, el("table", {},
    el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", { scope: "col", text: h })))),
    el("tbody", {}, ...rows.map((r) => el("tr", {}, ...r.map((c) => el("td", { text: c == null ? "–" : String(c) })))))));
}

// The run's summary.json, its plain values only (nested data reports stay in the file).
function summary(data) {
  const rows = Object.entries(data).filter(([, v]) => v !== null && typeof v !== "object")
    .map(([k, v]) => [k, typeof v === "number" && !Number.isInteger(v) ? fmt(v) : v]);
  return el("details", { class: "summary", open: "" }, el("summary", { text: "summary.json" }), table(["field", "value"], rows));
}

function comparisons(list) {
  return list.map((c) => el("section", { class: "comparison" },
    el("h4", { text: `${c.task || c.path}: ${c.challenger_model} vs ${c.champion_model} (n=${c.n}, ${Math.round((c.confidence || 0.95) * 100)}% CI)` }),
    table(["metric", "champion", "challenger", "difference", "CI"], Object.entries(c.metrics).map(([m, v]) =>
      [m, fmt(v.champion), fmt(v.challenger), fmt(v.diff), `[${fmt(v.ci_low)}, ${fmt(v.ci_high)}]`]))));
}

function stages(list) {
  const rows = list.map((s) => [s.name, s.kind, s.status, s.seconds == null ? null : `${s.seconds} s`]);
  const gates = list.filter((s) => s.gate_report).map((s) => el("section", {},
    el("h4", { text: `Gate ${s.name}: ${s.status === "done" ? "passed" : s.status}` }), el("pre", { class: "chunk", text: s.gate_report })));
  return [table(["stage", "kind", "status", "time"], rows), ...gates];
}

export function initRuns() {
  let timer = null, current = null;

  function series(records) {
    const train = [], evals = [];
    for (const r of records) {
      const loss = r.kind === "eval" ? r.eval_loss ?? r.loss : r.loss;  // sft writes eval_loss, trl stages loss
      if (typeof loss === "number") (r.kind === "eval" ? evals : train).push([r.step, loss]);
    }
    return [{ name: "train loss", points: train }, { name: "eval loss", points: evals }];
  }

  function drawRun(run) {
    const box = $("run-detail");
    const parts = [el("h3", { text: run.id }), el("p", { id: "run-status", class: "muted", text: `${run.kind} · ${run.status}` })];
    if (run.kind === "finetune") {
      const s = series(current.records);
      parts.push(chart(s, `loss curve of ${run.id}`),
        el("p", { class: "muted", id: "run-points", text: `${s[0].points.length} training points, ${s[1].points.length} evaluations` }));
      if (run.summary) parts.push(summary(run.summary));
    }
    if (run.stages) parts.push(...stages(run.stages));
    if (run.comparisons && run.comparisons.length) parts.push(el("h4", { text: "Evaluation" }), ...comparisons(run.comparisons));
    box.replaceChildren(...parts);
  }

  async function poll() {
    if (!current || $("page-runs").hidden) { timer = null; return; }
    try {
      const run = await api(`/ui/api/run?id=${encodeURIComponent(current.id)}&after=${current.lines}`);
      if (run.metrics) { current.records.push(...run.metrics); current.lines = run.lines; }
      drawRun(run);
    } catch (error) { showError(error); }
    timer = setTimeout(poll, POLL_MS);
  }

  function open(id) {
    current = { id, lines: 0, records: [] };
    clearTimeout(timer);
    poll();
  }

  async function registryModel(name) {
    const model = await api(`/ui/api/registry/${encodeURIComponent(name)}`);
    const act = (path, body, question) => async () => {
      if (!window.confirm(question)) return;
      try { await api(`/ui/api/registry/${encodeURIComponent(name)}/${path}`, { method: "POST", body }); registryModel(name); }
      catch (error) { showError(error); }
    };
    const rows = model.versions.map((v) => el("tr", {}, el("td", { text: `v${v.version}` }), el("td", { text: v.aliases.join(", ") || "–" }),
      el("td", { text: v.adapter || v.source || "" }),
      el("td", {}, el("button", { type: "button", text: "Promote to champion",
        onclick: act("promote", { version: v.version, alias: "champion" }, `Point champion of ${name} at version ${v.version}?`) }))));
    clearTimeout(timer); current = null;
    $("run-detail").replaceChildren(el("h3", { text: `Registry: ${name}` }),
      el("div", { class: "scroll" }, el("table", {}, el("thead", {}, el("tr", {}, ...["version", "aliases", "adapter / source", ""].map((h) => el("th", { scope: "col", text: h })))),
        el("tbody", {}, ...rows))),
      el("button", { type: "button", text: "Roll champion back", onclick: act("rollback", { alias: "champion" }, `Move champion of ${name} back to its previous version?`) }));
  }

  async function loadLists() {
    const listing = await api("/ui/api/runs");
    $("runs-root").textContent = `runs under ${listing.root}`;
    $("runs-list").replaceChildren(...(listing.runs.length ? listing.runs.map((r) => el("li", {},
      el("button", { type: "button", class: "run", "data-run": r.id, text: `${r.id} — ${r.kind}, ${r.status}`, onclick: () => open(r.id) })))
      : [el("li", { class: "muted", text: "no runs yet" })]));
    try {
      const registry = await api("/ui/api/registry");
      $("registry-list").replaceChildren(...(registry.models.length ? registry.models.map((m) => el("li", {},
        el("button", { type: "button", text: `${m.name} (${m.versions} versions, champion v${m.aliases.champion ?? "–"})`,
          onclick: () => registryModel(m.name).catch(showError) })))
        : [el("li", { class: "muted", text: "no registered models" })]));
    } catch (error) {
      $("registry-list").replaceChildren(el("li", { class: "muted", text: `registry unavailable: ${error.message}` }));
    }
  }

  return {
    async shown() {
      try { await loadLists(); } catch (error) { showError(error); }
      if (current && !timer) poll();
    },
  };
}
