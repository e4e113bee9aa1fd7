"""``assistd chat`` run as a user runs it: a subprocess fed by a pipe or a pseudo-terminal."""

from __future__ import annotations

import contextlib
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from openai import OpenAI

from conftest import Databases
from fake_upstream import FakeUpstream, Hang, Text, ToolCalls
from server import KEYS, AssistdServer

CHAT = [sys.executable, "-m", "assistd", "chat"]
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def _env(**extra: str) -> dict[str, str]:
    """The environment without settings of ours or the SDK's, so the defaults are the ones under test."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ASSISTD_", "OPENAI_"))}
    return {**clean, **extra}


def _chat(server: AssistdServer, args: list[str], stdin: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CHAT, "--url", server.base_url, "--key", KEYS[0], *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
        cwd=cwd,
    )


def _threads_opened(stderr: str) -> list[str]:
    return re.findall(r"New thread (thread_\w+)", stderr)


def _assistant(client: OpenAI, **extra: Any) -> str:
    return client.beta.assistants.create(model="fake-model", name="Chatty", **extra).id


def test_piped_two_turns_on_one_thread(
    client: OpenAI, server: AssistdServer, fake: FakeUpstream, tmp_path: Path
) -> None:
    assistant_id = _assistant(client, instructions="Be brief.")
    fake.push("First answer.", "Second answer.")
    result = _chat(server, ["--assistant", assistant_id], "Hello there\nAnd again\n/exit\n", tmp_path)
    assert result.returncode == 0, result.stderr
    # Piped: stdout is the conversation only, no prompts or decoration.
    assert result.stdout == "First answer.\nSecond answer.\n"
    assert len(fake.requests) == 2
    assert fake.requests[1]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello there"},
        {"role": "assistant", "content": "First answer."},
        {"role": "user", "content": "And again"},
    ]
    (thread_id,) = _threads_opened(result.stderr)
    stored = client.beta.threads.messages.list(thread_id=thread_id, order="asc").data
    assert [(m.role, m.content[0].text.value) for m in stored if m.content[0].type == "text"] == [
        ("user", "Hello there"),
        ("assistant", "First answer."),
        ("user", "And again"),
        ("assistant", "Second answer."),
    ]
    assert all(m.assistant_id == assistant_id for m in stored if m.role == "assistant")


def test_new_starts_a_fresh_thread_and_end_of_input_exits(
    client: OpenAI, server: AssistdServer, fake: FakeUpstream, tmp_path: Path
) -> None:
    assistant_id = _assistant(client)
    fake.push("One.", "Two.")
    result = _chat(server, ["--assistant", assistant_id], "Before\n/new\n/help\nAfter\n", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "One.\nTwo.\n"
    assert "/new" in result.stderr and "/exit" in result.stderr  # the help text
    first, second = _threads_opened(result.stderr)
    assert first != second
    # The second thread's run saw nothing of the first.
    assert fake.requests[1]["messages"] == [{"role": "user", "content": "After"}]


def test_function_call_answered_on_stdin(
    client: OpenAI, server: AssistdServer, fake: FakeUpstream, tmp_path: Path
) -> None:
    assistant_id = _assistant(client, tools=[WEATHER_TOOL])
    fake.push(ToolCalls([("get_weather", {"city": "Paris"})]), Text("It is 22C in Paris."))
    result = _chat(server, ["--assistant", assistant_id], "Weather in Paris?\n22C\n/exit\n", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "It is 22C in Paris.\n"
    assert '[function call] get_weather({"city": "Paris"})' in result.stderr
    tool_message = fake.requests[1]["messages"][-1]
    assert tool_message["role"] == "tool" and tool_message["content"] == "22C"
    (thread_id,) = _threads_opened(result.stderr)
    assert client.beta.threads.runs.list(thread_id=thread_id).data[0].status == "completed"


def test_file_search_call_shows_a_note(
    client: OpenAI, server: AssistdServer, fake: FakeUpstream, tmp_path: Path
) -> None:
    assistant_id = _assistant(client, tools=[{"type": "file_search"}])
    fake.push(ToolCalls([("file_search", {"queries": ["anything"]})]), Text("Nothing found."))
    result = _chat(server, ["--assistant", assistant_id], "Anything?\n/exit\n", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Nothing found.\n"
    assert result.stderr.count("[searching files…]") == 1


def test_code_interpreter_call_shows_its_code_and_output(
    client: OpenAI, server: AssistdServer, fake: FakeUpstream, tmp_path: Path
) -> None:
    assistant_id = _assistant(client, tools=[{"type": "code_interpreter"}])
    fake.push(ToolCalls([("code_interpreter", {"code": "total = 6 * 7\nprint(total)"})]), Text("It is 42."))
    result = _chat(server, ["--assistant", assistant_id], "Compute it.\n/exit\n", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "It is 42.\n"
    assert "[running code…]\n[code]\n  total = 6 * 7\n  print(total)\n[output]\n  42\n" in result.stderr


def test_function_call_left_unanswered_cancels_the_run(
    client: OpenAI, server: AssistdServer, fake: FakeUpstream, tmp_path: Path
) -> None:
    assistant_id = _assistant(client, tools=[WEATHER_TOOL])
    fake.push(ToolCalls([("get_weather", {"city": "Oslo"})]))
    result = _chat(server, ["--assistant", assistant_id], "Weather in Oslo?\n", tmp_path)
    assert result.returncode == 0, result.stderr
    (thread_id,) = _threads_opened(result.stderr)
    run = client.beta.threads.runs.list(thread_id=thread_id).data[0]
    assert run.status in ("cancelling", "cancelled")


def test_resume_shows_recent_messages_and_continues_the_thread(
    client: OpenAI, server: AssistdServer, fake: FakeUpstream, tmp_path: Path
) -> None:
    assistant_id = _assistant(client)
    thread = client.beta.threads.create(
        messages=[
            {"role": "user", "content": "Earlier question"},
            {"role": "assistant", "content": "Earlier answer"},
        ]
    )
    fake.push("Later answer.")
    result = _chat(
        server, ["--assistant", assistant_id, "--thread", thread.id], "Later question\n/exit\n", tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "you: Earlier question\nChatty: Earlier answer\nLater answer.\n"
    assert _threads_opened(result.stderr) == []
    assert [m["content"] for m in fake.requests[0]["messages"]] == [
        "Earlier question",
        "Earlier answer",
        "Later question",
    ]


def test_pick_an_assistant_from_the_list(
    client: OpenAI, server: AssistdServer, fake: FakeUpstream, tmp_path: Path
) -> None:
    _assistant(client)
    newest = client.beta.assistants.create(model="fake-model-large", name="Newest")
    fake.push("Picked.")
    # "0" is out of range and asked again; the list is newest first.
    result = _chat(server, [], "0\n1\nHi\n/exit\n", tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"1. Newest  [fake-model-large]  {newest.id}" in result.stderr
    assert "Type a number from 1 to" in result.stderr
    assert result.stdout == "Picked.\n"
    assert fake.requests[0]["model"] == "fake-model-large"


def test_unknown_assistant_and_bad_key_exit_with_a_message(server: AssistdServer, tmp_path: Path) -> None:
    result = _chat(server, ["--assistant", "asst_missing"], "/exit\n", tmp_path)
    assert result.returncode == 1
    assert "404" in result.stderr and "Traceback" not in result.stderr
    result = subprocess.run(
        [*CHAT, "--assistant", "asst_x"],
        input="",
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(ASSISTD_URL=server.base_url, ASSISTD_KEY="sk-wrong"),
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "401" in result.stderr and "Traceback" not in result.stderr


def test_embedded_server_and_creating_an_assistant(
    fake: FakeUpstream, databases: Databases, tmp_path: Path
) -> None:
    fake.push("Embedded answer.")
    env = _env(
        ASSISTD_DATA_DIR=str(tmp_path),
        ASSISTD_DATABASE_URL=databases.new(),
        ASSISTD_UPSTREAM_BASE_URL=fake.base_url,
        ASSISTD_LOCAL_DEFAULT_MODEL="false",
    )
    # A fresh database has no assistants: name, model (Enter: the first listed), instructions.
    stdin = "Tester\n\nBe brief.\nHello\n/exit\n"
    result = subprocess.run(
        [*CHAT, "--embedded"],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Embedded answer.\n"
    assert "1. fake-model" in result.stderr
    assert fake.requests[0]["model"] == "fake-model"
    assert fake.requests[0]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello"},
    ]


def _read_until(fd: int, marker: str, timeout: float = 30.0) -> str:
    """What the terminal shows up to and including ``marker``."""
    seen = ""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"{marker!r} never appeared in:\n{seen}"
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        try:
            data = os.read(fd, 4096)
        except OSError:  # EIO: the other end closed
            data = b""
        assert data, f"the chat ended before {marker!r}:\n{seen}"
        seen += data.decode(errors="replace")
    return seen


def _exit_status(process: subprocess.Popen[bytes], fd: int, within: float) -> int:
    """The chat's exit status once it exits; if it is still running after ``within`` seconds, the test
    fails with the stacks of its threads (dumped by faulthandler on SIGABRT) and what the terminal showed."""
    try:
        return process.wait(timeout=within)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)
        process.wait(timeout=10)
        shown = b""
        while select.select([fd], [], [], 0.5)[0]:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
        text = shown.decode(errors="replace")
        raise AssertionError(f"the chat did not exit within {within}s:\n{text}") from None


@contextlib.contextmanager
def _on_a_terminal(
    server: AssistdServer, assistant_id: str, cwd: Path
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``assistd chat`` with a pseudo-terminal as its stdin, stdout and stderr; yields it and our end."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [*CHAT, "--url", server.base_url, "--key", KEYS[0], "--assistant", assistant_id],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        # On SIGABRT the chat prints every thread's stack: what a test that times out waiting for it shows.
        env=_env(TERM="dumb", PYTHONFAULTHANDLER="1"),
        cwd=cwd,
    )
    os.close(terminal)
    try:
        yield process, controller
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(controller)


def test_chat_through_a_pseudo_terminal(
    client: OpenAI, server: AssistdServer, fake: FakeUpstream, tmp_path: Path
) -> None:
    assistant_id = _assistant(client)
    fake.push("First answer.", "Second answer.")
    with _on_a_terminal(server, assistant_id, tmp_path) as (process, controller):
        shown = _read_until(controller, "you> ")
        assert "Chatting with Chatty (fake-model)" in shown
        os.write(controller, b"Hello there\n")
        assert "Chatty: First answer." in _read_until(controller, "you> ")
        os.write(controller, b"And again\n")
        assert "Chatty: Second answer." in _read_until(controller, "you> ")
        os.write(controller, b"\x04")  # Ctrl-D at the prompt
        assert process.wait(timeout=30) == 0
    assert fake.requests[1]["messages"][-3:] == [
        {"role": "user", "content": "Hello there"},
        {"role": "assistant", "content": "First answer."},
        {"role": "user", "content": "And again"},
    ]


def test_ctrl_c_during_a_reply_cancels_the_run_and_exits(
    client: OpenAI, server: AssistdServer, fake: FakeUpstream, tmp_path: Path
) -> None:
    assistant_id = _assistant(client)
    # The upstream never answers (nor its retries), so the reply is still pending when Ctrl-C comes.
    fake.push(*[Hang(30) for _ in range(6)])
    with _on_a_terminal(server, assistant_id, tmp_path) as (process, controller):
        shown = _read_until(controller, "you> ")
        (thread_id,) = _threads_opened(shown)
        os.write(controller, b"Are you there?\n")
        _read_until(controller, "thinking")  # the spinner: the run is under way
        # Ctrl-C as the terminal driver delivers it (the pty is not the child's controlling terminal).
        process.send_signal(signal.SIGINT)
        assert _exit_status(process, controller, within=30) == 0
    run = client.beta.threads.runs.list(thread_id=thread_id).data[0]
    assert run.status in ("cancelling", "cancelled")
