"""Triton softmax over the last dim: plain, and scaled + causal-masked for attention scores.

One forward and one backward kernel serve both ops. A program owns a tile of ``rows × BLOCK`` elements
(several short rows per program); a row that fits in one block is read once and written once, a longer
row is handled by looping over blocks with an online max/sum (two reads, one write). Arithmetic is fp32
whatever the input dtype; the output has the input dtype. The causal variant hides key ``j`` from query
``i`` (the row's index within the last-but-one dim) when ``j > i + q_offset`` and never reads those
scores. With ``q_offset >= 0`` key 0 is visible to every query, so no row is fully masked. This module
imports Triton; the model's dispatch (``cs336_lm.nn.dispatch``) imports it only when a Triton path runs.
"""

import torch
import triton
import triton.language as tl
from jaxtyping import Float

from cs336_lm.kernels.launch import LaunchParams, TileShape, rows_and_cols
from cs336_lm.kernels.launch import launch_params as _launch_params

MAX_BLOCK = 16384  # widest row kept in registers in one piece; wider rows loop over blocks
TILE = TileShape(elements=4096, elements_per_warp=512, max_warps=16)  # about 16 fp32 values per thread
MIN_FLOAT32 = tl.constexpr(-3.4028234663852886e38)  # floor for running maxima: padded rows stay NaN-free


def launch_params(n_rows: int, n_cols: int, max_block: int = MAX_BLOCK) -> LaunchParams:
    """The softmax's launch shape, e.g. ``(4096, 123) -> block 128, 32 rows/program, 8 warps`` (``launch``)."""
    return _launch_params(n_rows, n_cols, max_block, TILE)


@triton.jit
def _visible(rows, cols, n_rows, n_cols, q_len, q_offset, CAUSAL: tl.constexpr):
    """``(rows, cols)`` mask of scores that take part: in bounds and, if causal, ``j <= i + q_offset``."""
    mask = (rows < n_rows)[:, None] & (cols < n_cols)[None, :]
    if CAUSAL:
        last_key = rows % q_len + q_offset  # the query's position among the keys
        mask = mask & (cols[None, :] <= last_key[:, None])
    return mask


