"""Sampling filters: pure functions from next-token logits to a filtered distribution, and the sampler.

A decode step turns the logits of the last position into one token id per row. The filters are applied in a
fixed order — temperature, then top-k, then top-p — each returning new logits with removed tokens set to
``-inf``, so they compose and can be tested one by one against hand-computed distributions. Temperature 0
means greedy decoding (``argmax``), never a division by zero. Ties are broken toward the lower token id,
so every filter keeps a well-defined set of distinct tokens. Randomness comes only from explicit
``torch.Generator`` objects, one per row, so a seeded run is reproducible and a row sampled in a batch
draws exactly the numbers it would draw alone.
"""

import math
from collections.abc import Sequence

import torch
from jaxtyping import Float, Int

from cs336_lm.errors import GenerationError

# The bounds below keep every distribution sampled finite. The filters scale a float32 logit by at most
# 1/T · max(R, 1/R) <= 1e6 · 1e2, so every logit below ~3e30 in magnitude stays finite (a model's are tens or
# hundreds), and no setting rounds to 0 or to infinity in float32. Outside them, e.g. R = 1e-39 (subnormal in
# float32), one logit becomes infinite and its softmax NaN: torch.multinomial refuses it.
MIN_TEMPERATURE = 1e-6
"""The smallest temperature above 0: below it sampling is greedy in all but name, and ``logits / T`` can overflow
float32 (or divide by a temperature that rounds to 0) into NaN probabilities."""
MAX_TEMPERATURE = 1e6
"""The largest temperature: beyond it every token is as likely as any other anyway."""
MIN_REPETITION_PENALTY, MAX_REPETITION_PENALTY = 1e-2, 1e2
"""A seen token's logit is scaled by at most 100 either way (CTRL used 1.2)."""


def _is_number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def sampling_problem(
    temperature: float, top_k: int | None = None, top_p: float | None = None, repetition_penalty: float = 1.0
) -> tuple[str, str] | None:
    """``(setting, message)`` for the first setting that cannot be sampled, else None: temperature 0 or in
    [1e-6, 1e6], top_k an integer >= 1, 0 < top_p <= 1, repetition_penalty in [0.01, 100], all finite numbers.

    Example: ``sampling_problem(0.8, top_p=0)`` → ``("top_p", "top_p must be in (0, 1], got 0")``.
    """
    if not (_is_number(temperature) and math.isfinite(temperature) and 0 <= temperature <= MAX_TEMPERATURE):
        return "temperature", (
            f"temperature must be a finite number from 0 (greedy) to {MAX_TEMPERATURE:,.0f}, got {temperature!r}"
        )
    if 0 < temperature < MIN_TEMPERATURE:
        return "temperature", f"temperature must be 0 (greedy) or at least {MIN_TEMPERATURE:g}, got {temperature!r}"
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        return "top_k", f"top_k must be an integer >= 1, got {top_k!r}"
    if top_p is not None and not (_is_number(top_p) and 0 < top_p <= 1):
        return "top_p", f"top_p must be in (0, 1], got {top_p!r}"
    penalty = repetition_penalty
    if not (_is_number(penalty) and MIN_REPETITION_PENALTY <= penalty <= MAX_REPETITION_PENALTY):
        return "repetition_penalty", (
            f"repetition_penalty must be a number from {MIN_REPETITION_PENALTY:g} to {MAX_REPETITION_PENALTY:g} "
            f"(1 is off), got {penalty!r}"
        )
    return None


def validate_sampling(
    temperature: float, top_k: int | None, top_p: float | None, repetition_penalty: float = 1.0
) -> None:
    """Raise ``GenerationError`` with the message of ``sampling_problem``, if it finds one."""
    problem = sampling_problem(temperature, top_k, top_p, repetition_penalty)
    if problem is not None:
        raise GenerationError(problem[1])


def apply_temperature(logits: Float[torch.Tensor, "batch vocab_size"], temperature: float) -> torch.Tensor:
    """``logits / T``; for ``T == 0`` only the argmax (lowest id among ties) survives, the rest become ``-inf``.

    Example: logits ``[1, 3, 3]`` with T=0 → ``[-inf, 3, -inf]``; with T=2 → ``[0.5, 1.5, 1.5]``.
    """
    if temperature == 0:
        best = logits.argmax(dim=-1, keepdim=True)  # torch.argmax returns the first maximum
        return torch.full_like(logits, -math.inf).scatter(-1, best, logits.gather(-1, best))
    return logits / temperature


