"""The engine against its oracle: the model's full forward without a cache, one token at a time.

Every path the engine can take to a token is driven here by hypothesis — each attention backend, grouped-query
attention or not, block sizes from 1 to 16, a lone sequence or a crowd, requests arriving while others decode,
blocks consecutive or scattered over the pool (the decode attention reads them in place, as a compacted copy,
gathered for ``sdpa``, or from a lone sequence's contiguous mirror), blocks that earlier requests wrote and gave
back, a pool so small that sequences are preempted and recomputed, prompts sharing a prefix, ``n`` samples of one
prompt, models with the recipe switches of ``ModelArgs`` (post-norm or none, NoPE, the non-gated FFNs, QK-norm, a
tied head, capped logits) — and each request
must produce exactly the tokens the oracle produces for its prompt alone, and the logits it sampled from must be
those of the full forward over the prompt and the tokens before. Greedy and seeded requests alike: a seeded
request draws the same tokens alone and in any crowd. On a GPU the same test runs the Triton paged kernel and the
CUDA-graph replay (``gpu``-marked).

The model is float64 on the CPU, so batch composition and the order of a reduction cannot change a token; on a
GPU (float32) the logits are compared within a tolerance and the tokens wherever the oracle's choice is clear.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import cs336_lm.nn.paged as paged
from cs336_lm.engine import SamplingParams
from cs336_lm.nn import TransformerLM

from .conftest import RecordingEngine, make_model, oracle

VOCAB = 512  # the debug preset's
CONTEXT = 64


# ---- workloads --------------------------------------------------------------------------------------------------


@dataclass
class Request:
    prompt: list[int]
    params: SamplingParams
    arrives: int  # engine steps after the previous request's arrival


@dataclass
class Workload:
    block_size: int
    history: list[list[int]]  # prompts run to completion first: their blocks come back to the pool, written
    requests: list[Request]
    compact_below: float  # paged.COMPACT_BELOW: 0 reads the pool's extent, above 1 always only the blocks in use
    tight: bool  # a pool barely larger than the largest request: sequences are preempted and recomputed


tokens_ = st.integers(0, VOCAB - 1)


@st.composite
def sampling(draw, seed: int) -> SamplingParams:
    greedy = draw(st.booleans())
    return SamplingParams(
        max_new_tokens=draw(st.integers(1, 10)),
        temperature=0.0 if greedy else draw(st.sampled_from([0.7, 1.0, 1.5])),
        top_k=None if greedy else draw(st.sampled_from([None, 20])),
        top_p=None if greedy else draw(st.sampled_from([None, 0.9])),
        repetition_penalty=draw(st.sampled_from([1.0, 1.0, 1.3])),
        seed=seed,
    )


@st.composite
def workloads(draw) -> Workload:
    prefix = draw(st.lists(tokens_, min_size=0, max_size=20)) if draw(st.booleans()) else []
    requests: list[Request] = []
    for i in range(draw(st.integers(1, 5))):
        if requests and draw(st.integers(0, 3)) == 0:  # another sample of an earlier prompt (``n`` > 1)
            prompt = list(draw(st.sampled_from(requests)).prompt)
        else:
            prompt = prefix + draw(st.lists(tokens_, min_size=0 if prefix else 1, max_size=24))
        requests.append(Request(prompt, draw(sampling(seed=i)), draw(st.integers(0, 4))))
    requests[0].arrives = 0
    return Workload(
        block_size=draw(st.sampled_from([1, 2, 3, 4, 8, 16])),
        history=draw(st.lists(st.lists(tokens_, min_size=1, max_size=30), max_size=3)),
        requests=requests,
        compact_below=draw(st.sampled_from([paged.COMPACT_BELOW, 0.0, 1.01])),
        tight=draw(st.booleans()),
    )


def run(engine: RecordingEngine, requests: list[Request]) -> dict[int, list[int]]:
    """Add the requests at their arrival steps and step the engine until all have finished: tokens by index."""
    tokens: dict[int, list[int]] = {}
    index: dict[int, int] = {}
    pending = list(requests)
    wait = 0
    while pending or engine.has_unfinished:
        while pending and wait >= pending[0].arrives:
            request = pending.pop(0)
            rid = engine.add_request(request.prompt, request.params)
            index[rid], tokens[len(index) - 1] = len(index), []
            wait = 0
        for event in engine.step():
            if event.token is not None:
                tokens[index[event.request_id]].append(event.token)
        wait += 1
    return tokens


def _history(prompt: list[int]) -> Request:
    return Request(prompt, SamplingParams(max_new_tokens=3), 0)


def check(model: TransformerLM, workload: Workload, *, exact: bool, atol: float) -> None:
    needed = max(
        len(r.prompt) + r.params.max_new_tokens for r in [*workload.requests, *map(_history, workload.history)]
    )
    kv_tokens = needed + 2 * workload.block_size if workload.tight else 40 * CONTEXT
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(paged, "COMPACT_BELOW", workload.compact_below)
        engine = RecordingEngine(model, block_size=workload.block_size, max_batch_tokens=32, max_kv_tokens=kv_tokens)
        if workload.history:
            engine.generate(workload.history, SamplingParams(max_new_tokens=3))
        first = engine._next_id
        tokens = run(engine, workload.requests)
    assert engine.stats().blocks_used == 0
    for i, request in enumerate(workload.requests):
        want, rows = oracle(model, request.prompt, request.params)
        got = engine.logits[first + i]
        same = len(want)
        if exact:
            assert tokens[i] == want, f"request {i} of {len(workload.requests)}: {request}"
        else:  # float32: a token may differ only where the oracle's two best logits nearly tie
            same = next((s for s, (a, b) in enumerate(zip(tokens[i], want, strict=False)) if a != b), same)
            if same < len(want):
                top = rows[same].topk(2).values
                assert top[0] - top[1] < 10 * atol, f"request {i}, step {same}: {tokens[i][same]} != {want[same]}"
        want_rows = torch.stack(rows[: same + 1])
        torch.testing.assert_close(torch.stack(got[: same + 1]), want_rows, atol=atol, rtol=0)


# ---- the tests --------------------------------------------------------------------------------------------------

MODELS: dict[tuple, TransformerLM] = {}  # built once per module: (attention, kv heads, device, kernels) or switches


def model_for(attention: str, num_kv_heads: int, device: str = "cpu", kernels: str = "auto") -> TransformerLM:
    key = (attention, num_kv_heads, device, kernels)
    if key not in MODELS:
        dtype = torch.float64 if device == "cpu" else torch.float32
        model = make_model(dtype=dtype, attention=attention, num_kv_heads=num_kv_heads, kernels=kernels)
        MODELS[key] = model.to(device)
    return MODELS[key]


LONE_SHORT = Workload(  # the demo's own bug: a lone sequence on one or two consecutive blocks, under sdpa
    block_size=16,
    history=[],
    requests=[Request([7, 8, 9, 10], SamplingParams(max_new_tokens=8), 0)],
    compact_below=paged.COMPACT_BELOW,
    tight=False,
)
LONE_AFTER_OTHERS = Workload(  # a lone sequence on blocks that earlier requests wrote and gave back
    block_size=4,
    history=[list(range(30)), list(range(100, 125))],
    requests=[Request(list(range(300, 306)), SamplingParams(max_new_tokens=10), 0)],
    compact_below=paged.COMPACT_BELOW,
    tight=False,
)


@pytest.mark.parametrize("num_kv_heads", [4, 1], ids=["mha", "gqa"])
@pytest.mark.parametrize("attention", ["reference", "sdpa"])
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(workload=workloads())
@example(workload=LONE_SHORT)
@example(workload=LONE_AFTER_OTHERS)
def test_every_request_decodes_as_the_full_forward_alone(attention, num_kv_heads, workload):
    check(model_for(attention, num_kv_heads), workload, exact=True, atol=1e-9)


SWITCHED = {  # every switch at a value other than its default, in combinations that also vary the attention
    "post-nope-relu2": {"norm": "post", "position": "nope", "ffn": "relu2"},
    "none-qknorm-tied-softcap-gqa": {
        "norm": "none",
        "qk_norm": True,
        "tie_embeddings": True,
        "logit_softcap": 5.0,
        "num_kv_heads": 1,
    },
    "qknorm-silu-sdpa": {"qk_norm": True, "ffn": "silu", "attention": "sdpa"},
}


@pytest.mark.parametrize("switches", list(SWITCHED))
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(workload=workloads())
@example(workload=LONE_SHORT)
@example(workload=LONE_AFTER_OTHERS)
def test_every_switch_decodes_as_the_full_forward_alone(switches, workload):
    check(switched_model(switches), workload, exact=True, atol=1e-9)


def switched_model(name: str, device: str = "cpu") -> TransformerLM:
    key = ("switches", name, device)
    if key not in MODELS:
        dtype = torch.float64 if device == "cpu" else torch.float32
        kernels = "auto" if device == "cpu" else "triton"
        MODELS[key] = make_model(seed=1, dtype=dtype, kernels=kernels, **SWITCHED[name]).to(device)
    return MODELS[key]


@pytest.mark.gpu
@pytest.mark.parametrize("switches", list(SWITCHED))
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(workload=workloads())
@example(workload=LONE_SHORT)
def test_on_cuda_every_switch_decodes_as_the_full_forward_alone(switches, workload):
    if not torch.cuda.is_available():
        pytest.skip("needs an NVIDIA GPU")
    check(switched_model(switches, "cuda"), workload, exact=False, atol=2e-4)


@pytest.mark.gpu
@pytest.mark.parametrize("kernels", ["triton", "torch"])
@pytest.mark.parametrize("num_kv_heads", [4, 1], ids=["mha", "gqa"])
@pytest.mark.parametrize("attention", ["reference", "sdpa"])
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(workload=workloads())
@example(workload=LONE_SHORT)
@example(workload=LONE_AFTER_OTHERS)
def test_on_cuda_every_request_decodes_as_the_full_forward_alone(attention, num_kv_heads, kernels, workload):
    # the Triton paged kernel (kernels=triton) with CUDA-graph replay of decode-only steps, and the gather path
    if not torch.cuda.is_available():
        pytest.skip("needs an NVIDIA GPU")
    check(model_for(attention, num_kv_heads, "cuda", kernels), workload, exact=False, atol=2e-4)
