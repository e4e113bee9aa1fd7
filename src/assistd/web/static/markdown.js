// A small Markdown renderer and code highlighter for the playground's messages.
// Everything the model wrote is escaped first; only the tags produced here reach the page.

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

const words = (text) => new Set(text.split(" "));
const PYTHON_KEYWORDS = words(
  "and as assert async await break class continue def del elif else except False finally for from global " +
    "if import in is lambda match case None nonlocal not or pass raise return self True try while with yield",
);
// JavaScript, TypeScript, Go, Rust, Java, C and the like: one set is enough to colour them readably.
const C_LIKE_KEYWORDS = words(
  "async await break case catch class const continue default do else enum export extends false finally fn for " +
    "from func function go if impl import in interface let loop match mod mut new nil null of package pub " +
    "return self static struct super switch this throw true try type typeof use var void while yield int " +
    "float double char bool boolean string long unsigned",
);
const PYTHON_NAMES = new Set(["python", "py", "python3", "ipython"]);
const SHELL_KEYWORDS = words("if then else elif fi for while do done case esac in function return export local");
const SHELL_NAMES = new Set(["sh", "bash", "shell", "zsh", "console"]);

function keywordsFor(lang) {
  if (PYTHON_NAMES.has(lang)) return PYTHON_KEYWORDS;
  if (SHELL_NAMES.has(lang)) return SHELL_KEYWORDS;
  if (lang === "") return new Set([...PYTHON_KEYWORDS, ...C_LIKE_KEYWORDS]);
  return C_LIKE_KEYWORDS;
}

const TOKEN = new RegExp(
  [
    String.raw`(?<comment>#[^\n]*|\/\/[^\n]*|\/\*[\s\S]*?\*\/|--[^\n]*)`,
    String.raw`(?<string>"""[\s\S]*?"""|'''[\s\S]*?'''|"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'|` +
      "`(?:\\\\.|[^`\\\\])*`)",
    String.raw`(?<number>\b(?:0x[0-9a-fA-F]+|\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)\b)`,
    String.raw`(?<word>\b[A-Za-z_][A-Za-z0-9_]*\b)`,
  ].join("|"),
  "g",
);

// Languages in which '#' does not start a comment, and '--' does (or does not).
const HASH_COMMENTS = new Set(["python", "py", "sh", "bash", "shell", "zsh", "ruby", "rb", "yaml", "yml", "toml", "r", "perl", "makefile", ""]);
const DASH_COMMENTS = new Set(["sql", "lua", "haskell", "hs"]);

/** Highlighted HTML for `code`: comments, strings, numbers, keywords and called names. */
export function highlight(code, language = "") {
  const lang = language.toLowerCase();
  const keywords = keywordsFor(lang);
  let out = "";
  let last = 0;
  for (const match of code.matchAll(TOKEN)) {
    const text = match[0];
    let kind = null;
    const groups = match.groups;
    if (groups.comment !== undefined) {
      if (text.startsWith("#") && !HASH_COMMENTS.has(lang)) kind = null;
      else if (text.startsWith("--") && !DASH_COMMENTS.has(lang)) kind = null;
      else kind = "comment";
      // Not a comment in this language: the rest of the line stays plain text.
      if (kind === null) continue;
    } else if (groups.string !== undefined) kind = "string";
    else if (groups.number !== undefined) kind = "number";
    else if (keywords.has(text)) kind = "keyword";
    else if (code[match.index + text.length] === "(") kind = "function";
    if (kind === null) continue;
    out += escapeHtml(code.slice(last, match.index));
    out += `<span class="tok-${kind}">${escapeHtml(text)}</span>`;
    last = match.index + text.length;
  }
  return out + escapeHtml(code.slice(last));
}

