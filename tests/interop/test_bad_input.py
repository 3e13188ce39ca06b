"""Careless and hostile input to lm-import, lm-export, lm-compare and lm-accounting: one ``error:`` line and exit 2.

Each case was once a traceback, a wrong verdict or a destroyed input: a ``config.json`` that is a list, a
``rope_scaling`` that is a string, zero heads, a size that is text, an index or ``tokenizer.json`` of the wrong
JSON type; a truncated or mis-shaped folder handed to lm-compare, a NaN tolerance; an ``--out`` that is the input;
an imported run's ``config.yaml`` (no data paths) handed to lm-accounting.
"""

import json
import os
import shutil

import pytest

from cs336_lm.cli.accounting import main as accounting_main
from cs336_lm.cli.compare import main as compare_main
from cs336_lm.cli.export import main as export_main
from cs336_lm.cli.import_ import main as import_main
from cs336_lm.interop.import_ import import_hf

from .conftest import tiny_run


def one_error_line(capsys, *fragments):
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, err
    return err


def edit_config(folder, **changes):
    data = json.loads((folder / "config.json").read_text())
    data.update(changes)
    (folder / "config.json").write_text(json.dumps(data))


def write(path, text):
    path.write_text(text)


def as_sharded_with_index(folder, index_text):
    (folder / "model.safetensors").rename(folder / "model-00001-of-00001.safetensors")
    (folder / "model.safetensors.index.json").write_text(index_text)


IMPORT_CASES = {
    "config_list": (lambda f: write(f / "config.json", "[1]"), "config.json must hold a JSON object, got a list"),
    "rope_scaling_string": (
        lambda f: edit_config(f, rope_parameters=None, rope_scaling="linear"),
        "rope_scaling='linear'",
    ),
    "zero_heads": (lambda f: edit_config(f, num_attention_heads=0), "num_attention_heads must be a positive integer"),
    "hidden_size_text": (lambda f: edit_config(f, hidden_size="abc"), "hidden_size must be a positive integer"),
    "index_list": (lambda f: as_sharded_with_index(f, "[]"), "model.safetensors.index.json must hold a JSON object"),
    "tokenizer_list": (lambda f: write(f / "tokenizer.json", "[]"), "tokenizer.json must hold a JSON object"),
}


@pytest.mark.parametrize("case", IMPORT_CASES)
def test_import_malformed_files(exported, tmp_path, capsys, case):
    edit, message = IMPORT_CASES[case]
    folder = tmp_path / "hf"
    shutil.copytree(exported, folder)
    edit(folder)
    assert import_main([str(folder), "--out", str(tmp_path / "run")]) == 2
    one_error_line(capsys, message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]


# ---- lm-compare: a folder that cannot be compared is bad input (2), not a divergence (1) --------------------------


