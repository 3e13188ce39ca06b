"""Resumable HTTP(S) downloads with SHA-256 checks, and the decompression of downloaded dataset files.

``download(url, dest)`` streams into ``dest + ".part"`` and renames it onto ``dest`` only once it is complete
(and its checksum matches, when one is given). An interrupted download — a dropped connection, a killed
process — resumes from the bytes already in the ``.part`` file with an HTTP ``Range`` request; a server that
ignores ``Range`` (answers 200 instead of 206) makes it start over from zero. Only the standard library's
``urllib`` is used. What retrying cannot mend — a host name that does not resolve (no network), an unreachable
network, a refused connection, a certificate that does not verify, HTTP 4xx — ends at once with a ``DataError``
whose ``__cause__`` is the network error. ``decompress`` turns ``.gz``/``.xz``/``.bz2`` files into plain ones,
also atomically.
"""

import bz2
import errno
import gzip
import hashlib
import http.client
import lzma
import os
import re
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from cs336_lm.errors import DataError
from cs336_lm.fileio import atomic_write

CHUNK = 1 << 20
USER_AGENT = "cs336_lm-downloader/1.0"
# Errors after which the download is retried from the bytes already on disk (network trouble: URLError,
# ConnectionResetError, TimeoutError and http.client's IncompleteRead all land here), and local ones that are not.
TRANSIENT = (OSError, http.client.HTTPException)
LOCAL = (PermissionError, IsADirectoryError, NotADirectoryError, FileNotFoundError)
RETRY_STATUS = {429, 500, 502, 503, 504}  # busy or failing servers: worth another try; 4xx otherwise is final
# Connection failures that another try seconds later does not mend: no route, nothing listening.
FINAL_ERRNOS = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ECONNREFUSED, errno.ENETDOWN}


@dataclass(frozen=True)
class RemoteFile:
    """A file of a public dataset: where it lives, the name to save it under and, when known, its SHA-256."""

    url: str
    filename: str
    sha256: str | None = None


