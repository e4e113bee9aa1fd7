"""Cutting a document into overlapping passages of at most N tokens, as OpenAI's file_search does.

Tokens are the embedding model's (a BERT WordPiece vocabulary). A passage is an exact slice of the
document: it starts at a token's first character and ends at a token's last, and prefers to end on a
paragraph, sentence or line break when one falls in its last quarter.

Running the tokenizer over a whole document is slow (about 1-2 MB/s with offsets), so ``WordTokenizer``
splits text on the whitespace BERT itself splits on and tokenizes each distinct word once, caching the
ids. BERT never joins characters across that whitespace, so the ids of the words, in order, are exactly
the ids of the text; a 5 MB document then costs one pass of a regex and the tokenizer on its distinct
words only.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

__all__ = [
    "AUTO_MAX_TOKENS",
    "AUTO_OVERLAP_TOKENS",
    "MAX_CHUNK_TOKENS",
    "MIN_CHUNK_TOKENS",
    "Chunk",
    "WordTokenizer",
    "chunk_text",
]

# OpenAI's "auto" strategy, and the bounds of its "static" one (overlap at most half the size).
AUTO_MAX_TOKENS = 800
AUTO_OVERLAP_TOKENS = 400
MIN_CHUNK_TOKENS = 100
MAX_CHUNK_TOKENS = 4096

# What BERT splits words on once its normalizer has dropped control characters: tab, newline, carriage
# return, the Unicode space separators (Zs), and the line and paragraph separators. Python's own notion of
# whitespace differs (it splits on \x0b, \x0c, \x1c-\x1f and \x85, which BERT deletes instead).
_SEPARATORS = " \t\n\r\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_SPLIT = re.compile(f"([{_SEPARATORS}]+)")
_WORD_SPLIT = re.compile(f"[{_SEPARATORS}]+")

# WordPiece gives a word of more than 100 characters one unknown token: for sizing, such a run counts as
# one token per this many characters, so a passage can never swallow a huge unbroken string.
_LONG_WORD_CHARS = 100
# Words (URLs, paths, code) with more tokens than a 16th of the passage size, and at least this many, are
# cut between their own tokens: re-tokenizing them with offsets costs, so only big ones are.
_SPLIT_WORD_TOKENS = 16
# Words longer than this are not worth remembering (hashes, base64, minified code).
_CACHED_WORD_CHARS = 48

_PARAGRAPH = re.compile(r"\n[ \t\r\f\v]*\n")
_SENTENCE = re.compile(r"[.!?\u3002\uff01\uff1f][\"'\u201d\u2019)\]]*(?=\s)")


@dataclass(frozen=True)
class Chunk:
    text: str
    start: int  # character offsets into the document: text == document[start:end]
    end: int


class WordTokenizer:
    """A tokenizer's ids for whitespace-separated words, remembered across calls.

    Thread-safe: ingestion workers share one. The cache is cleared when it reaches ``cache_words``
    entries, which bounds memory at roughly 150 bytes a word.
    """

    def __init__(self, tokenizer: Tokenizer, cache_words: int = 100_000) -> None:
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self.tokenizer = tokenizer
        self._cache: dict[str, tuple[int, ...]] = {}
        self._cache_words = cache_words

    def split(self, text: str) -> list[str]:
        """The words of ``text`` as BERT's pre-tokenizer separates them (before its punctuation split)."""
        return [word for word in _WORD_SPLIT.split(text) if word]

    def ids(self, text: str) -> list[int]:
        """The token ids of ``text`` (no special tokens added), as ``tokenizer.encode`` gives them."""
        out: list[int] = []
        for ids in self.word_ids(self.split(text)):
            out.extend(ids)
        return out

    def count(self, text: str) -> int:
        return sum(len(ids) for ids in self.word_ids(self.split(text)))

    def word_ids(self, words: Sequence[str]) -> list[tuple[int, ...]]:
        """Token ids of each word; each must be free of separators."""
        known: dict[str, tuple[int, ...]] = {}
        missing: list[str] = []
        cache = self._cache
        for word in dict.fromkeys(words):
            ids = cache.get(word)
            if ids is None:
                missing.append(word)
            else:
                known[word] = ids
        if missing:
            encoded = self.tokenizer.encode_batch_fast(missing, add_special_tokens=False)
            fresh = {word: tuple(encoding.ids) for word, encoding in zip(missing, encoded, strict=True)}
            known.update(fresh)
            if len(cache) + len(fresh) > self._cache_words:
                cache.clear()
            cache.update((word, ids) for word, ids in fresh.items() if len(word) <= _CACHED_WORD_CHARS)
        return [known[word] for word in words]

    def units(
        self, text: str, split_above: int = _SPLIT_WORD_TOKENS
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Where passages may start and end: (start, end, tokens) per unit, in document order.

        A unit is a word, or one token of a word of more than ``split_above`` tokens. Units without tokens
        (only characters the tokenizer deletes) are left out.
        """
        parts = _SPLIT.split(text)
        lengths = np.fromiter(map(len, parts), np.int64, len(parts))
        bounds = np.concatenate(([0], np.cumsum(lengths)))
        # re.split with a capturing group alternates word, separator, word, ...; words may be empty.
        words = parts[0::2]
        starts = bounds[0:-1:2]
        ends = starts + lengths[0::2]
        ids = self.word_ids(words)
        counts = np.fromiter(map(len, ids), np.int64, len(ids))
        special = np.flatnonzero((counts > split_above) | (ends - starts > _LONG_WORD_CHARS))
        if len(special):
            starts, ends, counts = self._split_words(text, starts, ends, counts, special)
        keep = counts > 0
        return starts[keep], ends[keep], counts[keep]

    def _split_words(
        self,
        text: str,
        starts: npt.NDArray[np.int64],
        ends: npt.NDArray[np.int64],
        counts: npt.NDArray[np.int64],
        special: npt.NDArray[np.intp],
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """The units with each ``special`` word replaced by its tokens, at the tokens' own offsets."""
        bases = starts[special].tolist()
        words = [text[s:e] for s, e in zip(bases, ends[special].tolist(), strict=True)]
        token_spans: list[npt.NDArray[np.int64]] = []
        for base, encoding in zip(
            bases, self.tokenizer.encode_batch(words, add_special_tokens=False), strict=True
        ):
            spans = np.array(encoding.offsets, np.int64).reshape(-1, 2) + base
            if len(spans) and (spans[:, 1] - spans[:, 0] > _LONG_WORD_CHARS).any():
                spans = _cut_long_tokens(spans)
            token_spans.append(spans)
        # Every word keeps one slot, except special ones, which get one per token.
        slots = np.ones(len(counts), np.int64)
        slots[special] = [len(spans) for spans in token_spans]
        first_slot = np.cumsum(slots) - slots
        new_starts = np.repeat(starts, slots)
        new_ends = np.repeat(ends, slots)
        new_counts = np.repeat(counts, slots)
        flat = np.concatenate(token_spans)
        if len(flat):
            within = np.arange(len(flat)) - np.repeat(
                np.cumsum(slots[special]) - slots[special], slots[special]
            )
            positions = np.repeat(first_slot[special], slots[special]) + within
            new_starts[positions] = flat[:, 0]
            new_ends[positions] = flat[:, 1]
            new_counts[positions] = 1
        return new_starts, new_ends, new_counts


def _cut_long_tokens(spans: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """An unknown token spanning an over-long run is sized by its characters instead: one per 100."""
    out: list[tuple[int, int]] = []
    for first, last in spans.tolist():
        out.extend((cut, min(last, cut + _LONG_WORD_CHARS)) for cut in range(first, last, _LONG_WORD_CHARS))
    return np.array(out, np.int64).reshape(-1, 2)


def chunk_text(text: str, tokenizer: WordTokenizer, max_tokens: int, overlap_tokens: int) -> list[Chunk]:
    """Passages of at most ``max_tokens`` tokens, each sharing about ``overlap_tokens`` with the one before.

    Sizes are counted in whole words (a long word may be cut between its tokens), so a passage may hold a
    few tokens fewer than ``max_tokens`` and a little less overlap than asked; with ``max_tokens`` of 16
    or more, it never holds more.
    """
    if max_tokens < 1:
        raise ValueError("max_tokens must be positive")
    if not 0 <= overlap_tokens <= max_tokens // 2:
        raise ValueError("overlap_tokens must be between 0 and half of max_tokens")
    starts, ends, counts = tokenizer.units(text, max(_SPLIT_WORD_TOKENS, max_tokens // 16))
    n = len(counts)
    if n == 0:
        return []
    # before[i] = tokens in units [0, i)
    before = np.concatenate(([0], np.cumsum(counts)))
    chunks: list[Chunk] = []
    first = 0
    while True:
        limit = int(before[first]) + max_tokens
        stop = int(np.searchsorted(before, limit, side="right")) - 1  # units [first, stop) fit
        stop = max(stop, first + 1)  # a unit larger than a tiny max_tokens still makes progress
        if stop < n:
            stop = _soft_stop(text, starts, before, first, stop, max_tokens)
        start_char, end_char = int(starts[first]), int(ends[stop - 1])
        chunks.append(Chunk(text[start_char:end_char], start_char, end_char))
        if stop >= n:
            return chunks
        # The next passage starts so that it repeats at most overlap_tokens of this one's end.
        following = int(np.searchsorted(before, int(before[stop]) - overlap_tokens, side="left"))
        first = min(max(following, first + 1), stop)


def _soft_stop(
    text: str,
    starts: npt.NDArray[np.int64],
    before: npt.NDArray[np.int64],
    first: int,
    stop: int,
    max_tokens: int,
) -> int:
    """``stop`` moved back to the last paragraph, sentence or line break in the passage's last quarter."""
    earliest = int(np.searchsorted(before, int(before[first]) + max_tokens - max_tokens // 4, side="left"))
    if earliest >= stop:
        return stop
    # From the unit whose end would make the shortest acceptable passage to the first unit left out: a
    # break right after the former still counts.
    window_start, window_end = int(starts[earliest - 1]), int(starts[stop])
    window = text[window_start:window_end]
    if (paragraph := _last(_PARAGRAPH, window)) is not None:
        cut = paragraph.start()
    elif (sentence := _last(_SENTENCE, window)) is not None:
        cut = sentence.end()
    else:
        cut = window.rfind("\n")
    if cut <= 0:
        return stop
    # Units that start before the break end the passage.
    return int(np.searchsorted(starts, window_start + cut, side="left"))


def _last(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    found = None
    for found in pattern.finditer(text):  # noqa: B007 (the loop only finds the last one)
        pass
    return found


@functools.cache
def word_tokenizer(model_dir: Path) -> WordTokenizer:
    """The ``WordTokenizer`` of a model folder's ``tokenizer.json``, read once per folder."""
    return WordTokenizer(Tokenizer.from_file(str(model_dir / "tokenizer.json")))
