"""Triton RMSNorm and fused residual-add + RMSNorm over the last dim, forward and backward.

Forward: ``y = s · rstd · w`` with ``rstd = 1 / sqrt(mean(s²) + eps)`` and ``s = x`` (plain) or
``s = x + residual`` (fused; ``s`` is also written out as the updated residual stream). ``rstd`` is
saved per row. Backward, with ``ŝ = s · rstd`` and ``g = dy ⊙ w``:
``ds = rstd · (g − ŝ · mean(g ⊙ ŝ))`` (plus the gradient arriving at the residual output in the fused
op) and ``dw = Σ_rows dy ⊙ ŝ``; ``dw`` is summed per program into an fp32 ``[programs, hidden]`` buffer and
then reduced over programs. A program owns tiles of ``rows × BLOCK`` elements; rows wider than one block
loop over blocks. Arithmetic is fp32; outputs have the input dtype and the weight gradient the weight's.
"""

import torch
import triton
import triton.language as tl
from jaxtyping import Float

from cs336_lm.kernels.launch import LaunchParams, TileShape, rows_and_cols, sm_count
from cs336_lm.kernels.launch import launch_params as _launch_params

MAX_BLOCK = 8192  # widest row kept in registers in one piece; wider rows loop over blocks
# Forward tiles hold about 4096 elements at 16 per thread; backward tiles, which keep more values live
# (dy, s, the weight and the dw accumulator), about 2048 at 4 per thread. Both keep ptxas at <= ~64
# registers for sm_90 on the benchmark shapes, i.e. 32 resident warps per SM.
TILES = {
    "forward": TileShape(elements=4096, elements_per_warp=512, max_warps=16),
    "backward": TileShape(elements=2048, elements_per_warp=128, max_warps=32),
}
PROGRAMS_PER_SM = 4  # backward programs per streaming multiprocessor (each one writes one dw partial row)
CPU_BACKWARD_PROGRAMS = 4  # the interpreter runs programs one after another; few programs, few partials


def launch_params(n_rows: int, n_cols: int, max_block: int = MAX_BLOCK, pass_: str = "forward") -> LaunchParams:
    """The launch shape of one pass, e.g. ``(4096, 768) -> block 1024, 4 rows/tile, 8 warps`` (forward)."""
    return _launch_params(n_rows, n_cols, max_block, TILES[pass_])


def backward_programs(n_tiles: int, device: torch.device) -> int:
    """Programs in the backward grid: ``PROGRAMS_PER_SM`` per SM on CUDA (``CPU_BACKWARD_PROGRAMS`` on the
    interpreter), never more than there are tiles; each loops over tiles ``pid, pid + P, …``."""
    if device.type == "cuda":
        return max(1, min(n_tiles, PROGRAMS_PER_SM * sm_count(device)))
    return max(1, min(n_tiles, CPU_BACKWARD_PROGRAMS))


