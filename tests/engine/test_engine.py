"""The engine against things it did not compute: the model's full forward on each prompt alone, the block pool's
own accounting, and hand-made cases for every way a request ends."""

import math
import os
import random

import pytest
import torch

from cs336_lm.engine import Engine, SamplingParams
from cs336_lm.errors import GenerationError
from cs336_lm.tokenizer import Tokenizer

from .conftest import RecordingEngine, make_model, oracle


def random_prompts(n, seed, vocab=512, longest=40):
    rng = random.Random(seed)
    return [[rng.randrange(vocab) for _ in range(rng.randint(1, longest))] for _ in range(n)]


def alone(model, prompt, p: SamplingParams):
    """What the oracle (the full forward without a cache) gives ``prompt`` alone."""
    return oracle(model, prompt, p)[0]


@pytest.mark.parametrize("attention", ["reference", "sdpa"])
@pytest.mark.parametrize("num_kv_heads", [4, 1])
def test_paged_logits_equal_full_sequence_and_contiguous_cache(attention, num_kv_heads):
    model = make_model(dtype=torch.float32, attention=attention, num_kv_heads=num_kv_heads)
    prompts = random_prompts(6, seed=1)
    engine = RecordingEngine(model, block_size=4, max_batch_tokens=24, max_kv_tokens=400)
    outs = engine.generate(prompts, SamplingParams(max_new_tokens=12))
    for rid, (prompt, out) in enumerate(zip(prompts, outs, strict=True)):
        tokens = torch.tensor([prompt + out.tokens])
        with torch.inference_mode():
            full = model(tokens)[0, len(prompt) - 1 : -1]  # (12, vocab): the rows each new token came from
        torch.testing.assert_close(torch.stack(engine.logits[rid]), full, atol=2e-5, rtol=0)
        assert out.tokens == alone(model, prompt, SamplingParams(max_new_tokens=12))


@pytest.mark.parametrize("compact", [0.0, 1.01])
@pytest.mark.parametrize("attention", ["reference", "sdpa"])
def test_decoding_over_shared_prefix_blocks_keeps_the_full_sequence_logits(attention, compact, monkeypatch):
    # Prompts sharing 3 full blocks (and samples of one prompt sharing all of its full blocks): a block several
    # decoding sequences read at once must give each of them the logits of its own full forward — reading the
    # pool's whole used extent (compact 0) or only the blocks in use (compact 1.01: always).
    import cs336_lm.nn.paged as paged

    monkeypatch.setattr(paged, "COMPACT_BELOW", compact)
    model = make_model(dtype=torch.float32, attention=attention, num_kv_heads=2)
    prefix = list(range(200, 212))
    prompts = [[*prefix, *tail] for tail in random_prompts(4, seed=3, longest=9)] + [list(range(40, 57))] * 3
    engine = RecordingEngine(model, block_size=4, max_batch_tokens=64, max_kv_tokens=400)
    for pool in engine.cache.keys + engine.cache.values:  # stale contents (finite) must weigh nothing
        pool.normal_(std=1e3)
    engine.cache.zeroed = engine.cache.num_blocks
    params = [SamplingParams(max_new_tokens=10, temperature=1.0, seed=i) for i in range(len(prompts))]
    outs = engine.generate(prompts, params)
    assert engine.blocks.num_used == 0
    for rid, (prompt, out) in enumerate(zip(prompts, outs, strict=True)):
        with torch.inference_mode():
            full = model(torch.tensor([prompt + out.tokens]))[0, len(prompt) - 1 : -1]
        torch.testing.assert_close(torch.stack(engine.logits[rid]), full, atol=2e-5, rtol=0)


def test_decode_plan_reads_only_the_blocks_in_use_when_they_are_scattered():
    from cs336_lm.nn.paged import DecodePlan

    scattered = DecodePlan.build([[5, 9], [13]], [7, 2], 4, torch.device("cpu"))
    assert scattered.blocks is not None and scattered.blocks.tolist() == [0, 5, 9, 13]  # 0: the sink pads [13]
    assert scattered.used == 4 and sorted(scattered.owned_blocks.tolist()) == [0, 1, 2, 3]
    dense = DecodePlan.build([[1, 2], [3, 4]], [8, 6], 4, torch.device("cpu"))
    assert dense.blocks is None and dense.used == 5


