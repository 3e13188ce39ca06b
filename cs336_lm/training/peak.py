"""The peak matmul rate of one device, the denominator of MFU: a datasheet figure for known GPUs, else measured.

``peak_for(device, dtype)`` returns a ``Peak`` (FLOP/s and where the figure comes from). A CUDA GPU whose name
matches ``GPU_PEAKS`` gets NVIDIA's dense (no 2:4 sparsity) figure for the dtype its matmuls run in: the tensor
cores for bf16/fp16 (with fp32 accumulation, which torch uses), TF32 tensor cores for fp32 when
``torch.set_float32_matmul_precision`` allows them, the CUDA cores for fp32 otherwise (torch's default,
"highest"). Every other device, the CPU and MPS included, gets ``measure_matmul_peak``: square matmuls in the
compute dtype, timed for about 0.2 s, the best round counted. A measured peak is what this device attains on a
large matmul right now, below its theoretical peak (and lower still on a busy machine), so MFU against it reads
higher than against a datasheet; the opening lines of a run say which kind was used.
"""

from __future__ import annotations

import functools
import re
import time
from dataclasses import dataclass

import torch

T = 1e12


@dataclass(frozen=True)
class Peak:
    """Peak FLOP/s of one device for one compute dtype, and its source (a datasheet or "measured: …")."""

    flops: float
    source: str

    def describe(self) -> str:
        """E.g. ``989.5 TFLOP/s (NVIDIA H100 SXM datasheet, bf16 dense)``."""
        rate = f"{self.flops / T:.1f} TFLOP/s" if self.flops >= 10 * T else f"{self.flops / 1e9:,.0f} GFLOP/s"
        return f"{rate} ({self.source})"


@dataclass(frozen=True)
class GpuPeaks:
    """Dense peak FLOP/s of one GPU model by matmul kind; None where the GPU has no such unit."""

    pattern: str  # a regular expression matched (case-insensitively) against torch.cuda.get_device_name()
    name: str
    fp32: float  # CUDA cores, non-tensor
    tf32: float | None
    bf16: float | None
    fp16: float
    source: str


