"""code_interpreter in runs: code runs in the thread's sandboxed session, its state persists, files go in and
come out, charts become images, and hostile code is contained while the server goes on serving."""

from __future__ import annotations

import contextlib
import io
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from openai import OpenAI
from openai.types.beta.threads import Message
from openai.types.beta.threads.runs import RunStep

from conftest import Databases, make_client, start_server
from fake_upstream import FakeUpstream, Text, ToolCalls
from server import AssistdServer
from sse import stream_events
from wire import check

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LIMITS = {
    # Room for the memory-limit test's children, which the kernel must find and kill while a loaded machine
    # runs the rest of the suite (4 s was too short on a busy 2-core VM).
    "code_timeout_seconds": "10",
    "code_memory_mb": "1024",
    "code_disk_mb": "64",
    "code_tmp_mb": "16",
    "code_max_processes": "32",
}


@pytest.fixture(scope="module")
def code_server(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> Iterator[AssistdServer]:
    srv = start_server(tmp_path_factory, databases, fake, **LIMITS)
    yield srv
    srv.stop()


@pytest.fixture
def code_client(code_server: AssistdServer) -> Iterator[OpenAI]:
    with make_client(code_server) as c:
        yield c


def _assistant(client: OpenAI) -> str:
    return client.beta.assistants.create(model="fake-model", tools=[{"type": "code_interpreter"}]).id


def _thread(client: OpenAI, **fields: Any) -> str:
    return client.beta.threads.create(messages=[{"role": "user", "content": "Compute it.", **fields}]).id


def _run(
    client: OpenAI, fake: FakeUpstream, assistant: str, thread: str, *codes: str, reply: str = "Done."
) -> str:
    fake.push(*(ToolCalls([("code_interpreter", {"code": code})]) for code in codes), Text(reply))
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread, assistant_id=assistant, poll_interval_ms=50
    )
    assert run.status == "completed", run.last_error
    return run.id


def _code_calls(client: OpenAI, thread: str, run: str) -> list[dict[str, Any]]:
    steps = client.beta.threads.runs.steps.list(run_id=run, thread_id=thread, order="asc")
    calls = []
    for step in steps.data:
        check(RunStep, step)
        if step.step_details.type == "tool_calls":
            for call in step.step_details.tool_calls:
                assert call.type == "code_interpreter"
                calls.append(call.model_dump())
    return calls


def _logs(call: dict[str, Any]) -> str:
    return "".join(o["logs"] for o in call["code_interpreter"]["outputs"] if o["type"] == "logs")


def _answer(client: OpenAI, thread: str, run: str) -> Message:
    messages = client.beta.threads.messages.list(thread_id=thread, run_id=run).data
    assert len(messages) == 1
    return check(Message, messages[0])


def test_print_shows_in_the_steps_logs(code_client: OpenAI, fake: FakeUpstream) -> None:
    assistant, thread = _assistant(code_client), _thread(code_client)
    run = _run(code_client, fake, assistant, thread, "print(6*7)", reply="It is 42.")
    [call] = _code_calls(code_client, thread, run)
    assert call["code_interpreter"]["input"] == "print(6*7)"
    assert _logs(call) == "42\n"
    assert _answer(code_client, thread, run).content[0].text.value == "It is 42."  # type: ignore[union-attr]
    # The model was offered the tool as a function and read the logs back as the call's result.
    offered = [tool["function"]["name"] for tool in fake.requests[0]["tools"]]
    assert offered == ["code_interpreter"]
    assert "42" in fake.requests[1]["messages"][-1]["content"]


def test_state_lasts_across_calls_and_runs(code_client: OpenAI, fake: FakeUpstream) -> None:
    assistant, thread = _assistant(code_client), _thread(code_client)
    first = _run(code_client, fake, assistant, thread, "import math\nx = 20", "x + math.floor(2.5)")
    assert _logs(_code_calls(code_client, thread, first)[1]) == "22\n"
    code_client.beta.threads.messages.create(thread_id=thread, role="user", content="And doubled?")
    second = _run(code_client, fake, assistant, thread, "print(x * 2)")
    assert _logs(_code_calls(code_client, thread, second)[0]) == "40\n"


