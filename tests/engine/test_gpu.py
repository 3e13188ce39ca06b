"""The engine on CUDA: the Triton paged-decode path and CUDA-graph replay give the tokens of the eager path."""

import pytest
import torch

from cs336_lm.engine import Engine, SamplingParams

from .conftest import make_model, oracle

pytestmark = pytest.mark.gpu


def workload(n=12):
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 40, (n,), generator=g).tolist()
    return [torch.randint(0, 512, (k,), generator=g).tolist() for k in lengths]


@pytest.mark.parametrize("num_kv_heads", [4, 1])
def test_triton_decode_and_graphs_match_the_gather_path(num_kv_heads):
    model = make_model(dtype=torch.float32, num_kv_heads=num_kv_heads).cuda()
    prompts = workload()
    params = [SamplingParams(max_new_tokens=16, temperature=0.9, seed=i) for i in range(len(prompts))]
    outputs = {}
    for name, kwargs in {"graphs": {"cuda_graphs": True}, "eager": {"cuda_graphs": False}}.items():
        engine = Engine(model, block_size=16, max_num_seqs=16, **kwargs)
        assert engine.runner.triton_decode
        outputs[name] = [c.tokens for c in engine.generate(prompts, params)]
        assert (engine.runner.graphs is not None) == (name == "graphs")
    assert outputs["graphs"] == outputs["eager"]


def test_greedy_on_cuda_equals_the_full_forward_on_cuda():
    model = make_model(dtype=torch.float32).cuda()
    prompts = workload(6)
    engine = Engine(model, max_num_seqs=8)
    got = [c.tokens for c in engine.generate(prompts, SamplingParams(max_new_tokens=20))]
    assert got == [oracle(model, p, SamplingParams(max_new_tokens=20))[0] for p in prompts]
