"""Log-probabilities of tokens under the model's distribution: ``TokenLogprob`` and ``token_logprobs``.

A token's log-probability is ``log_softmax(logits)[token]`` of the logits the model produced for its position —
before temperature, top-k, top-p and the repetition penalty, which shape how the next token is drawn, not what the
model predicts (OpenAI and vLLM report them so too). With it come the ``n`` most likely tokens of that position,
most likely first: what an OpenAI ``logprobs: n`` answer calls ``top_logprobs``. The engine computes them only for
requests that ask (``SamplingParams.logprobs`` for sampled tokens, ``prompt_logprobs`` for the prompt's); a caller
formats them for its protocol.

>>> rows = torch.tensor([[0.0, 1.0, 2.0]])
>>> entry = token_logprobs(rows, [0], top_n=2)[0]
>>> entry.token, round(entry.logprob, 4), [(t, round(lp, 4)) for t, lp in entry.top]
(0, -2.4076, [(2, -0.4076), (1, -1.4076)])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

MAX_TOP_LOGPROBS = 20
"""The most alternatives per position a request may ask for (OpenAI's chat limit; its legacy completions allow 5)."""


@dataclass(frozen=True)
class TokenLogprob:
    """One position's token, its log-probability, and the ``n`` most likely tokens of that position (most likely
    first), each ``(token id, log-probability)``."""

    token: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()


def token_logprobs(
    logits: Float[Tensor, "rows vocab_size"], tokens: Sequence[int], top_n: int | Sequence[int] = 0
) -> list[TokenLogprob]:
    """``TokenLogprob`` of ``tokens[i]`` under row ``i`` of ``logits``, with the ``top_n`` best of that row (one
    count for all rows, or one per row). The log-softmax runs in at least float32: ``x − logsumexp(x)``."""
    counts = [top_n] * len(tokens) if isinstance(top_n, int) else list(top_n)
    with torch.inference_mode():
        rows = logits.to(torch.promote_types(logits.dtype, torch.float32))
        logprobs = rows - torch.logsumexp(rows, dim=-1, keepdim=True)  # (rows, vocab_size)
        index = torch.tensor(list(tokens), dtype=torch.long, device=rows.device)
        chosen = logprobs.gather(-1, index[:, None])[:, 0].tolist()  # (rows,)
        widest = max(counts, default=0)
        if widest:
            best_t, order = logprobs.topk(min(widest, logprobs.shape[-1]), dim=-1)  # (rows, widest), best first
            best, best_ids = best_t.tolist(), order.tolist()
    out = []
    for i, (token, logprob, n) in enumerate(zip(tokens, chosen, counts, strict=True)):
        top = tuple(zip(best_ids[i][:n], best[i][:n], strict=True)) if n else ()
        out.append(TokenLogprob(int(token), logprob, top))
    return out
