"""Several processes under torchrun: the process group, DDP/FSDP2 wrapping, gradient sync, collectives, full state.

Everything here is a no-op or the plain single-process operation when no process group is initialised, so the
trainer calls it unconditionally. ``init_process_group`` joins the group torchrun describes (NCCL on CUDA, Gloo
on CPU); ``wrap`` applies ``DistributedDataParallel`` or FSDP2's ``fully_shard`` (each ``TransformerBlock``,
then the root); ``gradient_sync`` skips the all-reduce / reduce-scatter on non-final accumulation micro-steps;
``local_grads`` gives this rank's part of every gradient (for the loss scaler's unscale and overflow check);
``clip_grad_norm`` clips by the global norm also when FSDP's gradients are sharded ``DTensor``s;
``full_model_state`` / ``full_optimizer_state`` gather the unsharded state dicts a checkpoint stores (the same
format a single process writes) and ``load_optimizer_state`` puts such a state back into a sharded optimizer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any, TypeVar, cast

import torch
import torch.distributed as dist
from torch import nn

from cs336_lm.errors import CheckpointError, ConfigError, LMError, PeerFailure
from cs336_lm.nn import TransformerLM
from cs336_lm.optim import clip_grad_norm_
from cs336_lm.training.runtime import ProcessInfo

T = TypeVar("T")

# How long a collective waits for a slow or lost peer before failing (a checkpoint write on rank 0 must fit).
PROCESS_GROUP_TIMEOUT = timedelta(minutes=10)


def active() -> bool:
    """Whether this process is part of an initialised process group."""
    return dist.is_available() and dist.is_initialized()


def init_process_group(proc: ProcessInfo, device: torch.device, timeout: timedelta = PROCESS_GROUP_TIMEOUT) -> None:
    """Join torchrun's process group (``MASTER_ADDR``/``MASTER_PORT`` rendezvous): NCCL on CUDA, Gloo on CPU."""
    if not proc.distributed or active():
        return
    if device.type not in ("cuda", "cpu"):
        raise ConfigError(f"train.parallel needs CUDA or CPU devices; got {device} (use train.device=cpu)")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, rank=proc.rank, world_size=proc.world_size, timeout=timeout)


def destroy_process_group() -> None:
    """Leave the process group (on exit, error or signal); nothing to do when none was joined."""
    if active():
        dist.destroy_process_group()


@contextlib.contextmanager
def process_group_session() -> Iterator[None]:
    """Around a whole run: leave the process group on every exit, and turn a collective that failed because
    another rank died into a one-line ``PeerFailure`` (the dead rank reports its own error)."""
    try:
        yield
        # A clean finish: wait for every rank before leaving, so no rank tears down its Gloo connections while a
        # peer still uses them (rank 0 writing the last checkpoint); an early teardown can abort that peer.
        if active():
            dist.barrier()
    except RuntimeError as e:
        if not lost_peer(e):
            raise
        first_line = str(e).strip().splitlines()[0][:200]
        raise PeerFailure(f"rank {dist.get_rank()} lost contact with another rank ({first_line})") from None
    finally:
        destroy_process_group()


def wrap(model: TransformerLM, parallel: str, device: torch.device) -> nn.Module:
    """``ddp``: a ``DistributedDataParallel`` around ``model``; ``fsdp``: ``fully_shard`` per block, then the root.

    ``fully_shard`` works in place (the returned module is ``model``, its parameters become sharded DTensors), so
    build the optimizer after this call. Without a process group the model is returned as it is.
    """
    if not active() or parallel == "none":
        return model
    if parallel == "ddp":  # buffers (RoPE tables) are computed alike on every rank: no broadcast every forward
        device_ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=device_ids, forward_sync_buffers=False)
    from torch.distributed.fsdp import fully_shard

    for block in model.layers:
        fully_shard(block)
    fully_shard(model)
    return model


@contextlib.contextmanager
def gradient_sync(wrapped: Any, enabled: bool) -> Iterator[None]:
    """Run a micro-step's backward with (``enabled``) or without the cross-rank gradient reduction.

    DDP: ``no_sync()`` (gradients accumulate locally and are all-reduced by the final micro-step's backward).
    FSDP2: ``set_requires_gradient_sync(False)`` (unsharded gradients accumulate; the final one reduce-scatters).
    """
    if enabled or not active():
        yield
    elif isinstance(wrapped, nn.parallel.DistributedDataParallel):
        with wrapped.no_sync():
            yield
    elif hasattr(wrapped, "set_requires_gradient_sync"):
        wrapped.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            wrapped.set_requires_gradient_sync(True)
    else:
        yield


