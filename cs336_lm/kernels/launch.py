"""Launch shapes shared by the row-wise kernels: how many columns per block, rows per tile and warps.

Every kernel here works on a 2-D view ``(n_rows, n_cols)`` of its input, the reduction running along a row.
A program owns a tile of ``rows × block`` elements; a row wider than ``max_block`` is walked block by
block. The tile and warp sizes differ per kernel and pass (a backward keeps more values live), so each
kernel file states its own ``TileShape`` and calls ``launch_params`` with it.
"""

from dataclasses import dataclass

import torch
import triton


@dataclass(frozen=True)
class TileShape:
    """How big a kernel's tiles are: about ``elements`` per tile, ``elements_per_warp``, at most ``max_warps``."""

    elements: int
    elements_per_warp: int
    max_warps: int


@dataclass(frozen=True)
class LaunchParams:
    block: int  # columns per block (a power of two)
    rows: int  # rows per tile (a power of two)
    num_warps: int
    single_block: bool  # the whole row fits in one block: no column loop, one read


def launch_params(n_rows: int, n_cols: int, max_block: int, tile: TileShape) -> LaunchParams:
    """Launch parameters from the shape, e.g. ``(4096, 123)`` with 4096-element tiles of 512 per warp ->
    block 128, 32 rows per tile, 8 warps.

    ``block = min(next_pow2(n_cols), max_block)`` (at least 16); ``rows = tile.elements // block``, capped by
    ``next_pow2(n_rows)`` and at least 1; ``num_warps = rows·block / tile.elements_per_warp`` clamped to
    ``[1, tile.max_warps]``. ``max_block`` (a power of two) exists so tests can force the looping path.
    """
    if max_block < 1 or max_block & (max_block - 1):
        raise ValueError(f"max_block must be a power of two, got {max_block}")
    block = min(max(triton.next_power_of_2(n_cols), 16), max_block)
    rows = max(1, min(tile.elements // block, triton.next_power_of_2(max(n_rows, 1))))
    num_warps = min(tile.max_warps, max(1, rows * block // tile.elements_per_warp))
    return LaunchParams(block=block, rows=rows, num_warps=num_warps, single_block=block >= n_cols)


def rows_and_cols(x: torch.Tensor) -> tuple[int, int]:
    """``x`` seen as ``(n_rows, n_cols)`` with the last dim as the row; ``(0, 0)`` for an empty tensor."""
    n_cols = x.shape[-1] if x.dim() else 1
    return (x.numel() // n_cols if n_cols else 0), n_cols


def sm_count(device: torch.device) -> int:
    """Streaming multiprocessors of a CUDA device."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    return torch.cuda.get_device_properties(index).multi_processor_count
