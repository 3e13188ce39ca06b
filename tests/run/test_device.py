"""One device rule for every command: auto = cuda > mps > cpu; explicit devices must exist; errors name the option."""

import pytest
import torch

from cs336_lm.errors import ConfigError
from cs336_lm.run import select_device


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert select_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert select_device("auto") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the messages shown without CUDA")
@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("cuda", "--device=cuda but CUDA is not available"),
        ("cuda:1", "--device=cuda:1 but CUDA is not available"),
        ("gpu", "--device='gpu' is not a device"),
        ("meta", "--device='meta' is not supported"),
    ],
)
def test_unusable_devices_are_one_line_errors_naming_the_option(spec, message):
    with pytest.raises(ConfigError, match=message):
        select_device(spec, option="--device")


def test_a_fixed_gpu_for_several_processes_is_refused():
    with pytest.raises(ConfigError, match=r"train\.device=cuda:0 with 2 processes"):
        select_device("cuda:0", option="train.device", local_rank=1, world_size=2)
