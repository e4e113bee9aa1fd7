"""Reading a run's Server-Sent Events from the raw HTTP stream, frame by frame, as they arrive."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx

from server import KEYS


def stream_events(
    base_url: str, path: str, body: dict[str, Any], *, key: str = KEYS[0], timeout: float = 60
) -> Iterator[tuple[str, Any]]:
    """POST ``body`` to ``path`` and yield ``(event, data)``: data parsed as JSON, or the ``[DONE]`` text."""
    with (
        httpx.Client(base_url=base_url, timeout=timeout) as http,
        http.stream("POST", path, json=body, headers={"Authorization": f"Bearer {key}"}) as response,
    ):
        assert response.status_code == 200, response.read()
        name = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = line.removeprefix("data: ")
                yield name, data if data == "[DONE]" else json.loads(data)


def delta_text(data: dict[str, Any]) -> str:
    """The text of a ``thread.message.delta`` event."""
    return str(data["delta"]["content"][0]["text"]["value"])


def frames_of(body: str) -> list[dict[str, str]]:
    """The fields (``id``, ``event``, ``data``) of each frame of a complete SSE body, in order."""
    assert body.endswith("\n\n"), body[-200:]
    frames = []
    for block in body.split("\n\n")[:-1]:
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            name, _, value = line.partition(": ")
            fields[name] = value
        frames.append(fields)
    return frames