function safeUrl(url) {
  const trimmed = url.trim();
  return /^(https?:|mailto:|#|\/)/i.test(trimmed) ? trimmed : null;
}

/** Inline Markdown: code spans, links, bold, italic, strikethrough. Input is raw text. */
export function renderInline(text) {
  const codeSpans = [];
  // Code spans first, so nothing inside them is interpreted.
  let html = text.replace(/`([^`\n]+)`/g, (_, code) => {
    codeSpans.push(`<code>${escapeHtml(code)}</code>`);
    return `\u0001${codeSpans.length - 1}\u0001`;
  });
  html = escapeHtml(html);
  html = html.replace(/\[([^\]\n]+)\]\(([^)\s]+)\)/g, (whole, label, href) => {
    const url = safeUrl(href.replace(/&amp;/g, "&"));
    if (!url) return whole;
    return `<a href="${escapeHtml(url)}" target="_blank" rel="noopener noreferrer">${label}</a>`;
  });
  html = html.replace(/\*\*(?=\S)([\s\S]*?\S)\*\*/g, "<strong>$1</strong>");
  html = html.replace(/__(?=\S)([\s\S]*?\S)__/g, "<strong>$1</strong>");
  html = html.replace(/(^|[^*])\*(?=\S)([^*\n]*?\S)\*(?!\*)/g, "$1<em>$2</em>");
  html = html.replace(/(^|[^\w_])_(?=\S)([^_\n]*?\S)_(?![\w_])/g, "$1<em>$2</em>");
  html = html.replace(/~~(?=\S)([\s\S]*?\S)~~/g, "<del>$1</del>");
  return html.replace(/\u0001(\d+)\u0001/g, (_, i) => codeSpans[Number(i)]);
}

function isTableSeparator(line) {
  return /^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$/.test(line);
}

function tableCells(line) {
  return line.trim().replace(/^\|/, "").replace(/\|$/, "").split("|").map((c) => c.trim());
}

const LIST_ITEM = /^(\s*)([-*+]|\d+[.)])\s+(.*)$/;

/** Block-level Markdown to HTML. An unterminated code fence (a reply still streaming) renders as code. */
export function renderMarkdown(source) {
  const lines = String(source).replace(/\r\n?/g, "\n").split("\n");
  const out = [];
  let i = 0;
  let paragraph = [];

  const flushParagraph = () => {
    if (paragraph.length) out.push(`<p>${renderInline(paragraph.join("\n")).replace(/\n/g, "<br>")}</p>`);
    paragraph = [];
  };

  while (i < lines.length) {
    const line = lines[i];
    const fence = line.match(/^\s*(```+|~~~+)\s*([\w+#.-]*)\s*$/);
    if (fence) {
      flushParagraph();
      const body = [];
      i += 1;
      while (i < lines.length && !lines[i].trim().startsWith(fence[1])) body.push(lines[i++]);
      i += 1;
      const lang = fence[2] || "";
      const label = lang ? `<span class="code-lang">${escapeHtml(lang)}</span>` : "";
      out.push(`<pre class="code">${label}<code>${highlight(body.join("\n"), lang)}</code></pre>`);
      continue;
    }
    if (!line.trim()) {
      flushParagraph();
      i += 1;
      continue;
    }
    const heading = line.match(/^(#{1,6})\s+(.*?)\s*#*\s*$/);
    if (heading) {
      flushParagraph();
      const level = heading[1].length;
      out.push(`<h${level}>${renderInline(heading[2])}</h${level}>`);
      i += 1;
      continue;
    }
    if (/^\s*([-*_])(\s*\1){2,}\s*$/.test(line)) {
      flushParagraph();
      out.push("<hr>");
      i += 1;
      continue;
    }
    if (/^\s*>/.test(line)) {
      flushParagraph();
      const quoted = [];
      while (i < lines.length && /^\s*>/.test(lines[i])) quoted.push(lines[i++].replace(/^\s*>\s?/, ""));
      out.push(`<blockquote>${renderMarkdown(quoted.join("\n"))}</blockquote>`);
      continue;
    }
    if (line.includes("|") && i + 1 < lines.length && isTableSeparator(lines[i + 1])) {
      flushParagraph();
      const head = tableCells(line);
      i += 2;
      const rows = [];
      while (i < lines.length && lines[i].includes("|") && lines[i].trim()) rows.push(tableCells(lines[i++]));
      const th = head.map((c) => `<th>${renderInline(c)}</th>`).join("");
      const tb = rows.map((r) => `<tr>${r.map((c) => `<td>${renderInline(c)}</td>`).join("")}</tr>`).join("");
      out.push(`<div class="table-wrap"><table><thead><tr>${th}</tr></thead><tbody>${tb}</tbody></table></div>`);
      continue;
    }
    if (LIST_ITEM.test(line)) {
      flushParagraph();
      const items = [];
      const ordered = /^\s*\d/.test(line);
      const baseIndent = line.match(LIST_ITEM)[1].length;
      while (i < lines.length) {
        const m = lines[i].match(LIST_ITEM);
        if (m && m[1].length <= baseIndent + 1) {
          if (/^\d/.test(m[2]) !== ordered) break;
          items.push([m[3]]);
          i += 1;
        } else if (lines[i].trim() && items.length && /^\s+/.test(lines[i])) {
          // An indented continuation or nested list belongs to the previous item.
          items[items.length - 1].push(lines[i].slice(Math.min(baseIndent + 2, lines[i].search(/\S/))));
          i += 1;
        } else if (!lines[i].trim() && i + 1 < lines.length && LIST_ITEM.test(lines[i + 1])) {
          i += 1;
        } else break;
      }
      const tag = ordered ? "ol" : "ul";
      const lis = items.map((body) => {
        const [first, ...rest] = body;
        const nested = rest.length ? renderMarkdown(rest.join("\n")) : "";
        return `<li>${renderInline(first)}${nested}</li>`;
      });
      out.push(`<${tag}>${lis.join("")}</${tag}>`);
      continue;
    }
    paragraph.push(line);
    i += 1;
  }
  flushParagraph();
  return out.join("\n");
}
