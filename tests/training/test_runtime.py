"""Device, dtype, compile and process choices, and the SIGINT/SIGTERM handler, checked one by one."""

import os
import signal

import pytest
import torch

from cs336_lm.errors import ConfigError
from cs336_lm.training import runtime
from cs336_lm.training.runtime import GracefulStop, ProcessInfo, process_info, select_dtype, training_device

CPU = torch.device("cpu")


def cpuinfo(tmp_path, flags: str):
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 {flags}\n\nprocessor\t: 1\n")
    return path


@pytest.mark.parametrize(
    ("flags", "expected"),
    [("avx2 avx512f", False), ("avx512f avx512_bf16", True), ("amx_tile amx_bf16", True), ("", False)],
)
def test_cpu_bf16_detection_reads_flags(tmp_path, flags, expected):
    assert runtime.cpu_has_native_bf16(cpuinfo(tmp_path, flags)) is expected


def test_cpu_bf16_detection_without_cpuinfo(tmp_path):
    assert runtime.cpu_has_native_bf16(tmp_path / "absent") is False


# /proc/cpuinfo flag lines of real CPUs (shortened to the SIMD flags), and whether they multiply bf16 natively
HASWELL = "fpu sse4_2 avx f16c fma avx2 bmi2"
SKYLAKE_SP = f"{HASWELL} avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni"
ZEN4 = f"{SKYLAKE_SP} avx512_bf16 avx512_vbmi2"
SAPPHIRE_RAPIDS = f"{ZEN4} avx512_fp16 amx_bf16 amx_tile amx_int8"
ARM = "Features\t: fp asimd fphp asimdhp sve sve2 bf16 i8mm"  # no x86 flags line


@pytest.mark.parametrize(
    ("cpu", "expected"),
    [(HASWELL, torch.float32), (SKYLAKE_SP, torch.float32), (ZEN4, torch.bfloat16), (SAPPHIRE_RAPIDS, torch.bfloat16)],
    ids=["haswell", "skylake-sp", "zen4", "sapphire-rapids"],
)
def test_dtype_auto_follows_the_cpu_flags(tmp_path, monkeypatch, cpu, expected):
    monkeypatch.setattr(runtime, "CPUINFO", cpuinfo(tmp_path, cpu))
    assert select_dtype("auto", CPU) == expected
    assert select_dtype("fp32", CPU) == torch.float32
    assert select_dtype("fp16", CPU) == torch.float16
    assert select_dtype("auto", torch.device("mps")) == torch.float32


def test_auto_never_picks_bf16_without_x86_flags(tmp_path, monkeypatch):
    arm = tmp_path / "cpuinfo"
    arm.write_text(f"processor\t: 0\n{ARM}\n")
    for path in (arm, tmp_path / "absent"):  # an ARM cpuinfo; macOS and Windows have none
        monkeypatch.setattr(runtime, "CPUINFO", path)
        assert select_dtype("auto", CPU) == torch.float32


def test_a_run_on_a_cpu_without_native_bf16_trains_in_fp32(tmp_path, monkeypatch, tiny_config, capsys):
    """Through the whole setup: ``dtype: auto`` on an AVX2-only CPU computes and logs fp32."""
    from cs336_lm.training import Trainer

    monkeypatch.setattr(runtime, "CPUINFO", cpuinfo(tmp_path, HASWELL))
    runner = Trainer(tiny_config(tmp_path / "run", {"train.dtype": "auto"}))
    assert runner.job.dtype == torch.float32 and not runner.job.scaler.enabled
    assert "on cpu, fp32, compile off" in runner._describe()


def test_explicit_bf16_on_a_cpu_without_it_warns(tmp_path, monkeypatch):
    monkeypatch.setattr(runtime, "CPUINFO", cpuinfo(tmp_path, HASWELL))
    with pytest.warns(UserWarning, match="emulated and several times slower"):
        assert select_dtype("bf16", CPU) == torch.bfloat16


@pytest.mark.parametrize(("capability", "expected"), [((7, 5), torch.float16), ((7, 0), torch.float16),
                                                      ((6, 0), torch.float16), ((8, 0), torch.bfloat16),
                                                      ((9, 0), torch.bfloat16)])  # fmt: skip
def test_dtype_auto_on_cuda_takes_fp16_below_ampere(monkeypatch, capability, expected):
    """T4 (7.5), V100 (7.0) and P100 (6.0) get fp16 with loss scaling; A100 (8.0) and H100 (9.0) bf16, even though
    ``torch.cuda.is_bf16_supported()`` says True on a T4 (emulation)."""
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    cuda = torch.device("cuda")
    assert select_dtype("auto", cuda) == expected
    if expected == torch.float16:
        with pytest.warns(UserWarning, match="emulates bfloat16"):
            assert select_dtype("bf16", cuda) == torch.bfloat16
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
        with pytest.raises(ConfigError, match=r"use train\.dtype=fp16"):
            select_dtype("bf16", cuda)


def test_deterministic_mode_is_switched_on_and_put_back():
    before = torch.are_deterministic_algorithms_enabled()
    with runtime.preserved_torch_settings():
        torch.set_num_threads(1)
        runtime.make_deterministic(CPU, compiled=False)
        assert torch.are_deterministic_algorithms_enabled()
    assert torch.are_deterministic_algorithms_enabled() == before


def test_autocast_runs_matmuls_in_bf16_and_leaves_fp32_alone():
    a = torch.randn(4, 4)
    with runtime.autocast(CPU, torch.bfloat16):
        assert (a @ a).dtype == torch.bfloat16
    with runtime.autocast(CPU, torch.float32):
        assert (a @ a).dtype == torch.float32


def test_device_selection():
    one = ProcessInfo()
    assert training_device("cpu", one) == CPU
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert training_device("auto", one).type == expected
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"train\.device=cuda:0 but CUDA is not available"):
            training_device("cuda:0", one)


def test_compile_choice():
    assert runtime.should_compile("auto", CPU) is False
    assert runtime.should_compile("auto", torch.device("cuda")) is True
    assert runtime.should_compile("true", CPU) is True
    assert runtime.should_compile("false", torch.device("cuda")) is False


def test_process_info_single_and_torchrun_mismatch():
    info = process_info("none", {})
    assert info == ProcessInfo(rank=0, world_size=1, local_rank=0) and info.is_main
    assert not ProcessInfo(rank=1, world_size=2, local_rank=1).is_main
    with pytest.raises(ConfigError, match=r"train\.parallel=ddp"):
        process_info("none", {"WORLD_SIZE": "2", "RANK": "0"})


def test_graceful_stop_records_the_signal_and_restores_handlers():
    before = signal.getsignal(signal.SIGTERM)
    with GracefulStop() as stop:
        assert stop.requested is None
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested == "SIGTERM"
        with pytest.raises(KeyboardInterrupt):  # a second signal stops at once
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is before