def test_an_attached_csv_is_read_with_pandas(code_client: OpenAI, fake: FakeUpstream) -> None:
    rows = "region,amount\nnorth,120.5\nsouth,79.5\nnorth,30\n"
    upload = code_client.files.create(file=("sales.csv", io.BytesIO(rows.encode())), purpose="assistants")
    assistant = _assistant(code_client)
    thread = _thread(
        code_client, attachments=[{"file_id": upload.id, "tools": [{"type": "code_interpreter"}]}]
    )
    code = (
        "import pandas as pd\n"
        "df = pd.read_csv('/mnt/data/sales.csv')\n"
        "print(df.groupby('region').amount.sum()['north'])"
    )
    run = _run(code_client, fake, assistant, thread, code)
    assert _logs(_code_calls(code_client, thread, run)[0]) == "150.5\n"
    # The model was told where the file is.
    description = fake.requests[0]["tools"][0]["function"]["description"]
    assert "/mnt/data/sales.csv" in description


def test_files_of_the_assistant_and_the_thread_tool_resources_are_in_the_session(
    code_client: OpenAI, fake: FakeUpstream
) -> None:
    def upload(name: str, text: str) -> str:
        return code_client.files.create(file=(name, io.BytesIO(text.encode())), purpose="assistants").id

    assistant = code_client.beta.assistants.create(
        model="fake-model",
        tools=[{"type": "code_interpreter"}],
        tool_resources={"code_interpreter": {"file_ids": [upload("rates.json", '{"eur": 1.1}')]}},
    ).id
    thread = code_client.beta.threads.create(
        messages=[{"role": "user", "content": "Convert."}],
        tool_resources={"code_interpreter": {"file_ids": [upload("amount.txt", "20")]}},
    ).id
    code = (
        "import json\n"
        "rate = json.load(open('/mnt/data/rates.json'))['eur']\n"
        "print(round(float(open('/mnt/data/amount.txt').read()) * rate, 2))"
    )
    run = _run(code_client, fake, assistant, thread, code)
    assert _logs(_code_calls(code_client, thread, run)[0]) == "22.0\n"


def test_a_chart_becomes_an_image_file_part(code_client: OpenAI, fake: FakeUpstream) -> None:
    assistant, thread = _assistant(code_client), _thread(code_client)
    code = "import matplotlib.pyplot as plt\nplt.plot([1, 4, 9])\nplt.title('squares')\nplt.show()"
    run = _run(code_client, fake, assistant, thread, code, reply="Here is the chart.")
    [call] = _code_calls(code_client, thread, run)
    [image] = [o for o in call["code_interpreter"]["outputs"] if o["type"] == "image"]
    message = _answer(code_client, thread, run)
    parts = [part.type for part in message.content]
    assert parts == ["text", "image_file"]
    file_id = message.content[1].image_file.file_id  # type: ignore[union-attr]
    assert file_id == image["image"]["file_id"]
    png = code_client.files.content(file_id).read()
    assert png.startswith(PNG_SIGNATURE) and len(png) > 1000
    assert code_client.files.retrieve(file_id).purpose == "assistants_output"


def test_a_written_file_downloads_through_its_file_path_annotation(
    code_client: OpenAI, fake: FakeUpstream
) -> None:
    assistant, thread = _assistant(code_client), _thread(code_client)
    code = "data = bytes(range(256)) * 40\nopen('/mnt/data/report.bin', 'wb').write(data)"
    reply = "Download it: [report](sandbox:/mnt/data/report.bin)."
    run = _run(code_client, fake, assistant, thread, code, reply=reply)
    message = _answer(code_client, thread, run)
    text = message.content[0].text  # type: ignore[union-attr]
    [annotation] = text.annotations
    assert annotation.type == "file_path"
    assert text.value[annotation.start_index : annotation.end_index] == "sandbox:/mnt/data/report.bin"
    downloaded = code_client.files.content(annotation.file_path.file_id).read()  # type: ignore[union-attr]
    assert downloaded == bytes(range(256)) * 40
    assert [a.file_id for a in message.attachments or []] == [annotation.file_path.file_id]  # type: ignore[union-attr]
    assert "sandbox:/mnt/data/report.bin" in fake.requests[1]["messages"][-1]["content"]


