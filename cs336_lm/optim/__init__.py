"""Optimisation: the AdamW optimizer, the cosine-with-warmup learning-rate schedule and gradient clipping."""

from cs336_lm.optim.adamw import AdamW, param_groups_for_weight_decay
from cs336_lm.optim.clip import clip_grad_norm_
from cs336_lm.optim.schedule import cosine_lr

__all__ = ["AdamW", "clip_grad_norm_", "cosine_lr", "param_groups_for_weight_decay"]
