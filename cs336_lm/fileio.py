"""Output files and directories: written whole or not at all, and every failure reported as one ``WriteError``.

Every writer in the project (tokenizer files, token files, checkpoints, configs, plots, corpora) writes into a
temporary sibling and renames it over the target only once the content is complete, so a crash or an error leaves
either the old output or the new one, never a torn mix. A failed write on the way — a full disk, a read-only or
missing directory, a path through a file — is a ``WriteError`` naming the target (never the temporary name) and
the cause: ``cannot write runs/a/config.yaml: No space left on device``. Errors of the caller's own (reading a
corrupt input while writing the output) keep their type.

``output_directory`` creates the directories an output needs and, when producing the output fails, removes the
ones it created (if still empty), so a failed command leaves no empty folders behind. ``check_writable`` says
before a long job whether its output could be created at all, and ``check_apart`` that writing it would not
destroy an input (an ``--out`` that is, contains or lies inside what the command reads). ``cache_directory`` is
where the toolkit keeps what it can always recompute.
"""

import contextlib
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from cs336_lm.errors import WriteError


def os_reason(e: OSError) -> str:
    """The cause of ``e`` for a one-line message, e.g. ``No space left on device``."""
    return e.strerror or str(e) or type(e).__name__


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _default_mode(is_dir: bool) -> int:
    """The permissions a plain ``open``/``mkdir`` would give (mkstemp/mkdtemp make private 0600/0700 files)."""
    return (0o777 if is_dir else 0o666) & ~_umask()


CACHE_ENV = "CS336_LM_CACHE"


def cache_directory() -> Path:
    """Where the toolkit keeps results it can always recompute (such as which tokenizers map exactly onto
    tiktoken): ``$CS336_LM_CACHE`` when set, else ``$XDG_CACHE_HOME/cs336_lm``, else ``~/.cache/cs336_lm``. Not
    created here; deleting it at any time only costs the recomputation."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    home = os.path.expanduser("~")
    if home == "~":  # no home directory to be found: a cache in the working directory would surprise
        home = tempfile.gettempdir()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(home, ".cache")
    return Path(base) / "cs336_lm"


# ---------------------------------------------------------------------------------------------- checks


def _nearest_existing(path: Path) -> Path:
    """``path`` itself or its closest ancestor that exists (``.`` for a relative path with none)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _not_writable(directory: Path) -> str | None:
    """Why files cannot be created in the existing ``directory``, or None when they can."""
    if os.access(directory, os.W_OK | os.X_OK):
        return None
    with contextlib.suppress(OSError):
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            return f"{directory} is on a read-only file system"
    return f"no permission to write in {directory}"


def check_writable(path: str | os.PathLike, directory: bool = False) -> None:
    """Raise ``WriteError`` now if an output file (``directory=True``: a directory replaced as a whole) at ``path``
    could not be created: a file stands where a directory must be, the nearest existing directory is not
    writable, or — for a directory — ``path`` exists but its content could not be removed. A full disk can still
    stop the write later; this only catches what is wrong before any work is done."""
    path = Path(path)
    if path.is_dir():
        if not directory:
            raise WriteError(path, "it is a directory")
        for root, _, _ in os.walk(path):  # every directory whose entries a replacement removes
            reason = _not_writable(Path(root))
            if reason:
                raise WriteError(path, f"{reason}, which replacing it needs (make it writable, or choose another path)")
    elif path.exists() and not path.is_file() and not directory:
        raise WriteError(path, "it is not a regular file (a device, pipe or socket); give a file name")
    base = _nearest_existing(path.parent)
    if not base.is_dir():
        raise WriteError(path, f"{base} is a file, not a directory")
    reason = _not_writable(base)
    if reason:
        raise WriteError(path, reason)


def check_apart(out: str | os.PathLike, *inputs: str | os.PathLike | None) -> None:
    """Raise ``WriteError`` when the output ``out`` is, contains or lies inside one of ``inputs`` (None skipped):
    replacing it would destroy what the command reads, so no ``--force`` allows it.

    Paths are compared as the files they name: resolved (symbolic links and ``..`` followed), then by device and
    inode, so a second spelling of a directory (a link, a bind mount, another case on a case-insensitive disk) is
    caught too. The message names both: ``cannot write runs/a: it is the input /home/me/runs/a``.
    """
    out_path = Path(out).resolve()
    out_id = _identity(out_path)  # None while it does not exist: then it can only lie inside an input
    above_out = {_identity(p) for p in out_path.parents} - {None}
    for given in inputs:
        if given is None:
            continue
        source = Path(given).resolve()
        source_id = _identity(source)
        if source_id is None:  # a missing input is reported where it is read
            continue
        if out_id == source_id:
            raise WriteError(out, f"it is the input {source}; choose another output")
        if source_id in above_out:
            raise WriteError(out, f"it lies inside the input {source}; choose an output outside it")
        if out_id is not None and out_id in {_identity(p) for p in source.parents}:
            raise WriteError(out, f"it contains the input {source}, which replacing it would delete")


