"""``assistd chat``: talk to an assistant from the terminal, its replies streamed token by token.

It is an ordinary client of the HTTP API through the official ``openai`` SDK, so it works against any
assistd (or anything else that speaks the Assistants API). ``--embedded`` starts the app in this process
on a free loopback port first, for a chat with no server running.

Standard output carries the conversation; with a person at the terminal, menus and notes go there too,
and a spinner on standard error covers a slow first token. With piped input everything but the
conversation goes to standard error and input is read line by line, so scripts can drive it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TextIO

import openai
from openai import AssistantEventHandler, OpenAI
from openai.lib.streaming import AssistantStreamManager
from openai.types.beta import Assistant, AssistantStreamEvent
from openai.types.beta.threads import Annotation, AnnotationDelta, MessageContent, Run, Text, TextDelta
from openai.types.beta.threads.run_submit_tool_outputs_params import ToolOutput
from openai.types.beta.threads.runs import ToolCall

from .chat_options import DEFAULT_URL

# The SDK refuses an empty key; a server without ASSISTD_API_KEYS accepts any.
PLACEHOLDER_KEY = "assistd-chat"
HISTORY_SHOWN = 6
SPINNER_DELAY_S = 0.4
SPINNER_STEP_S = 0.3
HELP = """Commands:
  /new    start a new thread with the same assistant
  /help   show this help
  /exit   leave (Ctrl-D and Ctrl-C too)
