"""Small files of each kind assistd ingests, made in memory: for parsing tests and end-to-end uploads."""

from __future__ import annotations

import io
import json
import random
import struct
import zipfile
import zlib
from collections.abc import Sequence

__all__ = [
    "corrupt_docx",
    "corrupt_pdf",
    "docx_bomb",
    "lying_docx",
    "make_csv",
    "make_docx",
    "make_html",
    "make_json",
    "make_pdf",
    "pdf_bomb",
]


def _pdf_string(text: str) -> bytes:
    escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return b"(" + escaped.encode("latin-1") + b")"


def make_pdf(pages: str | Sequence[str]) -> bytes:
    """A valid PDF whose pages hold these texts (one line of a page per ``\\n``) in Helvetica.

    Text must be Latin-1: the standard fonts know no more. An empty string makes a page without text.
    """
    texts = [pages] if isinstance(pages, str) else list(pages)
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"",  # the page tree, once the pages' object numbers are known
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    page_refs: list[int] = []
    for text in texts:
        lines = [b"BT", b"/F1 12 Tf", b"14 TL", b"72 760 Td"]
        for line in text.split("\n") if text else []:
            lines.append(_pdf_string(line) + b" Tj T*")
        lines.append(b"ET")
        stream = b"\n".join(lines)
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
        content_ref = len(objects)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
            b"/Resources << /Font << /F1 3 0 R >> >> >>" % content_ref
        )
        page_refs.append(len(objects))
    kids = b" ".join(b"%d 0 R" % ref for ref in page_refs)
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(page_refs))
    return _assemble_pdf(objects)


def _assemble_pdf(objects: list[bytes]) -> bytes:
    """Objects numbered from 1 (the first the catalog), with their cross-reference table and trailer."""
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def pdf_bomb(unpacked: int) -> bytes:
    """A valid two-page PDF: a page of ordinary text, then one whose content stream is ``unpacked`` zero
    bytes squeezed by /FlateDecode into about a thousandth of that."""
    text = b"BT /F1 12 Tf 72 760 Td (An ordinary first page.) Tj ET"
    compressor = zlib.compressobj(9)
    zeros = bytes(1 << 20)
    parts = [compressor.compress(zeros) for _ in range(unpacked >> 20)]
    packed = b"".join(parts) + compressor.compress(bytes(unpacked & ((1 << 20) - 1))) + compressor.flush()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [5 0 R 7 0 R] /Count 2 >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(text), text),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 3 0 R >> >> >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(packed), packed),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 6 0 R "
        b"/Resources << /Font << /F1 3 0 R >> >> >>",
    ]
    return _assemble_pdf(objects)


def docx_bomb(unpacked: int, *, zip64: bool = True) -> bytes:
    """A valid Word document whose word/document.xml is ``unpacked`` bytes, nearly all of it whitespace
    between two paragraphs (legal XML), deflated to a few megabytes per gigabyte."""
    source = zipfile.ZipFile(io.BytesIO(make_docx(["A paragraph before the padding."])))
    original = source.read("word/document.xml")
    cut = original.index(b"</w:body>")
    head, tail = original[:cut], original[cut:]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as bomb:
        for member in source.infolist():
            if member.filename != "word/document.xml":
                bomb.writestr(member, source.read(member))
        with bomb.open("word/document.xml", "w", force_zip64=zip64) as document:
            document.write(head)
            padding = unpacked - len(head) - len(tail)
            block = b" " * (1 << 20)
            for _ in range(padding >> 20):
                document.write(block)
            document.write(b" " * (padding & ((1 << 20) - 1)))
            document.write(tail)
    return buffer.getvalue()


def lying_docx(unpacked: int) -> bytes:
    """``docx_bomb`` (at most 2 GiB, so no ZIP64 fields) whose headers claim word/document.xml holds a few
    kilobytes, with the checksum of those first kilobytes: a check of the declared sizes alone passes it,
    while its deflate stream still runs on to ``unpacked`` bytes."""
    data = bytearray(docx_bomb(unpacked, zip64=False))
    name = b"word/document.xml"
    declared = 4096
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive, archive.open(name.decode()) as member:
        first = member.read(declared)
    checksum = zlib.crc32(first)
    # (signature, offset of the name's length, offset of the name, offset of the CRC-32 then the two sizes)
    for signature, length_at, name_at, crc_at in ((b"PK\x03\x04", 26, 30, 14), (b"PK\x01\x02", 28, 46, 16)):
        at = 0
        while True:
            at = data.index(signature, at)
            length = struct.unpack_from("<H", data, at + length_at)[0]
            if data[at + name_at : at + name_at + length] == name:
                break
            at += 4
        compressed = struct.unpack_from("<I", data, at + crc_at + 4)[0]
        struct.pack_into("<III", data, at + crc_at, checksum, compressed, declared)
    return bytes(data)


def corrupt_pdf() -> bytes:
    """Starts like a PDF, then is noise: no object, no cross-reference table, no trailer."""
    noise = random.Random(4).randbytes(2048)
    return b"%PDF-1.7\n" + noise.replace(b"obj", b"xxx").replace(b"trailer", b"xxxxxxx")


def make_docx(paragraphs: Sequence[str], table: Sequence[Sequence[str]] | None = None) -> bytes:
    """A Word document with these paragraphs, then (if given) a table with these rows."""
    from docx import Document

    document = Document()
    for text in paragraphs:
        document.add_paragraph(text)
    if table:
        grid = document.add_table(rows=len(table), cols=max(len(row) for row in table))
        for r, row in enumerate(table):
            for c, value in enumerate(row):
                grid.cell(r, c).text = value
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def corrupt_docx() -> bytes:
    """A ZIP signature followed by noise."""
    return b"PK\x03\x04" + random.Random(5).randbytes(1024)


def make_html(body: str, *, title: str = "Sample page") -> bytes:
    """A page whose <body> is ``body``, with a script and a style that must not count as text."""
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{title}</title><style>body {{ color: red; }}</style>"
        "<script>var hidden = 'SCRIPT_TEXT';</script></head>"
        f"<body>{body}</body></html>"
    ).encode()


def make_json(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, indent=2).encode()


def make_csv(rows: Sequence[Sequence[str]], delimiter: str = ",") -> bytes:
    import csv

    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter).writerows(rows)
    return buffer.getvalue().encode()
