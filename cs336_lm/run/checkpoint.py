"""Checkpoints: everything needed to resume a run exactly, written atomically and read without unpickling code.

A checkpoint is a dict of tensors and plain data (so ``torch.load(weights_only=True)`` reads it)::

    {"format_version": 1, "model": state_dict, "optimizer": state_dict, "iteration": int,
     "config": plain dict, "rng": {"python", "numpy", "torch", ["cuda"], ["data"]}, ...extra,
     "digest": "sha256:…"}

``save_checkpoint`` / ``load_checkpoint`` handle one file (a path, written to a temporary sibling and renamed, or
an open file object); where the files of a run live, which is the latest and which are kept is
``cs336_lm.run.rundir``'s business. RNG states are converted to tensors, lists and ints by
``capture_rng_state`` and put back by ``restore_rng_state``. Anything wrong with a file the user gives us —
missing, truncated, not a checkpoint, another model's — is a ``CheckpointError`` with one clear message.

``digest`` is the SHA-256 of everything else in the checkpoint (``cs336_lm.run.digest``), computed when it is
saved and checked by ``read_checkpoint``, the one place every reader (resume, ``load_run`` and so ``lm-generate``,
evaluation, serving, export) loads a checkpoint through: a file whose bytes were damaged without breaking the zip
structure is a ``DamagedCheckpointError`` naming it, like a torn one. A checkpoint written before digests existed
still loads, with an ``UnverifiedCheckpointWarning`` saying it could not be verified.
"""

import dataclasses
import os
import pickle
import random
import warnings
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
import torch
from torch import nn

from cs336_lm.errors import CheckpointError, DamagedCheckpointError, UnverifiedCheckpointWarning, WriteError
from cs336_lm.fileio import atomic_write, make_directories
from cs336_lm.run.digest import content_digest

FORMAT_VERSION = 1
DIGEST_KEY = "digest"
_ZIP_MAGIC = b"PK\x03\x04"
_RESERVED = {"format_version", "model", "optimizer", "iteration", "config", "rng", DIGEST_KEY}
_WRAPPERS = {"DataParallel", "DistributedDataParallel", "FullyShardedDataParallel"}
_PLAIN = (torch.Tensor, str, int, float, bool, type(None), torch.dtype, torch.device)

Source = str | os.PathLike | IO[bytes]


class Snapshot:
    """A state dict already gathered, handed to ``save_checkpoint`` in place of a module or an optimizer."""

    def __init__(self, state: dict):
        self.state = state

    def state_dict(self) -> dict:
        return self.state


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module whose parameters are the model's: strips ``torch.compile`` (``_orig_mod``) and DDP/FSDP/
    DataParallel (``.module``) wrappers, in any nesting, so state-dict keys carry no wrapper prefix."""
    while True:
        inner = getattr(model, "_orig_mod", None)  # torch.compile's OptimizedModule
        if not isinstance(inner, nn.Module) and type(model).__name__ in _WRAPPERS:
            inner = getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


# ---------------------------------------------------------------------------------------------- RNG states


def capture_rng_state(data_generator: np.random.Generator | None = None) -> dict:
    """Every RNG a training step draws from, as tensors/lists/ints/strings (``weights_only``-loadable).

    Keys: ``python`` (``random``), ``numpy`` (the legacy global RNG), ``torch`` (CPU), ``cuda`` (one state per
    device, when CUDA is available) and ``data`` (``data_generator.bit_generator.state``, when given).
    """
    version, internal, gauss_next = random.getstate()
    name, keys, pos, has_gauss, cached_gaussian = cast(tuple, np.random.get_state(legacy=True))
    state = {
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
        "numpy": {
            "bit_generator": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if data_generator is not None:
        state["data"] = data_generator.bit_generator.state
    return state


def restore_rng_state(state: dict, data_generator: np.random.Generator | None = None) -> None:
    """Put back what ``capture_rng_state`` saved; the ``data`` state goes into ``data_generator`` when given.

    A CUDA state saved on a different number of devices (or absent/unavailable) is skipped with a warning.
    """
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss_next"]))
    npy = state["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state((npy["bit_generator"], keys, npy["pos"], npy["has_gauss"], npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"].cpu())
    if torch.cuda.is_available():
        cuda = state.get("cuda")
        if cuda is not None and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
        else:
            warnings.warn("checkpoint has no CUDA RNG state for this many devices; CUDA RNG not restored", stacklevel=2)
    if data_generator is not None:
        if "data" not in state:
            raise CheckpointError("checkpoint has no data-sampler RNG state to restore")
        data_generator.bit_generator.state = state["data"]


# ---------------------------------------------------------------------------------------------- one file


def _plain_config(config: Any) -> dict | None:
    """A resolved OmegaConf config, a dataclass or a dict → a plain dict (``None`` stays ``None``)."""
    if config is None or isinstance(config, dict):
        return config
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    from omegaconf import OmegaConf

    plain = OmegaConf.to_container(config, resolve=True)
    if not isinstance(plain, dict):
        raise TypeError(f"config must be a mapping, got {type(plain).__name__}")
    return plain


def _check_plain(obj: Any, where: str) -> None:
    """Raise ``TypeError`` naming the first value ``torch.load(weights_only=True)`` would refuse to read back."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, str | int):
                raise TypeError(f"checkpoint key {where}[{k!r}] is a {type(k).__name__}; use str or int keys")
            _check_plain(v, f"{where}[{k!r}]")
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            _check_plain(v, f"{where}[{i}]")
    elif not isinstance(obj, _PLAIN):
        raise TypeError(f"checkpoint value {where} is a {type(obj).__name__}; store tensors or plain Python data")


