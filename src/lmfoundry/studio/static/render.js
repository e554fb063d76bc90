// Model text to DOM nodes, never to HTML: every piece of text becomes a Text node (textContent),
// so a "<script>" or "<img onerror>" in an answer or a retrieved chunk is shown, not run.

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else if (key === "onclick") node.addEventListener("click", value);
    else if (key.startsWith("on")) throw new Error("event handlers go through addEventListener");
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

const INLINE = /(`[^`\n]+`|\*\*[^*\n]+\*\*|\[\d+(?:,\s*\d+)*\])/;

function inline(text, onCite) {
  const out = [];
  for (const part of text.split(INLINE)) {
    if (!part) continue;
    if (part.startsWith("`") && part.endsWith("`") && part.length > 2) out.push(el("code", { text: part.slice(1, -1) }));
    else if (part.startsWith("**") && part.endsWith("**") && part.length > 4) out.push(el("strong", { text: part.slice(2, -2) }));
    else if (onCite && /^\[\d+(?:,\s*\d+)*\]$/.test(part)) {
      for (const n of part.slice(1, -1).split(",")) {
        const number = Number(n.trim());
        out.push(el("button", { type: "button", class: "cite", "data-doc": String(number),
          "aria-label": `open document ${number}`, text: `[${number}]`, onclick: () => onCite(number) }));
      }
    } else out.push(document.createTextNode(part));
  }
  return out;
}

function prose(block, onCite) {
  const lines = block.split("\n");
  if (lines.every((l) => /^\s*([-*]|\d+\.)\s+/.test(l))) {
    const list = el(/^\s*\d/.test(lines[0]) ? "ol" : "ul");
    for (const l of lines) list.append(el("li", {}, ...inline(l.replace(/^\s*([-*]|\d+\.)\s+/, ""), onCite)));
    return list;
  }
  const heading = /^(#{1,6})\s+(.*)$/.exec(block);
  if (heading && lines.length === 1) return el("p", { class: "heading" }, el("strong", {}, ...inline(heading[2], onCite)));
  const p = el("p");
  lines.forEach((l, i) => { if (i) p.append(el("br")); p.append(...inline(l, onCite)); });
  return p;
}

// Paragraphs, lists, headings, **bold**, `code`, fenced code blocks (an unclosed fence, as while
// streaming, runs to the end) and [n] citations as buttons when `onCite` is given.
export function renderMarkdown(text, onCite) {
  const fragment = document.createDocumentFragment();
  const parts = text.split(/^```/m);
  parts.forEach((part, i) => {
    if (i % 2 === 1) {
      const newline = part.indexOf("\n");
      const lang = newline < 0 ? "" : part.slice(0, newline).trim();
      const code = newline < 0 ? part : part.slice(newline + 1);
      fragment.append(el("pre", { class: "code", "data-lang": lang || null }, el("code", { text: code.replace(/\n$/, "") })));
      return;
    }
    for (const block of part.replace(/^\n+|\n+$/g, "").split(/\n\s*\n/)) {
      if (block.trim()) fragment.append(prose(block, onCite));
    }
  });
  return fragment;
}

export function statsText(s) {
  if (!s) return "";
  const parts = [];
  if (s.ttft_ms != null) parts.push(`TTFT ${Math.round(s.ttft_ms)} ms`);
  if (s.tokens != null) parts.push(`${s.tokens} tokens`);
  if (s.tokens_per_s != null) parts.push(`${s.tokens_per_s.toFixed(1)} tokens/s`);
  if (s.stopped) parts.push("stopped");
  return parts.join(" · ");
}
