"""The from-scratch Transformer LM: stateless math in ``functional``, the kernel choice in ``dispatch``, stateful
modules in ``layers``, ``attention`` and ``transformer``, the model's fields declared once in ``args``
(``ModelArgs``), named shapes in ``presets`` and parameter/FLOP accounting in ``accounting``.
"""

from cs336_lm.nn import functional
from cs336_lm.nn.args import ModelArgs
from cs336_lm.nn.attention import ATTENTION_BACKENDS, MultiHeadSelfAttention
from cs336_lm.nn.dispatch import KERNEL_BACKENDS
from cs336_lm.nn.layers import AddRMSNorm, Embedding, Linear, RMSNorm, RotaryPositionalEmbedding, SwiGLU
from cs336_lm.nn.presets import PRESETS
from cs336_lm.nn.transformer import TransformerBlock, TransformerLM

__all__ = [
    "ATTENTION_BACKENDS",
    "KERNEL_BACKENDS",
    "PRESETS",
    "AddRMSNorm",
    "Embedding",
    "Linear",
    "ModelArgs",
    "MultiHeadSelfAttention",
    "RMSNorm",
    "RotaryPositionalEmbedding",
    "SwiGLU",
    "TransformerBlock",
    "TransformerLM",
    "functional",
]
