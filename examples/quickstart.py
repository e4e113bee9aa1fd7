"""The Assistants API workflow against assistd, with the official Python SDK.

1. create an assistant (name, instructions, model, tools), 2. create a thread, 3. add the user's
message, 4. run the assistant on the thread, 5. read its reply, 6. iterate. First with
``runs.create_and_poll``, then again with ``runs.stream`` printing the reply as it is generated. The
assistant has a function tool (``get_weather``): when the model calls it the run stops in
``requires_action`` and this script answers with the tool's output.

Run a server (``make run``), then ``.venv/bin/python examples/quickstart.py``.

Environment: ``OPENAI_BASE_URL`` (default ``http://127.0.0.1:8000/v1``), ``OPENAI_API_KEY`` (any key
when the server has no ``ASSISTD_API_KEYS``), ``OPENAI_MODEL`` (default: the first model the server
lists).
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from typing import Any

from openai import AssistantEventHandler, OpenAI
from openai.types.beta import AssistantStreamEvent, AssistantToolParam
from openai.types.beta.threads import RequiredActionFunctionToolCall, Run, Text, TextDelta
from openai.types.beta.threads.run_submit_tool_outputs_params import ToolOutput

# The SDK marks the Assistants API deprecated because OpenAI's hosted one is gone; assistd serves it.
warnings.filterwarnings("ignore", category=DeprecationWarning)

QUESTIONS = [
    "In one sentence: what is a thread in the Assistants API?",
    "What is the weather in Lisbon today?",
    "Thanks! Sum up our conversation in five words.",
]
STREAMED_QUESTION = "And what is the weather in Oslo?"
# A small model may call the same tool again and again; after this many rounds the run is cancelled.
MAX_TOOL_ROUNDS = 3

TOOLS: list[AssistantToolParam] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Today's weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "description": "The city, e.g. Paris"}},
                "required": ["city"],
            },
        },
    }
]


def connect() -> OpenAI:
    return OpenAI(
        base_url=os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1"),
        api_key=os.environ.get("OPENAI_API_KEY", "assistd-local"),
    )


def pick_model(client: OpenAI) -> str:
    """``OPENAI_MODEL`` if set, else the server's first model (the SDK requires one on create)."""
    chosen = os.environ.get("OPENAI_MODEL")
    if chosen:
        return chosen
    models = client.models.list().data
    if not models:
        sys.exit("The server lists no models: set OPENAI_MODEL.")
    return models[0].id


def get_weather(city: str) -> dict[str, Any]:
    """The function the assistant may call. A real app would ask a weather service."""
    return {"city": city, "forecast": "sunny", "temperature_c": 21}


def call_tool(call: RequiredActionFunctionToolCall) -> ToolOutput:
    """Run one function call from the model; bad arguments become an error the model can read."""
    print(f"  [tool] {call.function.name}({call.function.arguments})")
    try:
        args = json.loads(call.function.arguments or "{}")
        if call.function.name != "get_weather":
            raise ValueError(f"unknown function {call.function.name}")
        result: dict[str, Any] = get_weather(str(args["city"]))
    except (ValueError, KeyError, TypeError) as exc:
        result = {"error": str(exc)}
    return {"tool_call_id": call.id, "output": json.dumps(result)}


def tool_outputs(run: Run) -> list[ToolOutput]:
    assert run.required_action is not None
    return [call_tool(call) for call in run.required_action.submit_tool_outputs.tool_calls]


def give_up(client: OpenAI, run: Run) -> str:
    client.beta.threads.runs.cancel(thread_id=run.thread_id, run_id=run.id)
    print(f"  the model is still calling tools after {MAX_TOOL_ROUNDS} rounds: run {run.id} cancelled")
    return "cancelled"


