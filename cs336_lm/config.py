"""The experiment config schema: one dataclass per section, read from YAML with command-line overrides.

``load_config(path, overrides)`` builds ``OmegaConf.structured(Config)``, merges the YAML file over it and then
the ``key=value`` overrides (the later wins), rejects unknown keys and wrong types with a ``ConfigError`` that
names the key and suggests a close match, fills unset ``model`` fields from ``model.preset``
(``cs336_lm.nn.PRESETS``; explicit fields win) and validates the values. The result is a plain ``Config``
dataclass whose ``model`` section is fully explicit (no field is left unset once the preset is applied), so
``to_yaml(cfg)`` is the resolved config a run saves. Every field is documented where it is declared;
docs/configs.md explains them for users.

Layer: above ``nn`` (it reads the presets and the backend names from there), below everything that runs a model.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from omegaconf import MISSING, OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException, ValidationError

from cs336_lm.errors import ConfigError
from cs336_lm.nn import PRESETS, ModelArgs
from cs336_lm.nn.args import check_fields

DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
DTYPE_CHOICES = ("auto", "fp32", "bf16", "fp16")
COMPILE_CHOICES = ("auto", "true", "false")
PARALLEL_CHOICES = ("none", "ddp", "fsdp")
OPTIMIZER_CHOICES = ("adamw", "muon")
SCHEDULE_CHOICES = ("cosine", "linear", "wsd")
DECAY_SHAPE_CHOICES = ("linear", "1-sqrt")  # cs336_lm.optim.schedule.WSD_DECAY_SHAPES


def _model_section() -> type:
    """The ``model`` section: ``preset``, then every field of ``ModelArgs`` (declared and documented there).

    A field without a default is required (``MISSING`` until the YAML file, an override or the preset gives it);
    a field with a default starts unset (None) so that a preset can fill it, and takes ``ModelArgs``' default when
    neither the user nor the preset sets it. ``section.args`` is the ``ModelArgs`` of a resolved section.
    """
    types = typing.get_type_hints(ModelArgs)
    fields: list[tuple[str, Any, Any]] = [("preset", str | None, field(default=None))]
    for f in dataclasses.fields(ModelArgs):
        required = f.default is dataclasses.MISSING
        fields.append(
            (f.name, types[f.name] if required else types[f.name] | None, field(default=MISSING if required else None))
        )
    namespace = {
        "__doc__": "The model: a ``preset`` name and the fields of ``cs336_lm.nn.ModelArgs`` (shape and op backends).",
        "args": property(lambda self: ModelArgs.from_dict(dataclasses.asdict(self))),
    }
    return dataclasses.make_dataclass("ModelConfig", fields, namespace=namespace)


if TYPE_CHECKING:

    class ModelConfig(ModelArgs):  # what the generated section looks like to a type checker
        preset: str | None

        @property
        def args(self) -> ModelArgs: ...

else:
    ModelConfig = _model_section()


@dataclass
class DataConfig:
    """Where the token files and the tokenizer that made them live."""

    train_path: str = MISSING
    """Training tokens: a 1-D ``.npy`` file written by ``lm-tokenize`` (read memory-mapped)."""
    val_path: str = MISSING
    """Validation tokens, same format; evaluated on a fixed set of windows."""
    tokenizer_dir: str = MISSING
    """Tokenizer directory (vocab.json, merges.txt, special_tokens.json); copied into the run directory."""


@dataclass
class OptimConfig:
    """The optimizer (AdamW, or Muon on the blocks' matrices beside AdamW) and the learning-rate schedule."""

    name: str = "adamw"
    """``adamw``: AdamW on every parameter. ``muon``: Muon (``cs336_lm.optim.Muon``: momentum orthogonalized by a
    Newton–Schulz iteration) on the attention and feed-forward matrices inside the blocks, AdamW on the embeddings,
    the LM head and the norm gains, in one optimizer. ``muon`` refuses ``train.parallel: fsdp``."""
    lr: float = 3e-4
    """Peak learning rate, reached at the end of warmup; with ``muon``, that of every group whose own rate is unset."""
    min_lr: float = 3e-5
    """Learning rate at the end of the decay and after it; at most ``lr``. An ``optim.lr`` override without an
    ``optim.min_lr`` one scales this with it, keeping the ratio the file (or the schema) sets: fine-tuning a config
    at a tenth of its ``lr`` decays to a tenth of its ``min_lr``. The run's opening lines say so. With ``muon`` every
    group decays to its own peak rate times ``min_lr / lr``."""
    warmup_iters: int = 100
    """Optimizer steps of linear warmup from 0 to ``lr``."""
    schedule: str = "cosine"
    """``cosine``: a half-cosine from ``lr`` down to ``min_lr`` after warmup. ``linear``: a straight line from ``lr``
    down to ``min_lr`` after warmup. ``wsd`` (warmup–stable–decay): flat at ``lr`` after warmup, then down to
    ``min_lr`` over the last ``decay_frac`` of ``train.max_steps``."""
    cosine_cycle_iters: int | None = None
    """Absolute step at which the cosine decay reaches ``min_lr``; unset means ``train.max_steps`` (``cosine`` only)."""
    decay_frac: float = 0.2
    """``wsd``: the share of ``train.max_steps`` at the end that decays from ``lr`` to ``min_lr``, in [0, 1] (the
    decay never starts before warmup ends)."""
    decay_shape: str = "linear"
    """``wsd``: the decay's shape, ``linear`` or ``1-sqrt`` (1 − √progress: leaves ``lr`` faster, ends gentler)."""
    weight_decay: float = 0.1
    """Decoupled weight decay, applied to matrices only (not to RMSNorm gains); with ``muon`` to the Muon and the
    AdamW matrices alike (RMS-matched Muon takes AdamW's decay; Liu et al. 2025)."""
    beta1: float = 0.9
    """AdamW first-moment decay."""
    beta2: float = 0.95
    """AdamW second-moment decay."""
    eps: float = 1e-8
    """AdamW denominator epsilon."""
    grad_clip: float = 1.0
    """Clip the global gradient L2 norm to this value; 0 disables clipping."""
    muon_lr: float | None = 0.01
    """``muon``: the Muon group's peak learning rate; null means ``lr``. Muon's update is scaled to the RMS of
    AdamW's (0.2·√max(m, n); Liu et al. 2025), which lets Moonlight reuse AdamW's rate, but at this project's
    widths Muon wants more than a tuned AdamW rate: 0.01 is modded-nanogpt's 0.05 at 124M in this scale, and did
    best of 0.003–0.04 at the demo shape (docs/training.md). Provisional, until the recipe benchmark
    (scripts/bench_recipe.py) tunes it."""
    momentum: float = 0.9
    """``muon``: the momentum μ of the Muon group, in [0, 1). 0.9 rather than the 0.95 of Jordan et al. (2024) and
    Moonlight: at this project's budgets of a few hundred steps the shorter memory won at both measured widths (demo
    shape, 270 steps: 1.170 against 1.206; tinystories-17m, 120 steps: 1.46 against 1.67; docs/recipes.md)."""
    nesterov: bool = True
    """``muon``: orthogonalize the Nesterov look-ahead G + μ·B instead of the momentum buffer B."""
    ns_steps: int = 5
    """``muon``: Newton–Schulz iterations per update (at least 1); 5 bring the singular values into about [0.7, 1.2]."""
    embed_lr: float | None = None
    """``muon``: peak learning rate of the AdamW group of the token embeddings (with a tied head, of both); unset
    means ``lr``. Provisional, like ``muon_lr``."""
    head_lr: float | None = None
    """``muon``: peak learning rate of the AdamW group of the LM head (untied); unset means ``lr``. Provisional."""
    gain_lr: float | None = None
    """``muon``: peak learning rate of the AdamW group of the RMSNorm gains; unset means ``lr``. Provisional."""


@dataclass
class WandbConfig:
    """Optional Weights & Biases logging (needs ``pip install wandb``); metrics.jsonl is always written."""

    enabled: bool = False
    """Log metrics to wandb as well; ignored with a warning when wandb is not installed."""
    project: str = "cs336_lm"
    """wandb project name."""
    entity: str | None = None
    """wandb team or user; unset means your default entity."""
    name: str | None = None
    """Run name shown in wandb; unset means the out_dir's name."""


@dataclass
class TrainConfig:
    """The loop: batch shape, length, cadence of logs/evals/checkpoints, device and resume policy."""

    out_dir: str = MISSING
    """Run directory: config.yaml, tokenizer/, metrics.jsonl and checkpoints/ are written here."""
    batch_size: int = 32
    """Sequences per micro-batch (per process)."""
    grad_accum_steps: int = 1
    """Micro-batches whose gradients are summed (averaged) into one optimizer step."""
    max_steps: int = 1000
    """Optimizer steps to train for in total (a resumed run continues up to this step)."""
    eval_every: int = 200
    """Evaluate the validation loss every this many steps and at the end; 0 evaluates only at the end."""
    eval_batches: int = 20
    """Validation batches (of ``batch_size`` windows) per evaluation; the windows are the same every time."""
    log_every: int = 10
    """Print and record a metrics line every this many steps."""
    ckpt_every: int = 500
    """Save a checkpoint every this many steps and at the end; 0 saves only at the end."""
    keep_last: int = 3
    """Checkpoints kept in ``checkpoints/`` (older ones are deleted); at least 1."""
    diverge_margin: float = 3.0
    """Stop as diverged (exit status 1) when a logged training loss rises this many nats above the first step's
    loss; 0 turns the check off (a NaN/inf loss always stops the run). A healthy run never climbs back above its
    start; a learning rate too high for the model does within a few hundred steps."""
    seed: int = 0
    """Seeds the model initialisation and the batch sampler (the sampler also folds in the process rank)."""
    device: str = "auto"
    """``auto`` (cuda > mps > cpu), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``."""
    dtype: str = "auto"
    """Compute dtype: ``auto`` (bf16 autocast where the hardware has native bf16, fp16 with loss scaling on CUDA GPUs
    without it, else fp32), ``fp32``, ``bf16`` or ``fp16`` (autocast + dynamic loss scaling)."""
    threads: str = "auto"
    """torch's intra-op CPU threads: ``auto`` (``OMP_NUM_THREADS`` if set, else one per idle core: usable CPUs minus
    those other work keeps busy right now) or a positive integer."""
    reuse_cpu_memory: bool = True
    """On the CPU with glibc: keep freed memory for the next step instead of handing every block of over 32 MB back to
    the kernel (which zeroes it again); 11–15% faster steps, and the process holds its peak memory until it exits."""
    deterministic: bool = False
    """Deterministic kernels only (``torch.use_deterministic_algorithms``): runs of one config are bitwise equal on
    one machine; with ``threads: auto`` a CPU run takes 1 thread. docs/training.md, "What is bitwise"."""
    compile: str = "auto"
    """``torch.compile`` the model: ``auto`` (on CUDA only), ``true`` or ``false``; falls back to eager on failure."""
    resume: str = "auto"
    """``auto``: continue from out_dir's latest checkpoint if any; ``none``: refuse an existing run; or a path."""
    init_from: str | None = None
    """Fine-tune: start from the weights of this run directory, checkpoint or imported run (``lm-import``) — weights
    only: the optimizer, the step count and the RNG start fresh. Ignored once out_dir holds a checkpoint to resume."""
    parallel: str = "none"
    """Multi-process strategy under torchrun: ``none``, ``ddp`` (replicated model, all-reduced gradients) or ``fsdp``
    (FSDP2, sharded per block); without torchrun ``ddp``/``fsdp`` warn and train one process. docs/training.md."""
    tensorboard: bool = False
    """Also write TensorBoard event files into ``out_dir/tensorboard/`` (needs ``pip install tensorboard``)."""
    wandb: WandbConfig = field(default_factory=WandbConfig)
    """Optional Weights & Biases logging."""


@dataclass
class Config:
    """A whole experiment: what model, on what data, optimised how, trained how."""

    model: ModelConfig = field(default_factory=ModelConfig)  # type: ignore[arg-type]
    """The model's shape (or a preset) and op backends."""
    data: DataConfig = field(default_factory=DataConfig)
    """Token files and tokenizer."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimizer and learning-rate schedule."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Loop, logging, checkpoints, device."""

    def __post_init__(self) -> None:
        self.notes: list[str] = []  # what load_config derived for the user; summary() prints it, nothing saves it


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Schema ← YAML file ← ``key=value`` overrides (later wins), then presets and validation.

    Example: ``load_config("configs/debug.yaml", ["optim.lr=1e-3", "train.max_steps=20"])``.
    """
    merged = OmegaConf.structured(Config)
    if path is not None:
        merged = _merge(merged, _read_yaml(Path(path)), f"config file {path}")
    notes = []
    if overrides:
        parsed = _parse_overrides(overrides)
        before = (merged.optim.lr, merged.optim.min_lr)
        merged = _merge(merged, parsed, "command-line overrides")
        notes = _min_lr_follows_lr(merged.optim, before, parsed.get("optim"), path)
    cfg = _resolve(merged)
    cfg.notes.extend(notes)
    return cfg


def _min_lr_follows_lr(optim: Any, before: tuple[float, float], given: Any, path: str | Path | None) -> list[str]:
    """An ``optim.lr`` override without an ``optim.min_lr`` one scales ``min_lr`` by the same factor, so the schedule
    keeps the shape the file gave it: ``lr`` 3e-3 → 1e-4 takes ``min_lr`` 3e-4 → 1e-5. Returns the note to print."""
    lr, min_lr = before
    if not isinstance(given, dict) or "lr" not in given or "min_lr" in given:
        return []
    if optim.lr == lr or not (math.isfinite(lr) and lr > 0 and math.isfinite(min_lr)):
        return []
    optim.min_lr = float(f"{optim.lr * (min_lr / lr):.12g}")  # 12 digits: no 9.999999999999999e-06
    source = str(path) if path is not None else "the schema defaults"
    return [
        f"note: optim.min_lr={optim.min_lr:g}, scaled with the optim.lr override to keep the ratio min_lr/lr = "
        f"{min_lr:g}/{lr:g} of {source}; set optim.min_lr to choose another"
    ]


def from_dict(data: dict[str, Any]) -> Config:
    """Rebuild a resolved ``Config`` from a plain dict (e.g. the ``config`` stored in a checkpoint)."""
    return _resolve(_merge(OmegaConf.structured(Config), data, "stored config"))


def model_from_dict(data: dict[str, Any]) -> ModelConfig:
    """A resolved ``ModelConfig`` from a plain ``model`` section (e.g. ``checkpoint["config"]["model"]``)."""
    merged = _merge(OmegaConf.structured(ModelConfig), data, "stored model config")
    apply_preset(merged)
    apply_defaults(merged)
    try:
        model = OmegaConf.to_object(merged)
    except MissingMandatoryValue as e:
        raise ConfigError(f"the stored model config has no {e.full_key}") from None
    assert isinstance(model, ModelConfig)
    return model


def _resolve(merged: Any) -> Config:
    """The merged ``DictConfig`` → a validated ``Config``: the preset fills the unset shape fields first."""
    apply_preset(merged.model)
    apply_defaults(merged.model)
    try:
        cfg = OmegaConf.to_object(merged)
    except MissingMandatoryValue as e:
        key = e.full_key or "?"
        if key.startswith("model."):
            raise ConfigError(f"{key} is not set: give it explicitly or choose a model.preset that has it") from None
        raise ConfigError(f"missing required value {key}: set it in the YAML file or as {key}=...") from None
    assert isinstance(cfg, Config)
    validate(cfg)
    return cfg


def to_dict(cfg: Config) -> dict[str, Any]:
    """The config as plain nested dicts (JSON/YAML/``torch.save`` friendly)."""
    return dataclasses.asdict(cfg)


def to_yaml(cfg: Config) -> str:
    """The config as YAML text, sections in schema order."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def summary(cfg: Config) -> str:
    """A compact one-line-per-section view, e.g. ``model: vocab_size=10000 context_length=256 …``, then the notes of
    ``load_config`` (a ``min_lr`` it scaled)."""
    lines = []
    for section, values in to_dict(cfg).items():
        flat = _flatten(values)
        lines.append(f"{section}: " + " ".join(f"{k}={v}" for k, v in flat.items()))
    return "\n".join(lines + cfg.notes)


def apply_preset(model: Any) -> None:
    """Fill the unset fields of the ``model`` section (a ``DictConfig``) from ``PRESETS[model.preset]``; fields
    given explicitly win."""
    if model.preset is None:
        return
    if model.preset not in PRESETS:
        raise ConfigError(f"unknown model.preset {model.preset!r}{_did_you_mean(model.preset, PRESETS)}")
    for key, value in dict(PRESETS[model.preset]).items():  # the fields the preset sets (ModelArgs.keys)
        if OmegaConf.is_missing(model, key) or model[key] is None:
            model[key] = value


def apply_defaults(model: Any) -> None:
    """Fill the fields still unset once the preset is applied with ``ModelArgs``' defaults; ``num_kv_heads`` (None:
    as many as ``num_heads``) is written out, so the resolved config says what the model has."""
    for f in dataclasses.fields(ModelArgs):
        if f.default is not dataclasses.MISSING and model[f.name] is None:
            model[f.name] = f.default
    if model.num_kv_heads is None and not OmegaConf.is_missing(model, "num_heads"):
        model.num_kv_heads = model.num_heads


def validate(cfg: Config) -> None:
    """Check values the types cannot express; raise ``ConfigError`` naming the first bad key."""
    o, t = cfg.optim, cfg.train
    try:
        check_fields(cfg.model, prefix="model.")
    except ValueError as e:
        raise ConfigError(str(e)) from None
    positive = {
        "train.batch_size": t.batch_size,
        "train.grad_accum_steps": t.grad_accum_steps,
        "train.max_steps": t.max_steps,
        "train.eval_batches": t.eval_batches,
        "train.log_every": t.log_every,
        "train.keep_last": t.keep_last,
    }
    for key, value in positive.items():
        if not value > 0:
            raise ConfigError(f"{key} must be positive, got {value}")
    non_negative = {
        "optim.lr": o.lr,
        "optim.min_lr": o.min_lr,
        "optim.warmup_iters": o.warmup_iters,
        "optim.weight_decay": o.weight_decay,
        "optim.eps": o.eps,
        "optim.grad_clip": o.grad_clip,
        "train.eval_every": t.eval_every,
        "train.ckpt_every": t.ckpt_every,
        "train.seed": t.seed,
        "train.diverge_margin": t.diverge_margin,
    }
    for key, number in non_negative.items():
        if not number >= 0:
            raise ConfigError(f"{key} must be >= 0, got {number}")
    _validate_bounds(cfg)
    if o.min_lr > o.lr:
        raise ConfigError(f"optim.min_lr ({o.min_lr}) must not exceed optim.lr ({o.lr})")
    for key, beta in {"optim.beta1": o.beta1, "optim.beta2": o.beta2}.items():
        if not 0 <= beta < 1:
            raise ConfigError(f"{key} must be in [0, 1), got {beta}")
    if o.cosine_cycle_iters is not None and o.cosine_cycle_iters <= o.warmup_iters:
        raise ConfigError(
            f"optim.cosine_cycle_iters ({o.cosine_cycle_iters}) must exceed optim.warmup_iters ({o.warmup_iters})"
        )
    _validate_choices(cfg)
    _validate_optimizer(cfg)


def _validate_optimizer(cfg: Config) -> None:
    """The Muon fields' ranges, the ``wsd`` schedule's, and the combinations that cannot train."""
    o = cfg.optim
    rates = {"optim.muon_lr": o.muon_lr, "optim.embed_lr": o.embed_lr, "optim.head_lr": o.head_lr}
    for key, value in {**rates, "optim.gain_lr": o.gain_lr}.items():
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"{key} must be a finite number >= 0 (or null: optim.lr), got {value}")
    if not 0 <= o.momentum < 1:
        raise ConfigError(f"optim.momentum must be in [0, 1), got {o.momentum}")
    if o.ns_steps < 1:
        raise ConfigError(f"optim.ns_steps must be at least 1, got {o.ns_steps}")
    if not 0 <= o.decay_frac <= 1:
        raise ConfigError(f"optim.decay_frac must be in [0, 1], got {o.decay_frac}")
    if o.schedule != "cosine" and o.cosine_cycle_iters is not None:
        decays = {"wsd": "over the last optim.decay_frac of train.max_steps", "linear": "until train.max_steps"}
        raise ConfigError(
            f"optim.cosine_cycle_iters is for optim.schedule=cosine; {o.schedule} decays {decays[o.schedule]}: "
            "unset one of them"
        )
    if o.name == "muon" and cfg.train.parallel == "fsdp":
        raise ConfigError(
            "optim.name=muon cannot train with train.parallel=fsdp: Muon orthogonalizes each weight matrix whole, "
            "and FSDP shards the matrices over the processes; use train.parallel=ddp"
        )


