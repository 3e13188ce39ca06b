"""Where and how the loop runs: process identity, device, compute dtype, ``torch.compile`` and stop signals.

Each choice is a small pure-ish function of the config and the machine so it can be tested on its own:
``process_info`` (rank/world size from torchrun's environment; the one place that decides "am I the main
process"), ``training_device`` (``cs336_lm.run.select_device`` for this process: ``cuda:LOCAL_RANK`` under
torchrun), ``select_dtype``
(``auto`` = bf16 autocast where bf16 matmul is native), ``autocast`` (the context the forward pass runs in),
``should_compile`` and ``GracefulStop`` (SIGINT/SIGTERM finish the current step instead of killing the run).
"""

from __future__ import annotations

import contextlib
import os
import signal
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cs336_lm.errors import ConfigError
from cs336_lm.run import select_device

BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


@dataclass(frozen=True)
class ProcessInfo:
    """This process's place in a (possibly multi-process) run; a plain run is rank 0 of 1."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    distributed: bool = False  # started by torchrun with train.parallel=ddp|fsdp: a process group is joined

    @property
    def is_main(self) -> bool:
        """Only the main process prints, logs and writes files."""
        return self.rank == 0


def process_info(parallel: str, environ: dict[str, str] | None = None) -> ProcessInfo:
    """The process identity for ``train.parallel``, from torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``.

    ``parallel=none`` under torchrun with ``WORLD_SIZE > 1`` is an error (every copy would train the whole model
    and race on the same files). ``ddp``/``fsdp`` without torchrun (``WORLD_SIZE`` unset) warn and train as one
    plain process, so the same config also runs on a laptop. Example: ``{"WORLD_SIZE": "2", "RANK": "1",
    "LOCAL_RANK": "1"}`` with ``ddp`` -> ``ProcessInfo(rank=1, world_size=2, local_rank=1, distributed=True)``.
    """
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env:
        if parallel != "none":
            warnings.warn(
                f"train.parallel={parallel} but WORLD_SIZE is unset (not started by torchrun); training in one "
                "plain process",
                stacklevel=2,
            )
        return ProcessInfo()
    world_size = _env_int(env, "WORLD_SIZE")
    if parallel == "none":
        if world_size > 1:
            raise ConfigError(
                f"started as {world_size} processes (torchrun) but train.parallel=none; use train.parallel=ddp"
            )
        return ProcessInfo()
    rank = _env_int(env, "RANK")
    local_rank = _env_int(env, "LOCAL_RANK") if "LOCAL_RANK" in env else rank
    if not 0 <= rank < world_size or world_size < 1:
        raise ConfigError(f"RANK={rank} does not fit WORLD_SIZE={world_size} (set by torchrun)")
    return ProcessInfo(rank, world_size, local_rank, distributed=True)


def _env_int(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except KeyError:
        raise ConfigError(f"{name} is not set; start several processes with torchrun") from None
    except ValueError:
        raise ConfigError(f"{name}={env[name]!r} is not an integer") from None


def training_device(spec: str, proc: ProcessInfo) -> torch.device:
    """``train.device`` for this process: ``auto`` = cuda > mps > cpu, and ``cuda:LOCAL_RANK`` under torchrun."""
    local_rank = proc.local_rank if proc.distributed else None
    return select_device(spec, option="train.device", local_rank=local_rank, world_size=proc.world_size)


def cpu_has_native_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """True when the CPU multiplies bf16 natively (``amx_bf16`` or ``avx512_bf16`` among its flags)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            return any(flag in flags for flag in BF16_CPU_FLAGS)
    return False


def select_dtype(spec: str, device: torch.device) -> torch.dtype:
    """The autocast compute dtype: ``torch.bfloat16`` or ``torch.float32`` (no autocast).

    ``auto`` picks bf16 on CUDA devices that support it and on CPUs with native bf16 matmul, fp32 elsewhere.
    Parameters and optimizer state stay fp32 either way; only matmuls inside ``autocast`` run in bf16.
    """
    if spec == "fp32":
        return torch.float32
    if spec == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError("train.dtype=bf16 but this GPU does not support bfloat16; use train.dtype=fp32")
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return torch.float32


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """The context the forward pass and loss run in: bf16 autocast, or nothing for fp32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def should_compile(spec: str, device: torch.device) -> bool:
    """``true``/``false`` as given; ``auto`` compiles on CUDA only (CPU/MPS compile times rarely pay off)."""
    if spec == "auto":
        return device.type == "cuda"
    return spec == "true"


class GracefulStop:
    """Turn SIGINT/SIGTERM into a request to stop after the current step; a second signal stops at once.

    Use as a context manager around the loop and poll ``requested`` (the signal name, or ``None``). Handlers
    are only installed in the main thread (Python restricts ``signal.signal`` to it) and restored on exit.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested is not None:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name

    def __enter__(self) -> GracefulStop:
        with contextlib.suppress(ValueError):  # not the main thread: leave the default handlers
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
