"""The config schema: precedence (schema < YAML < overrides), presets, errors naming keys, every shipped YAML."""

import dataclasses
from pathlib import Path

import pytest
import yaml

from cs336_lm.config import Config, from_dict, load_config, summary, to_dict, to_yaml
from cs336_lm.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
DEBUG = REPO / "configs" / "debug.yaml"
REQUIRED = ["data.train_path=tr.npy", "data.val_path=va.npy", "data.tokenizer_dir=tok", "train.out_dir=run"]
SHAPE = {
    "vocab_size": 300,
    "context_length": 16,
    "d_model": 32,
    "num_layers": 2,
    "num_heads": 4,
    "d_ff": 64,
    "rope_theta": 10000.0,
}


def write_yaml(tmp_path, data, name="cfg.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def full(tmp_path, **sections):
    data = {
        "model": dict(SHAPE),
        "data": {"train_path": "tr.npy", "val_path": "va.npy", "tokenizer_dir": "tok"},
        "train": {"out_dir": "run"},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return write_yaml(tmp_path, data)


def test_schema_defaults_then_yaml_then_overrides(tmp_path):
    path = full(tmp_path, optim={"lr": 1e-3, "min_lr": 1e-4}, train={"max_steps": 50})
    cfg = load_config(path)
    assert cfg.optim.lr == 1e-3 and cfg.train.max_steps == 50
    assert cfg.optim.beta2 == 0.95  # schema default, untouched by the file
    cfg = load_config(path, ["optim.lr=2e-3", "train.max_steps=7", "optim.lr=5e-4"])
    assert cfg.optim.lr == 5e-4  # the later override wins
    assert cfg.train.max_steps == 7
    assert cfg.optim.min_lr == 5e-5  # follows lr at the file's ratio (below)
    assert load_config(path, ["optim.min_lr=2e-4"]).optim.min_lr == 2e-4


def test_overrides_parse_types_and_nested_sections(tmp_path):
    cfg = load_config(full(tmp_path), ["train.wandb.enabled=true", "train.compile=False", "optim.grad_clip=0"])
    assert cfg.train.wandb.enabled is True
    assert cfg.train.compile == "false"  # YAML booleans are accepted and normalised
    assert cfg.optim.grad_clip == 0.0 and isinstance(cfg.optim.grad_clip, float)


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        (["optim.lrr=1"], "'optim.lrr'.*did you mean 'optim.lr'"),
        (["lr=1e-3"], r"unknown key 'lr'.*; did you mean 'optim\.lr'\?$"),  # a field of one section, no section given
        (["max_steps=5"], "did you mean 'train.max_steps'"),
        (["train.lr=1e-3"], "unknown key 'train.lr'.*did you mean 'optim.lr'"),  # the wrong section
        (["enabled=true"], "did you mean 'train.wandb.enabled'"),
        (["optim.lr=1e-4", "optim.min_lr=3e-4"], r"optim.min_lr \(0.0003\) must not exceed optim.lr \(0.0001\)"),
        (["trian.max_steps=1"], "'trian'.*did you mean 'train'"),
        (["train.wandb.enabeld=true"], "train.wandb.enabeld.*did you mean 'train.wandb.enabled'"),
        (["train.max_steps=abc"], "wrong type for train.max_steps.*'abc'.*int"),
        (["train.batch_size=2.5"], "wrong type for train.batch_size"),
        (["model.d_model=30"], "divisible by model.num_heads"),
        (["model.d_model=24", "model.num_heads=8"], "must be even"),
        (["train.batch_size=0"], "train.batch_size must be positive"),
        (["optim.lr=-1"], "optim.lr must be >= 0"),
        (["optim.beta2=1.0"], "optim.beta2"),
        (["optim.min_lr=1.0"], "optim.min_lr"),
        (["model.attention=sdp"], "model.attention.*did you mean 'sdpa'"),
        (["model.kernels=cuda"], "model.kernels"),
        (["train.device=gpu"], "train.device"),
        (["train.dtype=fp8"], "train.dtype"),
        (["train.threads=0"], "train.threads must be auto or a positive integer"),
        (["train.threads=many"], "train.threads"),
        (["train.compile=maybe"], "train.compile"),
        (["train.parallel=ddpp"], "train.parallel.*did you mean 'ddp'"),
        (["train.resume="], "train.resume"),
        (["optim.warmup_iters=10", "optim.cosine_cycle_iters=5"], "cosine_cycle_iters"),
        (["train.max_steps"], "must look like section.key=value"),
        (["model=3"], "model"),
        (["optim.lr=inf"], "optim.lr must be a finite number, got inf"),
        (["optim.min_lr=.inf", "optim.lr=.inf"], "optim.lr must be a finite number"),
        (["model.rope_theta=inf"], "model.rope_theta must be a finite number"),
        (["optim.weight_decay=inf"], "optim.weight_decay must be a finite number"),
        (["train.seed=4294967296"], r"train.seed must be below 2\*\*32"),
        (["train.out_dir=runs/caf\udce9"], "is not UTF-8 text"),  # argv bytes that are not UTF-8
        (["optim.name=sgd"], r"^optim.name must be one of adamw, muon; got 'sgd'$"),
        (["optim.name=muom"], "optim.name.*did you mean 'muon'"),
        (["optim.schedule=trapezoid"], r"^optim.schedule must be one of cosine, linear, wsd; got 'trapezoid'$"),
        (["optim.decay_shape=sqrt"], "optim.decay_shape must be one of linear, 1-sqrt"),
        (["optim.decay_frac=1.5"], r"optim.decay_frac must be in \[0, 1\], got 1.5"),
        (
            ["optim.schedule=wsd", "optim.cosine_cycle_iters=500"],
            "optim.cosine_cycle_iters is for optim.schedule=cosine",
        ),
        (
            ["optim.schedule=linear", "optim.cosine_cycle_iters=500"],
            "optim.cosine_cycle_iters is for optim.schedule=cosine; linear decays until train.max_steps",
        ),
        (["optim.momentum=1"], r"optim.momentum must be in \[0, 1\)"),
        (["optim.ns_steps=0"], "optim.ns_steps must be at least 1"),
        (["optim.muon_lr=-0.02"], "optim.muon_lr must be a finite number >= 0"),
        (["optim.embed_lr=inf"], "optim.embed_lr must be a finite number"),
        (["optim.nesterov=maybe"], "wrong type for optim.nesterov"),
        (
            ["optim.name=muon", "train.parallel=fsdp"],
            r"^optim.name=muon cannot train with train.parallel=fsdp: Muon orthogonalizes each weight matrix whole, "
            "and FSDP shards the matrices over the processes; use train.parallel=ddp$",
        ),
    ],
)
def test_bad_values_name_the_key(tmp_path, override, fragment):
    with pytest.raises(ConfigError, match=fragment):
        load_config(full(tmp_path), override)


