"""Stateless math of the Transformer LM, written from scratch on PyTorch tensors.

Softmax, log-softmax, SiLU, ReLU², RMSNorm, rotary position embedding, scaled dot-product attention, logit
soft-capping and cross entropy. None of them calls ``torch.nn.functional``. The ops whose autograd graph would
otherwise keep several full-size temporaries (softmax, causal softmax, log-softmax, SiLU, ReLU², RMSNorm, cross
entropy) are ``torch.autograd.Function`` s with a hand-written backward: the forward works in place on one fresh
buffer and saves only what the backward formula needs. Without gradients (evaluation, decoding) the same
forward arithmetic runs without the Function's bookkeeping, so both give bit-identical values. This file is
also the CPU performance path: the kernel dispatch (``cs336_lm.nn.dispatch``) falls back to it whenever
Triton is not used. Half-precision inputs are computed in float32 inside and returned in their own dtype.
"""

import math

import torch
from jaxtyping import Bool, Complex, Float, Int
from torch import Tensor

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _float32(x: Tensor) -> Tensor:
    """``x`` in float32 when it is float16/bfloat16 (a new tensor), else ``x`` itself (float32/float64)."""
    return x.float() if x.dtype in _LOW_PRECISION else x


def _shifted(x: Tensor, dim: int) -> Tensor:
    """A new float32 (or float64) tensor ``x − max(x)`` along ``dim``, free to be overwritten."""
    if x.dtype in _LOW_PRECISION:
        z = x.float()
        return z.sub_(z.amax(dim, keepdim=True))
    return x - x.amax(dim, keepdim=True)


def _softmax_backward(grad: Tensor, y: Tensor, dim: int) -> Tensor:
    """dL/dx = y ⊙ (g − Σ_j g_j y_j), computed as (g ⊙ y) − y · Σ(g ⊙ y) with one in-place update."""
    gy = _float32(grad) * _float32(y)
    return gy.addcmul_(y, gy.sum(dim, keepdim=True), value=-1)


def _softmax_value(x: Tensor, dim: int) -> Tensor:
    z = _shifted(x, dim).exp_()
    return z.div_(z.sum(dim, keepdim=True)).to(x.dtype)


class _Softmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, dim: int) -> Tensor:
        y = _softmax_value(x, dim)
        ctx.save_for_backward(y)
        ctx.dim = dim
        return y

    @staticmethod
    def backward(ctx, grad: Tensor):
        (y,) = ctx.saved_tensors
        return _softmax_backward(grad, y, ctx.dim).to(y.dtype), None


def softmax(x: Float[Tensor, "..."], dim: int = -1) -> Float[Tensor, "..."]:
    """softmax(x)_i = exp(x_i − m) / Σ_j exp(x_j − m) with m = max_j x_j along ``dim``.

    Subtracting the maximum keeps it exact for logits of any size: ``softmax([1e4, 1e4 - 1])`` is
    ``[0.7311, 0.2689]``. A slice whose entries are all −inf gives NaN.
    """
    if not torch.is_grad_enabled():
        return _softmax_value(x, dim)
    return _Softmax.apply(x, dim)


def _causal_softmax_value(scores: Tensor, scale: float, q_offset: int) -> Tensor:
    q_len, k_len = scores.shape[-2:]
    if q_offset + 1 >= k_len:  # every query sees every key (a decoding step): nothing to mask, no copy first
        z = _float32(scores)
        fresh = z is not scores
    else:
        future = torch.ones(q_len, k_len, dtype=torch.bool, device=scores.device).triu_(q_offset + 1)  # (q, k)
        # (..., q, k): the one fresh buffer, then in place
        if scores.dtype in _LOW_PRECISION:
            z = scores.float().masked_fill_(future, -math.inf)
        else:
            z = scores.masked_fill(future, -math.inf)
        fresh = True
    m = z.amax(-1, keepdim=True)  # max over visible keys (key 0 is always visible when q_offset ≥ 0)
    z = torch.add(m.mul_(-scale), z, alpha=scale, out=z if fresh else None)  # z = scale · (z − m) in one pass
    z.exp_()
    # normalise, writing straight into the output dtype (no separate cast pass for bf16/fp16)
    return torch.div(z, z.sum(-1, keepdim=True), out=z if z.dtype == scores.dtype else torch.empty_like(scores))


