"""Out-of-bounds check for the kernels under the interpreter (``python guard_check.py``, in a subprocess).

Every input, output and scratch buffer the kernels touch is carved from the middle of a larger buffer
whose guard bands hold NaN. A load that skips its mask reads a NaN into a result; a store that skips its
mask overwrites a guard. After forward and backward of every op, on shapes whose last tile is partly
padding and whose rows end mid-block, the script checks that all guards are intact and all results
finite and equal to torch's. A wild access can also crash the process, which is why it runs apart from
pytest. Exit status 0 when clean, 1 with a message otherwise.
"""

import os
import sys

os.environ["TRITON_INTERPRET"] = "1"  # before the kernel modules are imported

import torch

GUARD = 1 << 15  # elements on each side: more than the widest tile any launch here uses
_guarded: list[tuple[torch.Tensor, int]] = []  # (whole buffer, payload length)
_empty, _empty_like, _zeros = torch.empty, torch.empty_like, torch.zeros


def _carve(shape, dtype, device, fill) -> torch.Tensor:
    numel = 1
    for n in shape:
        numel *= n
    buffer = _empty(numel + 2 * GUARD, dtype=dtype, device=device).fill_(float("nan"))
    _guarded.append((buffer, numel))
    view = buffer[GUARD : GUARD + numel].view(shape)
    return view.fill_(fill) if fill is not None else view


def _shape(args):
    return tuple(args[0]) if len(args) == 1 and isinstance(args[0], (tuple, list, torch.Size)) else tuple(args)


def guarded_empty(*size, dtype=None, device=None, **kwargs):
    dtype = dtype or torch.get_default_dtype()
    if not dtype.is_floating_point:
        return _empty(*size, dtype=dtype, device=device, **kwargs)
    return _carve(_shape(size), dtype, device, None)


def guarded_empty_like(t, **kwargs):
    if kwargs or not t.dtype.is_floating_point:
        return _empty_like(t, **kwargs)
    return _carve(t.shape, t.dtype, t.device, None)


def guarded_zeros(*size, dtype=None, device=None, **kwargs):
    dtype = dtype or torch.get_default_dtype()
    if not dtype.is_floating_point:
        return _zeros(*size, dtype=dtype, device=device, **kwargs)
    return _carve(_shape(size), dtype, device, 0.0)


def guarded_input(t: torch.Tensor) -> torch.Tensor:
    return _carve(t.shape, t.dtype, t.device, None).copy_(t)


def ops(w: torch.Tensor, r: torch.Tensor, max_block: int) -> dict:
    """name -> (our op, torch's op), each a function of one tensor."""
    from cs336_lm.kernels.rmsnorm import triton_add_rms_norm, triton_rms_norm
    from cs336_lm.kernels.softmax import triton_causal_softmax, triton_softmax

    def causal_reference(a):
        hidden = torch.ones(a.shape[-2:], dtype=torch.bool).triu(2)  # key j > i + 1
        return torch.softmax((0.5 * a).masked_fill(hidden, float("-inf")), -1)

    def rms_reference(a):
        return torch.nn.functional.rms_norm(a, (a.shape[-1],), w, 1e-5)

    return {
        "softmax": (lambda a: triton_softmax(a, max_block), lambda a: torch.softmax(a, -1)),
        "causal_softmax": (lambda a: triton_causal_softmax(a, 0.5, 1, max_block), causal_reference),
        "rms_norm": (lambda a: triton_rms_norm(a, w, 1e-5, max_block), rms_reference),
        "add_rms_norm": (
            lambda a: sum(triton_add_rms_norm(a, r, w, 1e-5, max_block)),
            lambda a: rms_reference(a + r) + (a + r),
        ),
    }


def run_cases() -> list[str]:
    problems = []
    cases = [((1, 1), 16384), ((65, 3), 16384), ((5, 123), 32), ((2, 9, 37), 16)]
    for shape, max_block in cases:
        torch.manual_seed(0)
        x, r, dy = (guarded_input(torch.randn(shape)) for _ in range(3))
        w = guarded_input(torch.randn(shape[-1]))
        for name, (ours, theirs) in ops(w, r, max_block).items():
            results = []
            for fn in (ours, theirs):
                leaf = x.detach().clone().requires_grad_() if fn is theirs else x.detach().requires_grad_()
                y = fn(leaf)
                (dx,) = torch.autograd.grad(y, leaf, dy)
                results.append((y.detach(), dx))
            for label, a, b in zip(("forward", "backward"), results[0], results[1], strict=True):
                if not torch.isfinite(a).all() or not torch.allclose(a, b, atol=1e-5, rtol=1e-4):
                    problems.append(f"{name} {shape} max_block={max_block}: {label} differs from torch")
    for i, (buffer, numel) in enumerate(_guarded):
        if not (buffer[:GUARD].isnan().all() and buffer[GUARD + numel :].isnan().all()):
            problems.append(f"guard band of buffer {i} ({numel} elements) was overwritten")
    return problems


def main() -> int:
    torch.empty, torch.empty_like, torch.zeros = guarded_empty, guarded_empty_like, guarded_zeros
    try:
        problems = run_cases()
    finally:
        torch.empty, torch.empty_like, torch.zeros = _empty, _empty_like, _zeros
    for problem in problems:
        print(problem)
    print(f"{len(_guarded)} guarded buffers checked, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
