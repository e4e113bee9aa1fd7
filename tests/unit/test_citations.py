"""Citation markers become OpenAI-style markers and annotations however the text is split into stream
pieces: each annotation's text is its marker, exactly at its indexes."""

from __future__ import annotations

import pytest
from openai.types.beta.threads import FileCitationDeltaAnnotation, FilePathDeltaAnnotation

from assistd.chat import Footnotes
from assistd.tools.citations import CitationFilter, Source

A = Source("file-a", "quote a", "a.md", search=0, rank=0)
B = Source("file-b", "quote b", "b.md", search=0, rank=1)
SOURCES = {1: A, 2: B}
MA, MB = "【0:0†a.md】", "【0:1†b.md】"
TEXT = (
    "The sky is blue [1]. Grass is green [2][1]! Not [x] a [3] marker, 【2†source】 and a list [1, 2]\n"
    "Tail [2] and 【0:1†b.md】 as assistd writes it."
)
SHOWN = (
    f"The sky is blue{MA}. Grass is green{MB}{MA}! Not [x] a [3] marker,{MB} and a list{MA}{MB}\n"
    f"Tail{MB} and{MB} as assistd writes it."
)


def _run(text: str, size: int, sources: dict[int, Source] = SOURCES) -> CitationFilter:
    citations = CitationFilter(dict(sources))
    shown = []
    for start in range(0, len(text), size):
        shown.append(citations.feed(text[start : start + size])[0])
    shown.append(citations.flush()[0])
    assert "".join(shown) == citations.text
    return citations


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_markers_become_annotations_at_any_split(size: int) -> None:
    citations = _run(TEXT, size)
    assert citations.text == SHOWN
    cited = [(a["text"], a["file_citation"]["file_id"]) for a in citations.annotations]
    assert cited == [
        (MA, "file-a"),
        (MB, "file-b"),
        (MA, "file-a"),
        (MB, "file-b"),
        (MA, "file-a"),
        (MB, "file-b"),
        (MB, "file-b"),
        (MB, "file-b"),
    ]
    for annotation in citations.annotations:
        assert citations.text[annotation["start_index"] : annotation["end_index"]] == annotation["text"]
        assert annotation["file_citation"]["quote"] in ("quote a", "quote b")
    starts = [a["start_index"] for a in citations.annotations]
    assert starts == sorted(starts)


def test_openai_documented_footnote_code_keeps_every_sentence() -> None:
    citations = _run("Blue [1]. Green [2]. Both [1, 2].", 4)
    value = citations.text
    for index, annotation in enumerate(citations.annotations):
        value = value.replace(annotation["text"], f"[{index}]")
    assert value == "Blue[0]. Green[1]. Both[0][1]."


def test_delta_annotations_are_numbered_in_order_and_carry_their_marker() -> None:
    citations = CitationFilter(dict(SOURCES))
    first_text, first = citations.feed("One [1].")
    second_text, second = citations.feed(" Two [2].")
    assert [a["index"] for a in first + second] == [0, 1]
    # A marker reaches the client in the same delta as its annotation.
    assert (first_text, second_text) == (f"One{MA}.", f" Two{MB}.")
    assert [a["start_index"] for a in first + second] == [3, len(f"One{MA}. Two")]


def test_the_same_source_named_twice_in_one_marker_is_cited_once() -> None:
    citations = _run("Twice [1, 1].", 1000)
    assert citations.text == f"Twice{MA}."
    assert len(citations.annotations) == 1


def test_markers_of_different_passages_differ_and_names_are_made_safe() -> None:
    odd = Source("file-c", "quote c", "x】y†z\n\U0001d518.md", search=2, rank=5)
    assert odd.marker == "【2:5†x_y_z__.md】"
    assert len({A.marker, B.marker, odd.marker}) == 3
    assert Source("file-d", "q").marker == "【0:0†source】"
    # Every character of a marker is in the BMP: JavaScript's UTF-16 indexes equal Python's.
    assert all(ord(c) <= 0xFFFF for c in odd.marker + A.marker)


def test_a_long_file_name_still_makes_a_marker_that_streams() -> None:
    long = Source("file-l", "quote", "n" * 300 + ".md", search=1, rank=0)
    assert len(long.marker) < 120
    citations = _run("See [1].", 2, {1: long})
    assert citations.text == f"See{long.marker}."
    # The model writing the marker back, as it sees it in earlier replies, cites the same passage.
    again = _run(f"Again {long.marker}.", 3, {1: long})
    assert again.text == f"Again{long.marker}." and len(again.annotations) == 1


def test_sources_are_stored_and_read_back() -> None:
    assert Source.from_stored(A.stored()) == A
    # Steps stored before markers were kept hold the file and the quote only.
    assert Source.from_stored(["file-a", "quote a"]) == Source("file-a", "quote a")


def test_without_sources_text_passes_untouched() -> None:
    citations = CitationFilter({})
    assert citations.feed("Array [1] stays ")[0] == "Array [1] stays "
    assert citations.flush() == ("", [])
    assert citations.annotations == []


def test_an_unclosed_bracket_is_released_at_the_end() -> None:
    citations = _run("Ends with [12", 1)
    assert citations.text == "Ends with [12"


def test_the_terminal_client_shows_markers_as_numbers_and_lists_the_files() -> None:
    notes = Footnotes()
    first = notes.apply(
        f"Blue{MA}.",
        [FileCitationDeltaAnnotation(index=0, type="file_citation", text=MA, start_index=4, end_index=14)],
    )
    link = FilePathDeltaAnnotation(index=3, type="file_path", text="sandbox:/mnt/data/x.csv")
    second = notes.apply(
        f" Green{MB}{MA}, see sandbox:/mnt/data/x.csv.",
        [
            FileCitationDeltaAnnotation(index=1, type="file_citation", text=MB),
            FileCitationDeltaAnnotation(index=2, type="file_citation", text=MA),
            link,
        ],
    )
    assert first + second == "Blue[1]. Green[2][1], see sandbox:/mnt/data/x.csv."
    assert notes.lines() == "[1] a.md\n[2] b.md\n"
    # A sentence-long citation (as replies stored before markers were kept have) is left as it is.
    old = FileCitationDeltaAnnotation(index=0, type="file_citation", text="The sky is blue")
    assert Footnotes().apply("The sky is blue.", [old]) == "The sky is blue."
