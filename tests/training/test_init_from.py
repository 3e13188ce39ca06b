"""``train.init_from``: fine-tuning starts from another run's weights — step 0, a fresh optimizer and RNG.

Sources: a run directory, a checkpoint file, and a run written by ``lm-import`` (from ``lm-export``'s folder).
A source of another shape or tokenizer is refused with one line naming the fields; a run that already has
checkpoints of its own resumes from them instead.
"""

import pytest
import torch

from cs336_lm.cli.train import main as train_main
from cs336_lm.config import load_config
from cs336_lm.errors import CheckpointError, ConfigError
from cs336_lm.run import RunDir, read_checkpoint, save_checkpoint
from cs336_lm.tokenizer import Tokenizer
from cs336_lm.training.metrics import read_metrics
from cs336_lm.training.setup import setup

from .conftest import DEBUG_CONFIG, tiny_overrides


def cli_args(run_inputs, out, extra=None) -> list[str]:
    return ["--config", str(DEBUG_CONFIG), *tiny_overrides(run_inputs, out, extra)]


@pytest.fixture
def source_run(tmp_path, run_inputs):
    """A finished 6-step run: the weights to start from."""
    assert train_main(cli_args(run_inputs, tmp_path / "source")) == 0
    return tmp_path / "source"


def weights(path):
    return read_checkpoint(RunDir.locate(path)[0])["model"]


@pytest.mark.parametrize("form", ["run", "checkpoint"])
def test_starts_from_the_weights_at_step_zero(source_run, tmp_path, tiny_config, form):
    src = source_run if form == "run" else RunDir(source_run).latest()
    job = setup(tiny_config(tmp_path / "ft", {"train.init_from": src}))
    ours, theirs = job.model.state_dict(), weights(source_run)
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert job.progress.step == 0 and job.resumed_from is None
    assert job.optimizer.state_dict()["state"] == {}  # fresh moments
    assert any(note.startswith("initialised from") and "weights only" in note for note in job.notes)


def test_fine_tuning_run_trains_from_step_zero(source_run, tmp_path, run_inputs, capsys):
    ft = tmp_path / "ft"
    assert train_main(cli_args(run_inputs, ft, {"train.init_from": source_run, "train.max_steps": 3})) == 0
    assert "initialised from" in capsys.readouterr().out
    steps = [r["step"] for r in read_metrics(ft / "metrics.jsonl") if "loss" in r]
    assert steps[0] == 1 and RunDir(ft).latest().name == "step_00000003.pt"
    fresh = tmp_path / "fresh"
    assert train_main(cli_args(run_inputs, fresh, {"train.max_steps": 3})) == 0
    first = lambda run: next(r["loss"] for r in read_metrics(run / "metrics.jsonl") if "loss" in r)
    assert first(ft) < first(fresh)  # it starts where the source run ended, not from random weights


def test_resuming_run_ignores_init_from(source_run, tmp_path, run_inputs, tiny_config):
    ft = tmp_path / "ft"
    assert train_main(cli_args(run_inputs, ft, {"train.max_steps": 3})) == 0
    job = setup(tiny_config(ft, {"train.init_from": source_run, "train.max_steps": 6}))
    assert job.progress.step == 3 and job.resumed_from == RunDir(ft).latest()


def test_imported_run(source_run, tmp_path, tiny_config, run_inputs):
    from cs336_lm.interop.export import export_run
    from cs336_lm.interop.import_ import import_hf

    export_run(source_run, tmp_path / "hf")
    import_hf(tmp_path / "hf", tmp_path / "imported")
    job = setup(tiny_config(tmp_path / "ft", {"train.init_from": tmp_path / "imported"}))
    theirs = weights(source_run)
    assert all(torch.equal(job.model.state_dict()[k], theirs[k]) for k in theirs)
    # the imported run's config.yaml is a fine-tuning template: it names the run in train.init_from
    overrides = [f"data.train_path={run_inputs['train']}", f"data.val_path={run_inputs['val']}"]
    overrides += [f"train.out_dir={tmp_path / 'ft2'}", "train.device=cpu", "train.compile=false"]
    cfg = load_config(tmp_path / "imported" / "config.yaml", overrides)
    assert cfg.train.init_from == str((tmp_path / "imported").resolve())
    assert cfg.data.tokenizer_dir == str((tmp_path / "imported" / "tokenizer").resolve())
    assert setup(cfg).progress.step == 0
    with pytest.raises(ConfigError, match=r"data\.train_path"):
        load_config(tmp_path / "imported" / "config.yaml")