class _CausalSoftmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores: Tensor, scale: float, q_offset: int) -> Tensor:
        y = _causal_softmax_value(scores, scale, q_offset)
        ctx.save_for_backward(y)
        ctx.scale = scale
        return y

    @staticmethod
    def backward(ctx, grad: Tensor):
        (y,) = ctx.saved_tensors
        # scale · y ⊙ (g − Σ g y): t = scale·g·y, then t −= y · Σ t. Masked entries have y = 0, so grad 0.
        if y.dtype in _LOW_PRECISION:  # float32 inside; the last step writes the output dtype directly
            t = y.float().mul_(grad)
            t.addcmul_(y, t.sum(-1, keepdim=True), value=-1)
            return torch.mul(t, ctx.scale, out=torch.empty_like(y)), None, None
        t = torch.addcmul(grad.new_zeros(()), grad, y, value=ctx.scale)
        return t.addcmul_(y, t.sum(-1, keepdim=True), value=-1), None, None


def causal_mask(num_queries: int, num_keys: int, q_offset: int = 0, device=None) -> Bool[Tensor, "q k"]:
    """``mask[i, j] = j ≤ i + q_offset`` (True = may attend): query i sits at key position ``q_offset + i``.

    ``causal_mask(2, 3, 1)`` is ``[[T, T, F], [T, T, T]]``.
    """
    ones = torch.ones(num_queries, num_keys, dtype=torch.bool, device=device)
    return ones.tril_(q_offset)


def causal_softmax(scores: Float[Tensor, "... q k"], scale: float, q_offset: int = 0) -> Float[Tensor, "... q k"]:
    """``softmax(scale · scores)`` over keys with key j hidden from query i when ``j > i + q_offset``.

    ``scale > 0`` (usually ``1/sqrt(d_head)``) and ``q_offset ≥ 0``, so every query sees key 0.
    One fresh buffer, written in place (scale, mask fill, softmax); the backward needs only the output.
    ``q_offset`` is the number of keys before query 0 (the KV-cache length when decoding).
    """
    if not torch.is_grad_enabled():
        return _causal_softmax_value(scores, scale, q_offset)
    return _CausalSoftmax.apply(scores, scale, q_offset)


class _LogSoftmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, dim: int) -> Tensor:
        z = _shifted(x, dim)
        z.sub_(z.exp().sum(dim, keepdim=True).log_())
        y = z.to(x.dtype)
        ctx.save_for_backward(y)
        ctx.dim = dim
        return y

    @staticmethod
    def backward(ctx, grad: Tensor):
        (y,) = ctx.saved_tensors
        g = _float32(grad)
        # d/dx log_softmax: g − softmax(x) · Σ g
        return torch.addcmul(g, y.float().exp(), g.sum(ctx.dim, keepdim=True), value=-1).to(y.dtype), None


def log_softmax(x: Float[Tensor, "..."], dim: int = -1) -> Float[Tensor, "..."]:
    """log softmax(x)_i = (x_i − m) − log Σ_j exp(x_j − m), m = max_j x_j, stable for any logit size."""
    return _LogSoftmax.apply(x, dim)


class _SiLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        s = torch.sigmoid(x)
        y = x * s
        ctx.save_for_backward(s, y)  # y is kept anyway by whatever multiplies it next
        return y

    @staticmethod
    def backward(ctx, grad: Tensor):
        s, y = ctx.saved_tensors
        # d/dx x·σ(x) = σ + x·σ·(1 − σ) = s + y − y·s
        return torch.addcmul(s, y, s, value=-1).add_(y).mul_(grad)


def silu(x: Float[Tensor, "..."]) -> Float[Tensor, "..."]:
    """SiLU (swish): ``x · σ(x)`` with σ the logistic sigmoid; ``silu(0) = 0``, ``silu(x) → x`` for large x."""
    if not torch.is_grad_enabled():
        return x * torch.sigmoid(x)
    return _SiLU.apply(x)


