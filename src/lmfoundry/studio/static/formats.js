// Reply formats of the chat: "JSON schema" (response_format, the reply pretty-printed with the
// server's verdict on it) and "Tools" (tools + tool_choice, each call shown as a card). Everything
// the model wrote is set as text (render.js's `el`), never parsed as HTML.
import { el } from "./render.js";

const $ = (id) => document.getElementById(id);

function parsed(id, what) {
  const text = $(id).value.trim();
  if (!text) return null;
  try { return JSON.parse(text); } catch (error) { throw new Error(`${what} is not valid JSON: ${error.message}`); }
}

// {name, request: fields added to the chat request, schema}; throws with a message naming the field.
export function readFormat() {
  const name = $("chat-format").value;
  if (name === "json") {
    const schema = parsed("chat-schema", "the JSON schema");
    if (schema !== null && (typeof schema !== "object" || Array.isArray(schema))) throw new Error("the JSON schema must be a JSON object");
    const responseFormat = schema === null ? { type: "json_object" }
      : { type: "json_schema", json_schema: { name: "reply", schema, strict: true } };
    return { name, schema, request: { response_format: responseFormat } };
  }
  if (name === "tools") {
    const tools = parsed("chat-tools", "the tools");
    if (!Array.isArray(tools) || !tools.length) throw new Error("the tools must be a JSON list of function definitions");
    return { name, request: { tools, tool_choice: $("chat-tool-choice").value } };
  }
  return { name: "text", request: {} };
}

// The reply pretty-printed once it parses (raw while it streams), and whether it validates.
export function jsonView(text, check, finishReason) {
  const value = check && check.value !== null ? JSON.stringify(check.value, null, 2) : text;
  const nodes = [el("pre", { class: "code", "data-lang": "json" }, el("code", { text: value }))];
  if (check) {
    const cut = finishReason === "length" ? " (cut by max tokens)" : "";
    const verdict = check.valid ? "valid against the schema" : `not valid${cut}: ${check.errors.join("; ")}`;
    nodes.push(el("p", { class: check.valid ? "verdict ok" : "verdict bad", role: "status", text: verdict }));
  }
  return el("div", { class: "json-reply" }, ...nodes);
}

function prettyArguments(text) {
  try { return JSON.stringify(JSON.parse(text), null, 2); } catch (_) { return text; }
}

export function toolCallCards(calls) {
  return el("div", { class: "calls" }, ...calls.map((call) => el("section", { class: "call", "aria-label": `tool call ${call.function.name}` },
    el("p", { class: "call-name" }, el("span", { class: "muted", text: "calls " }), el("code", { text: call.function.name })),
    el("pre", { class: "code", "data-lang": "json" }, el("code", { text: prettyArguments(call.function.arguments) })))));
}
