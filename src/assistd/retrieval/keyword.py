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
# word → its term ("" for a stopword); bounded, as user text can hold any number of distinct words.
_terms: dict[str, str] = {}
_TERM_CACHE = 500_000


def _learn(word: str) -> str:
    if len(_terms) >= _TERM_CACHE:
        _terms.clear()
    term = "" if word in _STOPWORDS else str(_stemmer.stemWord(word))
    _terms[word] = term
    return term


def terms(text: str) -> list[str]:
    """The terms of ``text``: lower-cased, stemmed words, stopwords left out."""
    found = []
    known = _terms.get
    for word in _WORD.findall(text.lower()):
        term = known(word)
        if term is None:
            term = _learn(word)
        if term:
            found.append(term)
    return found


def query_terms(query: str) -> list[str]:
    """A query's distinct terms; a query of only stopwords keeps them rather than search for nothing."""
    found = terms(query) or [str(_stemmer.stemWord(w)) for w in _WORD.findall(query.lower())]
    return list(dict.fromkeys(found))


@dataclass
class KeywordIndex:
    """Postings of one segment of a store. BM25's statistics (document frequency, average length) are
    summed over all of a store's segments at query time, so segments rank as one index."""

    vocabulary: dict[str, int]
    offsets: npt.NDArray[np.int64]  # postings of term t are [offsets[t], offsets[t + 1])
    docs: npt.NDArray[np.int32]
    tf: npt.NDArray[np.float32]
    lengths: npt.NDArray[np.float32]  # terms per document

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
        offsets = np.zeros(len(vocabulary) + 1, np.int64)
        np.cumsum(np.bincount(keys // n, minlength=len(vocabulary)), out=offsets[1:])
        return cls(
            vocabulary,
            offsets,
            (keys % n).astype(np.int32),
            tf.astype(np.float32),
            lengths.astype(np.float32),
        )

    @property
    def doc_count(self) -> int:
        return len(self.lengths)

    @property
    def nbytes(self) -> int:
        arrays = (self.offsets, self.docs, self.tf, self.lengths)
        return sum(int(a.nbytes) for a in arrays) + 100 * len(self.vocabulary)

    def doc_freq(self, term: str) -> int:
        index = self.vocabulary.get(term)
        return 0 if index is None else int(self.offsets[index + 1] - self.offsets[index])

    def scores(self, idf: dict[str, float], average_length: float) -> npt.NDArray[np.float32]:
        """BM25 of every document for terms weighted by ``idf`` (0 where none occurs)."""
        total = np.zeros(self.doc_count, np.float32)
        for term, weight in idf.items():
            index = self.vocabulary.get(term)
            if index is None:
                continue
            start, end = int(self.offsets[index]), int(self.offsets[index + 1])
            docs, tf = self.docs[start:end], self.tf[start:end]
            norm = K1 * (1 - B + B * self.lengths[docs] / max(average_length, 1.0))
            total[docs] += weight * tf * (K1 + 1) / (tf + norm)
        return total


def bm25_idf(indexes: Sequence[KeywordIndex], queries: Sequence[str]) -> tuple[dict[str, float], float]:
    """The queries' terms weighted over several segments as one collection, and its average length."""
    documents = sum(index.doc_count for index in indexes)
    length = sum(float(index.lengths.sum()) for index in indexes)
    idf = {}
    for term in dict.fromkeys(t for query in queries for t in query_terms(query)):
        df = sum(index.doc_freq(term) for index in indexes)
        if df:
            idf[term] = math.log(1 + (documents - df + 0.5) / (df + 0.5))
    return idf, length / max(1, documents)