class _ReLUSquared(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        r = x.clamp_min(0)
        ctx.save_for_backward(r)  # the one tensor the backward needs (autograd would keep x and max(x, 0))
        return r.square()

    @staticmethod
    def backward(ctx, grad: Tensor):
        (r,) = ctx.saved_tensors
        return (r * 2).mul_(grad)  # d/dx max(x, 0)² = 2·max(x, 0)


def relu_squared(x: Float[Tensor, "..."]) -> Float[Tensor, "..."]:
    """ReLU²: ``max(x, 0)²`` (So et al. 2021, Primer; modded-nanogpt's feed-forward); ``[-1, 0, 2] → [0, 0, 4]``."""
    if not torch.is_grad_enabled():
        return x.clamp_min(0).square()
    return _ReLUSquared.apply(x)


def softcap(logits: Float[Tensor, "..."], cap: float) -> Float[Tensor, "..."]:
    """Logit soft-capping: ``cap · tanh(logits / cap)``, ≈ the logits where they are small beside ``cap`` and bounded
    within ±cap (Gemma 2; modded-nanogpt)."""
    return torch.tanh(logits / cap) * cap


def _rms_norm_value(x: Tensor, weight: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """``(rms_norm(x) · weight, r)`` with ``r = 1 / sqrt(mean(x²) + eps)`` per row."""
    x32 = _float32(x)
    # r = 1 / sqrt(mean(x²) + eps), from the 2-norm: one read of x, no temporary
    r = torch.linalg.vector_norm(x32, dim=-1, keepdim=True).square_().div_(x.shape[-1]).add_(eps).rsqrt_()
    y = torch.mul(x32, r).mul_(_float32(weight))
    return (y if y.dtype == x.dtype else y.to(x.dtype)), r


class _RMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, eps: float) -> Tensor:
        y, r = _rms_norm_value(x, weight, eps)
        ctx.save_for_backward(x, weight, r)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, weight, r = ctx.saved_tensors
        x32, g = _float32(x), _float32(grad)
        n = x32 * r  # (..., d_model) normalised x, recomputed
        gn = g * _float32(weight)  # dL/dn
        grad_weight = None
        if ctx.needs_input_grad[1]:
            grad_weight = (g * n).reshape(-1, x.shape[-1]).sum(0).to(weight.dtype)
        # dL/dx = r · (gn − n · mean(gn ⊙ n))
        dot = torch.linalg.vecdot(gn, n, dim=-1).unsqueeze(-1).div_(x.shape[-1])
        grad_x = gn.addcmul_(n, dot, value=-1).mul_(r).to(x.dtype)
        return grad_x, grad_weight, None


def rms_norm(
    x: Float[Tensor, "... d_model"], weight: Float[Tensor, " d_model"], eps: float = 1e-5
) -> Float[Tensor, "... d_model"]:
    """RMSNorm (Zhang & Sennrich 2019): ``x / sqrt(mean(x²) + eps) · weight`` over the last dim.

    Computed in float32 (float64 stays float64) and returned in the input dtype. The backward keeps
    only x and the per-row ``1/rms``: ``dx = r · (g·w − n · mean(g·w ⊙ n))`` with ``n = x · r``.
    """
    if not torch.is_grad_enabled():
        return _rms_norm_value(x, weight, eps)[0]
    return _RMSNorm.apply(x, weight, eps)


def rope(
    x: Float[Tensor, "... seq d_head"],
    token_positions: Int[Tensor, "... seq"],
    cos: Float[Tensor, "max_seq_len half_d_head"],
    sin: Float[Tensor, "max_seq_len half_d_head"],
) -> Float[Tensor, "... seq d_head"]:
    """Rotary position embedding (Su et al. 2021) on adjacent pairs.

    Pair k of a vector at position p, ``(x[2k], x[2k+1])``, is rotated by the angle ``p · θ^(−2k/d)``:
    ``(a, b) → (a cos − b sin, a sin + b cos)``. ``cos``/``sin`` are tables indexed by position
    (``cos[p, k] = cos(p · θ^(−2k/d))``); ``token_positions`` must broadcast against ``x.shape[:-1]``.
    Written as ``x · cos' + swap(x) · sin'`` where ``swap`` exchanges each pair, ``cos'`` repeats every
    cosine twice and ``sin'`` interleaves ``(−sin, +sin)``: three passes over ``x``. float32/float64 on a CPU
    instead multiply each pair, read as the complex number ``a + ib``, by ``cos + i sin`` (``rope_complex``): one
    pass.
    """
    if rope_is_complex(x):
        return rope_complex(x, rope_rotation(token_positions, cos, sin))
    return rope_rotate(x, *rope_tables(token_positions, cos, sin, x.dtype))


def rope_is_complex(x: Tensor) -> bool:
    """Whether ``rope`` rotates ``x`` as complex numbers: float32/float64 on a CPU, where it is the fastest
    form (torch has no bfloat16 complex type, and ``torch.compile`` on a GPU fuses the real form anyway)."""
    return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)


def rope_rotation(
    token_positions: Int[Tensor, "... seq"],
    cos: Float[Tensor, "max_seq_len half_d_head"],
    sin: Float[Tensor, "max_seq_len half_d_head"],
) -> Complex[Tensor, "... seq half_d_head"]:
    """``cos + i·sin`` at the tokens' positions: the rotation ``rope_complex`` multiplies by."""
    return torch.complex(cos[token_positions], sin[token_positions])


