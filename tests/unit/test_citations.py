"""Citation markers become annotations however the text is split into stream pieces."""

from __future__ import annotations

import pytest

from assistd.tools.citations import CitationFilter, Source

SOURCES = {1: Source("file-a", "quote a"), 2: Source("file-b", "quote b")}
TEXT = (
    "The sky is blue [1]. Grass is green [2][1]! Not [x] a [3] marker, 【2†source】 and a list [1, 2]\n"
    "Tail [2]"
)
CLEAN = "The sky is blue. Grass is green! Not [x] a [3] marker, and a list\nTail"


def _run(text: str, size: int) -> CitationFilter:
    citations = CitationFilter(dict(SOURCES))
    shown = []
    for start in range(0, len(text), size):
        shown.append(citations.feed(text[start : start + size])[0])
    shown.append(citations.flush()[0])
    assert "".join(shown) == citations.text
    return citations


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_markers_become_annotations_at_any_split(size: int) -> None:
    citations = _run(TEXT, size)
    assert citations.text == CLEAN
    spans = [(a["text"], a["file_citation"]["file_id"]) for a in citations.annotations]
    assert spans == [
        ("The sky is blue", "file-a"),
        ("Grass is green", "file-b"),
        ("Grass is green", "file-a"),
        ("Not [x] a [3] marker,", "file-b"),
        ("Not [x] a [3] marker, and a list", "file-a"),
        ("Not [x] a [3] marker, and a list", "file-b"),
        ("Tail", "file-b"),
    ]
    for annotation in citations.annotations:
        assert citations.text[annotation["start_index"] : annotation["end_index"]] == annotation["text"]
        assert annotation["file_citation"]["quote"] in ("quote a", "quote b")


def test_delta_annotations_are_numbered_in_order() -> None:
    citations = CitationFilter(dict(SOURCES))
    _, first = citations.feed("One [1].")
    _, second = citations.feed(" Two [2].")
    assert [a["index"] for a in first + second] == [0, 1]


def test_without_sources_text_passes_untouched() -> None:
    citations = CitationFilter({})
    assert citations.feed("Array [1] stays ")[0] == "Array [1] stays "
    assert citations.flush() == ("", [])
    assert citations.annotations == []


def test_an_unclosed_bracket_is_released_at_the_end() -> None:
    citations = _run("Ends with [12", 1)
    assert citations.text == "Ends with [12"
