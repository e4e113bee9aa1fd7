from __future__ import annotations

import time


def now() -> int:
    """Unix seconds, as OpenAI's ``*_at`` fields carry them."""
    return int(time.time())
