"""Text generation from a trained TransformerLM: sampling filters, a KV-cache decoder, the decoding loop
(single prompt or a batch of prompts of different lengths), streaming UTF-8 text, and run-directory loading.

>>> from cs336_lm.generation import generate
>>> for token in generate(model, tok.encode("Once upon a time"), 100, temperature=0.8, top_p=0.95, seed=0):
...     print(stream.feed(token), end="", flush=True)
"""

from cs336_lm.generation.generate import Completion, FinishReason, complete, generate, generate_batch
from cs336_lm.generation.kv_cache import KVCache, cached_forward
from cs336_lm.generation.sampling import (
    apply_temperature,
    filter_logits,
    sample_next,
    top_k_filter,
    top_p_filter,
    validate_sampling,
)
from cs336_lm.generation.stream import TokenTextStream, Utf8StreamDecoder

__all__ = [
    "Completion",
    "FinishReason",
    "KVCache",
    "TokenTextStream",
    "Utf8StreamDecoder",
    "apply_temperature",
    "cached_forward",
    "complete",
    "filter_logits",
    "generate",
    "generate_batch",
    "sample_next",
    "top_k_filter",
    "top_p_filter",
    "validate_sampling",
]
