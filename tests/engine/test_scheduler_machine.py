"""A hypothesis state machine drives the engine with random arrivals, steps and aborts, over pools small enough
to force preemption and prompts that share prefixes. After every rule the block pool's bookkeeping must add
up; every step must hold its token budget, and no request may join ahead of a waiting one that arrived more
than that one's length / ``AGING_TOKENS_PER_STEP`` steps before it (nobody starves); at the end
every request that was not aborted must equal the oracle (the full forward) on its prompt alone, and the pool
must be whole again."""

import functools

import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from cs336_lm.engine import Engine, SamplingParams
from cs336_lm.engine.scheduler import AGING_TOKENS_PER_STEP
from cs336_lm.engine.sequence import Status

from .conftest import make_model, oracle

MODEL = make_model(seed=7)
PREFIXES = [list(range(40, 52)), list(range(200, 209)), [3]]  # shared starts: 3 and 2 full blocks of 4, and one token


@functools.cache
def alone(prompt: tuple[int, ...], params: SamplingParams) -> tuple[int, ...]:
    torch.set_num_threads(1)
    return tuple(oracle(MODEL, list(prompt), params)[0])


prompts = st.builds(
    lambda prefix, suffix: tuple(prefix + suffix),
    st.sampled_from(PREFIXES),
    st.lists(st.integers(0, 511), max_size=14),
)
params = st.builds(
    SamplingParams,
    max_new_tokens=st.integers(1, 14),
    temperature=st.sampled_from([0.0, 0.9]),
    top_k=st.sampled_from([None, 30]),
    seed=st.integers(0, 1000),
    stop_ids=st.sampled_from([(), (7,), (100, 101, 102)]),
)


class EngineMachine(RuleBasedStateMachine):
    @initialize(
        block_size=st.sampled_from([1, 4, 5]),
        pool_tokens=st.integers(40, 90),
        max_batch_tokens=st.integers(1, 48),
    )
    def start(self, block_size, pool_tokens, max_batch_tokens):
        torch.set_num_threads(1)
        self.engine = Engine(MODEL, block_size=block_size, max_kv_tokens=pool_tokens, max_batch_tokens=max_batch_tokens)
        self.requests: dict[int, tuple[tuple[int, ...], SamplingParams]] = {}
        self.outputs: dict[int, list[int]] = {}
        self.reasons: dict[int, str] = {}
        self.arrived: dict[int, int] = {}  # request id -> steps taken before it was added
        self.steps = 0

    @rule(prompt=prompts, p=params)
    def add(self, prompt, p):
        rid = self.engine.add_request(list(prompt), p)
        self.requests[rid], self.outputs[rid] = (prompt, p), []
        self.arrived[rid] = self.steps

    @rule(batch=st.lists(st.tuples(prompts, params), min_size=2, max_size=5))
    def add_several(self, batch):
        for prompt, p in batch:
            self.add(prompt, p)

    @rule()
    def step(self):
        scheduler = self.engine.scheduler
        before = [s for s in scheduler.waiting if s.admitted_at < 0]  # waiting, never admitted
        blocked = {s.request_id for s in before if scheduler._waits_for_shared_prefix(s)}
        planned = scheduler.schedule
        chunks = []

        def schedule():
            chunks.extend(planned())
            return chunks

        scheduler.schedule = schedule
        try:
            self._record(self.engine.step())
        finally:
            del scheduler.schedule
        self.steps += 1
        assert sum(c.count for c in chunks) <= self.engine.scheduler.max_batch_tokens
        joined = [c.seq for c in chunks if c.seq in before]
        still = [s for s in before if s.status is Status.WAITING and s.request_id not in blocked]
        for new in joined:
            for old in still:  # it may pass ``old`` only within old's length / AGING steps of old's arrival
                lead = self.arrived[new.request_id] - self.arrived[old.request_id]
                assert AGING_TOKENS_PER_STEP * lead < len(old.tokens), (new.request_id, old.request_id, lead)

    @precondition(lambda self: any(rid not in self.reasons for rid in self.requests))
    @rule(data=st.data())
    def abort(self, data):
        live = sorted(rid for rid in self.requests if rid not in self.reasons)
        self.engine.abort(data.draw(st.sampled_from(live)))

    def _record(self, events):
        for event in events:
            assert event.request_id not in self.reasons, "an event after the request ended"
            if event.token is not None:
                self.outputs[event.request_id].append(event.token)
            if event.finish_reason is not None:
                self.reasons[event.request_id] = event.finish_reason

    @invariant()
    def pool_adds_up(self):
        blocks = self.engine.blocks
        live = self.engine.scheduler.running + list(self.engine.scheduler.waiting)
        held = [b for seq in live for b in seq.block_table]
        assert sum(blocks.refs) == len(held)
        assert all(blocks.refs[b] > 0 for b in held)
        assert blocks.num_used + blocks.num_free == blocks.capacity
        assert not (set(blocks.plain) | set(blocks.cached)) & set(held)
        for seq in self.engine.scheduler.running:
            assert seq.status is Status.RUNNING and len(seq.block_table) * blocks.block_size >= seq.num_computed
        for seq in self.engine.scheduler.waiting:
            assert seq.status is Status.WAITING and (seq.num_computed == 0 or seq.block_table)

    def teardown(self):
        if not hasattr(self, "engine"):
            return
        for _ in range(10_000):
            if not self.engine.has_unfinished:
                break
            self._record(self.engine.step())
        assert not self.engine.has_unfinished
        for rid, (prompt, p) in self.requests.items():
            if self.reasons[rid] != "abort":
                assert tuple(self.outputs[rid]) == alone(prompt, p), (rid, self.reasons[rid])
        assert self.engine.stats().blocks_used == 0


EngineMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_engine_state_machine = EngineMachine.TestCase
