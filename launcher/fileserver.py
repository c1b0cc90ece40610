"""A small HTTP file server: how files leave the machine that made them in Mesos mode.

The driver serves its own executable (to the agents' fetchers, under its
sha256) and the broadcasts of its work folder; each executor serves its work
folder, where map tasks leave shuffle buckets and large task results wait for
the driver. Reads only (GET/HEAD), only under the roots it was given, on the
one address it was given (never all interfaces).

Routes are ``/<secret>/<name>/<relative path>`` for each ``name -> folder``
root, plus single files published under a fixed path; ``url`` includes the
secret (random per server), so only the holders of a URL the driver handed
out can read anything, as only the driver's own workers can talk to it in
process mode. A file published by its content's hash (the driver's
executable) is served at ``/<route>`` instead, with no secret: its URL,
the same in every run (on the port that :class:`FileServer` tries first), is
what the agents' fetchers cache it under. So whoever can reach that port and
knows the hash (it is in the executor's description, which the Mesos master
shows, and `gopark build` prints it) can fetch the binary while a driver of
it runs: as whoever could read that description could with the secret URL
before, now in later runs too. A file published as *one-shot* is
deleted once it has been sent whole (a large task result, fetched once).
A reducer's part of a map output (one file, see ``gopark.shuffle``) is asked
for as ``<the output's file>/<reducer>``, and sent as the byte ranges its index
gives. A file that is not there answers 404, which a reducer reports as a lost
output (a reducer never asks for a bucket its map output's location says was
never written).
"""
from __future__ import annotations

import hmac
import http.server
import os
import secrets
import socket
import threading
import urllib.parse
from typing import Any

_BLOCK = 1 << 20


def local_address(peer: str) -> str:
    """The address of this machine that reaches ``peer`` (``host:port`` or host), e.g. to serve on.

    Connecting a UDP socket sends nothing; it only picks the route, so a
    driver talking to a master on loopback serves on loopback too.
    """
    host = peer.rsplit(":", 1)[0] if peer.count(":") == 1 else peer
    host = host.strip("[]") or "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.connect((host, 9))
        return s.getsockname()[0]


