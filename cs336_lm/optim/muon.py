"""Muon (Jordan et al., 2024): momentum SGD whose update of each weight matrix is orthogonalized, beside AdamW.

For a matrix W of shape (m, n) with gradient G (per Muon group: lr α, momentum μ, decay λ, ``ns_steps``)::

    B ← μ·B + G                                    (momentum buffer)
    U ← G + μ·B                                    (Nesterov; U = B without it)
    O ← orthogonalize(U)                           (≈ U₀V₀ᵀ of U's SVD, by a Newton–Schulz iteration)
    W ← W·(1 − α·λ)                                (decoupled weight decay)
    W ← W − α · 0.2·√max(m, n) · O

The momentum is the plain heavy-ball sum. The ``lerp`` form of Keller Jordan's code (B ← μB + (1−μ)G,
U ← (1−μ)G + μB) gives the same U times (1 − μ), and ``orthogonalize`` divides that factor out again
(its normalisation), so the two differ only in rounding.

Shape scale: an orthogonal O has RMS 1/√max(m, n), so ``"rms"`` (the default; Liu et al. 2025, "Muon is
Scalable for LLM Training") multiplies by 0.2·√max(m, n) and gives every matrix an update of RMS ≈ 0.2
(0.17–0.19 measured: the band sits a little below 1), about what AdamW's updates measure. AdamW's learning rate
and weight decay then carry over to the Muon groups: one ``lr`` (and one schedule setting every group's ``lr``)
serves both kinds, as a trainer that treats this as one optimizer wants. ``"spectral"`` is modded-nanogpt's
√max(1, m/n); for the same step it needs 0.2·√max(m, n) / √max(1, m/n) times the learning rate (2.3x for a
128 x 128 matrix, 5.5x at 768 x 768), hence its Muon learning rates of 0.02–0.05.

One ``Muon`` holds both kinds of parameter group, told apart by ``"use_muon"``: Muon groups for the matrices
inside the blocks, AdamW groups (``adamw_update_``, the very code ``AdamW`` runs) for the embeddings, the LM head
and the norm gains; ``muon_param_groups`` makes that split for a ``TransformerLM``, each group at its own learning
rate if asked (a trainer's schedule then scales every group's peak rate by the same factor). So clipping,
checkpoints (``state_dict``/``load_state_dict``) and resume see a single optimizer. Under DDP the gradients arrive
averaged and nothing changes. FSDP shards each matrix over the ranks, and a shard's orthogonalization is not the
matrix's: a Muon group refuses sharded (``DTensor``) parameters, and the trainer refuses ``muon`` with FSDP in
the config, before it gets here.
"""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor, nn

from cs336_lm.nn import Embedding
from cs336_lm.optim.adamw import adamw_update_, run_closure

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
"""(a, b, c) of the quintic x ↦ a·x + b·x³ + c·x⁵ that each Newton–Schulz step applies to the singular values."""

SHAPE_SCALES = ("rms", "spectral")


