"""Turns the source markers a model writes after a claim ("... blue [2].") into ``file_citation``
annotations, as text streams: markers never reach the client, and each annotation covers the sentence
it cites, with indexes into the text the client actually receives."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# [1], [1, 3], [1][2], 【1†source】, 【4:0†source】 (the hosted API's own style, which models imitate).
_MARKER = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]|【(\d{1,3})(?::\d{1,3})?†[^】]{0,20}】")
_OPENERS = "[【"
_LONGEST_MARKER = 32
_SENTENCE_END = re.compile(r"[.!?](?=\s)|\n")


@dataclass(frozen=True)
class Source:
    file_id: str
    quote: str


@dataclass
class CitationFilter:
    sources: dict[int, Source]
    text: str = ""  # what was let through so far
    annotations: list[dict[str, Any]] = field(default_factory=list)
    _held: str = ""

    def feed(self, piece: str) -> tuple[str, list[dict[str, Any]]]:
        """The part of ``piece`` that can be shown now, and the annotations completed by it."""
        if not self.sources:
            self.text += piece
            return piece, []
        return self._release(self._held + piece, final=False)

    def flush(self) -> tuple[str, list[dict[str, Any]]]:
        return self._release(self._held, final=True)

    def _release(self, pending: str, *, final: bool) -> tuple[str, list[dict[str, Any]]]:
        shown: list[str] = []
        found: list[dict[str, Any]] = []

        def show(piece: str) -> None:
            shown.append(piece)
            self.text += piece

        self._held = ""
        while pending:
            start = min((i for i in (pending.find(c) for c in _OPENERS) if i >= 0), default=-1)
            if start < 0:
                # Spaces at the end may precede a marker, which takes them along: hold them back.
                keep = pending if final else pending.rstrip(" ")
                show(keep)
                self._held = pending[len(keep) :]
                break
            before = pending[:start]
            match = _MARKER.match(pending, start)
            if match is not None:
                numbers = [int(n) for n in re.findall(r"\d+", match.group(1) or match.group(2))]
                cited = [self.sources[n] for n in numbers if n in self.sources]
                if cited:
                    show(before.rstrip(" "))
                    found += self._annotate(cited)
                else:
                    show(before + match.group(0))
                pending = pending[match.end() :]
                continue
            if (
                not final
                and len(pending) - start < _LONGEST_MARKER
                and not _cannot_be_marker(pending[start:])
            ):
                # An opener that may still become a marker: wait for the text that decides.
                show(before.rstrip(" "))
                self._held = before[len(before.rstrip(" ")) :] + pending[start:]
                break
            show(before + pending[start])
            pending = pending[start + 1 :]
        return "".join(shown), found

    def _annotate(self, cited: list[Source]) -> list[dict[str, Any]]:
        end = len(self.text.rstrip())
        starts = [m.end() for m in _SENTENCE_END.finditer(self.text, 0, max(0, end - 1))]
        start = starts[-1] if starts else 0
        while start < end and self.text[start].isspace():
            start += 1
        made = []
        for source in cited:
            annotation = {
                "type": "file_citation",
                "text": self.text[start:end],
                "start_index": start,
                "end_index": end,
                "file_citation": {"file_id": source.file_id, "quote": source.quote},
            }
            self.annotations.append(annotation)
            made.append({"index": len(self.annotations) - 1, **annotation})
        return made


def _cannot_be_marker(tail: str) -> bool:
    if tail.startswith("["):
        return re.fullmatch(r"\[[\d,\s]*", tail) is None
    return re.fullmatch(r"【\d{0,3}(:\d{0,3})?(†[^】]{0,20})?", tail) is None
