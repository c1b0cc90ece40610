"""How files cross machines in Mesos mode: the file server, and shuffle buckets and broadcasts read over HTTP.

Real sockets on loopback: a map output written by one "executor" (its work
folder served by a FileServer) is read by a reducer elsewhere through its URL;
a bucket the map did not write is empty, a removed output or a server that is
gone is a FetchFailed naming every output lost with it.
"""
from __future__ import annotations

import array
import os
import time
import urllib.request

import pytest

from gopark import http, serialize, shared
from gopark.errors import FetchFailed
from gopark.partitioner import HashPartitioner
from gopark.registry import register_func
from gopark.shuffle import Keys, holds, locations_for, read_output, read_shuffle, write_map_output
from launcher.fileserver import FileServer, local_address


@pytest.fixture
def server(tmp_path):
    fs = FileServer("127.0.0.1")
    yield fs
    fs.stop()


def _outputs(tmp_path, fs: FileServer, n_maps: int = 3, reducers: int = 4) -> tuple[list[dict], list]:
    work = tmp_path / "work"
    base = fs.add_root("work", str(work))
    locations, records = [], []
    for m in range(n_maps):
        recs = [((m, i), ("v", i, b"\x00\xff", {1, 2})) for i in range(50)]
        records += recs
        path, sent = write_map_output(recs, str(work / "shuffle"), 7, m, 0, HashPartitioner(reducers), None, None,
                                      1 << 26, compress=(m % 2 == 0))
        locations.append({"host": "h", "path": path, "url": f"{base}/{os.path.relpath(path, work)}", "sent": sent})
    return locations, records


def test_buckets_read_over_http_equal_the_map_outputs(tmp_path, server: FileServer) -> None:
    locations, records = _outputs(tmp_path, server)
    got = []
    for r in range(4):
        got += list(read_shuffle(7, locations, r, here="http://elsewhere:1/work"))
    assert sorted(got) == sorted(records)
    local = [p for r in range(4) for p in read_shuffle(7, locations, r, here=server.url + "/work")]
    assert sorted(local) == sorted(records)


def test_a_bucket_the_map_did_not_write_is_empty(tmp_path, server: FileServer) -> None:
    locations, _ = _outputs(tmp_path, server, n_maps=1, reducers=64)
    for here in (None, "http://elsewhere:1/work"):        # read locally, and over HTTP
        for needed in ([[r] for r in range(64)], [list(range(64))]):    # a reducer a task, or all in one
            counts = [len(list(read_shuffle(7, locations_for(locations, rs), r, here=here)))
                      for rs in needed for r in rs]
            assert 0 in counts and sum(counts) == 50


def test_a_removed_output_is_a_fetch_failure_naming_it(tmp_path, server: FileServer) -> None:
    locations, _ = _outputs(tmp_path, server)
    os.remove(locations[1]["path"])
    with pytest.raises(FetchFailed) as info:
        list(read_shuffle(7, locations, 0, here="http://elsewhere:1/work"))
    assert info.value.missing == [(1, locations[1]["path"])]


def test_a_server_that_is_gone_loses_every_output_it_held(tmp_path) -> None:
    fs = FileServer("127.0.0.1")
    locations, _ = _outputs(tmp_path, fs)
    fs.stop()
    with pytest.raises(FetchFailed) as info:
        list(read_shuffle(7, locations, 0, here="http://elsewhere:1/work"))
    assert sorted(info.value.missing) == sorted((m, loc["path"]) for m, loc in enumerate(locations))


def test_broadcast_loaded_from_a_url(tmp_path, server: FileServer) -> None:
    url = server.add_root("files", str(tmp_path))
    b = shared.new_broadcast({"k": (1, 2)}, str(tmp_path), url)
    assert b.path.startswith("http://127.0.0.1:")
    wire = serialize.packb(b, "test")
    remote = serialize.unpackb(wire)
    assert remote is not b and remote.value == {"k": (1, 2)}