def top_k_filter(logits: Float[torch.Tensor, "batch vocab_size"], k: int) -> torch.Tensor:
    """Keep exactly the ``k`` largest logits of each row (ties at the k-th value go to the lower ids).

    Example: ``[2, 5, 5, 1]`` with k=2 → ``[-inf, 5, 5, -inf]``; ``[5, 2, 2, 2]`` with k=2 → ``[5, 2, -inf, -inf]``.
    """
    if k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (batch, 1): the k-th largest value
    above = logits > kth
    tied = logits == kth
    # Among the tokens tied at the k-th value, keep the first (k - #above) in id order.
    room = k - above.sum(dim=-1, keepdim=True)
    keep = above | (tied & (tied.cumsum(dim=-1) <= room))
    return logits.masked_fill(~keep, -math.inf)


def top_p_filter(logits: Float[torch.Tensor, "batch vocab_size"], p: float) -> torch.Tensor:
    """Nucleus filter: keep the smallest set of most likely tokens whose probability sum reaches ``p``.

    Tokens are ranked by probability (ties by id); a token is kept when the mass of the tokens ranked above it
    is still below ``p``, so the most likely token is always kept. Example: probabilities ``[0.1, 0.6, 0.3]``
    with p=0.65 → tokens 1 and 2 stay (0.6 < 0.65, then 0.9 ≥ 0.65); with p=0.5 → token 1 alone.
    """
    if p >= 1:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True, stable=True)
    probs = torch.softmax(sorted_logits.float(), dim=-1)
    mass_above = probs.cumsum(dim=-1) - probs
    keep_sorted = mass_above < p
    keep_sorted[..., 0] = True
    keep = torch.empty_like(keep_sorted).scatter_(-1, order, keep_sorted)  # back to vocabulary order
    return logits.masked_fill(~keep, -math.inf)


def apply_repetition_penalty(
    logits: Float[torch.Tensor, "... vocab_size"], seen: Int[torch.Tensor, " n"], penalty: float
) -> torch.Tensor:
    """CTRL's repetition penalty (Keskar et al. 2019): the logit of every id in ``seen`` is divided by ``penalty``
    when positive and multiplied by it when negative, so ``penalty > 1`` makes repeats less likely.

    Example: logits ``[2, -2, 1]``, seen ``[0, 1]``, penalty 2 → ``[1, -4, 1]``.
    """
    if penalty == 1 or seen.numel() == 0:
        return logits
    ids = seen.unique().to(logits.device)
    picked = logits[..., ids]
    out = logits.clone()
    out[..., ids] = torch.where(picked > 0, picked / penalty, picked * penalty)
    return out


def filter_logits(
    logits: Float[torch.Tensor, "batch vocab_size"],
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> torch.Tensor:
    """Apply temperature → top-k → top-p; ``softmax`` of the result is the distribution that is sampled."""
    out = apply_temperature(logits.float(), temperature)
    if top_k is not None:
        out = top_k_filter(out, top_k)
    if top_p is not None:
        out = top_p_filter(out, top_p)
    return out


def make_generators(seed: int | None, n: int, device: torch.device | str = "cpu") -> list[torch.Generator] | None:
    """One generator per row, row ``i`` seeded with ``seed + i``; ``None`` (torch's global RNG) without a seed."""
    if seed is None:
        return None
    gens = []
    for i in range(n):
        g = torch.Generator(device=device)
        g.manual_seed(seed + i)
        gens.append(g)
    return gens


def sample_next(
    logits: Float[torch.Tensor, "batch vocab_size"],
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generators: Sequence[torch.Generator] | None = None,
) -> Int[torch.Tensor, " batch"]:
    """Draw one token id per row from ``softmax(filter_logits(logits))``; greedy ``argmax`` when temperature is 0.

    With ``generators`` row ``i`` draws from ``generators[i]`` only, so its result does not depend on the
    other rows of the batch.
    """
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(filter_logits(logits, temperature, top_k, top_p), dim=-1)
    if generators is None:
        return torch.multinomial(probs, 1).squeeze(-1)
    rows = [torch.multinomial(probs[i], 1, generator=g) for i, g in enumerate(generators)]
    return torch.cat(rows)
