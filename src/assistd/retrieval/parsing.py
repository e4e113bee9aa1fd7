"""The text of an uploaded file, chosen by the extension of its name.

``extract_text`` is synchronous and CPU-bound: callers run it in a thread. Whatever goes wrong inside a
parsing library surfaces as ``ParseError``, whose message is shown to the user as the vector store file's
``last_error.message``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath
from typing import Any

__all__ = ["MAX_UNPACKED_BYTES", "SUPPORTED_EXTENSIONS", "ParseError", "extension_of", "extract_text"]


class ParseError(Exception):
    """A file whose text cannot be had; the message is meant for the user."""


PLAIN_TEXT_EXTENSIONS = frozenset({".txt", ".text", ".md", ".markdown", ".rst", ".log"})
SOURCE_EXTENSIONS = frozenset(
    {
        ".py", ".pyi", ".js", ".mjs", ".cjs", ".jsx", ".ts", ".tsx", ".java", ".c", ".cc", ".cpp", ".cxx",
        ".h", ".hh", ".hpp", ".cs", ".go", ".rb", ".php", ".sh", ".bash", ".zsh", ".ps1", ".css", ".scss",
        ".less", ".tex", ".rs", ".kt", ".kts", ".swift", ".scala", ".m", ".mm", ".r", ".pl", ".lua",
        ".dart", ".sql", ".vue", ".svelte", ".xml", ".yaml", ".yml", ".toml", ".ini", ".cfg",
    }
)  # fmt: skip
_HTML = frozenset({".html", ".htm"})
_JSON = frozenset({".json", ".jsonl"})
_TABLES = {".csv": ",", ".tsv": "\t"}
_PDF = ".pdf"
_DOCX = ".docx"

SUPPORTED_EXTENSIONS: frozenset[str] = (
    PLAIN_TEXT_EXTENSIONS | SOURCE_EXTENSIONS | _HTML | _JSON | frozenset(_TABLES) | {_PDF, _DOCX}
)

# What one PDF stream or the whole of a DOCX may unpack to. A few kilobytes of zeros deflate-compress a
# thousandfold, so without a bound one upload could make ingestion hold gigabytes (a "zip bomb"); real
# documents' text streams stay far below this.
MAX_UNPACKED_BYTES = 64 * 1024 * 1024
_UNPACKED_MB = MAX_UNPACKED_BYTES // (1024 * 1024)
# What one read of a compressed member may inflate at once.
_UNPACK_CHUNK = 1024 * 1024

# Above this share of control characters a "text" file is taken for a binary one.
_BINARY_CONTROL_SHARE = 0.1


def extension_of(filename: str) -> str:
    """``.pdf`` for ``Report.PDF``; ``""`` when the name has none (``README``, ``.bashrc``)."""
    return PurePosixPath(filename.replace("\\", "/")).suffix.lower()


def extract_text(path: Path, filename: str) -> str:
    """The text of the file at ``path``, parsed as ``filename``'s extension says.

    An ``OSError`` reading ``path`` itself is not the file's fault and is raised as is.
    """
    ext = extension_of(filename)
    if ext not in SUPPORTED_EXTENSIONS:
        shown = f"'{ext}'" if ext else f"(the file name '{filename}' has no extension)"
        raise ParseError(
            f"Unsupported file type {shown}. Supported types: {', '.join(sorted(SUPPORTED_EXTENSIONS))}."
        )
    data = path.read_bytes()
    try:
        if ext == _PDF:
            text = _pdf_text(data)
        elif ext == _DOCX:
            text = _docx_text(data)
        else:
            raw = _decode(data, filename)
            if ext in _HTML:
                text = _html_text(raw)
            elif ext in _JSON:
                text = _json_text(raw, lines=ext == ".jsonl")
            elif ext in _TABLES:
                text = _table_text(raw, _TABLES[ext])
            else:
                text = raw
        text = _clean(text)
    except ParseError:
        raise
    except Exception as exc:
        raise ParseError(
            f"The file '{filename}' could not be read: {type(exc).__name__}: {exc}"[:500]
        ) from exc
    if not text.strip():
        raise ParseError(f"The file '{filename}' contains no extractable text.")
    return text


def _clean(text: str) -> str:
    # NUL cannot be stored in a PostgreSQL text column; lone surrogates (from broken PDFs) cannot be
    # encoded as UTF-8 at all.
    text = text.replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


# ----------------------------------------------------------------------------------------------------
# Plain text
# ----------------------------------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")


def _decode(data: bytes, filename: str) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = data.decode("utf-16", errors="replace")
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            # Windows-1252 reads Latin-1 text too, except for C1 controls no real text holds.
            text = data.decode("cp1252", errors="replace")
    sample = text[:65536]
    if sample and len(_CONTROL.findall(sample)) > _BINARY_CONTROL_SHARE * len(sample):
        raise ParseError(f"The file '{filename}' does not look like text: is its extension right?")
    return text


# ----------------------------------------------------------------------------------------------------
# HTML
# ----------------------------------------------------------------------------------------------------

# Not shown to a reader. (<head> is not here: parsers meet many pages that never close it.)
_HIDDEN = frozenset({"script", "style", "noscript", "template", "svg", "iframe", "object"})
# Elements that stand on lines of their own; paragraph-like ones also end with a line break, so two in
# a row leave a blank line between them.
_LINES = frozenset({"br", "li", "tr", "dt", "dd", "option", "hr"})
_PARAGRAPHS = frozenset(
    {
        "address", "article", "aside", "blockquote", "caption", "details", "div", "dl", "fieldset",
        "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "main",
        "nav", "ol", "p", "pre", "section", "summary", "table", "ul", "title",
    }
)  # fmt: skip
_CELLS = frozenset({"td", "th"})


class _TextOfHtml(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0
        self._pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self._hidden += 1
        elif tag == "pre":
            self._pre += 1
        self._separate(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._separate(tag)
        if tag in _PARAGRAPHS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN and self._hidden:
            self._hidden -= 1
        elif tag == "pre" and self._pre:
            self._pre -= 1
        if tag in _PARAGRAPHS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._hidden:
            return
        self.parts.append(data if self._pre else re.sub(r"\s+", " ", data))

    def _separate(self, tag: str) -> None:
        if tag in _LINES or tag in _PARAGRAPHS:
            self.parts.append("\n")
        elif tag in _CELLS:
            self.parts.append("\t")


def _html_text(raw: str) -> str:
    parser = _TextOfHtml()
    parser.feed(raw)
    parser.close()
    lines = []
    for line in "".join(parser.parts).split("\n"):
        # Table cells were marked with tabs; other whitespace was already collapsed.
        cells = [cell.strip() for cell in line.split("\t")]
        lines.append(" | ".join(cell for cell in cells if cell))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


# ----------------------------------------------------------------------------------------------------
# JSON
# ----------------------------------------------------------------------------------------------------


def _json_text(raw: str, *, lines: bool) -> str:
    try:
        if lines:
            values = [json.loads(line) for line in raw.splitlines() if line.strip()]
            return "\n\n".join("\n".join(_json_lines(value)) for value in values)
        return "\n".join(_json_lines(json.loads(raw)))
    except (ValueError, RecursionError):
        return raw  # not valid JSON after all: its text is still worth searching


def _json_lines(value: Any) -> Iterator[str]:
    """YAML-like lines: ``key: value`` for scalars, nested containers indented under their key."""
    # An explicit stack: documents may nest deeper than Python's recursion limit. An entry is
    # (depth, label, value, whether the line carries its list item's "- ").
    stack: list[tuple[int, str | None, Any, bool]] = [(0, None, value, False)]
    while stack:
        depth, label, item, dash = stack.pop()
        indent = "  " * depth
        if dash:
            indent = indent[:-2] + "- "
        if isinstance(item, dict | list) and item:
            inner = depth
            if label is not None:
                yield f"{indent}{label}"
                inner += 1
            children: list[tuple[int, str | None, Any, bool]] = []
            if isinstance(item, dict):
                children = [(inner, f"{key}:", child, False) for key, child in item.items()]
            else:
                for child in item:
                    if isinstance(child, dict) and child:
                        # "- key: value" with the item's other keys aligned under the first.
                        entries = [(inner + 1, f"{key}:", grand, False) for key, grand in child.items()]
                        entries[0] = (*entries[0][:3], True)
                        children.extend(entries)
                    else:
                        children.append((inner, "-", child, False))
            stack.extend(reversed(children))
        elif label is None:
            yield f"{indent}{_scalar(item)}"
        else:
            yield f"{indent}{label} {_scalar(item)}".rstrip()


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return ""  # an empty container has nothing to read
    return str(value)


# ----------------------------------------------------------------------------------------------------
# CSV and TSV
# ----------------------------------------------------------------------------------------------------


def _table_text(raw: str, delimiter: str) -> str:
    """One line per row; with a header row, each value is labelled with its column's name."""
    sample = raw[:65536]
    if delimiter == ",":
        with contextlib.suppress(csv.Error):  # no clear delimiter: commas then
            delimiter = csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    try:
        rows = [
            row for row in csv.reader(io.StringIO(raw), delimiter=delimiter) if any(c.strip() for c in row)
        ]
    except csv.Error:
        return raw  # e.g. a field over the csv module's size limit: the plain text still reads
    if not rows:
        return ""
    header = [cell.strip() for cell in rows[0]]
    if not _looks_like_header(header) or len(rows) == 1:
        return "\n".join(", ".join(cell.strip() for cell in row) for row in rows)
    lines = [", ".join(header)]
    for row in rows[1:]:
        cells = []
        for index, cell in enumerate(row):
            cell = cell.strip()
            if not cell:
                continue
            name = header[index] if index < len(header) else ""
            cells.append(f"{name}: {cell}" if name else cell)
        lines.append("; ".join(cells))
    return "\n".join(lines)