def _validate_bounds(cfg: Config) -> None:
    """Numbers that must be finite (an infinite learning rate or RoPE base only shows later, as a NaN loss) and
    the seed's range."""
    o = cfg.optim
    finite = {
        "optim.lr": o.lr,
        "optim.min_lr": o.min_lr,
        "optim.eps": o.eps,
        "optim.weight_decay": o.weight_decay,
    }
    for key, value in finite.items():
        if not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, got {value}")
    if cfg.train.seed >= 2**32:  # NumPy's global seed is 32 bits
        raise ConfigError(f"train.seed must be below 2**32, got {cfg.train.seed}")


def _validate_choices(cfg: Config) -> None:
    """Normalise (lower-case) and check the string-valued choice fields."""
    t, o = cfg.train, cfg.optim
    t.compile, t.dtype, t.parallel = t.compile.lower(), t.dtype.lower(), t.parallel.lower()
    o.name, o.schedule, o.decay_shape = o.name.lower(), o.schedule.lower(), o.decay_shape.lower()
    choices = {
        "optim.name": (o.name, OPTIMIZER_CHOICES),
        "optim.schedule": (o.schedule, SCHEDULE_CHOICES),
        "optim.decay_shape": (o.decay_shape, DECAY_SHAPE_CHOICES),
        "train.dtype": (t.dtype, DTYPE_CHOICES),
        "train.compile": (t.compile, COMPILE_CHOICES),
        "train.parallel": (t.parallel, PARALLEL_CHOICES),
    }
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            hint = _did_you_mean(value, allowed)
            raise ConfigError(f"{key} must be one of {', '.join(allowed)}; got {value!r}{hint}")
    t.threads = str(t.threads).strip().lower()
    if t.threads != "auto" and not (t.threads.isdigit() and int(t.threads) > 0):
        raise ConfigError(f"train.threads must be auto or a positive integer; got {t.threads!r}")
    if not DEVICE_RE.match(t.device):
        raise ConfigError(f"train.device must be auto, cpu, cuda, cuda:N or mps; got {t.device!r}")
    if not t.resume:
        raise ConfigError("train.resume must be auto, none or a checkpoint path; got an empty string")