def sha256_file(path: str | os.PathLike, chunk: int = CHUNK) -> str:
    """Hex SHA-256 of a file, read in chunks (``sha256_file`` of an empty file is ``e3b0c442…b855``)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    sha256: str | None = None,
    retries: int = 5,
    timeout: float = 60.0,
    progress: bool = True,
    backoff: float = 1.0,
) -> str:
    """Download ``url`` to ``dest``, resuming a previous partial download; return the file's SHA-256.

    An existing ``dest`` is kept (and checked against ``sha256`` when given). Transient network errors and
    HTTP 429/5xx answers are retried up to ``retries`` times, each resuming where the last stopped, after
    ``backoff * attempt`` seconds; a failure no retry mends (``unreachable``) raises ``DataError`` at once. Network
    failures are the ``__cause__`` of the ``DataError``, so a caller can tell them from a checksum mismatch, which
    deletes the ``.part`` file (its bytes are wrong, resuming would not help) and raises ``DataError`` naming both
    digests.
    """
    dest = Path(dest)
    if dest.exists():
        digest = sha256_file(dest)
        _check_digest(dest, digest, sha256)
        return digest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(retries + 1):
        try:
            _fetch_into(url, part, timeout, progress)
            break
        except urllib.error.HTTPError as e:
            if e.code not in RETRY_STATUS or attempt == retries:
                raise DataError(f"download of {url} failed: HTTP {e.code} {e.reason}") from e
            print(f"server answered HTTP {e.code}; trying again (attempt {attempt + 2}/{retries + 1})")
            time.sleep(backoff * (attempt + 1))
        except LOCAL:
            raise
        except TRANSIENT as e:
            final = unreachable(url, e)
            if final:
                raise DataError(f"cannot download {url}: {final}") from e
            if attempt == retries:
                raise DataError(f"download of {url} failed after {retries + 1} attempts: {e}") from e
            have = part.stat().st_size if part.exists() else 0
            if isinstance(e, urllib.error.URLError):  # no answer to the request itself
                what = f"no connection to {urllib.parse.urlsplit(url).hostname} ({e.reason}); trying again"
            else:
                what = f"connection lost ({e}); resuming from byte {have}"
            print(f"{what} (attempt {attempt + 2}/{retries + 1})")
            time.sleep(backoff * (attempt + 1))
    digest = sha256_file(part)
    try:
        _check_digest(dest, digest, sha256)
    except DataError:
        part.unlink()
        raise
    os.replace(part, dest)
    return digest


def unreachable(url: str, error: BaseException) -> str | None:
    """Why ``url`` cannot be fetched however often it is tried, or None for a failure worth retrying.

    ``URLError(gaierror(-2, "Name or service not known"))`` for ``https://huggingface.co/…`` gives
    ``"the host name huggingface.co does not resolve (Name or service not known; no network?)"``.
    """
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    host = urllib.parse.urlsplit(url).hostname
    if isinstance(reason, socket.gaierror):
        return f"the host name {host} does not resolve ({reason.strerror or reason}; no network?)"
    if isinstance(reason, ssl.SSLCertVerificationError):
        why = getattr(reason, "verify_message", None) or reason  # set when OpenSSL raised it
        return f"the TLS certificate of {host} does not verify ({why})"
    if isinstance(reason, OSError) and reason.errno in FINAL_ERRNOS:
        return f"{host}: {reason.strerror or reason}"
    return None


def _check_digest(path: Path, digest: str, expected: str | None) -> None:
    if expected is not None and digest.lower() != expected.lower():
        raise DataError(f"checksum mismatch for {path}: expected sha256 {expected}, got {digest}")


def _fetch_into(url: str, part: Path, timeout: float, progress: bool) -> None:
    """One HTTP request: append the rest of ``url`` to ``part`` (or rewrite it when the server ignores Range)."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset and _complete_size(e.headers.get("Content-Range")) == offset:
            return  # the .part file already holds every byte
        if e.code == 416:
            part.unlink()  # the partial file is longer than the remote one: start again
            raise ConnectionResetError("server rejected the resume offset; restarting from zero") from e
        raise
    with response:
        if offset and response.status != 206:
            offset = 0  # Range not supported: the body is the whole file
        elif offset and _range_start(response.headers.get("Content-Range")) != offset:
            raise DataError(f"{url}: server resumed at the wrong offset ({response.headers.get('Content-Range')})")
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        with (
            open(part, "ab" if offset else "wb") as out,
            tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, desc=part.name[:-5], disable=not progress
            ) as bar,
        ):
            while block := response.read(CHUNK):
                out.write(block)
                bar.update(len(block))
        if total is not None and part.stat().st_size < total:
            raise http.client.IncompleteRead(b"", total - part.stat().st_size)


def _range_start(content_range: str | None) -> int | None:
    """``"bytes 100-199/200"`` -> 100."""
    m = re.match(r"bytes (\d+)-\d+/(\d+|\*)", content_range or "")
    return int(m.group(1)) if m else None


def _complete_size(content_range: str | None) -> int | None:
    """``"bytes */200"`` (the answer to an unsatisfiable range) -> 200."""
    m = re.match(r"bytes \*/(\d+)", content_range or "")
    return int(m.group(1)) if m else None


_OPENERS: dict[str, Callable[..., Any]] = {".gz": gzip.open, ".xz": lzma.open, ".bz2": bz2.open}


def decompressed_name(path: str | os.PathLike) -> Path:
    """``owt_train.txt.gz`` -> ``owt_train.txt``; raises ``DataError`` for a suffix we cannot decompress."""
    path = Path(path)
    if path.suffix not in _OPENERS:
        raise DataError(f"cannot decompress {path}: expected one of {', '.join(_OPENERS)}")
    return path.with_suffix("")


def decompress(src: str | os.PathLike, dest: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """Decompress a ``.gz``/``.xz``/``.bz2`` file into ``dest`` (default: ``src`` without the suffix), atomically.

    A corrupt or truncated archive raises ``DataError`` and leaves no output file.
    """
    src = Path(src)
    default = decompressed_name(src)  # also checks that the suffix is one we can open
    dest = Path(dest) if dest is not None else default
    opener = _OPENERS[src.suffix]
    try:
        with (
            opener(src, "rb") as fin,
            atomic_write(dest, "wb") as fout,
            tqdm(unit="B", unit_scale=True, desc=f"decompress {src.name}", disable=not progress) as bar,
        ):
            while block := fin.read(CHUNK):
                fout.write(block)
                bar.update(len(block))
    except (OSError, EOFError, lzma.LZMAError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise DataError(f"cannot decompress {src}: {e}") from e
    return dest