def test_optimizer_defaults_mean_what_every_config_meant(tmp_path):
    """No optim.name: AdamW under the cosine schedule; the Muon fields are there, the AdamW side at optim.lr."""
    o = load_config(full(tmp_path)).optim
    assert (o.name, o.schedule) == ("adamw", "cosine")
    assert (o.muon_lr, o.embed_lr, o.head_lr, o.gain_lr) == (0.01, None, None, None)
    assert (o.momentum, o.nesterov, o.ns_steps, o.decay_frac, o.decay_shape) == (0.9, True, 5, 0.2, "linear")
    cfg = load_config(
        full(tmp_path), ["optim.name=MUON", "optim.schedule=WSD", "train.parallel=ddp", "optim.muon_lr=null"]
    )
    assert (cfg.optim.name, cfg.optim.schedule) == ("muon", "wsd")  # normalised like the train choices
    assert cfg.optim.muon_lr is None
    assert from_dict(to_dict(cfg)) == cfg


def test_decay_shapes_match_the_schedule():
    from cs336_lm.config import DECAY_SHAPE_CHOICES
    from cs336_lm.optim.schedule import WSD_DECAY_SHAPES

    assert DECAY_SHAPE_CHOICES == WSD_DECAY_SHAPES


def test_unknown_key_in_yaml_names_file_and_key(tmp_path):
    path = full(tmp_path, optim={"weight_decai": 0.1})
    with pytest.raises(ConfigError, match=r"'optim.weight_decai' in config file .*cfg.yaml.*'optim.weight_decay'"):
        load_config(path)


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  d_model: 32\n   num_heads: [4\n")
    with pytest.raises(ConfigError, match=r"bad.yaml, line 3"):
        load_config(path)


def test_yaml_that_is_not_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)


