"""The runnable examples under ``examples/`` run green against a live server and the scripted upstream.

Each example runs as its own process, as a user runs it, pointed at a dedicated server by
``OPENAI_BASE_URL``/``OPENAI_API_KEY``/``OPENAI_MODEL``; the test checks its exit code, what it printed,
and what reached the upstream.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Databases, start_server
from fake_upstream import FakeUpstream, Text, ToolCalls
from server import KEYS, AssistdServer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NODE_DIR = EXAMPLES / "node"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    """A private upstream, so the scripted replies go to the examples' runs and nothing else."""
    with FakeUpstream(models=["fake-model"]) as upstream:
        yield upstream


@pytest.fixture(scope="module")
def examples_server(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> Iterator[AssistdServer]:
    srv = start_server(tmp_path_factory, databases, fake)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def limited_server(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> Iterator[AssistdServer]:
    """Two requests a second after a burst of three: the Node example is sure to meet a 429."""
    srv = start_server(tmp_path_factory, databases, fake, rate_limit_per_minute="120", rate_limit_burst="3")
    yield srv
    srv.stop()


def _run(command: list[str], server: AssistdServer) -> str:
    env = {
        **os.environ,
        "OPENAI_BASE_URL": server.base_url,
        "OPENAI_API_KEY": KEYS[0],
        "OPENAI_MODEL": "fake-model",
    }
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"{command} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    assert done.stderr == "", done.stderr
    return done.stdout


def _conversation(request: dict[str, Any]) -> str:
    return json.dumps(request["messages"])


def test_quickstart(examples_server: AssistdServer, fake: FakeUpstream) -> None:
    replies = [
        "A thread is one conversation: it keeps every message.",
        "Lisbon is sunny today, 21 degrees.",
        "Threads, weather, thanks, done.",
        "Oslo is sunny too, 21 degrees.",
    ]
    fake.push(
        Text(replies[0]),
        ToolCalls([("get_weather", {"city": "Lisbon"})]),
        Text(replies[1]),
        Text(replies[2]),
        ToolCalls([("get_weather", {"city": "Oslo"})]),
        Text(replies[3], chunks=["Oslo is ", "sunny too, ", "21 degrees."]),
    )

    out = _run([sys.executable, str(EXAMPLES / "quickstart.py")], examples_server)

    for reply in replies:
        assert f"assistant> {reply}\n" in out, out
    assert out.count("[tool] get_weather(") == 2
    assert '{"city": "Lisbon"}' in out and '{"city": "Oslo"}' in out
    assert "(streamed)" in out
    assert fake.queued == 0

    requests = fake.requests
    assert len(requests) == 6
    assert all(r["model"] == "fake-model" for r in requests)
    assert [t["function"]["name"] for t in requests[0]["tools"]] == ["get_weather"]
    # The script's tool output went back to the model, in the polled run and in the streamed one.
    for after_tool in (requests[2], requests[5]):
        tool_messages = [m for m in after_tool["messages"] if m["role"] == "tool"]
        assert tool_messages and '"forecast": "sunny"' in tool_messages[-1]["content"]
    # One thread: the last turn carries the whole conversation.
    assert all(reply in _conversation(requests[5]) for reply in replies[:3])


def test_quickstart_cancels_a_run_whose_model_keeps_calling_tools(
    examples_server: AssistdServer, fake: FakeUpstream
) -> None:
    def looping() -> list[ToolCalls]:
        return [ToolCalls([("get_weather", {"city": "Lisbon"})]) for _ in range(4)]

    fake.push(*looping(), Text("Second answer."), Text("Third answer."), *looping())

    out = _run([sys.executable, str(EXAMPLES / "quickstart.py")], examples_server)

    cancelled = re.findall(r"still calling tools after 3 rounds: run run_\w+ cancelled$", out, re.MULTILINE)
    assert len(cancelled) == 2, out
    assert "assistant> Second answer.\n" in out and "assistant> Third answer.\n" in out
    assert out.count("[tool] get_weather(") == 6  # three rounds answered in each of the two looping runs
    assert fake.queued == 0 and len(fake.requests) == 10


def test_multi_assistant(examples_server: AssistdServer, fake: FakeUpstream) -> None:
    findings = (
        "Grey Point Lighthouse was first lit on 14 March 1874. The museum opens April to October, "
        "Wednesday to Sunday, 10:00 to 16:00."
    )
    invitation = "Come climb the 1874 tower of Grey Point! Open April to October. See you there."
    fake.push(
        ToolCalls([("file_search", {"queries": ["Grey Point Lighthouse first lit", "visiting hours"]})]),
        Text(findings),
        Text(invitation),
    )

    out = _run([sys.executable, str(EXAMPLES / "multi_assistant.py")], examples_server)

    used = re.findall(r"^\[(\w+) used file_search \((\d+) results\)\]$", out, re.MULTILINE)
    assert len(used) == 1 and used[0][0] == "researcher" and int(used[0][1]) >= 1, out
    transcript = out.split("--- transcript ---", 1)[1]
    roles = re.findall(r"^(user|researcher|writer|assistant)> ", transcript, re.MULTILINE)
    assert roles == ["user", "researcher", "user", "writer"], transcript
    assert f"researcher> {findings}\n" in transcript
    assert f"writer> {invitation}\n" in transcript

    searching, answering, writing = fake.requests
    # The researcher's run: file_search offered, the guide's passage returned to the model.
    assert [t["function"]["name"] for t in searching["tools"]] == ["file_search"]
    assert "You are the researcher" in _conversation(searching)
    tool_text = " ".join(str(m["content"]) for m in answering["messages"] if m["role"] == "tool")
    assert "14 March 1874" in tool_text
    # The writer's run: its own assistant (no tools, its instructions and this turn's extra ones),
    # on the same thread, so the researcher's answer reached it.
    assert not writing.get("tools")
    assert "You write warm, short texts" in _conversation(writing)
    assert "Use only facts the researcher reported." in _conversation(writing)
    assert "You write warm" not in _conversation(searching)
    assert any(m["role"] == "assistant" and findings in str(m["content"]) for m in writing["messages"])


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is not on PATH: the Node example needs Node.js 20+ and npm")
    return path


@pytest.fixture(scope="module")
def node_example() -> list[str]:
    """The command that runs the Node example, after ``npm ci`` when its packages are missing."""
    node = _tool("node")
    if not (NODE_DIR / "node_modules" / "openai" / "package.json").exists():
        done = subprocess.run(
            [_tool("npm"), "ci", "--no-audit", "--no-fund", "--prefix", str(NODE_DIR)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
    return [node, str(NODE_DIR / "index.mjs")]


def test_node_front_end(node_example: list[str], limited_server: AssistdServer, fake: FakeUpstream) -> None:
    replies = ["I am the front end demo assistant.", "Say what failed and what to do next."]
    fake.push(*replies)

    out = _run(node_example, limited_server)

    assert re.search(r'^assistant asst_\w+ "Front end demo" on fake-model$', out, re.MULTILINE), out
    assert re.search(r"^assistants: .*Front end demo", out, re.MULTILINE), out
    assert re.search(r'^thread thread_\w+ "Front end demo chat"$', out, re.MULTILINE), out
    assert len(re.findall(r"^run run_\w+: completed$", out, re.MULTILINE)) == 2, out
    chat = out.split("--- chat ---\n", 1)[1].split("------------", 1)[0]
    assert chat.splitlines() == [
        "user> Hello! Who are you?",
        f"assistant> {replies[0]}",
        "user> Give me one tip for writing clear error messages.",
        f"assistant> {replies[1]}",
    ]
    assert re.search(r"^401 handled: assistants\.list: the API key was refused \(401\)", out, re.MULTILINE)
    # The rate limit was met and waited out: every call still succeeded.
    assert re.search(r"^  \(429 on [\w.]+: rate limited, retrying in \d+s, attempt 1\)$", out, re.MULTILINE)

    first, second = fake.requests
    assert "Answer briefly and kindly." in _conversation(first)  # the updated instructions
    assert replies[0] in _conversation(second)