def _as_complex(x: Tensor) -> Tensor:
    """``x`` (..., d) read as (..., d/2) complex numbers ``x[2k] + i·x[2k+1]``, a view where the strides allow."""
    if x.stride(-1) != 1 or x.storage_offset() % 2 or any(stride % 2 for stride in x.stride()[:-1]):
        x = x.contiguous()
    return torch.view_as_complex(x.unflatten(-1, (-1, 2)))


def _rotate_complex(x: Tensor, rotation: Tensor) -> Tensor:
    return torch.view_as_real(_as_complex(x) * rotation).flatten(-2)


class _RopeComplex(torch.autograd.Function):
    """``y = x · r`` on pairs read as complex numbers, ``|r| = 1``; the gradient is ``g · conj(r)`` (turned back)."""

    @staticmethod
    def forward(ctx, x: Tensor, rotation: Tensor) -> Tensor:
        ctx.save_for_backward(rotation)
        return _rotate_complex(x, rotation)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (rotation,) = ctx.saved_tensors
        return _rotate_complex(grad, rotation.conj()), None


def rope_complex(
    x: Float[Tensor, "... seq d_head"], rotation: Complex[Tensor, "... seq half_d_head"]
) -> Float[Tensor, "... seq d_head"]:
    """``rope`` with the rotation given as ``cos + i·sin`` at the tokens' positions (float32/float64 ``x``); no
    gradient flows to ``rotation``."""
    if not torch.is_grad_enabled():
        return _rotate_complex(x, rotation)
    return _RopeComplex.apply(x, rotation)


def rope_tables(
    token_positions: Int[Tensor, "... seq"],
    cos: Float[Tensor, "max_seq_len half_d_head"],
    sin: Float[Tensor, "max_seq_len half_d_head"],
    dtype: torch.dtype,
) -> tuple[Float[Tensor, "... seq d_head"], Float[Tensor, "... seq d_head"]]:
    """``(cos', sin')`` of ``rope`` at these positions, to rotate several tensors (queries and keys) alike."""
    c = cos[token_positions].to(dtype)  # (..., seq, d_head/2)
    s = sin[token_positions].to(dtype)
    cos2 = torch.stack((c, c), dim=-1).flatten(-2)  # (..., seq, d_head): c0 c0 c1 c1 ...
    sin2 = torch.stack((-s, s), dim=-1).flatten(-2)  # (..., seq, d_head): -s0 s0 -s1 s1 ...
    return cos2, sin2


def _swap_pairs(x: Tensor) -> Tensor:
    """``x0 x1 x2 x3 … → x1 x0 x3 x2 …`` along the last dim (a copy)."""
    return x.reshape(*x.shape[:-1], -1, 2).flip(-1).flatten(-2)


class _RopeRotate(torch.autograd.Function):
    """``y = x · cos' + swap(x) · sin'``. A rotation's gradient is the rotation back: ``g · cos' + swap(g · sin')``
    (``swap`` is its own transpose), so only the small tables are saved, not a swapped copy of ``x``."""

    @staticmethod
    def forward(ctx, x: Tensor, cos2: Tensor, sin2: Tensor) -> Tensor:
        ctx.save_for_backward(cos2, sin2)
        return torch.addcmul(x * cos2, _swap_pairs(x), sin2)

    @staticmethod
    def backward(ctx, grad: Tensor):
        cos2, sin2 = ctx.saved_tensors
        return torch.addcmul(_swap_pairs(grad * sin2), grad, cos2), None, None


def rope_rotate(
    x: Float[Tensor, "... seq d_head"], cos2: Float[Tensor, "... seq d_head"], sin2: Float[Tensor, "... seq d_head"]
) -> Float[Tensor, "... seq d_head"]:
    """``x · cos' + swap(x) · sin'`` with the tables of ``rope_tables`` (no gradient flows to the tables)."""
    if not torch.is_grad_enabled():
        return torch.addcmul(x * cos2, _swap_pairs(x), sin2)
    return _RopeRotate.apply(x, cos2, sin2)


def scaled_dot_product_attention(
    q: Float[Tensor, "... q_len d_head"],
    k: Float[Tensor, "... k_len d_head"],
    v: Float[Tensor, "... k_len d_v"],
    mask: Bool[Tensor, "... q_len k_len"] | None = None,
) -> Float[Tensor, "... q_len d_v"]:
    """Attention(Q, K, V) = softmax(Q Kᵀ / sqrt(d_head)) V (Vaswani et al. 2017) for any leading dims.

    ``mask`` broadcasts to ``(..., q_len, k_len)``; True means the query may attend to that key. A query
    with no allowed key gets NaN.
    """
    scores = q @ k.transpose(-2, -1)  # (..., q_len, k_len)
    scores = scores * (1.0 / math.sqrt(q.shape[-1]))
    if mask is not None:
        scores = scores.masked_fill(mask.logical_not(), -math.inf)
    return softmax(scores, dim=-1) @ v


