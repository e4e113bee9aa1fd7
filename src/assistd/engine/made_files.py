"""What code_interpreter made during a run (images, written files) and how the messages that follow show
it: ``file_path`` annotations where the text names a file, image parts, attachments, and the delta that
tells streaming clients."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class MadeFiles:
    """What code_interpreter made during a run, for the messages that follow: images not yet shown in a
    message, and written files by their sandbox path (linked by ``file_path`` annotations)."""

    images: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    attached: set[str] = field(default_factory=set)


@dataclass
class MadeParts:
    """What a message gains from code_interpreter: annotations, image parts, attachments, and the delta
    that shows the first two to streaming clients."""

    annotations: list[dict[str, Any]]
    images: list[dict[str, Any]]
    attachments: list[dict[str, Any]]
    delta: list[dict[str, Any]]


def take_made(text: str, made: MadeFiles, first_index: int) -> MadeParts:
    """What a message with ``text`` shows of what the run made; its images and new files are taken, so
    that a later message of the run does not show them again. Its ``file_path`` annotations follow the
    ``first_index`` annotations (citations) the text already has, in the order they appear in it."""
    annotations: list[dict[str, Any]] = []
    for path, file_id in made.files.items():
        # Models link a file as sandbox:/mnt/data/NAME (as they were told) or name the bare path.
        for shown in (f"sandbox:{path}", path):
            start = text.find(shown)
            if start >= 0:
                annotations.append(
                    {
                        "type": "file_path",
                        "text": shown,
                        "start_index": start,
                        "end_index": start + len(shown),
                        "file_path": {"file_id": file_id},
                    }
                )
                break
    annotations.sort(key=lambda a: int(a["start_index"]))
    images = [{"type": "image_file", "image_file": {"file_id": file_id}} for file_id in made.images]
    made.images = []
    attachments = [
        {"file_id": file_id, "tools": [{"type": "code_interpreter"}]}
        for file_id in made.files.values()
        if file_id not in made.attached
    ]
    made.attached.update(made.files.values())
    delta: list[dict[str, Any]] = []
    if annotations:
        # Each entry names its place in the message's list: the SDKs merge annotation deltas by index
        # (and throw on an entry without one), so index i here is annotation i of the stored message.
        indexed = [{"index": n, **a} for n, a in enumerate(annotations, start=first_index)]
        delta.append({"index": 0, "type": "text", "text": {"annotations": indexed}})
    delta += [{"index": n, **image} for n, image in enumerate(images, start=1)]
    return MadeParts(annotations, images, attachments, delta)


def with_made(content: list[dict[str, Any]], parts: MadeParts) -> list[dict[str, Any]]:
    """A message's ``content`` (its text part first) with the annotations and image parts of ``parts``."""
    if parts.annotations:
        # Appended, not merged by position: the citations were streamed as annotations 0..n-1 already,
        # and the stored list must keep the indexes the deltas gave.
        text = content[0]["text"]
        annotations = [*text["annotations"], *parts.annotations]
        content[0] = {"type": "text", "text": {"value": text["value"], "annotations": annotations}}
    return content + parts.images