def test_one_shot_files_go_once_served_and_nothing_escapes_a_root(tmp_path, server: FileServer) -> None:
    (tmp_path / "secret").write_bytes(b"no")
    (tmp_path / "root").mkdir()
    (tmp_path / "result").write_bytes(b"x" * 300_000)
    server.add_root("root", str(tmp_path / "root"))
    url = server.publish("result/1", str(tmp_path / "result"), one_shot=True)
    assert http.fetch(url) == b"x" * 300_000
    deadline = time.monotonic() + 5      # removed by the server right after the last byte went out
    while (tmp_path / "result").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not (tmp_path / "result").exists()
    with pytest.raises(http.NotFound):
        http.fetch(url)
    for path in ("/root/../secret", "/root/%2e%2e/secret", "/nothing/secret"):
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(server.url + path)
        assert info.value.code == 404


def test_serves_on_the_address_that_reaches_the_peer_only(server: FileServer) -> None:
    assert local_address("127.0.0.1:5050") == "127.0.0.1"
    assert server.url.startswith("http://127.0.0.1:")


def test_two_shuffles_read_at_once_from_one_server(tmp_path, server: FileServer) -> None:
    """zip of two shuffled RDDs reads two responses at once: each gets its own connection."""
    locations, records = _outputs(tmp_path, server)
    elsewhere = "http://elsewhere:1/work"
    pairs = list(zip(read_shuffle(7, locations, 0, elsewhere), read_shuffle(7, locations, 1, elsewhere)))
    n0, n1 = (len(list(read_shuffle(7, locations, r, elsewhere))) for r in (0, 1))
    assert len(pairs) == min(n0, n1) > 0


def test_an_output_the_driver_knows_lost_is_a_fetch_failure(tmp_path, server: FileServer) -> None:
    locations, _ = _outputs(tmp_path, server)
    locations[2] = None
    with pytest.raises(FetchFailed) as info:
        list(read_shuffle(7, locations, 0, here=None))
    assert info.value.missing == [(2, None)]


def test_a_bad_answer_is_an_oserror(tmp_path) -> None:
    import socket
    import threading
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def answer() -> None:
        conn, _ = listener.accept()
        conn.recv(4096)
        conn.sendall(b"garbage\r\n\r\n")
        conn.close()

    t = threading.Thread(target=answer)
    t.start()
    try:
        with pytest.raises(OSError):
            http.fetch(f"http://127.0.0.1:{listener.getsockname()[1]}/x")
    finally:
        t.join()
        listener.close()


def test_a_nul_in_a_path_is_not_found(tmp_path, server: FileServer) -> None:
    server.add_root("root", str(tmp_path))
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(server.url + "/root/a%00b")
    assert info.value.code == 404


def test_nothing_is_served_without_the_secret_in_the_url(tmp_path, server: FileServer) -> None:
    (tmp_path / "f").write_bytes(b"data")
    url = server.add_root("root", str(tmp_path)) + "/f"
    assert http.fetch(url) == b"data"
    address, secret = server.url.rsplit("/", 1)
    for wrong in (f"{address}/root/f", f"{address}/{secret[:-1]}x/root/f", f"{address}/%C3%A9/root/f"):
        with pytest.raises(http.NotFound):
            http.fetch(wrong)


def test_a_file_published_by_content_is_served_as_it_was_when_published(tmp_path, server: FileServer) -> None:
    """The driver's binary goes out under its content's hash: rebuilt meanwhile (``gopark build -o`` over
    it, a new file in its place), the bytes served under that hash are still the published ones, at once
    and in parallel, so agents never cache another binary under the hash."""
    binary = tmp_path / "app"
    binary.write_bytes(b"first build" * 100_000)
    url = server.publish_by_content("bin/aaaa/app", str(binary))
    fresh = tmp_path / "app.new"
    fresh.write_bytes(b"second build")
    os.replace(fresh, binary)
    assert http.fetch(url) == b"first build" * 100_000
    import concurrent.futures
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        assert set(pool.map(lambda _: http.fetch(url), range(8))) == {b"first build" * 100_000}
    assert server.publish_by_content("bin/bbbb/app", str(binary)).endswith("/bin/bbbb/app")
    assert http.fetch(server.url.rsplit("/", 1)[0] + "/bin/bbbb/app") == b"second build"