def lost_peer(error: BaseException) -> bool:
    """Whether ``error`` is a collective failing because another rank is gone (it reports its own cause).

    ``torch.distributed.DistError`` covers NCCL timeouts and store errors; Gloo raises a plain ``RuntimeError``
    ("Connection closed by peer … typically caused by a remote worker crashing").
    """
    if not active():
        return False
    if isinstance(error, dist.DistError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("gloo" in text or "NCCL" in text or "remote worker" in text)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all ranks in place (unchanged in a single process); returns it."""
    if active():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), indexed by rank; ``[obj]`` in a single process."""
    if not active():
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def on_every_rank(setup: Callable[[], T], proc: ProcessInfo) -> T:
    """``setup()`` on every rank, then ``agree_on_setup``: its result when it succeeded everywhere."""
    error, result = None, None
    try:
        result = setup()
    except LMError as e:
        error = e
    agree_on_setup(error, proc)
    return cast(T, result)


def agree_on_setup(error: LMError | None, proc: ProcessInfo) -> None:
    """Raise on every rank when setup failed on any; the main process alone says why, once.

    Each rank's error message is exchanged, so no rank waits at its first collective for a peer that already
    gave up. The main process raises its own error, or names the first failing rank and its message; the other
    ranks raise a quiet ``PeerFailure``.
    """
    messages = all_gather(None if error is None else str(error))
    failed = [(rank, m) for rank, m in enumerate(messages) if m is not None]
    if not failed:
        return
    if proc.is_main and error is not None:
        raise error
    rank, message = failed[0]
    raise PeerFailure(f"rank {rank} failed: {message}", quiet=not proc.is_main)


def local_grads(params: list[nn.Parameter]) -> list[torch.Tensor]:
    """This rank's part of every gradient as plain tensors aliasing it: the whole gradient for a plain or DDP model,
    the local shard (``to_local()``) of FSDP2's ``DTensor`` gradients. In-place changes reach the gradients."""
    grads: list[Any] = [p.grad for p in params if p.grad is not None]
    return [g.to_local() if hasattr(g, "to_local") else g for g in grads]


def clip_grad_norm(params: list[nn.Parameter], max_norm: float, eps: float = 1e-6) -> torch.Tensor:
    """Clip all gradients by their global L2 norm ``sqrt(Σ g²)`` (as ``cs336_lm.optim.clip_grad_norm_``).

    Plain or DDP gradients (already all-reduced) are whole on every rank: the local norm is the global one. FSDP2
    gradients are ``DTensor`` shards with no overlap: ``Σ g²`` is summed over the local shards and then over
    ranks, and every shard is scaled by ``min(1, max_norm / (‖g‖ + eps))``.
    """
    grads: list[Any] = [p.grad for p in params if p.grad is not None]  # plain tensors, or DTensor shards
    if not grads or not hasattr(grads[0], "to_local"):
        return clip_grad_norm_(params, max_norm, eps)
    with torch.no_grad():
        local = local_grads(params)  # this rank's shards, aliasing the gradients
        squares = torch.stack([n.square() for n in torch._foreach_norm(local, 2.0)]).sum()
        total = all_reduce_sum(squares.to(torch.float32)).sqrt()
        torch._foreach_mul_(local, torch.clamp(max_norm / (total + eps), max=1.0))
    return total


def _full(value: Any, keep: bool) -> Any:
    """A ``DTensor`` gathered whole (a collective every rank joins), as a CPU tensor where ``keep``, else None."""
    if hasattr(value, "full_tensor"):
        whole = value.full_tensor()
        return whole.cpu() if keep else None
    return value.cpu() if isinstance(value, torch.Tensor) else value


def full_model_state(model: nn.Module, sharded: bool) -> dict[str, Any]:
    """The whole, unwrapped state dict (CPU); with FSDP gathered on every rank's call, kept on rank 0 only."""
    if not sharded:
        return model.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def full_optimizer_state(optimizer: torch.optim.Optimizer, sharded: bool) -> dict:
    """``optimizer.state_dict()`` with every sharded moment gathered whole: the single-process format (ids 0..n−1).

    Every rank must call it (each ``DTensor`` gather is a collective, taken in the same order everywhere); the
    whole tensors are kept on rank 0 only (the others get ``None`` in their place).
    """
    state = optimizer.state_dict()
    if not sharded:
        return state
    keep = dist.get_rank() == 0  # only rank 0 writes; the others drop each gathered tensor at once
    gathered = {i: {k: _full(v, keep) for k, v in s.items()} for i, s in sorted(state["state"].items())}
    return {"state": gathered, "param_groups": state["param_groups"]}


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict | None, name: str) -> None:
    """Load a whole (single-process format) optimizer state; moments of sharded parameters are sharded like them."""
    if state is None:
        raise CheckpointError(
            f"{name} has no optimizer state to resume from (weights only, e.g. lm-import's): fine-tune from it in "
            f"a new train.out_dir with train.init_from={name}"
        )
    params = [p for group in optimizer.param_groups for p in group["params"]]
    try:
        per_param = {}
        for i, values in state["state"].items():
            per_param[i] = {k: _shard_like(params[int(i)], v) for k, v in values.items()}
        optimizer.load_state_dict({"state": per_param, "param_groups": state["param_groups"]})
    except (ValueError, KeyError, IndexError) as e:
        raise CheckpointError(f"{name}: optimizer state does not match this optimizer: {e}") from None


def _shard_like(param: Any, value: Any) -> Any:
    """``value`` placed like ``param``: a whole tensor of ``param``'s shape becomes a DTensor with its placements."""
    if not hasattr(param, "device_mesh") or not isinstance(value, torch.Tensor) or value.shape != param.shape:
        return value
    from torch.distributed.tensor import distribute_tensor

    local_device = param.to_local().device
    return distribute_tensor(value.to(local_device), param.device_mesh, param.placements)
