"""Several specialised assistants taking turns on one thread: the agentic workflow, made small.

A researcher answers from a knowledge base (``file_search`` over a vector store made from a document
this script writes), then a writer turns the researcher's findings into a short piece. Both work on the
same thread, so each sees what the other said; each run names its own assistant (``assistant_id``)
and tells it, through ``additional_instructions``, who it is in the team and what this turn is for.
``Team`` holds that bookkeeping: ``team.ask(role, text)`` is one turn.

Run a server (``make run``), then ``.venv/bin/python examples/multi_assistant.py``.

Environment: ``OPENAI_BASE_URL`` (default ``http://127.0.0.1:8000/v1``), ``OPENAI_API_KEY`` (any key
when the server has no ``ASSISTD_API_KEYS``), ``OPENAI_MODEL`` (default: the first model the server
lists).
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from openai import OpenAI
from openai.types.beta import AssistantToolParam
from openai.types.beta.assistant_create_params import ToolResources
from openai.types.beta.threads import Message

# The SDK marks the Assistants API deprecated because OpenAI's hosted one is gone; assistd serves it.
warnings.filterwarnings("ignore", category=DeprecationWarning)

GUIDE_NAME = "lighthouse_guide.md"
GUIDE = """# Grey Point Lighthouse: visitor guide

Grey Point Lighthouse was first lit on 14 March 1874. The tower is 32 metres tall and has 147 steps.
Its lamp, now an LED array, is visible 21 nautical miles out to sea and flashes white twice every
ten seconds.

The keeper's cottage became a small museum in 1998. It opens from April to October, Wednesday to
Sunday, 10:00 to 16:00. Tickets cost 6 euros; children under twelve go free.

Each September the lighthouse hosts a night climb: visitors walk up by lantern light and watch the
beam sweep the bay from the gallery.
"""


@dataclass
class Turn:
    role: str
    request: str
    reply: str
    searches: list[str] = field(default_factory=list)


class Team:
    """Assistants that share one thread; each ``ask`` is one run by the named member."""

    def __init__(self, client: OpenAI, model: str) -> None:
        self.client = client
        self.model = model
        self.members: dict[str, str] = {}  # role -> assistant id
        self.thread_id = client.beta.threads.create(metadata={"title": "team work"}).id
        self.turns: list[Turn] = []

    def hire(
        self,
        role: str,
        instructions: str,
        tools: Iterable[AssistantToolParam] = (),
        tool_resources: ToolResources | None = None,
    ) -> None:
        assistant = self.client.beta.assistants.create(
            name=role,
            model=self.model,
            instructions=instructions,
            tools=list(tools),
            tool_resources=tool_resources,
            metadata={"team_role": role},
        )
        self.members[role] = assistant.id

    def ask(self, role: str, text: str, extra: str | None = None) -> str:
        """Add ``text`` as the user's message and let ``role`` answer it on the shared thread."""
        teammates = ", ".join(r for r in self.members if r != role) or "nobody"
        context = (
            f"You are the {role} of a team sharing this conversation with: {teammates}. "
            "Earlier assistant messages may come from your teammates; build on them."
        )
        self.client.beta.threads.messages.create(thread_id=self.thread_id, role="user", content=text)
        run = self.client.beta.threads.runs.create_and_poll(
            thread_id=self.thread_id,
            assistant_id=self.members[role],
            additional_instructions=f"{context}\n{extra}" if extra else context,
        )
        if run.status != "completed":
            detail = run.last_error.message if run.last_error else run.status
            raise RuntimeError(f"the {role}'s run {run.id} ended {run.status}: {detail}")
        reply = "\n".join(self._texts(run.id))
        self.turns.append(Turn(role, text, reply, self._searches(run.id)))
        return reply

    def transcript(self) -> list[tuple[str, str]]:
        """Every message on the thread, oldest first, labelled with the member who wrote it."""
        roles = {assistant_id: role for role, assistant_id in self.members.items()}
        lines: list[tuple[str, str]] = []
        for message in self.client.beta.threads.messages.list(thread_id=self.thread_id, order="asc"):
            who = "user" if message.role == "user" else roles.get(message.assistant_id or "", "assistant")
            lines.append((who, _text(message)))
        return lines

    def disband(self) -> None:
        for assistant_id in self.members.values():
            self.client.beta.assistants.delete(assistant_id)
        self.client.beta.threads.delete(self.thread_id)

    def _texts(self, run_id: str) -> list[str]:
        page = self.client.beta.threads.messages.list(thread_id=self.thread_id, run_id=run_id, order="asc")
        return [_text(message) for message in page.data]

    def _searches(self, run_id: str) -> list[str]:
        """The queries of the run's file_search calls, read from its steps."""
        searches: list[str] = []
        steps = self.client.beta.threads.runs.steps.list(run_id=run_id, thread_id=self.thread_id, order="asc")
        for step in steps:
            if step.step_details.type != "tool_calls":
                continue
            for call in step.step_details.tool_calls:
                if call.type == "file_search":
                    found = len(call.file_search.results or [])
                    searches.append(f"file_search ({found} results)")
        return searches


def _text(message: Message) -> str:
    return "\n".join(part.text.value for part in message.content if part.type == "text")


def pick_model(client: OpenAI) -> str:
    """``OPENAI_MODEL`` if set, else the server's first model (the SDK requires one on create)."""
    chosen = os.environ.get("OPENAI_MODEL")
    if chosen:
        return chosen
    models = client.models.list().data
    if not models:
        sys.exit("The server lists no models: set OPENAI_MODEL.")
    return models[0].id


def build_knowledge_base(client: OpenAI, folder: Path) -> tuple[str, str]:
    """Write the guide, upload it into a new vector store; returns (vector store id, file id)."""
    path = folder / GUIDE_NAME
    path.write_text(GUIDE, encoding="utf-8")
    store = client.vector_stores.create(name="lighthouse knowledge")
    added = client.vector_stores.files.upload_and_poll(vector_store_id=store.id, file=path)
    if added.status != "completed":
        sys.exit(f"ingesting {GUIDE_NAME} ended {added.status}: {added.last_error}")
    return store.id, added.id


def main() -> int:
    client = OpenAI(
        base_url=os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1"),
        api_key=os.environ.get("OPENAI_API_KEY", "assistd-local"),
    )
    model = pick_model(client)
    with tempfile.TemporaryDirectory() as folder:
        store_id, file_id = build_knowledge_base(client, Path(folder))
    print(f"vector store {store_id} holds {GUIDE_NAME} ({file_id}); model {model}")

    team = Team(client, model)
    try:
        team.hire(
            "researcher",
            "You find facts. Always search the files before answering and report only what they say.",
            tools=[{"type": "file_search"}],
            tool_resources={"file_search": {"vector_store_ids": [store_id]}},
        )
        team.hire("writer", "You write warm, short texts for a general audience. Invent no facts.")

        team.ask("researcher", "When was Grey Point Lighthouse first lit, and when can visitors come?")
        team.ask(
            "writer",
            "Write a three-sentence invitation to the lighthouse from the researcher's findings.",
            extra="Use only facts the researcher reported.",
        )

        for turn in team.turns:
            for search in turn.searches:
                print(f"[{turn.role} used {search}]")
        print("\n--- transcript ---")
        for who, text in team.transcript():
            print(f"{who}> {text}\n")
    finally:
        team.disband()
        client.vector_stores.delete(store_id)
        client.files.delete(file_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
