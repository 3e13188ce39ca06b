"""A small random-weight TransformerLM (the ``debug`` preset, fp32) shared by the generation tests."""

import pytest
import torch

from cs336_lm.nn import PRESETS, TransformerLM


def make_model(seed: int = 0, **overrides) -> TransformerLM:
    torch.manual_seed(seed)
    return TransformerLM(**{**PRESETS["debug"], **overrides}).eval()


@pytest.fixture(scope="module")
def model() -> TransformerLM:
    return make_model()


@pytest.fixture(autouse=True)
def one_thread():
    """Decoding is a chain of tiny ops: one intra-op thread avoids OpenMP stalls on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