@pytest.mark.parametrize("attention", ["reference", "sdpa"])
def test_a_lone_sequence_decodes_over_its_mirror_appended_or_rebuilt_from_the_pool(monkeypatch, attention):
    """Two requests, one stopping early: the other decodes alone from then on, over ``LoneMirror``. The mirror is
    rebuilt from the pool when the sequence starts decoding alone and when it outgrows its buffers, and appended to
    on every other step; the logits stay the full forward's."""
    import cs336_lm.nn.paged as paged

    held = []
    extend = paged.LoneMirror.extend
    monkeypatch.setattr(
        paged.LoneMirror, "extend", lambda self, *a: held.append((a[1], extend(self, *a))) or held[-1][1]
    )
    model = make_model(dtype=torch.float32, num_kv_heads=2, attention=attention)
    prompts = random_prompts(2, seed=5, longest=30)
    engine = RecordingEngine(model, block_size=4, max_kv_tokens=400)
    params = [SamplingParams(max_new_tokens=3), SamplingParams(max_new_tokens=24)]
    outs = engine.generate(prompts, params)
    for rid, (prompt, out) in enumerate(zip(prompts, outs, strict=True)):
        with torch.inference_mode():
            full = model(torch.tensor([prompt + out.tokens]))[0, len(prompt) - 1 : -1]
        torch.testing.assert_close(torch.stack(engine.logits[rid]), full, atol=2e-5, rtol=0)
    lengths = [length for length, _ in held]
    assert lengths == list(range(lengths[0], len(prompts[1]) + 24))  # every lone step of the long request
    assert lengths[0] > len(prompts[1]) + 1  # it decoded beside the short one first
    rebuilt = [length for length, h in held if h == 0]
    assert rebuilt[0] == lengths[0] and all(h == length - 1 for length, h in held if length not in rebuilt)
    assert 2 <= len(rebuilt) <= 3  # the first lone step, then each time the buffers double


def test_greedy_and_seeded_requests_equal_generate_alone_whatever_shares_the_batch(model):
    prompts = random_prompts(10, seed=2)
    params = [
        SamplingParams(max_new_tokens=5 + i, temperature=[0.0, 0.8, 1.3][i % 3], top_k=[None, 40][i % 2], seed=i)
        for i in range(10)
    ]
    for max_batch_tokens in (8, 64):
        engine = Engine(model, block_size=4, max_batch_tokens=max_batch_tokens, max_kv_tokens=600)
        outs = engine.generate(prompts, params)
        assert [o.tokens for o in outs] == [alone(model, pr, p) for pr, p in zip(prompts, params, strict=True)]
        assert all(o.finish_reason == "length" for o in outs)


def test_a_tiny_pool_preempts_and_loses_nothing(model):
    prompts = random_prompts(12, seed=3, longest=30)
    params = [SamplingParams(max_new_tokens=20, temperature=0.9, seed=i) for i in range(12)]
    engine = Engine(model, block_size=4, max_batch_tokens=32, max_kv_tokens=64)
    outs = engine.generate(prompts, params)
    assert engine.stats().preemptions > 0
    assert [o.tokens for o in outs] == [alone(model, pr, p) for pr, p in zip(prompts, params, strict=True)]
    stats = engine.stats()
    assert stats.blocks_used == 0 and stats.blocks_free == engine.blocks.capacity


def test_samples_of_one_prompt_share_its_blocks(model):
    prompt = list(range(30))  # 30 tokens: 7 full blocks of 4
    engine = Engine(model, block_size=4, max_batch_tokens=64, max_kv_tokens=400)
    ids = [engine.add_request(prompt, SamplingParams(max_new_tokens=6, temperature=1.0, seed=s)) for s in range(4)]
    used = []
    while engine.has_unfinished:
        engine.step()
        used.append(engine.stats().blocks_used)
    # alone, 4 samples hold 4 x 9 blocks at the end; sharing the 7 full prompt blocks leaves 7 + 4 x 2
    assert max(used) == 7 + 4 * 2
    assert ids == [0, 1, 2, 3]


def test_a_common_prefix_is_computed_once(model, monkeypatch):
    prefix = list(range(100, 124))  # 6 full blocks of 4
    engine = Engine(model, block_size=4, max_batch_tokens=64, max_kv_tokens=400)
    engine.generate([[*prefix, 1, 2, 3]], SamplingParams(max_new_tokens=3))
    planned = []
    schedule = engine.scheduler.schedule
    monkeypatch.setattr(engine.scheduler, "schedule", lambda: planned.append(schedule()) or planned[-1])
    second = engine.generate([[*prefix, 9, 8]], SamplingParams(max_new_tokens=3))[0]
    assert (planned[0][0].start, planned[0][0].count) == (24, 2)  # only the two new tokens are computed
    assert second.tokens == alone(model, [*prefix, 9, 8], SamplingParams(max_new_tokens=3))