def ask(client: OpenAI, thread_id: str, assistant_id: str, question: str) -> str:
    """Steps 3 to 5 with ``create_and_poll``, printing the reply; returns the run's final status."""
    client.beta.threads.messages.create(thread_id=thread_id, role="user", content=question)
    run = client.beta.threads.runs.create_and_poll(thread_id=thread_id, assistant_id=assistant_id)
    for _ in range(MAX_TOOL_ROUNDS):
        if run.status != "requires_action":
            break
        run = client.beta.threads.runs.submit_tool_outputs_and_poll(
            thread_id=thread_id, run_id=run.id, tool_outputs=tool_outputs(run)
        )
    if run.status == "requires_action":
        return give_up(client, run)
    if run.status != "completed":
        print(f"  run {run.id} ended {run.status}: {run.last_error or run.incomplete_details}")
        return run.status
    # Only this run's messages: the reply to this question, not an older one.
    messages = client.beta.threads.messages.list(thread_id=thread_id, run_id=run.id, order="asc")
    for message in messages.data:
        print("assistant> " + "\n".join(part.text.value for part in message.content if part.type == "text"))
    return run.status


class Printer(AssistantEventHandler):
    """Prints text as it streams; answers function calls with another stream printed the same way."""

    def __init__(self, client: OpenAI, tool_rounds: int = 0) -> None:
        super().__init__()
        self.client = client
        self.tool_rounds = tool_rounds
        self.final_status: str | None = None

    def on_text_created(self, text: Text) -> None:
        print("assistant> ", end="", flush=True)

    def on_text_delta(self, delta: TextDelta, snapshot: Text) -> None:
        print(delta.value or "", end="", flush=True)

    def on_text_done(self, text: Text) -> None:
        print()

    def on_event(self, event: AssistantStreamEvent) -> None:
        if event.event == "thread.run.requires_action":
            run = event.data
            if self.tool_rounds >= MAX_TOOL_ROUNDS:
                self.final_status = give_up(self.client, run)
                return
            follow = Printer(self.client, self.tool_rounds + 1)
            with self.client.beta.threads.runs.submit_tool_outputs_stream(
                thread_id=run.thread_id, run_id=run.id, tool_outputs=tool_outputs(run), event_handler=follow
            ) as stream:
                stream.until_done()
            self.final_status = follow.final_status
        elif event.event == "thread.run.completed":
            self.final_status = event.data.status
        elif event.event in ("thread.run.failed", "thread.run.incomplete", "thread.run.expired"):
            run = event.data
            self.final_status = run.status
            print(f"  run {run.id} ended {run.status}: {run.last_error or run.incomplete_details}")


def main() -> int:
    client = connect()
    model = pick_model(client)

    # 1. The assistant: created once, used for every run below.
    assistant = client.beta.assistants.create(
        name="Quickstart helper",
        instructions="You are a concise helper. Use get_weather for questions about the weather.",
        model=model,
        tools=TOOLS,
    )
    print(f"assistant {assistant.id} on model {model}")
    # 2. One thread holds the whole conversation.
    thread = client.beta.threads.create()
    print(f"thread {thread.id}")

    statuses: list[str | None] = []
    # 3-6: ask, run, read, iterate.
    for question in QUESTIONS:
        print(f"\nuser> {question}")
        statuses.append(ask(client, thread.id, assistant.id, question))

    # The same turn, streamed: text is printed as the model produces it.
    print(f"\nuser> {STREAMED_QUESTION}  (streamed)")
    client.beta.threads.messages.create(thread_id=thread.id, role="user", content=STREAMED_QUESTION)
    printer = Printer(client)
    with client.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=assistant.id, event_handler=printer
    ) as stream:
        stream.until_done()
    statuses.append(printer.final_status)

    client.beta.assistants.delete(assistant.id)
    client.beta.threads.delete(thread.id)
    # Cancelled is this script giving up on a looping model, not an error of the server.
    return 0 if all(status in ("completed", "cancelled") for status in statuses) else 1


if __name__ == "__main__":
    sys.exit(main())
