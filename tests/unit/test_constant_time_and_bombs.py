"""Security properties of pure functions: keys compared in constant time, archives unpacked within bounds.

The end-to-end side (logs, CORS, file names, SSRF, headers, bombs through the server) is in
tests/e2e/test_security.py.
"""

from __future__ import annotations

import hashlib
import hmac
import resource
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

_TESTS_DIR = str(Path(__file__).resolve().parents[1])
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from assistd.api.auth import KeyRing  # noqa: E402
from assistd.errors import AuthenticationError  # noqa: E402
from assistd.retrieval.parsing import MAX_UNPACKED_BYTES, ParseError, extract_text  # noqa: E402
from samples_files import docx_bomb, lying_docx, pdf_bomb  # noqa: E402

KEYS = [f"sk-ring-{n}-" + "x" * 40 for n in range(5)]


class CountingCompare:
    """Stands in for ``hmac.compare_digest``, recording what it was given and deferring to the real one."""

    def __init__(self, real: Callable[[bytes, bytes], bool], *, verdict: bool | None = None) -> None:
        self.real = real
        self.verdict = verdict
        self.calls: list[tuple[bytes, bytes]] = []

    def __call__(self, a: bytes, b: bytes) -> bool:
        self.calls.append((a, b))
        return self.real(a, b) if self.verdict is None else self.verdict


def _present(ring: KeyRing, key: str) -> str | None:
    try:
        return ring.identify(f"Bearer {key}").tenant
    except AuthenticationError:
        return None


def test_keys_are_compared_by_digest_against_every_key(monkeypatch: pytest.MonkeyPatch) -> None:
    ring = KeyRing(KEYS)
    digests = {hashlib.sha256(key.encode()).digest() for key in KEYS}
    presented = [
        KEYS[0],  # the first key: an early exit would stop here
        KEYS[-1],  # the last
        KEYS[2][:-1] + "y",  # all but the last character right
        KEYS[2][:8],  # a prefix
        "z",  # nothing alike, short
        "q" * 10_000,  # nothing alike, long
        KEYS[3] + "extra",  # a right key with more after it
    ]
    counts = []
    for key in presented:
        compare = CountingCompare(hmac.compare_digest)
        monkeypatch.setattr(hmac, "compare_digest", compare)
        tenant = _present(ring, key)
        assert (tenant is not None) == (key in KEYS), key[:20]
        counts.append(len(compare.calls))
        for configured, offered in compare.calls:
            # Equal-length digests: how much of the key matches, or how long it is, changes nothing
            # about the work, and the key itself never reaches a comparison.
            assert configured in digests
            assert offered == hashlib.sha256(key.encode()).digest()
            assert len(configured) == len(offered) == 32
    # One comparison per configured key, whichever key is presented and however close it comes.
    assert counts == [len(KEYS)] * len(presented)


def test_compare_digest_is_what_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    ring = KeyRing(KEYS)
    monkeypatch.setattr(hmac, "compare_digest", CountingCompare(hmac.compare_digest, verdict=False))
    # No other equality test lets the right key in behind compare_digest's back...
    assert _present(ring, KEYS[1]) is None
    monkeypatch.setattr(hmac, "compare_digest", CountingCompare(hmac.compare_digest, verdict=True))
    # ...nor keeps a wrong one out.
    assert _present(ring, "sk-wrong") is not None


@pytest.mark.parametrize(("name", "make"), [("bomb.pdf", pdf_bomb), ("bomb.docx", docx_bomb)])
def test_decompression_bombs_are_refused_within_bounds(
    tmp_path: Path, name: str, make: Callable[[int], bytes]
) -> None:
    unpacked = 2 * 1024**3  # 2 GiB once inflated
    path = tmp_path / name
    path.write_bytes(make(unpacked))
    assert path.stat().st_size < unpacked // 200  # a real bomb: a ratio of hundreds to one
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with pytest.raises(ParseError) as info:
        extract_text(path, name)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert "decompression bomb" in str(info.value)
    assert f"{MAX_UNPACKED_BYTES // (1024 * 1024)} MB" in str(info.value)
    # Peak memory grew by at most the bound and some parsing overhead, not by the inflated size.
    assert after - before < MAX_UNPACKED_BYTES + 200 * 1024**2


def test_a_docx_that_understates_its_size_is_read_within_bounds(tmp_path: Path) -> None:
    # Its headers declare 4 KiB (with the checksum of those 4 KiB) for a part that inflates to 1 GiB:
    # checking the declared sizes passes it, and zipfile, asked for the whole part, inflates all of it
    # before cutting it short. Read a chunk at a time, only the declared 4 KiB are ever unpacked.
    path = tmp_path / "lying.docx"
    path.write_bytes(lying_docx(1024**3))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with pytest.raises(ParseError) as info:
        extract_text(path, "lying.docx")
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert "damaged" in str(info.value)  # cut at 4 KiB, its XML ends mid-element
    assert after - before < 200 * 1024**2


@pytest.mark.parametrize(("name", "make"), [("small.pdf", pdf_bomb), ("small.docx", docx_bomb)])
def test_the_same_files_small_enough_still_parse(
    tmp_path: Path, name: str, make: Callable[[int], bytes]
) -> None:
    path = tmp_path / name
    path.write_bytes(make(1024 * 1024))
    assert extract_text(path, name).strip() in {"An ordinary first page.", "A paragraph before the padding."}