def _looks_like_header(cells: list[str]) -> bool:
    if len(cells) < 2 or not all(cells) or len(set(cells)) != len(cells):
        return False
    return not any(_is_number(cell) for cell in cells)


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", ""))
    except ValueError:
        return False
    return True


# ----------------------------------------------------------------------------------------------------
# PDF and DOCX
# ----------------------------------------------------------------------------------------------------


def _pdf_text(data: bytes) -> str:
    # pypdf and python-docx are imported on first use: together they add about 0.2 s to start-up.
    from pypdf import apply_configuration

    limits = {
        name: MAX_UNPACKED_BYTES
        for name in (
            "zlib_maximum_output_length",
            "lzw_maximum_output_length",
            "run_length_maximum_output_length",
            "brotli_maximum_output_length",
            "jbig2_maximum_output_length",
            "array_based_stream_maximum_output_length",
            "maximum_declared_stream_length",
            "image_maximum_buffer_size",
        )
    }
    # The configuration is a context variable: this thread's parse only, other threads keep theirs.
    with apply_configuration(None, **limits):
        return _bounded_pdf_text(data)


def _bounded_pdf_text(data: bytes) -> str:
    from pypdf import PdfReader
    from pypdf.errors import LimitReachedError, PdfReadError, PyPdfError

    too_large = ParseError(
        f"The PDF holds a stream that unpacks to more than {_UNPACKED_MB} MB: refused as a possible "
        "decompression bomb."
    )
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            # Many PDFs are "encrypted" with an empty password only to set permissions.
            try:
                if not reader.decrypt(""):
                    raise ParseError("The PDF is password-protected.")
            except (PyPdfError, NotImplementedError) as exc:
                raise ParseError(f"The PDF is encrypted and could not be opened: {exc}") from exc
        pages = list(reader.pages)
    except ParseError:
        raise
    except LimitReachedError as exc:
        raise too_large from exc
    except (PdfReadError, PyPdfError) as exc:
        raise ParseError(f"The PDF is damaged or not a PDF: {exc}"[:500]) from exc
    except Exception as exc:
        raise ParseError(f"The PDF is damaged or not a PDF: {type(exc).__name__}: {exc}"[:500]) from exc
    texts: list[str] = []
    failures = 0
    for page in pages:
        try:
            texts.append(page.extract_text() or "")
        except LimitReachedError as exc:
            # Not a broken page but a hostile one: the rest of the file is not to be trusted either.
            raise too_large from exc
        except Exception:
            failures += 1  # one broken page should not cost the rest of the document
    if failures and failures == len(pages):
        raise ParseError("The PDF is damaged: no page could be read.")
    return "\n\n".join(text.strip() for text in texts if text.strip())


