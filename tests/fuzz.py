"""What the schemathesis fuzzing of ``e2e/test_fuzz.py`` shares: its budget, seed and example database, the
real objects whose ids it feeds into paths and bodies, and the check of OpenAI's error body.

Budget: ``ASSISTD_FUZZ_EXAMPLES`` generated requests per operation in schemathesis' fuzzing phase (default
12, what CI affords: the module stays within about three minutes per database pass on two loaded cores);
its examples and coverage phases add their own fixed sets (about 80 requests per operation). Raise it for a
longer local hunt: ``ASSISTD_FUZZ_EXAMPLES=500``. The property tests scale their examples with it.

Seed: random on each run (Hypothesis' ``derandomize`` stays off) and printed; ``ASSISTD_FUZZ_SEED=<n>``
replays a run. Failing examples are kept in ``~/.cache/assistd/hypothesis`` (``$XDG_CACHE_HOME`` if set),
outside the checkout, so they survive between runs on one machine, CI's clean checkouts too, and are
never committed; each run tries them first. ``ASSISTD_FUZZ_DATABASE`` moves it.
"""

from __future__ import annotations

import io
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, seed, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase
from openai import OpenAI
from schemathesis import CheckContext, Response
from schemathesis.core.failures import Failure

from fake_upstream import FakeUpstream, ToolCalls

EXAMPLES = int(os.environ.get("ASSISTD_FUZZ_EXAMPLES", "12"))
SEED = int(os.environ.get("ASSISTD_FUZZ_SEED") or random.SystemRandom().randrange(2**63))
# Outside the checkout: CI (.ci/run) starts from a clean one, where .hypothesis/ would be lost each run.
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
DATABASE = os.environ.get("ASSISTD_FUZZ_DATABASE") or str(CACHE / "assistd" / "hypothesis")
# Stands for a real object's id in a generated case until it is sent (``RealIds.resolve``); plain
# characters, which the quoting of path parameters leaves alone.
MARK = "assistd-real-id-of-"
# Each kind of real id and how many of it there are (``RealIds``).
REAL_KINDS = {
    "assistant_id": 1,
    "thread_id": 2,
    "message_id": 2,
    "run_id": 2,
    "step_id": 2,
    "file_id": 1,
    "vector_store_id": 1,
    "batch_id": 1,
    "model": 1,
    # The function call the waiting run awaits an output for.
    "tool_call_id": 1,
}
TOOL_CALL_ID = "call_fuzz"
REPLAY = f"replay with ASSISTD_FUZZ_SEED={SEED} ASSISTD_FUZZ_EXAMPLES={EXAMPLES}"


def announce() -> None:
    """The seed, where a failing run's output shows it (pytest prints captured output of failures)."""
    print(f"assistd fuzz: seed {SEED}, {EXAMPLES} random examples per operation; {REPLAY}", file=sys.stderr)