Anything else is sent to the assistant."""
END_STATUSES_WORTH_A_NOTE = ("failed", "incomplete", "cancelled", "expired")


# --------------------------------------------------------------------------------------------------
# The terminal
# --------------------------------------------------------------------------------------------------


class Spinner:
    """Dots ("thinking...") on a terminal while nothing else shows; drawn only after a short delay."""

    def __init__(self, stream: TextIO, enabled: bool) -> None:
        self._stream = stream
        self._enabled = enabled
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._drawn = 0
        self._lock = threading.Lock()

    def start(self, label: str = "thinking") -> None:
        if not self._enabled or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._spin, args=(label,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        with self._lock:
            if self._drawn:
                self._stream.write("\r" + " " * self._drawn + "\r")
                self._stream.flush()
                self._drawn = 0

    def _spin(self, label: str) -> None:
        if self._stop.wait(SPINNER_DELAY_S):
            return
        dots = 0
        while not self._stop.is_set():
            dots = dots % 3 + 1
            text = f"{label}{'.' * dots}{' ' * (3 - dots)}"
            with self._lock:
                self._stream.write("\r" + text)
                self._stream.flush()
                self._drawn = len(text)
            self._stop.wait(SPINNER_STEP_S)

    @contextlib.contextmanager
    def around(self, label: str) -> Iterator[None]:
        self.start(label)
        try:
            yield
        finally:
            self.stop()


class Console:
    """Input and output, decorated for a person at a terminal and plain for pipes."""

    def __init__(self, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> None:
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self.interactive = stdin.isatty() and stdout.isatty()
        self.spinner = Spinner(stderr, self.interactive and stderr.isatty())
        if self.interactive:
            # Line editing and history for input(), where the platform has it.
            with contextlib.suppress(ImportError):
                import readline  # noqa: F401

    def ask(self, prompt: str) -> str | None:
        """One line typed by the user, or None at the end of the input."""
        if self.interactive:
            try:
                return input(prompt)
            except EOFError:
                self.stdout.write("\n")
                return None
        line = self.stdin.readline()
        return line.rstrip("\r\n") if line else None

    def info(self, text: str) -> None:
        """Menus and notes: on the terminal, or out of the conversation's way when piped."""
        stream = self.stdout if self.interactive else self.stderr
        stream.write(text + "\n")
        stream.flush()

    def write(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()


# --------------------------------------------------------------------------------------------------
# Choosing an assistant and a thread
# --------------------------------------------------------------------------------------------------


def _choose(console: Console, prompt: str, count: int, extra: str = "") -> int | str | None:
    """A 1-based number up to ``count``, ``extra`` itself, or None at the end of the input."""
    while True:
        answer = console.ask(prompt)
        if answer is None:
            return None
        answer = answer.strip()
        if extra and answer.lower() == extra:
            return extra
        if answer.isdigit() and 1 <= int(answer) <= count:
            return int(answer)
        console.info(f"Type a number from 1 to {count}" + (f", or {extra}." if extra else "."))


def pick_assistant(client: OpenAI, console: Console) -> Assistant | None:
    assistants = client.beta.assistants.list(limit=100, order="desc").data
    if not assistants:
        console.info("No assistants yet: let's create one.")
        return create_assistant(client, console)
    console.info("Assistants:")
    for number, assistant in enumerate(assistants, 1):
        console.info(f"  {number}. {assistant.name or '(no name)'}  [{assistant.model}]  {assistant.id}")
    console.info("  n. create a new assistant")
    choice = _choose(console, f"Choose 1-{len(assistants)} or n: ", len(assistants), extra="n")
    if choice is None:
        return None
    if choice == "n":
        return create_assistant(client, console)
    assert isinstance(choice, int)
    return assistants[choice - 1]


def pick_model(client: OpenAI, console: Console) -> str | None:
    models = [model.id for model in client.models.list()]
    if not models:
        answer = console.ask("Model id: ")
        return answer.strip() if answer else None
    console.info("Models:")
    for number, model in enumerate(models, 1):
        console.info(f"  {number}. {model}")
    while True:
        answer = console.ask(f"Model [1-{len(models)}, Enter for 1]: ")
        if answer is None:
            return None
        answer = answer.strip()
        if not answer:
            return models[0]
        if answer.isdigit() and 1 <= int(answer) <= len(models):
            return models[int(answer) - 1]
        if answer in models:
            return answer
        console.info(f"Type a number from 1 to {len(models)}.")


def create_assistant(client: OpenAI, console: Console) -> Assistant | None:
    name = console.ask("Name: ")
    if name is None:
        return None
    model = pick_model(client, console)
    if model is None:
        return None
    instructions = console.ask("Instructions (one line, may be empty): ")
    if instructions is None:
        return None
    assistant = client.beta.assistants.create(
        model=model, name=name.strip() or None, instructions=instructions.strip() or None
    )
    console.info(f"Created {assistant.id}.")
    return assistant


# A file_citation's marker (【0:1†notes.md】, OpenAI's 【4:0†source】) names its source after the dagger.
_MARKER = re.compile(r"【[^】]*】")
_CITED_NAME = re.compile(r"†([^】]*)】$")


class Footnotes:
    """Shows a reply's citation markers as [1], [2] (one number per cited passage) and lists the sources
    after the reply, as a terminal shows footnotes."""

    def __init__(self) -> None:
        self.numbers: dict[str, int] = {}
        self.names: list[str] = []

    def apply(self, value: str, annotations: Sequence[Annotation | AnnotationDelta]) -> str:
        for annotation in annotations:
            # Replies stored before assistd kept markers cite a whole sentence: that text stays.
            if annotation.type != "file_citation" or not _MARKER.fullmatch(annotation.text or ""):
                continue
            marker = annotation.text or ""
            if marker not in self.numbers:
                self.numbers[marker] = len(self.numbers) + 1
                named = _CITED_NAME.search(marker)
                cited = annotation.file_citation
                self.names.append(named.group(1) if named else (cited and cited.file_id) or "source")
            value = value.replace(marker, f"[{self.numbers[marker]}]")
        return value

    def lines(self) -> str:
        return "".join(f"[{n}] {name}\n" for n, name in enumerate(self.names, start=1))


def _text_of(content: Sequence[MessageContent]) -> str:
    shown = []
    for block in content:
        if block.type == "text":
            notes = Footnotes()
            value = notes.apply(block.text.value, block.text.annotations)
            shown.append(value + ("\n" + notes.lines().rstrip("\n") if notes.names else ""))
    return "".join(shown)


def show_history(client: OpenAI, console: Console, thread_id: str, assistant_name: str) -> None:
    recent = client.beta.threads.messages.list(thread_id=thread_id, order="desc", limit=HISTORY_SHOWN).data
    if not recent:
        return
    console.info(f"Last {len(recent)} messages:")
    for message in reversed(recent):
        speaker = "you" if message.role == "user" else assistant_name
        console.write(f"{speaker}: {_text_of(message.content)}\n")


# --------------------------------------------------------------------------------------------------
# One turn: a streamed run, with tool calls answered on the terminal
# --------------------------------------------------------------------------------------------------


class ReplyPrinter(AssistantEventHandler):
    """Writes the reply as it streams, and a line for each built-in tool the run uses."""

    def __init__(self, console: Console, speaker: str) -> None:
        super().__init__()
        self.console = console
        self.speaker = speaker
        self.footnotes = Footnotes()

    def on_event(self, event: AssistantStreamEvent) -> None:
        if event.event in ("thread.run.requires_action", "thread.run.completed", "thread.run.failed"):
            self.console.spinner.stop()

    def on_text_created(self, text: Text) -> None:
        self.console.spinner.stop()
        self.footnotes = Footnotes()
        if self.console.interactive:
            self.console.write(f"{self.speaker}: ")

    def on_text_delta(self, delta: TextDelta, snapshot: Text) -> None:
        self.console.spinner.stop()
        # assistd sends each marker whole, in the delta that carries its annotation.
        self.console.write(self.footnotes.apply(delta.value or "", delta.annotations or []))

    def on_text_done(self, text: Text) -> None:
        self.console.write("\n" + self.footnotes.lines())
        self.footnotes = Footnotes()

    def on_tool_call_created(self, tool_call: ToolCall) -> None:
        # Function calls are shown when the run asks for their outputs, with their whole arguments.
        if tool_call.type == "file_search":
            self.console.spinner.stop()
            self.console.info("[searching files…]")
        elif tool_call.type == "code_interpreter":
            self.console.spinner.stop()
            self.console.info("[running code…]")

    def on_tool_call_done(self, tool_call: ToolCall) -> None:
        # The code and what it printed, as a notebook shows them; images and files are named by id.
        if tool_call.type != "code_interpreter":
            return
        self.console.spinner.stop()
        lines = ["[code]", *("  " + line for line in tool_call.code_interpreter.input.splitlines())]
        for output in tool_call.code_interpreter.outputs or []:
            if output.type == "logs":
                lines += ["[output]", *("  " + line for line in (output.logs or "").splitlines())]
            elif output.type == "image" and output.image is not None:
                lines.append(f"[image {output.image.file_id}]")
        self.console.info("\n".join(lines))


Opener = Callable[[ReplyPrinter], AssistantStreamManager[ReplyPrinter]]


@dataclass
class Chat:
    client: OpenAI
    console: Console
    assistant: Assistant
    thread_id: str
    printer: ReplyPrinter | None = field(default=None, repr=False)

    @property
    def speaker(self) -> str:
        return self.assistant.name or "assistant"

    def new_thread(self) -> None:
        self.thread_id = self.client.beta.threads.create().id
        self.console.info(f"New thread {self.thread_id} (resume it with --thread {self.thread_id}).")

    def turn(self, text: str) -> None:
        """Sends ``text`` and streams the reply, answering function calls until the run ends."""
        run = self._stream(
            lambda printer: self.client.beta.threads.runs.stream(
                thread_id=self.thread_id,
                assistant_id=self.assistant.id,
                additional_messages=[{"role": "user", "content": text}],
                event_handler=printer,
            )
        )
        while run is not None and run.status == "requires_action":
            outputs = self._ask_tool_outputs(run)
            if outputs is None:
                self.cancel()
                return
            run = self._stream(self._submission(run.id, outputs))
        if run is not None and run.status in END_STATUSES_WORTH_A_NOTE:
            self.console.info(_end_note(run))

    def _submission(self, run_id: str, outputs: list[ToolOutput]) -> Opener:
        def open_stream(printer: ReplyPrinter) -> AssistantStreamManager[ReplyPrinter]:
            return self.client.beta.threads.runs.submit_tool_outputs_stream(
                run_id=run_id, thread_id=self.thread_id, tool_outputs=outputs, event_handler=printer
            )

        return open_stream

    def _stream(self, open_stream: Opener) -> Run | None:
        self.printer = ReplyPrinter(self.console, self.speaker)
        self.console.spinner.start()
        try:
            with open_stream(self.printer) as stream:
                stream.until_done()
                return stream.current_run
        finally:
            self.console.spinner.stop()

    def _ask_tool_outputs(self, run: Run) -> list[ToolOutput] | None:
        assert run.required_action is not None
        outputs: list[ToolOutput] = []
        for call in run.required_action.submit_tool_outputs.tool_calls:
            self.console.info(f"[function call] {call.function.name}({call.function.arguments})")
            output = self.console.ask(f"output of {call.function.name}> ")
            if output is None:
                return None
            outputs.append({"tool_call_id": call.id, "output": output})
        return outputs

    def cancel(self, *, interrupted: bool = False) -> None:
        """Cancels the run in progress, if any, so the thread is free for the next one."""
        run = self.printer.current_run if self.printer else None
        if run is None or run.status in ("completed", "failed", "cancelled", "expired", "incomplete"):
            return
        if not interrupted:
            with contextlib.suppress(openai.OpenAIError):
                self.client.beta.threads.runs.cancel(run_id=run.id, thread_id=self.thread_id)
            return
        # A Ctrl-C lands wherever the main thread is, possibly inside the HTTP client's connection pool,
        # which a request through the same client could then wait on forever: the cancel that follows an
        # interrupt goes through a client of its own, bounded, so that the program always exits.
        with (
            OpenAI(
                base_url=self.client.base_url, api_key=self.client.api_key, timeout=10.0, max_retries=1
            ) as client,
            contextlib.suppress(openai.OpenAIError),
        ):
            client.beta.threads.runs.cancel(run_id=run.id, thread_id=self.thread_id)


def _end_note(run: Run) -> str:
    if run.status == "failed" and run.last_error is not None:
        return f"[run failed: {run.last_error.message}]"
    if run.status == "incomplete" and run.incomplete_details is not None:
        return f"[reply cut short: {run.incomplete_details.reason}]"
    return f"[run {run.status}]"


def converse(chat: Chat) -> None:
    """Reads lines until /exit or the end of the input; each one is a turn or a command."""
    prompt = "you> " if chat.console.interactive else ""
    while True:
        line = chat.console.ask(prompt)
        if line is None:
            return
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            return
        if text == "/help":
            chat.console.info(HELP)
        elif text == "/new":
            chat.new_thread()
        elif text.startswith("/") and " " not in text:
            chat.console.info(f"Unknown command {text}. /help lists the commands.")
        else:
            try:
                chat.turn(text)
            except openai.APIError as exc:
                chat.console.info(f"[error: {_describe(exc)}]")


def _describe(exc: openai.OpenAIError) -> str:
    if isinstance(exc, openai.APIStatusError):
        body = exc.body
        if isinstance(body, dict):
            error = body.get("error", body)
            if isinstance(error, dict) and isinstance(error.get("message"), str):
                return f"{exc.status_code} {error['message']}"
        return f"{exc.status_code} {exc.message}"
    return str(exc)


# --------------------------------------------------------------------------------------------------
# The server: a running one, or one started in this process
# --------------------------------------------------------------------------------------------------


class EmbeddedServer:
    """The assistd app under uvicorn in a background thread, on a free loopback port."""

    def __init__(self, log_level: str) -> None:
        import uvicorn

        from .app import create_app
        from .config import Settings

        self.settings = Settings()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        port = int(self._sock.getsockname()[1])
        self.base_url = f"http://127.0.0.1:{port}/v1"
        config = uvicorn.Config(
            create_app(self.settings),
            log_level=log_level.lower(),
            access_log=False,
            timeout_graceful_shutdown=5,
        )
        self._server = uvicorn.Server(config)
        # uvicorn installs signal handlers only on the main thread, so Ctrl-C stays ours.
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def start(self, timeout: float = 120.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the embedded server stopped while starting (see the log above)")
            if time.monotonic() > deadline:
                raise RuntimeError("the embedded server did not start in time")
            time.sleep(0.02)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)
        self._sock.close()


def _first_env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def _connect(args: argparse.Namespace, embedded: EmbeddedServer | None) -> OpenAI:
    if embedded is not None:
        url = embedded.base_url
        keys = embedded.settings.api_key_list
        key = args.key or _first_env("ASSISTD_KEY") or (keys[0] if keys else PLACEHOLDER_KEY)
    else:
        url = args.url or _first_env("ASSISTD_URL", "OPENAI_BASE_URL") or DEFAULT_URL
        key = args.key or _first_env("ASSISTD_KEY", "OPENAI_API_KEY") or PLACEHOLDER_KEY
    return OpenAI(base_url=url, api_key=key)


def _open_chat(client: OpenAI, console: Console, args: argparse.Namespace) -> Chat | None:
    if args.assistant:
        assistant: Assistant | None = client.beta.assistants.retrieve(args.assistant)
    else:
        assistant = pick_assistant(client, console)
    if assistant is None:
        return None
    console.info(f"Chatting with {assistant.name or assistant.id} ({assistant.model}). /help for commands.")
    chat = Chat(client, console, assistant, thread_id="")
    if args.thread:
        chat.thread_id = client.beta.threads.retrieve(args.thread).id
        console.info(f"Resuming thread {chat.thread_id}.")
        show_history(client, console, chat.thread_id, chat.speaker)
    else:
        chat.new_thread()
    return chat


def _session(args: argparse.Namespace, console: Console, embedded: EmbeddedServer | None) -> int:
    chat: Chat | None = None
    with _connect(args, embedded) as client:
        try:
            chat = _open_chat(client, console, args)
            if chat is not None:
                converse(chat)
        except KeyboardInterrupt:
            console.spinner.stop()
            console.write("\n")
            if chat is not None:
                chat.cancel(interrupted=True)
        except openai.APIConnectionError as exc:
            console.spinner.stop()
            console.stderr.write(f"assistd chat: cannot reach {client.base_url}: {exc}\n")
            return 1
        except openai.APIStatusError as exc:
            console.spinner.stop()
            console.stderr.write(f"assistd chat: {_describe(exc)}\n")
            return 1
    return 0


def run(args: argparse.Namespace) -> int:
    """The ``assistd chat`` command; returns the exit status."""
    console = Console(sys.stdin, sys.stdout, sys.stderr)
    embedded: EmbeddedServer | None = None
    try:
        if args.embedded:
            embedded = EmbeddedServer(args.log_level)
            with console.spinner.around("starting assistd"):
                embedded.start()
        return _session(args, console, embedded)
    except KeyboardInterrupt:
        console.write("\n")
        return 0
    except RuntimeError as exc:
        console.stderr.write(f"assistd chat: {exc}\n")
        return 1
    finally:
        if embedded is not None:
            embedded.stop()
