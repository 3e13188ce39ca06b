"""Which device a command runs on: one rule for ``lm-train``, ``lm-generate`` and everything that loads a run.

``auto`` is CUDA when available, else Apple's MPS, else the CPU; an explicit ``cpu``, ``cuda``, ``cuda:N`` or
``mps`` must exist. Under torchrun each process takes ``cuda:LOCAL_RANK`` for ``auto``/``cuda``.
"""

from __future__ import annotations

import torch

from cs336_lm.errors import ConfigError


def select_device(spec: str, *, option: str = "device", local_rank: int | None = None, world_size: int = 1):
    """The ``torch.device`` for ``spec``; ``option`` names the setting in errors (``train.device``, ``--device``).

    ``local_rank`` (a process started by torchrun) maps ``auto``/``cuda`` to ``cuda:LOCAL_RANK`` when CUDA is
    there; a fixed ``cuda:N`` with ``world_size > 1`` is refused (every process would share that one GPU).
    """
    if local_rank is not None and spec in ("auto", "cuda") and torch.cuda.is_available():
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} CUDA device(s) exist; "
                "start at most that many processes per node (torchrun --nproc_per_node)"
            )
        return torch.device("cuda", local_rank)
    if world_size > 1 and spec.startswith("cuda:"):
        raise ConfigError(
            f"{option}={spec} with {world_size} processes would put them all on one GPU; use "
            f"{option}=auto or cuda (each process takes cuda:LOCAL_RANK)"
        )
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    return _usable(spec, option)


def _usable(spec: str, option: str) -> torch.device:
    """An explicit device that exists on this machine, or a ``ConfigError`` saying why it cannot be used."""
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ConfigError(f"{option}={spec!r} is not a device (use auto, cpu, cuda, cuda:N or mps)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{option}={spec} but CUDA is not available; use {option}=auto or cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"{option}={spec} but only {torch.cuda.device_count()} CUDA device(s) exist")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{option}={spec} but MPS is not available; use {option}=auto or cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"{option}={spec!r} is not supported (use auto, cpu, cuda, cuda:N or mps)")
    return device
