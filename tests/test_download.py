"""Tests of condnn.download against a local HTTP server on 127.0.0.1.

The server runs in a daemon thread that serves one request at a time and stops by itself
after a deadline, whatever the tests do; each test leaves it by the fixture's teardown.
"""
from __future__ import annotations

import hashlib
import http.server
import os
import socket
import threading
import time
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from condnn import download as dl
from condnn.download import KNOWN_FILES, DownloadError, RemoteFile, download, fetch, sha256_of

PAYLOAD = bytes(range(256)) * 400  # 100 KiB: several reads, yet instant
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
SERVER_LIFETIME_S = 30.0


class _Handler(http.server.BaseHTTPRequestHandler):
    """Routes: /good, /other (wrong bytes), /missing (404), /drop (closes mid-body after
    announcing the full length), /drop-unannounced (same, without a length), /stall
    (sends half the body, then stops sending)."""

    hits: Dict[str, int]
    release: threading.Event

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        self.hits[self.path] = self.hits.get(self.path, 0) + 1
        if self.path == "/missing":
            self.send_error(404, "Not Found")
            return
        body = b"something else entirely" if self.path == "/other" else PAYLOAD
        self.send_response(200)
        if self.path != "/drop-unannounced":
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path in ("/good", "/other"):
            self.wfile.write(body)
        elif self.path in ("/drop", "/drop-unannounced"):
            self.wfile.write(body[:len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
        elif self.path == "/stall":
            self.wfile.write(body[:len(body) // 2])
            self.wfile.flush()
            self.release.wait(5.0)  # bounded: the client has timed out long before

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep the test output clean


class Server:
    def __init__(self) -> None:
        handler = type("Handler", (_Handler,), {"hits": {}, "release": threading.Event()})
        self.hits: Dict[str, int] = handler.hits
        self.release: threading.Event = handler.release
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.httpd.timeout = 0.05
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        deadline = time.monotonic() + SERVER_LIFETIME_S
        while not self.stop.is_set() and time.monotonic() < deadline:
            self.httpd.handle_request()

    def url(self, route: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{route}"

    def close(self) -> None:
        self.stop.set()
        self.release.set()
        self.thread.join(5.0)
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.close()


def _closed_port_url() -> str:
    """A URL on a port where nothing listens, so the connection is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/nothing"


def _only(directory: Path) -> List[str]:
    return sorted(p.name for p in directory.iterdir())


def test_success(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "sub" / "file.bin"
    assert download(server.url("/good"), dest, PAYLOAD_SHA.upper()) == dest
    assert dest.read_bytes() == PAYLOAD
    assert _only(dest.parent) == ["file.bin"]  # no temporary file left beside it
    assert dest.stat().st_mode & 0o777 == 0o644


def test_a_file_already_there_is_not_downloaded_again(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "file.bin"
    dest.write_bytes(PAYLOAD)
    download(server.url("/good"), dest, PAYLOAD_SHA)
    assert server.hits == {}


def test_a_wrong_file_already_there_is_replaced(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "file.bin"
    dest.write_bytes(b"stale")
    download(server.url("/good"), dest, PAYLOAD_SHA)
    assert dest.read_bytes() == PAYLOAD and server.hits == {"/good": 1}


def test_checksum_mismatch_leaves_no_file(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "file.bin"
    with pytest.raises(DownloadError) as e:
        download(server.url("/other"), dest, PAYLOAD_SHA)
    assert f"{server.url('/other')}: SHA-256 mismatch: got " in str(e.value)
    assert PAYLOAD_SHA in str(e.value)
    assert _only(tmp_path) == []
    assert e.value.failures[0][0] == server.url("/other")


def test_failure_leaves_an_existing_file_as_it_was(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "file.bin"
    dest.write_bytes(b"old contents")
    with pytest.raises(DownloadError):
        download(server.url("/other"), dest, PAYLOAD_SHA)
    assert dest.read_bytes() == b"old contents" and _only(tmp_path) == ["file.bin"]


def test_first_mirror_failing_then_second_succeeding(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "file.bin"
    mirrors = [_closed_port_url(), server.url("/missing"), server.url("/good")]
    download(mirrors, dest, PAYLOAD_SHA)
    assert dest.read_bytes() == PAYLOAD
    assert server.hits == {"/missing": 1, "/good": 1}
    assert _only(tmp_path) == ["file.bin"]


def test_every_mirror_failing_lists_each_reason(server: Server, tmp_path: Path) -> None:
    refused = _closed_port_url()
    mirrors = [refused, server.url("/missing"), server.url("/other")]
    with pytest.raises(DownloadError) as e:
        download(mirrors, tmp_path / "file.bin", PAYLOAD_SHA)
    message = str(e.value)
    assert "3 mirror(s) tried" in message
    assert f"{refused}: cannot connect" in message
    assert f"{server.url('/missing')}: HTTP 404" in message
    assert f"{server.url('/other')}: SHA-256 mismatch" in message
    assert [url for url, _ in e.value.failures] == mirrors
    assert _only(tmp_path) == []


def test_connection_dropped_mid_body_leaves_no_file(server: Server, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"/drop: connection closed after 51200 bytes of "
                                            r"the 102400 announced"):
        download(server.url("/drop"), tmp_path / "file.bin", PAYLOAD_SHA)
    assert _only(tmp_path) == []


def test_unannounced_short_body_fails_its_checksum(server: Server, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="SHA-256 mismatch"):
        download(server.url("/drop-unannounced"), tmp_path / "file.bin", PAYLOAD_SHA)
    assert _only(tmp_path) == []


def test_stalled_server_times_out(server: Server, tmp_path: Path) -> None:
    start = time.monotonic()
    with pytest.raises(DownloadError,
                       match=r"/stall: transfer failed after \d+ bytes: .*timed out"):
        download(server.url("/stall"), tmp_path / "file.bin", PAYLOAD_SHA, timeout=0.3)
    assert time.monotonic() - start < 4.0
    assert _only(tmp_path) == []


def test_interrupted_download_leaves_no_file(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    def interrupted(url: str, out, timeout: float) -> str:
        out.write(PAYLOAD[:1000])
        raise KeyboardInterrupt

    monkeypatch.setattr(dl, "_stream", interrupted)
    with pytest.raises(KeyboardInterrupt):
        download("http://127.0.0.1:9/x", tmp_path / "file.bin", PAYLOAD_SHA)
    assert _only(tmp_path) == []


def test_file_urls_work_as_local_mirrors(tmp_path: Path) -> None:
    source = tmp_path / "mirror" / "file.bin"
    source.parent.mkdir()
    source.write_bytes(PAYLOAD)
    dest = tmp_path / "out" / "file.bin"
    download(source.as_uri(), dest, PAYLOAD_SHA)
    assert dest.read_bytes() == PAYLOAD and sha256_of(dest) == PAYLOAD_SHA


@pytest.mark.parametrize("kwargs, error, message", [
    ({"url_or_mirrors": []}, ValueError, "at least one URL"),
    ({"url_or_mirrors": b"http://x/"}, TypeError, "URL string or a sequence"),
    ({"url_or_mirrors": ["http://x/", 3]}, TypeError, "must hold strings, got int"),
    ({"url_or_mirrors": "ftp://x/f"}, ValueError, "has scheme 'ftp'; expected one of http"),
    ({"url_or_mirrors": "x/f"}, ValueError, "has scheme ''"),
    ({"sha256": "abc"}, ValueError, "sha256 must be 64 hex digits, got 'abc'"),
    ({"sha256": "g" * 64}, ValueError, "sha256 must be 64 hex digits"),
    ({"sha256": None}, TypeError, "sha256 must be a str"),
    ({"timeout": 0}, ValueError, "timeout must be a positive finite number"),
    ({"timeout": float("inf")}, ValueError, "timeout must be a positive finite number"),
    ({"timeout": "5"}, TypeError, "timeout must be a number of seconds, got str"),
])
def test_arguments_are_checked_before_any_transfer(tmp_path: Path, kwargs: dict, error: type,
                                                   message: str) -> None:
    args = {"url_or_mirrors": "http://127.0.0.1:9/f", "dest_path": tmp_path / "f",
            "sha256": PAYLOAD_SHA, **kwargs}
    with pytest.raises(error, match=message):
        download(**args)
    assert _only(tmp_path) == []


def test_destination_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is a directory"):
        download("http://127.0.0.1:9/f", tmp_path, PAYLOAD_SHA)


def test_fetch_downloads_a_whole_set(server: Server, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    files = (RemoteFile("a.bin", (server.url("/missing"), server.url("/good")), PAYLOAD_SHA),
             RemoteFile("b.bin", (server.url("/good"),), PAYLOAD_SHA))
    monkeypatch.setitem(KNOWN_FILES, "tiny", files)
    paths = fetch("tiny", tmp_path)
    assert paths == [tmp_path / "a.bin", tmp_path / "b.bin"]
    assert all(p.read_bytes() == PAYLOAD for p in paths)
    assert server.hits == {"/missing": 1, "/good": 2}


def test_fetch_rejects_unknown_sets(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="name must be one of cifar10, mnist"):
        fetch("imagenet", tmp_path)


def test_registry_entries_are_well_formed() -> None:
    assert set(KNOWN_FILES) == {"mnist", "cifar10"}
    for files in KNOWN_FILES.values():
        for f in files:
            assert len(f.sha256) == 64 and int(f.sha256, 16) >= 0
            assert f.mirrors and all(m.startswith("https://") and m.endswith(f.name)
                                     for m in f.mirrors)
    assert [f.name for f in KNOWN_FILES["mnist"]] == [
        "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


def test_sha256_of_matches_hashlib(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(PAYLOAD * 11)  # more than one read chunk
    assert sha256_of(path) == hashlib.sha256(PAYLOAD * 11).hexdigest()
    assert os.path.getsize(path) > dl._CHUNK_BYTES
