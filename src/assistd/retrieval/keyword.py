"""Okapi BM25 over one store's chunks, held in memory beside its vectors.

The databases' own full-text search was tried first (FTS5's bm25 on SQLite, ts_rank on PostgreSQL): ts_rank
is not BM25 and ranked far worse on the retrieval benchmark, and both spent over 100 ms on a 100,000-chunk
store because they score every chunk that shares any query word. Postings in numpy arrays score the same
query in a few milliseconds, and rank alike on both backends.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt
import snowballstemmer

K1 = 1.2
B = 0.75

_WORD = re.compile(r"[^\W_]+")
_STOPWORD_TEXT = (
    "a about above after again all am an and any are as at be because been before being below between "
    "both but by can could did do does doing down during each few for from further had has have having "
    "he her here hers him his how i if in into is it its itself just me more most my no nor not now of "
    "off on once only or other our ours out over own same she should so some such than that the their "
    "theirs them then there these they this those through to too under until up very was we were what "
    "when where which while who whom why will with would you your yours"
)
_STOPWORDS = frozenset(_STOPWORD_TEXT.split(" "))
_stemmer = snowballstemmer.stemmer("english")


@lru_cache(maxsize=200_000)
def _stem(word: str) -> str:
    return str(_stemmer.stemWord(word))


def terms(text: str, *, keep_stopwords: bool = False) -> list[str]:
    words = _WORD.findall(text.lower())
    return [_stem(w) for w in words if keep_stopwords or w not in _STOPWORDS]


def query_terms(query: str) -> list[str]:
    """A query's distinct terms; a query of only stopwords keeps them rather than search for nothing."""
    found = terms(query) or terms(query, keep_stopwords=True)
    return list(dict.fromkeys(found))


@dataclass
class KeywordIndex:
    vocabulary: dict[str, int]
    offsets: npt.NDArray[np.int64]  # postings of term t are [offsets[t], offsets[t + 1])
    docs: npt.NDArray[np.int32]
    weights: npt.NDArray[np.float32]  # BM25's term-frequency part, per posting
    doc_count: int

    @classmethod
    def build(cls, texts: Sequence[str]) -> KeywordIndex:
        vocabulary: dict[str, int] = {}
        ids: list[int] = []
        lengths = np.zeros(len(texts), np.int64)
        for doc, text in enumerate(texts):
            found = terms(text)
            lengths[doc] = len(found)
            ids.extend(vocabulary.setdefault(term, len(vocabulary)) for term in found)
        n = max(1, len(texts))
        term_ids = np.asarray(ids, np.int64)
        doc_ids = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)
        keys, tf = np.unique(term_ids * n + doc_ids, return_counts=True)
        posting_terms, posting_docs = keys // n, keys % n
        offsets = np.zeros(len(vocabulary) + 1, np.int64)
        np.cumsum(np.bincount(posting_terms, minlength=len(vocabulary)), out=offsets[1:])
        average = float(lengths.mean()) if len(texts) else 1.0
        norm = K1 * (1 - B + B * lengths[posting_docs] / max(average, 1.0))
        weights = (tf * (K1 + 1) / (tf + norm)).astype(np.float32)
        return cls(vocabulary, offsets, posting_docs.astype(np.int32), weights, len(texts))

    @property
    def nbytes(self) -> int:
        return int(self.offsets.nbytes + self.docs.nbytes + self.weights.nbytes) + 100 * len(self.vocabulary)

    def scores(self, queries: Sequence[str]) -> npt.NDArray[np.float32]:
        """BM25 of every chunk for the queries' terms together (0 where none occurs)."""
        total = np.zeros(self.doc_count, np.float32)
        wanted = dict.fromkeys(term for query in queries for term in query_terms(query))
        for term in wanted:
            index = self.vocabulary.get(term)
            if index is None:
                continue
            start, end = int(self.offsets[index]), int(self.offsets[index + 1])
            df = end - start
            idf = math.log(1 + (self.doc_count - df + 0.5) / (df + 0.5))
            total[self.docs[start:end]] += idf * self.weights[start:end]
        return total
