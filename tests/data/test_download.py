"""The resumable downloader against a local HTTP server on 127.0.0.1, and the decompression helpers."""

import bz2
import gzip
import hashlib
import lzma
import random
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cs336_lm.data.download import decompress, decompressed_name, download, sha256_file
from cs336_lm.errors import DataError

DATA = random.Random(0).randbytes(200_000)
DIGEST = hashlib.sha256(DATA).hexdigest()


class Handler(BaseHTTPRequestHandler):
    """Serves DATA at /data.bin; the server's settings decide Range support and dropped connections."""

    def do_GET(self):
        srv = self.server
        srv.requests.append(self.headers.get("Range"))
        if srv.busy_left > 0:
            srv.busy_left -= 1
            self.send_error(503, "Service Unavailable")
            return
        if self.path != "/data.bin":
            self.send_error(404, "Not Found")
            return
        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if m and srv.support_range:
            start = int(m.group(1))
            if start >= len(DATA):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(DATA)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(DATA) - 1}/{len(DATA)}")
        else:
            self.send_response(200)
        body = DATA[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.drops_left > 0:  # send part of the body, then hang up mid-transfer
            srv.drops_left -= 1
            self.wfile.write(body[: srv.drop_after])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        srv.bytes_served += len(body)
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.requests, srv.support_range, srv.drops_left, srv.drop_after, srv.bytes_served = [], True, 0, 0, 0
    srv.busy_left = 0
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/data.bin"
    yield srv
    srv.shutdown()
    srv.server_close()


def test_plain_download(server, tmp_path):
    dest = tmp_path / "sub" / "data.bin"
    assert download(server.url, dest, progress=False) == DIGEST
    assert dest.read_bytes() == DATA
    assert sorted(p.name for p in dest.parent.iterdir()) == ["data.bin"]
    assert sha256_file(dest) == DIGEST


def test_dropped_connection_resumes_with_range(server, tmp_path):
    server.drops_left, server.drop_after = 2, 30_000
    dest = tmp_path / "data.bin"
    assert download(server.url, dest, progress=False, backoff=0, sha256=DIGEST) == DIGEST
    assert dest.read_bytes() == DATA
    assert server.requests == [None, "bytes=30000-", "bytes=60000-"]
    assert server.bytes_served == len(DATA) - 60_000  # the last request only sent what was missing


def test_partial_file_from_a_killed_process_is_resumed(server, tmp_path):
    dest = tmp_path / "data.bin"
    (tmp_path / "data.bin.part").write_bytes(DATA[:123_456])
    download(server.url, dest, progress=False)
    assert dest.read_bytes() == DATA
    assert server.requests == ["bytes=123456-"]
    assert server.bytes_served == len(DATA) - 123_456


def test_server_without_range_support_restarts_from_zero(server, tmp_path):
    server.support_range = False
    dest = tmp_path / "data.bin"
    (tmp_path / "data.bin.part").write_bytes(b"x" * 5000)  # not even the right bytes: they must be discarded
    download(server.url, dest, progress=False)
    assert dest.read_bytes() == DATA
    assert server.requests == ["bytes=5000-"] and server.bytes_served == len(DATA)


def test_complete_part_file_answered_416_is_finished(server, tmp_path):
    (tmp_path / "data.bin.part").write_bytes(DATA)
    assert download(server.url, tmp_path / "data.bin", progress=False) == DIGEST
    assert (tmp_path / "data.bin").read_bytes() == DATA and server.bytes_served == 0


def test_checksum_mismatch_is_an_error_and_leaves_nothing(server, tmp_path):
    dest = tmp_path / "data.bin"
    with pytest.raises(DataError, match=f"checksum mismatch.*expected sha256 {'0' * 64}, got {DIGEST}"):
        download(server.url, dest, sha256="0" * 64, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_existing_file_is_checked_not_downloaded(server, tmp_path):
    dest = tmp_path / "data.bin"
    dest.write_bytes(DATA)
    assert download(server.url, dest, sha256=DIGEST.upper(), progress=False) == DIGEST
    assert server.requests == []
    dest.write_bytes(b"corrupt")
    with pytest.raises(DataError, match="checksum mismatch"):
        download(server.url, dest, sha256=DIGEST, progress=False)


def test_http_error_is_reported(server, tmp_path):
    with pytest.raises(DataError, match="HTTP 404"):
        download(server.url.replace("data.bin", "missing.bin"), tmp_path / "x", progress=False)


def test_busy_server_is_retried(server, tmp_path):
    server.busy_left = 2
    assert download(server.url, tmp_path / "data.bin", backoff=0, progress=False) == DIGEST
    assert len(server.requests) == 3
    server.busy_left = 10
    with pytest.raises(DataError, match="HTTP 503"):
        download(server.url, tmp_path / "other.bin", retries=1, backoff=0, progress=False)


def test_gives_up_after_retries(server, tmp_path):
    server.drops_left, server.drop_after = 100, 1000
    with pytest.raises(DataError, match="failed after 3 attempts"):
        download(server.url, tmp_path / "data.bin", retries=2, backoff=0, progress=False)
    assert (tmp_path / "data.bin.part").stat().st_size == 3000  # kept for the next run to resume
    server.drops_left = 0
    download(server.url, tmp_path / "data.bin", progress=False)
    assert (tmp_path / "data.bin").read_bytes() == DATA


def test_unreachable_host(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before the download: nothing listens there
    with pytest.raises(DataError, match="failed after 2 attempts"):
        download(f"http://127.0.0.1:{port}/x", tmp_path / "x", retries=1, backoff=0, progress=False)


@pytest.mark.parametrize(
    ("suffix", "compress"), [(".gz", gzip.compress), (".xz", lzma.compress), (".bz2", bz2.compress)]
)
def test_decompress_round_trip(tmp_path, suffix, compress):
    src = tmp_path / f"owt_train.txt{suffix}"
    src.write_bytes(compress(DATA))
    out = decompress(src, progress=False)
    assert out == tmp_path / "owt_train.txt"
    assert out.read_bytes() == DATA


def test_decompress_errors(tmp_path):
    bad = tmp_path / "bad.txt.gz"
    bad.write_bytes(gzip.compress(DATA)[:1000])  # truncated archive
    with pytest.raises(DataError, match="cannot decompress"):
        decompress(bad, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.txt.gz"]
    bad.write_bytes(b"not gzip at all")  # an OSError from reading, not from writing the output
    with pytest.raises(DataError, match=r"cannot decompress .*bad\.txt\.gz: Not a gzipped file"):
        decompress(bad, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.txt.gz"]
    with pytest.raises(DataError, match="expected one of"):
        decompressed_name(tmp_path / "x.zip")
