"""What the tests that drive OpenAI's Agents SDK against assistd share: ``on_assistd`` runs an SDK call with
its default client pointed at a server. The ``agents_defaults`` fixture (``conftest.py``) puts the SDK's
global state back after each such test."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from openai import AsyncOpenAI

from server import KEYS, AssistdServer

T = TypeVar("T")


def on_assistd(server: AssistdServer, body: Callable[[], Awaitable[T]]) -> T:
    """``body`` run with the Agents SDK's default client pointed at ``server`` (made and closed in the
    loop that uses it), tracing off."""
    from agents import set_default_openai_client, set_tracing_disabled

    async def run() -> T:
        async with AsyncOpenAI(
            base_url=server.base_url, api_key=KEYS[0], max_retries=0, timeout=120
        ) as client:
            set_default_openai_client(client, use_for_tracing=False)
            set_tracing_disabled(True)
            return await body()

    return asyncio.run(run())