def orthogonalize(
    G: Float[Tensor, "... m n"], steps: int = 5, *, eps: float = 1e-7, dtype: torch.dtype | None = None
) -> Float[Tensor, "... m n"]:
    """G's singular values pushed towards 1: ≈ U Vᵀ for G = U S Vᵀ, by ``steps`` quintic Newton–Schulz iterations.

    X ← G / (‖G‖_F + eps), transposed to the wide orientation (m ≤ n, so X Xᵀ is the smaller Gram matrix), then
    ``steps`` times: A = X Xᵀ, X ← a·X + (b·A + c·A²)·X, with (a, b, c) = ``NS_COEFFICIENTS``. Each step maps
    every singular value σ to a·σ + b·σ³ + c·σ⁵; the coefficients trade exactness for speed, so the result is
    U S' Vᵀ with S' in a band rather than I. With 5 steps, every σ ≥ 0.002·‖G‖_F lands in [0.68, 1.20]: so says
    the scalar map, and so measure random Gaussian matrices from (7, 5) to (1344, 512), wide, tall and square, in
    fp32 and in bf16 (cosine similarity with U Vᵀ 0.98, ‖O − U Vᵀ‖_F / ‖U Vᵀ‖_F 0.16–0.24). Smaller σ grow by up
    to a⁵ ≈ 490x but stay short of the band (a square matrix has a few), as a near-null direction should.

    Leading dimensions are a batch of matrices, each orthogonalized on its own. ``dtype`` is the compute dtype:
    by default bfloat16 on CUDA (fast tensor-core products; the band absorbs its rounding) and float32 elsewhere
    (a CPU without native bf16 emulates it slowly; one with it, amx_bf16, runs a batch of bf16 products about 2x
    faster than fp32, so the trainer asks for bf16 there when the run computes in bf16). The result comes back in
    G's dtype; a zero G gives 0.
    """
    if not steps >= 1:
        raise ValueError(f"invalid steps {steps}: must be >= 1")
    if G.ndim < 2:
        raise ValueError(f"orthogonalize needs a matrix (or a batch of them), got shape {tuple(G.shape)}")
    if dtype is None:
        dtype = torch.bfloat16 if G.is_cuda else torch.float32
    a, b, c = NS_COEFFICIENTS
    *lead, m, n = G.shape
    X = G.reshape(-1, m, n)  # (batch, m, n)
    X = (X / (torch.linalg.vector_norm(X, dim=(-2, -1), keepdim=True) + eps)).to(dtype)
    if m > n:
        X = X.mT  # (batch, n, m): wide
    for _ in range(steps):
        A = torch.bmm(X, X.mT)  # (batch, r, r), r = min(m, n)
        B = torch.baddbmm(A, A, A, beta=b, alpha=c)  # b·A + c·A²
        X = torch.baddbmm(X, B, X, beta=a)  # a·X + B·X
    if m > n:
        X = X.mT  # (batch, m, n)
    return X.reshape(*lead, m, n).to(G.dtype)


def shape_scale(shape: torch.Size | tuple[int, ...], rule: str = "rms") -> float:
    """The factor on an (…, m, n) matrix's orthogonalized update: ``"rms"`` 0.2·√max(m, n), ``"spectral"``
    √max(1, m/n). E.g. a (1344, 512) FFN weight: 7.33 (rms) or 1.62 (spectral)."""
    m, n = shape[-2], shape[-1]
    if rule == "rms":
        return 0.2 * max(m, n) ** 0.5
    if rule == "spectral":
        return max(1.0, m / n) ** 0.5
    raise ValueError(f"invalid shape_scale {rule!r}: must be one of {', '.join(SHAPE_SCALES)}")


_RULES: dict[str, tuple[Any, str]] = {
    "lr": (lambda v: v >= 0.0, "must be >= 0"),
    "momentum": (lambda v: 0.0 <= v < 1.0, "must be in [0, 1)"),
    "ns_steps": (lambda v: isinstance(v, int) and v >= 1, "must be an integer >= 1"),
    "weight_decay": (lambda v: v >= 0.0, "must be >= 0"),
    "shape_scale": (lambda v: v in SHAPE_SCALES, f"must be one of {', '.join(SHAPE_SCALES)}"),
    "betas": (lambda v: len(v) == 2 and all(0.0 <= b < 1.0 for b in v), "each must be in [0, 1)"),
    "eps": (lambda v: v >= 0.0, "must be >= 0"),
}


def _check(values: dict, prefix: str = "", where: str = "") -> None:
    """ValueError naming the first hyperparameter of ``values`` outside its range (``prefix`` + its key)."""
    for key, value in values.items():
        if key in _RULES:
            ok, rule = _RULES[key]
            if not ok(value):
                raise ValueError(f"invalid {prefix}{key} {value!r}{where}: {rule}")


def _is_sharded(p: torch.Tensor) -> bool:
    if not torch.distributed.is_available():
        return False
    from torch.distributed.tensor import DTensor

    return isinstance(p, DTensor)