def _docx_text(data: bytes) -> str:
    import zipfile

    from docx import Document
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    try:
        document = Document(io.BytesIO(_repacked_docx(data)))
    except ParseError:
        raise
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ParseError(f"The .docx file is damaged or not a Word document: {exc}"[:500]) from exc
    except Exception as exc:
        raise ParseError(
            f"The .docx file is damaged or not a Word document: {type(exc).__name__}: {exc}"[:500]
        ) from exc
    blocks: list[str] = []
    for item in document.iter_inner_content():
        if isinstance(item, Paragraph):
            blocks.append(item.text)
        elif isinstance(item, Table):
            blocks.append(_docx_table(item))
    return "\n".join(blocks)


def _repacked_docx(data: bytes) -> bytes:
    """The DOCX's parts copied, unpacked within bounds, into a new uncompressed archive.

    python-docx reads each part whole, and zipfile then inflates as much as the deflate stream holds
    before cutting it to the size the headers declare: headers that understate a bomb's size would cost
    gigabytes there. Read a chunk at a time, a part stops at its declared size (failing its checksum if it
    holds more than that), and the declared sizes are bounded, so the copy holds no more than what was
    checked.
    """
    import zipfile

    unpacked = 0
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(data)) as archive,
        zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as copy,
    ):
        for member in archive.infolist():
            unpacked += member.file_size
            if unpacked > MAX_UNPACKED_BYTES:
                raise ParseError(
                    f"The .docx file unpacks to more than {_UNPACKED_MB} MB: refused as a possible "
                    "decompression bomb."
                )
            if member.is_dir():
                continue
            parts = []
            with archive.open(member) as source:
                while chunk := source.read(_UNPACK_CHUNK):
                    parts.append(chunk)
            copy.writestr(member.filename, b"".join(parts))
    return out.getvalue()


def _docx_table(table: Any) -> str:
    lines = []
    for row in table.rows:
        cells: list[str] = []
        seen: set[int] = set()
        for cell in row.cells:
            # A merged cell is returned once per grid column it spans.
            if id(cell._tc) in seen:
                continue
            seen.add(id(cell._tc))
            cells.append(cell.text.replace("\n", " ").strip())
        lines.append(" | ".join(cells))
    return "\n".join(lines)
