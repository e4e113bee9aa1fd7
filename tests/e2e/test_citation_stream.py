"""Citations as the official SDKs' stream helpers see them: a reply that cites searched files and links
files its code wrote, streamed through ``runs.stream`` (Python and Node), accumulates without an error
into exactly the stored message, and OpenAI's documented footnote code keeps every sentence of it."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from openai import AssistantEventHandler, OpenAI
from openai.types.beta import AssistantStreamEvent
from openai.types.beta.threads import Message, TextContentBlock
from typing_extensions import override

from fake_upstream import Dynamic, FakeUpstream, Text, ToolCalls
from server import KEYS, AssistdServer

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
DOCUMENTS = {
    "kestrel.md": "Project Kestrel briefing.\n\nThe launch code for Project Kestrel is 4471.",
    "orchard.md": "Apples ripen in September. The orchard has forty trees and a cider press.",
}
CODE = (
    "open('/mnt/data/table.csv', 'w').write('trees,code\\n40,4471\\n')\n"
    "open('/mnt/data/notes.txt', 'w').write('Kestrel and the orchard.')"
)
TABLE, NOTES = "sandbox:/mnt/data/table.csv", "sandbox:/mnt/data/notes.txt"


def _setup(client: OpenAI) -> tuple[str, str, dict[str, str]]:
    """An assistant with both tools over a store of ``DOCUMENTS``, a thread asking, and the files: ids."""
    store = client.vector_stores.create(name="citations")
    files = {}
    for name, text in DOCUMENTS.items():
        done = client.vector_stores.files.upload_and_poll(
            vector_store_id=store.id, file=(name, io.BytesIO(text.encode())), poll_interval_ms=50
        )
        assert done.status == "completed"
        files[name] = done.id
    assistant = client.beta.assistants.create(
        model="fake-model",
        tools=[{"type": "file_search"}, {"type": "code_interpreter"}],
        tool_resources={"file_search": {"vector_store_ids": [store.id]}},
    )
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": "Launch code and trees, as a table and notes?"}]
    )
    return assistant.id, thread.id, files


def _numbers(body: dict[str, Any]) -> dict[str, int]:
    """The number under which the search showed the model each file's passage."""
    shown = "\n".join(str(m.get("content") or "") for m in body["messages"] if m.get("role") == "tool")
    numbers = {name: re.search(rf"\[(\d+)\] {re.escape(name)}\n", shown) for name in DOCUMENTS}
    assert all(numbers.values()), shown
    return {name: int(found.group(1)) for name, found in numbers.items() if found is not None}


def _answer(body: dict[str, Any]) -> Text:
    n = _numbers(body)
    reply = (
        f"The launch code is 4471 [{n['kestrel.md']}]. The orchard has forty trees "
        f"[{n['orchard.md']}, {n['kestrel.md']}]. Get [the table]({TABLE}) and [the notes]({NOTES})."
    )
    # Three-character pieces split the markers and the links across stream chunks.
    return Text(reply, chunks=[reply[i : i + 3] for i in range(0, len(reply), 3)])


def _script(fake: FakeUpstream) -> None:
    fake.push(
        ToolCalls([("file_search", {"queries": ["launch code", "orchard trees"]})]),
        ToolCalls([("code_interpreter", {"code": CODE})]),
        Dynamic(_answer),
    )


def _marker(name: str, number: int) -> str:
    # The run's first search is search 0; a passage's place in its results is its number less one.
    return f"【0:{number - 1}†{name}】"


def _without_indexes(message: dict[str, Any]) -> dict[str, Any]:
    """A message with the ``index`` keys that the SDKs keep from the deltas they merged removed."""
    content = []
    for part in message["content"]:
        part = {k: v for k, v in part.items() if k != "index"}
        if part["type"] == "text":
            annotations = [{k: v for k, v in a.items() if k != "index"} for a in part["text"]["annotations"]]
            part["text"] = {**part["text"], "annotations": annotations}
        content.append(part)
    return {**message, "content": content}


def _check_stored(client: OpenAI, fake: FakeUpstream, stored: Message, ids: dict[str, str]) -> None:
    """The stored reply: markers where the model cited, a file link per written file, each annotation
    pointing at exactly its text, and OpenAI's documented footnote loop keeping every sentence."""
    n = _numbers(fake.requests[-1])
    kestrel, orchard = _marker("kestrel.md", n["kestrel.md"]), _marker("orchard.md", n["orchard.md"])
    assert kestrel != orchard
    block = stored.content[0]
    assert isinstance(block, TextContentBlock)
    text = block.text
    assert text.value == (
        f"The launch code is 4471{kestrel}. The orchard has forty trees{orchard}{kestrel}. "
        f"Get [the table]({TABLE}) and [the notes]({NOTES})."
    )
    kinds = [a.type for a in text.annotations]
    assert kinds == ["file_citation"] * 3 + ["file_path"] * 2
    assert [a.text for a in text.annotations] == [kestrel, orchard, kestrel, TABLE, NOTES]
    for annotation in text.annotations:
        assert text.value[annotation.start_index : annotation.end_index] == annotation.text
    cited = [a.file_citation.file_id for a in text.annotations if a.type == "file_citation"]
    assert cited == [ids["kestrel.md"], ids["orchard.md"], ids["kestrel.md"]]
    quotes = [a.model_dump()["file_citation"]["quote"] for a in text.annotations if a.type == "file_citation"]
    assert "4471" in quotes[0] and "forty trees" in quotes[1]
    written = [a.file_path.file_id for a in text.annotations if a.type == "file_path"]
    assert [client.files.content(f).read() for f in written] == [
        b"trees,code\n40,4471\n",
        b"Kestrel and the orchard.",
    ]

    # OpenAI's documented client code, verbatim in substance.
    value = text.value
    footnotes = []
    for index, annotation in enumerate(text.annotations):
        value = value.replace(annotation.text, f"[{index}]")
        if annotation.type == "file_citation":
            footnotes.append(f"[{index}] {client.files.retrieve(annotation.file_citation.file_id).filename}")
    assert value == (
        "The launch code is 4471[0]. The orchard has forty trees[1][0]. "
        "Get [the table]([3]) and [the notes]([4])."
    )
    assert footnotes == ["[0] kestrel.md", "[1] orchard.md", "[2] kestrel.md"]


