"""Which block of the KV pool belongs to whom: allocation, reference counts and the prefix cache.

The pool (``cs336_lm.nn.paged``) is ``num_blocks`` blocks of ``block_size`` token slots in every layer; a
block id means the same block in all layers. A sequence holds a list of block ids, its block table. A block is
shared (its reference count is above one) when sequences have the same tokens in it: a full block whose K/V
are computed is registered under a hash of its tokens and of every token before it, so a later sequence with
the same prefix takes it instead of computing it again. A block nobody holds any more is free; if it is
registered it keeps its contents, in least-recently-freed order, until a new allocation needs it. Block 0 is
never handed out: it is the sink that padding rows of a fixed-shape batch write into. Plain free blocks are
handed out lowest id first, so the blocks in use crowd the start of the pool (the CPU decode attention reads
the used end of the pool in one piece).
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Sequence

from cs336_lm.errors import GenerationError

SINK_BLOCK = 0


def block_hash(parent: int | None, tokens: Sequence[int]) -> int:
    """The hash of a full block: its tokens and, through ``parent`` (the previous block's hash), all before them."""
    return hash((parent, tuple(tokens)))


class BlockManager:
    """Free lists, reference counts and the registry of computed full blocks, in O(log num_blocks) per block."""

    def __init__(self, num_blocks: int, block_size: int):
        if num_blocks < 2:
            raise GenerationError(f"the KV pool needs at least 2 blocks (one is reserved), got {num_blocks}")
        self.num_blocks, self.block_size = num_blocks, block_size
        self.refs = [0] * num_blocks
        self.hashes: list[int | None] = [None] * num_blocks
        self.tokens: list[tuple[int, ...] | None] = [None] * num_blocks
        self.registry: dict[int, int] = {}  # block hash -> block id
        self.plain: list[int] = list(range(1, num_blocks))  # a heap: free, holding nothing worth keeping
        self.cached: OrderedDict[int, None] = OrderedDict()  # free but registered, oldest first

    @property
    def capacity(self) -> int:
        """Blocks that can ever be handed out (all but the sink)."""
        return self.num_blocks - 1

    @property
    def num_free(self) -> int:
        return len(self.plain) + len(self.cached)

    @property
    def num_used(self) -> int:
        return self.capacity - self.num_free

    def allocate(self) -> int:
        """A free block with reference count 1; a registered one is forgotten only when no plain block is left."""
        if self.plain:
            block = heapq.heappop(self.plain)
        elif self.cached:
            block, _ = self.cached.popitem(last=False)
            self._unregister(block)
        else:
            raise GenerationError("the KV pool has no free block")  # callers check num_free first
        self.refs[block] = 1
        return block

    def share(self, block: int) -> None:
        """Take one more reference to ``block`` (a prefix-cache hit); a free registered block is revived."""
        if self.refs[block] == 0:
            del self.cached[block]
        self.refs[block] += 1

    def release(self, block: int) -> None:
        """Drop one reference; at zero the block is free (kept as cache when it is registered)."""
        self.refs[block] -= 1
        if self.refs[block] > 0:
            return
        if self.hashes[block] is not None:
            self.cached[block] = None
        else:
            heapq.heappush(self.plain, block)

    def lookup(self, key: int, tokens: Sequence[int]) -> int | None:
        """The registered block with this hash and exactly these tokens, or None."""
        block = self.registry.get(key)
        if block is None or self.tokens[block] != tuple(tokens):
            return None
        return block

    def register(self, block: int, key: int, tokens: Sequence[int]) -> None:
        """Record that ``block`` holds the computed K/V of ``tokens`` (a full block) after the prefix ``key`` names.

        A block already registered, or content already registered in another block, is left as it is.
        """
        if self.hashes[block] is not None or key in self.registry:
            return
        self.hashes[block], self.tokens[block] = key, tuple(tokens)
        self.registry[key] = block

    def _unregister(self, block: int) -> None:
        key = self.hashes[block]
        if key is not None and self.registry.get(key) == block:
            del self.registry[key]
        self.hashes[block], self.tokens[block] = None, None