class FileServer:
    """Serves folders and files over HTTP on ``host`` from a thread: on ``port`` if it is free, else on an
    ephemeral one."""

    def __init__(self, host: str, port: int = 0) -> None:
        self._roots: dict[str, str] = {}
        self._files: dict[str, tuple[str, bool]] = {}
        # route -> the file, open since it was published, served without the secret
        self._by_content: dict[str, int] = {}
        self._lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                server._serve(self, body=True)

            def do_HEAD(self) -> None:  # noqa: N802
                server._serve(self, body=False)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server_class = type("Server", (http.server.ThreadingHTTPServer,), {
            "address_family": socket.AF_INET6 if ":" in host else socket.AF_INET, "daemon_threads": True})
        try:
            self._httpd = server_class((host, port), Handler)
        except OSError:          # taken (another driver of the same binary, another service): any port
            if not port:
                raise
            self._httpd = server_class((host, 0), Handler)
        bound_host, port = self._httpd.server_address[:2]
        # every URL starts with a secret: only those the driver handed a URL to can read anything
        self._secret = secrets.token_urlsafe(16)
        address = f"http://[{bound_host}]:{port}" if ":" in bound_host else f"http://{bound_host}:{port}"
        self.address = address
        self.url = f"{address}/{self._secret}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="gopark-fileserver",
                                        kwargs={"poll_interval": 0.2}, daemon=True)
        self._thread.start()

    def add_root(self, name: str, folder: str) -> str:
        """Serve the files under ``folder`` at ``<url>/<name>/...``; returns that URL prefix."""
        with self._lock:
            self._roots[name] = os.path.abspath(folder)
        return f"{self.url}/{name}"

    def publish(self, route: str, path: str, one_shot: bool = False) -> str:
        """Serve one file at ``<url>/<route>``; ``one_shot``: deleted once sent whole."""
        route = route.strip("/")
        with self._lock:
            self._files[route] = (os.path.abspath(path), one_shot)
        return f"{self.url}/{urllib.parse.quote(route)}"     # a name may hold a space (unquoted as served)

    def publish_by_content(self, route: str, path: str) -> str:
        """Serve one file at ``<address>/<route>``, no secret in it: ``route`` holds the hash of its content
        (see the module's description). The file is opened now and served from there: one replaced since
        (``gopark build -o`` over the running binary) does not go out under this content's route."""
        route = route.strip("/")
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        with self._lock:
            old = self._by_content.pop(route, None)
            self._by_content[route] = fd
        if old is not None:
            os.close(old)
        return f"{self.address}/{urllib.parse.quote(route)}"

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()
        with self._lock:
            fds, self._by_content = list(self._by_content.values()), {}
        for fd in fds:
            os.close(fd)

    # -- serving ---------------------------------------------------------------------
    def _resolve(self, url_path: str) -> tuple[str | None, bool]:
        full = urllib.parse.unquote(urllib.parse.urlsplit(url_path).path).strip("/")
        with self._lock:
            if full in self._by_content:      # the file it was when published: see _open
                return f"fd:{os.dup(self._by_content[full])}", False
        secret, _, route = full.partition("/")
        if not hmac.compare_digest(secret.encode(), self._secret.encode()):
            return None, False
        with self._lock:
            if route in self._files:
                return self._files[route]
            name, _, rel = route.partition("/")
            root = self._roots.get(name)
        if root is None or not rel:
            return None, False
        if "\0" in rel:
            return None, False
        path = os.path.realpath(os.path.join(root, rel))
        if not path.startswith(os.path.realpath(root) + os.sep):   # no way out of a root
            return None, False
        return path, False

    def _serve(self, h: http.server.BaseHTTPRequestHandler, body: bool) -> None:
        path, one_shot = self._resolve(h.path)
        ranges = None
        try:
            f = _open(path) if path else None
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
            f, ranges = _open_bucket(path) if path and not one_shot else (None, None)
        if f is None:
            h.send_response(404)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        with f:
            if ranges is None:
                ranges = [(0, os.fstat(f.fileno()).st_size)]
            h.send_response(200)
            h.send_header("Content-Type", "application/octet-stream")
            h.send_header("Content-Length", str(sum(end - start for start, end in ranges)))
            h.end_headers()
            if not body:
                return
            try:
                for start, end in ranges:
                    _copy(f, start, end, h.wfile)
                h.wfile.flush()
            except OSError:     # the reader went away; it will ask again or report the loss
                h.close_connection = True
                return
        if one_shot:
            with self._lock:
                self._files = {r: v for r, v in self._files.items() if v[0] != path}
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def _open_bucket(path: str) -> tuple[Any, list[tuple[int, int]] | None]:
    """One reducer's part of a map output, asked for as ``<the output's file>/<reducer>``: the file opened,
    and the byte ranges of that reducer's chunks in it (see ``gopark.shuffle``); (None, None) for any
    other path, or an output that is not whole."""
    output, name = os.path.split(path)
    if not name.isdigit() or not os.path.isfile(output):
        return None, None
    from gopark.shuffle import bucket_ranges  # here: the binary's route needs none of gopark
    try:
        f = open(output, "rb")  # noqa: SIM115 (closed by the caller)
    except OSError:
        return None, None
    try:
        return f, bucket_ranges(f.fileno(), int(name), output)
    except OSError:
        f.close()
        return None, None


def _copy(f: Any, start: int, end: int, out: Any) -> None:
    """Bytes ``[start, end)`` of ``f`` to ``out``."""
    f.seek(start)
    left = end - start
    while left > 0:
        block = f.read(min(_BLOCK, left))
        if not block:
            raise OSError("the file is shorter than it was")
        out.write(block)
        left -= len(block)


def _open(path: str) -> Any:
    """``path`` opened to read; ``fd:N``, a duplicate of a published file's descriptor (taken under the
    lock, so that stop() closing the original cannot hand its number to another file meanwhile), as a file
    of its own (its own offset: readers at once do not share one), the duplicate closed."""
    if not path.startswith("fd:"):
        return open(path, "rb")  # noqa: SIM115 (closed by the caller)
    fd = int(path[3:])
    try:
        return open(f"/proc/self/fd/{fd}", "rb")  # noqa: SIM115
    finally:
        os.close(fd)

