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


def test_dtype_auto_follows_the_cpu(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    assert select_dtype("auto", CPU) == torch.bfloat16
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    assert select_dtype("auto", CPU) == torch.float32
    assert select_dtype("fp32", CPU) == torch.float32
    assert select_dtype("bf16", CPU) == torch.bfloat16
    assert select_dtype("auto", torch.device("mps")) == torch.float32


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
