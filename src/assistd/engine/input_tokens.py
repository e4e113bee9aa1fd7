"""``POST /v1/responses/input_tokens``: the input tokens a response's request would send, not sending it.

The count is of the very prompt a create would build: the response's run is prepared as ``create`` prepares
it (its thread, the conversation's or previous response's context, the input as messages, a prompt's
assistant) in a write transaction that is rolled back, and the engine's own context building
(``context.build``) makes the request the model would get. Nothing of it is kept. An MCP server's tools
are counted where the chain, the conversation or the input's history has listed them already; a server
not listed yet is not contacted for a count, and its tools are not counted.
"""

from __future__ import annotations

from ..llm.types import ChatRequest
from ..protocol.responses import InputTokenCount, InputTokenCountParams
from . import context
from .engine import Engine
from .response_mcp import listed_functions
from .responses import Responses, parse_input

__all__ = ["count_input_tokens"]


class _Discard(Exception):
    """Leaves the transaction that prepared the run, rolling it back, with the request it built."""

    def __init__(self, request: ChatRequest) -> None:
        super().__init__()
        self.request = request


async def count_input_tokens(engine: Engine, tenant: str, params: InputTokenCountParams) -> InputTokenCount:
    """The input tokens of the response ``params`` would create, with the model's tokenizer where its
    provider has one (local models), else estimated as a run's prompt is."""
    parsed = parse_input(params)
    try:
        async with engine.db.write() as session:
            prepared = await Responses(engine).prepare(session, tenant, params, parsed, stored=True)
            # An MCP server's tools count where the thread (or the input's history) lists them already:
            # the servers are not contacted for a count.
            functions = await listed_functions(session, prepared.run)
            built = await context.build(
                session, prepared.run, engine.providers, fresh=True, extra_functions=functions
            )
            raise _Discard(built.request)
    except _Discard as discarded:
        request = discarded.request
    return InputTokenCount(input_tokens=await context.count_prompt(request, engine.providers))
