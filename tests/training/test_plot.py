"""lm-plot: metrics.jsonl records become the right series, and the PNG is written (or a clear error given)."""

import json
import sys

import numpy as np
import pytest

from cs336_lm.cli.plot import main as plot_main
from cs336_lm.errors import DataError, LMError
from cs336_lm.training.plot import MISSING_MATPLOTLIB, curves_from_records, load_curves, make_figure, plot_runs

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_run(run_dir, steps=20, tokens_per_step=512, eval_every=5, scale=1.0, torn=False):
    """A synthetic run: loss 5 * exp(-step / 10) (+ 0.2 for validation), linear warmup then flat lr."""
    run_dir.mkdir(parents=True)
    lines = []
    for step in range(1, steps + 1):
        lr = 1e-3 * min(1.0, step / 5)
        loss = scale * 5 * np.exp(-step / 10)
        lines.append({"step": step, "tokens": step * tokens_per_step, "loss": loss, "lr": lr, "grad_norm": 1.0})
        if step % eval_every == 0:
            lines.append({"step": step, "tokens": step * tokens_per_step, "val_loss": loss + 0.2, "val_ppl": 1.0})
    text = "".join(json.dumps(r) + "\n" for r in lines)
    if torn:
        text += '{"step": 21, "loss": 0.'  # a run killed mid-write
    (run_dir / "metrics.jsonl").write_text(text)
    return lines


def test_records_sorted_into_series():
    records = [
        {"step": 1, "tokens": 64, "loss": 4.0, "lr": 1e-4},
        {"step": 2, "loss": 3.5},  # no tokens, no lr
        {"step": 2, "val_loss": 3.9},  # eval record without tokens
        {"loss": 1.0},  # no step: skipped
        {"step": 3, "tokens": 192, "loss": "nan?", "lr": True},  # not numbers: skipped
        {"step": 4, "tokens": 256, "loss": 3.0, "lr": 5e-5, "val_loss": 3.4},
    ]
    c = curves_from_records(records, "r")
    assert c.train_steps == [1, 2, 4] and c.train_loss == [4.0, 3.5, 3.0]
    assert c.train_tokens == [64, None, 256]
    assert c.lr_steps == [1, 4] and c.lr == [1e-4, 5e-5]
    assert c.val_steps == [2, 4] and c.val_loss == [3.9, 3.4] and c.val_tokens == [None, 256]
    assert c.has_tokens


def test_load_curves_tolerates_torn_last_line(tmp_path):
    lines = write_run(tmp_path / "run-a", torn=True)
    c = load_curves(tmp_path / "run-a")
    assert c.name == "run-a"
    assert c.train_steps == list(range(1, 21))
    np.testing.assert_allclose(c.train_loss, [r["loss"] for r in lines if "loss" in r])
    assert c.val_steps == [5, 10, 15, 20]


def test_figure_holds_every_run(tmp_path):
    write_run(tmp_path / "a")
    write_run(tmp_path / "b", tokens_per_step=1024, scale=0.5)
    fig = make_figure([load_curves(tmp_path / "a"), load_curves(tmp_path / "b")])
    ax_steps, ax_tokens, ax_lr = fig.axes
    labels = [line.get_label() for line in ax_steps.lines]
    assert labels == ["a train", "a val", "b train", "b val"]
    b_tokens = ax_tokens.lines[2]
    np.testing.assert_array_equal(b_tokens.get_xdata(), np.arange(1, 21) * 1024)
    np.testing.assert_allclose(ax_lr.lines[0].get_ydata()[:5], [2e-4, 4e-4, 6e-4, 8e-4, 1e-3])


def test_plot_runs_writes_png_atomically(tmp_path):
    write_run(tmp_path / "a")
    write_run(tmp_path / "b", scale=0.7)
    out = plot_runs([tmp_path / "a", tmp_path / "b"], tmp_path / "plots" / "loss.png", title="two runs")
    assert out.read_bytes().startswith(PNG_MAGIC)
    assert [p.name for p in out.parent.iterdir()] == ["loss.png"]


def test_cli(tmp_path, capsys):
    write_run(tmp_path / "a")
    assert plot_main([str(tmp_path / "a"), "--out", str(tmp_path / "loss.png")]) == 0
    assert (tmp_path / "loss.png").read_bytes().startswith(PNG_MAGIC)
    assert "wrote" in capsys.readouterr().out