class Muon(torch.optim.Optimizer):
    """``Muon(params, lr=1e-3, momentum=0.95, weight_decay=0.01, *, nesterov=True, ns_steps=5, shape_scale="rms",
    adam_lr=None, adam_betas=(0.9, 0.999), adam_eps=1e-8, adam_weight_decay=None, foreach=None, ns_dtype=None)``.

    ``params``: tensors (all Muon) or group dicts, each with ``"use_muon": True`` (the default) or ``False``
    (e.g. from ``muon_param_groups``); a group's own keys override the defaults of its kind. Muon groups take
    ``lr``, ``momentum``, ``weight_decay``, ``nesterov``, ``ns_steps``, ``shape_scale`` and hold matrices (or
    stacks of them: the last two dimensions are the matrix); AdamW groups take ``lr``/``betas``/``eps``/
    ``weight_decay``/``foreach`` from the ``adam_*`` arguments, ``adam_lr`` and ``adam_weight_decay`` defaulting
    to ``lr`` and ``weight_decay`` (with the "rms" shape scale the same values suit both). Per-parameter state:
    ``momentum_buffer`` (Muon), ``step``/``exp_avg``/``exp_avg_sq`` (AdamW). Parameters without a gradient are
    skipped. ``ns_dtype`` is the Newton–Schulz compute dtype (``orthogonalize``'s ``dtype``; None: its default).
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        lr: float = 1e-3,
        momentum: float = 0.95,
        weight_decay: float = 0.01,
        *,
        nesterov: bool = True,
        ns_steps: int = 5,
        shape_scale: str = "rms",
        adam_lr: float | None = None,
        adam_betas: tuple[float, float] = (0.9, 0.999),
        adam_eps: float = 1e-8,
        adam_weight_decay: float | None = None,
        foreach: bool | None = None,
        ns_dtype: torch.dtype | None = None,
    ):
        self.muon_defaults = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "ns_steps": ns_steps,
            "shape_scale": shape_scale,
        }
        self.adam_defaults = {
            "lr": lr if adam_lr is None else adam_lr,
            "betas": tuple(adam_betas),
            "eps": adam_eps,
            "weight_decay": weight_decay if adam_weight_decay is None else adam_weight_decay,
            "foreach": foreach,
        }
        _check(self.muon_defaults)
        _check(self.adam_defaults, prefix="adam_")
        self.ns_dtype = ns_dtype  # a property of the run (its precision), not of a group: not in state_dict
        super().__init__(params, {})  # each kind's defaults are filled in by add_param_group

    def add_param_group(self, param_group: dict) -> None:
        """Add a group, filling in the defaults of its kind (``"use_muon"``, True unless given) and checking them."""
        use_muon = param_group.setdefault("use_muon", True)
        for key, value in (self.muon_defaults if use_muon else self.adam_defaults).items():
            param_group.setdefault(key, value)
        _check(param_group, where=f" in a{' Muon' if use_muon else 'n AdamW'} parameter group")
        params = param_group["params"]
        params = [params] if isinstance(params, torch.Tensor) else list(params)
        if use_muon:
            for p in params:
                if p.ndim < 2:
                    raise ValueError(
                        f"a Muon group holds matrices, got a parameter of shape {tuple(p.shape)}: "
                        'put it in a group with "use_muon": False'
                    )
                if _is_sharded(p):
                    raise ValueError("Muon needs whole matrices; sharded (FSDP) parameters are not supported")
        super().add_param_group(param_group)

    @torch.no_grad()
    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns ``closure()`` if given."""
        loss = run_closure(closure)
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not group["use_muon"]:
                adamw_update_(group, params, self.state)
            elif params:
                self._muon_update(group, params)
        return loss

    def _muon_update(self, group: dict, params: list[torch.Tensor]) -> None:
        """The module docstring's update for every matrix of a Muon group (each with a gradient), the momentum in
        ``_foreach`` ops and the orthogonalization by shape (``orthogonalize_all``)."""
        grads = [p.grad for p in params if p.grad is not None]  # all of them: step passes those with one
        if any(g.is_sparse for g in grads):
            raise RuntimeError("Muon does not support sparse gradients")
        lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
        for p in params:
            if not self.state[p]:
                self.state[p]["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        buffers = [self.state[p]["momentum_buffer"] for p in params]
        torch._foreach_mul_(buffers, mu)
        torch._foreach_add_(buffers, grads)
        updates = torch._foreach_add(grads, buffers, alpha=mu) if group["nesterov"] else buffers
        for p, ortho in zip(params, orthogonalize_all(updates, group["ns_steps"], dtype=self.ns_dtype), strict=True):
            if wd != 0:
                p.mul_(1 - lr * wd)
            p.add_(ortho, alpha=-lr * shape_scale(p.shape, group["shape_scale"]))


def orthogonalize_all(updates: Sequence[Tensor], steps: int = 5, *, dtype: torch.dtype | None = None) -> list[Tensor]:
    """``[orthogonalize(u, steps, dtype=dtype) for u in updates]``, with the matrices of one shape in one batch.

    A tall matrix joins the wide ones of its transposed shape (``orthogonalize`` works on the wide orientation
    anyway), so a model's (d_ff, d_model) and (d_model, d_ff) feed-forward weights form one batch and its square
    attention projections another: a few batched products instead of a small product per matrix, per step. On a
    CPU with native bf16 that halves the time in bf16 (larger products) and costs nothing in fp32; on a GPU it
    saves kernel launches. The stacked copy takes as much memory again as the group's updates.
    """
    batches: dict[tuple, list[int]] = defaultdict(list)
    for i, u in enumerate(updates):
        m, n = u.shape[-2:]
        batches[(min(m, n), max(m, n), u.dtype, u.device)].append(i)
    out: list[Tensor] = list(updates)
    for (r, c, _, _), indices in batches.items():
        wide = [updates[i].mT if updates[i].shape[-2] > updates[i].shape[-1] else updates[i] for i in indices]
        stacked = torch.cat([w.reshape(-1, r, c) for w in wide])  # (matrices, r, c)
        ortho = orthogonalize(stacked, steps, dtype=dtype).split([w.numel() // (r * c) for w in wide])
        for i, w, o in zip(indices, wide, ortho, strict=True):
            o = o.reshape(w.shape)
            out[i] = o.mT if updates[i].shape[-2] > updates[i].shape[-1] else o
    return out


def muon_param_groups(
    model: nn.Module,
    *,
    muon_lr: float | None = None,
    embed_lr: float | None = None,
    head_lr: float | None = None,
    gain_lr: float | None = None,
) -> list[dict]:
    """Split a ``TransformerLM``'s trainable parameters into Muon and AdamW groups for ``Muon``.

    The matrices inside the blocks (a name with a ``layers`` component, two dimensions: the attention and
    feed-forward projections) → ``{"name": "muon", "use_muon": True}``; the weights of ``Embedding`` modules →
    ``{"name": "embeddings", "use_muon": False}`` (a head tied to them is the same tensor, so it is there too); the
    other matrices (the LM head) → ``{"name": "head", "use_muon": False}``; one-dimensional parameters (norm gains,
    which decay would pull toward zero) → ``{"name": "gains", "use_muon": False, "weight_decay": 0.0}``. A rate
    given here becomes its group's ``"lr"`` (``muon_lr`` the Muon group's, the others an AdamW group's); unset, the
    group takes ``Muon``'s ``lr`` or ``adam_lr``. Empty groups are left out; shared (tied) parameters appear once.
    Wrapped models work too (``module.``, ``_orig_mod.`` prefixes).
    """
    embedding_weights = {id(p) for m in model.modules() if isinstance(m, Embedding) for p in m.parameters()}
    split: dict[str, list[nn.Parameter]] = {"muon": [], "embeddings": [], "head": [], "gains": []}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2:
            split["gains"].append(p)
        elif id(p) in embedding_weights:
            split["embeddings"].append(p)
        elif p.ndim == 2 and "layers" in name.split(".")[:-1]:
            split["muon"].append(p)
        else:
            split["head"].append(p)
    rates = {"muon": muon_lr, "embeddings": embed_lr, "head": head_lr, "gains": gain_lr}
    groups = []
    for name, params in split.items():
        if not params:
            continue
        group: dict = {"name": name, "use_muon": name == "muon", "params": params}
        if name == "gains":
            group["weight_decay"] = 0.0
        if rates[name] is not None:
            group["lr"] = rates[name]
        groups.append(group)
    return groups