def test_abort_frees_blocks_at_once_and_reports_it(model):
    engine = Engine(model, block_size=4, max_batch_tokens=64, max_kv_tokens=200)
    keep = engine.add_request(list(range(20)), SamplingParams(max_new_tokens=30))
    gone = engine.add_request(list(range(50, 70)), SamplingParams(max_new_tokens=30))
    engine.step()
    held = engine.stats().blocks_used
    engine.abort(gone)
    assert engine.stats().blocks_used < held and engine.stats().running == 1
    events = engine.step()
    assert (gone, None, "abort") in [(e.request_id, e.token, e.finish_reason) for e in events]
    assert any(e.request_id == keep and e.token is not None for e in events)
    engine.abort(gone)  # twice, or an unknown id: nothing happens
    engine.abort(12345)


def test_stop_ids_end_without_output_and_context_ends_long_requests(model):
    prompt = list(range(10))
    free = alone(model, prompt, SamplingParams(max_new_tokens=8))
    engine = Engine(model, block_size=4)
    stopped = engine.generate([prompt], SamplingParams(max_new_tokens=8, stop_ids=(free[3],)))[0]
    assert stopped.tokens == free[: free.index(free[3])] and stopped.finish_reason == "stop"
    long = engine.generate([list(range(60))], SamplingParams(max_new_tokens=50))[0]  # context 64
    assert len(long.tokens) == 4 and long.finish_reason == "context"


def test_stop_strings_spanning_tokens_cut_the_text(model):
    tok = Tokenizer({i: bytes([i]) for i in range(256)} | {i: b"ab" for i in range(256, 512)}, [])
    engine = Engine(model, block_size=4, tokenizer=tok)
    prompt = list(range(300, 310))
    free = engine.generate([prompt], SamplingParams(max_new_tokens=20))[0]
    text = tok.decode(free.tokens)
    stop = text[5:8]  # three characters from the middle: spans tokens whenever one is a single byte
    out = engine.generate([prompt], SamplingParams(max_new_tokens=20, stop=(stop,)))[0]
    assert out.finish_reason == "stop" and out.text == text[: text.index(stop)]
    streamed = []
    rid = engine.add_request(prompt, SamplingParams(max_new_tokens=20, stop=(stop,)))
    while engine.has_unfinished:
        streamed += [e.text for e in engine.step() if e.request_id == rid]
    assert "".join(streamed) == out.text


def test_text_prompts_and_repetition_penalty(model):
    tok = Tokenizer({i: bytes([i]) for i in range(256)} | {i: b"ab" for i in range(256, 512)}, [])
    engine = Engine(model, tokenizer=tok)
    by_text = engine.generate(["Once upon"], SamplingParams(max_new_tokens=6))[0]
    by_ids = engine.generate([tok.encode("Once upon")], SamplingParams(max_new_tokens=6))[0]
    assert by_text.tokens == by_ids.tokens and by_text.text == tok.decode(by_ids.tokens)
    plain = engine.generate([[5] * 20], SamplingParams(max_new_tokens=30))[0].tokens
    penalised = engine.generate([[5] * 20], SamplingParams(max_new_tokens=30, repetition_penalty=5.0))[0].tokens
    assert len(set(penalised)) > len(set(plain)) or penalised != plain


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": -1}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_k": 0}, "top_k"),
        ({"max_new_tokens": -1}, "max_new_tokens"),
        ({"repetition_penalty": 0}, "repetition_penalty"),
        ({"stop": ("",)}, "stop"),
        ({"stop_ids": (-1,)}, "stop_ids"),
        ({"seed": 1.5}, "seed"),
    ],
)
def test_bad_sampling_params_are_refused(kwargs, message):
    with pytest.raises(GenerationError, match=message):
        SamplingParams(**kwargs)


@pytest.mark.parametrize("attention", ["reference", "sdpa"])
def test_nan_in_fresh_pool_memory_never_reaches_the_logits(attention):
    # blocks are read whole, tokens not yet written included: the pool zeroes each block before its first use
    model = make_model(dtype=torch.float32, attention=attention)
    engine = RecordingEngine(model, block_size=4, max_batch_tokens=16, max_kv_tokens=400)
    for pool in engine.cache.keys + engine.cache.values:
        pool.fill_(math.nan)
    prompts = random_prompts(5, seed=4, longest=13)
    outs = engine.generate(prompts, SamplingParams(max_new_tokens=6))
    for rid, (prompt, out) in enumerate(zip(prompts, outs, strict=True)):
        with torch.inference_mode():
            full = model(torch.tensor([prompt + out.tokens]))[0, len(prompt) - 1 : -1]
        torch.testing.assert_close(torch.stack(engine.logits[rid]), full, atol=2e-5, rtol=0)
    assert engine.cache.zeroed < engine.cache.num_blocks  # only as far as the blocks in use reached