def _read_yaml(path: Path) -> Any:
    """Parse a YAML file; errors name the file and line."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"malformed YAML in {path}{where}: {problem}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections (model, data, optim, train)")
    return data


def _parse_overrides(overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["optim.lr=1e-3", "train.wandb.enabled=true"]`` -> nested dict; values are parsed as YAML scalars."""
    for item in overrides:
        key, sep, _ = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like section.key=value (e.g. optim.lr=1e-3)")
        try:
            item.encode("utf-8")
        except UnicodeEncodeError:  # bytes that are not UTF-8 arrive from argv as lone surrogates
            raise ConfigError(f"override {item!r} is not UTF-8 text (a config, and the paths in it, are)") from None
    try:
        parsed = OmegaConf.to_container(OmegaConf.from_dotlist(list(overrides)))
    except (OmegaConfBaseException, yaml.YAMLError) as e:
        raise ConfigError(f"cannot parse overrides {' '.join(overrides)}: {str(e).splitlines()[0]}") from None
    assert isinstance(parsed, dict)
    return {str(k): v for k, v in parsed.items()}


def _merge(base: Any, data: Any, source: str) -> Any:
    """``OmegaConf.merge`` with schema errors turned into ``ConfigError``s naming the key and a close match."""
    _check_sections(data, source)
    try:
        return OmegaConf.merge(base, data)
    except ConfigKeyError as e:
        full_key = e.full_key or str(e.key)
        parent = full_key.rpartition(".")[0]
        known = [f"{parent}.{k}" if parent else k for k in _keys_at(parent)]
        hint = _in_another_section(full_key) or _did_you_mean(full_key, known)
        raise ConfigError(f"unknown key {full_key!r} in {source}{hint}") from None
    except ValidationError as e:
        if e.full_key:
            expected = _field_type(e.full_key)
            hint = f", expected {expected}" if expected else ""
            raise ConfigError(f"wrong type for {e.full_key} in {source}: got {e.value!r}{hint}") from None
        raise ConfigError(f"invalid structure in {source}: {str(e).splitlines()[0]}") from None
    except OmegaConfBaseException as e:
        raise ConfigError(f"invalid {source}: {str(e).splitlines()[0]}") from None