def test_streaming_shows_the_code_as_written_and_its_outputs(
    code_client: OpenAI, fake: FakeUpstream, code_server: AssistdServer
) -> None:
    assistant, thread = _assistant(code_client), _thread(code_client)
    code = 'for word in ["tick", "tock"]:\n    print(word, "\\u00e9")'
    fake.push(ToolCalls([("code_interpreter", {"code": code})], argument_pieces=7), Text("Printed."))
    events = list(
        stream_events(
            code_server.base_url, f"/threads/{thread}/runs", {"assistant_id": assistant, "stream": True}
        )
    )
    names = [name for name, _ in events]
    assert names[-2:] == ["thread.run.completed", "done"]
    calls = [
        call
        for name, data in events
        if name == "thread.run.step.delta"
        for call in data["delta"]["step_details"]["tool_calls"]
    ]
    assert all(call["type"] == "code_interpreter" for call in calls)
    inputs = [
        call["code_interpreter"].get("input")
        for call in calls
        if call["code_interpreter"].get("input") is not None
    ]
    assert len([piece for piece in inputs if piece]) > 1  # the code arrived in several deltas
    assert "".join(inputs) == code
    outputs = [o for call in calls for o in call["code_interpreter"].get("outputs") or []]
    assert outputs == [{"index": 0, "type": "logs", "logs": "tick é\ntock é\n"}]
    # The outputs come before the step completes, and the step before the reply starts.
    assert names.index("thread.run.step.completed") < names.index("thread.message.created")


def test_cancelling_a_run_stops_its_code(code_client: OpenAI, fake: FakeUpstream) -> None:
    assistant, thread = _assistant(code_client), _thread(code_client)
    code = (
        "import time\nfor _ in range(600):\n    open('/mnt/data/ticks', 'a').write('.')\n    time.sleep(0.05)"
    )
    fake.push(ToolCalls([("code_interpreter", {"code": code})]))
    run = code_client.beta.threads.runs.create(thread_id=thread, assistant_id=assistant)
    deadline = time.monotonic() + 20
    while not code_client.beta.threads.runs.steps.list(run_id=run.id, thread_id=thread).data:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(0.5)  # the code is running now
    code_client.beta.threads.runs.cancel(run_id=run.id, thread_id=thread)
    while (
        status := code_client.beta.threads.runs.retrieve(run_id=run.id, thread_id=thread).status
    ) == "cancelling":
        time.sleep(0.1)
    assert status == "cancelled"
    check_ticks = (
        "import os, time\n"
        "a = os.path.getsize('/mnt/data/ticks')\n"
        "time.sleep(1)\n"
        "print(a, os.path.getsize('/mnt/data/ticks'))"
    )
    after = _run(code_client, fake, assistant, thread, check_ticks)
    before, later = _logs(_code_calls(code_client, thread, after)[0]).split()
    assert before == later and int(before) > 0


