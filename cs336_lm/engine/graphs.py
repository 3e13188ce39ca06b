"""CUDA graphs of decode steps: on a GPU a small decoding batch is bound by kernel launches, not arithmetic.

A decode-only step of ``n`` sequences runs the same kernels every time, only on other data. ``DecodeGraphs``
records the whole forward once per batch size (1, 2, 4, 8, … up to the engine's ``max_num_seqs``) into a CUDA
graph that reads its inputs — token ids, positions, the (block, offset) each new key and value goes to, block
tables, lengths — from fixed buffers, and replays it: one launch instead of hundreds. A step of ``n`` sequences
uses the smallest recorded size ``≥ n``; the extra rows decode a dummy token at position 0 whose key and value
go to the pool's sink block (block 0, offset 0) and whose logits are dropped. Recording needs the Triton
paged-attention kernel (the CPU path builds index tensors on the host), so the engine uses graphs only on CUDA
with Triton kernels; every other step runs eagerly.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

from cs336_lm.engine.paged import PagedStep
from cs336_lm.engine.scheduler import Chunk

if TYPE_CHECKING:
    from cs336_lm.engine.engine import Engine

BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class DecodeGraphs:
    """Recorded decode steps by batch size, recorded on first use (see the module docstring)."""

    def __init__(self, engine: Engine, max_num_seqs: int):
        self.engine = engine
        self.sizes = [s for s in BATCH_SIZES if s < max_num_seqs] + [max_num_seqs]
        cache, model = engine.cache, engine.model
        largest, device = max(self.sizes), cache.device
        self.max_blocks = math.ceil(model.context_length / cache.block_size)
        self.token_ids = torch.zeros(1, largest, dtype=torch.long, device=device)
        self.positions = torch.zeros(1, largest, dtype=torch.long, device=device)
        self.write_blocks = torch.zeros(largest, dtype=torch.long, device=device)
        self.write_offsets = torch.zeros(largest, dtype=torch.long, device=device)
        self.block_tables = torch.zeros(largest, self.max_blocks, dtype=torch.int32, device=device)
        self.lens = torch.ones(largest, dtype=torch.int32, device=device)
        self.rows = torch.arange(largest, device=device)
        self.graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        self.memory_pool: Any = None  # shared by every recorded graph

    def run(self, chunks: list[Chunk]) -> torch.Tensor | None:
        """Logits (len(chunks), vocab_size) of a decode-only step by replay; None when no recorded size fits."""
        n = len(chunks)
        size = next((s for s in self.sizes if s >= n), None)
        if size is None:
            return None
        self._fill(chunks, size)
        if size not in self.graphs:
            self.graphs[size] = self._record(size)
        graph, logits = self.graphs[size]
        graph.replay()
        return logits[:n]

    def _fill(self, chunks: list[Chunk], size: int) -> None:
        """Copy the step's inputs into the fixed buffers; rows past ``len(chunks)`` decode a dummy into the sink."""
        block = self.engine.cache.block_size
        ids, positions, blocks, offsets = [0] * size, [0] * size, [0] * size, [0] * size
        lens = [1] * size
        tables = torch.zeros(size, self.max_blocks, dtype=torch.int32)
        for i, chunk in enumerate(chunks):
            p, table = chunk.start, chunk.seq.block_table
            ids[i], positions[i], lens[i] = chunk.seq.tokens[p], p, p + 1
            blocks[i], offsets[i] = table[p // block], p % block
            tables[i, : len(table)] = torch.tensor(table, dtype=torch.int32)
        self.token_ids[0, :size].copy_(torch.tensor(ids), non_blocking=True)
        self.positions[0, :size].copy_(torch.tensor(positions), non_blocking=True)
        self.write_blocks[:size].copy_(torch.tensor(blocks), non_blocking=True)
        self.write_offsets[:size].copy_(torch.tensor(offsets), non_blocking=True)
        self.lens[:size].copy_(torch.tensor(lens, dtype=torch.int32), non_blocking=True)
        self.block_tables[:size].copy_(tables, non_blocking=True)

    def _step(self, size: int) -> PagedStep:
        """A ``PagedStep`` whose tensors are views of the fixed buffers: what the graph reads at replay."""
        step = PagedStep(self.engine.cache)
        step.token_ids, step.positions = self.token_ids[:, :size], self.positions[:, :size]
        step.write_blocks, step.write_offsets = self.write_blocks[:size], self.write_offsets[:size]
        step.last_rows = self.rows[:size]
        step.num_decode = size
        step.block_tables, step.lens = self.block_tables[:size], self.lens[:size]
        return step

    def _record(self, size: int) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        model, step = self.engine.model, self._step(size)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm up: Triton compiles, the allocator settles
            for _ in range(2):
                model(step.token_ids, kv_cache=step)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.memory_pool):
            logits = model(step.token_ids, kv_cache=step)
        self.memory_pool = graph.pool()
        return graph, logits
