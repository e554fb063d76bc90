// Chat: model and sampling controls, system prompt, streaming with Stop, a conversation kept in
// localStorage, RAG mode (documents from a store, [n] citations that open their chunk, the
// documents the answer draws on first), and reply formats: a JSON schema (shown pretty-printed
// and validated) or tools (the calls shown as cards).
import { api, fillSelect, modelIds, showError, streamChat } from "./app.js";
import { el, renderMarkdown, statsText } from "./render.js";
import { jsonView, readFormat, toolCallCards } from "./formats.js";

const STORE = "lmf.chat";
const $ = (id) => document.getElementById(id);

function load() {
  try { return JSON.parse(localStorage.getItem(STORE)) || []; } catch (_) { return []; }
}

function save(log) { localStorage.setItem(STORE, JSON.stringify(log)); }

export function openChunk(hit, number) {
  $("chunk-title").textContent = `Document ${number}: ${hit.source}`;
  $("chunk-text").textContent = hit.text;
  $("chunk-dialog").showModal();
}

function sourceButton(hits, n, citation) {
  const note = !citation ? "" : citation.attributed
    ? ` (attributed: closest by similarity${citation.score == null ? "" : ` ${citation.score.toFixed(2)}`})` : " (cited)";
  return el("button", { type: "button", class: citation ? "source cited" : "source", "data-doc": String(n),
    "data-cited": citation ? citation.method : null, text: `[${n}] ${hits[n].source}${note}`, onclick: () => openChunk(hits[n], n) });
}

// The documents the answer draws on (as `lmf rag ask` attributes them) first, the rest folded
// under "also retrieved"; every retrieved document while the answer streams (`citations` null).
function sources(hits, citations) {
  if (!citations) {
    return el("div", { class: "sources" }, el("span", { text: "Retrieved: " }), ...hits.map((_, n) => sourceButton(hits, n)));
  }
  const used = citations.filter((c) => hits[c.document]);
  const rest = hits.map((_, n) => n).filter((n) => !used.some((c) => c.document === n));
  const box = el("div", { class: "sources" }, el("span", { text: used.length ? "Sources: " : "No document cited." }),
    ...used.map((c) => sourceButton(hits, c.document, c)));
  if (rest.length) {
    box.append(el("details", { class: "also" }, el("summary", { text: `also retrieved (${rest.length})` }),
      ...rest.map((n) => sourceButton(hits, n))));
  }
  return box;
}

function fill(item, entry) {
  const body = item.querySelector(".answer");
  const hits = entry.hits;
  const onCite = hits ? (n) => { if (hits[n]) openChunk(hits[n], n); } : null;
  if (entry.format === "json" && entry.role === "assistant") body.replaceChildren(jsonView(entry.content, entry.json, entry.stats && entry.stats.finish_reason));
  else body.replaceChildren(renderMarkdown(entry.content, onCite));
  if (entry.tool_calls && entry.tool_calls.length) body.append(toolCallCards(entry.tool_calls));
  item.querySelector(".stats").textContent = statsText(entry.stats);
  const old = item.querySelector(".sources");
  if (old) old.remove();
  if (hits && hits.length) item.append(sources(hits, entry.citations));
}

function entryNode(entry) {
  const who = entry.role === "user" ? "You" : entry.model || "assistant";
  const item = el("li", { class: `msg ${entry.role}` }, el("p", { class: "who", text: who }),
    el("div", { class: "answer" }), el("p", { class: "stats" }));
  fill(item, entry);
  return item;
}