def test_cli_errors(tmp_path, capsys):
    assert plot_main([str(tmp_path / "nothing"), "--out", str(tmp_path / "x.png")]) == 2
    assert capsys.readouterr().err.strip() == f"error: no metrics.jsonl in {tmp_path / 'nothing'}"
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "metrics.jsonl").write_text('{"step": 1, "tokens_per_s": 5}\n')
    with pytest.raises(DataError, match="no loss records"):
        load_curves(tmp_path / "empty")
    assert not (tmp_path / "x.png").exists()


def test_missing_matplotlib_gives_one_clear_line(tmp_path, monkeypatch, capsys):
    write_run(tmp_path / "a")
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(LMError, match="pip install"):
        plot_runs([tmp_path / "a"], tmp_path / "x.png")
    assert plot_main([str(tmp_path / "a"), "--out", str(tmp_path / "x.png")]) == 2
    assert capsys.readouterr().err == f"error: {MISSING_MATPLOTLIB}\n"
    assert not (tmp_path / "x.png").exists()


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err.removeprefix("error: ").strip()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"step": 1, "loss": 2.0}\n\xff\xfe\n', "metrics.jsonl: line 2 is not UTF-8 text"),
        (b'{"step": 1, "loss": 2.0}\n[1, 2]\n', "metrics.jsonl: line 2 is a JSON list, not an object"),
        (b'{"step": 1, "loss": 2.0}\n3\n"x"\n', "metrics.jsonl: line 2 is a JSON number, not an object (and 1 more)"),
        (b'{"step": 1, "loss": 2.0}\nnot json\n{"step": 2, "loss": 1.0}\n', "metrics.jsonl: line 2 is not JSON"),
    ],
    ids=["not-utf8", "list", "number-and-string", "garbage-line"],
)
def test_metrics_lines_that_are_not_records_are_one_line_errors(tmp_path, capsys, content, message):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_bytes(content)
    assert plot_main([str(tmp_path / "run"), "--out", str(tmp_path / "plots" / "loss.png")]) == 2
    assert one_line_error(capsys) == f"{tmp_path / 'run'}/{message}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no PNG, no plots/ directory


def test_steps_that_are_not_finite_numbers_are_skipped():
    records = [{"step": 1e400, "loss": 1.0}, {"step": float("nan"), "loss": 1.0}, {"step": 2, "loss": 1e400}]
    c = curves_from_records(records, "r")
    assert c.train_steps == [2] and c.train_loss == [float("inf")]


def test_an_out_that_cannot_be_written_is_one_line_and_nothing_is_drawn(tmp_path, capsys):
    write_run(tmp_path / "a")
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir").mkdir()
    cases = {
        tmp_path / "file" / "loss.png": f"{tmp_path / 'file'} is a file, not a directory",
        tmp_path / "file" / "deeper" / "loss.png": f"{tmp_path / 'file'} is a file, not a directory",
        tmp_path / "dir": "it is a directory",
    }
    for out, reason in cases.items():
        assert plot_main([str(tmp_path / "a"), "--out", str(out)]) == 2
        assert one_line_error(capsys) == f"cannot write {out}: {reason}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "dir", "file"] and not any((tmp_path / "dir").iterdir())


def test_a_full_disk_is_one_line_and_the_previous_png_survives(tmp_path, capsys, full_disk):
    write_run(tmp_path / "a")
    out = tmp_path / "new" / "loss.png"
    assert plot_main([str(tmp_path / "a"), "--out", str(out)]) == 0
    before = out.read_bytes()
    capsys.readouterr()
    full_disk(free=0)
    assert plot_main([str(tmp_path / "a"), "--out", str(out)]) == 2
    assert one_line_error(capsys) == f"cannot write {out}: No space left on device"
    assert out.read_bytes() == before and [p.name for p in out.parent.iterdir()] == ["loss.png"]
    assert plot_main([str(tmp_path / "a"), "--out", str(tmp_path / "other" / "loss.png")]) == 2
    assert not (tmp_path / "other").exists()  # the directory made for it is removed again


def test_a_title_that_is_not_utf8_is_one_line(tmp_path, capsys):
    write_run(tmp_path / "a")
    assert plot_main([str(tmp_path / "a"), "--out", str(tmp_path / "x.png"), "--title", "caf\udce9"]) == 2
    assert one_line_error(capsys) == "--title 'caf\\udce9' is not UTF-8 text"
    assert not (tmp_path / "x.png").exists()
