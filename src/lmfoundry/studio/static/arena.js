// Arena: one prompt to two models or adapters side by side; a vote becomes a preference pair.
import { api, fillSelect, modelIds, showError, streamChat } from "./app.js";
import { renderMarkdown, statsText } from "./render.js";

const $ = (id) => document.getElementById(id);

export function initArena() {
  let last = null;

  async function ask(side, model, prompt) {
    $(`arena-${side}-name`).textContent = model;
    $(`arena-${side}-out`).replaceChildren();
    $(`arena-${side}-stats`).textContent = "";
    const request = { model, messages: prompt, temperature: Number($("arena-temperature").value),
      max_tokens: Number($("arena-max-tokens").value) };
    const result = await streamChat(request, (text) => $(`arena-${side}-out`).replaceChildren(renderMarkdown(text)));
    $(`arena-${side}-out`).replaceChildren(renderMarkdown(result.text));
    $(`arena-${side}-stats`).textContent = statsText(result.stats);
    return result.text;
  }

  $("arena-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(null);
    const prompt = [{ role: "user", content: $("arena-prompt").value.trim() }];
    if (!prompt[0].content) return;
    $("arena-run").disabled = true;
    $("vote-a").disabled = $("vote-b").disabled = true;
    $("arena-status").textContent = "both models are answering…";
    try {
      const [a, b] = await Promise.all([ask("a", $("arena-a").value, prompt), ask("b", $("arena-b").value, prompt)]);
      last = { prompt, a, b };
      $("vote-a").disabled = $("vote-b").disabled = false;
      $("arena-status").textContent = "Which answer is better?";
    } catch (error) {
      showError(error);
      $("arena-status").textContent = "";
    } finally {
      $("arena-run").disabled = false;
    }
  });

  async function vote(winner) {
    if (!last) return;
    const [chosen, rejected] = winner === "a" ? [last.a, last.b] : [last.b, last.a];
    try {
      const saved = await api("/ui/api/arena/vote", { method: "POST", body: { prompt: last.prompt, chosen, rejected } });
      $("arena-status").textContent = `Saved: ${saved.pairs} preference pair(s) in ${saved.path}`;
      $("vote-a").disabled = $("vote-b").disabled = true;
      last = null;
    } catch (error) { showError(error); }
  }
  $("vote-a").addEventListener("click", () => vote("a"));
  $("vote-b").addEventListener("click", () => vote("b"));

  return {
    async shown() {
      try {
        const ids = await modelIds();
        fillSelect($("arena-a"), ids);
        fillSelect($("arena-b"), ids, $("arena-b").value || ids[Math.min(1, ids.length - 1)]);
      } catch (error) { showError(error); }
    },
  };
}
