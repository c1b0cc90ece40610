"""The HTTP response parser gopark gives pymesos (its http-parser dependency does not build on 3.11+)."""
from __future__ import annotations

import json
import random

import pytest

from gopark.scheduler.mesos_http import HttpParser


def _stream(events: list[dict], chunk_sizes: list[int]) -> bytes:
    """A SUBSCRIBE answer: RecordIO records inside an HTTP chunked body, cut into chunks of these sizes."""
    body = b"".join(b"%d\n%s" % (len(r), r) for r in (json.dumps(e).encode() for e in events))
    head = b"HTTP/1.1 200 OK\r\nMesos-Stream-Id: abc\r\nTransfer-Encoding: chunked\r\n\r\n"
    out, i = [head], 0
    for size in chunk_sizes:
        piece, i = body[i:i + size], i + size
        if piece:
            out.append(b"%x;ext=1\r\n%s\r\n" % (len(piece), piece))
    out.append(b"%x\r\n%s\r\n" % (len(body[i:]), body[i:]) if body[i:] else b"")
    return b"".join(out) + b"0\r\n\r\n"


@pytest.mark.parametrize("seed", range(20))
def test_records_come_out_whole_however_the_bytes_arrive(seed: int) -> None:
    rnd = random.Random(seed)
    events = [{"type": "OFFERS", "n": i, "pad": "x" * rnd.randrange(0, 300)} for i in range(30)]
    data = _stream(events, [rnd.randrange(1, 200) for _ in range(40)])
    p, body = HttpParser(), b""
    i = 0
    while i < len(data):
        n = rnd.randrange(1, 50)
        assert p.execute(data[i:i + n], len(data[i:i + n])) == len(data[i:i + n])
        i += n
        if p.is_partial_body():
            body += p.recv_body()
    assert p.is_headers_complete() and p.get_status_code() == 200 and p.is_chunked()
    assert p.get_headers()["Mesos-Stream-Id"] == "abc" and p.is_message_complete()
    got = []
    while body:
        length, _, rest = body.partition(b"\n")
        got.append(json.loads(rest[:int(length)]))
        body = rest[int(length):]
    assert got == events


def test_a_sized_body_and_errors() -> None:
    p = HttpParser()
    data = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 5\r\n\r\nno id"
    assert p.execute(data, len(data)) == len(data)
    assert p.get_status_code() == 400 and not p.is_chunked() and p.recv_body() == b"no id"
    assert p.is_message_complete()
    bad = HttpParser()
    data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nabc"
    assert bad.execute(data, len(data)) == 0 and bad.get_errno() != 0    # an error, not a hang
