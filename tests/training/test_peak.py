"""The MFU denominator: datasheet peaks by GPU name and matmul kind, the measured fallback, and MFU itself."""

import time

import pytest
import torch

from cs336_lm.training import peak
from cs336_lm.training.peak import Peak, datasheet_peak, matmul_kind, measure_matmul_peak, mfu, peak_for

T = 1e12


@pytest.mark.parametrize(
    ("name", "kind", "flops"),
    [  # names as torch.cuda.get_device_name() reports them
        ("NVIDIA H100 80GB HBM3", "bf16", 989.5 * T),
        ("NVIDIA H100 PCIe", "bf16", 756.5 * T),
        ("NVIDIA H100 NVL", "fp16", 835.5 * T),
        ("NVIDIA H200", "fp32", 67 * T),
        ("NVIDIA A100-SXM4-80GB", "bf16", 312 * T),
        ("NVIDIA A100 80GB PCIe", "tf32", 156 * T),
        ("NVIDIA A10", "bf16", 125 * T),  # not the A100 entry
        ("NVIDIA A10G", "bf16", 70 * T),  # not the A10 entry
        ("NVIDIA L40S", "bf16", 362.05 * T),
        ("NVIDIA L40", "bf16", 181.05 * T),  # not the L40S entry
        ("NVIDIA L4", "fp16", 121 * T),
        ("Tesla T4", "fp16", 65 * T),
        ("Tesla T4", "fp32", 8.1 * T),
        ("Tesla V100-SXM2-16GB", "fp16", 125 * T),
        ("Tesla V100-PCIE-32GB", "fp16", 112 * T),
        ("Tesla P100-PCIE-16GB", "fp16", 18.7 * T),
        ("NVIDIA GeForce RTX 3090", "bf16", 71 * T),
        ("NVIDIA GeForce RTX 4090", "fp16", 165.2 * T),
        ("NVIDIA RTX A6000", "bf16", 154.8 * T),
    ],
)
def test_datasheet_peaks_by_name_and_kind(name, kind, flops):
    found = datasheet_peak(name, kind)
    assert found is not None and found.flops == flops and "dense" in found.source


@pytest.mark.parametrize(
    ("name", "kind"),
    [("Tesla T4", "bf16"), ("Tesla V100-SXM2-16GB", "tf32"), ("NVIDIA GeForce RTX 3090 Ti", "bf16"), ("B300", "bf16")],
)
def test_unlisted_gpus_and_missing_units_have_no_datasheet_peak(name, kind):
    assert datasheet_peak(name, kind) is None


def test_fp32_uses_tf32_tensor_cores_only_when_torch_allows_them():
    before = torch.get_float32_matmul_precision()
    try:
        assert matmul_kind(torch.float32) == "fp32"  # torch's default, "highest"
        torch.set_float32_matmul_precision("high")
        assert matmul_kind(torch.float32) == "tf32"
    finally:
        torch.set_float32_matmul_precision(before)
    assert matmul_kind(torch.bfloat16) == "bf16" and matmul_kind(torch.float16) == "fp16"


def test_measured_cpu_peak_matches_an_independent_timing_and_leaves_the_rng_alone(one_torch_thread):
    rng = torch.get_rng_state()
    started = time.perf_counter()
    measured = measure_matmul_peak(torch.device("cpu"), torch.float32)
    assert time.perf_counter() - started < 1.0
    assert torch.equal(torch.get_rng_state(), rng)
    n = int(measured.source.split()[1].split("x")[0])
    a, b = torch.ones(n, n), torch.ones(n, n)
    best = min(_timed(lambda: a @ b) for _ in range(3))
    assert 0.2 < measured.flops / (2 * n**3 / best) < 5.0  # the same rate, within a busy machine's noise
    assert measured.source.startswith(f"measured: {n}x{n} float32 matmuls on cpu")


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def test_peak_for_a_gpu_prefers_the_datasheet_and_else_measures(monkeypatch):
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    assert peak_for(cuda, torch.float16).flops == 65 * T
    measured = Peak(40 * T, "measured: 4096x4096 bfloat16 matmuls on cuda")
    monkeypatch.setattr(peak, "_measured", lambda device, dtype, threads: measured)
    assert peak_for(cuda, torch.bfloat16) is measured  # a T4 has no bf16 tensor cores: measured


def test_cpu_peak_names_its_threads(one_torch_thread):
    found = peak_for(torch.device("cpu"), torch.float32)
    assert found.source.startswith("measured:") and found.source.endswith(", 1 thread(s)")
    assert "GFLOP/s" in found.describe() or "TFLOP/s" in found.describe()


def test_mfu_counts_every_device():
    h100 = Peak(989.5 * T, "datasheet")
    assert mfu(6.4e8, 5e5, h100) == pytest.approx(6.4e8 * 5e5 / 989.5e12)
    assert mfu(6.4e8, 5e5, h100, devices=2) == pytest.approx(6.4e8 * 5e5 / 989.5e12 / 2)
    assert mfu(6.4e8, None, h100) is None and mfu(6.4e8, 5e5, None) is None
