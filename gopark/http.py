"""The HTTP client side of Mesos mode: shuffle buckets, broadcasts and large results travel by HTTP.

The standard library's ``http.client``; an idle connection per file server and
thread is kept alive between fetches (a reducer reads one bucket from every
map output's server), and a fetch never shares a connection with another one
still being read.
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


def _take(netloc: str, timeout: float) -> http.client.HTTPConnection:
    """This thread's idle connection to ``netloc``, or a new one; the caller gives it back with
    ``_give`` once its response is read to the end (two responses read at once get two connections)."""
    idle = getattr(_local, "idle", None)
    if idle is None:
        idle = _local.idle = {}
    conn = idle.pop(netloc, None)
    if conn is None:
        conn = http.client.HTTPConnection(netloc, timeout=timeout)
    return conn


def _give(netloc: str, conn: http.client.HTTPConnection) -> None:
    old = _local.idle.pop(netloc, None)
    if old is not None:
        old.close()
    _local.idle[netloc] = conn


@contextmanager
def get(url: str, timeout: float = 300) -> Iterator[http.client.HTTPResponse]:
    """GET ``url``: the response (status 200) to read from.

    NotFound for 404, OSError for anything else that goes wrong (connection
    refused or reset, a bad answer, another status). A kept-alive connection
    the server has closed meanwhile is opened again once.
    """
    parts = urllib.parse.urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    for attempt in (1, 2):
        conn = _take(parts.netloc, timeout)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            break
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            conn.close()
            if attempt == 2:
                raise
        except http.client.HTTPException as exc:
            conn.close()
            raise OSError(f"{url}: {exc!r}") from exc
        except OSError:
            conn.close()
            raise
    ok = False
    try:
        if resp.status == 404:
            raise NotFound(f"{url}: 404 Not Found")
        if resp.status != 200:
            raise OSError(f"{url}: HTTP {resp.status} {resp.reason}")
        yield resp
        ok = resp.isclosed() or not resp.read()    # read to the end, so the connection can serve again
    except http.client.HTTPException as exc:
        raise OSError(f"{url}: {exc!r}") from exc
    finally:
        if ok:
            _give(parts.netloc, conn)
        else:
            conn.close()


def fetch(url: str, timeout: float = 300) -> bytes:
    """The whole body at ``url``; OSError (NotFound for 404) naming the URL if it cannot be had."""
    try:
        with get(url, timeout) as resp:
            return resp.read()
    except NotFound:
        raise
    except OSError as exc:
        raise OSError(f"cannot fetch {url}: {exc}") from exc
