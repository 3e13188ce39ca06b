"""Paged attention: key/value caches kept in a pool of fixed-size blocks, and attention that reads them there.

``PagedKVCache`` holds, for every layer, keys and values as ``(num_blocks, num_kv_heads, block_size, d_head)``:
block ``b`` holds tokens ``0 … block_size − 1`` of whichever sequence's block table lists it; it is zeroed when
its first token is written, since attention reads whole blocks and weighs the unwritten slots by 0. Block 0 is the
sink: it pads short block tables and takes the writes of padding rows.

``PagedBatch`` is the ``kv_cache`` (``cs336_lm.nn.cache``) of one forward over a packed row of new tokens — the
decoding sequences' single tokens first, then each prompt chunk — described by ``PagedInputs`` (plain lists: the
engine's model runner packs them from its schedule). In each layer ``PagedLayer.attend`` writes the new keys and
values into their blocks, then attends: every prompt chunk causally over its sequence's keys, gathered, through
the attention module's own backend; the decoding tokens together through ``decode_attention``, the one entry
point that picks the Triton paged kernel (CUDA: it reads the blocks in place through the block tables) or the CPU
reference.

A forward whose only new token is one lone decoding sequence's (batch-1 decoding, the most common step there is)
needs none of that: the pool also keeps that sequence's keys and values contiguous, (kv_heads, tokens, d_head) per
layer (``LoneMirror``), and the token attends over them through ``attention.attend`` — the math and the memory
layout of a contiguous cache. A pool laid out by blocks spreads a head's keys over every block, so reading them
in place costs a batched product per block and head: 2–2.7× the attention over contiguous keys at the lengths a
lone decode spends its time at (``scripts/bench_paged_decode.py``). The mirror is appended to while the same
sequence keeps decoding alone, and rebuilt from the pool, once, when a lone sequence starts (or resumes) decoding;
any other forward leaves it stale. The keys and values are still written to the pool, which stays the truth.

The CPU reference for several decoding sequences (``DecodePlan``) also reads the pool in place instead of
gathering each sequence's keys into a padded copy (a gather of 64 sequences × 400 tokens cost ~8× the attention
itself): every block in use is multiplied by the query of the sequence that owns it — one batched matmul over the
used end of the pool, or over just the blocks in use when they are scattered over it (``COMPACT_BELOW``) — and the
scores of each sequence's blocks, a small tensor, are put in order, masked and normalised by the kernel dispatch's
softmax; the probabilities then weigh the value blocks in place and are summed per sequence. A block two decoding
sequences share (a common prompt prefix) is read once more for each further sequence. Under ``attention: sdpa`` the
decoding tokens' keys are gathered and go through torch's fused kernel, the baseline the reference is measured
against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from cs336_lm.nn import dispatch
from cs336_lm.nn.cache import Attention

SINK_BLOCK = 0


class PagedKVCache:
    """Key and value block pools for ``num_layers`` layers: ``num_blocks`` blocks of ``block_size`` tokens."""

    def __init__(
        self,
        num_layers: int,
        num_kv_heads: int,
        d_head: int,
        num_blocks: int,
        block_size: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        self.num_blocks, self.block_size = num_blocks, block_size
        shape = (num_blocks, num_kv_heads, block_size, d_head)
        self.keys = [torch.empty(shape, device=device, dtype=dtype) for _ in range(num_layers)]
        self.values = [torch.empty(shape, device=device, dtype=dtype) for _ in range(num_layers)]
        self.zeroed = 0  # blocks 0 … zeroed − 1 have been zeroed (see ensure_zeroed)
        self.device = self.keys[0].device
        self.mirror = LoneMirror(num_layers, num_kv_heads, d_head, device=self.device, dtype=self.keys[0].dtype)

    def ensure_zeroed(self, upto: int) -> None:
        """Zero blocks ``zeroed … upto − 1`` of every pool, once.

        The decode attention multiplies whole blocks, tokens not yet written included, by a weight of 0, which
        must not meet a NaN left in fresh memory. The pools stay ``empty`` and are zeroed only as far as the
        blocks in use reach (free blocks are handed out lowest first), so an idle pool commits no memory.
        """
        if upto <= self.zeroed:
            return
        for pool in self.keys + self.values:
            pool[self.zeroed : upto].zero_()
        self.zeroed = upto

    def clear(self, blocks: list[int]) -> None:
        """Zero ``blocks`` in every pool: a sequence is about to write its first token into each. The slots it has
        not written yet are read with a weight of 0, so whatever an earlier holder left there (a NaN, should its
        forward have overflowed) must not stay."""
        index = torch.tensor(blocks, dtype=torch.long, device=self.device)
        for pool in self.keys + self.values:
            pool.index_fill_(0, index, 0)

    @property
    def bytes(self) -> int:
        """Memory the pools take, keys and values of every layer (the lone sequence's mirror not included)."""
        return sum(t.numel() * t.element_size() for t in self.keys + self.values)


class LoneMirror:
    """The keys and values of one sequence decoding alone, contiguous: (kv_heads, capacity, d_head) per layer.

    Valid for ``table`` (the sequence's blocks) up to ``length`` tokens, and only as long as every forward since it
    was written decoded that sequence alone (``PagedBatch.build`` keeps that rule: any other forward calls
    ``forget``). The buffers grow by doubling; a grown mirror is rebuilt from the pool.
    """

    def __init__(self, num_layers: int, num_kv_heads: int, d_head: int, *, device: torch.device, dtype: torch.dtype):
        self.num_layers, self.num_kv_heads, self.d_head = num_layers, num_kv_heads, d_head
        self.device, self.dtype = device, dtype
        self.keys: list[Tensor] = []
        self.values: list[Tensor] = []
        self.table: list[int] = []
        self.length = 0

    def forget(self) -> None:
        """Mark the mirror stale: the next lone decode rebuilds it from the pool."""
        self.length = 0

    def extend(self, table: list[int], length: int, block_size: int) -> int:
        """Make the mirror hold the ``length`` tokens of the sequence in ``table`` after this forward writes the
        last of them; returns how many of them it already holds (``length − 1``, or 0: rebuild from the pool)."""
        held = length - 1 if self.length == length - 1 and self.table == table[: len(self.table)] else 0
        capacity = self.keys[0].shape[1] if self.keys else 0
        if length > capacity:
            shape = (self.num_kv_heads, max(length, 2 * capacity, 4 * block_size), self.d_head)
            self.keys = [torch.empty(shape, device=self.device, dtype=self.dtype) for _ in range(self.num_layers)]
            self.values = [torch.empty(shape, device=self.device, dtype=self.dtype) for _ in range(self.num_layers)]
            held = 0
        self.table, self.length = table[: math.ceil(length / block_size)], length
        return held


@dataclass
class PagedInputs:
    """One forward's new tokens and where their sequences' caches are, as plain lists.

    The packed row holds ``token_ids`` at ``positions``; token ``i``'s key and value go to slot
    ``positions[i] % block_size`` of block ``write_blocks[i]``. The first ``len(decode_lens)`` tokens are decoding
    sequences' (one each, the last of ``decode_lens[j]`` tokens held in ``decode_tables[j]``); then come the
    prompt chunks, ``(count, context, blocks)`` each: ``count`` new tokens ending a context of ``context`` tokens
    held in ``blocks``. ``last_rows`` are the rows whose logits the forward returns.
    """

    token_ids: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    write_blocks: list[int] = field(default_factory=list)
    last_rows: list[int] = field(default_factory=list)
    decode_tables: list[list[int]] = field(default_factory=list)
    decode_lens: list[int] = field(default_factory=list)
    prefills: list[tuple[int, int, list[int]]] = field(default_factory=list)


@dataclass
class _Segment:
    """A prompt chunk in the packed row: ``count`` queries from ``start``, over the ``context`` tokens of the
    sequence (cached ones and its own) held in ``blocks``."""

    start: int
    count: int
    context: int
    blocks: Tensor  # (blocks,) the sequence's first ceil(context / block_size) blocks


COMPACT_BELOW = 0.75
"""When the decoding sequences hold fewer than this share of blocks 0 … (their highest) − 1, the decode attention
reads just their blocks (an ``index_select``) instead of that whole extent of the pool: a server's requests come
and go, and the blocks in use end up scattered among free and cached ones."""


_NONE = torch.empty(0, dtype=torch.long)


@dataclass
class DecodePlan:
    """Index tensors of one step's CPU decode attention over the pool in place (see the module docstring).

    ``D`` decoding sequences, each over at most ``W`` blocks (its block table padded with the sink block); the
    first sequence listing a block owns it, any later one reads it as an ``extra`` pair.
    """

    width: int  # W
    used: int = 0  # blocks 0 … used − 1 of the pool (or of ``blocks``) hold every block the decoding sequences read
    owner: Tensor = _NONE  # (used,) each block's owning sequence; D for blocks none holds, whose row is dropped
    pairs: Tensor = _NONE  # (D·W,) row of each (sequence, table entry) in [owned blocks' scores; extra pairs' scores]
    owned_rows: Tensor = _NONE  # rows of (D·W) whose block their sequence owns …
    owned_blocks: Tensor = _NONE  # … and those blocks (positions in ``blocks`` when that is set)
    extra_rows: Tensor = _NONE  # rows of (D·W) that read a block another sequence owns …
    extra_blocks: Tensor = _NONE  # … those blocks …
    extra_seqs: Tensor = _NONE  # … and the sequences reading them
    valid: Tensor = _NONE  # (D, 1, 1, W·block_size): True on the tokens each sequence has
    blocks: Tensor | None = None  # the owned blocks, when ``owned_blocks`` are positions in it (compacted)

    @classmethod
    def build(cls, tables: list[list[int]], lens: list[int], size: int, device: torch.device) -> DecodePlan:
        width = max(math.ceil(n / size) for n in lens)
        owner: dict[int, int] = {}
        pairs, owned_rows, owned_blocks, extra_rows, extra_blocks, extra_seqs = [], [], [], [], [], []
        for b, (table, n) in enumerate(zip(tables, lens, strict=True)):
            for j in range(width):
                block = table[j] if j * size < n else SINK_BLOCK  # the sink pads a short table
                row = b * width + j
                if owner.setdefault(block, b) == b or block == 0:
                    owned_rows.append(row)
                    owned_blocks.append(block)
                    pairs.append(block)
                else:
                    extra_rows.append(row)
                    extra_blocks.append(block)
                    extra_seqs.append(b)
                    pairs.append(-len(extra_rows))  # resolved below, once the owned rows are counted
        held = sorted(owner)
        compact = len(held) < COMPACT_BELOW * (held[-1] + 1)
        if compact:  # the blocks in use are scattered over the pool: read just them (a copy), not the whole extent
            index = {block: i for i, block in enumerate(held)}
            owned_blocks = [index[block] for block in owned_blocks]
            pairs = [index[p] if p >= 0 else p for p in pairs]
        used = len(held) if compact else held[-1] + 1
        pairs = [p if p >= 0 else used - 1 - p for p in pairs]  # extra pair k sits at row used + k
        owners = [len(tables)] * used  # a free block inside the extent: its product goes to an extra row, dropped
        for block, b in owner.items():
            owners[index[block] if compact else block] = b
        valid = torch.arange(width * size)[None, :] < torch.tensor(lens)[:, None]  # (D, W·block_size)

        def tensor(values: list[int]) -> Tensor:
            return torch.tensor(values, dtype=torch.long, device=device)

        return cls(
            blocks=tensor(held) if compact else None,
            used=used,
            owner=tensor(owners),
            pairs=tensor(pairs),
            owned_rows=tensor(owned_rows),
            owned_blocks=tensor(owned_blocks),
            extra_rows=tensor(extra_rows),
            extra_blocks=tensor(extra_blocks),
            extra_seqs=tensor(extra_seqs),
            valid=valid[:, None, None, :].to(device),
            width=width,
        )


class PagedBatch:
    """The ``kv_cache`` of one forward over the pool (see the module docstring); build it with ``PagedBatch.build``."""

    def __init__(self, cache: PagedKVCache):
        self.cache = cache
        self.token_ids = self.positions = _NONE[None]  # (1, new) the packed row's tokens and their positions
        self.last_rows = _NONE  # (sampling,) the rows whose logits the forward returns
        self.write_blocks = _NONE  # (new,) the block each new token's K/V goes to …
        self.write_offsets = _NONE  # … and its offset in that block
        self.write_slot: tuple[int, int] | None = None  # the (block, offset) of a forward's one new token
        self.mirrored: int | None = None  # a lone decode: how many of its tokens the mirror held (0: rebuild it)
        self.num_decode = 0
        self.plan: DecodePlan | None = None  # the CPU decode attention's indices
        self.block_tables: Tensor | None = None  # (decoding, max_blocks) int32, for the Triton kernel
        self.lens: Tensor | None = None  # (decoding,) int32
        self.segments: list[_Segment] = []

    @classmethod
    def build(cls, cache: PagedKVCache, inputs: PagedInputs, triton_decode: bool = False) -> PagedBatch:
        """The tensors of ``inputs`` on the pool's device; blocks whose first token this forward writes are
        cleared of what an earlier holder left in them."""
        batch = cls(cache)
        size, device = cache.block_size, cache.device
        tables = inputs.decode_tables + [blocks for _, _, blocks in inputs.prefills]
        cache.ensure_zeroed(1 + max(max(t, default=0) for t in tables))  # every block read, every block written
        starting = [b for b, p in zip(inputs.write_blocks, inputs.positions, strict=True) if p % size == 0]
        if starting:
            cache.clear(starting)
        rows = torch.tensor([inputs.token_ids, inputs.positions], dtype=torch.long, device=device)
        batch.token_ids, batch.positions = rows[0:1], rows[1:2]
        if len(inputs.token_ids) == 1:  # one new token: written by plain indexing
            batch.write_slot = (inputs.write_blocks[0], inputs.positions[0] % size)
        else:
            batch.write_blocks = torch.tensor(inputs.write_blocks, dtype=torch.long, device=device)
            batch.write_offsets = batch.positions[0] % size
        batch.last_rows = torch.tensor(inputs.last_rows, dtype=torch.long, device=device)
        batch.num_decode = len(inputs.decode_lens)
        if batch.num_decode == 1 and not inputs.prefills and not triton_decode:  # one sequence decoding alone
            batch.mirrored = cache.mirror.extend(inputs.decode_tables[0], inputs.decode_lens[0], size)
        else:
            cache.mirror.forget()
            if batch.num_decode:
                batch._plan_decode(inputs.decode_tables, inputs.decode_lens, triton_decode)
        row = batch.num_decode
        for count, context, blocks in inputs.prefills:
            batch.segments.append(_Segment(row, count, context, torch.tensor(blocks, device=device)))
            row += count
        return batch

    def _plan_decode(self, tables: list[list[int]], lens: list[int], triton_decode: bool) -> None:
        size, device = self.cache.block_size, self.cache.device
        if triton_decode:
            width = max(math.ceil(n / size) for n in lens)
            padded = [t[:width] + [SINK_BLOCK] * (width - len(t[:width])) for t in tables]
            self.block_tables = torch.tensor(padded, dtype=torch.int32, device=device)
            self.lens = torch.tensor(lens, dtype=torch.int32, device=device)
        else:
            self.plan = DecodePlan.build(tables, lens, size, device)

    def layer(self, index: int) -> PagedLayer:
        return PagedLayer(self, index)


class PagedLayer:
    """Layer ``index``'s view of a ``PagedBatch``: write the new K/V into their blocks, then attend."""

    def __init__(self, batch: PagedBatch, index: int):
        self.batch, self.index = batch, index

    def attend(self, q: Tensor, k: Tensor, v: Tensor, attention: Attention) -> Tensor:
        """``q`` (1, heads, new, d_head), ``k``/``v`` (1, kv_heads, new, d_head) of the packed row → (1, heads, new,
        d_head), each token attending over its own sequence's cache."""
        batch, cache = self.batch, self.batch.cache
        keys, values = cache.keys[self.index], cache.values[self.index]
        if batch.write_slot is not None:  # one new token: plain indexing, no index tensors
            block, offset = batch.write_slot
            keys[block, :, offset], values[block, :, offset] = k[0, :, 0], v[0, :, 0]
        else:
            where = (batch.write_blocks, slice(None), batch.write_offsets)
            keys[where] = k[0].transpose(0, 1)  # (new, kv_heads, d_head) into (block, :, offset)
            values[where] = v[0].transpose(0, 1)
        if batch.mirrored is not None:
            return self._attend_mirrored(q, k, v, attention)
        if not batch.segments:  # decoding only: the row of n tokens is a batch of n one-token queries
            return decode_attention(q[0].transpose(0, 1), keys, values, batch, attention).transpose(0, 1)[None]
        parts = []
        if batch.num_decode:
            decoded = decode_attention(q[0, :, : batch.num_decode].transpose(0, 1), keys, values, batch, attention)
            parts.append(decoded.transpose(0, 1)[None])  # (1, heads, decoding, d_head)
        for seg in batch.segments:
            queries = q[:, :, seg.start : seg.start + seg.count]  # (1, heads, count, d_head)
            k_ctx, v_ctx = (_gather(pool, seg.blocks, seg.context) for pool in (keys, values))
            parts.append(attention.attend(queries, k_ctx, v_ctx, q_offset=seg.context - seg.count))
        return torch.cat(parts, dim=2)

    def _attend_mirrored(self, q: Tensor, k: Tensor, v: Tensor, attention: Attention) -> Tensor:
        """A lone decoding sequence's token over its keys held contiguous (``LoneMirror``): appended to the
        mirror, or the mirror rebuilt from the pool (where the new token has just been written)."""
        batch, cache = self.batch, self.batch.cache
        mirror, length = cache.mirror, cache.mirror.length
        keys, values = mirror.keys[self.index], mirror.values[self.index]
        if batch.mirrored:
            keys[:, batch.mirrored], values[:, batch.mirrored] = k[0, :, 0], v[0, :, 0]
        else:
            index = torch.tensor(mirror.table, dtype=torch.long, device=cache.device)
            keys[:, :length] = _gather(cache.keys[self.index], index, length)[0]
            values[:, :length] = _gather(cache.values[self.index], index, length)[0]
        return attention.attend(q, keys[None, :, :length], values[None, :, :length], q_offset=length - 1)


def decode_attention(q: Tensor, keys: Tensor, values: Tensor, batch: PagedBatch, attention: Attention) -> Tensor:
    """One query per decoding sequence, ``q`` (decoding, heads, d_head), over its blocks of ``keys``/``values``
    (one layer's pools); the same shape out. The Triton paged kernel where the batch was built for it, else the
    CPU reference of the module's backend."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    if batch.block_tables is not None and batch.lens is not None:
        from cs336_lm.kernels.paged_attention import triton_paged_decode

        return triton_paged_decode(q, keys, values, batch.block_tables, batch.lens, scale)
    assert batch.plan is not None
    if attention.attention == "sdpa":  # the fused baseline needs each sequence's keys in one piece
        return _decode_gathered(q, keys, values, batch.plan, attention)
    return _decode_in_place(q, keys, values, batch.plan, scale, attention.kernels)


def triton_decode_available(device: torch.device, dtype: torch.dtype, kernels: str) -> bool:
    """Whether decoding tokens use the Triton paged kernel: on CUDA where the kernel setting allows Triton."""
    return device.type == "cuda" and dispatch.use_triton(device, dtype, kernels)


def _gather(pool: Tensor, blocks: Tensor, length: int) -> Tensor:
    """The first ``length`` tokens held in ``blocks`` of ``pool``, as (1, kv_heads, length, d_head)."""
    picked = pool.index_select(0, blocks)  # (blocks, kv_heads, block_size, d_head)
    return picked.transpose(0, 1).flatten(1, 2)[None, :, :length]


def _decode_in_place(q: Tensor, keys: Tensor, values: Tensor, plan: DecodePlan, scale: float, kernels: str) -> Tensor:
    """Decode attention over the pool in place (the module docstring): ``q`` (D, heads, d_head) → (D, heads, d_head)."""
    decoding, heads, d_head = q.shape
    kv_heads, size = keys.shape[1], keys.shape[2]
    group = heads // kv_heads
    qg = q.view(decoding, kv_heads, group, d_head)  # query heads grouped by the key/value head they read
    # row D owns the free blocks inside the extent: whatever they hold (even a NaN) lands there and is dropped
    qg = torch.cat([qg, qg.new_zeros(1, kv_heads, group, d_head)])
    if plan.blocks is not None:
        held_keys, held_values = keys.index_select(0, plan.blocks), values.index_select(0, plan.blocks)
    else:
        held_keys, held_values = keys[: plan.used], values[: plan.used]
    scores = qg.index_select(0, plan.owner) @ held_keys.transpose(-2, -1)  # (used, kv_heads, g, size)
    if plan.extra_rows.numel():
        extra = qg.index_select(0, plan.extra_seqs) @ keys.index_select(0, plan.extra_blocks).transpose(-2, -1)
        scores = torch.cat([scores, extra])
    # each sequence's blocks in table order: (D, W, kv_heads, g, size) → (D, kv_heads, g, W·size)
    ordered = scores.index_select(0, plan.pairs).view(decoding, plan.width, kv_heads, group, size)
    ordered = ordered.permute(0, 2, 3, 1, 4).reshape(decoding, kv_heads, group, plan.width * size)
    ordered = ordered.masked_fill_(~plan.valid, -math.inf)
    probs = dispatch.causal_softmax(ordered, scale, q_offset=plan.width * size, backend=kernels)  # all visible
    probs = probs.view(decoding, kv_heads, group, plan.width, size).permute(0, 3, 1, 2, 4)
    probs = probs.reshape(decoding * plan.width, kv_heads, group, size)  # one row per (sequence, table entry)
    weights = torch.zeros_like(scores[: plan.used]).index_copy_(0, plan.owned_blocks, probs[plan.owned_rows])
    out = torch.zeros_like(qg).index_add_(0, plan.owner, weights @ held_values)  # (D + 1, kv_heads, g, d_head)
    if plan.extra_rows.numel():
        extra_out = probs[plan.extra_rows] @ values.index_select(0, plan.extra_blocks)
        out.index_add_(0, plan.extra_seqs, extra_out)
    return out[:decoding].reshape(decoding, heads, d_head)


def _decode_gathered(q: Tensor, keys: Tensor, values: Tensor, plan: DecodePlan, attention: Attention) -> Tensor:
    """Decode attention through the module's own backend over each sequence's keys gathered into one padded
    tensor (the sink block pads short tables; ``plan.valid`` masks the padding)."""
    decoding = q.shape[0]
    rows = torch.empty(decoding * plan.width, dtype=torch.long, device=q.device)
    rows[plan.owned_rows] = plan.owned_blocks if plan.blocks is None else plan.blocks[plan.owned_blocks]
    if plan.extra_rows.numel():
        rows[plan.extra_rows] = plan.extra_blocks
    blocks = rows.view(decoding, plan.width)
    k_ctx, v_ctx = (
        pool[blocks].permute(0, 2, 1, 3, 4).flatten(2, 3) for pool in (keys, values)
    )  # (D, kv_heads, W·size, d_head)
    longest = k_ctx.shape[2]
    out = attention.attend(q[:, :, None], k_ctx, v_ctx, q_offset=longest - 1, mask=plan.valid)
    return out[:, :, 0]
