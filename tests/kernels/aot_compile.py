"""Compile the Triton kernels for an NVIDIA target without a GPU (``python aot_compile.py [ARCH] [--switches-on]``).

The interpreter runs kernels as Python and accepts code the real compiler rejects (non-constexpr globals,
unsupported ops, type errors in a branch the tests never take). This script lowers each kernel, for each
combination of its boolean switches and for both the one-block and the looping path, through Triton's
whole pipeline to a cubin for ``sm_ARCH`` (default 90, H100), which needs Triton's bundled ptxas but no
driver (``--switches-on``: only with every switch on, the variants that contain the most code). It prints
one line per variant and exits 1 if any variant fails to compile.
"""

import itertools
import os
import sys

os.environ.pop("TRITON_INTERPRET", None)  # must precede the kernel imports: @triton.jit reads it
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from cs336_lm.kernels import paged_attention, rmsnorm, softmax

FLOAT_ARGS = {"scale", "eps"}
# (kernel, its boolean switches, pointer element type per pointer argument)
KERNELS = [
    (softmax._softmax_fwd_kernel, ["CAUSAL"], {}),
    (softmax._softmax_bwd_kernel, ["CAUSAL"], {}),
    (rmsnorm._rmsnorm_fwd_kernel, ["HAS_RESIDUAL"], {"rstd_ptr": "fp32", "w_ptr": "fp32"}),
    (rmsnorm._rmsnorm_bwd_kernel, ["HAS_DSUM"], {"rstd_ptr": "fp32", "dw_partial_ptr": "fp32", "w_ptr": "fp32"}),
]


def compile_variant(kernel, constexprs: dict, pointer_types: dict, dtype: str, target: GPUTarget) -> None:
    signature = {}
    for name in kernel.arg_names:
        if name in constexprs:
            signature[name] = "constexpr"
        elif name.endswith("_ptr"):
            signature[name] = "*" + pointer_types.get(name, dtype)
        else:
            signature[name] = "fp32" if name in FLOAT_ARGS else "i32"
    source = ASTSource(fn=kernel, signature=signature, constexprs=constexprs)
    compiled = triton.compile(source, target=target, options={"num_warps": 8})
    assert compiled.asm.get("cubin"), "no cubin produced"


def main(arch: int, all_switches: bool) -> int:
    target = GPUTarget("cuda", arch, 32)
    failures = 0
    for kernel, switches, pointer_types in KERNELS:
        settings = list(itertools.product([False, True], repeat=len(switches))) if all_switches else [(True,)]
        for flags, (block, single) in itertools.product(settings, [(1024, True), (256, False)]):
            constexprs = {**dict(zip(switches, flags, strict=True)), "ROWS": 4, "BLOCK": block, "SINGLE_BLOCK": single}
            label = f"{kernel.__name__} {constexprs}"
            try:
                compile_variant(kernel, constexprs, pointer_types, "bf16", target)
                print(f"ok   {label}")
            except Exception as e:
                failures += 1
                print(f"FAIL {label}: {type(e).__name__}: {e}")
    for constexprs in PAGED_VARIANTS:
        label = f"{paged_attention._paged_decode_kernel.__name__} {constexprs}"
        try:
            pointers = {"table_ptr": "i32", "lens_ptr": "i32"}
            compile_variant(paged_attention._paged_decode_kernel, constexprs, pointers, "bf16", target)
            print(f"ok   {label}")
        except Exception as e:
            failures += 1
            print(f"FAIL {label}: {type(e).__name__}: {e}")
    return 1 if failures else 0


# grouped (4 query heads per key/value head, d_head 64, blocks of 16) and one head per group with odd sizes
PAGED_VARIANTS = [
    {"GROUP": 4, "GROUP_P2": 4, "D_HEAD": 64, "D_P2": 64, "BLOCK_SIZE": 16, "BLOCK_P2": 16},
    {"GROUP": 1, "GROUP_P2": 1, "D_HEAD": 24, "D_P2": 32, "BLOCK_SIZE": 5, "BLOCK_P2": 8},
]


if __name__ == "__main__":
    arguments = [a for a in sys.argv[1:] if a != "--switches-on"]
    sys.exit(main(int(arguments[0]) if arguments else 90, all_switches="--switches-on" not in sys.argv))