HOSTILE = {
    "infinite_loop": ("while True:\n    pass", "time limit"),
    "fork_bomb": ("import os\nwhile True:\n    os.fork()", "BlockingIOError"),
    "allocate_20_gib": ("block = bytearray(20 * 2**30)", "MemoryError"),
    "write_10_gib_one_file": (
        "with open('/mnt/data/big', 'wb') as f:\n"
        "    for _ in range(10 * 1024):\n"
        "        f.write(bytes(2**20))",
        "File too large",
    ),
    "write_10_gib_many_files": (
        "for n in range(10 * 1024):\n    open(f'/mnt/data/part{n}', 'wb').write(bytes(2**20))",
        "disk limit",
    ),
    "environment": (
        "import os\nprint(sorted(os.environ))\nprint(open(f'/proc/{os.getppid()}/environ').read())",
        "FileNotFoundError",  # the server's process is not even in the session's /proc
    ),
    "loopback_tcp": (
        "import socket\ns = socket.create_connection(('127.0.0.1', PORT), timeout=3)",
        "OSError",
    ),
    "outside_tcp": ("import socket\ns = socket.create_connection(('1.1.1.1', 80), timeout=3)", "OSError"),
    "kill_parent": ("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)", "PermissionError"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_code_is_contained(
    name: str, code_client: OpenAI, fake: FakeUpstream, code_server: AssistdServer
) -> None:
    code, expected = HOSTILE[name]
    code = code.replace("PORT", str(code_server.port))
    assistant, thread = _assistant(code_client), _thread(code_client)
    run = _run(code_client, fake, assistant, thread, code)
    logs = _logs(_code_calls(code_client, thread, run)[0])
    assert expected in logs
    assert "sk-upstream-secret" not in logs and "sk-test" not in logs
    # The model is told the code failed, and the server goes on serving: the same session runs code again.
    assert "The code failed" in fake.requests[1]["messages"][-1]["content"]
    again = _run(code_client, fake, assistant, thread, "print('still here')")
    assert _logs(_code_calls(code_client, thread, again)[0]) == "still here\n"
    assert code_client.models.list().data


def test_a_sessions_processes_share_one_memory_limit(code_client: OpenAI, fake: FakeUpstream) -> None:
    # Each child stays under the per-process address-space limit (1 GiB here); together they would take
    # 2.4 GiB, past the session's memory cgroup (also 1 GiB): the kernel kills children until they fit.
    code = (
        "import os, time\n"
        "children = []\n"
        "for _ in range(4):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        block = b'x' * (600 * 2**20)\n"
        "        time.sleep(1)\n"
        "        os._exit(0)\n"
        "    children.append(pid)\n"
        "print(sorted(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children))"
    )
    assistant, thread = _assistant(code_client), _thread(code_client)
    statuses = json.loads(
        _logs(_code_calls(code_client, thread, _run(code_client, fake, assistant, thread, code))[0])
    )
    assert -9 in statuses and 0 in statuses, statuses
    again = _run(code_client, fake, assistant, thread, "print('still here')")
    assert _logs(_code_calls(code_client, thread, again)[0]) == "still here\n"


def test_the_session_sees_only_its_own_processes(
    code_client: OpenAI, fake: FakeUpstream, code_server: AssistdServer
) -> None:
    assert code_server.process is not None
    code = "import os\nprint(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))"
    assistant, thread = _assistant(code_client), _thread(code_client)
    seen = json.loads(
        _logs(_code_calls(code_client, thread, _run(code_client, fake, assistant, thread, code))[0])
    )
    assert code_server.process.pid not in seen
    assert len(seen) == 1  # the worker itself


def test_the_servers_files_are_out_of_reach(
    code_client: OpenAI, fake: FakeUpstream, code_server: AssistdServer
) -> None:
    targets = [str(code_server.data_dir), str(code_server.data_dir / "files")]
    if code_server.database_url.startswith("sqlite:///"):
        targets.append(code_server.database_url.removeprefix("sqlite:///"))
    code = "\n".join(
        [
            "import os",
            "for path in TARGETS:",
            "    try:",
            "        found = os.listdir(path) if os.path.isdir(path) else open(path, 'rb').read(16)",
            "        print(path, 'READ', found)",
            "    except Exception as exc:",
            "        print(path, type(exc).__name__)",
        ]
    ).replace("TARGETS", json.dumps(targets))
    assistant, thread = _assistant(code_client), _thread(code_client)
    logs = _logs(_code_calls(code_client, thread, _run(code_client, fake, assistant, thread, code))[0])
    assert "READ" not in logs
    assert logs.count("Error") == len(targets)


def test_deleting_the_thread_ends_its_session_and_deletes_its_files(
    code_client: OpenAI, fake: FakeUpstream, code_server: AssistdServer
) -> None:
    assistant, thread = _assistant(code_client), _thread(code_client)
    _run(code_client, fake, assistant, thread, "open('/mnt/data/left.txt', 'w').write('x')")
    directory = code_server.data_dir / "sandbox" / "sessions" / thread
    assert (directory / "left.txt").read_text() == "x"
    assert code_client.beta.threads.delete(thread).deleted
    assert not directory.exists()


@contextlib.contextmanager
def _own_server(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream, **env: str
) -> Iterator[OpenAI]:
    """A client of a server of its own, with other settings than the module's."""
    srv = start_server(tmp_path_factory, databases, fake, **{**LIMITS, **env})
    try:
        with make_client(srv) as client:
            yield client
    finally:
        srv.stop()


def test_idle_sessions_are_reaped_and_restarted_with_their_files(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> None:
    with _own_server(tmp_path_factory, databases, fake, code_session_idle_seconds="1") as client:
        assistant, thread = _assistant(client), _thread(client)
        _run(client, fake, assistant, thread, "kept = 1\nopen('/mnt/data/note.txt', 'w').write('hello')")
        time.sleep(3)
        run = _run(client, fake, assistant, thread, "print(open('/mnt/data/note.txt').read())\nprint(kept)")
        logs = _logs(_code_calls(client, thread, run)[0])
        assert logs.startswith("hello\n") and "NameError" in logs


def test_a_new_session_ends_the_least_recently_used_when_all_are_taken(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> None:
    with _own_server(tmp_path_factory, databases, fake, code_max_sessions="2") as client:
        assistant = _assistant(client)
        first, second, third = (_thread(client) for _ in range(3))
        for thread in (first, second, third):
            _run(client, fake, assistant, thread, "mine = 7")
        kept = _run(client, fake, assistant, third, "print(mine)")
        assert _logs(_code_calls(client, third, kept)[0]) == "7\n"
        ended = _run(client, fake, assistant, first, "print(mine)")
        assert "NameError" in _logs(_code_calls(client, first, ended)[0])
