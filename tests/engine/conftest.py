"""A small random-weight model in float64 (exact enough that batch composition never changes a token)."""

import pytest
import torch

from cs336_lm.nn import PRESETS, TransformerLM


def make_model(seed: int = 0, dtype=torch.float64, **overrides) -> TransformerLM:
    torch.manual_seed(seed)
    return TransformerLM(**{**PRESETS["debug"], **overrides}, dtype=dtype).eval()


@pytest.fixture(scope="module")
def model() -> TransformerLM:
    return make_model()


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """The engine runs many tiny forwards: one intra-op thread is faster for them."""