# From NVIDIA's datasheets and architecture whitepapers, dense figures: where a datasheet prints only the 2:4-sparse
# figure (marked *), it is halved here. bf16/fp16 are tensor-core rates with fp32 accumulation (GeForce cards run
# those at half their fp16-accumulate rate). More specific patterns come first (A100 before A10, L40S before L40).
GPU_PEAKS: tuple[GpuPeaks, ...] = (
    # H100/H200 datasheets: TF32 989*, BF16/FP16 1,979* (SXM); 756*/1,513* (PCIe); 835*/1,671* (NVL)
    GpuPeaks(r"GH200", "GH200", 67 * T, 494.5 * T, 989.5 * T, 989.5 * T, "NVIDIA GH200 datasheet"),
    GpuPeaks(r"H200 NVL", "H200 NVL", 60 * T, 417.5 * T, 835.5 * T, 835.5 * T, "NVIDIA H200 datasheet"),
    GpuPeaks(r"H200", "H200 SXM", 67 * T, 494.5 * T, 989.5 * T, 989.5 * T, "NVIDIA H200 datasheet"),
    GpuPeaks(r"H100 NVL", "H100 NVL", 60 * T, 417.5 * T, 835.5 * T, 835.5 * T, "NVIDIA H100 datasheet"),
    GpuPeaks(r"H100 PCIe", "H100 PCIe", 51 * T, 378 * T, 756.5 * T, 756.5 * T, "NVIDIA H100 datasheet"),
    GpuPeaks(r"H100", "H100 SXM", 67 * T, 494.5 * T, 989.5 * T, 989.5 * T, "NVIDIA H100 datasheet"),
    # A100 datasheet: the same peaks for PCIe and SXM4, 40 and 80 GB
    GpuPeaks(r"A100", "A100", 19.5 * T, 156 * T, 312 * T, 312 * T, "NVIDIA A100 datasheet"),
    GpuPeaks(r"\bA40\b", "A40", 37.4 * T, 74.8 * T, 149.7 * T, 149.7 * T, "NVIDIA A40 datasheet"),
    GpuPeaks(r"\bA30\b", "A30", 10.3 * T, 82 * T, 165 * T, 165 * T, "NVIDIA A30 datasheet"),
    # A10G (AWS G5): no NVIDIA datasheet; 80 SMs at 1.71 GHz, tensor cores at the GeForce GA102 rate per SM
    GpuPeaks(r"A10G", "A10G", 35 * T, 35 * T, 70 * T, 70 * T, "A10G: 80 SMs x 1.71 GHz, no NVIDIA datasheet"),
    GpuPeaks(r"\bA10\b", "A10", 31.2 * T, 62.5 * T, 125 * T, 125 * T, "NVIDIA A10 datasheet"),
    # L40S: TF32 366*, BF16/FP16 733*; L40: 181*, 362*; L4: 120*, 242*
    GpuPeaks(r"L40S", "L40S", 91.6 * T, 183 * T, 362.05 * T, 362.05 * T, "NVIDIA L40S datasheet"),
    GpuPeaks(r"L40\b", "L40", 90.5 * T, 90.5 * T, 181.05 * T, 181.05 * T, "NVIDIA L40 datasheet"),
    GpuPeaks(r"\bL4\b", "L4", 30.3 * T, 60 * T, 121 * T, 121 * T, "NVIDIA L4 datasheet"),
    # Turing/Volta/Pascal: no bf16, no tf32; T4 "mixed precision (FP16/FP32) 65 TFLOPS", V100 "tensor performance"
    GpuPeaks(r"\bT4\b", "T4", 8.1 * T, None, None, 65 * T, "NVIDIA T4 datasheet"),
    GpuPeaks(r"V100S", "V100S PCIe", 16.4 * T, None, None, 130 * T, "NVIDIA V100 datasheet"),
    GpuPeaks(r"V100.*PCIE", "V100 PCIe", 14 * T, None, None, 112 * T, "NVIDIA V100 datasheet"),
    GpuPeaks(r"V100", "V100 SXM2", 15.7 * T, None, None, 125 * T, "NVIDIA V100 datasheet"),
    GpuPeaks(r"P100.*PCIE", "P100 PCIe", 9.3 * T, None, None, 18.7 * T, "NVIDIA P100 datasheet"),
    GpuPeaks(r"P100", "P100 SXM2", 10.6 * T, None, None, 21.2 * T, "NVIDIA P100 datasheet"),
    # workstation and GeForce cards (Ampere GA102, Ada, Turing whitepapers); RTX 6000 Ada: its 1,457 is FP8*
    GpuPeaks(r"RTX 6000 Ada", "RTX 6000 Ada", 91.1 * T, 182.1 * T, 364.2 * T, 364.2 * T, "NVIDIA RTX 6000 datasheet"),
    GpuPeaks(r"RTX A6000", "RTX A6000", 38.7 * T, 77.4 * T, 154.8 * T, 154.8 * T, "NVIDIA RTX A6000 datasheet"),
    GpuPeaks(r"RTX 4090\b(?! D)", "RTX 4090", 82.6 * T, 82.6 * T, 165.2 * T, 165.2 * T, "NVIDIA Ada whitepaper"),
    GpuPeaks(r"RTX 3090\b(?! Ti)", "RTX 3090", 35.6 * T, 35.6 * T, 71 * T, 71 * T, "NVIDIA GA102 whitepaper"),
    GpuPeaks(r"RTX 3080\b(?! Ti)", "RTX 3080", 29.8 * T, 29.8 * T, 59.5 * T, 59.5 * T, "NVIDIA GA102 whitepaper"),
    GpuPeaks(r"RTX 2080 Ti", "RTX 2080 Ti", 13.4 * T, None, None, 53.8 * T, "NVIDIA Turing whitepaper"),
)


def matmul_kind(dtype: torch.dtype) -> str:
    """Which units a matmul in ``dtype`` runs on: ``bf16``, ``fp16``, ``tf32`` (fp32 that torch lets use TF32
    tensor cores, ``torch.get_float32_matmul_precision() != "highest"``) or ``fp32``."""
    if dtype == torch.bfloat16:
        return "bf16"
    if dtype == torch.float16:
        return "fp16"
    return "fp32" if torch.get_float32_matmul_precision() == "highest" else "tf32"