@triton.jit
def _softmax_fwd_kernel(
    x_ptr,
    y_ptr,
    n_rows,
    n_cols,
    q_len,
    q_offset,
    scale,
    CAUSAL: tl.constexpr,
    ROWS: tl.constexpr,
    BLOCK: tl.constexpr,
    SINGLE_BLOCK: tl.constexpr,
):
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    row_start = rows.to(tl.int64)[:, None] * n_cols
    in_rows = (rows < n_rows)[:, None]
    if SINGLE_BLOCK:
        cols = tl.arange(0, BLOCK)
        mask = _visible(rows, cols, n_rows, n_cols, q_len, q_offset, CAUSAL)
        x = tl.load(x_ptr + row_start + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        x = tl.where(mask, x * scale, float("-inf"))
        row_max = tl.maximum(tl.max(x, axis=1), MIN_FLOAT32)
        e = tl.exp(x - row_max[:, None])
        denom = tl.where(rows < n_rows, tl.sum(e, axis=1), 1.0)
        y = e / denom[:, None]
        tl.store(y_ptr + row_start + cols[None, :], y.to(y_ptr.dtype.element_ty), mask=in_rows & (cols < n_cols))
    else:
        # Pass 1: online max and sum; the running sum is rescaled whenever the running max grows.
        row_max = tl.full([ROWS], MIN_FLOAT32, tl.float32)
        denom = tl.zeros([ROWS], tl.float32)
        for start in range(0, n_cols, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            mask = _visible(rows, cols, n_rows, n_cols, q_len, q_offset, CAUSAL)
            x = tl.load(x_ptr + row_start + cols[None, :], mask=mask, other=0.0).to(tl.float32)
            x = tl.where(mask, x * scale, float("-inf"))
            new_max = tl.maximum(row_max, tl.max(x, axis=1))
            denom = denom * tl.exp(row_max - new_max) + tl.sum(tl.exp(x - new_max[:, None]), axis=1)
            row_max = new_max
        denom = tl.where(rows < n_rows, denom, 1.0)
        # Pass 2: normalise and write; hidden scores are not read and come out as exact zeros.
        for start in range(0, n_cols, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            mask = _visible(rows, cols, n_rows, n_cols, q_len, q_offset, CAUSAL)
            x = tl.load(x_ptr + row_start + cols[None, :], mask=mask, other=0.0).to(tl.float32)
            x = tl.where(mask, x * scale, float("-inf"))
            y = tl.exp(x - row_max[:, None]) / denom[:, None]
            tl.store(y_ptr + row_start + cols[None, :], y.to(y_ptr.dtype.element_ty), mask=in_rows & (cols < n_cols))


@triton.jit
def _softmax_bwd_kernel(
    y_ptr,
    dy_ptr,
    dx_ptr,
    n_rows,
    n_cols,
    q_len,
    q_offset,
    scale,
    CAUSAL: tl.constexpr,
    ROWS: tl.constexpr,
    BLOCK: tl.constexpr,
    SINGLE_BLOCK: tl.constexpr,
):
    # dx = scale · y ⊙ (dy − Σ_j dy_j y_j); hidden positions have y = 0, so they need not be read.
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    row_start = rows.to(tl.int64)[:, None] * n_cols
    in_rows = (rows < n_rows)[:, None]
    if SINGLE_BLOCK:
        cols = tl.arange(0, BLOCK)
        mask = _visible(rows, cols, n_rows, n_cols, q_len, q_offset, CAUSAL)
        y = tl.load(y_ptr + row_start + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(dy_ptr + row_start + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        dot = tl.sum(y * dy, axis=1)
        dx = scale * y * (dy - dot[:, None])
        tl.store(dx_ptr + row_start + cols[None, :], dx.to(dx_ptr.dtype.element_ty), mask=in_rows & (cols < n_cols))
    else:
        dot = tl.zeros([ROWS], tl.float32)
        for start in range(0, n_cols, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            mask = _visible(rows, cols, n_rows, n_cols, q_len, q_offset, CAUSAL)
            y = tl.load(y_ptr + row_start + cols[None, :], mask=mask, other=0.0).to(tl.float32)
            dy = tl.load(dy_ptr + row_start + cols[None, :], mask=mask, other=0.0).to(tl.float32)
            dot += tl.sum(y * dy, axis=1)
        for start in range(0, n_cols, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            mask = _visible(rows, cols, n_rows, n_cols, q_len, q_offset, CAUSAL)
            y = tl.load(y_ptr + row_start + cols[None, :], mask=mask, other=0.0).to(tl.float32)
            dy = tl.load(dy_ptr + row_start + cols[None, :], mask=mask, other=0.0).to(tl.float32)
            dx = scale * y * (dy - dot[:, None])
            tl.store(dx_ptr + row_start + cols[None, :], dx.to(dx_ptr.dtype.element_ty), mask=in_rows & (cols < n_cols))


def _launch(
    kernel,
    inputs: list[torch.Tensor],
    out: torch.Tensor,
    q_len: int,
    q_offset: int,
    scale: float,
    causal: bool,
    max_block: int,
) -> torch.Tensor:
    """Run ``kernel`` over ``out.view(-1, n)``; every tensor is contiguous with the same shape."""
    n_rows, n_cols = rows_and_cols(out)
    if n_rows == 0 or n_cols == 0:
        return out
    p = launch_params(n_rows, n_cols, max_block)
    grid = (triton.cdiv(n_rows, p.rows),)
    kernel[grid](
        *inputs,
        out,
        n_rows,
        n_cols,
        q_len,
        q_offset,
        scale,
        CAUSAL=causal,
        ROWS=p.rows,
        BLOCK=p.block,
        SINGLE_BLOCK=p.single_block,
        num_warps=p.num_warps,
    )
    return out


class _RowSoftmax(torch.autograd.Function):
    """Softmax over the last dim of ``scale · x`` (causally masked if asked); saves ``y`` for backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float, causal: bool, q_offset: int, max_block: int) -> torch.Tensor:
        x = x.contiguous()
        q_len = x.shape[-2] if causal else 1
        y = _launch(_softmax_fwd_kernel, [x], torch.empty_like(x), q_len, q_offset, scale, causal, max_block)
        ctx.save_for_backward(y)
        ctx.launch_args = (q_len, q_offset, scale, causal, max_block)
        return y

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        (y,) = ctx.saved_tensors
        dx = _launch(_softmax_bwd_kernel, [y, dy.contiguous()], torch.empty_like(y), *ctx.launch_args)
        return dx, None, None, None, None


def triton_softmax(x: Float[torch.Tensor, "... n"], max_block: int = MAX_BLOCK) -> Float[torch.Tensor, "... n"]:
    """``y_i = exp(x_i − max x) / Σ_j exp(x_j − max x)`` over the last dim; backward ``dx = y ⊙ (dy − Σ dy ⊙ y)``."""
    return _RowSoftmax.apply(x, 1.0, False, 0, max_block)


def triton_causal_softmax(
    scores: Float[torch.Tensor, "... queries keys"], scale: float, q_offset: int = 0, max_block: int = MAX_BLOCK
) -> Float[torch.Tensor, "... queries keys"]:
    """``softmax(scale · scores)`` over keys with key ``j`` hidden from query ``i`` when ``j > i + q_offset``.

    Hidden entries come out as exact zeros. Example, 2 queries × 3 keys, ``q_offset = 0``: row 0 is
    ``[1, 0, 0]``, row 1 is the softmax of its first two scores followed by ``0``.
    """
    if scores.dim() < 2:
        raise ValueError(f"causal softmax needs (..., queries, keys) scores, got shape {tuple(scores.shape)}")
    if q_offset < 0:
        raise ValueError(f"q_offset must be >= 0 (a negative offset leaves rows fully masked), got {q_offset}")
    return _RowSoftmax.apply(scores, float(scale), True, int(q_offset), max_block)