def test_shape_mismatch_names_the_fields(source_run, tmp_path, run_inputs, tiny_config, capsys):
    with pytest.raises(ConfigError, match=r"has another model shape: model\.d_model=32 \(config: 64\)"):
        setup(tiny_config(tmp_path / "ft", {"train.init_from": source_run, "model.d_model": 64}))
    assert train_main(cli_args(run_inputs, tmp_path / "ft2", {"train.init_from": source_run, "model.d_ff": 96})) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: train.init_from=") and "model.d_ff=64 (config: 96)" in err
    assert not (tmp_path / "ft2" / "checkpoints").exists()


def test_checkpoint_without_config_is_checked_by_shapes(source_run, tmp_path, tiny_config):
    bare = tmp_path / "bare.pt"
    state = weights(source_run)
    state["token_embeddings.weight"] = state["token_embeddings.weight"][:, :16].clone()

    class Holder(torch.nn.Module):
        def state_dict(self, *args, **kwargs):
            return state

    save_checkpoint(Holder(), None, 4, bare)
    with pytest.raises(CheckpointError, match=r"token_embeddings\.weight"):
        setup(tiny_config(tmp_path / "ft", {"train.init_from": bare}))


def test_other_tokenizer_and_missing_source(source_run, tmp_path, tiny_config):
    other = Tokenizer.from_directory(source_run / "tokenizer")
    Tokenizer(other.vocab, other.merges, [*other.special_tokens, "<|pad|>"]).save(source_run / "tokenizer")
    with pytest.raises(ConfigError, match="was trained with another tokenizer"):
        setup(tiny_config(tmp_path / "ft", {"train.init_from": source_run}))
    with pytest.raises(ConfigError, match=r"train.init_from=.*nothing.*does not exist"):
        setup(tiny_config(tmp_path / "ft", {"train.init_from": tmp_path / "nothing"}))


def test_a_fine_tuning_run_keeps_the_chat_template(source_run, tmp_path, tiny_config):
    from cs336_lm.interop.export import export_run
    from cs336_lm.interop.import_ import import_hf

    template = "{% for m in messages %}{{ m.role }}: {{ m.content }}{{ eos_token }}{% endfor %}"
    export_run(source_run, tmp_path / "hf")
    (tmp_path / "hf" / "chat_template.jinja").write_text(template, encoding="utf-8")
    import_hf(tmp_path / "hf", tmp_path / "imported")
    imported = Tokenizer.from_directory(tmp_path / "imported" / "tokenizer")
    assert imported.chat_template == template
    # the data's tokenizer is the imported run's (its config.yaml says so): the template is in it
    setup(tiny_config(tmp_path / "ft", {"train.init_from": tmp_path / "imported",
                                        "data.tokenizer_dir": tmp_path / "imported" / "tokenizer"}))  # fmt: skip
    tok = Tokenizer.from_directory(tmp_path / "ft" / "tokenizer")
    assert (tok.chat_template, tok.named_tokens) == (template, imported.named_tokens)
    # the same tokenizer without the template (the one the data was tokenized with): it comes from init_from
    job = setup(tiny_config(tmp_path / "ft2", {"train.init_from": tmp_path / "imported"}))
    assert Tokenizer.from_directory(tmp_path / "ft2" / "tokenizer").chat_template == template
    assert any("chat template" in note for note in job.notes)
    assert Tokenizer.from_directory(source_run / "tokenizer").chat_template is None