def datasheet_peak(gpu_name: str, kind: str) -> Peak | None:
    """The ``GPU_PEAKS`` figure for a GPU name and a ``matmul_kind``, or None for an unlisted GPU or unit."""
    for entry in GPU_PEAKS:
        if re.search(entry.pattern, gpu_name, flags=re.IGNORECASE):
            flops = getattr(entry, kind)
            return None if flops is None else Peak(flops, f"{entry.source}, {entry.name} {kind} dense")
    return None


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _seconds(device: torch.device, a: torch.Tensor, b: torch.Tensor, repeats: int) -> float:
    """Wall time of ``repeats`` products ``a @ b``, the device synchronised before and after."""
    _synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        torch.matmul(a, b)
    _synchronize(device)
    return time.perf_counter() - started


def measure_matmul_peak(device: torch.device, dtype: torch.dtype, budget_s: float = 0.2, max_n: int = 0) -> Peak:
    """The best rate ``2·n³ / t`` of square ``n × n`` matmuls in ``dtype`` on ``device``, within about ``budget_s``.

    ``n`` doubles from 256 while one product (after a warm-up product at that size) takes under a twentieth of the
    budget, up to ``max_n`` (8192 on a GPU, 1024 elsewhere), so a slow device is not kept long; then rounds of
    products are timed until the budget is spent, and the fastest round counts (a round the scheduler interrupted
    is slow, not fast). The operands come from a generator of their own: the run's random streams are untouched.
    """
    started = time.perf_counter()
    deadline = started + budget_s
    max_n = max_n or (8192 if device.type == "cuda" else 1024)
    generator = torch.Generator().manual_seed(0)  # on the CPU: every device type can take its tensors
    n, single = 128, 0.0
    while n < max_n and single < budget_s / 20 and time.perf_counter() < started + budget_s / 2:
        n *= 2
        a, b = (torch.randn(n, n, generator=generator).to(device, dtype) for _ in range(2))
        _seconds(device, a, b, 1)  # warm-up: the first product at a size also builds its kernel (oneDNN, cuBLAS)
        single = _seconds(device, a, b, 1)
    repeats = max(1, int(budget_s / 10 / max(single, 1e-6)))  # about ten rounds in the budget
    best = single
    while time.perf_counter() < deadline:
        best = min(best, _seconds(device, a, b, repeats) / repeats)
    name = str(dtype).removeprefix("torch.")
    return Peak(2 * n**3 / best, f"measured: {n}x{n} {name} matmuls on {device.type}")


@functools.lru_cache(maxsize=16)
def _measured(device: torch.device, dtype: torch.dtype, threads: int) -> Peak:
    """``measure_matmul_peak`` once per device, dtype and thread count in this process."""
    return measure_matmul_peak(device, dtype)


def peak_for(device: torch.device, dtype: torch.dtype) -> Peak:
    """The MFU denominator for one ``device`` computing in ``dtype``: the datasheet figure, else measured."""
    if device.type == "cuda":
        found = datasheet_peak(torch.cuda.get_device_name(device), matmul_kind(dtype))
        if found is not None:
            return found
    peak = _measured(device, dtype, torch.get_num_threads())
    if device.type == "cpu":
        return Peak(peak.flops, f"{peak.source}, {torch.get_num_threads()} thread(s)")
    return peak


def mfu(flops_per_token: float, tokens_per_s: float | None, peak: Peak | None, devices: int = 1) -> float | None:
    """Model FLOPs utilisation: ``flops_per_token · tokens_per_s / (peak · devices)`` (PaLM, Chowdhery et al. 2022,
    App. B), with ``tokens_per_s`` counted over all ``devices``.

    ``flops_per_token`` is the training (forward + backward) matmul FLOPs per token from
    ``cs336_lm.nn.accounting.training_flops_per_token``. Example: 6.4e8 FLOP/token at 500k tokens/s on one H100
    in bf16 → 3.2e14 / 9.895e14 ≈ 0.32; the same rate over 2 GPUs is 0.16.
    """
    if peak is None or not tokens_per_s:
        return None
    return flops_per_token * tokens_per_s / (peak.flops * devices)
