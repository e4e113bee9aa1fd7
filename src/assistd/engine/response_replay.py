"""Background responses: answered at once, and their streams resumed (``GET /v1/responses/{id}?stream=true``).

A background response is an ordinary response whose create does not wait: its run is queued, executed by a
worker as every run is, and survives restarts as every run does (the run queue's leases). Nothing here
executes anything.

A resumed stream is the response's stream made again from the start: its run's events, read from the run's
event log from the first one on (``Engine.resume`` after seq 0), go through the same translation as the
original stream (``api/response_stream.py``). The translation is a function of those events in their order,
so every response event gets the same ``sequence_number`` in the original stream and in each replay; the
caller drops those at or before ``starting_after``. This holds while the log holds the run's first event:
the database's log until ``run_events_retention_seconds`` after the run ended; on SQLite with one process,
the memory bus's, which a restart loses. ``ReplayTurn.whole`` says whether it did.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from ..errors import InvalidRequestError
from ..protocol.responses import Response
from ..store import responses as store
from ..store import runs as run_store
from .engine import Engine
from .events import StreamEvent
from .responses import Responses, ResponseTurn
from .turns import Turn

__all__ = ["ReplayTurn", "answer_queued", "replay"]

# The run's first event: a log that starts with it is whole.
_FIRST = "thread.run.created"


class ReplayTurn(Turn):
    """A response's run followed again from its first logged event, live once the log is read, until the run
    ends (or the turn's time is up)."""

    # None until the first event is seen; then whether the log began at the run's start.
    whole: bool | None = None

    def _source(self) -> AsyncIterator[StreamEvent]:
        # ``Engine.resume``, not the subscription ``Turn`` follows: a run whose log is gone still ends the
        # stream, with its final status read from the run.
        return self._engine.resume(self._tenant, self.thread_id, self.run.id, 0)

    async def events(self) -> AsyncIterator[StreamEvent]:
        async for event in super().events():
            if self.whole is None:
                self.whole = event.event == _FIRST
            yield event


async def answer_queued(responses: Responses, created: ResponseTurn) -> Response:
    """A background response as it stands just after its create (queued, or in progress): not waited for."""
    created.turn.close()
    return await responses.read(created.row)


async def replay(engine: Engine, tenant: str, response_id: str) -> ResponseTurn:
    """The stored background response ``response_id`` with a turn that replays its run from the start.

    Only a background response's stream can be resumed, as on OpenAI: another one is a 400 naming ``stream``
    (a response not stored is a 404: it has no record).
    """
    async with engine.db.read() as session:
        row = await store.get_row(session, tenant, response_id)
        if not row.request.get("background", False):
            raise InvalidRequestError(
                "Only background responses can be streamed again: create the response with "
                "'background': true to resume its stream.",
                param="stream",
            )
        run = run_store.to_wire(await run_store.get_row(session, tenant, row.thread_id, row.run_id))
    # The subscription is never attached: ``ReplayTurn`` reads through ``Engine.resume``.
    turn = ReplayTurn(engine, tenant, run, engine.bus.subscription(), engine.settings.response_wait_seconds)
    return ResponseTurn(row, turn, own_thread=False)
