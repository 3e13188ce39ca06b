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
def _one_thread(one_torch_thread):
    """Decoding is a chain of tiny ops: every generation test runs on one intra-op thread."""
