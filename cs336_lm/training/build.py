"""What a run is built from besides the model: seeded RNGs, the optimizer, per-rank batch samplers, the LR schedule
and the FLOP count behind MFU.

Small functions of the config that ``cs336_lm.training.setup`` composes: ``seed_everything``, ``build_optimizer``
(AdamW with decay on matrices only, or Muon beside AdamW) with ``lr_scales`` (each group's peak rate over
``optim.lr``) and ``describe_optimizer``, ``batch_generator`` (one independent stream per rank), ``lr_at`` (the
cosine or warmup–stable–decay schedule) and ``training_flops_per_token``. The model itself comes from
``cs336_lm.run.build_model``.
"""

from __future__ import annotations

import dataclasses
import math
import random

import numpy as np
import torch

from cs336_lm.config import Config
from cs336_lm.nn import ModelArgs, accounting
from cs336_lm.optim import AdamW, Muon, cosine_lr, muon_param_groups, param_groups_for_weight_decay, wsd_lr


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global RNGs (model initialisation draws from torch's)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def batch_generator(seed: int, rank: int, step: int | None = None) -> np.random.Generator:
    """Process ``rank``'s batch sampler: ``SeedSequence((seed, rank))`` gives every rank an independent stream.

    ``step`` (a resume on another world size, where the saved per-rank streams do not fit) seeds a fresh stream
    from ``(seed, rank, step)`` instead.
    """
    return np.random.default_rng([seed, rank] if step is None else [seed, rank, step])


def build_optimizer(model: torch.nn.Module, cfg: Config, dtype: torch.dtype = torch.float32) -> torch.optim.Optimizer:
    """The optimizer ``optim.name`` names, over ``model``'s parameters, at the peak rates of ``cfg.optim``.

    ``adamw``: ``AdamW`` with weight decay on matrices only (``param_groups_for_weight_decay``). ``muon``: one
    ``Muon`` whose groups ``muon_param_groups`` splits (the blocks' matrices; embeddings, head and gains on AdamW),
    each at its own rate (``muon_lr``, ``embed_lr``, ``head_lr``, ``gain_lr``; unset: ``lr``). Its Newton–Schulz
    iteration runs in bf16 when the run computes in bf16 (``dtype``, the autocast dtype), else in orthogonalize's
    default (bf16 on CUDA, fp32 on a CPU).
    """
    o = cfg.optim
    if o.name == "adamw":
        groups = param_groups_for_weight_decay(model, o.weight_decay)
        return AdamW(groups, lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps, weight_decay=o.weight_decay)
    groups = muon_param_groups(model, muon_lr=o.muon_lr, embed_lr=o.embed_lr, head_lr=o.head_lr, gain_lr=o.gain_lr)
    return Muon(
        groups,
        lr=o.lr,
        momentum=o.momentum,
        weight_decay=o.weight_decay,
        nesterov=o.nesterov,
        ns_steps=o.ns_steps,
        adam_betas=(o.beta1, o.beta2),
        adam_eps=o.eps,
        ns_dtype=torch.bfloat16 if dtype == torch.bfloat16 else None,
    )


def lr_scales(optimizer: torch.optim.Optimizer, cfg: Config) -> list[float]:
    """Each param group's peak rate over ``optim.lr``, read from an optimizer ``build_optimizer`` just built.

    Each step the trainer sets group i's rate to ``lr_at(step) · scales[i]``, so the schedule moves every group's
    rate by the same factor and their ratios hold. A group at ``optim.lr`` (every AdamW group) has the scale 1.0
    exactly, so its rate is the schedule's to the bit. Read before a checkpoint's state replaces the groups, so the
    config's rates win on resume, as ``optim.lr`` always has.
    """
    lr = cfg.optim.lr
    return [group["lr"] / lr if lr > 0 else 1.0 for group in optimizer.param_groups]


def describe_optimizer(optimizer: torch.optim.Optimizer, scales: list[float], cfg: Config) -> str:
    """One line for the run's opening message: the optimizer and schedule, then each group's tensors, parameters
    and peak rate (``optim.lr`` times its ``lr_scales`` entry), e.g. ``optimizer muon, cosine schedule: muon (Muon)
    28 tensors 851,968 parameters lr 0.003 wd 0.1 | embeddings (AdamW) 1 tensor 262,144 parameters …``."""
    parts = []
    for group, scale in zip(optimizer.param_groups, scales, strict=True):
        tensors, count = len(group["params"]), sum(p.numel() for p in group["params"])
        kind = {True: " (Muon)", False: " (AdamW)", None: ""}[group.get("use_muon")]
        parts.append(
            f"{group.get('name', 'group')}{kind} {tensors} tensor{'s' if tensors != 1 else ''} {count:,} parameters "
            f"lr {cfg.optim.lr * scale:g} wd {group['weight_decay']:g}"
        )
    return f"optimizer {cfg.optim.name}, {cfg.optim.schedule} schedule: " + " | ".join(parts)


def training_flops_per_token(cfg: Config) -> float:
    """Forward + backward matmul FLOPs per token of ``cfg.model`` (``cs336_lm.nn.accounting``), for MFU."""
    return accounting.training_flops_per_token(ModelArgs.from_dict(dataclasses.asdict(cfg.model)))


def lr_at(step: int, cfg: Config) -> float:
    """The schedule of ``cfg.optim`` at 0-based ``step``, at the peak ``optim.lr``: ``cosine`` ends its decay at
    ``optim.cosine_cycle_iters`` (unset: ``train.max_steps``); ``wsd`` decays over the last ``optim.decay_frac`` of
    ``train.max_steps`` (rounded to whole steps, never into the warmup); ``linear`` is ``wsd`` decaying linearly
    from the end of warmup (no stable phase)."""
    o, max_steps = cfg.optim, cfg.train.max_steps
    if o.schedule in ("wsd", "linear"):
        end = max(max_steps, o.warmup_iters)
        if o.schedule == "linear":  # the decay starts where the warmup ends, in a straight line
            start, shape = o.warmup_iters, "linear"
        else:
            start, shape = max(end - math.floor(o.decay_frac * max_steps + 0.5), o.warmup_iters), o.decay_shape
        return wsd_lr(step, o.lr, o.min_lr, o.warmup_iters, start, end, shape)
    cycle = o.cosine_cycle_iters if o.cosine_cycle_iters is not None else max(max_steps, o.warmup_iters)
    return cosine_lr(step, o.lr, o.min_lr, o.warmup_iters, cycle)
