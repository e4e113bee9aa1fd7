"""The code of a code_interpreter call, decoded from its JSON arguments while they stream in pieces."""

from __future__ import annotations

import json

import pytest

from assistd.tools.code_interpreter import CodeStream, code_of

CODES = [
    "print(6*7)",
    'for word in ["tick", "tock"]:\n\tprint(word, "\\u00e9", \'\\\\\')',
    "emoji = '\U0001f600'  # é ü \u2603",
    "",
]


@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_pieces_decode_to_the_code(code: str, size: int) -> None:
    arguments = json.dumps({"code": code})
    stream = CodeStream()
    decoded = "".join(stream.feed(arguments[i : i + size]) for i in range(0, len(arguments), size))
    assert decoded == code
    assert code_of(arguments) == code


def test_ascii_escapes_of_surrogate_pairs_split_anywhere() -> None:
    code = "x = '\U0001f600'"
    arguments = json.dumps({"code": code}, ensure_ascii=True)
    for cut in range(len(arguments)):
        stream = CodeStream()
        assert stream.feed(arguments[:cut]) + stream.feed(arguments[cut:]) == code


def test_keys_before_the_code_and_text_after_it_are_ignored() -> None:
    stream = CodeStream()
    assert stream.feed('{"lang": "python", "code": "a = 1"') == "a = 1"
    assert stream.feed(', "note": "x"}') == ""


def test_models_that_send_bare_code() -> None:
    assert code_of("print('raw')") == "print('raw')"
    assert code_of('"print(1)"') == "print(1)"
    assert code_of('{"input": "y = 2"}') == "y = 2"
