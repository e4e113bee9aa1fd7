"""A streaming reader of ``multipart/form-data`` bodies: part after part, a file's bytes as they arrive.

Starlette's form parser spools a whole upload to a temporary file before the endpoint runs, so a size
limit could only be checked afterwards; this reader hands the bytes over while the client still sends them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from ..errors import InvalidRequestError

# Parts and non-file values are small in every legitimate upload; these bounds keep a hostile one small.
MAX_PARTS = 32
MAX_FIELD_BYTES = 64 * 1024


@dataclass(frozen=True)
class Part:
    name: str
    filename: str | None
    content_type: str | None


_Event = tuple[str, Part | bytes | None]


def _decode(raw: bytes) -> str:
    # Clients send UTF-8 (RFC 7578); a few old ones send Latin-1, which decodes anything.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


class MultipartReader:
    def __init__(self, stream: AsyncIterator[bytes], boundary: bytes) -> None:
        self._stream = stream
        self._events: deque[_Event] = deque()
        self._exhausted = False
        self._ended = False
        self._parts = 0
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, bytes] = {}
        try:
            self._parser = MultipartParser(
                boundary,
                {
                    "on_part_begin": self._on_part_begin,
                    "on_header_field": self._on_header_field,
                    "on_header_value": self._on_header_value,
                    "on_header_end": self._on_header_end,
                    "on_headers_finished": self._on_headers_finished,
                    "on_part_data": self._on_part_data,
                    "on_part_end": self._on_part_end,
                    "on_end": self._on_end,
                },
            )
        except FormParserError as exc:
            raise InvalidRequestError(f"Invalid multipart boundary: {exc}") from None

    @classmethod
    async def of(cls, request: Request, file_param: str) -> MultipartReader:
        """The reader of a request's body; a body of another kind cannot hold the file it must carry."""
        kind, options = parse_options_header(request.headers.get("content-type"))
        boundary = options.get(b"boundary")
        if kind != b"multipart/form-data" or not boundary:
            await _drain(request.stream())
            raise InvalidRequestError(
                f"Missing required parameter: '{file_param}'. Uploads are sent as multipart/form-data "
                "(Content-Type: multipart/form-data; boundary=...).",
                param=file_param,
            )
        return cls(request.stream(), boundary)

    # Parser callbacks: they only record what was seen; the async methods below act on it.

    def _on_part_begin(self) -> None:
        self._headers = {}

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        self._headers[self._header_name.decode("latin-1").lower()] = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def _on_headers_finished(self) -> None:
        # Latin-1 maps bytes one to one, so the options below come back as the bytes the client sent.
        disposition = self._headers.get("content-disposition", b"").decode("latin-1")
        _, options = parse_options_header(disposition)
        name = options.get(b"name")
        filename = options.get(b"filename")
        content_type = self._headers.get("content-type")
        part = Part(
            name=_decode(name) if name is not None else "",
            filename=_decode(filename) if filename is not None else None,
            content_type=content_type.decode("latin-1") if content_type else None,
        )
        self._events.append(("headers", part))

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if end > start:
            self._events.append(("data", data[start:end]))

    def _on_part_end(self) -> None:
        self._events.append(("part_end", None))

    def _on_end(self) -> None:
        self._events.append(("end", None))

    async def _next_event(self) -> _Event | None:
        """The next thing the body holds; ``None`` once the client has sent all of it."""
        while not self._events:
            if self._exhausted:
                return None
            try:
                chunk = await anext(self._stream)
            except StopAsyncIteration:
                self._exhausted = True
                continue
            except ClientDisconnect:
                self._exhausted = True
                raise InvalidRequestError(
                    "The client closed the connection before the upload ended."
                ) from None
            try:
                self._parser.write(chunk)
            except FormParserError as exc:
                raise InvalidRequestError(f"The multipart/form-data body is malformed: {exc}") from None
        return self._events.popleft()

    async def next_part(self) -> Part | None:
        """The headers of the next part, skipping what is left of the current one; ``None`` after the last."""
        while (event := await self._next_event()) is not None:
            kind, value = event
            if kind == "headers" and isinstance(value, Part):
                self._parts += 1
                if self._parts > MAX_PARTS:
                    raise InvalidRequestError(f"A form may have at most {MAX_PARTS} parts.")
                return value
            if kind == "end":
                self._ended = True
        if not self._ended:
            raise InvalidRequestError("The multipart/form-data body ended before its closing boundary.")
        return None

    async def chunks(self) -> AsyncIterator[bytes]:
        """The bytes of the current part, as they arrive."""
        while (event := await self._next_event()) is not None:
            kind, value = event
            if kind == "data" and isinstance(value, bytes):
                yield value
            elif kind == "part_end":
                return
            else:
                self._events.appendleft(event)
                return

    async def field(self, name: str) -> str:
        """The current part read whole as a text value."""
        value = bytearray()
        async for chunk in self.chunks():
            value += chunk
            if len(value) > MAX_FIELD_BYTES:
                raise InvalidRequestError(
                    f"Invalid '{name}': a form value may be at most {MAX_FIELD_BYTES} bytes.", param=name
                )
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequestError(f"Invalid '{name}': the value is not UTF-8 text.", param=name) from None

    async def drain(self) -> None:
        """Read and drop the rest of the body (see ``_drain``)."""
        if not self._exhausted:
            self._exhausted = True
            await _drain(self._stream)


async def _drain(stream: AsyncIterator[bytes]) -> None:
    """Read and drop a body: a client still sending when the answer comes may never read that answer."""
    try:
        async for _ in stream:
            pass
    except ClientDisconnect:
        pass
