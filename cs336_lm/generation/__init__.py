"""What decoding needs besides the model's forward: sampling filters (``sampling``), the finish reasons, the
``Completion`` and the prompt check that every decoder shares (``completion``), streaming UTF-8 text
(``stream``), files of prompts (``prompts``) and conversations rendered by a chat template (``chat_template``).
The one decode loop is the engine's (``cs336_lm.engine``: ``Engine``, and ``generate`` / ``complete`` on an engine
of their own).

>>> from cs336_lm.engine import generate
>>> from cs336_lm.run import load_run
>>> run = load_run("runs/demo")
>>> stream = TokenTextStream(run.tokenizer.vocab)
>>> for token in generate(run.model, run.tokenizer.encode("Once upon a time"), 100, temperature=0.8, seed=0):
...     print(stream.feed(token), end="", flush=True)
"""

from cs336_lm.generation.completion import Completion, FinishReason, check_prompt, prompt_problem
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
    "FinishReason",
    "TokenTextStream",
    "Utf8StreamDecoder",
    "apply_repetition_penalty",
    "apply_temperature",
    "check_prompt",
    "filter_logits",
    "prompt_problem",
    "sample_next",
    "top_k_filter",
    "top_p_filter",
    "validate_sampling",
]
