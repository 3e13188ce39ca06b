"""The model's fields, declared once: ``ModelArgs`` is everything that determines a ``TransformerLM``.

Every other place that speaks of the model reads these fields from here: the presets are instances
(``cs336_lm.nn.presets``), accounting takes one (``cs336_lm.nn.accounting``), the config's ``model`` section is
built from this class (``cs336_lm.config`` adds only ``preset``), and HF import/export map its fields to and from
a ``config.json`` in one table each (``cs336_lm.interop.hf_llama.HF_FIELDS``). Defaults and the checks that
involve several fields live here, in ``__post_init__``, so a model, a config and an import all refuse the same
shapes with the same words.

Adding a field: declare it below with its docstring, use it in the module it changes, and say in the HF table
what it maps to (or that HF has no such field); ``tests/interop/test_hf_fields.py`` fails until the table says so.

``ModelArgs`` unpacks as keyword arguments (``TransformerLM(**args)``, ``{**PRESETS["debug"], "d_ff": 256}``): the
fields without a default and those that differ from their default.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cs336_lm.nn.attention import ATTENTION_BACKENDS
from cs336_lm.nn.dispatch import KERNEL_BACKENDS
from cs336_lm.nn.layers import FFN_KINDS

NORMS = ("pre", "post", "none")
"""Where a block's RMSNorms sit (``ModelArgs.norm``)."""
POSITIONS = ("rope", "nope")
"""How attention learns order (``ModelArgs.position``)."""

RUN_TIME_FIELDS = ("attention", "kernels")
"""Fields that choose how the ops run, not what they compute: the same weights load under any of their values."""


@dataclass(frozen=True)
class ModelArgs:
    """The shape of a decoder-only Transformer LM and how its ops run (the constructor of ``TransformerLM``)."""

    vocab_size: int
    """Number of token ids; must equal the tokenizer's vocabulary size."""
    context_length: int
    """Longest sequence the model sees (also the size of RoPE's table); training windows are exactly this long."""
    d_model: int
    """Width of the residual stream."""
    num_layers: int
    """Number of Transformer blocks."""
    num_heads: int
    """Query heads per block; must divide ``d_model``, and ``d_model / num_heads`` (a head's width) must be even."""
    d_ff: int
    """Inner width of the feed-forward layer: about 8/3 · d_model (a multiple of 64) for SwiGLU. It is taken as given
    whatever ``ffn`` is, so a preset's d_ff stays what it is under ``ffn: silu`` or ``relu2`` (two matrices instead
    of three: 2/3 of the FFN's parameters). To compare at equal parameters, as the CS336 handout does, set
    ``d_ff = 4 · d_model`` for the non-gated kinds (2 · d · 4d = 3 · d · 8d/3)."""
    rope_theta: float = 10000.0
    """RoPE base θ: pair k of a head rotates by pos · θ^(−2k/d_head). Unused when ``position`` is ``nope``."""
    num_kv_heads: int | None = None
    """Key/value heads (grouped-query attention); must divide ``num_heads``. None: as many as ``num_heads``."""
    attention: str = "reference"
    """``reference`` (our softmax attention, from scratch) or ``sdpa`` (torch's fused kernel, same math)."""
    kernels: str = "auto"
    """Softmax/RMSNorm backend: ``auto`` (Triton on CUDA, else torch), ``triton`` or ``torch``."""

    # ---- recipe switches: the defaults are the Llama block (HF ``LlamaForCausalLM``-exact) --------------------------
    norm: str = "pre"
    """Where each block's RMSNorms sit. ``pre``: ``h = x + f(RMSNorm(x))`` (Llama), a final RMSNorm before the head.
    ``post``: ``h = RMSNorm(x + f(x))`` (the original Transformer; the CS336 post-norm ablation); the final RMSNorm
    is kept, so only the blocks change and the state-dict keys are pre-norm's. ``none``: no RMSNorm at all, the
    final one included (the CS336 "remove RMSNorm" ablation removes every one); the state dict then has no
    ``ln1``, ``ln2`` or ``ln_final`` weights."""
    position: str = "rope"
    """``rope``: rotary position embeddings on queries and keys. ``nope``: no position encoding at all; the causal
    mask alone tells a token where it is (Kazemnejad et al. 2023; the CS336 NoPE ablation)."""
    ffn: str = "swiglu"
    """Feed-forward kind. ``swiglu``: ``W2(SiLU(W1 x) ⊙ W3 x)`` (three matrices). ``silu``: ``W2 SiLU(W1 x)`` and
    ``relu2``: ``W2 ReLU(W1 x)²`` (modded-nanogpt) are non-gated: two matrices, no ``w3`` (see ``d_ff`` for
    matching parameters)."""
    qk_norm: bool = False
    """RMSNorm over each head's queries and over its keys, after the projections and before RoPE, as Qwen3 does:
    two gains of width d_head per layer (``attn.q_norm.weight``, ``attn.k_norm.weight``), shared by the heads."""
    tie_embeddings: bool = False
    """The output layer shares the embedding matrix: ``lm_head.weight`` is ``token_embeddings.weight`` (one
    parameter under both state-dict keys; optimizers see it once). The shared matrix is initialised as the head is,
    N(0, 2/(d_model + vocab_size)) cut at ±3σ (GPT-2 uses 0.02): rows of N(0, 1) would give initial logits of
    std √d_model."""
    logit_softcap: float | None = None
    """When set (a number > 0), the logits become ``cap · tanh(logits / cap)``, bounded within ±cap (Gemma 2,
    modded-nanogpt). None: the logits as the head gives them."""

    def __post_init__(self) -> None:
        check_fields(self)

    # ---- derived sizes ----------------------------------------------------------------------------------------

    @property
    def kv_heads(self) -> int:
        """Key/value heads: ``num_kv_heads``, or ``num_heads`` when it is None."""
        return self.num_heads if self.num_kv_heads is None else self.num_kv_heads

    @property
    def d_head(self) -> int:
        """Width of one attention head."""
        return self.d_model // self.num_heads

    @property
    def kv_width(self) -> int:
        """Width of the key and value projections: ``num_kv_heads · d_head``."""
        return self.kv_heads * self.d_head

    # ---- conversions ------------------------------------------------------------------------------------------

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | ModelArgs) -> ModelArgs:
        """The args among ``values`` (a saved config's model section, a preset with overrides); other keys, such
        as a config's ``preset``, are ignored."""
        values = dict(values)
        return cls(**{name: values[name] for name in cls.field_names() if name in values})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def architecture(self) -> dict[str, Any]:
        """The fields that make the model what it is (its weights' shapes and meaning), ``num_kv_heads`` written
        out: everything but ``RUN_TIME_FIELDS``, which a resumed or fine-tuned run may change."""
        fields = {k: v for k, v in self.to_dict().items() if k not in RUN_TIME_FIELDS}
        return fields | {"num_kv_heads": self.kv_heads}

    def replace(self, **changes: Any) -> ModelArgs:
        """A copy with ``changes`` (checked again)."""
        return dataclasses.replace(self, **changes)

    # ``**args`` unpacks as keywords: the fields without a default, and those set to something else than theirs,
    # so that ``TransformerLM(**PRESETS["debug"], attention="sdpa")`` adds a setting instead of repeating one
    def keys(self) -> tuple[str, ...]:
        return tuple(
            f.name
            for f in dataclasses.fields(self)
            if f.default is dataclasses.MISSING or getattr(self, f.name) != f.default
        )

    def __contains__(self, name: object) -> bool:
        return name in self.keys()

    def __getitem__(self, name: str) -> Any:
        if name not in self.field_names():
            raise KeyError(name)
        return getattr(self, name)


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}{hint}")


