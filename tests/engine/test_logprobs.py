"""Log-probabilities from the engine against the full forward without a cache (the oracle of ``conftest``).

A request with ``logprobs`` gets, for every token it samples, ``log_softmax`` of the logits the oracle computes for
that position — the model's distribution, before temperature, top-k, top-p and the penalty — and the ``logprobs``
most likely tokens in order; one with ``prompt_logprobs`` gets every prompt token's, computed in the step's one
forward beside the other requests, whatever the engine does meanwhile: prompts cut into chunks, blocks shared
with earlier requests through the prefix cache (a scoring request computes those positions itself), sequences
preempted and recomputed. ``max_new_tokens=0`` scores a prompt and generates nothing. The model is float64, so
every value is compared to 1e-9.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cs336_lm.engine import Engine, SamplingParams
from cs336_lm.errors import GenerationError
from cs336_lm.generation.logprobs import MAX_TOP_LOGPROBS, token_logprobs
from cs336_lm.nn import TransformerLM

from .conftest import oracle
from .test_oracle import CONTEXT, Request, Workload, workloads

ATOL = 1e-9


def full_logprobs(model: TransformerLM, tokens: list[int]) -> torch.Tensor:
    """``log_softmax`` of the full forward over ``tokens``: row ``p`` scores token ``p + 1`` (tokens, vocab)."""
    with torch.no_grad():
        return torch.log_softmax(model(torch.tensor([tokens]))[0], dim=-1)


def assert_entry(entry, row: torch.Tensor, token: int, n: int) -> None:
    """``entry`` is ``token``'s log-probability in ``row`` (log-softmaxed) with the ``n`` best of ``row`` in order."""
    assert entry.token == token
    assert entry.logprob == pytest.approx(float(row[token]), abs=ATOL)
    best = row.topk(n)
    assert [t for t, _ in entry.top] == best.indices.tolist()
    assert [lp for _, lp in entry.top] == pytest.approx(best.values.tolist(), abs=ATOL)
    assert all(a >= b for (_, a), (_, b) in zip(entry.top, entry.top[1:], strict=False))


def with_logprobs(draw, request: Request) -> Request:
    """``request`` asking for some of: sampled tokens' log-probabilities, the prompt's, only the prompt's."""
    prompt_n = draw(st.sampled_from([None, 0, 3]))
    params = replace(request.params, logprobs=draw(st.sampled_from([None, 0, 2])), prompt_logprobs=prompt_n)
    if prompt_n is not None and draw(st.booleans()):
        params = replace(params, max_new_tokens=0)
    return replace(request, params=params)


@st.composite
def scoring_workloads(draw) -> tuple[Workload, int]:
    workload = draw(workloads())
    workload.requests = [with_logprobs(draw, r) for r in workload.requests]
    return workload, draw(st.sampled_from([5, 32]))


def run_events(engine: Engine, requests: list[Request]) -> list[list]:
    """Add the requests at their arrival steps and step until all have finished: each request's events."""
    events: list[list] = []
    index: dict[int, int] = {}
    pending, wait = list(requests), 0
    while pending or engine.has_unfinished:
        while pending and wait >= pending[0].arrives:
            request = pending.pop(0)
            index[engine.add_request(request.prompt, request.params)] = len(events)
            events.append([])
            wait = 0
        for event in engine.step():
            events[index[event.request_id]].append(event)
        wait += 1
    return events


def check(model: TransformerLM, workload: Workload, max_batch_tokens: int) -> None:
    needed = max(len(r.prompt) + r.params.max_new_tokens for r in workload.requests)
    needed = max([needed, *(len(h) + 3 for h in workload.history)])
    kv_tokens = needed + 2 * workload.block_size if workload.tight else 40 * CONTEXT
    engine = Engine(model, block_size=workload.block_size, max_batch_tokens=max_batch_tokens, max_kv_tokens=kv_tokens)
    if workload.history:  # their full blocks stay registered: later prompts sharing a prefix find them cached
        engine.generate(workload.history, SamplingParams(max_new_tokens=3))
    all_events = run_events(engine, workload.requests)
    assert engine.stats().blocks_used == 0
    for request, events in zip(workload.requests, all_events, strict=True):
        p, prompt = request.params, request.prompt
        tokens = [e.token for e in events if e.token is not None]
        assert events[-1].finish_reason in ("length", "context", "stop"), events[-1]
        assert tokens == oracle(model, prompt, p)[0]
        full = full_logprobs(model, prompt + tokens)
        reported = [e.prompt_logprobs for e in events if e.prompt_logprobs is not None]
        if p.prompt_logprobs is None:
            assert reported == []
        else:
            [scored] = reported
            assert len(scored) == len(prompt) and scored[0] is None
            for i, entry in enumerate(scored[1:], start=1):
                assert_entry(entry, full[i - 1], prompt[i], p.prompt_logprobs)
        if p.max_new_tokens == 0:
            assert tokens == [] and [e.finish_reason for e in events] == ["length"]
        entries = [e.logprob for e in events if e.token is not None]
        if p.logprobs is None:
            assert entries == [None] * len(tokens)
            continue
        for j, (token, entry) in enumerate(zip(tokens, entries, strict=True)):
            assert_entry(entry, full[len(prompt) + j - 1], token, p.logprobs)


