"""The code_interpreter worker: one long-lived Python namespace that runs the code the server sends.

It runs inside the sandbox under the sandbox's own interpreter, so it imports nothing but the standard
library (and matplotlib, when the model's code has imported it). The server writes one JSON request per
line on stdin; the worker answers one JSON line on the descriptor that was stdout when it started.
Its own stdout and stderr (and those of any process the code starts) go to a capture file, read back
after each call, so nothing the code prints can break the protocol.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import io
import json
import linecache
import os
import signal
import site
import sys
import traceback
import warnings
from typing import Any

# What one call's logs may hold; the rest is cut with a note, so a print loop cannot flood the run.
LOG_LIMIT = 32_000


class _Namespace(dict[str, Any]):
    pass


def _block_sockets() -> None:
    """The fallback where no network namespace could be made: refuse sockets in Python."""
    import socket

    def refuse(*args: object, **kwargs: object) -> Any:
        raise PermissionError("Network access is disabled in this sandbox.")

    class NoSocket(socket.socket):
        def __init__(self, *args: object, **kwargs: object) -> None:
            refuse()

    socket.socket = NoSocket  # type: ignore[misc]
    socket.create_connection = refuse
    socket.socketpair = refuse


class Worker:
    def __init__(self, capture_path: str) -> None:
        self.main_pid = os.getpid()
        self.namespace = _Namespace(__name__="__main__", __builtins__=__builtins__)
        self.cells = 0
        self.capture_path = capture_path
        # The replies keep the original stdout; the code's stdout and stderr go to the capture file.
        self.reply = os.fdopen(os.dup(1), "w", encoding="utf-8")
        capture = os.open(capture_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(capture, 1)
        os.dup2(capture, 2)
        os.close(capture)
        sys.stdout = io.TextIOWrapper(
            os.fdopen(1, "wb", closefd=False), encoding="utf-8", line_buffering=True
        )
        sys.stderr = io.TextIOWrapper(
            os.fdopen(2, "wb", closefd=False), encoding="utf-8", line_buffering=True
        )

    def serve(self) -> None:
        self._answer({"ready": True, "pid": self.main_pid})
        for line in sys.stdin:
            try:
                request = json.loads(line)
            except json.JSONDecodeError:
                continue
            self._answer(self.execute(str(request.get("code", ""))))

    def _answer(self, payload: dict[str, Any]) -> None:
        self.reply.write(json.dumps(payload) + "\n")
        self.reply.flush()

    def execute(self, code: str) -> dict[str, Any]:
        self._reap_children()
        self._reset_capture()
        error: dict[str, str] | None = None
        try:
            self._run(code)
        except KeyboardInterrupt:
            error = {"name": "KeyboardInterrupt", "value": "Execution was interrupted."}
            print("KeyboardInterrupt: execution was interrupted.", file=sys.stderr)
        except SystemExit as exc:
            error = {"name": "SystemExit", "value": str(exc.code)}
        except BaseException as exc:
            error = {"name": type(exc).__name__, "value": str(exc)[:2000]}
            self._print_traceback(exc)
        finally:
            if os.getpid() != self.main_pid:
                # A process the code forked ran off the end of the cell: it must never answer the server.
                os._exit(0)
        images = self._figures()
        return {"logs": self._read_capture(), "images": images, "error": error}

    def _run(self, code: str) -> None:
        self.cells += 1
        filename = f"<cell {self.cells}>"
        linecache.cache[filename] = (len(code), None, code.splitlines(keepends=True), filename)
        tree = ast.parse(code, filename=filename, mode="exec")
        last: ast.expr | None = None
        if tree.body and isinstance(final := tree.body[-1], ast.Expr):
            tree.body.pop()
            last = final.value
        exec(compile(tree, filename, "exec"), self.namespace)
        if last is not None:
            value = eval(compile(ast.Expression(last), filename, "eval"), self.namespace)
            if value is not None:
                # Like a notebook: the value of a cell's last expression is shown.
                print(repr(value))

    @staticmethod
    def _reap_children() -> None:
        # Processes the code started and the server killed: reaped, or they count against the limit.
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return

    def _print_traceback(self, exc: BaseException) -> None:
        try:
            tb = exc.__traceback__
            # Drop the worker's own frames: the model should see its code's frames only.
            own = Worker._run.__code__.co_filename
            while tb is not None and tb.tb_frame.f_code.co_filename == own:
                tb = tb.tb_next
            if isinstance(exc, SyntaxError):
                tb = None
            print("".join(traceback.format_exception(type(exc), exc, tb)), end="", file=sys.stderr)
        except BaseException:
            print(f"{type(exc).__name__}: {exc}", file=sys.stderr)

    def _figures(self) -> list[str]:
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is None:
            return []
        images = []
        try:
            for number in pyplot.get_fignums():
                buffer = io.BytesIO()
                pyplot.figure(number).savefig(buffer, format="png")
                images.append(base64.b64encode(buffer.getvalue()).decode("ascii"))
            pyplot.close("all")
        except Exception as exc:
            print(f"Could not render a figure: {exc}", file=sys.stderr)
        return images

    def _reset_capture(self) -> None:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os.ftruncate(1, 0)
        os.lseek(1, 0, os.SEEK_SET)

    def _read_capture(self) -> str:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        with open(self.capture_path, "rb") as handle:
            data = handle.read(LOG_LIMIT + 1)
            size = os.fstat(handle.fileno()).st_size
        text = data[:LOG_LIMIT].decode("utf-8", errors="replace")
        if size > LOG_LIMIT:
            text += f"\n[... output cut: {size - LOG_LIMIT} more bytes ...]"
        return text


def main() -> None:
    config = json.loads(sys.argv[1])
    for directory in config.get("site_dirs", []):
        site.addsitedir(directory)
    if config.get("block_sockets"):
        _block_sockets()
    # Writing past the file-size limit must fail the write, not kill the worker.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    warnings.filterwarnings("ignore", message=".*non-interactive.*cannot be shown")
    os.chdir(config["workdir"])
    sys.path.insert(0, config["workdir"])
    Worker(config["capture"]).serve()


if __name__ == "__main__":
    main()
