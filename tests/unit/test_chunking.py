"""Token-based chunking with the bundled model's tokenizer."""

from __future__ import annotations

import itertools
import random
import time

import pytest
from tokenizers import Tokenizer

from assistd.retrieval.chunking import (
    AUTO_MAX_TOKENS,
    AUTO_OVERLAP_TOKENS,
    Chunk,
    WordTokenizer,
    chunk_text,
)
from assistd.retrieval.embeddings import MODEL_DIR


@pytest.fixture(scope="module")
def words() -> WordTokenizer:
    return WordTokenizer(Tokenizer.from_file(str(MODEL_DIR / "tokenizer.json")))


def exact_tokens(words: WordTokenizer, text: str) -> int:
    return len(words.tokenizer.encode(text, add_special_tokens=False).ids)


WORDS = (
    "the a server stores files and vectors while clients search passages quickly with embeddings "
    "that capture meaning across many documents written by people in different places"
)


def prose(sentences: int, seed: int = 1) -> str:
    rng = random.Random(seed)
    vocabulary = WORDS.split()
    paragraphs, current = [], []
    for _ in range(sentences):
        sentence = " ".join(rng.choice(vocabulary) for _ in range(rng.randint(6, 18)))
        current.append(sentence.capitalize() + ".")
        if rng.random() < 0.15:
            paragraphs.append(" ".join(current))
            current = []
    paragraphs.append(" ".join(current))
    return "\n\n".join(p for p in paragraphs if p)


TRICKY = [
    "",
    "plain words only",
    "Punctuation, (brackets) and 'quotes'... done!",
    "form\x0cfeed unit\x1fseparator next\x85line no\u00a0break line\u2028sep zero\u200bwidth",
    "[PAD] [UNK] [CLS] literal x[PAD]y",
    "CJK 東京タワー and emoji 🚀🚀 and accents: Ångström, naïve, e\u0301",
    "a" * 250 + " " + "-" * 40 + " " + "word" * 30,
    "\t\n  leading and trailing  \n",
]


@pytest.mark.parametrize("text", TRICKY)
def test_word_tokenizer_matches_the_tokenizer(words: WordTokenizer, text: str) -> None:
    # Tokenizing word by word must give exactly the ids of the whole text.
    assert words.ids(text) == words.tokenizer.encode(text, add_special_tokens=False).ids
    assert words.count(text) == exact_tokens(words, text)


def check_chunks(
    words: WordTokenizer, text: str, chunks: list[Chunk], max_tokens: int, overlap: bool
) -> None:
    assert chunks
    for chunk in chunks:
        assert text[chunk.start : chunk.end] == chunk.text
        assert chunk.text == chunk.text.strip()
        assert exact_tokens(words, chunk.text) <= max_tokens
    # Together they cover the whole document in order, overlapping or next to each other.
    assert chunks[0].start == len(text) - len(text.lstrip())
    assert chunks[-1].end == len(text.rstrip())
    for previous, following in itertools.pairwise(chunks):
        assert previous.start < following.start
        if overlap:
            assert following.start < previous.end
        else:
            assert text[previous.end : following.start].strip() == ""


def test_auto_strategy_sizes_and_overlap(words: WordTokenizer) -> None:
    text = prose(1500)
    chunks = chunk_text(text, words, AUTO_MAX_TOKENS, AUTO_OVERLAP_TOKENS)
    check_chunks(words, text, chunks, AUTO_MAX_TOKENS, overlap=True)
    sizes = [exact_tokens(words, chunk.text) for chunk in chunks]
    # Passages may end early at a break, but never in their first three quarters.
    assert min(sizes[:-1]) >= AUTO_MAX_TOKENS * 3 // 4 - 16
    for previous, following in itertools.pairwise(chunks):
        shared = exact_tokens(words, previous.text[following.start - previous.start :])
        assert AUTO_OVERLAP_TOKENS - 16 <= shared <= AUTO_OVERLAP_TOKENS


def test_static_strategy_without_overlap_tiles_the_text(words: WordTokenizer) -> None:
    text = prose(400, seed=2)
    chunks = chunk_text(text, words, 100, 0)
    check_chunks(words, text, chunks, 100, overlap=False)
    assert sum(exact_tokens(words, chunk.text) for chunk in chunks) == exact_tokens(words, text)


def test_passages_prefer_to_end_at_sentences_and_paragraphs(words: WordTokenizer) -> None:
    text = prose(600, seed=3)
    chunks = chunk_text(text, words, 200, 50)
    assert all(chunk.text.endswith(".") for chunk in chunks)
    paragraph = "Alpha beta gamma delta. " * 30
    text = paragraph.strip() + "\n\n" + "Epsilon zeta eta theta. " * 60
    first = chunk_text(text, words, 200, 0)[0]
    assert first.text == paragraph.strip()


def test_a_short_text_is_one_chunk(words: WordTokenizer) -> None:
    assert chunk_text("  Hello there, world.\n", words, 800, 400) == [Chunk("Hello there, world.", 2, 21)]


def test_text_without_tokens_has_no_chunks(words: WordTokenizer) -> None:
    assert chunk_text("", words, 800, 400) == []
    assert chunk_text(" \n\t \u3000", words, 800, 400) == []
    assert chunk_text("\x00\x01\x02", words, 800, 400) == []


def test_unbroken_strings_are_still_cut(words: WordTokenizer) -> None:
    # A word longer than 100 characters is one unknown token to WordPiece; sized by its characters
    # instead, a huge unbroken string still makes bounded passages.
    blob = "x" * 200_000
    chunks = chunk_text(blob, words, 100, 0)
    assert len(chunks) == 20
    assert "".join(chunk.text for chunk in chunks) == blob
    minified = "a=b;" * 20_000  # one "word" of 80,000 tokens
    chunks = chunk_text(minified, words, 500, 100)
    check_chunks(words, minified, chunks, 500, overlap=True)
    assert len(chunks) == pytest.approx(80_000 / 400, rel=0.02)


def test_invalid_sizes_are_refused(words: WordTokenizer) -> None:
    with pytest.raises(ValueError):
        chunk_text("text", words, 0, 0)
    with pytest.raises(ValueError):
        chunk_text("text", words, 100, 51)
    with pytest.raises(ValueError):
        chunk_text("text", words, 100, -1)


def test_five_megabytes_chunk_quickly(words: WordTokenizer) -> None:
    text = prose(80_000, seed=5)
    text = (text * (5_000_000 // len(text) + 1))[:5_000_000]
    started = time.perf_counter()
    chunks = chunk_text(text, words, AUTO_MAX_TOKENS, AUTO_OVERLAP_TOKENS)
    elapsed = time.perf_counter() - started
    assert len(chunks) > 2000
    # About a second on an idle 2-core machine; the bound leaves room for a busy CI.
    assert elapsed < 15, f"chunking 5 MB took {elapsed:.1f}s"