_CROSS_ENTROPY_CHUNK = 1 << 18
"""Logits per chunk of the cross-entropy's passes (1 MiB of float32): a chunk stays in cache across its passes."""
_CROSS_ENTROPY_MAX_CHUNKS = 64


def _row_chunks(rows: int, width: int, device: torch.device) -> range:
    """Start rows of the chunks ``cross_entropy`` walks: on a CPU ~``_CROSS_ENTROPY_CHUNK`` logits each, at most
    ``_CROSS_ENTROPY_MAX_CHUNKS`` of them (so a huge vocabulary does not become thousands of tiny ops); elsewhere
    one chunk of all rows (a GPU streams them at full bandwidth, and each chunk would cost kernel launches)."""
    if device.type != "cpu":
        return range(0, rows, max(1, rows))
    step = max(1, _CROSS_ENTROPY_CHUNK // width, -(-rows // _CROSS_ENTROPY_MAX_CHUNKS))
    return range(0, rows, step)


class _CrossEntropy(torch.autograd.Function):
    """On a CPU both passes walk the logits in row chunks that fit in cache: the forward reads each chunk once from
    memory for its maximum, ``exp(x − max)`` and sum, the backward reads it once more and writes its gradient, and
    no temporary the size of the logits is made. On a GPU one chunk holds all rows."""

    @staticmethod
    def forward(ctx, logits: Tensor, targets: Tensor) -> Tensor:
        x = logits.reshape(-1, logits.shape[-1])  # (N, vocab_size)
        t = targets.reshape(-1, 1)  # (N, 1)
        compute = torch.float64 if x.dtype == torch.float64 else torch.float32
        n, vocab = x.shape
        m = torch.empty(n, 1, dtype=compute, device=x.device)  # row maxima
        total = torch.empty(n, 1, dtype=compute, device=x.device)  # Σ exp(x − m)
        chunks = _row_chunks(n, vocab, x.device)
        scratch = torch.empty(min(chunks.step, n), vocab, dtype=compute, device=x.device)
        for i in chunks:
            rows = x[i : i + chunks.step]
            m_rows = m[i : i + chunks.step]
            m_rows.copy_(rows.amax(-1, keepdim=True))
            e = torch.sub(rows, m_rows, out=scratch[: rows.shape[0]]).exp_()
            torch.sum(e, -1, keepdim=True, out=total[i : i + chunks.step])
        target_logit = x.gather(-1, t).to(compute)  # (N, 1)
        # Both terms are shifted by m, so logits of 1e4 lose no digits to the shift.
        loss = (total.log() - (target_logit - m)).mean()
        ctx.save_for_backward(x, t, m, total)
        ctx.shape = logits.shape
        return loss

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, t, m, total = ctx.saved_tensors
        n, vocab = x.shape
        # dL/dx = (softmax(x) − onehot(t)) · g / N with softmax = exp(x − m) / Σ, chunk by chunk
        g = grad.to(total.dtype) / n
        scale = g / total  # (N, 1)
        out = torch.empty_like(x)
        chunks = _row_chunks(n, vocab, x.device)
        low = x.dtype != total.dtype
        scratch = torch.empty(min(chunks.step, n), vocab, dtype=total.dtype, device=x.device) if low else None
        for i in chunks:
            rows = x[i : i + chunks.step]
            p = scratch[: rows.shape[0]] if scratch is not None else out[i : i + chunks.step]
            torch.sub(rows, m[i : i + chunks.step], out=p).exp_().mul_(scale[i : i + chunks.step])
            p.scatter_add_(-1, t[i : i + chunks.step], (-g).expand(rows.shape[0], 1))  # − g / N at each target
            if low:
                out[i : i + chunks.step].copy_(p)
        return out.view(ctx.shape), None


def cross_entropy(logits: Float[Tensor, "... vocab_size"], targets: Int[Tensor, "..."]) -> Float[Tensor, ""]:
    """Mean over all positions of ``−log softmax(logits)[target] = logsumexp(logits) − logits[target]``.

    The logsumexp subtracts the row maximum first, so logits of 1e4 are exact. Both passes walk the logits in
    cache-sized row chunks: the forward keeps only each row's maximum and sum besides the logits, and the
    backward ``(softmax − onehot) / N`` reads the logits once and writes the gradient. The loss is float32 whatever
    the logits' dtype (float64 for float64 logits).
    """
    return _CrossEntropy.apply(logits, targets)
