"""Text extraction from uploaded files, by the extension of the upload's name."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_TESTS_DIR = str(Path(__file__).resolve().parents[1])
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from assistd.retrieval.parsing import (  # noqa: E402
    SOURCE_EXTENSIONS,
    SUPPORTED_EXTENSIONS,
    ParseError,
    extension_of,
    extract_text,
)
from samples_files import (  # noqa: E402
    corrupt_docx,
    corrupt_pdf,
    make_csv,
    make_docx,
    make_html,
    make_json,
    make_pdf,
)


def extract(tmp_path: Path, data: bytes, filename: str) -> str:
    # Stored uploads have no extension on disk: only the upload's name says what the file is.
    path = tmp_path / "file-blob"
    path.write_bytes(data)
    return extract_text(path, filename)


def test_extension_of_names() -> None:
    assert extension_of("Report.PDF") == ".pdf"
    assert extension_of("archive.tar.gz") == ".gz"
    assert extension_of("dir/sub\\notes.md") == ".md"
    assert extension_of("README") == ""
    assert extension_of(".bashrc") == ""
    assert {".txt", ".md", ".html", ".json", ".csv", ".pdf", ".docx", ".py", ".go"} <= SUPPORTED_EXTENSIONS


def test_plain_text_and_markdown_are_returned_as_written(tmp_path: Path) -> None:
    doc = "# Title\n\nSome *markdown* text.\n"
    assert extract(tmp_path, doc.encode(), "notes.md") == doc
    assert extract(tmp_path, b"line one\r\nline two\r\n", "a.TXT") == "line one\nline two\n"


def test_source_code_is_kept_verbatim(tmp_path: Path) -> None:
    code = 'def greet(name):\n    return f"hello {name}"  # indented\n'
    for ext in sorted(SOURCE_EXTENSIONS):
        assert extract(tmp_path, code.encode(), f"module{ext}") == code


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("naïve café — “quoted”".encode(), "naïve café — “quoted”"),
        (b"\xef\xbb\xbfwith a BOM", "with a BOM"),
        ("naïve café — “quoted”".encode("cp1252"), "naïve café — “quoted”"),
        ("Grüße aus Köln".encode("latin-1"), "Grüße aus Köln"),
        ("UTF-16 text: 東京".encode("utf-16"), "UTF-16 text: 東京"),
    ],
)
def test_text_encodings_fall_back_without_failing(tmp_path: Path, data: bytes, expected: str) -> None:
    assert extract(tmp_path, data, "doc.txt") == expected


def test_bytes_undefined_in_cp1252_do_not_fail(tmp_path: Path) -> None:
    assert extract(tmp_path, b"caf\xe9 \x81 ok", "doc.txt") == "café \ufffd ok"


def test_nul_characters_are_removed(tmp_path: Path) -> None:
    # PostgreSQL text cannot hold NUL.
    assert extract(tmp_path, b"before\x00after", "doc.txt") == "beforeafter"


def test_binary_data_under_a_text_name_is_refused(tmp_path: Path) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
    with pytest.raises(ParseError, match="does not look like text"):
        extract(tmp_path, png, "image.txt")


def test_html_keeps_visible_text_only(tmp_path: Path) -> None:
    page = make_html(
        "<h1>Heading</h1><p>Hello &amp; <b>bold</b> world<br>second line</p>"
        "<ul><li>one</li><li>two</li></ul>"
        "<table><tr><th>Name</th><th>Age</th></tr><tr><td>Ann</td><td>31</td></tr></table>"
        "<noscript>enable scripts</noscript><p>End</p>",
        title="My page",
    )
    text = extract(tmp_path, page, "page.html")
    assert "SCRIPT_TEXT" not in text
    assert "color" not in text
    assert "enable scripts" not in text
    assert text.splitlines() == [
        "My page",
        "",
        "Heading",
        "",
        "Hello & bold world",
        "second line",
        "",
        "one",
        "two",
        "",
        "Name | Age",
        "Ann | 31",
        "",
        "End",
    ]


def test_html_without_closing_head_still_shows_body(tmp_path: Path) -> None:
    page = b"<html><head><title>T</title><body><p>Body text</p><script>x()</script>"
    assert extract(tmp_path, page, "page.htm") == "T\n\nBody text"


def test_json_is_rendered_with_its_keys(tmp_path: Path) -> None:
    value = {
        "name": "Alice",
        "tags": ["admin", "ops"],
        "address": {"city": "Paris", "zip": None},
        "orders": [{"id": 1, "paid": True}, {"id": 2, "paid": False}],
    }
    text = extract(tmp_path, make_json(value), "user.json")
    assert text.splitlines() == [
        "name: Alice",
        "tags:",
        "  - admin",
        "  - ops",
        "address:",
        "  city: Paris",
        "  zip: null",
        "orders:",
        "  - id: 1",
        "    paid: true",
        "  - id: 2",
        "    paid: false",
    ]


def test_json_lines_and_invalid_json(tmp_path: Path) -> None:
    lines = b'{"q": "What is assistd?"}\n\n{"q": "Where is it?"}\n'
    assert extract(tmp_path, lines, "faq.jsonl") == "q: What is assistd?\n\nq: Where is it?"
    # Not JSON after all: its text is still searchable.
    assert extract(tmp_path, b"{not json: but words}", "broken.json") == "{not json: but words}"


def test_deeply_nested_json_does_not_crash(tmp_path: Path) -> None:
    nested = '{"k": ' * 500 + '"bottom"' + "}" * 500
    assert extract(tmp_path, nested.encode(), "deep.json").splitlines()[-1] == "  " * 499 + "k: bottom"
    # Deeper than the json module can parse: the raw text stands in.
    deeper = '{"k": ' * 50_000 + '"bottom"' + "}" * 50_000
    assert extract(tmp_path, deeper.encode(), "deeper.json") == deeper


def test_empty_json_has_no_text(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match="contains no extractable text"):
        extract(tmp_path, b"{}", "empty.json")


def test_csv_rows_carry_their_column_names(tmp_path: Path) -> None:
    rows = [["name", "city", "note"], ["Ann", "Paris", "likes, commas"], ["Bob", "", "multi\nline"]]
    text = extract(tmp_path, make_csv(rows), "people.csv")
    assert text.splitlines() == [
        "name, city, note",
        "name: Ann; city: Paris; note: likes, commas",
        "name: Bob; note: multi",
        "line",
    ]


def test_csv_delimiters_and_headerless_tables(tmp_path: Path) -> None:
    semicolons = make_csv([["product", "price"], ["tea", "3,50"], ["cake", "4,20"]], delimiter=";")
    assert extract(tmp_path, semicolons, "prices.csv").splitlines()[1] == "product: tea; price: 3,50"
    numbers = make_csv([["1", "2"], ["3", "4"]])
    assert extract(tmp_path, numbers, "numbers.csv") == "1, 2\n3, 4"
    tabs = make_csv([["word", "meaning"], ["chat", "cat"]], delimiter="\t")
    assert extract(tmp_path, tabs, "glossary.tsv") == "word, meaning\nword: chat; meaning: cat"


def test_pdf_text_of_every_page(tmp_path: Path) -> None:
    pdf = make_pdf(["The quick brown fox (page one)\nsecond line, café", "Page two holds more"])
    text = extract(tmp_path, pdf, "report.pdf")
    assert text == "The quick brown fox (page one)\nsecond line, café\n\nPage two holds more"


def test_corrupt_and_truncated_pdfs_are_parse_errors(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match="PDF is damaged or not a PDF"):
        extract(tmp_path, corrupt_pdf(), "broken.pdf")
    with pytest.raises(ParseError, match="PDF"):
        extract(tmp_path, make_pdf("cut short")[:150], "truncated.pdf")
    with pytest.raises(ParseError, match="PDF"):
        extract(tmp_path, b"", "empty.pdf")


def test_pdf_without_text_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match=r"'scan\.pdf' contains no extractable text"):
        extract(tmp_path, make_pdf(["", ""]), "scan.pdf")


def test_docx_paragraphs_and_tables(tmp_path: Path) -> None:
    docx = make_docx(
        ["Quarterly report", "Revenue grew by 12 percent."], table=[["Region", "Sales"], ["North", "120"]]
    )
    text = extract(tmp_path, docx, "report.docx")
    assert text == "Quarterly report\nRevenue grew by 12 percent.\nRegion | Sales\nNorth | 120"


def test_corrupt_docx_is_a_parse_error(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match="not a Word document"):
        extract(tmp_path, corrupt_docx(), "broken.docx")
    # A valid ZIP that is not a Word document.
    with pytest.raises(ParseError, match="not a Word document"):
        extract(tmp_path, make_docx(["x"])[:0] + _zip_with("hello.txt", b"hi"), "fake.docx")


def _zip_with(name: str, data: bytes) -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, data)
    return buffer.getvalue()


def test_unsupported_types_name_the_extension(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match=r"^Unsupported file type '\.xyz'"):
        extract(tmp_path, b"data", "file.xyz")
    with pytest.raises(
        ParseError, match=r"^Unsupported file type \(the file name 'Makefile' has no extension"
    ):
        extract(tmp_path, b"all:", "Makefile")


def test_empty_and_blank_files_have_no_text(tmp_path: Path) -> None:
    for data, name in [
        (b"", "empty.txt"),
        (b"  \n\t\n", "blank.md"),
        (make_html("<p> </p>", title=""), "blank.html"),
    ]:
        with pytest.raises(ParseError, match="contains no extractable text"):
            extract(tmp_path, data, name)


def test_missing_file_is_not_a_parse_error(tmp_path: Path) -> None:
    # Our own storage failing is not the user's file's fault.
    with pytest.raises(FileNotFoundError):
        extract_text(tmp_path / "gone", "gone.txt")
