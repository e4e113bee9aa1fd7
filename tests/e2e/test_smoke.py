from __future__ import annotations

from openai import OpenAI


def test_smoke_create_and_poll(client: OpenAI, fake) -> None:
    assistant = client.beta.assistants.create(model="fake-model", name="a", instructions="be nice")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed", run
    msgs = client.beta.threads.messages.list(thread_id=thread.id)
    assert msgs.data[0].content[0].text.value == "Hello from the fake upstream."