@pytest.mark.parametrize("attention", ["reference", "sdpa"])
@pytest.mark.parametrize("requests", [1, 3])  # one alone: the mirror, rebuilt from the pool; several: the plan
def test_what_a_finished_request_left_in_its_blocks_never_reaches_the_next(attention, requests):
    # a block is read whole; when it is handed on, the slots its new holder has not written yet still hold the
    # old holder's keys and values, which could be NaN (a diverged model, an fp16 overflow): they must weigh 0
    model = make_model(dtype=torch.float32, attention=attention)
    engine = RecordingEngine(model, block_size=4, max_batch_tokens=16, max_kv_tokens=400)
    engine.cache.ensure_zeroed(engine.cache.num_blocks)
    for pool in engine.cache.keys + engine.cache.values:
        pool[1:].fill_(math.nan)  # every block as a broken earlier request would have left it
    prompts = random_prompts(requests, seed=6, longest=13)
    outs = engine.generate(prompts, SamplingParams(max_new_tokens=6))
    for rid, (prompt, out) in enumerate(zip(prompts, outs, strict=True)):
        with torch.inference_mode():
            full = model(torch.tensor([prompt + out.tokens]))[0, len(prompt) - 1 : -1]
        torch.testing.assert_close(torch.stack(engine.logits[rid]), full, atol=2e-5, rtol=0)


@pytest.mark.parametrize("attention", ["reference", "sdpa"])
def test_free_blocks_inside_the_extent_read_never_reach_the_sequences_decoding(attention, monkeypatch):
    # the decode attention multiplies the whole extent of the pool its sequences reach, free blocks between theirs
    # included (with weight 0): a NaN left in a free block must not reach any of them
    import cs336_lm.nn.paged as paged

    monkeypatch.setattr(paged, "COMPACT_BELOW", 0.0)  # always read the extent, never just the blocks in use
    model = make_model(dtype=torch.float32, attention=attention)
    engine = RecordingEngine(model, block_size=4, max_batch_tokens=64, max_kv_tokens=400)
    prompts = [list(range(100, 113)), *random_prompts(2, seed=7, longest=9)]
    new = [2, 12, 12]  # the first ends early: its blocks, below the others', are freed
    ids = [engine.add_request(prompts[0], SamplingParams(max_new_tokens=new[0]))]
    events = engine.step()  # it joins alone, so its blocks lie below the others' (shorter prompts join first)
    ids += [engine.add_request(p, SamplingParams(max_new_tokens=n)) for p, n in zip(prompts[1:], new[1:], strict=True)]
    tokens: dict[int, list[int]] = {i: [] for i in ids}
    poisoned = False
    while events or engine.has_unfinished:
        for event in events:
            if event.token is not None:
                tokens[event.request_id].append(event.token)
        if not poisoned and ids[0] not in engine.requests:
            free = [*engine.blocks.plain, *engine.blocks.cached]
            assert any(b < max(engine.requests[ids[1]].block_table) for b in free)
            for pool in engine.cache.keys + engine.cache.values:
                pool[torch.tensor(free)] = math.nan
            poisoned = True
        events = engine.step() if engine.has_unfinished else []
    assert poisoned
    for rid, prompt in zip(ids[1:], prompts[1:], strict=True):
        with torch.inference_mode():
            full = model(torch.tensor([prompt + tokens[rid]]))[0, len(prompt) - 1 : -1]
        torch.testing.assert_close(torch.stack(engine.logits[rid]), full, atol=2e-5, rtol=0)


def test_bad_requests_are_refused(model):
    engine = Engine(model, block_size=4, max_kv_tokens=32)
    with pytest.raises(GenerationError, match="empty"):
        engine.add_request([])
    with pytest.raises(GenerationError, match="outside the vocabulary"):
        engine.add_request([512])
    with pytest.raises(GenerationError, match="no room to generate"):
        engine.add_request(list(range(64)))
    with pytest.raises(GenerationError, match="pool holds 32"):
        engine.add_request([1, 2], SamplingParams(max_new_tokens=60))
    with pytest.raises(GenerationError, match="tokenizer"):
        engine.add_request("text")
    with pytest.raises(GenerationError, match="stop strings need"):
        engine.add_request([1], SamplingParams(max_new_tokens=5, stop=("x",)))
    with pytest.raises(GenerationError, match="max_batch_tokens"):
        Engine(model, max_batch_tokens=0)
    assert engine.stats().waiting == 0