def test_missing_file_and_missing_required_value(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"missing required value data\.train_path"):
        load_config(None, [f"model.{k}={v}" for k, v in SHAPE.items()])


def test_unset_model_field_without_preset(tmp_path):
    shape = {k: v for k, v in SHAPE.items() if k != "d_ff"}
    with pytest.raises(ConfigError, match=r"model\.d_ff is not set"):
        load_config(None, [*REQUIRED, *(f"model.{k}={v}" for k, v in shape.items())])
    with pytest.raises(ConfigError, match=r"wrong type for model\.d_ff .*got None, expected int"):
        load_config(full(tmp_path), ["model.d_ff=null"])


def test_resolved_model_section_has_no_unset_field(tmp_path):
    from cs336_lm.nn import ModelArgs

    cfg = load_config(None, [*REQUIRED, "model.preset=debug"])
    may_be_none = {"preset"} | {f.name for f in dataclasses.fields(ModelArgs) if f.default is None} - {"num_kv_heads"}
    for f in dataclasses.fields(cfg.model):  # None only where None is a setting (logit_softcap: no cap)
        assert getattr(cfg.model, f.name) is not None or f.name in may_be_none, f.name


def test_preset_fills_unset_fields_and_explicit_fields_win(tmp_path):
    from cs336_lm.nn import PRESETS

    name = "tinystories-17m"
    data = {"train_path": "a", "val_path": "b", "tokenizer_dir": "c"}
    path = write_yaml(tmp_path, {"model": {"preset": name, "num_layers": 2}, "data": data})
    cfg = load_config(path, ["train.out_dir=run", "model.vocab_size=123"])
    preset = PRESETS[name]
    assert cfg.model.num_layers == 2  # explicit in the YAML
    assert cfg.model.vocab_size == 123  # explicit on the command line
    for key in ("d_model", "num_heads", "d_ff", "context_length"):
        if key in preset:
            assert getattr(cfg.model, key) == preset[key]
    assert all(getattr(cfg.model, k) is not None for k in SHAPE)


