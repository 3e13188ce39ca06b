"""Optimisation: the AdamW and Muon optimizers, the cosine and warmup–stable–decay learning-rate schedules and gradient
clipping."""

from cs336_lm.optim.adamw import AdamW, param_groups_for_weight_decay
from cs336_lm.optim.clip import clip_grad_norm_
from cs336_lm.optim.muon import Muon, muon_param_groups
from cs336_lm.optim.schedule import cosine_lr, wsd_lr

__all__ = [
    "AdamW",
    "Muon",
    "clip_grad_norm_",
    "cosine_lr",
    "muon_param_groups",
    "param_groups_for_weight_decay",
    "wsd_lr",
]