def test_the_triton_decode_path_reads_the_pool_as_the_gather_path_does(model):
    # Under TRITON_INTERPRET=1 the paged kernel runs on CPU tensors: the engine's decode steps through it must
    # sample exactly the tokens of the gather path (the pools' layout and strides reach the kernel right).
    pytest.importorskip("triton")
    if not os.environ.get("TRITON_INTERPRET"):
        pytest.skip("needs the Triton interpreter (CUDA machines run tests/engine/test_gpu.py)")
    prompts = random_prompts(3, seed=9, longest=20)
    params = SamplingParams(max_new_tokens=5)
    gathered = Engine(model, block_size=4).generate(prompts, params)
    engine = Engine(model, block_size=4)
    engine.runner.triton_decode = True
    assert [c.tokens for c in engine.generate(prompts, params)] == [c.tokens for c in gathered]


# ---- settings that cannot be sampled, failures of one request, what ended a "stop" --------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"repetition_penalty": 1e-300}, "repetition_penalty must be a number from 0.01 to 100"),
        ({"repetition_penalty": 1e-39}, "repetition_penalty"),  # subnormal in float32: dividing by it overflows
        ({"repetition_penalty": 100.5}, "repetition_penalty"),
        ({"repetition_penalty": math.nan}, "repetition_penalty"),
        ({"repetition_penalty": math.inf}, "repetition_penalty"),
        ({"temperature": 1e7}, "temperature must be a finite number from 0 \\(greedy\\) to 1,000,000"),
        ({"temperature": math.inf}, "temperature"),
        ({"temperature": True}, "temperature"),
        ({"top_p": math.nan}, "top_p"),
        ({"top_k": 2.0}, "top_k"),
        ({"seed": 2**64}, "seed"),
        ({"seed": -(2**63) - 1}, "seed"),
        ({"stop": 5}, "stop"),
    ],
)
def test_settings_that_cannot_be_sampled_are_refused(kwargs, message):
    with pytest.raises(GenerationError, match=message):
        SamplingParams(**kwargs)


def test_the_bounds_themselves_sample_finite_distributions():
    model = make_model(dtype=torch.float32)
    engine = Engine(model, block_size=4)
    prompts = random_prompts(4, seed=11, longest=10)
    params = [
        SamplingParams(max_new_tokens=12, temperature=1e-6, repetition_penalty=0.01, seed=-(2**63)),
        SamplingParams(max_new_tokens=12, temperature=1e-6, repetition_penalty=100.0, seed=2**64 - 1),
        SamplingParams(max_new_tokens=12, temperature=1e6, repetition_penalty=0.01, top_p=1e-9),
        SamplingParams(max_new_tokens=12, temperature=1e6, repetition_penalty=100.0, top_k=1),
    ]
    outs = engine.generate(prompts, params)  # raises if any request's sampling failed
    assert [len(o.tokens) for o in outs] == [12] * 4


def unchecked(params: SamplingParams, **fields) -> SamplingParams:
    """``params`` with ``fields`` set past the check, as a bug could leave them."""
    for name, value in fields.items():
        object.__setattr__(params, name, value)
    return params


def run_all(engine: Engine) -> dict[int, list]:
    """Step until nothing is left; every request's events in order."""
    events: dict[int, list] = {}
    while engine.has_unfinished:
        for event in engine.step():
            events.setdefault(event.request_id, []).append(event)
    return events


def test_a_request_whose_sampling_fails_ends_alone_and_the_others_are_untouched(model):
    engine = Engine(model, block_size=4)
    good_prompt, bad_prompt = random_prompts(2, seed=12)
    good = engine.add_request(good_prompt, SamplingParams(max_new_tokens=10))
    bad = engine.add_request(bad_prompt, unchecked(SamplingParams(temperature=1.0), repetition_penalty=math.nan))
    events = run_all(engine)
    [failed] = events[bad]
    assert (failed.token, failed.finish_reason) == (None, "error")
    assert isinstance(failed.error, RuntimeError) and "probability tensor" in str(failed.error)
    tokens = [e.token for e in events[good]]
    assert tokens == alone(model, good_prompt, SamplingParams(max_new_tokens=10))
    assert events[good][-1].finish_reason == "length" and events[good][-1].error is None
    assert engine.stats().blocks_used == 0 and engine.requests == {}


