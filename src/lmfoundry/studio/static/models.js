// Models & server: the live dashboard (this server's own latency statistics and queue depth) and
// the model store (list, show, pull, remove, quantize as a background job with its progress).
import { api, fillSelect, showError } from "./app.js";
import { el } from "./render.js";

const $ = (id) => document.getElementById(id);
const POLL_MS = 2000;
const JOB_POLL_MS = 500;
const DEFAULT_METHOD = "gguf-q4_k_m";
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

  function pickForQuantize(name) {
    $("quantize-model").value = name;
    $("quantize-method").focus();
  }

  function actions(m) {
    if (m.status !== "pulled") return [el("button", { type: "button", text: "Pull", onclick: () => pull(m.name).catch(showError) })];
    const buttons = [el("button", { type: "button", text: "Show", onclick: () => showModel(m.name).catch(showError) }),
      el("button", { type: "button", text: "Remove", onclick: () => remove(m.name).catch(showError) })];
    if (!m.quantization) buttons.push(el("button", { type: "button", class: "quantize", "data-model": m.name, text: "Quantize…", onclick: () => pickForQuantize(m.name) }));
    return buttons;
  }

  async function store(highlight) {
    const listing = await api("/ui/api/models");
    $("store-table").tBodies[0].replaceChildren(...listing.models.map((m) => el("tr", { class: m.name === highlight ? "new" : null, "data-model": m.name },
      el("td", { text: m.name }), el("td", { text: m.status + (m.quantization ? ` (${m.quantization})` : "") }),
      el("td", { text: size(m.size_bytes) }), el("td", { text: m.source || "" }), el("td", {}, ...actions(m)))));
    fillSelect($("quantize-model"), listing.models.filter((m) => m.status === "pulled" && !m.quantization).map((m) => m.name));
    fillSelect($("quantize-method"), listing.quantize_methods, $("quantize-method").value || DEFAULT_METHOD);
  }

  // A quantization job: its stage and progress every JOB_POLL_MS until it is done or failed.
  let watching = null;
  function showJob(job) {
    $("quantize-job").hidden = false;
    $("quantize-progress").value = job.progress;
    const stage = job.status === "running" ? `stage ${job.stage_number} of ${job.stages}: ${job.stage}` : job.status;
    let text = `${job.title} · ${stage} · ${Math.round(job.progress * 100)}% · ${job.seconds} s`;
    if (job.status === "done") {
      const q = job.result.quantization;
      text = `${job.title}: created ${job.result.name} (${size(job.result.size_bytes)}, ${q.bits_per_param} bits/param) in ${job.seconds} s`;
    }
    if (job.status === "failed") text = `${job.title} failed after ${job.seconds} s: ${job.error}`;
    $("quantize-stage").textContent = text;
    $("quantize-stage").className = job.status === "failed" ? "error" : "";
  }

  async function watch(id) {
    watching = id;
    $("quantize-run").disabled = true;
    try {
      for (;;) {
        const job = await api(`/ui/api/jobs/${encodeURIComponent(id)}`);
        showJob(job);
        if (job.status === "done") { await store(job.result.name); await showModel(job.result.name); break; }
        if (job.status === "failed") { showError(`quantization failed: ${job.error}`); break; }
        await new Promise((resolve) => setTimeout(resolve, JOB_POLL_MS));
      }
    } finally { watching = null; $("quantize-run").disabled = false; }
  }

  $("quantize-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(null);
    const body = { model: $("quantize-model").value, method: $("quantize-method").value, name: $("quantize-name").value.trim() || null };
    try {
      const job = await api("/ui/api/models/quantize", { method: "POST", body });
      showJob(job);
      await watch(job.id);
    } catch (error) { showError(error); }
  });

  async function resumeJob() {
    const running = (await api("/ui/api/jobs")).jobs.filter((j) => j.kind === "quantize" && j.status === "running");
    if (running.length && !watching) await watch(running[running.length - 1].id);
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
      resumeJob().catch(showError);
      if (!timer) dashboard();
    },
  };
}