def _identity(path: Path) -> tuple[int, int] | None:
    """``(device, inode)`` of the file or directory at ``path``, or None when there is none."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


# ---------------------------------------------------------------------------------------------- directories


def make_directories(path: str | os.PathLike) -> list[Path]:
    """``mkdir -p path``; returns the directories it created, outermost first. A file in the way, a missing
    permission or a full disk is a ``WriteError`` (and nothing created is left behind)."""
    path = Path(path)
    base = _nearest_existing(path)
    if not base.is_dir():
        raise WriteError(
            path, "it exists and is not a directory" if base == path else f"{base} is a file, not a directory"
        )
    missing = []
    for parent in [path, *path.parents]:
        if parent == base:
            break
        missing.append(parent)
    created: list[Path] = []
    for directory in reversed(missing):
        try:
            directory.mkdir()
        except FileExistsError:  # made meanwhile by another process
            if not directory.is_dir():
                remove_empty(created)
                raise WriteError(path, f"{directory} is a file, not a directory") from None
            continue
        except OSError as e:
            remove_empty(created)
            raise WriteError(path, os_reason(e)) from None
        created.append(directory)
    return created


def remove_empty(directories: list[Path]) -> None:
    """Remove ``directories`` (outermost first, as ``make_directories`` returns them), innermost first, stopping
    at the first one that is not empty."""
    for directory in reversed(directories):
        try:
            directory.rmdir()
        except OSError:
            return


@contextlib.contextmanager
def output_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Create ``path`` and its missing parents for an output; if the body fails, remove the directories created
    here again, as long as they are empty."""
    created = make_directories(path)
    try:
        yield Path(path)
    except BaseException:
        remove_empty(created)
        raise


# ---------------------------------------------------------------------------------------------- files


class _Output:
    """The temporary file ``atomic_write`` yields: a failed write (a full disk) is a ``WriteError`` naming the
    target, while other errors of the body, such as reading a corrupt input, keep their own type."""

    def __init__(self, f: IO, path: Path):
        self._f, self._path = f, path

    def write(self, data: Any) -> int:
        try:
            return self._f.write(data)
        except OSError as e:
            raise WriteError(self._path, os_reason(e)) from None

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        try:
            self._f.flush()
        except OSError as e:
            raise WriteError(self._path, os_reason(e)) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", **open_kwargs: Any) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success fsync it and ``os.replace`` it onto ``path``.

    The directory of ``path`` must exist. A symbolic link is followed: the file it points to is replaced and the
    link stays. A device, pipe or socket is refused (replacing it would delete it). On an exception the temporary
    file is removed and ``path`` is untouched. A failed write, flush, fsync or rename (a full disk) is a
    ``WriteError`` naming ``path``; any other exception of the body passes through as it is.
    """
    path = Path(path)
    target = path.resolve() if path.is_symlink() else path
    if target.is_dir():
        raise WriteError(path, "it is a directory")
    if target.exists() and not target.is_file():
        raise WriteError(path, "it is not a regular file (a device, pipe or socket); give a file name")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as e:
        base = _nearest_existing(target.parent)
        if not base.is_dir():
            reason = f"{base} is a file, not a directory"
        elif base != target.parent:
            reason = f"directory {target.parent} does not exist"
        else:
            reason = os_reason(e)
        raise WriteError(path, reason) from e
    f = os.fdopen(fd, mode, **open_kwargs)
    try:
        yield _Output(f, path)  # type: ignore[misc]
        _written(path, f.flush)
        _written(path, os.fsync, f.fileno())
        _written(path, f.close)
        _written(path, os.chmod, tmp, _default_mode(is_dir=False))
        _written(path, os.replace, tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            f.close()  # flushing what is still buffered may fail again (a full disk): the first error is the one told
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _written(path: Path, call: Any, *args: Any) -> None:
    """``call(*args)``, an ``OSError`` of it reported as a ``WriteError`` naming ``path``."""
    try:
        call(*args)
    except OSError as e:
        raise WriteError(path, os_reason(e)) from None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _swap_in(tmp: Path, path: Path) -> None:
    """Rename ``tmp`` onto ``path``; an existing ``path`` is first moved aside, then removed once ``tmp`` is in."""
    if not path.exists() and not path.is_symlink():
        os.replace(tmp, path)
        return
    old = path.with_name(f".{path.name}.old")
    if old.exists() or old.is_symlink():  # left by a crash between the two renames below
        try:
            _remove(old)
        except OSError as e:
            raise WriteError(path, f"{old}, left by an earlier attempt, cannot be removed: {os_reason(e)}") from None
    os.replace(path, old)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.replace(old, path)  # put the previous content back
        raise
    try:
        _remove(old)
    except OSError as e:
        warnings.warn(
            f"wrote {path}, but its previous content could not be removed from {old}: {os_reason(e)}", stacklevel=2
        )


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary directory beside ``path``; on success it replaces ``path`` as a whole.

    An existing ``path`` is only removed after the new content is complete, so a failure leaves it as it was; an
    existing directory that could not be emptied (read-only) is refused up front, before anything is written.
    Missing parents are created (and removed again on failure). A failed write, inside the directory or while
    renaming it into place, is a ``WriteError`` naming ``path``; other errors of the body pass through as they are.
    """
    path = Path(path)
    check_writable(path, directory=True)
    with output_directory(path.parent):
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        except OSError as e:
            raise WriteError(path, os_reason(e)) from None
        try:
            yield tmp
        except WriteError as e:  # about a file inside the temporary directory: name the target instead
            shutil.rmtree(tmp, ignore_errors=True)
            raise WriteError(path, e.reason) from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        try:
            _written(path, os.chmod, tmp, _default_mode(is_dir=True))
            _written(path, _swap_in, tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
