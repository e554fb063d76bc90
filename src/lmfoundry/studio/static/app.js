// The studio shell: API key, page tabs, the JSON API and the streaming chat call every page uses.
import { initChat } from "./chat.js";
import { initArena } from "./arena.js";
import { initRuns } from "./runs.js";
import { initModels } from "./models.js";

const KEY = "lmf.apiKey";

function headers(extra = {}) {
  const key = localStorage.getItem(KEY);
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

async function failure(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    message = (body.error && (body.error.message || body.error)) || message;
  } catch (_) { /* not JSON: keep the status line */ }
  if (response.status === 401) message += " (set the API key at the top right)";
  return new Error(message);
}

export async function api(path, { method = "GET", body } = {}) {
  const init = { method, headers: headers(body ? { "Content-Type": "application/json" } : {}) };
  if (body !== undefined) init.body = JSON.stringify(body);
  const response = await fetch(path, init);
  if (!response.ok) throw await failure(response);
  return response.json();
}

export function showError(error) {
  const box = document.getElementById("error");
  if (!error) { box.hidden = true; box.textContent = ""; return; }
  box.textContent = String(error.message || error);
  box.hidden = false;
}

// Streamed tool-call deltas into whole calls: the first delta of a call has its index, id and name,
// later ones append to its arguments (OpenAI's format, which the server follows).
function addToolCalls(calls, deltas) {
  for (const d of deltas) {
    const call = calls[d.index] || (calls[d.index] = { id: d.id, type: "function", function: { name: "", arguments: "" } });
    if (d.id) call.id = d.id;
    if (d.function && d.function.name) call.function.name += d.function.name;
    if (d.function && d.function.arguments) call.function.arguments += d.function.arguments;
  }
}

// POST /v1/chat/completions with stream=true; `onText(textSoFar, toolCallsSoFar)` after every delta.
// Returns {text, toolCalls, finishReason, stats}; an abort (the Stop button) keeps what arrived
// and marks it stopped.
export async function streamChat(request, onText, signal) {
  const started = performance.now();
  let first = null, text = "", tokens = 0, usage = null, stopped = false, finishReason = null;
  const toolCalls = [];
  const response = await fetch("/v1/chat/completions", {
    method: "POST", signal,
    headers: headers({ "Content-Type": "application/json" }),
    body: JSON.stringify({ ...request, stream: true, stream_options: { include_usage: true } }),
  });
  if (!response.ok) throw await failure(response);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        for (const line of event.split("\n")) {
          if (!line.startsWith("data:")) continue;
          const data = line.slice(5).trim();
          if (data === "[DONE]") continue;
          const chunk = JSON.parse(data);
          if (chunk.error) throw new Error(chunk.error.message || "the server failed mid-stream");
          if (chunk.usage) usage = chunk.usage;
          const choice = chunk.choices && chunk.choices[0];
          const delta = choice && choice.delta;
          if (choice && choice.finish_reason) finishReason = choice.finish_reason;
          if (delta && delta.tool_calls) {
            if (first === null) first = performance.now();
            addToolCalls(toolCalls, delta.tool_calls);
            onText(text, toolCalls.filter(Boolean));
          }
          if (delta && delta.content) {
            if (first === null) first = performance.now();
            tokens += 1;
            text += delta.content;
            onText(text, toolCalls.filter(Boolean));
          }
        }
      }
    }
  } catch (error) {
    if (error.name !== "AbortError") throw error;
    stopped = true;
  }
  const finished = performance.now();
  const count = usage ? usage.completion_tokens : tokens;
  const decoding = first === null ? 0 : (finished - first) / 1000;
  return {
    text,
    toolCalls: toolCalls.filter(Boolean),
    finishReason,
    stats: {
      ttft_ms: first === null ? null : first - started,
      tokens: count,
      tokens_per_s: decoding > 0 && count > 1 ? (count - 1) / decoding : null,
      stopped,
    },
  };
}

export async function modelIds() {
  const listing = await api("/v1/models");
  return listing.data.map((m) => m.id);
}

export function fillSelect(select, values, keep) {
  const current = keep ?? select.value;
  select.replaceChildren(...values.map((v) => {
    const option = document.createElement("option");
    option.value = v; option.textContent = v;
    return option;
  }));
  if (values.includes(current)) select.value = current;
}

const pages = {};

function show(name) {
  for (const tab of document.querySelectorAll(".tab")) {
    if (tab.dataset.page === name) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
  }
  for (const section of document.querySelectorAll(".page")) section.hidden = section.id !== `page-${name}`;
  if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
  showError(null);
  if (pages[name] && pages[name].shown) pages[name].shown();
}

async function main() {
  const keyInput = document.getElementById("api-key");
  keyInput.value = localStorage.getItem(KEY) || "";
  keyInput.addEventListener("change", () => {
    if (keyInput.value) localStorage.setItem(KEY, keyInput.value); else localStorage.removeItem(KEY);
    show(location.hash.slice(1) || "chat");
  });
  pages.chat = initChat();
  pages.arena = initArena();
  pages.runs = initRuns();
  pages.models = initModels();
  for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => show(tab.dataset.page));
  const fromHash = () => {
    const name = location.hash.slice(1);
    show(pages[name] ? name : "chat");
  };
  window.addEventListener("hashchange", fromHash);
  fromHash();
}

main();
