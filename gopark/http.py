"""The HTTP client side of Mesos mode: shuffle buckets, broadcasts and large results travel by HTTP.

The standard library's ``http.client``, one kept-alive connection per file
server and thread (a reducer reads one bucket from every map output's server).
Not ``requests``: its import pulls ``cryptography`` into every frozen binary
(11 MB more to unpack at each start of a onefile app) for plain GETs between
peers.
"""
from __future__ import annotations

import http.client
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager

_local = threading.local()


class NotFound(OSError):
    """The server answered 404: what was asked for is gone."""


def server_of(url: str) -> str:
    """``host:port`` of a URL."""
    return urllib.parse.urlsplit(url).netloc


def _connection(netloc: str, timeout: float) -> http.client.HTTPConnection:
    conns = getattr(_local, "conns", None)
    if conns is None:
        conns = _local.conns = {}
    conn = conns.get(netloc)
    if conn is None:
        conn = conns[netloc] = http.client.HTTPConnection(netloc, timeout=timeout)
    conn.timeout = timeout
    return conn


def _drop(netloc: str) -> None:
    conn = getattr(_local, "conns", {}).pop(netloc, None)
    if conn is not None:
        conn.close()


@contextmanager
def get(url: str, timeout: float = 300) -> Iterator[http.client.HTTPResponse]:
    """GET ``url``: the response (status 200 or 204) to read from.

    NotFound for 404, OSError for anything else that goes wrong (connection
    refused, reset, another status). A kept-alive connection the server has
    closed meanwhile is opened again once.
    """
    parts = urllib.parse.urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    for attempt in (1, 2):
        conn = _connection(parts.netloc, timeout)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            break
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            _drop(parts.netloc)
            if attempt == 2:
                raise
        except (OSError, http.client.HTTPException):
            _drop(parts.netloc)
            raise
    ok = False
    try:
        if resp.status == 404:
            raise NotFound(f"{url}: 404 Not Found")
        if resp.status not in (200, 204):
            raise OSError(f"{url}: HTTP {resp.status} {resp.reason}")
        yield resp
        ok = resp.isclosed() or not resp.read()    # read to the end, so the connection can serve again
    except http.client.HTTPException as exc:
        raise OSError(f"{url}: {exc}") from exc
    finally:
        if not ok:
            _drop(parts.netloc)


def fetch(url: str, timeout: float = 300) -> bytes:
    """The whole body at ``url``; OSError (NotFound for 404) naming the URL if it cannot be had."""
    try:
        with get(url, timeout) as resp:
            return resp.read()
    except NotFound:
        raise
    except OSError as exc:
        raise OSError(f"cannot fetch {url}: {exc}") from exc