@triton.jit
def _rmsnorm_fwd_kernel(
    x_ptr,
    res_ptr,
    sum_ptr,
    w_ptr,
    y_ptr,
    rstd_ptr,
    n_rows,
    n_cols,
    eps,
    HAS_RESIDUAL: tl.constexpr,
    ROWS: tl.constexpr,
    BLOCK: tl.constexpr,
    SINGLE_BLOCK: tl.constexpr,
):
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    row_start = rows.to(tl.int64)[:, None] * n_cols
    in_rows = rows < n_rows
    if SINGLE_BLOCK:
        cols = tl.arange(0, BLOCK)
        mask = in_rows[:, None] & (cols < n_cols)[None, :]
        s = tl.load(x_ptr + row_start + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        if HAS_RESIDUAL:
            s += tl.load(res_ptr + row_start + cols[None, :], mask=mask, other=0.0).to(tl.float32)
            s = s.to(sum_ptr.dtype.element_ty)  # normalise the sum as stored, like the unfused ops do
            tl.store(sum_ptr + row_start + cols[None, :], s, mask=mask)
            s = s.to(tl.float32)
        rstd = tl.rsqrt(tl.sum(s * s, axis=1) / n_cols + eps)
        w = tl.load(w_ptr + cols, mask=cols < n_cols, other=0.0).to(tl.float32)
        y = s * rstd[:, None] * w[None, :]
        tl.store(y_ptr + row_start + cols[None, :], y.to(y_ptr.dtype.element_ty), mask=mask)
    else:
        sum_sq = tl.zeros([ROWS], tl.float32)
        for start in range(0, n_cols, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            mask = in_rows[:, None] & (cols < n_cols)[None, :]
            s = tl.load(x_ptr + row_start + cols[None, :], mask=mask, other=0.0).to(tl.float32)
            if HAS_RESIDUAL:
                s += tl.load(res_ptr + row_start + cols[None, :], mask=mask, other=0.0).to(tl.float32)
                s = s.to(sum_ptr.dtype.element_ty)
                tl.store(sum_ptr + row_start + cols[None, :], s, mask=mask)
                s = s.to(tl.float32)
            sum_sq += tl.sum(s * s, axis=1)
        rstd = tl.rsqrt(sum_sq / n_cols + eps)
        for start in range(0, n_cols, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            mask = in_rows[:, None] & (cols < n_cols)[None, :]
            s = tl.load(x_ptr + row_start + cols[None, :], mask=mask, other=0.0).to(tl.float32)
            if HAS_RESIDUAL:  # recomputed rather than re-read, so the pass never reads its own writes
                s += tl.load(res_ptr + row_start + cols[None, :], mask=mask, other=0.0).to(tl.float32)
                s = s.to(sum_ptr.dtype.element_ty).to(tl.float32)
            w = tl.load(w_ptr + cols, mask=cols < n_cols, other=0.0).to(tl.float32)
            y = s * rstd[:, None] * w[None, :]
            tl.store(y_ptr + row_start + cols[None, :], y.to(y_ptr.dtype.element_ty), mask=mask)
    tl.store(rstd_ptr + rows, rstd, mask=in_rows)


@triton.jit
def _rmsnorm_bwd_kernel(
    dy_ptr,
    s_ptr,
    w_ptr,
    rstd_ptr,
    dsum_ptr,
    ds_ptr,
    dw_partial_ptr,
    n_rows,
    n_cols,
    HAS_DSUM: tl.constexpr,
    ROWS: tl.constexpr,
    BLOCK: tl.constexpr,
    SINGLE_BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    n_tiles = tl.cdiv(n_rows, ROWS)
    if SINGLE_BLOCK:
        cols = tl.arange(0, BLOCK)
        w = tl.load(w_ptr + cols, mask=cols < n_cols, other=0.0).to(tl.float32)
        dw = tl.zeros([BLOCK], tl.float32)
        for tile in range(pid, n_tiles, tl.num_programs(0)):
            rows = tile * ROWS + tl.arange(0, ROWS)
            offsets = rows.to(tl.int64)[:, None] * n_cols + cols[None, :]
            mask = (rows < n_rows)[:, None] & (cols < n_cols)[None, :]
            rstd = tl.load(rstd_ptr + rows, mask=rows < n_rows, other=0.0)
            dy = tl.load(dy_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
            s_hat = tl.load(s_ptr + offsets, mask=mask, other=0.0).to(tl.float32) * rstd[:, None]
            g = dy * w[None, :]
            mean_g_s = tl.sum(g * s_hat, axis=1) / n_cols
            ds = rstd[:, None] * (g - s_hat * mean_g_s[:, None])
            if HAS_DSUM:
                ds += tl.load(dsum_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
            tl.store(ds_ptr + offsets, ds.to(ds_ptr.dtype.element_ty), mask=mask)
            dw += tl.sum(dy * s_hat, axis=0)
        tl.store(dw_partial_ptr + pid * n_cols + cols, dw, mask=cols < n_cols)
    else:
        for tile in range(pid, n_tiles, tl.num_programs(0)):
            rows = tile * ROWS + tl.arange(0, ROWS)
            row_start = rows.to(tl.int64)[:, None] * n_cols
            rstd = tl.load(rstd_ptr + rows, mask=rows < n_rows, other=0.0)
            sum_g_s = tl.zeros([ROWS], tl.float32)
            for start in range(0, n_cols, BLOCK):
                cols = start + tl.arange(0, BLOCK)
                mask = (rows < n_rows)[:, None] & (cols < n_cols)[None, :]
                w = tl.load(w_ptr + cols, mask=cols < n_cols, other=0.0).to(tl.float32)
                dy = tl.load(dy_ptr + row_start + cols[None, :], mask=mask, other=0.0).to(tl.float32)
                s = tl.load(s_ptr + row_start + cols[None, :], mask=mask, other=0.0).to(tl.float32)
                sum_g_s += tl.sum(dy * w[None, :] * s, axis=1)
            mean_g_s = sum_g_s * rstd / n_cols
            for start in range(0, n_cols, BLOCK):
                cols = start + tl.arange(0, BLOCK)
                mask = (rows < n_rows)[:, None] & (cols < n_cols)[None, :]
                w = tl.load(w_ptr + cols, mask=cols < n_cols, other=0.0).to(tl.float32)
                dy = tl.load(dy_ptr + row_start + cols[None, :], mask=mask, other=0.0).to(tl.float32)
                s_hat = tl.load(s_ptr + row_start + cols[None, :], mask=mask, other=0.0).to(tl.float32) * rstd[:, None]
                ds = rstd[:, None] * (dy * w[None, :] - s_hat * mean_g_s[:, None])
                if HAS_DSUM:
                    ds += tl.load(dsum_ptr + row_start + cols[None, :], mask=mask, other=0.0).to(tl.float32)
                tl.store(ds_ptr + row_start + cols[None, :], ds.to(ds_ptr.dtype.element_ty), mask=mask)
                # This program's own partial row: no other program touches it.
                partial = dw_partial_ptr + pid * n_cols + cols
                tl.store(partial, tl.load(partial, mask=cols < n_cols) + tl.sum(dy * s_hat, axis=0), mask=cols < n_cols)


def _forward(x, residual, weight, eps: float, max_block: int):
    """Launch the forward kernel on contiguous inputs; returns ``(y, s, rstd)`` (``s is x`` without residual)."""
    n_rows, n_cols = rows_and_cols(x)
    if weight.shape != (n_cols,):
        raise ValueError(f"RMSNorm weight has shape {tuple(weight.shape)}, expected ({n_cols},)")
    y = torch.empty_like(x)
    s = torch.empty_like(x) if residual is not None else x
    rstd = torch.empty(n_rows, device=x.device, dtype=torch.float32)
    if n_rows == 0 or n_cols == 0:
        return y, s, rstd
    p = launch_params(n_rows, n_cols, max_block)
    _rmsnorm_fwd_kernel[(triton.cdiv(n_rows, p.rows),)](
        x,
        residual if residual is not None else x,
        s,
        weight,
        y,
        rstd,
        n_rows,
        n_cols,
        eps,
        HAS_RESIDUAL=residual is not None,
        ROWS=p.rows,
        BLOCK=p.block,
        SINGLE_BLOCK=p.single_block,
        num_warps=p.num_warps,
    )
    return y, s, rstd


def _backward(dy, s, weight, rstd, dsum, max_block: int):
    """Launch the backward kernel; returns ``(ds, dw)`` with ``dw`` reduced from the per-program partials."""
    n_rows, n_cols = rows_and_cols(s)
    ds = torch.empty_like(s)
    if n_rows == 0 or n_cols == 0:
        return ds, torch.zeros_like(weight)
    p = launch_params(n_rows, n_cols, max_block, "backward")
    programs = backward_programs(triton.cdiv(n_rows, p.rows), s.device)
    dw_partial = torch.zeros(programs, n_cols, device=s.device, dtype=torch.float32)  # (programs, hidden)
    _rmsnorm_bwd_kernel[(programs,)](
        dy,
        s,
        weight,
        rstd,
        dsum if dsum is not None else dy,
        ds,
        dw_partial,
        n_rows,
        n_cols,
        HAS_DSUM=dsum is not None,
        ROWS=p.rows,
        BLOCK=p.block,
        SINGLE_BLOCK=p.single_block,
        num_warps=p.num_warps,
    )
    return ds, dw_partial.sum(dim=0).to(weight.dtype)


class _RMSNorm(torch.autograd.Function):
    """``rms_norm(x) ⊙ weight``; saves ``x``, ``weight`` and the per-row ``rstd`` for backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, eps: float, max_block: int) -> torch.Tensor:
        x, weight = x.contiguous(), weight.contiguous()
        y, _, rstd = _forward(x, None, weight, eps, max_block)
        ctx.save_for_backward(x, weight, rstd)
        ctx.max_block = max_block
        return y

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        x, weight, rstd = ctx.saved_tensors
        dx, dw = _backward(dy.contiguous(), x, weight, rstd, None, ctx.max_block)
        return dx, dw, None, None


class _AddRMSNorm(torch.autograd.Function):
    """``(rms_norm(x + residual) ⊙ weight, x + residual)``; saves the sum, ``weight`` and ``rstd``."""

    @staticmethod
    def forward(ctx, x, residual, weight, eps: float, max_block: int):
        x, residual, weight = x.contiguous(), residual.contiguous(), weight.contiguous()
        y, s, rstd = _forward(x, residual, weight, eps, max_block)
        ctx.save_for_backward(s, weight, rstd)
        ctx.max_block = max_block
        ctx.set_materialize_grads(False)  # an unused residual output costs no extra read in backward
        return y, s

    @staticmethod
    def backward(ctx, dy, dsum):
        s, weight, rstd = ctx.saved_tensors
        dy = torch.zeros_like(s) if dy is None else dy.contiguous()
        dsum = None if dsum is None else dsum.contiguous()
        ds, dw = _backward(dy, s, weight, rstd, dsum, ctx.max_block)
        return ds, ds, dw, None, None  # s = x + residual: both inputs receive ds


def triton_rms_norm(
    x: Float[torch.Tensor, "... d_model"],
    weight: Float[torch.Tensor, " d_model"],
    eps: float = 1e-5,
    max_block: int = MAX_BLOCK,
) -> Float[torch.Tensor, "... d_model"]:
    """``x / sqrt(mean(x²) + eps) ⊙ weight`` over the last dim, fp32 inside, ``x``'s dtype out."""
    return _RMSNorm.apply(x, weight, float(eps), max_block)


def triton_add_rms_norm(
    x: Float[torch.Tensor, "... d_model"],
    residual: Float[torch.Tensor, "... d_model"],
    weight: Float[torch.Tensor, " d_model"],
    eps: float = 1e-5,
    max_block: int = MAX_BLOCK,
) -> tuple[Float[torch.Tensor, "... d_model"], Float[torch.Tensor, "... d_model"]]:
    """``s = x + residual`` (rounded to the input dtype), returns ``(rms_norm(s) ⊙ weight, s)`` in one pass."""
    if x.shape != residual.shape or x.dtype != residual.dtype:
        raise ValueError(
            f"x and residual must match: got {tuple(x.shape)} {x.dtype} and {tuple(residual.shape)} {residual.dtype}"
        )
    return _AddRMSNorm.apply(x, residual, weight, float(eps), max_block)