def _check_sections(data: Any, source: str, prefix: str = "") -> None:
    """Reject a scalar where the schema has a section (``model: 3``), naming the section."""
    if not isinstance(data, dict):
        return
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if _keys_at(dotted) and value is not None:
            if not isinstance(value, dict):
                raise ConfigError(f"{dotted} in {source} must be a section of key: value pairs, got {value!r}")
            _check_sections(value, source, f"{dotted}.")


def _section_class(dotted: str) -> type | None:
    """The schema dataclass of the section at ``dotted`` ("" is ``Config``), or None if it is not a section."""
    cls: Any = Config
    for part in filter(None, dotted.split(".")):
        fields = {f.name: f for f in dataclasses.fields(cls)}
        factory = fields[part].default_factory if part in fields else dataclasses.MISSING
        if factory is dataclasses.MISSING or not dataclasses.is_dataclass(factory):
            return None
        cls = factory
    return cls


def _keys_at(dotted: str) -> list[str]:
    """Field names of the schema section at ``dotted`` ("" is the top level, "train.wandb" a nested one)."""
    cls = _section_class(dotted)
    return [f.name for f in dataclasses.fields(cls)] if cls else []


def _field_type(dotted: str) -> str | None:
    """The declared type of a schema field as text, e.g. ``int | None`` for ``model.d_model``."""
    section, _, leaf = dotted.rpartition(".")
    cls = _section_class(section)
    fields = {f.name: f for f in dataclasses.fields(cls)} if cls else {}
    if leaf not in fields:
        return None
    declared = fields[leaf].type
    return declared.__name__ if isinstance(declared, type) else str(declared)


def _in_another_section(dotted: str) -> str:
    """``"; did you mean 'optim.lr'?"`` for ``lr`` or ``train.lr``: the fields of that name in other sections."""
    leaf = dotted.rpartition(".")[2]
    found = [key for key in _all_fields() if key.rpartition(".")[2] == leaf]
    return f"; did you mean {' or '.join(map(repr, found))}?" if found else ""


def _all_fields(prefix: str = "") -> list[str]:
    """Every leaf field of the schema, dotted: ``model.preset``, …, ``train.wandb.name``."""
    keys = []
    for name in _keys_at(prefix.rstrip(".")):
        dotted = f"{prefix}{name}"
        keys.extend(_all_fields(f"{dotted}.") if _keys_at(dotted) else [dotted])
    return keys


def _did_you_mean(word: str, options: Any) -> str:
    """``"; did you mean 'lr'?"`` for the closest option by difflib ratio, or ``""`` when none is close."""
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"wandb": {"enabled": False}}`` -> ``{"wandb.enabled": False}``."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
