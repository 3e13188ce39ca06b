"""The engine thread and its queues, without HTTP: outputs equal the engine's own, aborts free blocks, the queue
limit, the shutdown drain, and a failing engine."""

import asyncio
import random

import pytest

from cs336_lm.engine import Engine, SamplingParams
from cs336_lm.errors import GenerationError, ServeError
from cs336_lm.serve import EngineLoop

from .conftest import SlowEngine


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=60))


async def drain(submission) -> tuple[list[str], list[list[bool]], list[str | None]]:
    texts = ["" for _ in range(submission.count)]
    tokens: list[list[bool]] = [[] for _ in range(submission.count)]
    reasons: list[str | None] = [None] * submission.count
    while not submission.done:
        for out in await submission.next_batch():
            texts[out.index] += out.text
            tokens[out.index].append(out.token)
            reasons[out.index] = out.finish_reason or reasons[out.index]
    return texts, tokens, reasons


class Running:
    """An ``EngineLoop`` started for one test and always stopped."""

    def __init__(self, engine, **kwargs):
        self.loop = EngineLoop(engine, **kwargs)

    def __enter__(self):
        self.loop.start()
        return self.loop

    def __exit__(self, *exc):
        self.loop.stop()
        assert not self.loop._thread.is_alive()


def test_submissions_get_what_the_engine_generates_offline(model, tokenizer):
    rng = random.Random(0)
    prompts = [[rng.randrange(500) for _ in range(rng.randint(1, 30))] for _ in range(6)]
    params = [SamplingParams(max_new_tokens=5 + 3 * i, temperature=0.9 * (i % 2), seed=i) for i in range(6)]
    expected = Engine(model, tokenizer=tokenizer).generate(prompts, params)

    async def main(loop):
        subs = [await loop.submit([(p, sp)]) for p, sp in zip(prompts, params, strict=True)]
        subs.append(await loop.submit(list(zip(prompts, params, strict=True))))  # all six as one submission
        return await asyncio.gather(*(drain(s) for s in subs))

    with Running(Engine(model, tokenizer=tokenizer)) as loop:
        results = run(main(loop))
    alone, together = results[:6], results[6]
    for i, done in enumerate(expected):
        assert alone[i][0] == [done.text] and together[0][i] == done.text
        assert sum(alone[i][1][0]) == len(done.tokens) and alone[i][2] == [done.finish_reason]
    assert loop.metrics.generation_tokens == 2 * sum(len(d.tokens) for d in expected)
    assert loop.metrics.prompt_tokens == 2 * sum(map(len, prompts))


def test_closing_a_submission_aborts_it_and_frees_its_blocks(model, tokenizer):
    async def main(loop):
        sub = await loop.submit([([1, 2, 3], SamplingParams(max_new_tokens=400))] * 2)
        await sub.next_batch()
        sub.close()
        for _ in range(500):
            if loop.stats.blocks_used == 0 and loop.stats.running == 0:
                return
            await asyncio.sleep(0.01)

    with Running(SlowEngine(model, tokenizer=tokenizer)) as loop:
        run(main(loop))
        assert loop.stats.blocks_used == 0 and loop.stats.running == 0
        assert loop.metrics.finished["abort"] == 2
        assert loop.metrics.generation_tokens < 2 * 400


def test_a_full_queue_refuses_with_503_and_too_many_choices_with_400(model, tokenizer):
    async def main(loop):
        first = await loop.submit([([1], SamplingParams(max_new_tokens=300))])  # runs (one seat)
        while loop.stats.running == 0:
            await asyncio.sleep(0.01)
        second = await loop.submit([([2], SamplingParams(max_new_tokens=300))])  # waits
        with pytest.raises(ServeError) as full:
            await loop.submit([([3], SamplingParams(max_new_tokens=3))])
        with pytest.raises(ServeError) as too_many:
            await loop.submit([([3], SamplingParams())] * 2)
        first.close(), second.close()
        return full.value, too_many.value

    with Running(SlowEngine(model, tokenizer=tokenizer, max_num_seqs=1), max_queue=1) as loop:
        full, too_many = run(main(loop))
    assert (full.status, full.code) == (503, "queue_full")
    assert (too_many.status, too_many.param) == (400, "n")


def test_a_request_the_engine_refuses_raises_and_admits_nothing(model, tokenizer):
    async def main(loop):
        with pytest.raises(GenerationError, match="KV cache"):
            await loop.submit([([1], SamplingParams(max_new_tokens=5)), ([1], SamplingParams(max_new_tokens=400))])
        await asyncio.sleep(0.05)

    with Running(Engine(model, tokenizer=tokenizer, max_kv_tokens=64)) as loop:
        run(main(loop))
        assert loop.stats.blocks_used == 0 and not loop.engine.has_unfinished


def test_drain_refuses_new_work_and_aborts_what_outlives_the_grace(model, tokenizer):
    async def main(loop):
        long = await loop.submit([([1], SamplingParams(max_new_tokens=400))])
        short = await loop.submit([([2], SamplingParams(max_new_tokens=3))])
        loop.begin_drain(0.3)
        with pytest.raises(ServeError) as refused:
            await loop.submit([([3], SamplingParams())])
        _, _, reasons = await drain(short)  # finishes within the grace
        with pytest.raises(ServeError) as aborted:
            await drain(long)
        return refused.value, reasons, aborted.value

    with Running(SlowEngine(model, tokenizer=tokenizer)) as loop:
        refused, reasons, aborted = run(main(loop))
        assert loop.stats.blocks_used == 0
    assert (refused.status, refused.code) == (503, "server_shutting_down")
    assert reasons == ["length"]
    assert (aborted.status, aborted.code) == (503, "shutdown")


class BrokenEngine(Engine):
    def step(self):
        if self.has_unfinished:
            raise RuntimeError("boom")
        return super().step()


def test_an_engine_that_fails_ends_every_request_with_503_and_turns_unhealthy(model, tokenizer, capsys):
    async def main(loop):
        sub = await loop.submit([([1], SamplingParams())])
        with pytest.raises(ServeError) as failed:
            await sub.next_batch()
        with pytest.raises(ServeError) as refused:
            await loop.submit([([1], SamplingParams())])
        return failed.value, refused.value

    with Running(BrokenEngine(model, tokenizer=tokenizer)) as loop:
        failed, refused = run(main(loop))
        assert not loop.healthy and "boom" in loop.failure
    assert failed.status == refused.status == 503
    assert "RuntimeError: boom" in capsys.readouterr().err  # the traceback goes to the server's log
