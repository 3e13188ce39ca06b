"""Model shapes from a parameter count: the rule an IsoFLOP study uses to turn "a model of about N parameters"
into a ``ModelArgs``.

N is the *non-embedding* count (``cs336_lm.nn.accounting.param_counts(...)["non_embedding"]``): every matrix a
token's forward multiplies by, the LM head included, the embedding lookup (no FLOPs) left out. That is the N of
"FLOPs ≈ 6·N per token", so N and the FLOP budget speak of the same weights.

The rule (``shape_for_params``), for a target N and a base shape whose vocabulary, context, recipe switches and
backends are kept:

* heads are ``HEAD_WIDTH`` (32) wide, so ``num_heads = d_model / 32`` and ``d_model`` is a multiple of 32;
  ``num_kv_heads`` is unset (as many as ``num_heads``);
* ``d_ff = 3 · d_model`` (configs/demo.yaml's ratio; SwiGLU's 8/3 rounded up to keep ``d_ff`` a multiple of 32);
* the aspect ratio ``d_model / num_layers`` stays within [16, 64] around ``ASPECT`` = 32 (the demo's 128 / 4), so
  small models are shallow and wide ones deeper, as in Kaplan et al. (2020), where loss depends little on the
  aspect ratio over this range;
* of all such (d_model, num_layers) pairs, those whose N is within ``TOLERANCE`` (15%) of the target are
  candidates, and the one with the aspect ratio nearest 32 wins (then the N nearest the target); when no pair comes
  that close, the pair whose N is nearest in log scale.

Worked example, vocabulary 2048, context 256: 1.0e6 → d_model 128, 4 layers (N = 1,115,264); 3e5 → d_model 64,
3 layers (N = 291,264); anything under 85,000 → d_model 32, 1 layer (N = 78,944, the smallest shape: at this
vocabulary the LM head alone is 65,536 of it).
"""

from __future__ import annotations

import math
from functools import lru_cache

from cs336_lm.nn import ModelArgs
from cs336_lm.nn.accounting import param_counts

HEAD_WIDTH = 32
"""Width of every attention head in a planned shape."""
ASPECT = 32
"""Preferred ``d_model / num_layers``."""
ASPECT_RANGE = (16, 64)
"""Allowed ``d_model / num_layers`` (inclusive)."""
FF_RATIO = 3
"""``d_ff / d_model``."""
TOLERANCE = 1.15
"""A shape is a candidate for a target N when its N is within this factor of it."""
MAX_D_MODEL = 2048


def non_embedding_params(args: ModelArgs) -> int:
    """N of the scaling laws: all parameters but the token embeddings (see the module docstring)."""
    return param_counts(args)["non_embedding"]


def shape(base: ModelArgs, d_model: int, num_layers: int) -> ModelArgs:
    """``base`` with the rule's width, depth, heads and FFN width (other fields kept)."""
    return base.replace(
        d_model=d_model,
        num_layers=num_layers,
        num_heads=d_model // HEAD_WIDTH,
        num_kv_heads=None,
        d_ff=FF_RATIO * d_model,
    )


@lru_cache(maxsize=64)
def ladder(base: ModelArgs) -> tuple[ModelArgs, ...]:
    """Every shape the rule allows for ``base``'s vocabulary and context, smallest N first (one per N)."""
    found: dict[int, ModelArgs] = {}
    for d_model in range(HEAD_WIDTH, MAX_D_MODEL + 1, HEAD_WIDTH):
        low, high = ASPECT_RANGE
        for layers in range(max(1, math.ceil(d_model / high)), d_model // low + 1):
            s = shape(base, d_model, layers)
            n = non_embedding_params(s)
            if n not in found or _aspect_cost(s) < _aspect_cost(found[n]):
                found[n] = s
    return tuple(found[n] for n in sorted(found))


def _aspect_cost(s: ModelArgs) -> float:
    return abs(math.log(s.d_model / s.num_layers / ASPECT))


def shape_for_params(target: float, base: ModelArgs) -> ModelArgs:
    """The allowed shape whose non-embedding N is closest to ``target`` in log scale (module docstring)."""
    if not target > 0:
        raise ValueError(f"a parameter count must be > 0, got {target!r}")

    def distance(s: ModelArgs) -> float:
        return abs(math.log(non_embedding_params(s) / target))

    close = [s for s in ladder(base) if distance(s) <= math.log(TOLERANCE)]
    if close:
        return min(close, key=lambda s: (round(_aspect_cost(s), 9), distance(s)))
    return min(ladder(base), key=distance)


def describe(s: ModelArgs) -> str:
    """``d128 L4 h4 ff384``: a shape in a table cell."""
    return f"d{s.d_model} L{s.num_layers} h{s.num_heads} ff{s.d_ff}"
