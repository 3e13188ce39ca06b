"""The model runner: one engine step's chunks in, the logits of the sequences that sample out.

``ModelRunner`` owns the KV block pools (``cs336_lm.nn.paged.PagedKVCache``), packs the chunks the scheduler
planned into one row of new tokens (``pack``: decoding sequences' single tokens first, then each prompt chunk, with
the blocks their keys and values go to and the block tables attention reads), and runs the model's one forward
over it with a ``PagedBatch`` as its ``kv_cache``. The forward returns the logits of each sampling chunk's last
token and, for a request that scores its prompt, of every prompt position not scored yet — nothing more, so a step
of requests that score nothing computes the head over the sampling rows alone.

On CUDA with the Triton paged kernel, decode-only steps replay CUDA graphs: a small decoding batch on a GPU is bound
by kernel launches, not arithmetic, and a decode step of ``n`` sequences runs the same kernels every time, only on
other data. ``DecodeGraphs`` records the whole forward once per batch size (1, 2, 4, 8, … up to ``max_num_seqs``),
reading its inputs from fixed buffers, and replays it: one launch instead of hundreds. A step of ``n`` sequences
uses the smallest recorded size ``≥ n``; the extra rows decode a dummy token at position 0 whose key and value go to
the sink block and whose logits are dropped. Every other step runs eagerly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from cs336_lm.engine.scheduler import Chunk
from cs336_lm.engine.sequence import Sequence
from cs336_lm.nn import TransformerLM
from cs336_lm.nn.paged import SINK_BLOCK, PagedBatch, PagedInputs, PagedKVCache, triton_decode_available

BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


@dataclass
class Scored:
    """Positions of ``seq`` whose logits score its prompt at this step: rows ``first … first + len(positions) − 1``
    of the forward's logits."""

    seq: Sequence
    positions: range
    first: int