class _Recorder(AssistantEventHandler):
    """Keeps what the SDK accumulated from the deltas when each message completes, and every delta
    annotation as sent."""

    def __init__(self) -> None:
        super().__init__()
        self.accumulated: list[dict[str, Any]] = []
        self.delta_annotations: list[dict[str, Any]] = []

    @override
    def on_event(self, event: AssistantStreamEvent) -> None:
        # on_event comes before the SDK takes the event in: at completion the snapshot is still the one
        # merged from the deltas, which the completed message then replaces.
        if event.event == "thread.message.completed" and self.current_message_snapshot is not None:
            self.accumulated.append(self.current_message_snapshot.model_dump())
        if event.event == "thread.message.delta":
            for part in event.data.delta.content or []:
                if part.type == "text" and part.text is not None:
                    self.delta_annotations += [a.model_dump() for a in part.text.annotations or []]


def _check_deltas(delta_annotations: list[dict[str, Any]], stored: Message) -> None:
    """Every delta annotation names its index, and index i is the stored annotation i."""
    block = stored.content[0]
    assert isinstance(block, TextContentBlock)
    stored_annotations = [a.model_dump() for a in block.text.annotations]
    assert sorted(a["index"] for a in delta_annotations) == list(range(len(stored_annotations)))
    for sent in delta_annotations:
        expected = stored_annotations[sent["index"]]
        assert {k: v for k, v in sent.items() if k != "index" and v is not None} == {
            k: v for k, v in expected.items() if v is not None
        }


def test_python_stream_helper_accumulates_the_stored_message(client: OpenAI, fake: FakeUpstream) -> None:
    assistant_id, thread_id, files = _setup(client)
    _script(fake)
    recorder = _Recorder()
    with client.beta.threads.runs.stream(
        thread_id=thread_id, assistant_id=assistant_id, event_handler=recorder
    ) as stream:
        stream.until_done()
        final = stream.get_final_messages()
        run = stream.current_run
    assert run is not None and run.status == "completed", run and run.last_error

    [message] = final
    stored = client.beta.threads.messages.retrieve(message.id, thread_id=thread_id)
    _check_stored(client, fake, stored, files)
    assert message.model_dump() == stored.model_dump()
    [accumulated] = recorder.accumulated
    assert _without_indexes(accumulated)["content"] == stored.model_dump()["content"]
    _check_deltas(recorder.delta_annotations, stored)


@pytest.fixture(scope="module")
def node_citations() -> list[str]:
    """The command running ``tests/node/citations.mjs``, after ``npm ci`` when ``node_modules`` is missing."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("the Node SDK check needs Node.js 20+ and npm on PATH")
    if not (NODE_DIR / "node_modules" / "openai" / "package.json").exists():
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
    return [node, str(NODE_DIR / "citations.mjs")]


def test_node_stream_helper_accumulates_the_stored_message(
    node_citations: list[str], client: OpenAI, fake: FakeUpstream, server: AssistdServer
) -> None:
    assistant_id, thread_id, files = _setup(client)
    _script(fake)
    env = {
        **os.environ,
        "ASSISTD_BASE_URL": server.base_url,
        "ASSISTD_API_KEY": KEYS[0],
        "THREAD_ID": thread_id,
        "ASSISTANT_ID": assistant_id,
    }
    done = subprocess.run(node_citations, cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=120)
    lines = done.stdout.strip().splitlines()
    assert lines, f"citations.mjs printed nothing (rc={done.returncode}):\n{done.stderr}"
    summary: dict[str, Any] = json.loads(lines[-1])
    assert done.returncode == 0 and summary["ok"], f"{json.dumps(summary, indent=2)}\n{done.stderr}"
    assert summary["run_status"] == "completed"

    [accumulated] = summary["final_messages"]
    stored = client.beta.threads.messages.retrieve(accumulated["id"], thread_id=thread_id)
    _check_stored(client, fake, stored, files)
    # finalMessages() is what the SDK merged from the deltas; messageDone carries the completed message.
    assert _without_indexes(accumulated)["content"] == stored.model_dump()["content"]
    [completed] = summary["done_messages"]
    assert Message.model_validate(completed).model_dump() == stored.model_dump()
    _check_deltas(summary["delta_annotations"], stored)


def test_terminal_chat_shows_markers_as_footnotes(
    client: OpenAI, fake: FakeUpstream, server: AssistdServer, tmp_path: Path
) -> None:
    assistant_id, _, _ = _setup(client)
    _script(fake)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASSISTD_", "OPENAI_"))}
    chat = [sys.executable, "-m", "assistd", "chat", "--url", server.base_url, "--key", KEYS[0]]
    done = subprocess.run(
        [*chat, "--assistant", assistant_id],
        input="Launch code and trees?\n/exit\n",
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    # Piped, stdout is the reply alone: each cited passage numbered once, its file listed after.
    assert done.stdout == (
        "The launch code is 4471[1]. The orchard has forty trees[2][1]. "
        f"Get [the table]({TABLE}) and [the notes]({NOTES}).\n"
        "[1] kestrel.md\n[2] orchard.md\n"
    )
