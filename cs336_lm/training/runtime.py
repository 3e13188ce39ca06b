"""Where and how the loop runs: process identity, device, compute dtype, CPU threads, determinism, ``torch.compile``
and stop signals.

Each choice is a small pure-ish function of the config and the machine so it can be tested on its own:
``process_info`` (rank/world size from torchrun's environment; the one place that decides "am I the main
process"), ``training_device`` (``cs336_lm.run.select_device`` for this process: ``cuda:LOCAL_RANK`` under
torchrun), ``select_dtype`` (``auto`` = bf16 autocast where bf16 matmul is native, fp16 with loss scaling on older
GPUs), ``autocast`` (the context the forward pass runs in), ``make_deterministic`` (``train.deterministic``),
``preserved_torch_settings`` (puts the process-wide torch settings back after a run), ``should_compile`` and
``GracefulStop`` (SIGINT/SIGTERM finish the current step instead of killing the run). The thread count is
``cs336_lm.run.threads`` (``train.threads``: ``auto`` = one per idle core), the rule every command shares.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cs336_lm.errors import ConfigError
from cs336_lm.run import select_device

BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
CPUINFO = Path("/proc/cpuinfo")


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


def cpu_has_native_bf16(cpuinfo: str | Path | None = None) -> bool:
    """True when the CPU multiplies bf16 natively (``amx_bf16`` or ``avx512_bf16`` among its flags in ``CPUINFO``).

    False where that file is missing or has no x86 ``flags`` line (macOS, Windows, ARM's ``Features``): ``auto``
    then never picks an emulated bf16.
    """
    try:
        text = Path(cpuinfo or CPUINFO).read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            return any(flag in flags for flag in BF16_CPU_FLAGS)
    return False


def cuda_has_native_bf16(device: torch.device) -> bool:
    """True on GPUs whose tensor cores multiply bf16 (compute capability 8.0, Ampere, and later; ROCm GPUs).

    Not ``torch.cuda.is_bf16_supported()``: by default that also says True on a T4 or V100, where bf16 is emulated.
    """
    if torch.version.hip:
        return True
    return torch.cuda.get_device_capability(device)[0] >= 8


def select_dtype(spec: str, device: torch.device) -> torch.dtype:
    """The autocast compute dtype: ``torch.bfloat16``, ``torch.float16`` or ``torch.float32`` (no autocast).

    ``auto``: bf16 on GPUs with native bf16 (compute capability >= 8.0), fp16 on older CUDA GPUs (T4, V100, P100;
    the loop adds dynamic loss scaling, ``cs336_lm.training.scaler``), bf16 on CPUs with native bf16 matmul
    (``cpu_has_native_bf16``), fp32 on every other CPU and on MPS: emulated bf16 is several times slower than fp32.
    Parameters and optimizer state stay fp32 either way; only the ops autocast lists run in the lower precision.
    """
    if spec == "fp32":
        return torch.float32
    if spec == "fp16":
        return torch.float16
    if spec == "bf16":
        _check_explicit_bf16(device)
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if cuda_has_native_bf16(device) else torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return torch.float32


def _check_explicit_bf16(device: torch.device) -> None:
    """``train.dtype=bf16`` where bf16 is only emulated: a warning (or an error where it cannot run at all)."""
    if device.type == "cuda" and not cuda_has_native_bf16(device):
        if not torch.cuda.is_bf16_supported(including_emulation=True):
            raise ConfigError("train.dtype=bf16 but this GPU does not support bfloat16; use train.dtype=fp16 or auto")
        warnings.warn("this GPU emulates bfloat16 (compute capability < 8.0); train.dtype=fp16 is faster", stacklevel=3)
    elif device.type == "cpu" and not cpu_has_native_bf16():
        warnings.warn(
            "this CPU has no native bf16 matmul (no amx_bf16/avx512_bf16): bf16 autocast is emulated and several "
            "times slower than train.dtype=fp32",
            stacklevel=3,
        )


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """The context the forward pass and loss run in: bf16 or fp16 autocast, or nothing for fp32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_deterministic(device: torch.device, compiled: bool) -> None:
    """``train.deterministic``: only deterministic kernels, so equal inputs give bitwise equal runs.

    ``torch.use_deterministic_algorithms(True)`` (an op without a deterministic kernel raises instead of running);
    on CUDA also a fixed cuBLAS workspace (``CUBLAS_WORKSPACE_CONFIG=:4096:8``, unless already set; cuBLAS reads it
    when its first handle is made, i.e. at the first matmul) and cuDNN's deterministic, non-benchmarking mode; with
    ``torch.compile``, Inductor's deterministic mode (no on-device benchmarking of kernels that change numerics).
    On the CPU the op this fixes is the backward of an embedding lookup (``index_put_`` with accumulation adds rows
    in thread order); matmul results still depend on the thread count, which the caller keeps fixed.
    """
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True)
    if compiled:
        import torch._inductor.config as inductor_config

        inductor_config.deterministic = True


@contextlib.contextmanager
def preserved_torch_settings():
    """Put back, on exit, the process-wide torch settings a run changes: threads and deterministic algorithms
    (``train()`` runs inside it, so a script or test that trains twice starts the second run as it found it)."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    inductor = sys.modules.get("torch._inductor.config")  # imported by torch.compile; its default reads the env
    inductor_deterministic = getattr(inductor, "deterministic", os.getenv("TORCHINDUCTOR_DETERMINISTIC") == "1")
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
        inductor_config: Any = sys.modules.get("torch._inductor.config")
        if inductor_config is not None:
            inductor_config.deterministic = inductor_deterministic


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
