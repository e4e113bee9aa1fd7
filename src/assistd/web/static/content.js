// How messages and tool calls look: Markdown text with citations, images fetched with the key, tool calls.
import { fileName, fileUrl, guarded, showError, state } from "./core.js";
import { escapeHtml, highlight, renderMarkdown } from "./markdown.js";

/** A message's content parts (text, images) into `body`. */
export function renderContent(body, content) {
  body.innerHTML = "";
  for (const part of content) {
    if (!part) continue;
    if (part.type === "text") body.append(renderText(part.text.value || "", part.text.annotations || []));
    else if (part.type === "image_file") body.append(fileImage(part.image_file.file_id));
    else if (part.type === "image_url") {
      const img = document.createElement("img");
      img.alt = "image";
      if (/^https?:|^data:image\//.test(part.image_url.url)) img.src = part.image_url.url;
      body.append(img);
    }
  }
}

/** A text part as HTML: Markdown, citation marks where the annotations say, and the cited files below. */
function renderText(value, annotations) {
  const frag = document.createElement("div");
  const sorted = [...annotations]
    .filter((a) => a && typeof a.start_index === "number" && typeof a.end_index === "number")
    .sort((a, b) => a.start_index - b.start_index);
  const citations = [];
  const paths = [];
  let text = "";
  let pos = 0;
  for (const a of sorted) {
    if (a.start_index < pos) continue;
    const marker = a.text && /^(【.*】|\[\d+\]|sandbox:.*)$/.test(a.text);
    if (a.type === "file_citation") {
      // The same passage cited twice keeps its first number.
      const key = `${a.file_citation.file_id}\n${a.file_citation.quote || ""}`;
      let n = citations.findIndex((c) => c.key === key) + 1;
      if (!n) n = citations.push({ key, annotation: a });
      // A marker (OpenAI's 【4:0†source】, assistd's 【0:1†notes.md】) becomes the number; a cited span
      // (as older assistd replies stored them) keeps its text.
      text += value.slice(pos, marker ? a.start_index : a.end_index) + `\u0002c${n}\u0002`;
      pos = a.end_index;
    } else if (a.type === "file_path") {
      // `[label](sandbox:/mnt/data/x)`: the whole Markdown link becomes the download button, named label.
      const before = value.slice(pos, a.start_index);
      const link = before.match(/\[([^\]\n]*)\]\($/);
      const closes = link && value[a.end_index] === ")";
      paths.push({ fileId: a.file_path.file_id, label: closes ? link[1] : "" });
      text += (closes ? before.slice(0, -link[0].length) : before) + `\u0002p${paths.length - 1}\u0002`;
      pos = closes ? a.end_index + 1 : a.end_index;
    }
  }
  text += value.slice(pos);
  frag.innerHTML = renderMarkdown(text).replace(/\u0002([cp])(\d+)\u0002/g, (_, kind, n) =>
    kind === "c" ? `<sup class="cite">[${n}]</sup>` : `<span class="file-path" data-index="${n}"></span>`,
  );
  for (const span of frag.querySelectorAll(".file-path")) {
    const { fileId, label } = paths[Number(span.dataset.index)];
    span.replaceWith(fileChip(fileId, label));
  }
  if (citations.length) {
    const ol = document.createElement("ol");
    ol.className = "citations";
    for (const { annotation: c } of citations) {
      const li = document.createElement("li");
      const name = document.createElement("span");
      name.className = "file";
      fileName(c.file_citation.file_id).then((n) => (name.textContent = n));
      name.textContent = c.file_citation.file_id;
      li.append(name);
      const quote = c.file_citation.quote || c.text;
      if (quote && !/^【.*】$/.test(quote)) li.append(` — “${quote.length > 200 ? `${quote.slice(0, 200)}…` : quote}”`);
      ol.append(li);
    }
    frag.append(ol);
  }
  return frag;
}

function fileImage(fileId) {
  const img = document.createElement("img");
  img.alt = `image ${fileId}`;
  fileUrl(fileId).then(
    (url) => (img.src = url),
    (err) => {
      state.fileUrls.delete(fileId);
      showError(err);
    },
  );
  return img;
}

/** A button downloading a file (with the key, so not a plain link). */
function fileChip(fileId, label = "") {
  const chip = document.createElement("button");
  chip.type = "button";
  chip.className = "file-chip";
  chip.textContent = `↓ ${label || fileId}`;
  fileName(fileId).then((n) => {
    chip.textContent = `↓ ${label || n}`;
    chip.title = n;
  });
  chip.addEventListener(
    "click",
    guarded(async () => {
      const a = document.createElement("a");
      a.href = await fileUrl(fileId);
      a.download = await fileName(fileId);
      a.click();
    }),
  );
  return chip;
}

export function prettyJson(text) {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

export function section(label, content) {
  const wrap = document.createElement("div");
  const l = document.createElement("div");
  l.className = "label";
  l.textContent = label;
  wrap.append(l, content);
  return wrap;
}

export function pre(text, className = "plain") {
  const p = document.createElement("pre");
  p.className = className;
  p.textContent = text;
  return p;
}

/** A run step's tool calls, each a collapsible block; blocks left open stay open across updates. */
export function renderToolCalls(el, calls, status) {
  const open = [...el.querySelectorAll("details")].map((d) => d.open);
  el.innerHTML = "";
  calls.forEach((call, i) => {
    if (!call) return;
    const details = document.createElement("details");
    details.className = `tool tool-${call.type}`;
    details.open = open[i] ?? false;
    const summary = document.createElement("summary");
    const body = document.createElement("div");
    body.className = "tool-body";
    let title = call.type;
    if (call.type === "function" && call.function) {
      title = call.function.name;
      body.append(section("Arguments", pre(prettyJson(call.function.arguments || ""))));
      if (call.function.output != null) body.append(section("Output", pre(call.function.output)));
    } else if (call.type === "code_interpreter" && call.code_interpreter) {
      title = "code_interpreter";
      const code = document.createElement("pre");
      code.className = "code";
      code.innerHTML = `<span class="code-lang">python</span><code>${highlight(call.code_interpreter.input || "", "python")}</code>`;
      body.append(section("Code", code));
      for (const o of call.code_interpreter.outputs || []) {
        if (!o) continue;
        if (o.type === "logs") body.append(section("Logs", pre(o.logs || "")));
        else if (o.type === "image" && o.image) body.append(section("Image", fileImage(o.image.file_id)));
      }
    } else if (call.type === "file_search") {
      title = "file_search";
      const fs = call.file_search || {};
      const results = fs.results || [];
      const list = document.createElement("div");
      list.className = "stack";
      if (!results.length) list.append(pre(status === "completed" ? "No results listed." : "Searching…"));
      for (const r of results) {
        const item = document.createElement("div");
        item.className = "search-result";
        const name = document.createElement("strong");
        name.textContent = r.file_name || r.file_id;
        item.append(name, ` · score ${Number(r.score).toFixed(3)}`);
        const text = (r.content || []).map((c) => c.text).join("\n");
        if (text) item.append(pre(text.length > 600 ? `${text.slice(0, 600)}…` : text));
        list.append(item);
      }
      body.append(section(`Results (${results.length})`, list));
    }
    summary.innerHTML = `<span class="kind muted small">${escapeHtml(call.type === "function" ? "function" : "tool")}</span>` +
      `<span class="name">${escapeHtml(title)}</span>` +
      `<span class="status badge s-${escapeHtml(status)}">${escapeHtml(status)}</span>`;
    details.append(summary, body);
    el.append(details);
  });
}