def test_compare_truncated_safetensors(run_dir, exported, tmp_path, capsys):
    folder = tmp_path / "hf"
    shutil.copytree(exported, folder)
    weights = folder / "model.safetensors"
    os.truncate(weights, weights.stat().st_size // 2)
    assert compare_main([str(run_dir), str(folder), "--prompt", "Once upon a time"]) == 2
    one_error_line(capsys, str(weights))


def test_compare_folder_of_another_width(run_dir, tokenizer, tmp_path, capsys):
    from cs336_lm.interop.export import export_run

    wide = tiny_run(tmp_path / "wide", tokenizer, d_model=128)
    export_run(wide, tmp_path / "hf")
    assert compare_main([str(run_dir), str(tmp_path / "hf"), "--prompt", "Once upon a time"]) == 2
    one_error_line(capsys, "model.embed_tokens.weight", "(420, 128)", "(420, 64)")


def test_compare_folder_with_other_heads_or_a_list_for_config(run_dir, tokenizer, tmp_path, capsys):
    """Eight heads of 8 where the run has four of 16: the weights have the same shapes, the function differs."""
    from cs336_lm.interop.export import export_run

    other = tiny_run(tmp_path / "other", tokenizer, num_heads=8)
    export_run(other, tmp_path / "hf")
    assert compare_main([str(run_dir), str(tmp_path / "hf"), "--prompt", "Once upon a time"]) == 2
    one_error_line(capsys, "the HF model has 8 heads and 2 key/value heads, the run 4 and 2")
    (tmp_path / "hf" / "config.json").write_text("[]")
    assert compare_main([str(run_dir), str(tmp_path / "hf"), "--prompt", "Once upon a time"]) == 2
    one_error_line(capsys, "config.json must hold a JSON object, got a list")


@pytest.mark.parametrize("option", ["--atol", "--rtol"])
@pytest.mark.parametrize("value", ["nan", "inf", "-1e-3"])
def test_compare_tolerance_must_be_finite(run_dir, exported, capsys, option, value):
    assert compare_main([str(run_dir), str(exported), "--prompt", "Once", f"{option}={value}"]) == 2
    one_error_line(capsys, option, ">= 0")


# ---- an output that is, contains or lies inside an input is refused, --force or not --------------------------------


def tree(path):
    return sorted((str(p.relative_to(path)), p.read_bytes() if p.is_file() else None) for p in path.rglob("*"))


@pytest.mark.parametrize("where", ["itself", "inside", "parent", "symlink"])
def test_export_never_replaces_its_input(tokenizer, tmp_path, capsys, where):
    run = tiny_run(tmp_path / "runs" / "a", tokenizer)
    (run / "metrics.jsonl").write_text('{"step": 7}\n')
    out = {
        "itself": run,
        "inside": run / "checkpoints" / "hf",
        "parent": tmp_path / "runs",
        "symlink": tmp_path / "link",
    }[where]
    if where == "symlink":
        out.symlink_to(run)
    before = tree(tmp_path / "runs")
    assert export_main([str(run), "--out", str(out), "--force"]) == 2
    one_error_line(capsys, f"cannot write {out}", str(run.resolve()))
    assert tree(tmp_path / "runs") == before


def test_export_never_replaces_its_tokenizer(run_dir, tmp_path, capsys):
    tokenizer_dir = tmp_path / "tokenizer"
    shutil.copytree(run_dir / "tokenizer", tokenizer_dir)
    before = tree(tokenizer_dir)
    assert export_main([str(run_dir), "--tokenizer", str(tokenizer_dir), "--out", str(tokenizer_dir), "--force"]) == 2
    one_error_line(capsys, "it is the input", str(tokenizer_dir.resolve()))
    assert tree(tokenizer_dir) == before


def test_export_never_replaces_the_run_of_its_checkpoint(run_dir, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    checkpoint = next((run / "checkpoints").glob("step_*.pt"))
    before = tree(run)
    assert export_main([str(checkpoint), "--out", str(run / "tokenizer"), "--force"]) == 2
    one_error_line(capsys, f"cannot write {run / 'tokenizer'}", str((run / "tokenizer").resolve()))
    assert tree(run) == before


@pytest.mark.parametrize("where", ["itself", "inside", "parent", "symlink"])
def test_import_never_replaces_its_input(exported, tmp_path, capsys, where):
    folder = tmp_path / "models" / "hf"
    shutil.copytree(exported, folder)
    out = {"itself": folder, "inside": folder / "run", "parent": tmp_path / "models", "symlink": tmp_path / "link"}[
        where
    ]
    if where == "symlink":
        out.symlink_to(folder, target_is_directory=True)
    before = tree(tmp_path / "models")
    assert import_main([str(folder), "--out", str(out), "--force"]) == 2
    one_error_line(capsys, f"cannot write {out}", str(folder.resolve()))
    assert tree(tmp_path / "models") == before


# ---- lm-accounting reads the model section only ----------------------------------------------------------------


def test_accounting_reads_an_imported_runs_config(exported, tmp_path, capsys):
    import_hf(exported, tmp_path / "run")
    assert accounting_main(["--config", str(tmp_path / "run" / "config.yaml")]) == 0
    out = capsys.readouterr().out
    assert "lm_head" in out and "26,880" in out  # 420 · 64 embedding parameters (the lm_head has as many)
    assert accounting_main(["--config", str(tmp_path / "run" / "config.yaml"), "model.num_layers=3"]) == 0