export function initChat() {
  let log = load();
  let controller = null;
  const list = $("chat-log");
  const render = () => list.replaceChildren(...log.map(entryNode));
  render();

  function sampling() {
    return {
      model: $("chat-model").value,
      temperature: Number($("chat-temperature").value),
      top_p: Number($("chat-top-p").value),
      max_tokens: Number($("chat-max-tokens").value),
      ...($("chat-template").value ? { prompt_template: $("chat-template").value } : {}),
    };
  }

  async function messagesFor(question) {
    const store = $("chat-store").value;
    if (store) {
      const context = await api("/ui/api/rag/context", { method: "POST",
        body: { store, question, mode: $("chat-mode").value } });
      return { messages: context.messages, hits: context.hits };
    }
    const system = $("chat-system").value.trim();
    // RAG turns carry their documents in their own messages, and a tool call waits for a result
    // this page does not run: plain chat leaves both out of the history it sends.
    const history = log.slice(0, -1).filter((m) => !m.rag && !m.hits && !m.tools).map((m) => ({ role: m.role, content: m.content }));
    history.push({ role: "user", content: question });
    return { messages: [...(system ? [{ role: "system", content: system }] : []), ...history], hits: null };
  }

  // After the stream: validate a JSON reply, attribute a RAG answer to its documents.
  async function check(entry, format) {
    if (format.name === "json") {
      entry.json = await api("/ui/api/json/check", { method: "POST", body: { text: entry.content, schema: format.schema } });
    }
    if (entry.hits && entry.hits.length) {
      const documents = entry.hits.map((h) => ({ source: h.source, text: h.text }));
      entry.citations = !entry.content.trim() ? [] : (await api("/ui/api/rag/cite", { method: "POST",
        body: { store: entry.store, answer: entry.content, documents } })).citations;
    }
  }

  async function send(event) {
    event.preventDefault();
    const question = $("chat-input").value.trim();
    if (!question || controller) return;
    showError(null);
    let format;
    try { format = readFormat(); } catch (error) { showError(error); return; }
    const tools = format.name === "tools";
    log.push({ role: "user", content: question, rag: Boolean($("chat-store").value), tools });
    $("chat-input").value = "";
    render();
    controller = new AbortController();
    $("chat-stop").disabled = false;
    $("chat-submit").disabled = true;
    const request = { ...sampling(), ...format.request };
    const entry = { role: "assistant", model: request.model, content: "", stats: null, hits: null, format: format.name, tools };
    try {
      const { messages, hits } = await messagesFor(question);
      if (hits) delete request.prompt_template;  // RAG messages are laid out already
      entry.hits = hits;
      entry.store = hits ? $("chat-store").value : null;
      const item = entryNode(entry);
      list.append(item);
      const result = await streamChat({ ...request, messages },
        (text, calls) => { entry.content = text; entry.tool_calls = calls; fill(item, entry); }, controller.signal);
      Object.assign(entry, { content: result.text, tool_calls: result.toolCalls, stats: result.stats });
      entry.stats.finish_reason = result.finishReason;
      fill(item, entry);
      log.push(entry);
      save(log);
      await check(entry, format);
      fill(item, entry);
      save(log);
    } catch (error) {
      showError(error);
      save(log);
    } finally {
      controller = null;
      $("chat-stop").disabled = true;
      $("chat-submit").disabled = false;
    }
  }

  $("chat-send").addEventListener("submit", send);
  $("chat-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) $("chat-send").requestSubmit();
  });
  $("chat-stop").addEventListener("click", () => controller && controller.abort());
  $("chat-clear").addEventListener("click", () => { log = []; save(log); render(); });
  $("chat-form").addEventListener("submit", (event) => event.preventDefault());
  const showFormat = () => {
    const format = $("chat-format").value;
    $("chat-schema-box").hidden = format !== "json";
    $("chat-tools-box").hidden = $("chat-tool-choice-box").hidden = format !== "tools";
  };
  $("chat-format").addEventListener("change", showFormat);
  showFormat();

  return {
    async shown() {
      try {
        fillSelect($("chat-model"), await modelIds());
        const stores = (await api("/ui/api/stores")).stores.map((s) => s.name);
        fillSelect($("chat-store"), ["", ...stores]);
        $("chat-store").options[0].textContent = "none (plain chat)";
        const templates = (await api("/ui/api/prompts")).prompts
          .map((p) => (p.source === "builtin" ? p.name : `${p.name}@${p.version}`));
        fillSelect($("chat-template"), ["", ...templates]);
        $("chat-template").options[0].textContent = "none";
      } catch (error) { showError(error); }
    },
  };
}
