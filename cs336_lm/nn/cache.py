"""What ``TransformerLM.forward`` asks of a key/value cache: the contract between the model and its decoders.

A cache holds, for every layer, the keys and values of the tokens already seen by each sequence of a batch. The
model calls it in one place per layer: ``MultiHeadSelfAttention.forward`` computes the new tokens' queries, keys
and values (after RoPE) and hands them to ``kv_cache.attend(q, k, v, attention)``, which stores the keys and
values and returns the attention of the queries over each sequence's cached keys, computed by
``attention.attend`` — the module's own backend, so decoding runs the same math and kernels as training — or by a
kernel that reads the cache in place. Two caches implement it: a contiguous buffer per layer for a static batch
(``scripts/static_batch.py``, the baseline the engine replaced) and a paged pool of blocks for continuous batching
(``cs336_lm.nn.paged``, which the engine runs).
"""

from __future__ import annotations

from typing import Protocol

from torch import Tensor


class Attention(Protocol):
    """What a cache may use of the attention module that calls it (``MultiHeadSelfAttention``): its backend
    settings and its own ``attend`` — the math it runs without a cache."""

    attention: str
    kernels: str

    def attend(self, q: Tensor, k: Tensor, v: Tensor, q_offset: int = 0, mask: Tensor | None = None) -> Tensor: ...


class LayerKVCache(Protocol):
    """One layer's view of a cache, for one forward call."""

    def attend(self, q: Tensor, k: Tensor, v: Tensor, attention: Attention) -> Tensor:
        """Store ``k``/``v`` (batch, num_kv_heads, new, d_head) of the new tokens; return the attention of ``q``
        (batch, num_heads, new, d_head) over each query's own sequence, up to and including its own position."""
        ...


class KVCache(Protocol):
    """A cache prepared for one forward call over some new tokens of each sequence.

    ``positions`` are the new tokens' absolute positions (broadcastable to the token ids, as ``token_positions``);
    ``last_rows`` index the rows of the flattened (batch · new) tokens whose logits the forward returns — the last
    new token of each sequence that samples next.
    """

    positions: Tensor
    last_rows: Tensor

    def layer(self, index: int) -> LayerKVCache: ...