def save_checkpoint(
    model: nn.Module | Snapshot,
    optimizer: torch.optim.Optimizer | Snapshot | None,
    iteration: int,
    out: Source,
    *,
    config: Any = None,
    rng: dict | None = None,
    **extra: Any,
) -> None:
    """Write a checkpoint of ``model`` (unwrapped), ``optimizer``, ``iteration``, ``config`` and ``rng`` to ``out``,
    with the digest of all of it.

    ``rng`` defaults to ``capture_rng_state()`` (pass ``capture_rng_state(data_generator)`` to include the data
    sampler). ``extra`` keys (e.g. ``wandb_run_id="abc"``) are stored beside the standard ones and must be
    tensors or plain Python data. A path is written atomically (temporary file, fsync, ``os.replace``), creating
    its parent directory; a file object is written in place. A path that cannot be written (a full disk, a
    read-only directory) is a ``WriteError`` naming it, and what the path held before is left as it was.
    """
    clash = _RESERVED & extra.keys()
    if clash:
        raise ValueError(f"extra checkpoint keys {sorted(clash)} clash with the standard ones")
    ckpt = {
        "format_version": FORMAT_VERSION,
        "model": model.state_dict() if isinstance(model, Snapshot) else unwrap_model(model).state_dict(),
        "optimizer": None if optimizer is None else optimizer.state_dict(),
        "iteration": int(iteration),
        "config": _plain_config(config),
        "rng": capture_rng_state() if rng is None else rng,
        **extra,
    }
    _check_plain(ckpt, "checkpoint")
    ckpt[DIGEST_KEY] = content_digest(ckpt)
    if isinstance(out, str | os.PathLike):
        out = Path(out)
        make_directories(out.parent)
        with atomic_write(out, "wb") as f:
            _torch_save(ckpt, f)
    else:
        _torch_save(ckpt, out)


def _torch_save(obj: dict, f: IO[bytes]) -> None:
    """``torch.save(obj, f)``, raising the error of a write that failed midway (a full disk: a ``WriteError`` or an
    ``OSError``) rather than the ``RuntimeError`` torch's zip writer raises on top of it when it then cannot finish
    the archive."""
    try:
        torch.save(obj, f)
    except RuntimeError as e:
        cause = e.__context__
        while cause is not None and not isinstance(cause, OSError | WriteError):
            cause = cause.__context__
        if cause is None:
            raise
        raise cause from None


def _describe(src: Source) -> str:
    return str(src) if isinstance(src, str | os.PathLike) else getattr(src, "name", "checkpoint file object")


def _starts_like_zip(src: Source) -> bool:
    """Whether the file begins with a zip header, as every ``torch.save`` file since PyTorch 1.6 does."""
    if isinstance(src, str | os.PathLike):
        with open(src, "rb") as f:
            return f.read(4) == _ZIP_MAGIC
    if not src.seekable():
        return True  # cannot peek; let torch.load decide
    where = src.tell()
    head = src.read(4)
    src.seek(where)
    return head == _ZIP_MAGIC


def read_checkpoint(src: Source, map_location: str | torch.device = "cpu", *, mmap: bool = False) -> dict:
    """Load, validate and verify a checkpoint dict with ``torch.load(weights_only=True)`` (tensors mapped to CPU).

    A torn or unreadable file, or one whose contents do not match its digest, is a ``DamagedCheckpointError``; a
    file that is not a cs336_lm checkpoint at all is a ``CheckpointError``. ``mmap=True`` (a path only) maps the
    tensors instead of reading them into memory, for a read that only verifies.
    """
    name = _describe(src)
    if isinstance(src, str | os.PathLike) and not Path(src).is_file():
        if Path(src).is_dir():
            raise CheckpointError(f"{name} is a directory, not a checkpoint file")
        raise CheckpointError(f"checkpoint {name} does not exist")
    try:
        is_zip = _starts_like_zip(src)
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {name}: {e.strerror or e}") from None
    if not is_zip:
        raise DamagedCheckpointError(
            f"{name} is not a readable checkpoint (truncated or another format?): no zip header"
        )
    ckpt = _torch_load(src, name, map_location, mmap)
    if not isinstance(ckpt, dict) or not {"format_version", "model", "iteration"} <= ckpt.keys():
        raise CheckpointError(f"{name} is a PyTorch file but not a cs336_lm checkpoint")
    if ckpt["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{name} has checkpoint format version {ckpt['format_version']}; this version reads {FORMAT_VERSION}"
        )
    _verify_digest(ckpt, name)
    return ckpt


