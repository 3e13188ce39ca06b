"""Text generation from a trained TransformerLM: sampling filters (``sampling``), a contiguous KV cache the model's
own forward fills (``kv_cache``), the decoding loop for one prompt or a static batch of prompts of different
lengths (``generate``) and streaming UTF-8 text (``stream``). Continuous batching over a paged cache is
``cs336_lm.engine``. A trained run is loaded with
``cs336_lm.run.load_run``.

>>> from cs336_lm.run import load_run
>>> run = load_run("runs/debug")
>>> stream = TokenTextStream(run.tokenizer.vocab)
>>> for token in generate(run.model, run.tokenizer.encode("Once upon a time"), 100, temperature=0.8, seed=0):
...     print(stream.feed(token), end="", flush=True)
"""

from cs336_lm.generation.generate import Completion, FinishReason, complete, generate, generate_batch
from cs336_lm.generation.kv_cache import ContiguousKVCache
from cs336_lm.generation.sampling import (
    apply_repetition_penalty,
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
    "ContiguousKVCache",
    "FinishReason",
    "TokenTextStream",
    "Utf8StreamDecoder",
    "apply_repetition_penalty",
    "apply_temperature",
    "complete",
    "filter_logits",
    "generate",
    "generate_batch",
    "sample_next",
    "top_k_filter",
    "top_p_filter",
    "validate_sampling",
]