def test_unknown_preset_suggests_a_name(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown model\.preset 'tinystories-17'.*did you mean 'tinystories-17m'"):
        load_config(full(tmp_path), ["model.preset=tinystories-17"])


def test_resolved_config_round_trips_through_yaml_and_dict(tmp_path):
    cfg = load_config(full(tmp_path), ["optim.lr=1e-3"])
    saved = tmp_path / "config.yaml"
    saved.write_text(to_yaml(cfg))
    assert load_config(saved) == cfg
    assert from_dict(to_dict(cfg)) == cfg
    assert set(yaml.safe_load(saved.read_text())["model"]) >= set(SHAPE)
    text = summary(cfg)
    assert (
        "optim: name=adamw lr=0.001 min_lr=0.0001" in text and len(text.splitlines()) == 5
    )  # four sections and a note
    assert text.splitlines()[-1].startswith("note: optim.min_lr=0.0001, scaled with the optim.lr override")
    assert summary(load_config(saved)).count("\n") == 3  # nothing derived: four lines


@pytest.mark.parametrize(
    ("file_lrs", "overrides", "expected"),
    [
        ((3e-3, 3e-4), ["optim.lr=1e-4"], (1e-4, 1e-5)),  # fine-tuning below the file's min_lr
        ((3e-3, 3e-4), ["optim.lr=6e-3"], (6e-3, 6e-4)),  # above: the same rule
        ((3e-3, 0.0), ["optim.lr=1e-4"], (1e-4, 0.0)),
        ((3e-3, 3e-4), ["optim.lr=3e-3"], (3e-3, 3e-4)),  # the file's own value: nothing to scale
        ((3e-3, 3e-4), ["optim.lr=1e-4", "optim.min_lr=1e-6"], (1e-4, 1e-6)),  # the user's min_lr wins
        ((3e-3, 3e-4), ["optim.min_lr=1e-4"], (3e-3, 1e-4)),
        ((3e-3, 3e-4), ["train.max_steps=5"], (3e-3, 3e-4)),
    ],
)
def test_lr_override_scales_min_lr_at_the_files_ratio(tmp_path, file_lrs, overrides, expected):
    path = full(tmp_path, optim={"lr": file_lrs[0], "min_lr": file_lrs[1]})
    cfg = load_config(path, overrides)
    assert (cfg.optim.lr, cfg.optim.min_lr) == expected  # exactly: 1e-05, not 9.999999999999999e-06
    scaled = "min_lr" not in " ".join(overrides) and expected[0] != file_lrs[0]
    assert cfg.notes == (
        [f"note: optim.min_lr={expected[1]:g}, scaled with the optim.lr override to keep the ratio min_lr/lr = "
         f"{file_lrs[1]:g}/{file_lrs[0]:g} of {path}; set optim.min_lr to choose another"]
        if scaled
        else []
    )  # fmt: skip


def test_fine_tuning_the_demo_config_at_a_low_lr_loads():
    """docs/training.md's fine-tuning example: configs/demo.yaml (lr 1e-2, min_lr 1e-3) with optim.lr=1e-4."""
    cfg = load_config(REPO / "configs" / "demo.yaml", ["train.init_from=runs/demo", "optim.lr=1e-4"])
    assert (cfg.optim.lr, cfg.optim.min_lr) == (1e-4, 1e-5)
    assert "configs/demo.yaml" in summary(cfg).splitlines()[-1]
    assert from_dict(to_dict(cfg)) == cfg and from_dict(to_dict(cfg)).notes == []  # a stored config derives nothing


def test_every_field_is_documented():
    """Each schema field has a docstring right below it (the convention the schema file follows)."""
    import ast
    import inspect

    import cs336_lm.config as config_module
    import cs336_lm.nn.args as args_module
    from cs336_lm.nn import ModelArgs

    classes = {}
    for module in (config_module, args_module):  # the model section's fields are ModelArgs'
        tree = ast.parse(inspect.getsource(module))
        classes |= {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    schema = [Config, *(type(getattr(Config(), f.name)) for f in dataclasses.fields(Config) if f.name != "model")]
    schema += [type(Config().train.wandb), ModelArgs]
    for cls in schema:
        body = classes[cls.__name__].body
        for i, node in enumerate(body):
            if isinstance(node, ast.AnnAssign):
                following = body[i + 1] if i + 1 < len(body) else None
                assert isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant), (
                    f"{cls.__name__}.{node.target.id} has no docstring"
                )


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    assert cfg.model.vocab_size > 0 and cfg.train.max_steps > 0
    assert cfg.model.d_model % cfg.model.num_heads == 0


def test_shipped_configs_exist():
    names = {p.name for p in (REPO / "configs").glob("*.yaml")}
    assert {"debug.yaml", "tinystories.yaml", "owt.yaml"} <= names


def test_tinystories_config_trains_on_the_reference_token_budget():
    cfg = load_config(REPO / "configs" / "tinystories.yaml")
    tokens = cfg.train.batch_size * cfg.train.grad_accum_steps * cfg.model.context_length * cfg.train.max_steps
    assert tokens == 327_680_000
    assert cfg.model.vocab_size == 10_000


def test_every_field_is_explained_in_docs_configs():
    text = (REPO / "docs" / "configs.md").read_text()
    sections = {name: getattr(Config(), name) for name in ("model", "data", "optim", "train")}
    sections["train.wandb"] = Config().train.wandb
    for name, section in sections.items():
        for f in dataclasses.fields(section):
            assert f"| `{f.name}` |" in text, f"{name}.{f.name} is missing from docs/configs.md"


def test_a_scaled_min_lr_is_stated_in_the_runs_opening_lines(tiny_config, tmp_path, capsys):
    from cs336_lm.training import train

    cfg = tiny_config(tmp_path / "run", {"optim.lr": 1e-3, "train.max_steps": 1})  # configs/debug.yaml: 1e-2 / 1e-3
    assert cfg.optim.min_lr == 1e-4
    train(cfg)
    out = capsys.readouterr().out
    note = "note: optim.min_lr=0.0001, scaled with the optim.lr override to keep the ratio min_lr/lr = 0.001/0.01"
    assert f"{note} of {DEBUG}" in out
