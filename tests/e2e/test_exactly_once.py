"""Tool outputs are applied once: several clients submitting outputs for one waiting run at the same moment
get one success and OpenAI's 400 for the rest, and the run goes on once (one more model turn, one reply).
On PostgreSQL the submits really overlap; each reads the run FOR UPDATE, so the later ones see it queued.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import openai
from openai import OpenAI

from conftest import make_client
from fake_upstream import FakeUpstream, Text, ToolCalls
from samples import WEATHER_TOOL
from server import AssistdServer

SUBMITTERS = 8


def test_concurrent_tool_outputs_are_applied_once(
    client: OpenAI, server: AssistdServer, fake: FakeUpstream
) -> None:
    fake.push(
        ToolCalls([{"id": "call_once", "name": "get_weather", "arguments": {"city": "Oslo"}}]),
        Text("It is 3C in Oslo."),
    )
    assistant = client.beta.assistants.create(model="fake-model", tools=[WEATHER_TOOL])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Weather in Oslo?"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "requires_action"
    served_before = fake.served

    start = threading.Barrier(SUBMITTERS)

    def submit(n: int) -> int | str:
        with make_client(server) as own:
            start.wait(timeout=10)
            try:
                own.beta.threads.runs.submit_tool_outputs(
                    run_id=run.id,
                    thread_id=thread.id,
                    tool_outputs=[{"tool_call_id": "call_once", "output": f"{n}C"}],
                )
            except openai.BadRequestError as exc:
                assert isinstance(exc.body, dict)
                assert exc.body["type"] == "invalid_request_error"
                assert "do not accept tool outputs" in exc.body["message"]
                return 400
            return "accepted"

    with ThreadPoolExecutor(SUBMITTERS) as pool:
        outcomes = list(pool.map(submit, range(SUBMITTERS)))
    assert sorted(outcomes, key=str) == [400] * (SUBMITTERS - 1) + ["accepted"]

    done = client.beta.threads.runs.poll(run.id, thread_id=thread.id, poll_interval_ms=50)
    assert done.status == "completed"
    assert fake.served == served_before + 1  # one more model turn, with the one accepted output
    steps = client.beta.threads.runs.steps.list(run_id=run.id, thread_id=thread.id, order="asc").data
    [tool_step] = [step for step in steps if step.type == "tool_calls"]
    assert tool_step.step_details.type == "tool_calls"
    [call] = tool_step.step_details.tool_calls
    assert call.type == "function" and call.function.output is not None
    replies = client.beta.threads.messages.list(thread_id=thread.id, run_id=run.id).data
    assert [m.content[0].text.value for m in replies if m.content[0].type == "text"] == ["It is 3C in Oslo."]
