// Models & server: the live dashboard (this server's own latency statistics and queue depth) and
// the model store (list, show, pull, remove).
import { api, showError } from "./app.js";
import { el } from "./render.js";

const $ = (id) => document.getElementById(id);
const POLL_MS = 2000;
const ms = (x) => (x == null ? "–" : Math.round(x * 1000));
const pair = (a, b) => `${ms(a)} / ${ms(b)}`;

function size(bytes) {
  if (bytes == null) return "–";
  const units = ["B", "KB", "MB", "GB"];
  let i = 0;
  while (bytes >= 1024 && i < units.length - 1) { bytes /= 1024; i += 1; }
  return `${bytes.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function initModels() {
  let timer = null;

  async function dashboard() {
    if ($("page-models").hidden) { timer = null; return; }
    try {
      const stats = await api("/ui/api/server");
      const requests = stats.rows.reduce((n, r) => n + r.requests, 0);
      $("server-summary").textContent = `queue depth ${stats.queue_depth} · ${stats.active} sequence(s) decoding · ${requests} generation(s) measured`;
      $("server-table").tBodies[0].replaceChildren(...stats.rows.map((r) => el("tr", {},
        ...[r.model, r.adapter, r.requests, r.tpot_p50 ? (1 / r.tpot_p50).toFixed(1) : "–", pair(r.ttft_p50, r.ttft_p95),
          pair(r.tpot_p50, r.tpot_p95), pair(r.e2e_p50, r.e2e_p95)].map((c) => el("td", { text: String(c) })))));
    } catch (error) { showError(error); }
    timer = setTimeout(dashboard, POLL_MS);
  }

  async function showModel(name) {
    const detail = await api(`/ui/api/models/${encodeURIComponent(name)}`);
    $("model-detail").textContent = JSON.stringify(detail, null, 2);
    $("model-detail").hidden = false;
  }

  async function remove(name) {
    if (!window.confirm(`Remove ${name} from the store (its files are deleted)?`)) return;
    await api(`/ui/api/models/${encodeURIComponent(name)}`, { method: "DELETE" });
    await store();
  }

  async function store() {
    const listing = await api("/ui/api/models");
    $("store-table").tBodies[0].replaceChildren(...listing.models.map((m) => el("tr", {},
      el("td", { text: m.name }), el("td", { text: m.status + (m.quantization ? ` (${m.quantization})` : "") }),
      el("td", { text: size(m.size_bytes) }), el("td", { text: m.source || "" }),
      el("td", {}, ...(m.status === "pulled"
        ? [el("button", { type: "button", text: "Show", onclick: () => showModel(m.name).catch(showError) }),
          el("button", { type: "button", text: "Remove", onclick: () => remove(m.name).catch(showError) })]
        : [el("button", { type: "button", text: "Pull", onclick: () => pull(m.name).catch(showError) })])))));
  }

  async function pull(source, name) {
    $("pull-status").textContent = `pulling ${source}…`;
    $("pull-run").disabled = true;
    try {
      const done = await api("/ui/api/models/pull", { method: "POST", body: { source, name: name || null } });
      $("pull-status").textContent = `pulled ${done.name}`;
      await store();
    } catch (error) {
      $("pull-status").textContent = "";
      throw error;
    } finally { $("pull-run").disabled = false; }
  }

  $("pull-form").addEventListener("submit", (event) => {
    event.preventDefault();
    pull($("pull-source").value.trim(), $("pull-name").value.trim()).catch(showError);
  });

  return {
    async shown() {
      store().catch(showError);
      if (!timer) dashboard();
    },
  };
}