SHARED_PREFIX = Workload(  # the prompt's first blocks are registered by an earlier request: it must compute them
    block_size=4,
    history=[list(range(20))],
    requests=[
        Request([*range(18), 400, 401], SamplingParams(max_new_tokens=3, logprobs=2, prompt_logprobs=2), 0),
        Request(list(range(20)), SamplingParams(max_new_tokens=0, prompt_logprobs=1), 0),
    ],
    compact_below=0.75,
    tight=False,
)
PREEMPTED = Workload(  # a pool too small for both: the later one is preempted, perhaps mid-prompt, and recomputed
    block_size=2,
    history=[],
    requests=[
        Request(list(range(30, 60)), SamplingParams(max_new_tokens=6, logprobs=1, prompt_logprobs=1), 0),
        Request(list(range(100, 128)), SamplingParams(max_new_tokens=4, prompt_logprobs=3, temperature=1.0, seed=3), 0),
    ],
    compact_below=0.75,
    tight=True,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=scoring_workloads())
@example(case=(SHARED_PREFIX, 32))
@example(case=(SHARED_PREFIX, 5))
@example(case=(PREEMPTED, 5))
@example(case=(PREEMPTED, 32))
def test_logprobs_of_sampled_and_prompt_tokens_are_the_full_forwards(model, case):
    check(model, *case)


def test_a_prompt_that_fills_the_context_is_scored_but_cannot_generate(model):
    prompt = [(7 * i) % 500 for i in range(CONTEXT)]
    engine = Engine(model, block_size=8)
    [done] = engine.generate([prompt], SamplingParams(max_new_tokens=0, prompt_logprobs=0))
    assert done.tokens == [] and done.finish_reason == "length" and len(done.prompt_logprobs) == CONTEXT
    full = full_logprobs(model, prompt)
    assert [e.logprob for e in done.prompt_logprobs[1:]] == pytest.approx(full[:-1].gather(1, torch.tensor(
        prompt[1:])[:, None])[:, 0].tolist(), abs=ATOL)  # fmt: skip
    with pytest.raises(GenerationError, match="no room to generate"):
        engine.add_request(prompt, SamplingParams(max_new_tokens=1, prompt_logprobs=0))


def test_requests_that_ask_for_nothing_run_the_head_over_their_sampling_rows_only(model):
    """The hot path: no log-softmax, and the head sees one row per sampling sequence, unless a request scores."""
    rows: list[int] = []
    hook = model.lm_head.register_forward_hook(lambda module, args, out: rows.append(out.shape[0]))
    try:
        engine = Engine(model, block_size=4)
        engine.generate([list(range(10)), list(range(20, 27))], SamplingParams(max_new_tokens=3))
        assert rows == [2, 2, 2]
        rows.clear()
        engine.generate([list(range(40, 50)), [5, 6]], [SamplingParams(max_new_tokens=0, prompt_logprobs=0),
                                                         SamplingParams(max_new_tokens=1)])  # fmt: skip
        assert rows == [10 + 1]  # nine prompt positions and the last one of the scoring request, one of the other
    finally:
        hook.remove()


def test_nan_logits_while_scoring_end_that_request_alone(model):
    class NanScores(Engine):
        def _score_prompt(self, seq, positions, rows):
            super()._score_prompt(seq, positions, torch.full_like(rows, math.nan))

    engine = NanScores(model, block_size=4)
    scoring = engine.add_request(list(range(12)), SamplingParams(max_new_tokens=0, prompt_logprobs=1))
    other = engine.add_request(list(range(12)), SamplingParams(max_new_tokens=2))
    events = []
    while engine.has_unfinished:
        events += engine.step()
    [failed] = [e for e in events if e.request_id == scoring]
    assert failed.finish_reason == "error" and "NaN" in str(failed.error)
    assert [e.finish_reason for e in events if e.request_id == other] == [None, "length"]
    assert engine.stats().blocks_used == 0


@pytest.mark.parametrize("value", [-1, MAX_TOP_LOGPROBS + 1, 1.5, True])
@pytest.mark.parametrize("name", ["logprobs", "prompt_logprobs"])
def test_bad_logprob_counts_are_refused_by_name(name, value):
    with pytest.raises(GenerationError, match=name):
        SamplingParams(**{name: value})


def test_token_logprobs_is_log_softmax_with_the_best_in_order():
    logits = torch.tensor([[1.0, 3.0, 2.0, -1.0], [0.0, 0.0, 5.0, 1.0]])
    entries = token_logprobs(logits, [3, 2], top_n=[2, 0])
    want = torch.log_softmax(logits.double(), dim=-1)
    assert entries[0].logprob == pytest.approx(float(want[0, 3]), abs=1e-6) and entries[1].top == ()
    assert [t for t, _ in entries[0].top] == [1, 2]
    assert [lp for _, lp in entries[0].top] == pytest.approx(want[0, [1, 2]].tolist(), abs=1e-6)
