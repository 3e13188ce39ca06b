"""Named model shapes: ``PRESETS[name]`` is a ``ModelArgs`` (it unpacks as ``TransformerLM`` keywords).

``debug`` is tiny enough for unit tests; ``tinystories-17m`` and ``owt-small`` are the CS336 training
shapes (``tinystories-17m-gqa`` is the first with 4 key/value heads); the ``gpt2-*-like`` entries take
GPT-2's published shapes (vocabulary, context, width, depth, heads, d_ff = 4·d_model) into this architecture
(SwiGLU, RoPE, RMSNorm, untied head, no biases), for FLOP and memory accounting.
"""

from cs336_lm.nn.args import ModelArgs


def _gpt2_like(d_model: int, num_layers: int, num_heads: int) -> ModelArgs:
    return ModelArgs(
        vocab_size=50257,
        context_length=1024,
        d_model=d_model,
        num_layers=num_layers,
        num_heads=num_heads,
        d_ff=4 * d_model,
    )


PRESETS: dict[str, ModelArgs] = {
    "debug": ModelArgs(
        vocab_size=512, context_length=64, d_model=64, num_layers=2, num_heads=4, d_ff=176, rope_theta=10000.0
    ),
    "tinystories-17m": ModelArgs(
        vocab_size=10000, context_length=256, d_model=512, num_layers=4, num_heads=16, d_ff=1344, rope_theta=10000.0
    ),
    "tinystories-17m-gqa": ModelArgs(
        vocab_size=10000,
        context_length=256,
        d_model=512,
        num_layers=4,
        num_heads=16,
        num_kv_heads=4,
        d_ff=1344,
        rope_theta=10000.0,
    ),
    "owt-small": ModelArgs(
        vocab_size=32000, context_length=256, d_model=512, num_layers=4, num_heads=16, d_ff=1344, rope_theta=10000.0
    ),
    "gpt2-small-like": _gpt2_like(768, 12, 12),
    "gpt2-medium-like": _gpt2_like(1024, 24, 16),
    "gpt2-large-like": _gpt2_like(1280, 36, 20),
    "gpt2-xl-like": _gpt2_like(1600, 48, 25),
}
