"""A contiguous key/value cache for a static batch: one buffer per layer, every row decoded column by column.

``ContiguousKVCache`` preallocates, for every layer, key and value buffers of shape (batch, num_kv_heads,
max_len, d_head). ``cache.extend(new)`` reserves the next ``new`` columns and returns the view that
``TransformerLM.forward(token_ids, kv_cache=view)`` fills: each layer writes the new keys and values into the
reserved columns and attends — through the attention module's own backend — over every column so far. The model
returns the logits of the last new column only, so the LM head costs one row per sequence. Prefill is one call
with the whole prompt, each decode step one call with one token; RoPE positions continue from the cache length.

Batched prompts of different lengths are left-padded: row ``b`` starts with ``pad[b]`` filler columns that no
real token attends to, and its positions are ``column − pad[b]``, so every row computes exactly what it would
compute alone. (Continuous batching over a paged cache, without padding, is ``cs336_lm.engine``.)
"""

from __future__ import annotations

import torch
from jaxtyping import Int
from torch import Tensor

from cs336_lm.nn import MultiHeadSelfAttention, TransformerLM


class ContiguousKVCache:
    """Keys and values of every layer for ``batch_size`` sequences of up to ``max_len`` columns.

    ``length`` is the number of columns filled. ``pad`` (set by ``set_padding``) holds each row's number of
    left-padding columns; without it every column of every row is a real token.
    """

    def __init__(self, model: TransformerLM, batch_size: int, max_len: int) -> None:
        weight = model.lm_head.weight
        shape = (batch_size, model.num_kv_heads, max_len, model.d_head)
        self.keys = [torch.empty(shape, device=weight.device, dtype=weight.dtype) for _ in model.layers]
        self.values = [torch.empty(shape, device=weight.device, dtype=weight.dtype) for _ in model.layers]
        self.batch_size, self.max_len, self.length = batch_size, max_len, 0
        self.columns = torch.arange(max_len, device=weight.device)
        self.last_position = model.context_length - 1
        self.pad: Tensor | None = None
        self.positions = self.columns.clamp(max=self.last_position)  # (max_len,), or (batch, max_len) with padding
        self.key_valid: Tensor | None = None  # (batch, max_len): False on padding columns

    def set_padding(self, pad: Int[Tensor, " batch"] | None) -> None:
        """Declare ``pad[b]`` leading filler columns in row ``b`` (None or all zeros: no padding)."""
        if pad is None or not bool(pad.any()):
            self.pad, self.key_valid = None, None
            self.positions = self.columns.clamp(max=self.last_position)
            return
        pad = pad.to(self.columns.device)
        self.pad = pad
        # Padding columns get position 0; columns past a short row's context (fed only after that row has
        # finished, their outputs unused) stay at the last position so RoPE's table is never overrun.
        self.positions = (self.columns[None, :] - pad[:, None]).clamp_(0, self.last_position)  # (batch, max_len)
        self.key_valid = self.columns[None, :] >= pad[:, None]  # (batch, max_len)

    def reset(self) -> None:
        """Forget every cached column (the buffers are reused)."""
        self.length = 0

    def extend(self, new: int) -> ContiguousStep:
        """Reserve the next ``new`` columns of every row and return the view one forward call fills."""
        if new < 1 or self.length + new > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} columns; {self.length} used, {new} more requested")
        step = ContiguousStep(self, self.length, new)
        self.length += new
        return step


class ContiguousStep:
    """``kv_cache`` for one forward over columns ``start … start + new − 1`` of a ``ContiguousKVCache``."""

    def __init__(self, cache: ContiguousKVCache, start: int, new: int) -> None:
        self.cache, self.start, self.stop = cache, start, start + new
        batch = cache.batch_size
        device = cache.columns.device
        if cache.pad is None:
            self.positions = cache.positions[start : self.stop]  # (new,)
            self.mask = None
        else:
            self.positions = cache.positions[:, start : self.stop]  # (batch, new)
            assert cache.key_valid is not None
            # a padding query sees itself (its own column), so that its unused output stays finite
            own = cache.columns[: self.stop] == cache.columns[start : self.stop, None]  # (new, stop)
            self.mask = cache.key_valid[:, None, None, : self.stop] | own  # (batch, 1, new, stop)
        self.last_rows = torch.arange(batch, device=device) * new + (new - 1)  # each row's last new column

    def layer(self, index: int) -> _ContiguousLayer:
        return _ContiguousLayer(self, index)


class _ContiguousLayer:
    def __init__(self, step: ContiguousStep, index: int) -> None:
        self.step, self.index = step, index

    def attend(self, q: Tensor, k: Tensor, v: Tensor, attention: MultiHeadSelfAttention) -> Tensor:
        """Write ``k``/``v`` into the reserved columns, then attend over columns ``0 … stop − 1``."""
        step, cache = self.step, self.step.cache
        keys, values = cache.keys[self.index], cache.values[self.index]
        keys[:, :, step.start : step.stop] = k
        values[:, :, step.start : step.stop] = v
        return attention.attend(
            q, keys[:, :, : step.stop], values[:, :, : step.stop], q_offset=step.start, mask=step.mask
        )