def pack(chunks: list[Chunk], block_size: int) -> tuple[PagedInputs, list[Scored], list[int]]:
    """The forward's inputs of ``chunks`` (decode chunks first, as the scheduler plans them), the rows that score
    prompts, and which of the returned rows are the sampling chunks' (in order; all of them when none scores).

    The returned rows (``last_rows``) are in packed order: a chunk's scored positions, then its sampling row."""
    inputs, scored, sampling = PagedInputs(), [], []
    for chunk in chunks:
        seq, table = chunk.seq, chunk.seq.block_table
        span = range(chunk.start, chunk.start + chunk.count)
        row = len(inputs.token_ids)  # of the chunk's first token
        inputs.token_ids += seq.tokens[chunk.start : chunk.start + chunk.count]
        inputs.positions += span
        inputs.write_blocks += [table[p // block_size] for p in span]
        positions = seq.scored_positions(chunk.start, chunk.count) if seq.prompt_logprobs is not None else range(0)
        if positions:
            scored.append(Scored(seq, positions, len(inputs.last_rows)))
            inputs.last_rows += [row + p - chunk.start for p in positions]
        if chunk.samples:
            sampling.append(len(inputs.last_rows))
            inputs.last_rows.append(len(inputs.token_ids) - 1)
    decoding = 0
    while decoding < len(chunks) and chunks[decoding].count == 1 and chunks[decoding].samples:
        decoding += 1  # the leading one-token chunks that sample: they attend together
    inputs.decode_tables = [c.seq.block_table for c in chunks[:decoding]]
    inputs.decode_lens = [c.start + 1 for c in chunks[:decoding]]
    for chunk in chunks[decoding:]:
        context = chunk.start + chunk.count
        inputs.prefills.append((chunk.count, context, chunk.seq.block_table[: math.ceil(context / block_size)]))
    return inputs, scored, sampling


class ModelRunner:
    """The pools of ``num_blocks`` blocks of ``block_size`` tokens, and the forward over them."""

    def __init__(
        self, model: TransformerLM, num_blocks: int, block_size: int, *, cuda_graphs: bool | str, max_num_seqs: int
    ):
        weight = model.lm_head.weight
        args = model.args
        self.model = model
        self.cache = PagedKVCache(
            args.num_layers,
            args.kv_heads,
            args.d_head,
            num_blocks,
            block_size,
            device=weight.device,
            dtype=weight.dtype,
        )
        self.triton_decode = triton_decode_available(weight.device, weight.dtype, args.kernels)
        self.graphs = None
        if cuda_graphs is True or (cuda_graphs == "auto" and self.triton_decode):
            self.graphs = DecodeGraphs(model, self.cache, max_num_seqs)

    @torch.inference_mode()
    def forward(self, chunks: list[Chunk]) -> tuple[torch.Tensor, list[tuple[Scored, torch.Tensor]]]:
        """Logits (sampling chunks, vocab_size) of one step, in the chunks' order; and for each chunk that scores
        its prompt, its ``Scored`` positions with their logits (positions, vocab_size)."""
        inputs, scored, sampling = pack(chunks, self.cache.block_size)
        if self.graphs is not None and len(inputs.decode_lens) == len(chunks) and not scored:
            logits = self.graphs.run(inputs)
            if logits is not None:
                return logits, []
        batch = PagedBatch.build(self.cache, inputs, self.triton_decode)
        try:
            logits = self.model(batch.token_ids, kv_cache=batch)  # (returned rows, vocab_size)
        except BaseException:
            self.cache.mirror.forget()  # some layers may have appended to it, others not
            raise
        if not scored:
            return logits, []
        rows = [(s, logits[s.first : s.first + len(s.positions)]) for s in scored]
        return logits[sampling], rows


class DecodeGraphs:
    """Recorded decode steps by batch size, recorded on first use (see the module docstring)."""

    def __init__(self, model: TransformerLM, cache: PagedKVCache, max_num_seqs: int):
        self.model, self.cache = model, cache
        self.sizes = [s for s in BATCH_SIZES if s < max_num_seqs] + [max_num_seqs]
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

    def run(self, inputs: PagedInputs) -> torch.Tensor | None:
        """Logits (decoding, vocab_size) of a decode-only step by replay; None when no recorded size fits."""
        n = len(inputs.decode_lens)
        size = next((s for s in self.sizes if s >= n), None)
        if size is None:
            return None
        self._fill(inputs, size)
        if size not in self.graphs:
            self.graphs[size] = self._record(size)
        graph, logits = self.graphs[size]
        graph.replay()
        return logits[:n]

    def _fill(self, inputs: PagedInputs, size: int) -> None:
        """Copy the step's inputs into the fixed buffers; rows past the step's decode a dummy into the sink."""
        pad = size - len(inputs.decode_lens)
        self.cache.mirror.forget()  # the replay writes the pool, not the lone sequence's mirror
        starting = [
            b for b, p in zip(inputs.write_blocks, inputs.positions, strict=True) if p % self.cache.block_size == 0
        ]
        self.cache.ensure_zeroed(1 + max(max(t) for t in inputs.decode_tables))
        if starting:
            self.cache.clear(starting)
        tables = torch.full((size, self.max_blocks), SINK_BLOCK, dtype=torch.int32)
        for i, table in enumerate(inputs.decode_tables):
            tables[i, : len(table)] = torch.tensor(table, dtype=torch.int32)
        offsets = [p % self.cache.block_size for p in inputs.positions]
        for buffer, values in (
            (self.token_ids[0], inputs.token_ids),
            (self.positions[0], inputs.positions),
            (self.write_blocks, inputs.write_blocks),
            (self.write_offsets, offsets),
        ):
            buffer[:size].copy_(torch.tensor(values + [0] * pad), non_blocking=True)
        self.lens[:size].copy_(torch.tensor(inputs.decode_lens + [1] * pad, dtype=torch.int32), non_blocking=True)
        self.block_tables[:size].copy_(tables, non_blocking=True)

    def _batch(self, size: int) -> PagedBatch:
        """A ``PagedBatch`` whose tensors are views of the fixed buffers: what the graph reads at replay."""
        batch = PagedBatch(self.cache)
        batch.token_ids, batch.positions = self.token_ids[:, :size], self.positions[:, :size]
        batch.write_blocks, batch.write_offsets = self.write_blocks[:size], self.write_offsets[:size]
        batch.last_rows = self.rows[:size]
        batch.num_decode = size
        batch.block_tables, batch.lens = self.block_tables[:size], self.lens[:size]
        return batch

    def _record(self, size: int) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        batch = self._batch(size)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm up: Triton compiles, the allocator settles
            for _ in range(2):
                self.model(batch.token_ids, kv_cache=batch)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.memory_pool):
            logits = self.model(batch.token_ids, kv_cache=batch)
        self.memory_pool = graph.pool()
        return graph, logits