def property_settings(max_examples: int) -> settings:
    """Settings of the hypothesis property tests: the fuzzing's example database, ``max_examples`` in CI,
    scaled as ``ASSISTD_FUZZ_EXAMPLES`` scales the fuzzing's (default 12), and no deadline (a loaded machine
    is slow, and speed is not what they test)."""
    return settings(
        max_examples=max(1, max_examples * EXAMPLES // 12),
        deadline=None,
        derandomize=False,
        database=DirectoryBasedExampleDatabase(DATABASE),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


def properties(max_examples: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``property_settings`` and the fuzzing's seed, for a ``@given`` test."""

    def apply(test: Callable[..., Any]) -> Callable[..., Any]:
        return seed(SEED)(property_settings(max_examples)(test))  # type: ignore[no-any-return]

    return apply


def configure(schema: schemathesis.BaseSchema) -> None:
    schema.config.generation.update(max_examples=EXAMPLES, database=DATABASE, deterministic=False)
    # One seed for the run; schemathesis derives each operation's from it.
    schema.config.seed = SEED


@dataclass
class Calls:
    """What the fuzzing sent, for the figures of docs/reliability.md."""

    requests: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    # Per operation: its requests, and those answered 2xx (the ones past validation and lookups).
    operations: dict[str, list[int]] = field(default_factory=dict)

    def count(self, label: str, status: int) -> None:
        self.requests += 1
        self.statuses[status] = self.statuses.get(status, 0) + 1
        tally = self.operations.setdefault(label, [0, 0])
        tally[0] += 1
        tally[1] += 200 <= status < 300

    def summary(self) -> str:
        never = sorted(label for label, (_, ok) in self.operations.items() if not ok)
        return (
            f"assistd fuzz: {self.requests} requests over {len(self.operations)} operations, statuses "
            f"{dict(sorted(self.statuses.items()))}; never 2xx: {never or 'none'}"
        )


class RealIds:
    """Real objects of one tenant, made through the API, whose ids replace generated ones in part of the
    requests so that they reach past the 404 of an unknown id. Two threads: one whose run completed (its
    messages, runs and steps can be read and written to), one whose run awaits tool outputs (so that
    cancel and submit_tool_outputs meet a run that takes them). What a fuzzed request deleted, cancelled
    or moved on is made again."""

    def __init__(self) -> None:
        self._client: OpenAI | None = None
        self._fake: FakeUpstream | None = None
        # kind -> its real ids; a ``MARK`` names one by kind and index.
        self.ids: dict[str, list[str]] = {}

    def bind(self, client: OpenAI, fake: FakeUpstream) -> None:
        """Make the objects, on the server ``client`` talks to, whose upstream is ``fake``."""
        self._client, self._fake = client, fake
        self.ids = {kind: ["none"] * count for kind, count in REAL_KINDS.items()}
        for kind in ("assistant_id", "vector_store_id", "thread_id"):
            self.make(kind, 0)
        self.make("thread_id", 1)

    @property
    def client(self) -> OpenAI:
        assert self._client is not None, "RealIds.bind() first"
        return self._client

    def make(self, kind: str, index: int) -> None:
        c = self.client
        if kind == "assistant_id":
            tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
            self.ids[kind][0] = c.beta.assistants.create(model="fake-model", name="fuzz", tools=[tool]).id  # type: ignore[list-item]
        elif kind in ("file_id", "vector_store_id", "batch_id"):
            upload = ("fuzz.txt", io.BytesIO(b"The fuzzing corpus: one line of text."))
            file_id = c.files.create(file=upload, purpose="assistants").id
            store = c.vector_stores.create(name="fuzz", file_ids=[file_id])
            batch = c.vector_stores.file_batches.create(store.id, file_ids=[file_id])
            self.ids["file_id"][0], self.ids["vector_store_id"][0], self.ids["batch_id"][0] = (
                file_id,
                store.id,
                batch.id,
            )
        elif kind in ("thread_id", "message_id", "run_id", "step_id"):
            self._make_thread(index)

    def _make_thread(self, index: int) -> None:
        """Thread 0: a run that completed; thread 1: a run that awaits the output of a function call."""
        c = self.client
        assert self._fake is not None
        thread = c.beta.threads.create(messages=[{"role": "user", "content": "Hello"}])
        if index == 1:
            self._fake.push(ToolCalls([{"id": TOOL_CALL_ID, "name": "lookup", "arguments": {"q": "fuzz"}}]))
        run = c.beta.threads.runs.create(thread.id, assistant_id=self.ids["assistant_id"][0])
        deadline = time.monotonic() + 60
        while run.status in ("queued", "in_progress") and time.monotonic() < deadline:
            time.sleep(0.1)
            run = c.beta.threads.runs.retrieve(run.id, thread_id=thread.id)
        steps = c.beta.threads.runs.steps.list(run.id, thread_id=thread.id).data
        made = {
            "thread_id": thread.id,
            "message_id": c.beta.threads.messages.list(thread.id).data[0].id,
            "run_id": run.id,
            "step_id": steps[0].id if steps else "none",
        }
        for kind, value in made.items():
            self.ids[kind][index] = value

    def after(self, method: str, path: str, path_parameters: dict[str, Any], status: int) -> None:
        """Make again what a successful request changed for good: a DELETE, or the waiting run moved on."""
        if not 200 <= status < 300 or not path_parameters:
            return
        last_key = list(path_parameters)[-1]
        waiting = path_parameters.get("run_id") == self.ids["run_id"][1]
        if waiting and path.endswith(("/cancel", "/submit_tool_outputs")):
            self._make_thread(1)
        elif method == "DELETE" and path_parameters.get(last_key) in self.ids.get(last_key, ()):
            index = self.ids[last_key].index(path_parameters[last_key])
            self.make(last_key, index)

    def resolve(self, value: Any) -> Any:
        """``value`` (a path's parameters, a JSON body) with its ``MARK`` strings made real ids, as they are
        now: the objects exist when the case is sent, not only when it was generated (which, for the
        examples phase, is at collection)."""
        if isinstance(value, str) and value.startswith(MARK):
            kind, _, index = value.removeprefix(MARK).rpartition("-")
            fixed = {"model": "fake-model", "tool_call_id": TOOL_CALL_ID}
            return fixed[kind] if kind in fixed else self.ids[kind][int(index)]
        if isinstance(value, dict):
            return {key: self.resolve(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        return value


def _mixed(generated: Any) -> st.SearchStrategy[Any]:
    """``generated`` (a path's parameters, a JSON body) with each id it holds, at any depth, left as generated
    or replaced by the ``MARK`` of a real one, as Hypothesis draws (so a failure replays, and shrinks
    towards a real id). The ids of one request are of one set (thread 0 with run 0, or 1 with 1)."""
    return st.integers(0, 1).flatmap(lambda index: _mixed_in(generated, index))


def _mixed_in(generated: Any, index: int) -> st.SearchStrategy[Any]:
    if isinstance(generated, dict):
        return st.fixed_dictionaries({key: _field(key, value, index) for key, value in generated.items()})
    if isinstance(generated, list) and generated:
        return st.tuples(*(_mixed_in(item, index) for item in generated)).map(list)
    return st.just(generated)


def _field(key: str, value: Any, index: int) -> st.SearchStrategy[Any]:
    kind = "model" if key == "model_id" else "file_id" if key == "file_ids" else key
    if kind not in REAL_KINDS or (key == "file_ids") != isinstance(value, list):
        return _mixed_in(value, index)
    mark = f"{MARK}{kind}-{min(index, REAL_KINDS[kind] - 1)}"
    return st.sampled_from([[mark] if key == "file_ids" else mark, value])


def install_hooks(schema: schemathesis.BaseSchema) -> None:
    """Real ids into paths (``{thread_id}``...) and into the id fields of JSON bodies."""

    @schema.hook
    def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> st.SearchStrategy[Any]:
        return _mixed(path_parameters)

    @schema.hook
    def flatmap_body(context: Any, body: Any) -> st.SearchStrategy[Any]:
        return _mixed(body) if isinstance(body, dict) else st.just(body)


def openai_error_body(ctx: CheckContext, response: Response, case: schemathesis.Case) -> bool | None:
    """Every 4xx carries OpenAI's error body ``{"error": {"message", "type", "param", "code"}}``; those of
    /actions carry the ``{"success": false, "data": null, "error": "..."}`` of the function it stands in
    for (api/actions.py), but for a 405, which the app answers before any route."""
    if not 400 <= response.status_code < 500:
        return None
    try:
        body = response.json()
    except Exception as exc:
        raise Failure(
            operation=case.operation.label, title="4xx without a JSON body", message=str(exc)
        ) from None
    if case.operation.path == "/actions" and response.status_code != 405:
        if body.get("success") is not False or body.get("data") is not None or not body.get("error"):
            raise Failure(
                operation=case.operation.label,
                title="/actions 4xx without its error body",
                message=f"{response.status_code}: {response.text[:500]}",
            )
        return True
    error = body.get("error") if isinstance(body, dict) else None
    if (
        not isinstance(body, dict)
        or set(body) != {"error"}
        or not isinstance(error, dict)
        or set(error) != {"message", "type", "param", "code"}
        or not isinstance(error["message"], str)
        or not error["message"]
        or not isinstance(error["type"], str)
        or not (error["param"] is None or isinstance(error["param"], str))
        or not (error["code"] is None or isinstance(error["code"], str))
    ):
        raise Failure(
            operation=case.operation.label,
            title="4xx without OpenAI's error body",
            message=f"{response.status_code}: {response.text[:500]}",
        )
    return True
