"""Attribute filters and the fusion of dense and keyword scores."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from assistd.protocol.vector_stores import CompoundFilter
from assistd.retrieval.filters import matches
from assistd.retrieval.index import Segment, build_segment, fuse
from assistd.retrieval.keyword import KeywordIndex, bm25_idf, query_terms

ATTRS: dict[str, Any] = {"lang": "en", "year": 2024, "draft": False}


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"type": "eq", "key": "lang", "value": "en"}, True),
        ({"type": "ne", "key": "lang", "value": "en"}, False),
        ({"type": "gt", "key": "year", "value": 2023}, True),
        ({"type": "lte", "key": "year", "value": 2023}, False),
        ({"type": "in", "key": "lang", "value": ["fr", "en"]}, True),
        ({"type": "nin", "key": "lang", "value": ["fr", "en"]}, False),
        ({"type": "eq", "key": "draft", "value": False}, True),
        ({"type": "gt", "key": "lang", "value": 3}, False),  # no ordering across kinds
        ({"type": "eq", "key": "missing", "value": "x"}, False),
        ({"type": "ne", "key": "missing", "value": "x"}, True),
    ],
)
def test_comparisons(rule: dict[str, Any], expected: bool) -> None:
    compound = CompoundFilter.model_validate({"type": "and", "filters": [rule]})
    assert matches(compound.filters[0], ATTRS) is expected


def test_compound_filters_nest() -> None:
    rule = CompoundFilter.model_validate(
        {
            "type": "or",
            "filters": [
                {"type": "eq", "key": "lang", "value": "fr"},
                {
                    "type": "and",
                    "filters": [
                        {"type": "gte", "key": "year", "value": 2024},
                        {"type": "eq", "key": "draft", "value": False},
                    ],
                },
            ],
        }
    )
    assert matches(rule, ATTRS)
    assert not matches(rule, {**ATTRS, "draft": True})


def test_fusion_weighs_dense_above_keyword() -> None:
    dense = {1: 0.8, 2: 0.5}
    keyword = {2: 10.0, 3: 5.0}
    fused = fuse(dense, keyword, keyword_weight=0.3)
    assert fused[1] == pytest.approx(0.7 * 0.8)
    assert fused[2] == pytest.approx(0.7 * 0.5 + 0.3 * 1.0)
    assert fused[3] == pytest.approx(0.3 * 0.5)
    assert all(0 <= score <= 1 for score in fused.values())


def test_query_terms_are_stemmed_without_stopwords_but_never_empty() -> None:
    assert query_terms("How do I convert strings to numbers?") == ["convert", "string", "number"]
    assert query_terms("Who is it?") == ["who", "is", "it"]
    assert query_terms("***") == []


def test_bm25_prefers_rare_terms_and_shorter_documents() -> None:
    index = KeywordIndex.build(
        [
            "the parrot sat on the fence",
            "a fence, a fence, another fence and a gate",
            "parrots and fences in a long text about many other garden things and more things",
            "nothing relevant here",
        ]
    )
    scores = index.scores(*bm25_idf([index], ["parrot fence"]))
    assert scores[3] == 0
    # Both terms beat one term, however often that one occurs; a longer document scores lower.
    assert scores[0] > scores[1] and scores[0] > scores[2]
    assert scores[2] > 0 and scores[1] > 0
    assert index.scores(*bm25_idf([index], ["unknown words"])).max() == 0


def test_segments_rank_as_one_index() -> None:
    texts = [
        f"chunk {i} about {'herons' if i % 3 else 'walruses'} and tide number {i % 7}" for i in range(60)
    ]
    whole = KeywordIndex.build(texts)
    parts = [KeywordIndex.build(texts[:25]), KeywordIndex.build(texts[25:])]
    query = ["walrus tide 3"]
    expected = whole.scores(*bm25_idf([whole], query))
    idf, average = bm25_idf(parts, query)
    joined = np.concatenate([part.scores(idf, average) for part in parts])
    assert np.allclose(joined, expected, atol=1e-5)


def test_clustered_segment_finds_what_an_exhaustive_scan_finds() -> None:
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((60, 32)).astype(np.float32)
    points = centres[rng.integers(0, 60, 30_000)] + 0.3 * rng.standard_normal((30_000, 32)).astype(np.float32)
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    rows = [(i + 1, f"file-{i % 5}", points[i].tobytes(), "text") for i in range(len(points))]
    clustered = build_segment(rows, 32)
    assert clustered.clusters is not None
    exhaustive = Segment(
        clustered.pks,
        clustered.file_codes,
        clustered.file_ids,
        clustered.matrix,
        clustered.keywords,
        clustered.texts,
    )
    allowed = clustered.allowed(None)
    found = total = 0
    for i in range(40):
        query = points[i * 700][None] + 0.1 * rng.standard_normal((1, 32)).astype(np.float32)
        query /= np.linalg.norm(query)
        near = {int(clustered.pks[r]) for r, _ in clustered.dense(query, allowed, 10)}
        truth = {int(exhaustive.pks[r]) for r, _ in exhaustive.dense(query, allowed, 10)}
        found, total = found + len(near & truth), total + len(truth)
    assert found / total > 0.9
    only = clustered.allowed({"file-2"})
    assert all(
        clustered.file_ids[clustered.file_codes[r]] == "file-2" for r, _ in clustered.dense(query, only, 10)
    )
