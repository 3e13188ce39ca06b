"""The paged KV cache: a pool of fixed-size blocks per layer, and the view one engine step hands the model.

``PagedKVCache`` holds, for every layer, keys and values as ``(num_blocks · block_size, num_kv_heads, d_head)``
slot arrays: slot ``block · block_size + i`` is token ``i`` of a block. ``PagedStep.build`` turns the chunks a
step schedules into one packed row of new tokens — the decoding sequences' single tokens first, then each prompt
chunk — with their positions, the slot each token's K/V goes to, and what each attention layer needs to read
every sequence's cache through its block table. It is the ``kv_cache`` of ``TransformerLM.forward``
(``cs336_lm.nn.cache``): in each layer ``PagedLayer.attend`` writes the new keys and values into their slots,
then attends. Decoding tokens attend together: on CUDA with the Triton paged-attention kernel, which reads the
blocks in place; elsewhere their keys are gathered into one padded tensor and the attention module's own
backend runs over it with a mask. Each prompt chunk attends over its sequence's gathered cache, causally.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from cs336_lm.engine.scheduler import Chunk
from cs336_lm.nn import MultiHeadSelfAttention, TransformerLM, dispatch


class PagedKVCache:
    """Key and value slot pools for every layer of ``model``: ``num_blocks`` blocks of ``block_size`` tokens."""

    def __init__(self, model: TransformerLM, num_blocks: int, block_size: int):
        weight = model.lm_head.weight
        self.num_blocks, self.block_size = num_blocks, block_size
        self.num_kv_heads, self.d_head = model.num_kv_heads, model.d_head
        shape = (num_blocks * block_size, model.num_kv_heads, model.d_head)
        self.keys = [torch.empty(shape, device=weight.device, dtype=weight.dtype) for _ in model.layers]
        self.values = [torch.empty(shape, device=weight.device, dtype=weight.dtype) for _ in model.layers]
        for pool in self.keys + self.values:  # only the sink block is read before it is written: padding reads it
            pool[:block_size].zero_()
        self.device = weight.device

    @property
    def bytes(self) -> int:
        """Memory the pools take, keys and values of every layer."""
        return sum(t.numel() * t.element_size() for t in self.keys + self.values)

    def bytes_per_token(self) -> int:
        return self.bytes // (self.num_blocks * self.block_size)


@dataclass
class _Segment:
    """A prompt chunk in the packed row: ``count`` queries from ``start``, over ``slots`` (its whole context)."""

    start: int
    count: int
    slots: Tensor  # (context,) the slots of the sequence's tokens 0 … context − 1


class PagedStep:
    """The ``kv_cache`` of one engine step (see the module docstring); build it with ``PagedStep.build``."""

    def __init__(self, cache: PagedKVCache):
        self.cache = cache
        self.token_ids = torch.empty(1, 0, dtype=torch.long)
        self.positions = torch.empty(1, 0, dtype=torch.long)
        self.last_rows = torch.empty(0, dtype=torch.long)
        self.slots = torch.empty(0, dtype=torch.long)
        self.num_decode = 0
        self.decode_slots: Tensor | None = None  # (decoding, max_len) slots, padded with slot 0 of the sink
        self.decode_mask: Tensor | None = None  # (decoding, 1, 1, max_len): True on real tokens
        self.block_tables: Tensor | None = None  # (decoding, max_blocks) int32, for the Triton kernel
        self.lens: Tensor | None = None  # (decoding,) int32
        self.segments: list[_Segment] = []

    @classmethod
    def build(cls, cache: PagedKVCache, chunks: list[Chunk], triton_decode: bool = False) -> PagedStep:
        """Pack ``chunks`` (decode chunks first, as the scheduler plans them) into one forward's inputs."""
        step = cls(cache)
        size, device = cache.block_size, cache.device
        ids: list[int] = []
        positions: list[int] = []
        slots: list[int] = []
        last_rows: list[int] = []
        for chunk in chunks:
            seq, table = chunk.seq, chunk.seq.block_table
            span = range(chunk.start, chunk.start + chunk.count)
            ids += seq.tokens[chunk.start : chunk.start + chunk.count]
            positions += span
            slots += [table[p // size] * size + p % size for p in span]
            if chunk.samples:
                last_rows.append(len(ids) - 1)
        step.token_ids = torch.tensor([ids], dtype=torch.long, device=device)
        step.positions = torch.tensor([positions], dtype=torch.long, device=device)
        step.slots = torch.tensor(slots, dtype=torch.long, device=device)
        step.last_rows = torch.tensor(last_rows, dtype=torch.long, device=device)
        while step.num_decode < len(chunks) and chunks[step.num_decode].count == 1 and chunks[step.num_decode].samples:
            step.num_decode += 1  # the leading one-token chunks that sample: they attend together
        if step.num_decode:
            step._plan_decode(chunks[: step.num_decode], triton_decode)
        row = step.num_decode
        for chunk in chunks[step.num_decode :]:
            context = chunk.start + chunk.count
            step.segments.append(_Segment(row, chunk.count, _slots_of(chunk.seq.block_table, context, size, device)))
            row += chunk.count
        return step

    def _plan_decode(self, decoding: list[Chunk], triton_decode: bool) -> None:
        size, device = self.cache.block_size, self.cache.device
        lens = [c.start + 1 for c in decoding]
        if triton_decode:
            width = max(math.ceil(n / size) for n in lens)
            tables = [c.seq.block_table[:width] + [0] * (width - len(c.seq.block_table[:width])) for c in decoding]
            self.block_tables = torch.tensor(tables, dtype=torch.int32, device=device)
            self.lens = torch.tensor(lens, dtype=torch.int32, device=device)
            return
        longest = max(lens)
        rows = torch.zeros(len(decoding), longest, dtype=torch.long)
        for i, chunk in enumerate(decoding):
            rows[i, : lens[i]] = _slots_of(chunk.seq.block_table, lens[i], size, torch.device("cpu"))
        self.decode_slots = rows.to(device)
        valid = torch.arange(longest)[None, :] < torch.tensor(lens)[:, None]  # (decoding, longest)
        self.decode_mask = valid[:, None, None, :].to(device)

    def layer(self, index: int) -> PagedLayer:
        return PagedLayer(self, index)


def _slots_of(table: list[int], length: int, size: int, device: torch.device) -> Tensor:
    """The slots of tokens ``0 … length − 1`` of a sequence with block table ``table``."""
    blocks = torch.tensor(table[: math.ceil(length / size)], dtype=torch.long)
    return (blocks[:, None] * size + torch.arange(size)).flatten()[:length].to(device)


class PagedLayer:
    """Layer ``index``'s view of a ``PagedStep``: write the new K/V into their slots, then attend."""

    def __init__(self, step: PagedStep, index: int):
        self.step, self.index = step, index

    def attend(self, q: Tensor, k: Tensor, v: Tensor, attention: MultiHeadSelfAttention) -> Tensor:
        """``q`` (1, heads, new, d_head), ``k``/``v`` (1, kv_heads, new, d_head) of the packed row → (1, heads, new,
        d_head), each token attending over its own sequence's cache."""
        step, cache = self.step, self.step.cache
        keys, values = cache.keys[self.index], cache.values[self.index]
        keys[step.slots] = k[0].transpose(0, 1)  # (new, kv_heads, d_head) into their slots
        values[step.slots] = v[0].transpose(0, 1)
        parts = []
        if step.num_decode:
            parts.append(self._decode(q[0, :, : step.num_decode], keys, values, attention))  # (heads, decoding, d)
        for seg in step.segments:
            queries = q[:, :, seg.start : seg.start + seg.count]  # (1, heads, count, d_head)
            k_ctx = keys[seg.slots].transpose(0, 1)[None]  # (1, kv_heads, context, d_head)
            v_ctx = values[seg.slots].transpose(0, 1)[None]
            out = attention.attend(queries, k_ctx, v_ctx, q_offset=len(seg.slots) - seg.count)
            parts.append(out[0])  # (heads, count, d_head)
        return torch.cat(parts, dim=1)[None] if len(parts) > 1 else parts[0][None]

    def _decode(self, q: Tensor, keys: Tensor, values: Tensor, attention: MultiHeadSelfAttention) -> Tensor:
        """One query per decoding sequence over its cached tokens: (heads, decoding, d_head)."""
        step = self.step
        queries = q.transpose(0, 1)  # (decoding, heads, d_head)
        if step.block_tables is not None and step.lens is not None:
            from cs336_lm.kernels.paged_attention import triton_paged_decode

            scale = 1.0 / math.sqrt(q.shape[-1])
            out = triton_paged_decode(queries, keys, values, step.block_tables, step.lens, step.cache.block_size, scale)
            return out.transpose(0, 1)
        assert step.decode_slots is not None
        k_ctx = keys[step.decode_slots].transpose(1, 2)  # (decoding, kv_heads, longest, d_head)
        v_ctx = values[step.decode_slots].transpose(1, 2)
        longest = step.decode_slots.shape[1]
        out = attention.attend(queries[:, :, None], k_ctx, v_ctx, q_offset=longest - 1, mask=step.decode_mask)
        return out[:, :, 0].transpose(0, 1)  # (heads, decoding, d_head)


def triton_decode_available(model: TransformerLM) -> bool:
    """Whether decoding tokens use the Triton paged kernel: the model's kernel setting allows Triton here."""
    weight = model.lm_head.weight
    return weight.device.type == "cuda" and dispatch.use_triton(weight.device, weight.dtype, model.kernels)
