"""Builds ``python_faq.json`` and ``python_tutorial.json`` from Debian's ``python3.11-doc`` package.

Each FAQ entry is a section of the FAQ's HTML pages: its heading is a question written by the Python
documentation's authors, its body the answer. Sections nest (a topic heading holds its questions); every
heading whose own body (without its sub-sections) has text becomes one entry. The retrieval benchmark
indexes only the answers and asks the questions, so a question's ground truth is its own answer.

The tutorial's sections, cut the same way, are distractors: passages indexed beside the answers that no
question points to, on the same subject, so that a search has to tell them apart.

    python bench/data/build_faq.py [--docs DIR]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

DOCS = Path("/usr/share/doc/python3.11/html")
PAGES = ("general", "programming", "design", "library", "extending", "windows", "gui", "installed")
TUTORIAL = (
    "appetite", "interpreter", "introduction", "controlflow", "datastructures", "modules", "inputoutput",
    "errors", "classes", "stdlib", "stdlib2", "venv", "whatnow", "interactive", "floatingpoint", "appendix",
)  # fmt: skip
HERE = Path(__file__).resolve().parent
FAQ_JSON = HERE / "python_faq.json"
TUTORIAL_JSON = HERE / "python_tutorial.json"

HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
# Elements whose start or end breaks the text into lines.
BLOCKS = frozenset(
    {"p", "div", "pre", "li", "ul", "ol", "dl", "dt", "dd", "table", "tr", "blockquote", "br", "section"}
    | HEADINGS
)
# HTML elements with no end tag: they must not count towards the depth of a skipped element.
VOID = frozenset({"br", "img", "hr", "meta", "link", "input", "wbr", "col", "area", "base", "source"})


@dataclass
class _Section:
    anchor: str
    heading: list[str] = field(default_factory=list)
    body: list[str] = field(default_factory=list)
    heading_done: bool = False


@dataclass
class Entry:
    id: str
    page: str
    question: str
    answer: str


def _is_skipped(tag: str, attrs: dict[str, str | None]) -> bool:
    classes = (attrs.get("class") or "").split()
    # The page's table of contents repeats every question; the pilcrow links are navigation.
    return tag == "nav" or (tag == "a" and "headerlink" in classes)


def _clean(pieces: list[str]) -> str:
    lines = [line.rstrip() for line in "".join(pieces).split("\n")]
    text = "\n".join(lines).strip("\n")
    return re.sub(r"\n{3,}", "\n\n", text).strip()


class FaqParser(HTMLParser):
    """Collects (anchor, heading, own body text) for every ``<section>`` of a Sphinx page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[_Section] = []
        self.done: list[_Section] = []
        self.skip: list[str] = []  # open elements whose text is dropped
        self.pre = 0
        self.in_heading = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if self.skip:
            if tag not in VOID:
                self.skip.append(tag)
            return
        if _is_skipped(tag, named):
            self.skip.append(tag)
            return
        if tag == "section":
            self.sections.append(_Section(anchor=named.get("id") or ""))
            return
        if tag in HEADINGS and self.sections and not self.sections[-1].heading_done:
            self.in_heading = True
            return
        if tag == "pre":
            self.pre += 1
        if tag in BLOCKS:
            self._emit("\n")

    def handle_endtag(self, tag: str) -> None:
        if self.skip:
            # Sphinx writes well-formed HTML, so the innermost open skipped element is the one ending.
            self.skip.pop()
            return
        if tag == "section" and self.sections:
            self.done.append(self.sections.pop())
            return
        if tag in HEADINGS and self.in_heading:
            self.in_heading = False
            self.sections[-1].heading_done = True
            return
        if tag == "pre":
            self.pre -= 1
        if tag in BLOCKS:
            self._emit("\n")

    def handle_data(self, data: str) -> None:
        if self.skip or not self.sections:
            return
        if self.in_heading:
            self.sections[-1].heading.append(data)
            return
        if not self.pre:
            data = re.sub(r"\s+", " ", data)
            body = self.sections[-1].body
            if not body or body[-1].endswith(("\n", " ")):
                data = data.lstrip()
        self._emit(data)

    def _emit(self, text: str) -> None:
        if self.sections and not self.in_heading and text:
            self.sections[-1].body.append(text)


def parse_page(path: Path, page: str) -> list[Entry]:
    parser = FaqParser()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    if parser.sections:
        raise ValueError(f"{path}: unclosed <section>")
    # Sections close innermost first; the anchors' document order is what readers expect.
    html = path.read_text(encoding="utf-8")
    ordered = sorted(parser.done, key=lambda s: html.find(f'<section id="{s.anchor}"'))
    entries = []
    for section in ordered:
        question = re.sub(r"\s+", " ", "".join(section.heading)).strip()
        answer = _clean(section.body)
        if not question or not answer:
            continue
        entries.append(Entry(id=f"{page}/{section.anchor}", page=page, question=question, answer=answer))
    return entries


def build(directory: Path, pages: tuple[str, ...]) -> list[Entry]:
    entries: list[Entry] = []
    for page in pages:
        entries.extend(parse_page(directory / f"{page}.html", page))
    ids = [e.id for e in entries]
    if len(ids) != len(set(ids)):
        raise ValueError("duplicate entry ids")
    return entries


def _write(path: Path, rows: list[dict[str, str]]) -> None:
    path.write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--docs", type=Path, default=DOCS, help="the Python documentation's HTML root")
    args = parser.parse_args()
    if not (args.docs / "faq").is_dir():
        sys.exit(f"{args.docs}/faq not found: install Debian's python3.11-doc")
    faq = build(args.docs / "faq", PAGES)
    _write(FAQ_JSON, [e.__dict__ for e in faq])
    counts = {p: sum(e.page == p for e in faq) for p in PAGES}
    print(f"wrote {len(faq)} questions and answers to {FAQ_JSON}: {counts}")
    tutorial = build(args.docs / "tutorial", TUTORIAL)
    rows = [{"id": e.id, "page": e.page, "title": e.question, "text": e.answer} for e in tutorial]
    _write(TUTORIAL_JSON, rows)
    print(f"wrote {len(tutorial)} distractor passages to {TUTORIAL_JSON}")


if __name__ == "__main__":
    main()
