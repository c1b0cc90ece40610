"""pymesos without its broken dependency.

pymesos 0.3.15 reads the master's and agent's HTTP responses through the
`http-parser` package, whose only release does not build on Python 3.11 and
later. gopark installs pymesos with ``--no-deps`` and, when `http_parser` is
missing, gives pymesos this module's small incremental response parser under
that name. It implements exactly the part of http-parser's API pymesos calls.

Use `import_pymesos()` wherever gopark needs pymesos: it installs the parser
first, then imports pymesos (which must happen in the main thread, since
pymesos sets a SIGINT handler when it is imported).
"""
from __future__ import annotations

import signal
import sys
import types
from collections.abc import Callable
from typing import Any

__all__ = ["HttpParser", "import_pymesos"]


class HttpParser:
    """Incremental parser of one HTTP/1.x response (status, headers, body).

    The body may be chunked, sized by Content-Length, or run until the
    connection closes (``execute(b"", 0)`` marks that end).
    """

    def __init__(self) -> None:
        self._buf = b""
        self._status: int | None = None
        self._headers: dict[str, str] = {}
        self._headers_done = False
        self._chunked = False
        self._length: int | None = None  # remaining bytes of a sized body
        self._chunk_left = 0  # remaining bytes of the current chunk, -1 = need its size line
        self._body: list[bytes] = []
        self._complete = False
        self._errno = 0

    # --- what pymesos calls ---------------------------------------------
    def execute(self, data: bytes, length: int) -> int:
        if length == 0:
            self._complete = True
            return 0
        self._buf += bytes(data[:length])
        try:
            self._parse()
        except ValueError:
            self._errno = 1
            return 0
        return length

    def get_errno(self) -> int:
        return self._errno

    def is_headers_complete(self) -> bool:
        return self._headers_done

    def get_status_code(self) -> int | None:
        return self._status

    def get_headers(self) -> dict[str, str]:
        return dict(self._headers)

    def is_chunked(self) -> bool:
        return self._chunked

    def is_partial_body(self) -> bool:
        return bool(self._body)

    def recv_body(self) -> bytes:
        body = b"".join(self._body)
        self._body = []
        return body

    def is_message_complete(self) -> bool:
        return self._complete

    # --- parsing ----------------------------------------------------------
    def _parse(self) -> None:
        if not self._headers_done:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self._buf = self._buf[:end].decode("latin-1"), self._buf[end + 4:]
            status_line, *lines = head.split("\r\n")
            parts = status_line.split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/"):
                raise ValueError(f"bad status line {status_line!r}")
            self._status = int(parts[1])
            for line in lines:
                name, sep, value = line.partition(":")
                if not sep:
                    raise ValueError(f"bad header line {line!r}")
                self._headers[name.strip()] = value.strip()
            lowered = {k.lower(): v for k, v in self._headers.items()}
            self._chunked = "chunked" in lowered.get("transfer-encoding", "").lower()
            if not self._chunked and "content-length" in lowered:
                self._length = int(lowered["content-length"])
            self._chunk_left = -1
            self._headers_done = True
        if self._chunked:
            self._parse_chunks()
        elif self._length is not None:
            take = self._buf[: self._length]
            self._buf = self._buf[len(take):]
            self._length -= len(take)
            if take:
                self._body.append(take)
            if self._length == 0:
                self._complete = True
        elif self._buf:
            self._body.append(self._buf)
            self._buf = b""

    def _parse_chunks(self) -> None:
        while not self._complete:
            if self._chunk_left == -1:
                end = self._buf.find(b"\r\n")
                if end < 0:
                    return
                size_text = self._buf[:end].split(b";", 1)[0].strip()
                if not size_text or size_text.strip(b"0123456789abcdefABCDEF"):
                    raise ValueError(f"bad chunk size {size_text!r}")
                self._buf = self._buf[end + 2:]
                self._chunk_left = int(size_text, 16)
                if self._chunk_left == 0:
                    self._complete = True  # trailers, if any, are ignored
                    return
            if self._chunk_left > 0:
                take = self._buf[: self._chunk_left]
                if not take:
                    return
                self._buf = self._buf[len(take):]
                self._chunk_left -= len(take)
                self._body.append(take)
            if self._chunk_left == 0:
                if len(self._buf) < 2:
                    return
                self._buf = self._buf[2:]  # the CRLF after a chunk's data
                self._chunk_left = -1


def import_pymesos() -> Any:
    """Import pymesos, providing `http_parser.http.HttpParser` if it is absent.

    pymesos replaces the SIGINT handler when imported; gopark keeps the one it
    found, so Ctrl-C still raises KeyboardInterrupt in the driver.
    """
    try:
        import http_parser.http  # noqa: F401
    except ImportError:
        package = types.ModuleType("http_parser")
        package.__path__ = []  # a package, so `http_parser.http` resolves
        http = types.ModuleType("http_parser.http")
        http.HttpParser = HttpParser  # type: ignore[attr-defined]
        package.http = http  # type: ignore[attr-defined]
        sys.modules.setdefault("http_parser", package)
        sys.modules.setdefault("http_parser.http", http)
    previous = signal.getsignal(signal.SIGINT)
    try:
        import pymesos
    except ImportError as exc:
        from gopark.errors import ConfigError
        raise ConfigError("Mesos mode needs pymesos: `pip install --no-deps pymesos==0.3.15`, then build the "
                          f"app again ({exc})") from exc

    if previous is not None:
        signal.signal(signal.SIGINT, previous)
    import pymesos.process
    if not isinstance(pymesos.process.thread, _IoAbort):
        pymesos.process.thread = _IoAbort(pymesos.process)
    return pymesos


#: called with the exception that ended pymesos' I/O thread (a master that dropped the framework answers 403)
io_abort_handlers: list[Callable[[BaseException], None]] = []


class _IoAbort:
    """What pymesos' process module calls ``thread``: it calls ``thread.interrupt_main()`` when its I/O thread
    dies, to raise the thread's exception in the main thread through pymesos' SIGINT handler, which gopark
    does not keep (see above): the app would get a bare KeyboardInterrupt. While a Mesos backend listens
    (``io_abort_handlers``), it gets the exception instead, and fails its tasks with it."""

    def __init__(self, process: Any) -> None:
        self._process = process
        self._thread = process.thread

    def interrupt_main(self) -> None:
        exc_info, self._process._exc_info = self._process._exc_info, None
        if not io_abort_handlers:
            self._thread.interrupt_main()
            return
        for handler in list(io_abort_handlers):
            handler(exc_info[1] if exc_info else RuntimeError("pymesos' I/O thread ended"))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._thread, name)
