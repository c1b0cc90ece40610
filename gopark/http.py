"""The HTTP client side of Mesos mode: shuffle buckets, broadcasts and large results travel by HTTP.

One ``requests`` session per process and thread keeps connections to each file
server open between fetches (a reducer reads one bucket from every map
output's server).
"""
from __future__ import annotations

import threading
import urllib.parse

import requests

_local = threading.local()


def session() -> requests.Session:
    """This thread's session (connections are kept alive and reused)."""
    s = getattr(_local, "session", None)
    if s is None:
        s = _local.session = requests.Session()
        s.trust_env = False      # never through a proxy from the environment: file servers are peers
    return s


def server_of(url: str) -> str:
    """``host:port`` of a URL."""
    return urllib.parse.urlsplit(url).netloc


def fetch(url: str, timeout: float = 300) -> bytes:
    """The whole body at ``url``; OSError (with the URL) if it cannot be had."""
    try:
        resp = session().get(url, timeout=(10, timeout))
        resp.raise_for_status()
        return resp.content
    except requests.RequestException as exc:
        raise OSError(f"cannot fetch {url}: {exc}") from exc
