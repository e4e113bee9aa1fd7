"""Turns the source markers a model writes after a claim ("... blue [2].") into ``file_citation``
annotations, as text streams, in OpenAI's form: each cited passage leaves a marker
``【{search}:{rank}†{filename}】`` in the text (``search`` counts the run's searches that found passages
from 0, ``rank`` is the passage's place in that search's results from 0), and its annotation's ``text``,
``start_index`` and ``end_index`` point at exactly that marker, with indexes into the text the client
actually receives. That is what clients replace (``value.replace(annotation.text, "[1]")``)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

# [1], [1, 3], [1][2], 【1†source】, 【4:0†source】 (the hosted API's own style, which models imitate, and
# assistd's markers, which models see in earlier replies).
_LABEL_CHARS = 100
_MARKER = re.compile(
    rf"\[(\d{{1,3}}(?:\s*,\s*\d{{1,3}})*)\]|【(\d{{1,3}})(?::(\d{{1,3}}))?†[^】\n]{{0,{_LABEL_CHARS}}}】"
)
# What a 【 marker may be while it is still being written.
_MARKER_START = re.compile(rf"【\d{{0,3}}(:\d{{0,3}})?(†[^】\n]{{0,{_LABEL_CHARS}}})?")
_OPENERS = "[【"
_LONGEST_MARKER = _LABEL_CHARS + 12
# Characters a file name cannot bring into a marker: its brackets and dagger would end or split it, a
# line break would break it, and a character outside the BMP would count as two in UTF-16 (JavaScript)
# and one in Python, so the indexes of clients in the two languages would disagree.
_NOT_IN_LABEL = re.compile(r"[【】†\x00-\x1f\x7f\U00010000-\U0010ffff]")


@dataclass(frozen=True)
class Source:
    """A passage the model may cite: ``search`` and ``rank`` place it among the run's search results."""

    file_id: str
    quote: str
    filename: str = ""
    search: int = 0
    rank: int = 0

    @property
    def marker(self) -> str:
        label = _NOT_IN_LABEL.sub("_", self.filename)[:_LABEL_CHARS].strip() or "source"
        return f"【{self.search}:{self.rank}†{label}】"

    def stored(self) -> list[Any]:
        """The JSON form kept with the run step (``Source.from_stored`` reads it back)."""
        return [self.file_id, self.quote, self.filename, self.search, self.rank]

    @classmethod
    def from_stored(cls, value: Sequence[Any]) -> Source:
        # Steps written before markers were kept hold [file_id, quote] only.
        file_id, quote, *rest = value
        filename, search, rank = [*rest, "", 0, 0][:3]
        return cls(str(file_id), str(quote), str(filename), int(search), int(rank))


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
                cited = self._cited(match)
                if cited:
                    # The marker sits against the claim, as OpenAI's do ("blue【0:1†a.md】.").
                    show(before.rstrip(" "))
                    for source in cited:
                        found.append(self._annotate(source))
                        show(source.marker)
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

    def _cited(self, match: re.Match[str]) -> list[Source]:
        """The sources a marker names, each once, in the order named."""
        if match.group(1) is not None:
            numbers = [int(n) for n in re.findall(r"\d+", match.group(1))]
        else:
            first, second = int(match.group(2)), match.group(3)
            # 【search:rank†…】 as assistd writes them names a result; otherwise the first number is taken
            # for the passage's number, as in 【2†source】.
            placed = [
                n
                for n, s in self.sources.items()
                if second is not None and (s.search, s.rank) == (first, int(second))
            ]
            numbers = placed or [first]
        cited: list[Source] = []
        for number in numbers:
            source = self.sources.get(number)
            if source is not None and source not in cited:
                cited.append(source)
        return cited

    def _annotate(self, source: Source) -> dict[str, Any]:
        """The annotation of ``source``'s marker, about to be shown at the end of the text."""
        start = len(self.text)
        annotation = {
            "type": "file_citation",
            "text": source.marker,
            "start_index": start,
            "end_index": start + len(source.marker),
            "file_citation": {"file_id": source.file_id, "quote": source.quote},
        }
        self.annotations.append(annotation)
        return {"index": len(self.annotations) - 1, **annotation}


def _cannot_be_marker(tail: str) -> bool:
    if tail.startswith("["):
        return re.fullmatch(r"\[[\d,\s]*", tail) is None
    return _MARKER_START.fullmatch(tail) is None
