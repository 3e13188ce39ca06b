"""What a run is built from besides the model: seeded RNGs, the optimizer, per-rank batch samplers, the LR schedule
and the FLOP count behind MFU.

Small functions of the config that ``cs336_lm.training.setup`` composes: ``seed_everything``, ``build_optimizer``
(AdamW, decay on matrices only), ``batch_generator`` (one independent stream per rank), ``lr_at`` (the cosine
schedule) and ``training_flops_per_token``. The model itself comes from ``cs336_lm.run.build_model``.
"""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import torch

from cs336_lm.config import Config
from cs336_lm.nn import ModelArgs, accounting
from cs336_lm.optim import AdamW, cosine_lr, param_groups_for_weight_decay


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


def build_optimizer(model: torch.nn.Module, cfg: Config) -> AdamW:
    """AdamW over ``model`` with weight decay on matrices only (``param_groups_for_weight_decay``)."""
    o = cfg.optim
    groups = param_groups_for_weight_decay(model, o.weight_decay)
    return AdamW(groups, lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps, weight_decay=o.weight_decay)


def training_flops_per_token(cfg: Config) -> float:
    """Forward + backward matmul FLOPs per token of ``cfg.model`` (``cs336_lm.nn.accounting``), for MFU."""
    return accounting.training_flops_per_token(ModelArgs.from_dict(dataclasses.asdict(cfg.model)))


def lr_at(step: int, cfg: Config) -> float:
    """The cosine schedule of ``cfg.optim`` at 0-based ``step``; the decay ends at ``train.max_steps`` unless set."""
    o = cfg.optim
    cycle = o.cosine_cycle_iters if o.cosine_cycle_iters is not None else max(cfg.train.max_steps, o.warmup_iters)
    return cosine_lr(step, o.lr, o.min_lr, o.warmup_iters, cycle)