class NanEngine(Engine):
    """The logits of request ``poisoned`` are NaN."""

    poisoned = -1

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        forward = self.runner.forward

        def poisoned(chunks):
            logits, scored = forward(chunks)
            logits = logits.clone()
            rows = [c.seq.request_id for c in chunks if c.samples]
            if self.poisoned in rows:
                logits[rows.index(self.poisoned)] = math.nan
            return logits, scored

        self.runner.forward = poisoned


def test_nan_logits_end_their_request_with_an_error_even_when_greedy(model):
    engine = NanEngine(model, block_size=4)
    prompts = random_prompts(2, seed=13)
    ids = [engine.add_request(p, SamplingParams(max_new_tokens=6)) for p in prompts]
    engine.poisoned = ids[1]
    events = run_all(engine)
    [failed] = events[ids[1]]
    assert failed.finish_reason == "error" and "NaN" in str(failed.error)
    assert [e.token for e in events[ids[0]]] == alone(model, prompts[0], SamplingParams(max_new_tokens=6))
    with pytest.raises(GenerationError, match="prompt 0: the model's logits for this request are NaN"):
        engine.poisoned = engine._next_id
        engine.generate(prompts[:1], SamplingParams(max_new_tokens=3))


class FlakyForwardEngine(Engine):
    """The forward of step ``fail_at`` (counted by the scheduler) raises."""

    fail_at = -1

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        forward = self.runner.forward

        def flaky(chunks):
            if self.scheduler.steps == self.fail_at:
                raise RuntimeError("out of memory")
            return forward(chunks)

        self.runner.forward = flaky


def test_a_failed_forward_ends_the_requests_of_its_step_and_the_engine_goes_on(model):
    engine = FlakyForwardEngine(model, block_size=4, max_kv_tokens=200)
    prompts = random_prompts(3, seed=14)
    params = SamplingParams(max_new_tokens=5)
    in_step = [engine.add_request(p, params) for p in prompts[:2]]
    engine.step()
    engine.fail_at = engine.scheduler.steps + 1
    events = engine.step()
    assert sorted(e.request_id for e in events) == in_step
    assert all(e.finish_reason == "error" and "out of memory" in str(e.error) for e in events)
    assert engine.failed_forwards == 1 and engine.stats().blocks_used == 0 and not engine.has_unfinished
    [later] = engine.generate(prompts[2:], params)
    assert later.tokens == alone(model, prompts[2], params) and engine.failed_forwards == 0


def test_generate_raises_what_failed_and_leaves_nothing_behind(model):
    engine = Engine(model, block_size=4)
    prompts = random_prompts(3, seed=15)
    bad = unchecked(SamplingParams(temperature=1.0, max_new_tokens=30), repetition_penalty=math.nan)
    with pytest.raises(RuntimeError, match="probability tensor"):
        engine.generate(prompts, [SamplingParams(max_new_tokens=30), bad, SamplingParams(max_new_tokens=30)])
    assert not engine.has_unfinished and engine.stats().blocks_used == 0 and engine.step() == []


def test_a_stop_event_says_which_stop_id_or_string_ended_it(model):
    tok = Tokenizer({i: bytes([i]) for i in range(256)} | {i: b"ab" for i in range(256, 512)}, [])
    engine = Engine(model, block_size=4, tokenizer=tok)
    prompt = list(range(300, 310))
    free = engine.generate([prompt], SamplingParams(max_new_tokens=20))[0]
    assert free.stop_reason is None
    by_id = engine.generate([prompt], SamplingParams(max_new_tokens=20, stop_ids=(free.tokens[3], 511)))[0]
    assert (by_id.finish_reason, by_id.stop_reason) == ("stop", free.tokens[3])
    text = tok.decode(free.tokens)
    first, later = text[4:7], text[9:12]
    stops = ("never seen", later, first)
    by_text = engine.generate([prompt], SamplingParams(max_new_tokens=20, stop=stops))[0]
    assert (by_text.finish_reason, by_text.stop_reason) == ("stop", first)
    rid = engine.add_request(prompt, SamplingParams(max_new_tokens=20, stop=stops))
    last = run_all(engine)[rid][-1]
    assert (last.finish_reason, last.stop_reason) == ("stop", first)
