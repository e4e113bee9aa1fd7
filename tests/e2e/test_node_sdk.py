"""The official ``openai`` npm package, used as a browser front end uses it, against assistd.

``tests/node/check.mjs`` does the work (create/update/list assistants, a titled thread, a message, a
run polled to completion, the transcript, a 401); this test installs it, runs it and checks its
JSON summary against what the fake upstream was scripted to say.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from fake_upstream import FakeUpstream, Text
from server import KEYS, AssistdServer

NODE_DIR = Path(__file__).resolve().parents[1] / "node"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is not on PATH: the Node SDK check needs Node.js 20+ and npm")
    return path


@pytest.fixture(scope="module")
def node_check() -> list[str]:
    """The command that runs the check, after ``npm ci`` when ``node_modules`` is missing."""
    node = _tool("node")
    if not (NODE_DIR / "node_modules" / "openai" / "package.json").exists():
        npm = _tool("npm")
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
    return [node, str(NODE_DIR / "check.mjs")]


def _run_check(command: list[str], server: AssistdServer, key: str, message: str) -> dict[str, Any]:
    env = {
        **os.environ,
        "ASSISTD_BASE_URL": server.base_url,
        "ASSISTD_API_KEY": key,
        "CHECK_MESSAGE": message,
        "CHECK_POLL_SECONDS": "30",
    }
    done = subprocess.run(command, cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=120)
    lines = done.stdout.strip().splitlines()
    assert lines, f"check.mjs printed nothing (rc={done.returncode}):\n{done.stderr}"
    summary: dict[str, Any] = json.loads(lines[-1])
    assert done.returncode == 0, f"check.mjs failed: {json.dumps(summary, indent=2)}\n{done.stderr}"
    return summary


def test_node_sdk_front_end_flow(node_check: list[str], server: AssistdServer, fake: FakeUpstream) -> None:
    reply = "Bonjour from the scripted upstream, via Node."
    fake.push(Text(reply, chunks=["Bonjour ", "from the scripted ", "upstream, via Node."]))
    message = "Say hello in French, please."

    summary = _run_check(node_check, server, KEYS[0], message)

    assert summary["ok"] is True
    assert (
        summary["sdk_version"]
        == json.loads((NODE_DIR / "package.json").read_text())["dependencies"]["openai"]
    )
    assert summary["steps"] == [
        "assistants.create",
        "assistants.update",
        "assistants.list",
        "assistants.delete",
        "threads.create",
        "threads.retrieve",
        "messages.create",
        "runs.create",
        "runs.retrieve",
        "messages.list",
        "auth.401",
    ]
    assistant = summary["assistant"]
    assert assistant["id"].startswith("asst_")
    assert assistant["name"].startswith("node-check-")
    assert assistant["instructions"] == "Answer very briefly."
    assert assistant["metadata"] == {"source": "node-sdk-check"}
    # Found on the second page of a limit=2 newest-first listing: the SDK followed the cursor.
    assert assistant["listed_before_found"] >= 3
    assert summary["thread"]["title"] == f"Chat {assistant['name']}"

    run = summary["run"]
    assert run["initial_status"] in ("queued", "in_progress")
    assert run["status"] == "completed", run
    assert run["statuses"][-1] == "completed"
    assert set(run["statuses"]) <= {"queued", "in_progress", "completed"}
    assert run["thread_id"] == summary["thread"]["id"]
    assert run["assistant_id"] == assistant["id"]
    assert run["last_error"] is None
    assert run["usage"]["total_tokens"] == run["usage"]["prompt_tokens"] + run["usage"]["completion_tokens"]

    assert [(m["role"], m["text"], m["status"]) for m in summary["messages"]] == [
        ("user", message, "completed"),
        ("assistant", reply, "completed"),
    ]
    assert summary["messages"][1]["run_id"] == run["id"]
    assert summary["reply"] == reply

    auth = summary["auth_error"]
    assert auth["status"] == 401
    assert auth["is_authentication_error"] is True
    assert auth["type"] == "invalid_request_error"

    # The upstream saw one chat request for this run, carrying the assistant's instructions and the message.
    [request] = [r for r in fake.requests if message in json.dumps(r["messages"])]
    assert request["model"] == "fake-model"
    texts = [m["content"] for m in request["messages"]]
    assert any(isinstance(t, str) and "Answer very briefly." in t for t in texts), texts
    assert request["messages"][-1]["role"] == "user"
    assert message in json.dumps(request["messages"][-1]["content"])
