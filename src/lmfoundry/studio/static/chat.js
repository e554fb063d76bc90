// Chat: model and sampling controls, system prompt, streaming with Stop, a conversation kept in
// localStorage, and RAG mode (documents from a store, [n] citations that open their chunk).
import { api, fillSelect, modelIds, showError, streamChat } from "./app.js";
import { el, renderMarkdown, statsText } from "./render.js";

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

function sources(hits) {
  const cite = (n) => openChunk(hits[n], n);
  return el("div", { class: "sources" }, el("span", { text: "Sources: " }),
    ...hits.map((h, n) => el("button", { type: "button", class: "source", "data-doc": String(n),
      text: `[${n}] ${h.source}`, onclick: () => cite(n) })));
}

function fill(item, entry) {
  const body = item.querySelector(".answer");
  const hits = entry.hits;
  const onCite = hits ? (n) => { if (hits[n]) openChunk(hits[n], n); } : null;
  body.replaceChildren(renderMarkdown(entry.content, onCite));
  item.querySelector(".stats").textContent = statsText(entry.stats);
  const old = item.querySelector(".sources");
  if (old) old.remove();
  if (hits && hits.length) item.append(sources(hits));
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
    // RAG turns carry their documents in their own messages: plain chat leaves them out.
    const history = log.filter((m) => !m.rag && !m.hits).map((m) => ({ role: m.role, content: m.content }));
    return { messages: [...(system ? [{ role: "system", content: system }] : []), ...history], hits: null };
  }

  async function send(event) {
    event.preventDefault();
    const question = $("chat-input").value.trim();
    if (!question || controller) return;
    showError(null);
    log.push({ role: "user", content: question, rag: Boolean($("chat-store").value) });
    $("chat-input").value = "";
    render();
    controller = new AbortController();
    $("chat-stop").disabled = false;
    $("chat-submit").disabled = true;
    const request = sampling();
    const entry = { role: "assistant", model: request.model, content: "", stats: null, hits: null };
    try {
      const { messages, hits } = await messagesFor(question);
      if (hits) delete request.prompt_template;  // RAG messages are laid out already
      entry.hits = hits;
      const item = entryNode(entry);
      list.append(item);
      const result = await streamChat({ ...request, messages }, (text) => { entry.content = text; fill(item, entry); },
        controller.signal);
      entry.content = result.text;
      entry.stats = result.stats;
      fill(item, entry);
      log.push(entry);
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