def _torch_load(src: Source, name: str, map_location: str | torch.device, mmap: bool) -> Any:
    """``torch.load(src, weights_only=True)``, its many failure types turned into one-line checkpoint errors."""
    try:
        return torch.load(src, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" in str(e):
            raise CheckpointError(
                f"{name} holds Python objects other than tensors and plain data; refusing to unpickle it"
            ) from None
        raise DamagedCheckpointError(f"{name} is not a PyTorch checkpoint ({e})") from None
    except Exception as e:  # torch.load reports torn or foreign files with many exception types
        reason = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise DamagedCheckpointError(
            f"{name} is not a readable checkpoint (truncated or another format?): {reason}"
        ) from None


def _verify_digest(ckpt: dict, name: str) -> None:
    """Recompute the digest of what was read and compare it with the one stored at save time."""
    stored = ckpt.get(DIGEST_KEY)
    if stored is None:
        warnings.warn(
            f"{name} carries no digest (written before checkpoints were verified): its contents are not checked",
            UnverifiedCheckpointWarning,
            stacklevel=3,
        )
        return
    if not isinstance(stored, str) or not stored.startswith("sha256:"):
        raise CheckpointError(f"{name} has a digest of an unknown kind ({str(stored)[:20]!r}); cannot verify it")
    try:
        actual = content_digest({k: v for k, v in ckpt.items() if k != DIGEST_KEY})
    except TypeError as e:
        raise CheckpointError(f"{name} holds a value no cs336_lm checkpoint holds: {e}") from None
    if actual != stored:
        raise DamagedCheckpointError(f"{name} is damaged: its contents differ from the SHA-256 digest saved with it")


def verify_checkpoint(path: str | os.PathLike) -> None:
    """Raise as ``read_checkpoint`` would if the checkpoint file at ``path`` is unreadable or damaged; read
    memory-mapped, so nothing but the digest walk touches the tensors."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnverifiedCheckpointWarning)
        read_checkpoint(path, mmap=True)


def _strip_wrapper_prefixes(state: dict) -> dict:
    """Drop ``_orig_mod.`` / ``module.`` prefixes that a checkpoint of a wrapped model saved elsewhere may carry."""
    for prefix in ("_orig_mod.", "module."):
        while state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _architecture_mismatch(expected: dict, found: dict) -> str | None:
    """The first difference between the model's state dict and the checkpoint's (keys, then shapes), or None."""
    for key, tensor in expected.items():
        if key not in found:
            return f"parameter {key!r} {tuple(tensor.shape)} is missing from the checkpoint"
        if tuple(found[key].shape) != tuple(tensor.shape):
            return (
                f"{key!r} has shape {tuple(found[key].shape)} in the checkpoint but {tuple(tensor.shape)} in the model"
            )
    extra = [k for k in found if k not in expected]
    if extra:
        return f"the checkpoint has {len(extra)} parameter(s) the model lacks, first {extra[0]!r}"
    return None


def apply_checkpoint(
    ckpt: dict, model: nn.Module, optimizer: torch.optim.Optimizer | None = None, name: str = "checkpoint"
) -> int:
    """Load ``ckpt``'s weights into ``model`` (and its state into ``optimizer``); return its iteration.

    The architecture is checked first, so a checkpoint of another shape fails with the first differing parameter
    named and leaves ``model`` untouched.
    """
    target = unwrap_model(model)
    state = _strip_wrapper_prefixes(ckpt["model"])
    mismatch = _architecture_mismatch(target.state_dict(), state)
    if mismatch:
        saved = (ckpt.get("config") or {}).get("model")
        hint = f" (it was saved with model config {saved})" if saved else ""
        raise CheckpointError(f"{name} is from a different model architecture: {mismatch}{hint}")
    target.load_state_dict(state)
    if optimizer is not None:
        if ckpt.get("optimizer") is None:
            raise CheckpointError(f"{name} has no optimizer state to resume from")
        try:
            optimizer.load_state_dict(ckpt["optimizer"])
        except (ValueError, KeyError) as e:
            raise CheckpointError(f"{name}: optimizer state does not match this optimizer: {e}") from None
    return int(ckpt["iteration"])


def load_checkpoint(
    src: Source, model: nn.Module, optimizer: torch.optim.Optimizer | None = None, map_location="cpu"
) -> int:
    """``apply_checkpoint(read_checkpoint(src), model, optimizer)``: restore weights (and optimizer); return the
    iteration. RNG states are not touched — call ``restore_rng_state(read_checkpoint(src)["rng"])`` to resume."""
    return apply_checkpoint(read_checkpoint(src, map_location), model, optimizer, name=_describe(src))
