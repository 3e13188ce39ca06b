"""The from-scratch Transformer LM: stateless math in ``functional``, stateful modules in ``layers``,
``attention`` and ``transformer``, named shapes in ``presets`` and parameter/FLOP accounting in
``accounting``.

``functional`` is imported first because ``cs336_lm.kernels`` (imported by the modules) needs it.
"""

from cs336_lm.nn import functional
from cs336_lm.nn.attention import MultiHeadSelfAttention
from cs336_lm.nn.layers import Embedding, Linear, RMSNorm, RotaryPositionalEmbedding, SwiGLU
from cs336_lm.nn.presets import PRESETS
from cs336_lm.nn.transformer import TransformerBlock, TransformerLM

__all__ = [
    "PRESETS",
    "Embedding",
    "Linear",
    "MultiHeadSelfAttention",
    "RMSNorm",
    "RotaryPositionalEmbedding",
    "SwiGLU",
    "TransformerBlock",
    "TransformerLM",
    "functional",
]