@pytest.mark.parametrize("pair", ["str keys", "int keys"])
def test_chunks_of_keys_alone_read_over_http_and_locally(tmp_path, server: FileServer, pair: str) -> None:
    """A map task of (key, 1) pairs writes their keys alone (ints as int32s), compressed or not: both reads
    give the pairs."""
    key_and_one = {"str keys": str_key_and_one, "int keys": int_key_and_one}[pair]
    work = tmp_path / "work"
    base = server.add_root("work", str(work))
    locations = []
    for m in range(2):
        path, _ = write_map_output(range(m * 1000, (m + 1) * 1000), str(work / "shuffle"), 8, m, 0,
                                   HashPartitioner(3), None, None, 1 << 26, compress=(m == 0),
                                   ops=[("map", key_and_one)])
        locations.append({"host": "h", "path": path, "url": f"{base}/{os.path.relpath(path, work)}"})
    chunks = [chunk for loc in locations for r in range(3) for chunk in read_output(loc["path"], r)]
    assert {type(chunk) for chunk in chunks} == {Keys}
    assert {type(chunk.keys) for chunk in chunks} == ({array.array} if pair == "int keys" else {list})
    expected = sorted(key_and_one(i) for i in range(2000))
    for here in ("http://elsewhere:1/work", server.url + "/work"):
        got = sorted(p for r in range(3) for p in read_shuffle(8, locations, r, here=here))
        assert got == expected and {type(k) for k, _ in got} == {type(expected[0][0])}
        assert {type(v) for _, v in got} == {int}


@register_func
def str_key_and_one(i: int) -> tuple[str, int]:
    return ("k" + str(i % 700), 1)


@register_func
def int_key_and_one(i: int) -> tuple[int, int]:
    return (i % 700 - 300, 1)


@register_func
def to_reducer_zero(i: int) -> tuple[int, int]:
    return (3 * i, i)          # HashPartitioner(3): every key to reducer 0


@pytest.mark.parametrize("where", ["over http", "locally"])
def test_an_empty_bucket_is_empty_and_a_missing_one_lost(tmp_path, server: FileServer, where: str) -> None:
    """A reducer a map task sent nothing has no bytes in its file, and the output's location says so: a task
    reading it alone is given no location for it; a task reading several reducers (a coalesce) is told
    which of them got nothing, and neither opens nor asks for them. An output missing that the location
    says holds something is lost."""
    work = tmp_path / "work"
    base = server.add_root("work", str(work))
    path, sent = write_map_output(range(30), str(work / "shuffle"), 9, 0, 0, HashPartitioner(3), None, None,
                                  1 << 26, compress=False, ops=[("map", to_reducer_zero)])
    assert [len(list(read_output(path, r))) > 0 for r in range(3)] == [True, False, False]
    here = server.url + "/work" if where == "locally" else "http://elsewhere:1/work"
    written = {"host": "h", "path": path, "url": f"{base}/{os.path.relpath(path, work)}", "sent": sent}
    assert locations_for([written], [1]) == [{"nothing": True}]
    several = locations_for([written], [0, 1, 2])
    assert [holds(several[0], r) for r in range(3)] == [True, False, False]
    assert "sent" not in locations_for([written], [0])[0]      # a task reading one reducer needs no bitmap
    assert sorted(read_shuffle(9, several, 0, here=here)) == [(3 * i, i) for i in range(30)]
    assert list(read_shuffle(9, several, 1, here=here)) == []
    assert list(read_shuffle(9, locations_for([written], [1]), 1, here=here)) == []
    os.remove(path)
    with pytest.raises(FetchFailed):
        list(read_shuffle(9, several, 0, here=here))
    with pytest.raises(FetchFailed):
        list(read_shuffle(9, locations_for([written], [0]), 0, here=here))
    assert list(read_shuffle(9, locations_for([written], [2]), 2, here=here)) == []    # not looked for
