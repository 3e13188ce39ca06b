"""The resumable downloader against a local HTTP server on 127.0.0.1, network failures it must not retry (made by
replacing ``urlopen``: no test touches the network), the decompression helpers, and ``scripts/datasets.py`` without
network (its error line, ``--from DIR``)."""

import bz2
import errno
import gzip
import hashlib
import importlib
import lzma
import random
import re
import socket
import ssl
import sys
import threading
import urllib.error
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cs336_lm.data import download as download_module
from cs336_lm.data.download import decompress, decompressed_name, download, sha256_file
from cs336_lm.errors import DataError
from cs336_lm.tinytales import EOT, iter_documents

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"

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


def test_refused_connection_ends_at_once(tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before the download: nothing listens there
    with pytest.raises(DataError, match=f"cannot download http://127.0.0.1:{port}/x: 127.0.0.1: Connection refused"):
        download(f"http://127.0.0.1:{port}/x", tmp_path / "x", retries=3, backoff=0, progress=False)
    assert "attempt" not in capsys.readouterr().out  # not retried
    assert not (tmp_path / "x.part").exists()


def failing_urlopen(monkeypatch, *errors: BaseException) -> list:
    """Replace ``urlopen`` in the downloader: each call raises the next error; returns the list of calls."""
    calls, pending = [], list(errors)

    def urlopen(request, timeout=None):
        calls.append(request.full_url)
        raise pending.pop(0) if len(pending) > 1 else pending[0]

    monkeypatch.setattr(download_module.urllib.request, "urlopen", urlopen)
    return calls


NAME_NOT_KNOWN = urllib.error.URLError(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (NAME_NOT_KNOWN, r"the host name example\.org does not resolve \(Name or service not known; no network\?\)$"),
        # what a machine without a reachable resolver says: no retry mends that either
        (urllib.error.URLError(socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")),
         "the host name example.org does not resolve"),
        (urllib.error.URLError(OSError(errno.ENETUNREACH, "Network is unreachable")),
         "example.org: Network is unreachable$"),
        (urllib.error.URLError(ssl.SSLCertVerificationError(1, "certificate verify failed")),
         "the TLS certificate of example.org does not verify"),
    ],
)  # fmt: skip
def test_failures_no_retry_mends_end_at_once_with_the_cause(monkeypatch, tmp_path, capsys, error, message):
    calls = failing_urlopen(monkeypatch, error)
    with pytest.raises(DataError, match=r"^cannot download https://example\.org/big\.txt: " + message) as info:
        download("https://example.org/big.txt", tmp_path / "big.txt", progress=False, backoff=0)
    assert len(calls) == 1 and capsys.readouterr().out == ""
    assert info.value.__cause__ is error  # what scripts/datasets.py tells from a checksum mismatch
    assert list(tmp_path.iterdir()) == []


def test_no_answer_before_any_byte_is_retried_as_such(monkeypatch, tmp_path, capsys):
    timeout = urllib.error.URLError(TimeoutError("timed out"))
    calls = failing_urlopen(monkeypatch, timeout, timeout, NAME_NOT_KNOWN)
    with pytest.raises(DataError, match="does not resolve"):
        download("https://example.org/big.txt", tmp_path / "big.txt", progress=False, backoff=0)
    out = capsys.readouterr().out
    assert len(calls) == 3
    assert out.count("no connection to example.org (timed out); trying again (attempt") == 2
    assert "resuming from byte" not in out  # nothing was received: there is nothing to resume


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


def load_datasets_script():
    """``scripts/datasets.py`` as a module (it imports ``demo`` from its own directory)."""
    sys.path.insert(0, str(SCRIPTS))
    try:
        return importlib.import_module("datasets")
    finally:
        sys.path.remove(str(SCRIPTS))


def test_recipe_without_network_ends_with_one_line_saying_how_to_go_on(monkeypatch, tmp_path, capsys):
    datasets = load_datasets_script()
    calls = failing_urlopen(monkeypatch, NAME_NOT_KNOWN)
    assert datasets.main(["tinystories", "--data-dir", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert len(calls) == 1 and err.count("\n") == 1 and err.startswith("error: cannot download https://huggingface.co/")
    assert "the host name huggingface.co does not resolve (Name or service not known; no network?)" in err
    assert "copy TinyStoriesV2-GPT4-train.txt and TinyStoriesV2-GPT4-valid.txt" in err
    assert 'run again with --from DIR (make tinystories ARGS="--from DIR"; docs/datasets.md)' in err


def test_recipe_from_a_directory_of_copied_files(monkeypatch, tmp_path, capsys):
    """``--from DIR`` uses the files in place (plain or still compressed), records and checks their digests and never
    opens a connection; a checksum mismatch is no network problem, and a missing file is named."""
    datasets = load_datasets_script()
    failing_urlopen(monkeypatch, AssertionError("no download with --from"))
    copies, data = tmp_path / "copies", tmp_path / "data"
    copies.mkdir()
    text = "".join(iter_documents(3_000, seed=1))
    (copies / "owt_train.txt").write_text(text, encoding="utf-8")  # decompressed by hand
    (copies / "owt_valid.txt.gz").write_bytes(gzip.compress(text[:1000].encode()))  # as the hub serves it
    args = datasets.build_parser().parse_args(["owt", "--from", str(copies), "--data-dir", str(data)])
    train, valid = datasets.fetch(datasets.RECIPES["owt"], args)
    assert train == copies / "owt_train.txt" and valid == data / "owt_valid.txt"
    assert valid.read_text(encoding="utf-8") == text[:1000] and (copies / "owt_valid.txt.gz").exists()
    sums = datasets.read_sums(data / "SHA256SUMS")
    assert sums == {"owt_train.txt": sha256_file(train), "owt_valid.txt.gz": sha256_file(copies / "owt_valid.txt.gz")}

    (copies / "owt_train.txt").write_text(text + EOT, encoding="utf-8")  # not the bytes recorded
    assert datasets.main(["owt", "--from", str(copies), "--data-dir", str(data)]) == 2
    err = capsys.readouterr().err
    assert "checksum mismatch" in err and "--from DIR" not in err
    assert datasets.main(["tinystories", "--from", str(copies), "--data-dir", str(data)]) == 2
    assert f"--from {copies}: no TinyStoriesV2-GPT4-train.txt there" in capsys.readouterr().err
