"""Continuous batching: which sequences run at the next step, with how many tokens, in which blocks.

Every step packs, up to ``max_batch_tokens``: one token of every running sequence that is decoding (oldest
first), then the next chunk of every running sequence still in its prompt, then the first chunks of waiting
sequences, which join the batch as budget and free blocks allow. Waiting sequences join **shortest prompt
first, with aging**: in the order of their tokens still to compute less ``AGING_TOKENS_PER_STEP`` for every step
they have waited (ties in arrival order), so a short prompt that arrives behind a backlog of long ones (a
harness scoring thousands of windows beside people chatting) gets its first token within a step or two, and a
long one is passed only by prompts that arrived less than ``its length / AGING_TOKENS_PER_STEP`` steps after it:
none starves. A preempted sequence goes before all of them. A waiting sequence first takes the registered
blocks of its longest cached prefix (``BlockManager``), so it computes only the rest — except the positions
whose logits score its prompt (``prompt_logprobs``), which it computes itself. One whose first block is still
being computed by a running sequence waits for it: the ``n`` samples of one prompt compute it once.

When a running sequence needs a block and none is free, the most recently admitted running sequence is
preempted: its blocks are released and it goes back to the front of the queue, to be recomputed from its
tokens later. Requests join and leave between steps; ``abort`` and ``finish`` give a sequence's blocks back.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from cs336_lm.engine.blocks import BlockManager, block_hash
from cs336_lm.engine.sequence import Sequence, Status

AGING_TOKENS_PER_STEP = 4
"""How much nearer the front a waiting sequence moves per step it waits, in prompt tokens (see the docstring)."""


@dataclass
class Chunk:
    """Tokens ``start … start + count − 1`` of ``seq`` go through the model at this step."""

    seq: Sequence
    start: int
    count: int

    @property
    def samples(self) -> bool:
        """This chunk reaches the sequence's last token: its logits give the next token."""
        return self.start + self.count == len(self.seq.tokens)


