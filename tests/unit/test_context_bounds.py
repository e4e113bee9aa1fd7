from __future__ import annotations

from assistd.engine.context import estimate_tokens, upper_bound_tokens


def test_upper_bound_is_above_one_token_per_byte_plus_template() -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Grüße, 世界! " * 50}]
    content_bytes = sum(len(m["content"].encode()) for m in messages)
    assert upper_bound_tokens(messages) > content_bytes + 2 * 16
    assert upper_bound_tokens(messages) > estimate_tokens(messages)