def check_fields(m: Any, prefix: str = "") -> None:
    """Raise ``ValueError`` naming the first field of ``m`` (a ``ModelArgs``, or a config section with the same
    fields; named ``prefix + field``) whose value no model can have."""

    def name(field: str) -> str:
        return prefix + field

    for field in ("vocab_size", "context_length", "d_model", "num_layers", "num_heads", "num_kv_heads", "d_ff"):
        value = getattr(m, field)
        if field == "num_kv_heads" and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name(field)} must be positive, got {value!r}")
    theta = m.rope_theta
    if isinstance(theta, bool) or not isinstance(theta, int | float) or not math.isfinite(theta) or theta <= 0:
        raise ValueError(f"{name('rope_theta')} must be a finite number > 0, got {theta!r}")
    kv_heads = m.num_heads if m.num_kv_heads is None else m.num_kv_heads
    if m.d_model % m.num_heads:
        raise ValueError(f"{name('d_model')} ({m.d_model}) must be divisible by {name('num_heads')} ({m.num_heads})")
    if m.num_heads % kv_heads:
        raise ValueError(
            f"{name('num_heads')} ({m.num_heads}) must be a multiple of {name('num_kv_heads')} ({kv_heads})"
        )
    _check_choice(name("position"), m.position, POSITIONS)
    if m.position == "rope" and (m.d_model // m.num_heads) % 2:
        raise ValueError(f"{name('d_model')} / {name('num_heads')} = {m.d_model // m.num_heads} must be even for RoPE")
    _check_choice(name("attention"), m.attention, ATTENTION_BACKENDS)
    _check_choice(name("kernels"), m.kernels, KERNEL_BACKENDS)
    _check_choice(name("norm"), m.norm, NORMS)
    _check_choice(name("ffn"), m.ffn, FFN_KINDS)
    for field in ("qk_norm", "tie_embeddings"):
        if not isinstance(getattr(m, field), bool):
            raise ValueError(f"{name(field)} must be true or false, got {getattr(m, field)!r}")
    cap = m.logit_softcap
    if cap is not None and (
        isinstance(cap, bool) or not isinstance(cap, int | float) or not math.isfinite(cap) or cap <= 0
    ):
        raise ValueError(f"{name('logit_softcap')} must be a finite number > 0 (or null: no cap), got {cap!r}")