class Scheduler:
    """The waiting queue, the running set and the block manager they draw on."""

    def __init__(self, blocks: BlockManager, max_batch_tokens: int, max_num_seqs: int):
        self.blocks = blocks
        self.max_batch_tokens, self.max_num_seqs = max_batch_tokens, max_num_seqs
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []  # in admission order
        self.steps = 0
        self.preemptions = 0

    # ---- requests in and out -------------------------------------------------------------------------------

    def add(self, seq: Sequence) -> None:
        seq.arrived_at = self.steps
        self.waiting.append(seq)

    def finish(self, seq: Sequence, reason: str) -> None:
        """End ``seq`` (finished or aborted): out of every queue, its blocks released."""
        if seq.status is Status.RUNNING:
            self.running.remove(seq)
        elif seq.status is Status.WAITING:
            self.waiting.remove(seq)
        self._release(seq)
        seq.status, seq.finish_reason = Status.FINISHED, reason

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    # ---- one step -------------------------------------------------------------------------------------------

    def schedule(self) -> list[Chunk]:
        """The chunks of the next step, their blocks allocated: decode tokens first, then prompt chunks."""
        self.steps += 1
        budget, preempted = self.max_batch_tokens, self.preemptions
        planned: list[Chunk] = []
        for seq in [s for s in self.running if not s.in_prefill]:
            if budget == 0:
                break
            if seq.status is Status.RUNNING and self._reserve(seq, 1, planned):
                planned.append(Chunk(seq, seq.num_computed, 1))
                budget -= 1
        for seq in [s for s in self.running if s.in_prefill]:
            if budget == 0:
                break
            if seq.status is not Status.RUNNING:
                continue
            count = self._fit(seq, min(seq.num_uncomputed, budget))
            if count == 0 and self._reserve(seq, 1, planned):
                count = 1
            if count:
                planned.append(Chunk(seq, seq.num_computed, count))
                budget -= count
        if self.preemptions > preempted:  # the pool is short: let the running ones finish before admitting more
            return planned
        return planned + self._admit(budget)

    def commit(self, chunks: list[Chunk]) -> None:
        """After the forward: the chunks' K/V are in the pool; full blocks join the prefix registry."""
        size = self.blocks.block_size
        for chunk in chunks:
            seq = chunk.seq
            seq.num_computed = chunk.start + chunk.count
            for i in range(len(seq.block_hashes), seq.num_computed // size):
                tokens = seq.tokens[i * size : (i + 1) * size]
                key = block_hash(seq.block_hashes[-1] if seq.block_hashes else None, tokens)
                self.blocks.register(seq.block_table[i], key, tokens)
                seq.block_hashes.append(key)

    # ---- blocks ---------------------------------------------------------------------------------------------

    def _blocks_for(self, seq: Sequence, tokens: int) -> int:
        """Blocks ``seq`` lacks to hold ``tokens`` tokens."""
        return max(0, math.ceil(tokens / self.blocks.block_size) - len(seq.block_table))

    def _allocate(self, seq: Sequence, tokens: int) -> None:
        for _ in range(self._blocks_for(seq, tokens)):
            seq.block_table.append(self.blocks.allocate())

    def _reserve(self, seq: Sequence, count: int, planned: list[Chunk]) -> bool:
        """Allocate blocks for ``count`` more tokens of ``seq``, preempting the most recently admitted sequences
        (and dropping their planned chunks) until they fit; False when ``seq`` itself had to go."""
        while self._blocks_for(seq, seq.num_computed + count) > self.blocks.num_free:
            victim = max(self.running, key=lambda s: s.admitted_at)
            self._preempt(victim)
            planned[:] = [c for c in planned if c.seq is not victim]
            if victim is seq:
                return False
        self._allocate(seq, seq.num_computed + count)
        return True

    def _fit(self, seq: Sequence, count: int) -> int:
        """Allocate for as many of ``count`` next tokens of ``seq`` as the free blocks hold; how many that is."""
        room = (len(seq.block_table) + self.blocks.num_free) * self.blocks.block_size - seq.num_computed
        count = max(0, min(count, room))
        self._allocate(seq, seq.num_computed + count)
        return count

    def _admit(self, budget: int) -> list[Chunk]:
        """First chunks of waiting sequences, in ``admission_order``, while budget, free blocks and seats last."""
        chunks: list[Chunk] = []
        for seq in self.admission_order():
            if budget == 0 or len(self.running) >= self.max_num_seqs:
                break
            if self._waits_for_shared_prefix(seq):
                continue
            self._take_cached_prefix(seq)
            count = self._fit(seq, min(seq.num_uncomputed, budget))
            if count == 0:
                self._release(seq)
                break
            self.waiting.remove(seq)
            self.running.append(seq)
            seq.status, seq.admitted_at = Status.RUNNING, self.steps
            chunks.append(Chunk(seq, seq.num_computed, count))
            budget -= count
        return chunks

    def admission_order(self) -> list[Sequence]:
        """The waiting sequences in the order they join: preempted ones first (in queue order), then by tokens
        still to compute less ``AGING_TOKENS_PER_STEP`` per step waited, ties in arrival order."""

        def key(seq: Sequence) -> tuple[bool, int]:
            if seq.admitted_at >= 0:  # preempted: it was running, it goes first
                return False, 0
            return True, len(seq.tokens) - seq.num_computed - AGING_TOKENS_PER_STEP * (self.steps - seq.arrived_at)

        return sorted(self.waiting, key=key)  # stable: equal keys keep the queue's order

    def _waits_for_shared_prefix(self, seq: Sequence) -> bool:
        """Whether a running sequence is computing the block ``seq`` starts with (it will be shared once done)."""
        size = self.blocks.block_size
        if seq.num_computed or len(seq.tokens) <= size or seq.logits_from < size:  # a scoring one computes its own
            return False
        first = seq.tokens[:size]
        return any(s.in_prefill and s.num_computed < size and s.tokens[:size] == first for s in self.running)

    def _take_cached_prefix(self, seq: Sequence) -> None:
        """Share the registered blocks of ``seq``'s longest cached prefix; at least one token is left to compute,
        and every position whose logits score the prompt (``Sequence.logits_from``) too."""
        if seq.block_table:
            return
        size = self.blocks.block_size
        parent: int | None = None
        for i in range(min(len(seq.tokens) - 1, seq.logits_from) // size):
            tokens = seq.tokens[i * size : (i + 1) * size]
            key = block_hash(parent, tokens)
            block = self.blocks.lookup(key, tokens)
            if block is None:
                break
            self.blocks.share(block)
            seq.block_table.append(block)
            seq.block_hashes.append(key)
            parent = key
        seq.num_computed = len(seq.block_table) * size

    def _preempt(self, seq: Sequence) -> None:
        """Back to the front of the queue with no blocks; its tokens are recomputed when it runs again."""
        self.running.remove(seq)
        self._release(seq)
        seq.status = Status.WAITING
        self.waiting.appendleft(seq)
        self.preemptions += 1

    def _release(self, seq: Sequence) -> None:
        for block in seq.block_table:
            self.blocks.release(block)
        seq.block_table, seq.block_hashes, seq.num_computed = [], [], 0
